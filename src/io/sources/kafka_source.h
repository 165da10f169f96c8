// The `kafka` source: records from Kafka topics, read as a member of a consumer group.
//
// Records: topic and partition as in Kafka, offset = the Kafka offset, arrival time =
// the wall clock when the batch was fetched.
//
// Offsets: never committed automatically. Each batch handed to the pipeline carries a
// checkpoint; when every sink has committed what the batch produced, the runtime calls
// OnCommitted and the source commits (synchronously) the next offset of every partition
// in it. A crash therefore re-reads at most what was not yet durable downstream:
// at-least-once delivery, with duplicates removed by the pipeline's dedup stage. Open
// windows are not covered (their readings are stored, their results not yet).
//
// Adaptive poll size (records per Poll): `poll_records` (500) normally, `poll_records_min`
// (100) while the consumer lag grew by more than `lag_jump` (10,000) records since the
// previous measurement or the processing latency — the time the pipeline took to take
// the previous batch, which grows when its queues are full — exceeds
// `latency_threshold`. Lag = high watermark − next offset to read, per assigned
// partition, from the offsets librdkafka learns with each fetch (no extra requests);
// measured at most every 100 ms and exported as the gauge tributary_kafka_consumer_lag.
//
// Backpressure: records handed on but not yet committed by the sinks are counted; at
// 75% of `max_uncommitted` every assigned partition is paused (the consumer keeps
// polling, so it stays in its group), and resumed once commits bring the count under
// half of `max_uncommitted`. SetPaused (the process's memory ceiling) pauses them too;
// they resume when neither reason holds.
//
// Checkpoints (stream/checkpoint.h): with checkpoints on, every batch carries as its
// position the next offset to read of every partition this source has read or was
// restored to. RestorePosition keeps those offsets, and the rebalance callback starts
// every assigned partition from them (a partition the checkpoint does not know starts
// from the group's committed offset, or `start`). The group's committed offsets follow
// the checkpoints (OnCommitted runs once the sinks committed one), so they never run
// ahead of the state. For a transactional kafka sink in the same pipeline the source
// hands out its consumer group metadata and the offsets a checkpoint covers
// (TransactionOffsets), which the sink commits inside its transaction.
//
// Rebalancing: eager (the default `range,roundrobin`) or cooperative
// (`properties: [partition.assignment.strategy=cooperative-sticky]`): the callback uses
// incremental assign/unassign when the group's protocol is cooperative, so partitions
// that stay with this member keep being read during a rebalance.
//
// Partition-owned state (docs/SCALING.md): when a kafka sink of the pipeline has a
// `state_topic`, the rebalance callback reads, for every partition assigned, its latest
// committed state record (next offset and state), starts the partition at that offset,
// and hands the state on in RawBatch::restores of the next batch, ahead of any record of
// the partition. For every partition revoked it first asks the runtime for a checkpoint
// covering everything handed on so far (RunContext::revoke_partitions: the partition's
// state and output commit, then its state is dropped) and waits for it; records of the
// partition fetched but not handed on are dropped, the next owner reads them again.
// The local checkpoint's offsets are not used then: the changelog is the truth.
//
// Threading: Poll on the source thread; OnCommitted on the sink thread; Stop from any
// thread. librdkafka handles are thread-safe; the source's own bookkeeping is under mu_.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "io/connector.h"
#include "io/kafka_client.h"

namespace tributary {

class Registry;

struct KafkaSourceOptions {
  std::string name;  ///< the source's configured name (metric labels)
  KafkaConnectOptions connect;
  std::string group_id = "tributary";
  std::vector<std::string> topics;
  std::string start = "earliest";  ///< where a group without committed offsets begins
  size_t poll_records = 500;
  size_t poll_records_min = 100;
  int64_t lag_jump = 10'000;
  DurationUs latency_threshold = 1'000'000;
  size_t max_uncommitted = 200'000;
};

/// The option table of `sources[] (type: kafka)`.
const SectionSpec& KafkaSourceSectionSpec();
/// Read and validate kafka source options; errors name the key.
Result<KafkaSourceOptions> ParseKafkaSourceOptions(const OptionReader& reader, std::string name);

class KafkaSource : public Source {
 public:
  explicit KafkaSource(KafkaSourceOptions options);
  ~KafkaSource() override;
  /// Create the consumer and subscribe; a bad property is an error here. Brokers that
  /// are down are not: librdkafka keeps trying to connect.
  Status Open(RunContext& ctx) override;
  Status Poll(RawBatch& out, size_t max_records, DurationUs wait) override;
  void Stop() override;
  void OnCommitted(uint64_t checkpoint) override;
  /// Pause every assigned partition while the memory ceiling asks (combined with the
  /// backlog pause: partitions resume when neither reason holds).
  void SetPaused(bool paused) override;
  bool SupportsCheckpoints() const override { return true; }
  Status RestorePosition(std::string_view position) override;
  void Close() override;

