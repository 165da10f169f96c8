// What every stage of one pipeline run shares.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/pipeline_config.h"

namespace tributary {

class Source;
class Sink;

struct RunContext {
  const PipelineConfig* config = nullptr;
  Ledger* ledger = nullptr;
  std::string data_dir;                     ///< created before any stage opens
  const std::atomic<bool>* stop = nullptr;  ///< set when the run is asked to stop
  /// Checkpoints are on: sources fill RawBatch::position (io/connector.h).
  bool checkpointing = false;
  /// With checkpoints: the latest complete checkpoint in the store when the run starts
  /// (0: none), set before any sink opens. A sink that prepared that checkpoint but had
  /// not committed it when the process died finishes its commit at open
  /// (Sink::NeedsEpochLog).
  uint64_t checkpoint_decided = 0;
  /// The outputs are staged and thrown away unless the whole run succeeds (backfill,
  /// stream/backfill.h): a sink writing into `data_dir` may trade crash safety for
  /// speed (no write-ahead log, no fsync), as long as what it leaves after Close reads
  /// the same as without.
  bool staged_outputs = false;
  /// The run's sources by index (Batch::source_index), set before any stage opens: a
  /// transactional Kafka sink asks a Kafka source of the same pipeline for the consumer
  /// offsets its transaction commits (io/sinks/kafka_sink.h). Not owned.
  std::vector<Source*> sources;
  /// The run's sinks by index, likewise (a kafka source finds the sink that writes the
  /// partition state changelog). Not owned.
  std::vector<Sink*> sinks;
  /// Partition-owned state (docs/SCALING.md), set by the runtime when it keeps state per
  /// partition: a source calls it, on its own thread, for partitions it is about to give
  /// up. The process thread takes a checkpoint covering every batch handed on so far
  /// (their state goes into the changelog), then drops their state; the call returns
  /// once that checkpoint committed — true — or false when it failed or the run ended.
  std::function<bool(const std::vector<std::string>& partitions)> revoke_partitions;
  bool stopping() const { return stop != nullptr && stop->load(std::memory_order_relaxed); }
};

}  // namespace tributary
