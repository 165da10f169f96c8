// Readings of the built-in simulator as the pipeline sees them after ingestion, for
// tests that inject faults into realistic data.
#pragma once

#include <memory>
#include <vector>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "ingest/ingest.h"
#include "io/sources/simulator.h"

namespace tributary::testing {

/// Run `options` through the simulator and the ingestion stage; every accepted reading,
/// in arrival order. `sim` (optional) receives the device layout.
inline std::vector<Reading> SimulatorReadings(const SimulatorOptions& options,
                                              std::vector<SimDevice>* devices = nullptr) {
  Simulator sim(options);
  PipelineConfig config;
  config.file = "<test>";
  config.processing.dedup_horizon = kMicrosPerHour;
  config.processing.drift_threshold = 5 * kMicrosPerMinute;
  config.processing.max_future = 5 * kMicrosPerMinute;
  config.sources.push_back(SourceEntry{"simulator", "simulator", {}});
  std::vector<Reading> out;
  auto made = IngestStage::Make(config);
  if (!made.ok()) return out;
  std::unique_ptr<IngestStage> stage = std::move(made).value();
  Ledger ledger;
  RunContext ctx;
  ctx.config = &config;
  ctx.ledger = &ledger;
  if (!stage->Open(ctx).ok()) return out;
  SimMessage msg;
  bool more = true;
  while (more) {
    RawBatch raw;
    while (raw.size() < 512 && (more = sim.Next(msg))) {
      raw.Add(msg.payload, msg.arrival_time, Intern("sim/test"),
              static_cast<int64_t>(msg.sequence));
    }
    Batch batch;
    if (!stage->Process(raw, batch).ok()) break;
    for (Reading& r : batch.readings) out.push_back(std::move(r));
  }
  if (devices != nullptr) *devices = sim.devices();
  return out;
}

}  // namespace tributary::testing