  /// The consumer's group metadata, for rd_kafka_send_offsets_to_transaction (caller
  /// destroys it); nullptr before Open. Safe from any thread.
  rd_kafka_consumer_group_metadata_t* GroupMetadata() const;
  /// The next offset per partition once the raw batches up to and including the one
  /// with RawBatch::checkpoint `through` are consumed, on top of what was committed or
  /// restored; `through` 0: only those. Safe from any thread (the sink thread asks).
  std::map<std::pair<std::string, int32_t>, int64_t> TransactionOffsets(uint64_t through) const;
  /// Partition-owned state, before a checkpoint commits: whether the group still counts
  /// this consumer as a member. Fails when a revocation said the group forgot it, or
  /// when the group coordinator refuses this member id (unknown member, fenced
  /// instance id): it commits the offsets of the last committed checkpoint of the
  /// assigned partitions once more, outside the transaction (the group holds them
  /// already), which the coordinator checks against the member id. Safe from any
  /// thread (the sink thread asks).
  Status CheckMembership() const;

  /// The records-per-poll limit now in force.
  size_t poll_limit() const { return poll_limit_.load(std::memory_order_relaxed); }
  /// True while the assigned partitions are paused for backpressure.
  bool paused() const { return paused_.load(std::memory_order_relaxed); }
  /// Offsets committed so far (for tests): topic/partition → next offset.
  std::map<std::pair<std::string, int32_t>, int64_t> committed_offsets() const;

 private:
  using PartitionKey = std::pair<std::string, int32_t>;
  struct Pending {
    std::map<PartitionKey, int64_t> next_offsets;  // offset + 1 of the last record
    size_t records = 0;
  };
  void MeasureLag(TimeUs now, DurationUs latency);
  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t* partitions, void* opaque);
  std::string EncodePosition() const;
  void ApplyPause(bool pause, size_t waiting);

  KafkaSourceOptions options_;
  KafkaHandle consumer_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> poll_limit_{500};
  std::atomic<bool> paused_{false};
  std::atomic<bool> memory_paused_{false};  // SetPaused, from the memory guard

  // Source thread only.
  uint64_t next_checkpoint_ = 1;
  TimeUs last_poll_end_ = 0;
  TimeUs last_lag_check_ = 0;
  int64_t last_total_lag_ = -1;
  std::map<PartitionKey, int64_t> read_next_;  // next offset to read, per partition
  bool checkpointing_ = false;
  // Partition-owned state (source thread, and the rebalance callback on it).
  RunContext* ctx_ = nullptr;
  bool partition_state_ = false;
  KafkaConnectOptions state_connect_;
  std::string state_topic_;
  std::string marker_topic_;
  std::vector<PartitionState> assigned_states_;  // for the next batch's restores
  std::set<PartitionKey> revoked_;               // records of these are not handed on
  Status rebalance_error_;
  std::atomic<bool> assignment_lost_{false};  // a revocation said the group forgot us
  void AssignStates(rd_kafka_topic_partition_list_t* partitions);
  void RevokeStates(rd_kafka_topic_partition_list_t* partitions);

  mutable std::mutex mu_;
  bool backlog_paused_ = false;          // paused for the sinks' backlog (hysteresis)
  std::map<uint64_t, Pending> pending_;  // by checkpoint, not yet committed downstream
  size_t uncommitted_ = 0;               // records in pending_
  std::map<PartitionKey, int64_t> committed_;
  std::map<PartitionKey, int64_t> restored_;  // from the checkpoint (RestorePosition)
  std::set<PartitionKey> owned_;              // partition-owned state: assigned now
};

/// Register the `kafka` source type.
void RegisterKafkaSource(Registry& registry);

}  // namespace tributary
