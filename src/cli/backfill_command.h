// `tributary backfill`: bounded, reproducible re-processing of archived files
// (see stream/backfill.h), with a progress bar on a terminal and heartbeat log lines
// otherwise.
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace tributary::cli {

struct BackfillCliOptions {
  std::string config;
  std::vector<std::string> inputs;
  std::string output_dir;
  std::string as_of;
  bool force = false;
  bool quiet = false;
  bool no_progress = false;
};

/// Declare the `backfill` subcommand on `app`, filling `options` when parsed.
CLI::App* AddBackfillCommand(CLI::App& app, BackfillCliOptions& options);
/// Run it; returns the exit code (0 done or skipped, 1 failed, 2 bad usage).
int BackfillCommand(const BackfillCliOptions& options);

}  // namespace tributary::cli
