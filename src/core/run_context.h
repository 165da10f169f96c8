// What every stage of one pipeline run shares.
#pragma once

#include <atomic>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/pipeline_config.h"

namespace tributary {

class Source;

struct RunContext {
  const PipelineConfig* config = nullptr;
  Ledger* ledger = nullptr;
  std::string data_dir;                     ///< created before any stage opens
  const std::atomic<bool>* stop = nullptr;  ///< set when the run is asked to stop
  /// Checkpoints are on: sources fill RawBatch::position (io/connector.h).
  bool checkpointing = false;
  /// The run's sources by index (Batch::source_index), set before any stage opens: a
  /// transactional Kafka sink asks a Kafka source of the same pipeline for the consumer
  /// offsets its transaction commits (io/sinks/kafka_sink.h). Not owned.
  std::vector<Source*> sources;
  bool stopping() const { return stop != nullptr && stop->load(std::memory_order_relaxed); }
};

}  // namespace tributary
