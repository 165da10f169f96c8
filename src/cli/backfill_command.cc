#include "cli/backfill_command.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "core/pipeline_config.h"
#include "stream/backfill.h"
#include "stream/backfill_input.h"
#include "stream/backfill_runner.h"

namespace tributary::cli {
namespace {

// Resident set size of this process in MiB (Linux /proc), 0 when unknown.
double RssMiB() {
  return static_cast<double>(CurrentRssBytes()) / 1048576.0;
}

// Set by SIGINT/SIGTERM: stops a watch, and the running backfill.
std::atomic<bool> g_backfill_stop{false};
std::atomic<BackfillRunner*> g_backfill_runner{nullptr};
std::atomic<int> g_backfill_signals{0};

void OnBackfillSignal(int) {
  if (g_backfill_signals.fetch_add(1) >= 1) _exit(130);
  g_backfill_stop.store(true);
  if (BackfillRunner* r = g_backfill_runner.load()) r->Stop();
}

// Records, bytes, rate, ETA and RSS of a running backfill: a bar redrawn twice a
// second on a terminal, or one log line every 10 s otherwise. Runs its own thread.
class BackfillProgress {
 public:
  BackfillProgress(const BackfillRunner& runner, bool tty) : runner_(runner), tty_(tty) {
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
      const uint64_t bytes = runner_.bytes_read();
      const uint64_t total = runner_.total_bytes();
      const double secs = std::chrono::duration<double>(Clock::now() - started).count();
      const LedgerSnapshot l = runner_.LedgerNow();
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

  const BackfillRunner& runner_;
  const bool tty_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace

CLI::App* AddBackfillCommand(CLI::App& app, BackfillCliOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "backfill",
      "Process archived files (NDJSON, CSV, plain or .gz/.zst, and Parquet; files, folders or "
      "globs) through the pipeline of CONFIG once, reproducibly, on every core in chunks sized "
      "from the memory available: same results as `run` over the same files, outputs "
      "published atomically with a run manifest; a repeated run is skipped unless --force. "
      "With --watch DIR, every file dropped into DIR is processed once as it arrives.");
  cmd->add_option("--config", o.config, "Pipeline YAML file (default: the embedded default)");
  cmd->add_option("inputs", o.inputs, "Input files, folders or glob patterns");
  cmd->add_option("--output,--data-dir", o.output_dir,
                  "Folder for the outputs and the manifest (default: the config's data folder)");
  cmd->add_option("--as-of", o.as_of,
                  "Arrival and processing time of the run, UTC (default: the newest "
                  "modification time of the inputs)");
  cmd->add_flag("--force", o.force, "Run even when the manifest shows the same run done");
  cmd->add_flag("--quiet", o.quiet, "Print nothing but errors");
  cmd->add_flag("--no-progress", o.no_progress, "No progress bar or heartbeat lines");
  cmd->add_option("--workers", o.workers,
                  "Decoding threads (default: one per core); results do not depend on it");
  cmd->add_option("--memory", o.memory,
                  "Memory ceiling for chunking, e.g. 512MiB (default: 30 % of the memory "
                  "available, MemAvailable or the cgroup limit)");
  cmd->add_option("--watch", o.watch_dir,
                  "Landing folder: process each data file dropped into it once, as it "
                  "arrives, moving it to DIR/done/ or DIR/failed/ (with a .reason.txt); outputs "
                  "go to OUTPUT/<file name>/; stops on Ctrl-C");
  cmd->add_flag("--once", o.once, "With --watch: process the files present, then exit");
  cmd->add_option("--poll", o.poll, "With --watch: how often the folder is listed (default 1s)");
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
  options.workers = o.workers;
  if (!o.memory.empty()) {
    Result<uint64_t> m = ParseByteSize(o.memory);
    if (!m.ok()) {
      std::cerr << "error: --memory: " << m.status().message() << "\n";
      return 2;
    }
    options.memory_ceiling = *m;
  }
  if (!o.as_of.empty()) {
    Result<TimeUs> t = ParseTime(o.as_of);
    if (!t.ok()) {
      std::cerr << "error: --as-of: " << t.status().message() << "\n";
      return 2;
    }
    options.as_of = *t;
  }
  struct sigaction sa {};
  sa.sa_handler = OnBackfillSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  if (!o.watch_dir.empty()) {
    if (!o.inputs.empty()) {
      std::cerr << "error: --watch takes no INPUT arguments (files come from the folder)\n";
      return 2;
    }
    BackfillWatchOptions watch;
    watch.dir = o.watch_dir;
    watch.once = o.once;
    Result<DurationUs> poll = ParseDuration(o.poll);
    if (!poll.ok() || *poll <= 0) {
      std::cerr << "error: --poll: " << (poll.ok() ? "must be positive" : poll.status().message())
                << "\n";
      return 2;
    }
    watch.poll = *poll;
    Status st = WatchBackfillFolder(
        *config, options, watch, g_backfill_stop, [&](const BackfillWatchEvent& e) {
          if (o.quiet) return;
          if (!e.ok) {
            std::cout << e.file << ": failed (" << e.reason << "), moved to " << e.moved << "\n";
          } else if (e.already_processed) {
            std::cout << e.file << ": already processed, moved to " << e.moved << "\n";
          } else {
            std::cout << e.file << ": " << e.report.ledger.input << " records, moved to " << e.moved
                      << "\n";
          }
          std::cout.flush();
        });
    if (!st.ok()) {
      std::cerr << "error: " << st.message() << "\n";
      return st.code() == StatusCode::kInvalidArgument ? 2 : 1;
    }
    return 0;
  }
  if (o.inputs.empty()) {
    std::cerr << "error: backfill needs INPUT files, folders or globs (or --watch DIR)\n";
    return 2;
  }
  std::unique_ptr<BackfillProgress> progress;
  const bool show = !o.quiet && !o.no_progress;
  Result<BackfillReport> report = RunBackfill(
      *config, options,
      [&](BackfillRunner& r) {
        g_backfill_runner = &r;
        if (show) progress = std::make_unique<BackfillProgress>(r, isatty(STDERR_FILENO) != 0);
      },
      [&](BackfillRunner&) {
        g_backfill_runner = nullptr;
        progress.reset();
      });
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
  for (const std::string& nc : report->netcdf_files) std::cout << "surfaces: " << nc << "\n";
  std::cout << report->inputs.size() << " input file(s); manifest written to "
            << report->manifest_path << "\n";
  return 0;
}

}  // namespace tributary::cli
