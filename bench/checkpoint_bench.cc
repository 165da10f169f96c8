// Checkpoint cost and recovery time.
//
//   build/ci/bench/checkpoint_bench [messages] [state_mb] [interval_s] [rounds]
//
// 1. End to end: the same simulated input (fixed start, as fast as possible) runs
//    through Pipeline::Run — ingestion, a tumbling and a sliding window stage, the
//    sqlite sink — without checkpoints (commits every pipeline.commit_interval) and
//    with a checkpoint every `interval_s` seconds (default 10), alternately, `rounds`
//    times each (default 3), so both see the same load of a shared machine. Prints
//    readings/s of every run, the cost from the best run of each (the one least
//    disturbed) and the median of the per-round costs, and where the checkpoint time
//    went in the best run with checkpoints. Each run also reports its CPU time (user +
//    system of all threads) per reading, the figure a loaded machine disturbs least.
// 2. Recovery of large state: a window operator is filled with `state_mb` MB (default
//    1024) of open window state (median keeps every value: at least state_mb MB of
//    kept values, and as much by the operator's accounting), then snapshotted, saved
//    to a checkpoint store, loaded and restored into a fresh operator; prints each
//    time.
// The last line is one JSON object with all figures and the peak RSS.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/intern.h"
#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "stream/checkpoint.h"
#include "stream/runtime.h"
#include "stream/window.h"

using namespace tributary;

