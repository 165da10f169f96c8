// Partition-owned state (docs/SCALING.md) for a stage that keeps its state in one
// operator instance: one instance per input partition, so the state of a partition can
// be snapshotted, moved to another process and restored there, or dropped, without
// touching the others. Used for quality control (stream/qc/qc.h); the window stage has
// its own (stream/partitioned_window.h), the alert operator keeps one rule engine per
// partition itself (alert/alert_operator.h, its channels are shared).
//
// Routing: readings by their provenance (topic, partition), window rows by the
// partition the window stage marked them with (WindowResult::source_topic,
// source_partition). A partition's instance is made on its first reading or window
// row and sees only its partition: its batch holds that partition's readings and
// window rows, in their order, and as watermark that partition's own
// (Batch::partition_watermarks, set by the partitioned window stage), or the batch's
// watermark before the window stage. An instance already held also gets a batch
// without records when its partition's watermark is in the batch (so it can act on
// the watermark alone). Late and quarantined records, alerts and spatial rows made
// upstream pass through untouched.
//
// Output: the readings, window rows and alerts of a batch come partition by partition,
// in key order, each in the order its instance left them; what passed through first.
//
// Checkpoints: Snapshot/Restore (the process's local checkpoint) hold nothing — every
// partition's state goes through SnapshotPartition into the changelog topic, and the
// instances' Snapshot/Restore must read their symbol ids through CheckpointReader::Sym.
//
// Threading: like every operator, one thread (operator.h).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "stream/operator.h"

namespace tributary {

class PartitionedOperator : public Operator {
 public:
  /// Makes (and configures) the instance of one partition; the same definition each
  /// time.
  using Factory = std::function<std::unique_ptr<Operator>()>;

  /// `name` is the stage's name (also of its partition state sections).
  PartitionedOperator(std::string name, Factory make);
  ~PartitionedOperator() override;

  std::string_view name() const override { return name_; }
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

  /// Partitions with state, as keys "<topic>/<partition>".
  std::vector<std::string> Partitions() const;
  /// The instance of `partition`, or null.
  const Operator* partition(std::string_view key) const;

 private:
  using Key = uint64_t;  // (topic symbol id, partition)
  Result<Operator*> Get(Key key);

  std::string name_;
  Factory make_;
  RunContext* ctx_ = nullptr;
  std::map<Key, std::unique_ptr<Operator>> parts_;
};

/// The key of a partition's state in a map: topic symbol id << 32 | partition.
inline uint64_t PackPartition(Symbol topic, int32_t partition) {
  return (static_cast<uint64_t>(topic.id) << 32) | static_cast<uint32_t>(partition);
}
/// "<topic>/<partition>" of a packed key.
std::string PackedPartitionStateKey(uint64_t key);
/// The packed key of "<topic>/<partition>" (the topic interned when `intern`, else only
/// found); false when `partition` is not a partition key or the topic is unknown.
bool ParsePackedPartition(std::string_view partition, bool intern, uint64_t& key);

}  // namespace tributary
