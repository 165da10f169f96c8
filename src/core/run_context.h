// What every stage of one pipeline run shares.
#pragma once

#include <atomic>
#include <string>

#include "core/ledger.h"
#include "core/pipeline_config.h"

namespace tributary {

struct RunContext {
  const PipelineConfig* config = nullptr;
  Ledger* ledger = nullptr;
  std::string data_dir;                     ///< created before any stage opens
  const std::atomic<bool>* stop = nullptr;  ///< set when the run is asked to stop
  /// Checkpoints are on: sources fill RawBatch::position (io/connector.h).
  bool checkpointing = false;
  bool stopping() const { return stop != nullptr && stop->load(std::memory_order_relaxed); }
};

}  // namespace tributary
