#include "cli/backfill_command.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "core/pipeline_config.h"
#include "io/sources/file_source.h"
#include "stream/backfill.h"
#include "stream/runtime.h"

namespace tributary::cli {
namespace {

// Resident set size of this process in MiB (Linux /proc), 0 when unknown.
double RssMiB() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

// Records, bytes, rate, ETA and RSS of a running backfill: a bar redrawn twice a
// second on a terminal, or one log line every 10 s otherwise. Runs its own thread.
class BackfillProgress {
 public:
  BackfillProgress(const Pipeline& pipeline, bool tty) : pipeline_(pipeline), tty_(tty) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~BackfillProgress() {
    stop_ = true;
    thread_.join();
    if (tty_) {
      std::fputs("\r\033[K", stderr);
      std::fflush(stderr);
    }
  }

 private:
  void Loop() {
    using Clock = std::chrono::steady_clock;
    const auto started = Clock::now();
    const auto period = std::chrono::milliseconds(tty_ ? 500 : 10000);
    auto next = started + period;
    while (!stop_.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (Clock::now() < next) continue;
      next += period;
      const auto* file = dynamic_cast<const FileSource*>(pipeline_.source(0));
      const uint64_t bytes = file ? file->bytes_read() : 0;
      const uint64_t total = file ? file->total_bytes() : 0;
      const double secs = std::chrono::duration<double>(Clock::now() - started).count();
      const LedgerSnapshot l = pipeline_.LedgerNow();
      const double rate = secs > 0 ? static_cast<double>(l.input) / secs : 0;
      const double bps = secs > 0 ? static_cast<double>(bytes) / secs : 0;
      const double eta = bps > 0 && total > bytes ? static_cast<double>(total - bytes) / bps : 0;
      const double frac = total > 0 ? static_cast<double>(bytes) / static_cast<double>(total) : 0;
      if (tty_) {
        constexpr int kWidth = 24;
        const int filled = static_cast<int>(frac * kWidth);
        std::string bar = std::string(filled, '#') + std::string(kWidth - filled, '.');
        std::string line = fmt::format(
            "\r\033[K[{}] {:5.1f}% | {} records | {:.0f}/{:.0f} MiB | {:.0f} rec/s | ETA {:.0f}s "
            "| RSS {:.0f} MiB",
            bar, 100 * frac, l.input, bytes / 1048576.0, total / 1048576.0, rate, eta, RssMiB());
        std::fputs(line.c_str(), stderr);
        std::fflush(stderr);
      } else {
        spdlog::info(
            "backfill: {} records, {:.0f} of {:.0f} MiB ({:.1f}%), {:.0f} records/s, ETA {:.0f}s, "
            "RSS {:.0f} MiB",
            l.input, bytes / 1048576.0, total / 1048576.0, 100 * frac, rate, eta, RssMiB());
      }
    }
  }

  const Pipeline& pipeline_;
  const bool tty_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace

CLI::App* AddBackfillCommand(CLI::App& app, BackfillCliOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "backfill",
      "Process archived files (NDJSON, CSV; files, folders or globs) through the pipeline of "
      "CONFIG once, reproducibly: same results as `run` over the same files, outputs "
      "published atomically with a run manifest; a repeated run is skipped unless --force.");
  cmd->add_option("--config", o.config, "Pipeline YAML file (default: the embedded default)");
  cmd->add_option("inputs", o.inputs, "Input files, folders or glob patterns")->required();
  cmd->add_option("--output,--data-dir", o.output_dir,
                  "Folder for the outputs and the manifest (default: the config's data folder)");
  cmd->add_option("--as-of", o.as_of,
                  "Arrival and processing time of the run, UTC (default: the newest "
                  "modification time of the inputs)");
  cmd->add_flag("--force", o.force, "Run even when the manifest shows the same run done");
  cmd->add_flag("--quiet", o.quiet, "Print nothing but errors");
  cmd->add_flag("--no-progress", o.no_progress, "No progress bar or heartbeat lines");
  return cmd;
}

int BackfillCommand(const BackfillCliOptions& o) {
  Result<PipelineConfig> config =
      o.config.empty() ? ParsePipelineConfig(EmbeddedDefaultConfig(), "<embedded default>")
                       : LoadPipelineConfig(o.config);
  if (!config.ok()) {
    std::cerr << "error: " << config.status().message() << "\n";
    return 2;
  }
  BackfillOptions options;
  options.inputs = o.inputs;
  options.output_dir = o.output_dir;
  options.force = o.force;
  if (!o.as_of.empty()) {
    Result<TimeUs> t = ParseTime(o.as_of);
    if (!t.ok()) {
      std::cerr << "error: --as-of: " << t.status().message() << "\n";
      return 2;
    }
    options.as_of = *t;
  }
  std::unique_ptr<BackfillProgress> progress;
  const bool show = !o.quiet && !o.no_progress;
  Result<BackfillReport> report = RunBackfill(
      *config, options,
      [&](Pipeline& p) {
        if (show) progress = std::make_unique<BackfillProgress>(p, isatty(STDERR_FILENO) != 0);
      },
      [&](Pipeline&) { progress.reset(); });
  if (!report.ok()) {
    std::cerr << "error: " << report.status().message() << "\n";
    return report.status().code() == StatusCode::kInvalidArgument ? 2 : 1;
  }
  if (o.quiet) return 0;
  if (report->skipped) {
    std::cout << "already processed (run key " << report->run_key.substr(0, 12) << ", see "
              << report->manifest_path << "); use --force to run again\n";
    return 0;
  }
  std::cout << report->ledger.ToText();
  std::cout << report->inputs.size() << " input file(s); manifest written to "
            << report->manifest_path << "\n";
  return 0;
}

}  // namespace tributary::cli
