// The operator contract for the processing stages between ingestion and the sinks.
//
// An operator definition is built once from config and is immutable; whatever it
// mutates while running (window buffers, dedup sets, watermarks) is its own state
// object. Operators of one chain run on one thread, in order, each taking the batch
// produced by the one before: they consume what they own and pass everything else
// through (e.g. the window operator moves late readings from `readings` to `late` and
// appends window results). Batches arrive in order; no call is concurrent.
#pragma once

#include <string>
#include <string_view>

#include "core/model.h"
#include "core/run_context.h"
#include "core/status.h"

namespace tributary {

class CheckpointWriter;
class CheckpointReader;

class Operator {
 public:
  virtual ~Operator() = default;
  virtual std::string_view name() const = 0;
  /// Prepare state. Called once before the first batch.
  virtual Status Open(RunContext& ctx) = 0;
  /// Transform `batch` in place.
  virtual Status Process(Batch& batch) = 0;
  /// No input arrived for a while; `wall_now` is the wall clock. Lets event-time
  /// operators advance an idle watermark; may append output to `out`.
  virtual Status OnIdle(TimeUs wall_now, Batch& out) {
    (void)wall_now;
    (void)out;
    return Status::Ok();
  }
  /// The input has ended (bounded run, or shutdown): emit everything still open.
  virtual Status Finish(Batch& out) = 0;
  /// Append the operator's whole state to `out` (stream/checkpoint.h), between two
  /// batches. The default: the operator cannot be checkpointed (a pipeline with
  /// checkpoints then refuses to start); a stateless operator writes nothing.
  virtual Status Snapshot(CheckpointWriter& out) const {
    (void)out;
    return Status::Invalid("operator " + std::string(name()) + " cannot be checkpointed");
  }
  /// Replace the state by what Snapshot wrote (after Open, before the first batch).
  virtual Status Restore(CheckpointReader& in) {
    (void)in;
    return Status::Invalid("operator " + std::string(name()) + " cannot be checkpointed");
  }

  /// Partition-owned state (docs/SCALING.md): true when the operator keeps its state
  /// apart per input partition — `partition` is "<topic>/<partition>", from the readings'
  /// provenance — and implements the three calls below, so a partition's state can move
  /// to another process. A stateless operator answers true and writes nothing.
  virtual bool SupportsPartitionState() const { return false; }
  /// Append the state of one partition to `out` (between two batches); nothing when the
  /// operator holds none for it.
  virtual Status SnapshotPartition(std::string_view partition, CheckpointWriter& out) const {
    (void)partition;
    (void)out;
    return Status::Invalid("operator " + std::string(name()) +
                           " cannot keep its state per partition");
  }
  /// Replace the state of one partition by what SnapshotPartition wrote (symbols read
  /// through the reader's map: the writer may have been another process).
  virtual Status RestorePartition(std::string_view partition, CheckpointReader& in) {
    (void)partition;
    (void)in;
    return Status::Invalid("operator " + std::string(name()) +
                           " cannot keep its state per partition");
  }
  /// Forget the state of one partition without emitting it (it moved to another process).
  virtual void DropPartition(std::string_view partition) { (void)partition; }
};

/// The partition key of the state of a reading: "<topic>/<partition>".
std::string PartitionStateKey(Symbol topic, int32_t partition);
/// Split a partition key into topic and partition; false when it is not one.
bool ParsePartitionStateKey(std::string_view key, std::string_view& topic, int32_t& partition);

}  // namespace tributary
