// The alert operator: evaluates the `alerts.rules` after the window stage and hands
// every alert event to the sinks (batch.alerts) and to the delivery channels, its own
// and those upstream operators put in the batch before it (pattern rules,
// alert/patterns.h; calibration drift, stream/qc/drift.h).
//
// Runs on the process thread, after the window operator (operator.h): for each batch it
// evaluates the readings (thresholds, rates, and geofence/proximity through the spatial
// GeofenceEngine), then the window results, then stale sensors against
// batch.watermark (rules.h explains the clocks), appends the events to batch.alerts and
// Submit()s them to the AlertDispatcher, which never blocks. The dispatcher's workers
// (dispatch.h) are started in Open and given `alerts.shutdown_wait` in Finish to empty
// their queues; what is left is delivered by the next run.
//
// Partition-owned state (docs/SCALING.md, EnablePartitionState): the rules' state is
// kept in one AlertEngine per input partition, the channels are shared. Readings go to
// the engine of their provenance partition, window rows to that of the partition the
// window stage marked them with (WindowResult::source_topic, source_partition), and
// each engine judges stale sensors against its own partition's watermark
// (Batch::partition_watermarks), so a partition's alerts — and their ids — depend only
// on its own records, whichever process reads it. Alerts of one batch then come
// partition by partition (in key order), each partition's in the order above.
#pragma once

#include <map>
#include <memory>

#include "alert/dispatch.h"
#include "alert/rules.h"
#include "stream/operator.h"

namespace tributary {

class AlertOperator final : public Operator {
 public:
  /// Build from config; nothing is opened or connected. Null when there are no rules.
  static Result<std::unique_ptr<AlertOperator>> Make(const PipelineConfig& config);
  /// Build from rules and a dispatcher (may be null), for tests and benchmarks.
  AlertOperator(std::vector<AlertRule> rules, std::unique_ptr<AlertDispatcher> dispatcher,
                std::string queue_file, DurationUs shutdown_wait);
  ~AlertOperator() override;

  std::string_view name() const override { return "alerts"; }
  Status Open(RunContext& ctx) override;
  Status Process(Batch& batch) override;
  Status Finish(Batch& out) override;
  /// The rules' state (alerts made upstream, by patterns or drift, are checkpointed by
  /// their operators). Channels deliver at least once across a crash: the alerts
  /// emitted after the last checkpoint are emitted again, with the same ids.
  Status Snapshot(CheckpointWriter& out) const override;
  Status Restore(CheckpointReader& in) override;

  /// Keep the rules' state per input partition (before Open).
  void EnablePartitionState() { partitioned_ = true; }
  bool SupportsPartitionState() const override { return partitioned_; }
  Status SnapshotPartition(std::string_view partition, CheckpointWriter& out) const override;
  Status RestorePartition(std::string_view partition, CheckpointReader& in) override;
  void DropPartition(std::string_view partition) override;
  /// Partitions whose rules have state, as keys "<topic>/<partition>".
  std::vector<std::string> Partitions() const;
  /// The rule engine of `partition`, or null.
  const AlertEngine* partition(std::string_view key) const;

  /// Give every engine (also those of partitions made later) the device registry's
  /// expected intervals.
  void SetExpectedIntervalLookup(AlertEngine::IntervalLookup lookup);

  /// The engine of the rules (without partition state: the only one; with it, that of
  /// window rows no partition made).
  AlertEngine& engine() { return engine_; }
  AlertDispatcher* dispatcher() { return dispatcher_.get(); }

 private:
  void Emit(std::vector<AlertEvent>& events);
  AlertEngine& PartitionEngine(uint64_t key);
  void ProcessPartitioned(Batch& batch);

  AlertEngine engine_;
  bool partitioned_ = false;
  AlertEngine::IntervalLookup interval_lookup_;
  std::map<uint64_t, std::unique_ptr<AlertEngine>> parts_;  // by PackPartition
  std::unique_ptr<AlertDispatcher> dispatcher_;
  std::string queue_file_;
  DurationUs shutdown_wait_;
  bool opened_ = false;
};

}  // namespace tributary
