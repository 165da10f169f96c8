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
  size_t workers = 0;       ///< 0: one per core
  std::string memory;       ///< ceiling such as "512MiB"; empty: 30 % of available memory
  std::string watch_dir;    ///< --watch DIR
  bool once = false;        ///< with --watch: process what is there, then exit
  std::string poll = "1s";  ///< with --watch: listing period
};

/// Declare the `backfill` subcommand on `app`, filling `options` when parsed.
CLI::App* AddBackfillCommand(CLI::App& app, BackfillCliOptions& options);
/// Run it; returns the exit code (0 done or skipped, 1 failed, 2 bad usage).
int BackfillCommand(const BackfillCliOptions& options);

}  // namespace tributary::cli
