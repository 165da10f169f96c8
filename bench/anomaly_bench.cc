// Cost of calibration drift, the isolation forest and pattern rules in the processing
// path: the same simulated JSON payloads, held in memory, go through ingestion and the
// window operator (1-minute tumbling windows per device) alone, and with the drift,
// anomaly and pattern operators added. Generation is not timed; the two chains run
// alternately, `rounds` times each, and the best round of each is compared.
//
//   build/ci/bench/anomaly_bench [messages] [devices] [rounds] [trees] [sample_size]
//
// Prints one line per chain and, last, one JSON object with both rates and the cost.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "alert/patterns.h"
#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "ingest/ingest.h"
#include "io/sources/simulator.h"
#include "stream/qc/drift.h"
#include "stream/qc/iforest.h"
#include "stream/window.h"

using namespace tributary;

namespace {

[[noreturn]] void Die(const Status& st) {
  std::fprintf(stderr, "anomaly_bench: %s\n", st.ToString().c_str());
  std::exit(1);
}

const char* kYaml = R"(pipeline:
  name: bench
sources:
  - name: simulator
    type: simulator
windows:
  - name: device_1m
    type: tumbling
    size: 1m
    group_by: device
    aggregates: [count, mean, min, max]
alerts:
  patterns:
    - name: front
      kind: co_occurrence
      within: 30m
      radius_m: 8000
      conditions:
        - {metric: temperature, trend: rising, min_change: 3}
        - {metric: pressure, trend: falling, min_change: 2}
    - name: plume
      kind: sequence
      count: 3
      within: 30m
      radius_m: 3000
      conditions: [{metric: pm25, trend: rising, min_change: 20, over: 10m}]
)";

struct Round {
  double seconds = 0;
  uint64_t readings = 0, alerts = 0, anomalies = 0;
  std::vector<std::pair<std::string, double>> op_seconds;  // time inside each operator
};

size_t g_trees = 100, g_sample = 256;

