// Throughput of the parquet sink: readings per second (wall clock) from Write through
// the Commit that writes and renames the zstd GeoParquet files, into a real folder.
//
//   parquet_sink_bench --benchmark_filter=Readings
//
// Rows are shaped like the simulator's: 500 devices × 3 metrics, one reading per device
// and metric every 10 s, each with position, zone, H3 cell, flags and provenance. One
// iteration writes `rows` readings in batches of 1024 and commits once (one file per
// metric partition), as a pipeline commit interval would.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/run_context.h"
#include "io/sinks/parquet_sink.h"

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

// range(0) readings per commit, range(1) DuckDB threads.
void BM_ParquetSinkReadings(benchmark::State& state) {
  const size_t rows_per_commit = static_cast<size_t>(state.range(0));
  constexpr size_t kBatch = 1024;
  ScratchDir dir;
  Ledger ledger;
  RunContext ctx;
  ctx.ledger = &ledger;
  ctx.data_dir = dir.path();
  ParquetSinkOptions options;
  options.name = "bench";
  options.threads = static_cast<int>(state.range(1));
  Result<std::unique_ptr<Sink>> made = MakeParquetSink(options);
  if (!made.ok()) {
    state.SkipWithError(made.status().ToString().c_str());
    return;
  }
  std::unique_ptr<Sink> sink = std::move(*made);
  if (Status st = sink->Open(ctx); !st.ok()) {
    state.SkipWithError(st.ToString().c_str());
    return;
  }
  std::vector<Reading> all = MakeReadings(rows_per_commit);
  std::vector<Batch> batches;
  for (size_t i = 0; i < all.size(); i += kBatch) {
    Batch b;
    b.readings.assign(all.begin() + static_cast<ptrdiff_t>(i),
                      all.begin() + static_cast<ptrdiff_t>(std::min(all.size(), i + kBatch)));
    batches.push_back(std::move(b));
  }
  int64_t rows = 0;
  double commit_seconds = 0;
  for (auto _ : state) {
    for (const Batch& b : batches) {
      if (Status st = sink->Write(b); !st.ok()) {
        state.SkipWithError(st.ToString().c_str());
        return;
      }
    }
    auto commit_start = std::chrono::steady_clock::now();
    if (Status st = sink->Commit(); !st.ok()) {
      state.SkipWithError(st.ToString().c_str());
      return;
    }
    commit_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - commit_start).count();
    rows += static_cast<int64_t>(rows_per_commit);
  }
  sink->Close();
  state.SetItemsProcessed(rows);
  uint64_t bytes = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path())) {
    if (e.is_regular_file()) bytes += e.file_size();
  }
  LedgerSnapshot s = ledger.Snapshot();
  state.counters["committed"] = static_cast<double>(s.sink_committed["bench/readings"]);
  // Share of the wall time spent in Commit (writing files), the rest is Write (buffering).
  state.counters["commit_s"] =
      benchmark::Counter(commit_seconds, benchmark::Counter::kAvgIterations);
  state.counters["bytes_per_row"] =
      rows > 0 ? static_cast<double>(bytes) / static_cast<double>(rows) : 0;
}
BENCHMARK(BM_ParquetSinkReadings)
    ->ArgNames({"rows", "threads"})
    ->Args({100000, 1})
    ->Args({1000000, 1})
    ->Args({1000000, 2})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tributary

BENCHMARK_MAIN();