namespace {

double PeakRssMb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

[[noreturn]] void Die(const Status& st) {
  std::fprintf(stderr, "checkpoint_bench: %s\n", st.ToString().c_str());
  std::exit(1);
}

// User + system CPU seconds of the whole process so far.
double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  auto secs = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return secs(usage.ru_utime) + secs(usage.ru_stime);
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

struct RunFigures {
  double seconds = 0;
  double cpu_seconds = 0;  // user + system, all threads of the run
  uint64_t readings = 0;
  uint64_t checkpoints = 0;
  CheckpointCosts costs;
  double rate() const { return seconds > 0 ? static_cast<double>(readings) / seconds : 0; }
  double cpu_us_per_reading() const {
    return readings > 0 ? 1e6 * cpu_seconds / static_cast<double>(readings) : 0;
  }
};

RunFigures RunOnce(const std::string& dir, uint64_t messages, double interval_s, bool checkpoints) {
  // 2000 devices every 60 s of simulated time: 2000 messages per simulated minute.
  const uint64_t minutes = std::max<uint64_t>(1, messages / 2000);
  std::string yaml = "pipeline:\n  data_dir: " + dir +
                     "\n"
                     "sources:\n"
                     "  - name: sim\n"
                     "    type: simulator\n"
                     "    devices: 2000\n"
                     "    start: 2024-05-01T00:00:00Z\n"
                     "    as_fast_as_possible: true\n"
                     "    duration: " +
                     std::to_string(minutes) +
                     "m\n"
                     "windows:\n"
                     "  - name: t5m\n"
                     "    type: tumbling\n"
                     "    size: 5m\n"
                     "    aggregates: [mean, max, median]\n"
                     "  - name: s15m\n"
                     "    type: sliding\n"
                     "    size: 15m\n"
                     "    step: 5m\n"
                     "    aggregates: [mean]\n"
                     "sinks:\n"
                     "  - name: store\n"
                     "    type: sqlite\n"
                     "checkpoint:\n"
                     "  enabled: " +
                     std::string(checkpoints ? "true" : "false") +
                     "\n"
                     "  interval: " +
                     std::to_string(static_cast<int>(interval_s * 1000)) + "ms\n";
  Result<PipelineConfig> config = ParsePipelineConfig(yaml, "<bench>");
  if (!config.ok()) Die(config.status());
  Result<std::unique_ptr<Pipeline>> p = Pipeline::Build(*config);
  if (!p.ok()) Die(p.status());
  auto t0 = std::chrono::steady_clock::now();
  const double cpu0 = CpuSeconds();
  if (Status st = (*p)->Run(); !st.ok()) Die(st);
  RunFigures f;
  f.seconds = Seconds(t0);
  f.cpu_seconds = CpuSeconds() - cpu0;
  f.readings = (*p)->LedgerNow().input;
  f.costs = (*p)->checkpoint_costs();
  if (checkpoints) {
    CheckpointStore store;
    if (Status st = store.Open(dir + "/checkpoints", 2); !st.ok()) Die(st);
    Result<std::optional<StoredCheckpoint>> c = store.Latest();
    if (c.ok() && *c) f.checkpoints = (*c)->id;
  }
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t messages = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 3000000;
  const double state_mb = argc > 2 ? std::strtod(argv[2], nullptr) : 1024;
  const double interval_s = argc > 3 ? std::strtod(argv[3], nullptr) : 10;
  const std::string root =
      (std::filesystem::temp_directory_path() / ("checkpoint_bench_" + std::to_string(getpid())))
          .string();
  std::filesystem::remove_all(root);

  const int rounds = argc > 4 ? std::max(1, std::atoi(argv[4])) : 3;

  // 1. End to end, alternately.
  RunFigures off;
  RunFigures on;
  std::vector<double> round_costs;
  std::vector<double> round_cpu_costs;
  for (int round = 0; round < rounds; ++round) {
    const std::string dir = root + "/r" + std::to_string(round);
    RunFigures a = RunOnce(dir + "-off", messages, interval_s, false);
    RunFigures b = RunOnce(dir + "-on", messages, interval_s, true);
    std::filesystem::remove_all(dir + "-off");
    std::filesystem::remove_all(dir + "-on");
    const double cpu_cost = 100.0 * (b.cpu_us_per_reading() / a.cpu_us_per_reading() - 1.0);
    std::printf(
        "round %d: without checkpoints %.2f s (%.0f readings/s, %.2f CPU us/reading), with "
        "%.2f s (%.0f readings/s, %.2f CPU us/reading, %llu checkpoints): cost %.1f %% of "
        "throughput, %.1f %% more CPU per reading\n",
        round + 1, a.seconds, a.rate(), a.cpu_us_per_reading(), b.seconds, b.rate(),
        b.cpu_us_per_reading(), static_cast<unsigned long long>(b.checkpoints),
        100.0 * (1.0 - b.rate() / a.rate()), cpu_cost);
    std::fflush(stdout);
    round_costs.push_back(100.0 * (1.0 - b.rate() / a.rate()));
    round_cpu_costs.push_back(cpu_cost);
    if (a.rate() > off.rate()) off = a;
    if (b.rate() > on.rate()) on = b;
  }
  std::sort(round_costs.begin(), round_costs.end());
  const double median_cost = round_costs[round_costs.size() / 2];
  std::sort(round_cpu_costs.begin(), round_cpu_costs.end());
  const double median_cpu_cost = round_cpu_costs[round_cpu_costs.size() / 2];
  const double rate_off = off.rate();
  const double rate_on = on.rate();
  const double cost = 100.0 * (1.0 - rate_on / rate_off);
  std::printf(
      "end to end, %llu readings, best of %d: without checkpoints %.2f s (%.0f readings/s); with "
      "a checkpoint every %.0f s %.2f s (%.0f readings/s, %llu checkpoints): cost %.1f %% "
      "(median of the rounds %.1f %%); CPU per reading: median of the rounds %.1f %% more\n",
      static_cast<unsigned long long>(off.readings), rounds, off.seconds, rate_off, interval_s,
      on.seconds, rate_on, static_cast<unsigned long long>(on.checkpoints), cost, median_cost,
      median_cpu_cost);
  const CheckpointCosts& k = on.costs;
  auto ms = [](DurationUs d) { return static_cast<double>(d) / 1e3; };
  std::printf(
      "checkpoint time in that run: %llu snapshots %.0f ms on the process thread (last %.1f "
      "MB); on the sink thread epoch log %.0f ms (%.1f MB), prepare %.0f ms, fsync %.0f ms, "
      "store %.0f ms, commit %.0f ms\n",
      static_cast<unsigned long long>(k.taken), ms(k.snapshot),
      static_cast<double>(k.state_bytes) / 1e6, ms(k.epoch_write),
      static_cast<double>(k.epoch_bytes) / 1e6, ms(k.prepare), ms(k.epoch_sync), ms(k.save),
      ms(k.commit));
  std::fflush(stdout);

  // 2. Large state.
  std::string yaml =
      "windows:\n  - name: day\n    type: tumbling\n    size: 1d\n    grace: 1d\n"
      "    aggregates: [mean, median]\n";
  Result<PipelineConfig> config = ParsePipelineConfig(yaml, "<bench>");
  if (!config.ok()) Die(config.status());
  Result<std::unique_ptr<WindowOperator>> op =
      MakeWindowOperator(*config, [] { return TimeUs{0}; });
  if (!op.ok()) Die(op.status());
  Ledger ledger;
  RunContext ctx;
  ctx.config = &*config;
  ctx.ledger = &ledger;
  if (Status st = (*op)->Open(ctx); !st.ok()) Die(st);
  const TimeUs start = 1714521600LL * kMicrosPerSecond;
  const Symbol metric = Intern("pm25");
  constexpr int kDevices = 100000;
  std::vector<Symbol> devices;
  for (int d = 0; d < kDevices; ++d) devices.push_back(Intern("dev-" + std::to_string(d)));
  auto t_fill = std::chrono::steady_clock::now();
  uint64_t fed = 0;
  TimeUs t = start;
  // Until both the operator's accounting (which counts reserved capacity) and the
  // values kept (8 bytes each, what the snapshot writes) reach state_mb.
  while ((*op)->Stats().state_bytes < static_cast<size_t>(state_mb * 1e6) ||
         static_cast<double>(fed) * sizeof(double) < state_mb * 1e6) {
    Batch batch;
    for (int i = 0; i < 100000; ++i, ++fed) {
      Reading r;
      r.device = devices[fed % kDevices];
      r.metric = metric;
      r.event_time = t + static_cast<TimeUs>(fed % 1000);
      r.arrival_time = r.event_time;
      r.value = static_cast<double>(fed % 977) * 0.1;
      r.lat = 52.5;
      r.lon = 13.4;
      batch.readings.push_back(r);
    }
    t += kMicrosPerSecond;  // stays inside the one-day window
    if (Status st = (*op)->Process(batch); !st.ok()) Die(st);
  }
  const double fill_s = Seconds(t_fill);
  const WindowStats stats = (*op)->Stats();
  auto t_snap = std::chrono::steady_clock::now();
  CheckpointWriter w;
  if (Status st = (*op)->Snapshot(w); !st.ok()) Die(st);
  const double snap_s = Seconds(t_snap);
  StoredCheckpoint c;
  c.id = 1;
  c.state = w.Take();
  const size_t state_bytes = c.state.size();
  CheckpointStore store;
  if (Status st = store.Open(root + "/state", 1); !st.ok()) Die(st);
  auto t_save = std::chrono::steady_clock::now();
  if (Status st = store.Save(c); !st.ok()) Die(st);
  const double save_s = Seconds(t_save);
  c.state.clear();
  c.state.shrink_to_fit();
  auto t_load = std::chrono::steady_clock::now();
  Result<std::optional<StoredCheckpoint>> loaded = store.Latest();
  if (!loaded.ok() || !*loaded)
    Die(loaded.ok() ? Status::NotFound("no checkpoint") : loaded.status());
  const double load_s = Seconds(t_load);
  Result<std::unique_ptr<WindowOperator>> fresh =
      MakeWindowOperator(*config, [] { return TimeUs{0}; });
  if (!fresh.ok()) Die(fresh.status());
  if (Status st = (*fresh)->Open(ctx); !st.ok()) Die(st);
  auto t_restore = std::chrono::steady_clock::now();
  CheckpointReader in((*loaded)->state);
  if (Status st = (*fresh)->Restore(in); !st.ok()) Die(st);
  const double restore_s = Seconds(t_restore);
  const WindowStats restored = (*fresh)->Stats();
  std::printf(
      "window state %.0f MB (%zu windows, %llu readings fed in %.1f s): snapshot %.2f s "
      "(%.0f MB encoded), save %.2f s, load %.2f s, restore %.2f s; recovery (load + "
      "restore) %.2f s; restored state %.0f MB, %zu windows\n",
      static_cast<double>(stats.state_bytes) / 1e6, stats.open_windows,
      static_cast<unsigned long long>(fed), fill_s, snap_s, static_cast<double>(state_bytes) / 1e6,
      save_s, load_s, restore_s, load_s + restore_s,
      static_cast<double>(restored.state_bytes) / 1e6, restored.open_windows);
  std::printf(
      "{\"bench\":\"checkpoint\",\"readings\":%llu,\"readings_per_s_off\":%.0f,"
      "\"readings_per_s_on\":%.0f,\"interval_s\":%.1f,\"checkpoints\":%llu,\"cost_pct\":%.2f,"
      "\"median_cost_pct\":%.2f,\"median_cpu_cost_pct\":%.2f,\"rounds\":%d,"
      "\"state_mb\":%.0f,\"encoded_mb\":%.0f,\"snapshot_s\":%.3f,\"save_s\":%.3f,"
      "\"load_s\":%.3f,\"restore_s\":%.3f,\"peak_rss_mb\":%.0f}\n",
      static_cast<unsigned long long>(off.readings), rate_off, rate_on, interval_s,
      static_cast<unsigned long long>(on.checkpoints), cost, median_cost, median_cpu_cost, rounds,
      static_cast<double>(stats.state_bytes) / 1e6, static_cast<double>(state_bytes) / 1e6, snap_s,
      save_s, load_s, restore_s, PeakRssMb());
  std::filesystem::remove_all(root);
  return restored.open_windows == stats.open_windows ? 0 : 1;
}
