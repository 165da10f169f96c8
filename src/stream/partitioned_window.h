// The window stage with partition-owned state (docs/SCALING.md): one WindowOperator per
// input partition, so the state of a partition can be snapshotted, moved to another
// process and restored there, or dropped, without touching the others.
//
// Readings are routed by their provenance (topic, partition) to that partition's own
// window stage, created on its first reading. Each has its own watermark tracker, which
// sees only its partition: a window of a partition closes when that partition's event
// time passes its end, whatever the other partitions (or other processes) do. That is
// the one difference from the plain window stage, whose watermark is the minimum over
// all partitions; it is what makes the results of a partition independent of which
// process reads it and of the order in which partitions are fetched. It suits window
// definitions whose groups lie inside one partition (group_by device for devices that
// stay in their area, group_by h3 at the keying resolution or finer); a group spanning
// partitions gets one result per partition.
//
// Output: the readings, late records and window rows of a batch come partition by
// partition (in key order), each partition's in the order of WindowOperator. Every
// window row carries its partition (WindowResult::source_topic, source_partition), and
// the batch the watermark of every partition held (Batch::partition_watermarks), so the
// stages after it that keep state per partition (PartitionedOperator, the alert
// operator) give each partition what its own window stage saw. The batch watermark is
// the minimum over the partitions held.
//
// Checkpoints: Snapshot/Restore (the process's local checkpoint) hold nothing — the
// state of every partition goes through SnapshotPartition into the changelog topic and
// comes back through RestorePartition when a process is assigned the partition.
//
// Threading: like every operator, one thread (operator.h).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "stream/operator.h"
#include "stream/window.h"

namespace tributary {

class PartitionedWindowOperator : public Operator {
 public:
  /// Makes the window stage of one partition (the same definitions each time).
  using Factory = std::function<std::unique_ptr<WindowOperator>()>;

  explicit PartitionedWindowOperator(Factory make);
  ~PartitionedWindowOperator() override;

  std::string_view name() const override { return "window"; }
  Status Open(RunContext& ctx) override;
  Status Process(Batch& batch) override;
  Status OnIdle(TimeUs wall_now, Batch& out) override;
  Status Finish(Batch& out) override;
  Status Snapshot(CheckpointWriter& out) const override;
  Status Restore(CheckpointReader& in) override;
  bool SupportsPartitionState() const override { return true; }
  Status SnapshotPartition(std::string_view partition, CheckpointWriter& out) const override;
  Status RestorePartition(std::string_view partition, CheckpointReader& in) override;
  void DropPartition(std::string_view partition) override;

  /// Applied to the window stage of every partition (see WindowOperator).
  void SetExpectedInterval(WindowOperator::ExpectedInterval lookup);
  void SetMemoryShed(const std::atomic<bool>* flag);

  /// Partitions with state, as keys "<topic>/<partition>".
  std::vector<std::string> Partitions() const;
  /// The window stage of `partition`, or null.
  const WindowOperator* partition(std::string_view key) const;
  TimeUs watermark() const;

 private:
  using Key = uint64_t;  // (topic symbol id, partition)
  static Key KeyOf(const Reading& r);
  static bool ParseKey(std::string_view partition, bool intern, Key& key);
  Result<WindowOperator*> Make(Key key);
  /// Mark the window rows of a partition's sub-batch with the partition.
  static void Tag(Key key, Batch& sub);
  /// The minimum watermark and that of every partition held.
  void SetWatermarks(Batch& out) const;

  Factory make_;
  RunContext* ctx_ = nullptr;
  WindowOperator::ExpectedInterval expected_interval_;
  const std::atomic<bool>* memory_shed_ = nullptr;
  std::map<Key, std::unique_ptr<WindowOperator>> parts_;
};

}  // namespace tributary
