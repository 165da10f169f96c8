// Window operator throughput and state size.
//
// 1,000 devices × 5 metrics report once per second of event time; each benchmark
// iteration is one such second (5,000 readings, one batch) through 1-minute tumbling
// windows computing count, mean, min, max and std. Arguments: grace in minutes
// (state held after a window's end), grouping (0 = per device, 1 = all) and mode:
//   0  count, mean, min, max, std
//   1  plus the order statistics median, p95, p10 and trimmed_mean (values kept)
//   2  session windows (gap 30 s) over bursts: each device reports for 20 s of
//      every minute, so about a third of the readings arrive per second
//   3  15-minute windows sliding every minute (count, mean, min, max, std), with the
//      two-tier pre-aggregation (1-minute panes, the default)
//   4  the same without panes (`pane: 0s`: each reading goes into 15 windows)
//   5  15-minute windows sliding every minute with every aggregate (mode 1's) on panes
// The per-minute quality flags (history per key) are computed in every mode.
// Counters: readings/s, open windows at the end, and bytes per open window, both as
// the operator accounts it (Stats) and as measured on the heap (glibc mallinfo2).
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <random>
#include <string>

#include "stream/window.h"

namespace tributary {
namespace {

constexpr int kDevices = 1000;
constexpr const char* kMetrics[] = {"pm25", "pm10", "no2", "temperature", "humidity"};
constexpr int kMetricCount = 5;

PipelineConfig MakeConfig(int grace_minutes, bool group_all, int mode) {
  std::string yaml =
      "processing:\n  out_of_orderness: 5s\n  grace: " + std::to_string(grace_minutes) +
      "m\nwindows:\n  - name: w1m\n    group_by: " + (group_all ? "all" : "device") + "\n";
  const std::string all_aggregates =
      "[count, mean, min, max, std, median, p95, p10, trimmed_mean]\n";
  if (mode == 2) {
    yaml += "    type: session\n    gap: 30s\n    aggregates: [count, mean, min, max, std]\n";
  } else if (mode >= 3) {
    yaml += "    type: sliding\n    size: 15m\n    step: 1m\n";
    if (mode == 4) yaml += "    pane: 0s\n";
    yaml += "    aggregates: " +
            (mode == 5 ? all_aggregates : std::string("[count, mean, min, max, std]\n"));
  } else if (mode == 1) {
    yaml +=
        "    size: 1m\n    aggregates: [count, mean, min, max, std, median, p95, p10, "
        "trimmed_mean]\n";
  } else {
    yaml += "    size: 1m\n    aggregates: [count, mean, min, max, std]\n";
  }
  Result<PipelineConfig> config = ParsePipelineConfig(yaml, "window_bench");
  if (!config.ok()) std::abort();
  return std::move(config).value();
}

size_t HeapInUse() {
  return mallinfo2().uordblks;
}

void BM_WindowTumbling1m(benchmark::State& state) {
  const int grace_minutes = static_cast<int>(state.range(0));
  const bool group_all = state.range(1) != 0;
  const int mode = static_cast<int>(state.range(2));
  PipelineConfig config = MakeConfig(grace_minutes, group_all, mode);

  // The batch buffer and the interned names exist before the heap baseline.
  std::mt19937_64 rng(1);
  std::normal_distribution<double> noise(0.0, 1.0);
  Batch batch;
  batch.readings.resize(static_cast<size_t>(kDevices) * kMetricCount);
  for (int d = 0; d < kDevices; ++d) {
    for (int m = 0; m < kMetricCount; ++m) {
      Reading& r = batch.readings[static_cast<size_t>(d) * kMetricCount + m];
      r.device = Intern("sensor-" + std::to_string(d));
      r.metric = Intern(kMetrics[m]);
      r.lat = 48.1 + d * 1e-4;
      r.lon = 11.5 + d * 1e-4;
      r.prov.source = Intern("bench");
    }
  }
  const std::vector<Reading> all = batch.readings;
  std::vector<double> jitter(batch.readings.size());
  for (double& j : jitter) j = std::abs(noise(rng)) * 2e5;  // up to ~1 s late, µs
  // Room for every row emitted at once, so the buffer never grows inside the heap
  // measurement below.
  batch.windows.reserve(4 * batch.readings.size());

  const size_t heap_before = HeapInUse();
  auto made = MakeWindowOperator(config, NowUs);
  if (!made.ok()) std::abort();
  WindowOperator& op = **made;
  Ledger ledger;
  RunContext ctx;
  ctx.config = &config;
  ctx.ledger = &ledger;
  if (!op.Open(ctx).ok()) std::abort();

  const TimeUs t0 = 1700000000LL * kMicrosPerSecond;
  int64_t tick = 0;
  size_t emitted = 0;
  int64_t readings = 0;
  size_t peak_windows = 0;
  WindowStats peak;
  for (auto _ : state) {
    state.PauseTiming();
    const TimeUs now = t0 + tick * kMicrosPerSecond;
    if (mode == 2) {  // bursts: device d reports while (tick + 7·d) mod 60 < 20
      batch.readings.clear();
      for (size_t i = 0; i < all.size(); ++i) {
        const int64_t d = static_cast<int64_t>(i) / kMetricCount;
        if ((tick + 7 * d) % 60 < 20) batch.readings.push_back(all[i]);
      }
    }
    for (size_t i = 0; i < batch.readings.size(); ++i) {
      Reading& r = batch.readings[i];
      r.event_time = now - static_cast<TimeUs>(jitter[(i + tick) % jitter.size()]);
      r.arrival_time = now;
      r.value = 20.0 + 5.0 * std::sin(static_cast<double>(tick) / 600.0) +
                0.01 * static_cast<double>(i % 97);
    }
    batch.windows.clear();
    batch.late.clear();
    state.ResumeTiming();

    readings += static_cast<int64_t>(batch.readings.size());
    if (!op.Process(batch).ok()) std::abort();
    emitted += batch.windows.size();
    ++tick;

    state.PauseTiming();
    if (tick % 60 == 59) {  // just before a minute closes: the most windows are open
      WindowStats s = op.Stats();
      if (s.open_windows > peak_windows) {
        peak_windows = s.open_windows;
        peak = s;
      }
    }
    state.ResumeTiming();
  }
  WindowStats end_stats = op.Stats();
  const size_t heap_after = HeapInUse();
  if (peak_windows == 0) peak = end_stats;

  state.SetItemsProcessed(readings);
  state.counters["windows_emitted"] = static_cast<double>(emitted);
  state.counters["open_windows"] = static_cast<double>(end_stats.open_windows);
  state.counters["open_panes"] = static_cast<double>(end_stats.open_panes);
  state.counters["bytes_per_window"] =
      peak.open_windows == 0
          ? 0.0
          : static_cast<double>(peak.state_bytes) / static_cast<double>(peak.open_windows);
  state.counters["heap_bytes_per_window"] = end_stats.open_windows == 0 || heap_after < heap_before
                                                ? 0.0
                                                : static_cast<double>(heap_after - heap_before) /
                                                      static_cast<double>(end_stats.open_windows);
  state.counters["accumulator_bytes"] = static_cast<double>(sizeof(WindowAccumulator));
  state.counters["late"] = static_cast<double>(ledger.Snapshot().late);
}

BENCHMARK(BM_WindowTumbling1m)
    ->ArgNames({"grace_min", "group_all", "mode"})
    ->Args({0, 0, 0})
    ->Args({15, 0, 0})
    ->Args({0, 1, 0})
    ->Args({0, 0, 1})
    ->Args({0, 1, 1})
    ->Args({0, 0, 2})
    ->Args({0, 0, 3})
    ->Args({15, 0, 3})
    ->Args({0, 0, 4})
    ->Args({0, 0, 5})
    ->Unit(benchmark::kMillisecond)
    ->MinTime(2.0);

}  // namespace
}  // namespace tributary

BENCHMARK_MAIN();
