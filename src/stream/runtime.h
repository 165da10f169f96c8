// The runtime: runs one pipeline on threads joined by bounded queues of batches.
//
//   source threads ──RawBatch──► process thread ──Batch──► sink thread
//   (one per source)   queue     (ingest, then the        queue   (writes every sink,
//                                 operator chain)                  commits periodically)
//
// A full queue blocks its producer, so a slow sink slows the sources instead of
// growing memory; nothing is dropped. Stopping (a signal, --duration, or every bounded
// source reaching its end) drains the queues in order: sources stop, the process
// thread finishes every operator (open windows are emitted), the sink thread writes
// and commits the rest. The ledger is written to <data-dir>/ledger.json at every
// commit and at the end.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "core/status.h"
#include "stream/checkpoint.h"
#include "stream/memory_guard.h"
#include "stream/partition_monitor.h"

namespace tributary {

class Source;
class Sink;
class Operator;
class IngestStage;
struct Batch;

/// Watches what the pipeline delivered (e.g. the HTTP API's live state). OnBatch runs
/// on the sink thread after every sink wrote the batch; it must return quickly (copy
/// what it needs, never block), as the sink thread waits for it.
class PipelineObserver {
 public:
  virtual ~PipelineObserver() = default;
  virtual void OnBatch(const Batch& batch) = 0;
};

/// Live figures for progress displays.
struct RunProgress {
  LedgerSnapshot ledger;
  TimeUs watermark = kMinTime;
  size_t raw_queue_depth = 0;
  size_t sink_queue_depth = 0;
  MemoryGuardStatus memory;    ///< the memory ceiling (limit 0: none)
  PartitionReport partitions;  ///< per-partition rates of the last interval
};

/// How a pipeline is built beyond its config (bounded re-processing uses these).
struct PipelineBuildOptions {
  /// The processing clock of operators (window emitted_at, idle timing); empty = the
  /// wall clock. A fixed clock makes re-runs over the same input reproducible.
  std::function<TimeUs()> processing_clock;
  /// False: operators get no idle ticks, so the watermark advances only from the data
  /// (identical results whatever the read speed; right for bounded inputs).
  bool idle_ticks = true;
};

class Pipeline {
 public:
  /// Build every stage from config: factories validate options; nothing is opened or
  /// connected, so this is also how `tributary check` validates a pipeline.
  static Result<std::unique_ptr<Pipeline>> Build(const PipelineConfig& config,
                                                 const PipelineBuildOptions& options = {});
  ~Pipeline();

  /// Open all stages and run until the input ends, Stop() is called, or `duration`
  /// (if > 0) has passed. Returns the first error that ended the run early.
  Status Run(DurationUs duration = 0);
  /// Ask the run to stop and flush; safe from any thread and from a signal handler.
  void Stop() { stop_.store(true, std::memory_order_relaxed); }

  /// Attach an observer (not owned; must outlive the run). Set before Run().
  void SetObserver(PipelineObserver* observer) { observer_ = observer; }
  /// True from the moment every stage is open until the run has ended.
  bool running() const { return running_.load(std::memory_order_acquire); }

  RunProgress Progress() const;
  LedgerSnapshot LedgerNow() const { return ledger_.Snapshot(); }
  const PipelineConfig& config() const { return config_; }
  /// The i-th source of the config (for progress figures such as bytes read).
  const Source* source(size_t i) const { return i < sources_.size() ? sources_[i].get() : nullptr; }
  /// Path of the ledger file written during and after the run.
  std::string LedgerPath() const;
  /// Where the time of checkpointing went in the last run (zeros without checkpoints).
  const CheckpointCosts& checkpoint_costs() const { return checkpoint_costs_; }

 private:
  explicit Pipeline(PipelineConfig config);
  Status CheckPartitionState();
  struct Shared;

  PipelineConfig config_;
  Ledger ledger_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> running_{false};
  PipelineObserver* observer_ = nullptr;
  bool idle_ticks_ = true;
  std::vector<std::unique_ptr<Source>> sources_;
  std::unique_ptr<IngestStage> ingest_;
  std::vector<std::unique_ptr<Operator>> operators_;
  std::vector<std::unique_ptr<Sink>> sinks_;
  std::vector<std::string> sink_names_;
  std::unique_ptr<Shared> shared_;
  /// Partition-owned state (docs/SCALING.md): a kafka sink writes a state changelog.
  bool partition_state_ = false;
  std::unique_ptr<MemoryGuard> memory_guard_;
  std::unique_ptr<PartitionMonitor> partition_monitor_;
  CheckpointCosts checkpoint_costs_;
};

/// Write `content` to `path` atomically (temporary file + fsync + rename).
Status WriteFileAtomic(const std::string& path, std::string_view content);

}  // namespace tributary
