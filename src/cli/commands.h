// The subcommands of the tributary binary.
#pragma once

namespace tributary::cli {

/// Parse the command line and run a subcommand; returns the process exit code:
/// 0 success, 1 the run failed, 2 bad usage or configuration.
int Main(int argc, char** argv);

}  // namespace tributary::cli
