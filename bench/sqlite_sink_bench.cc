// Throughput of the sqlite sink: readings and window rows per second (wall clock) into a
// real file, in transactions of `batch_rows` rows, plus the per-row formatting it does
// (provenance JSON; FormatTime, which the sink replaces by a per-day cached formatter)
// so their share of the budget is visible.
//
//   sqlite_sink_bench --benchmark_filter=Readings
//
// Rows are shaped like the simulator's: 500 devices × 3 metrics, one reading per
// device and metric every 10 s, each with position, zone, H3 cell, flags and
// provenance (source, topic, offset). Event times advance every iteration so no row is
// ignored as a duplicate.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/run_context.h"
#include "io/sinks/sqlite_sink.h"

namespace tributary {
namespace {

constexpr TimeUs kStart = 1714564800000000;  // 2024-05-01T12:00:00Z
constexpr int kDevices = 500;
const char* const kMetrics[] = {"pm25", "no2", "temperature"};

// A fresh folder under the system temp dir, removed with its content at the end.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tributary-bench-XXXXXX").string();
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<Reading> MakeReadings(size_t n) {
  std::vector<Reading> out;
  out.reserve(n);
  Symbol source = Intern("simulator");
  Symbol zone = Intern("zone-07");
  for (size_t i = 0; i < n; ++i) {
    Reading r;
    int device = static_cast<int>(i / 3 % kDevices);
    r.device = Intern("node-" + std::to_string(device));
    r.metric = Intern(kMetrics[i % 3]);
    r.value = 10.0 + static_cast<double>(i % 97) * 0.25;
    r.event_time = kStart + static_cast<TimeUs>(i / (3 * kDevices)) * 10 * kMicrosPerSecond;
    r.arrival_time = r.event_time + 1500 * kMicrosPerMilli;
    r.lat = 48.2 + device * 1e-4;
    r.lon = 16.3 + device * 1e-4;
    r.h3 = 0x85283473fffffffULL + static_cast<uint64_t>(device % 7);
    r.zone = zone;
    r.flags.Set(QcFlag::kCalibrated);
    r.prov.source = source;
    r.prov.topic = Intern("city/air/node-" + std::to_string(device));
    r.prov.offset = static_cast<int64_t>(i);
    out.push_back(r);
  }
  return out;
}

// Write batches of range(0) readings; the sink commits every range(1) rows.
void BM_SqliteSinkReadings(benchmark::State& state) {
  const size_t batch_size = static_cast<size_t>(state.range(0));
  ScratchDir dir;
  Ledger ledger;
  RunContext ctx;
  ctx.ledger = &ledger;
  ctx.data_dir = dir.path();
  SqliteSinkOptions options;
  options.name = "bench";
  options.batch_rows = state.range(1);
  options.synchronous = state.range(2) != 0 ? SqliteSynchronous::kNormal : SqliteSynchronous::kOff;
  auto sink = MakeSqliteSink(options);
  if (Status st = sink->Open(ctx); !st.ok()) {
    state.SkipWithError(st.ToString().c_str());
    return;
  }
  Batch batch;
  batch.readings = MakeReadings(batch_size);
  // Each batch covers this much event time; shifting by it keeps every key new.
  const TimeUs span =
      (static_cast<TimeUs>(batch_size) / (3 * kDevices) + 1) * 10 * kMicrosPerSecond;
  int64_t rows = 0;
  for (auto _ : state) {
    if (Status st = sink->Write(batch); !st.ok()) {
      state.SkipWithError(st.ToString().c_str());
      break;
    }
    rows += static_cast<int64_t>(batch_size);
    for (Reading& r : batch.readings) {
      r.event_time += span;
      r.arrival_time += span;
    }
  }
  if (Status st = sink->Commit(); !st.ok()) state.SkipWithError(st.ToString().c_str());
  sink->Close();
  state.SetItemsProcessed(rows);
  LedgerSnapshot s = ledger.Snapshot();
  state.counters["committed"] = static_cast<double>(s.sink_committed["bench/readings"]);
}
BENCHMARK(BM_SqliteSinkReadings)
    ->ArgNames({"batch", "batch_rows", "sync"})
    ->Args({1024, 50000, 1})
    ->Args({1024, 50000, 0})
    ->Args({1024, 4096, 1})
    ->Args({16384, 50000, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

void BM_SqliteSinkWindows(benchmark::State& state) {
  ScratchDir dir;
  Ledger ledger;
  RunContext ctx;
  ctx.ledger = &ledger;
  ctx.data_dir = dir.path();
  SqliteSinkOptions options;
  options.name = "bench";
  auto sink = MakeSqliteSink(options);
  if (Status st = sink->Open(ctx); !st.ok()) {
    state.SkipWithError(st.ToString().c_str());
    return;
  }
  Batch batch;
  for (int d = 0; d < kDevices; ++d) {
    for (const char* m : kMetrics) {
      WindowResult w;
      w.window = Intern("device_1m");
      w.group_by = Intern("device");
      w.group = Intern("node-" + std::to_string(d));
      w.metric = Intern(m);
      w.start = kStart;
      w.end = kStart + kMicrosPerMinute;
      w.count = 6;
      w.mean = w.min = w.max = w.median = w.p95 = 12.0;
      w.std = 0.5;
      w.distinct_sensors = 1;
      w.aggregation_method = Intern("mean");
      w.emitted_at = w.end + kMicrosPerSecond;
      batch.windows.push_back(w);
    }
  }
  int64_t rows = 0;
  for (auto _ : state) {
    if (Status st = sink->Write(batch); !st.ok()) {
      state.SkipWithError(st.ToString().c_str());
      break;
    }
    rows += static_cast<int64_t>(batch.windows.size());
    for (WindowResult& w : batch.windows) {
      w.start += kMicrosPerMinute;
      w.end += kMicrosPerMinute;
      w.emitted_at += kMicrosPerMinute;
    }
  }
  if (Status st = sink->Commit(); !st.ok()) state.SkipWithError(st.ToString().c_str());
  sink->Close();
  state.SetItemsProcessed(rows);
}
BENCHMARK(BM_SqliteSinkWindows)->UseRealTime()->Unit(benchmark::kMicrosecond);

// The per-row formatting the readings table needs, measured alone.
void BM_ProvenanceJson(benchmark::State& state) {
  std::vector<Reading> readings = MakeReadings(1024);
  size_t i = 0;
  for (auto _ : state) {
    const Reading& r = readings[i++ & 1023];
    benchmark::DoNotOptimize(ProvenanceToJson(r.prov, r.device, r.flags));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ProvenanceJson);

void BM_FormatTime(benchmark::State& state) {
  TimeUs t = kStart;
  for (auto _ : state) {
    benchmark::DoNotOptimize(FormatTime(t));
    t += 10 * kMicrosPerSecond + 1;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FormatTime);

}  // namespace
}  // namespace tributary

BENCHMARK_MAIN();
