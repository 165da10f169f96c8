// End-to-end processing benchmark: simulated JSON payloads held in memory go through
// ingestion (decode, normalise, validate, dedup) and the window operator (1-minute
// tumbling windows per device and metric). Generation is not timed.
//
//   build/release/bench/pipeline_bench [messages] [devices]
//
// Prints a human summary and, as the last line, one JSON object with readings/s and
// peak RSS.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "ingest/ingest.h"
#include "io/sources/simulator.h"
#include "stream/window.h"

using namespace tributary;

namespace {

double PeakRssMb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

[[noreturn]] void Die(const Status& st) {
  std::fprintf(stderr, "pipeline_bench: %s\n", st.ToString().c_str());
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t target_messages = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
  const int64_t devices = argc > 2 ? std::strtoll(argv[2], nullptr, 10) : 1000;

  std::string yaml = R"(pipeline:
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
)";
  Result<PipelineConfig> config = ParsePipelineConfig(yaml, "<bench>");
  if (!config.ok()) Die(config.status());

  // Generate the input in memory, in batches as the source would hand them on.
  SimulatorOptions sim_options;
  sim_options.devices = devices;
  sim_options.start = 1714521600LL * kMicrosPerSecond;  // 2024-05-01T00:00:00Z
  sim_options.as_fast_as_possible = true;
  Simulator sim(sim_options);
  std::vector<RawBatch> batches;
  SimMessage msg;
  Symbol topic = Intern("sim");
  uint64_t messages = 0;
  while (messages < target_messages && sim.Next(msg)) {
    if (batches.empty() || batches.back().size() >= config->batch_size) batches.emplace_back();
    batches.back().Add(msg.payload, msg.arrival_time, topic, static_cast<int64_t>(msg.sequence), 0);
    ++messages;
  }
  double input_mb = 0;
  for (const RawBatch& b : batches) input_mb += static_cast<double>(b.data.size()) / 1e6;

  Result<std::unique_ptr<IngestStage>> ingest = IngestStage::Make(*config);
  if (!ingest.ok()) Die(ingest.status());
  Result<std::unique_ptr<Operator>> window = MakeWindowOperator(*config);
  if (!window.ok()) Die(window.status());
  Ledger ledger;
  RunContext ctx;
  ctx.config = &*config;
  ctx.ledger = &ledger;
  if (Status st = (*ingest)->Open(ctx); !st.ok()) Die(st);
  if (Status st = (*window)->Open(ctx); !st.ok()) Die(st);

  auto start = std::chrono::steady_clock::now();
  uint64_t windows = 0;
  for (const RawBatch& raw : batches) {
    Batch batch;
    if (Status st = (*ingest)->Process(raw, batch); !st.ok()) Die(st);
    if (Status st = (*window)->Process(batch); !st.ok()) Die(st);
    windows += batch.windows.size();
  }
  Batch tail;
  if (Status st = (*window)->Finish(tail); !st.ok()) Die(st);
  windows += tail.windows.size();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  LedgerSnapshot l = ledger.Snapshot();
  double readings_per_s = static_cast<double>(l.input) / secs;
  std::printf("messages %llu (%.1f MB JSON), readings in %llu, accepted %llu, quarantined %llu, "
              "late %llu, duplicate %llu, windows %llu, balanced %s\n",
              static_cast<unsigned long long>(messages), input_mb,
              static_cast<unsigned long long>(l.input),
              static_cast<unsigned long long>(l.accepted),
              static_cast<unsigned long long>(l.quarantined),
              static_cast<unsigned long long>(l.late),
              static_cast<unsigned long long>(l.duplicate),
              static_cast<unsigned long long>(windows), l.balanced() ? "yes" : "NO");
  std::printf("%.3f s: %.0f readings/s, %.0f messages/s, %.1f MB/s of JSON, one core\n", secs,
              readings_per_s, static_cast<double>(messages) / secs, input_mb / secs);
  std::printf(
      "{\"bench\":\"pipeline\",\"messages\":%llu,\"readings\":%llu,\"seconds\":%.4f,"
      "\"readings_per_s\":%.0f,\"messages_per_s\":%.0f,\"windows\":%llu,\"peak_rss_mb\":%.1f}\n",
      static_cast<unsigned long long>(messages), static_cast<unsigned long long>(l.input), secs,
      readings_per_s, static_cast<double>(messages) / secs, static_cast<unsigned long long>(windows),
      PeakRssMb());
  return l.balanced() ? 0 : 1;
}