Round RunOnce(const PipelineConfig& config, const std::vector<RawBatch>& batches, bool qc) {
  Result<std::unique_ptr<IngestStage>> ingest = IngestStage::Make(config);
  if (!ingest.ok()) Die(ingest.status());
  std::vector<std::unique_ptr<Operator>> ops;
  if (qc) {
    DriftOptions d;
    d.enabled = true;
    d.metrics = {Intern("pm25"), Intern("no2")};
    d.min_pairs = 6;
    d.window = 24 * kMicrosPerHour;
    d.apply_correction = true;
    d.severity = Intern("warning");
    // Every even-numbered air-quality node is paired with the node before it.
    ReferenceLookup lookup = [](std::string_view dev) -> std::string {
      if (dev.substr(0, 3) != "aq-") return {};
      int n = std::atoi(std::string(dev.substr(3)).c_str());
      if (n % 2 != 0) return {};
      char buf[16];
      std::snprintf(buf, sizeof buf, "aq-%04d", n - 1);
      return buf;
    };
    ops.push_back(std::make_unique<DriftOperator>(
        d, lookup, std::vector<std::pair<std::string, std::string>>{}));
    AnomalyOptions a;
    a.enabled = true;
    for (const char* m : {"pm25", "pm10", "no2", "temperature", "humidity"}) {
      a.metrics.push_back(Intern(m));
    }
    a.forest.trees = g_trees;
    a.forest.sample_size = g_sample;
    a.min_samples = 240;  // the run covers hours, not days: let models train and score
    a.shadow = 30 * kMicrosPerMinute;
    ops.push_back(std::make_unique<AnomalyOperator>(a));
  }
  Result<std::unique_ptr<Operator>> window = MakeWindowOperator(config);
  if (!window.ok()) Die(window.status());
  ops.push_back(std::move(window).value());
  if (qc) {
    Result<std::unique_ptr<PatternOperator>> p = PatternOperator::Make(config);
    if (!p.ok()) Die(p.status());
    ops.push_back(std::move(p).value());
  }
  Ledger ledger;
  RunContext ctx;
  ctx.config = &config;
  ctx.ledger = &ledger;
  if (Status st = (*ingest)->Open(ctx); !st.ok()) Die(st);
  for (auto& op : ops) {
    if (Status st = op->Open(ctx); !st.ok()) Die(st);
  }
  Round r;
  for (auto& op : ops) r.op_seconds.emplace_back(std::string(op->name()), 0.0);
  auto start = std::chrono::steady_clock::now();
  for (const RawBatch& raw : batches) {
    Batch batch;
    if (Status st = (*ingest)->Process(raw, batch); !st.ok()) Die(st);
    for (size_t k = 0; k < ops.size(); ++k) {
      auto t0 = std::chrono::steady_clock::now();
      if (Status st = ops[k]->Process(batch); !st.ok()) Die(st);
      r.op_seconds[k].second +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    r.alerts += batch.alerts.size();
    for (const Reading& x : batch.readings) r.anomalies += x.flags.Has(QcFlag::kAnomaly);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.readings = ledger.Snapshot().input;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t target_messages = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 500000;
  const int64_t devices = argc > 2 ? std::strtoll(argv[2], nullptr, 10) : 200;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
  if (argc > 4) g_trees = std::strtoull(argv[4], nullptr, 10);
  if (argc > 5) g_sample = std::strtoull(argv[5], nullptr, 10);
  Result<PipelineConfig> config = ParsePipelineConfig(kYaml, "<bench>");
  if (!config.ok()) Die(config.status());
  SimulatorOptions so;
  so.devices = devices;
  so.start = 1714521600LL * kMicrosPerSecond;  // 2024-05-01T00:00:00Z
  so.as_fast_as_possible = true;
  Simulator sim(so);
  std::vector<RawBatch> batches;
  SimMessage msg;
  Symbol topic = Intern("sim");
  uint64_t messages = 0;
  while (messages < target_messages && sim.Next(msg)) {
    if (batches.empty() || batches.back().size() >= config->batch_size) batches.emplace_back();
    batches.back().Add(msg.payload, msg.arrival_time, topic, static_cast<int64_t>(msg.sequence), 0);
    ++messages;
  }
  Round base, qc;
  for (int i = 0; i < rounds; ++i) {
    Round b = RunOnce(*config, batches, false);
    Round q = RunOnce(*config, batches, true);
    if (i == 0 || b.seconds < base.seconds) base = b;
    if (i == 0 || q.seconds < qc.seconds) qc = q;
  }
  double base_rate = static_cast<double>(base.readings) / base.seconds;
  double qc_rate = static_cast<double>(qc.readings) / qc.seconds;
  double cost = 1.0 - qc_rate / base_rate;
  std::printf("ingest+window:                %.3f s, %.0f readings/s\n", base.seconds, base_rate);
  std::printf(
      "ingest+drift+iforest+window+patterns: %.3f s, %.0f readings/s (%llu ANOMALY, %llu "
      "alerts)\n",
      qc.seconds, qc_rate, static_cast<unsigned long long>(qc.anomalies),
      static_cast<unsigned long long>(qc.alerts));
  std::printf("throughput cost of drift + isolation forest + patterns: %.1f %%\n", 100.0 * cost);
  std::printf("time inside each operator (best rounds):");
  for (const auto& [name, secs] : base.op_seconds) std::printf(" %s %.3f s", name.c_str(), secs);
  std::printf(" | with QC:");
  for (const auto& [name, secs] : qc.op_seconds) std::printf(" %s %.3f s", name.c_str(), secs);
  std::printf("\n");
  std::printf(
      "{\"bench\":\"anomaly\",\"messages\":%llu,\"readings\":%llu,\"base_readings_per_s\":%.0f,"
      "\"qc_readings_per_s\":%.0f,\"cost\":%.4f}\n",
      static_cast<unsigned long long>(messages), static_cast<unsigned long long>(base.readings),
      base_rate, qc_rate, cost);
  return 0;
}
