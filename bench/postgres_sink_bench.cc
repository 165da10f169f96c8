// Throughput of the postgres sink: readings per second (wall clock) from Write to
// committed transactions (binary COPY straight into the day-partitioned readings table
// with its primary key, the sink_commits rows, COMMIT; over one or two connections)
// against a real server, GiST index included: built per closed day during the run
// (`geom_index: on_close`, the devices report once a minute, so a day closes about every
// 2.2 million rows) or on insert over the whole table.
// BM_PostgresSinkReplay sends every batch twice, so the second copy of each takes the
// fallback (unique violation, back to the savepoint, staging table, INSERT ... ON
// CONFLICT DO NOTHING) and inserts nothing.
//
//   export TRIBUTARY_BENCH_PG='host=127.0.0.1 port=5432 dbname=postgres user=tributary'
//   postgres_sink_bench --benchmark_filter=Readings
// or with a server of its own: bench/postgres_bench.sh --benchmark_filter=Readings
//
// The schema `bench_<pid>` is created for the run and dropped at the end. Rows are shaped
// like the simulator's: 500 devices × 3 metrics with position, zone, H3 cell, flags and
// provenance; event times advance every iteration so no row is ignored as a duplicate.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/run_context.h"
#include "io/sinks/pg_conn.h"
#include "io/sinks/postgres_sink.h"

namespace tributary {
namespace {

constexpr TimeUs kStart = 1714564800000000;              // 2024-05-01T12:00:00Z
constexpr DurationUs kInterval = 60 * kMicrosPerSecond;  // every device reports once a minute
constexpr int kDevices = 500;
const char* const kMetrics[] = {"pm25", "no2", "temperature"};

std::vector<Reading> MakeReadings(size_t n, TimeUs& clock) {
  std::vector<Reading> out;
  out.reserve(n);
  while (out.size() < n) {
    for (int d = 0; d < kDevices && out.size() < n; ++d) {
      for (const char* m : kMetrics) {
        Reading r;
        r.device = Intern("node-" + std::to_string(d));
        r.metric = Intern(m);
        r.value = 10.0 + d % 17;
        r.event_time = clock;
        r.arrival_time = clock + 2 * kMicrosPerSecond;
        r.lat = 48.1 + d * 0.0003;
        r.lon = 16.2 + d * 0.0004;
        r.h3 = 0x85283473fffffffULL;
        r.zone = Intern("zone-" + std::to_string(d % 12));
        r.flags.Set(QcFlag::kCalibrated);
        r.prov.source = Intern("simulator");
        r.prov.topic = Intern("sim/air");
        r.prov.offset = static_cast<int64_t>(out.size());
        out.push_back(r);
      }
    }
    clock += kInterval;
  }
  return out;
}

// Fresh rows per commit (`replay` false), or each batch written and committed untimed and
// then written and committed again, timed: every row is stored already, the path of a
// replay after a crash or a lost acknowledgement.
void RunPostgresSink(benchmark::State& state, bool replay) {
  const char* conninfo = std::getenv("TRIBUTARY_BENCH_PG");
  if (conninfo == nullptr) {
    state.SkipWithError("set TRIBUTARY_BENCH_PG to a libpq connection string");
    return;
  }
  const size_t rows = static_cast<size_t>(state.range(0));
  PostgresSinkOptions o;
  o.name = "bench";
  o.conninfo = conninfo;
  o.schema = std::string(replay ? "bench_replay_" : "bench_") + std::to_string(::getpid());
  o.batch_rows = static_cast<int64_t>(rows);
  o.connections = static_cast<int>(state.range(1));
  o.geom_index_on_close = state.range(2) != 0;
  Ledger ledger;
  RunContext ctx;
  ctx.ledger = &ledger;
  auto sink = MakePostgresSink(o);
  Status st = sink->Open(ctx);
  if (!st.ok()) {
    state.SkipWithError(st.ToString().c_str());
    return;
  }
  TimeUs clock = kStart;
  Batch b;
  for (auto _ : state) {
    state.PauseTiming();
    b.readings = MakeReadings(rows, clock);
    if (replay) {
      st = sink->Write(b);
      if (st.ok()) st = sink->Commit();
    }
    state.ResumeTiming();
    if (st.ok()) st = sink->Write(b);
    if (st.ok()) st = sink->Commit();
    if (!st.ok()) {
      state.SkipWithError(st.ToString().c_str());
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * rows));
  state.counters["rows_per_s"] = benchmark::Counter(static_cast<double>(state.iterations() * rows),
                                                    benchmark::Counter::kIsRate);
  sink->Close();
  PgConnection c;
  if (c.Connect(conninfo, "tributary-bench", 5).ok()) {
    (void)c.Exec("DROP SCHEMA " + PgQuoteIdent(o.schema) + " CASCADE");
  }
}

void BM_PostgresSinkReadings(benchmark::State& state) {
  RunPostgresSink(state, false);
}
// Arguments: rows per commit, connections, GiST index per closed partition (1) or on
// insert (0).
BENCHMARK(BM_PostgresSinkReadings)
    ->ArgNames({"rows", "connections", "on_close"})
    ->Args({100000, 2, 1})
    ->Args({100000, 1, 1})
    ->Args({100000, 2, 0})
    ->Args({100000, 1, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_PostgresSinkReplay(benchmark::State& state) {
  RunPostgresSink(state, true);
}
BENCHMARK(BM_PostgresSinkReplay)
    ->ArgNames({"rows", "connections", "on_close"})
    ->Args({100000, 2, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace tributary

BENCHMARK_MAIN();
