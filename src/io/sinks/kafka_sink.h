// The `kafka` sink: readings, window results, quarantined and late records as JSON
// messages on Kafka topics.
//
// Topics (empty disables one): `readings_topic`, `windows_topic`, and two dead-letter
// topics, `quarantine_topic` (records that failed decoding or validation, with the reason
// and the raw payload) and `late_topic` (readings past a window's grace, default
// sensor.late_events) for reconciliation later.
//
// Keys: a reading (also a late one) is keyed by its H3 cell at `h3_resolution` (5 by
// default, about 250 km² per cell) as the 15-digit hex string, so the readings of one
// area land in one partition, in order; a reading without a position is keyed by its
// device. Window results are keyed by their group, quarantined records by device.
//
// Delivery: the producer is idempotent (no duplicates or reordering from its own
// retries). Write hands messages to librdkafka; Commit waits until every one is
// acknowledged by the brokers (acks=all) and then counts them in the ledger
// ("<sink>/readings", "<sink>/windows", "<sink>/quarantine", "<sink>/late"). A message
// that could not be delivered fails Commit without retry, so the sources do not commit
// the input offsets and a restart produces the output again.
// With `transactional_id` set, everything between two Commits is one Kafka transaction:
// consumers reading with isolation.level=read_committed see a batch entirely or not at
// all, and an aborted run leaves nothing visible.
//
// Checkpoints (stream/checkpoint.h) need `transactional_id`: everything written between
// two checkpoints is one transaction. PrepareCheckpoint flushes it (every message is
// acknowledged, none visible to read_committed readers); CommitCheckpoint adds the
// consumer offsets the checkpoint covers of every kafka source of the pipeline
// (rd_kafka_send_offsets_to_transaction, so a read-process-write pipeline commits its
// input and its output together), a marker record on `checkpoint_topic` (key: the
// transactional id; value: the checkpoint id, the run and the rows per table), and
// commits the transaction. OpenCheckpoints reads the last marker of this transactional
// id (read_committed) after init_transactions has aborted whatever an earlier process
// left open, so it reports exactly the last checkpoint whose output is visible. Every
// message of a checkpointed transaction carries the headers `tributary-run` (a random id
// of the producing process) and `tributary-checkpoint`, so a reader can tell which
// marker committed it.
//
// Threading: Write and Commit on the sink thread; delivery reports are served there too
// (rd_kafka_poll/flush), so no callback runs on another thread.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/model.h"
#include "io/connector.h"
#include "io/kafka_client.h"

namespace tributary {

class Registry;
class Ledger;

struct KafkaSinkOptions {
  std::string name;  ///< the sink's configured name (ledger key prefix)
  KafkaConnectOptions connect;
  std::string readings_topic = "sensor.readings";
  std::string windows_topic = "sensor.windows";
  std::string quarantine_topic = "sensor.quarantine";
  std::string late_topic = "sensor.late_events";
  int h3_resolution = 5;
  std::string transactional_id;  ///< empty: no transactions
  std::string checkpoint_topic = "tributary.checkpoints";
  std::string state_topic;  ///< partition-owned state; empty: off
  DurationUs flush_timeout = 30'000'000;
};

/// The option table of `sinks[] (type: kafka)`.
const SectionSpec& KafkaSinkSectionSpec();
/// Read and validate kafka sink options; errors name the key.
Result<KafkaSinkOptions> ParseKafkaSinkOptions(const OptionReader& reader, std::string name);

/// The message key of a reading: its H3 cell at `resolution` in hex, else its device.
std::string KafkaReadingKey(const Reading& r, int resolution);
/// A reading as one JSON object (device, metric, value, times, position, h3, zone, the
/// ids of the extra zone layers `zone_layers` as `zones`, s2, flags, provenance).
std::string KafkaReadingJson(const Reading& r, const std::vector<std::string>& zone_layers = {});
/// A quarantined record as one JSON object (reason, detail, raw, arrival time, device,
/// metric, provenance).
std::string KafkaQuarantineJson(const QuarantineRecord& q);
/// A late record: the reading's fields plus window, lateness_s and watermark.
std::string KafkaLateJson(const LateRecord& l, const std::vector<std::string>& zone_layers = {});

/// The state of one partition goes to the state topic in chunks of at most this many
/// bytes of state, one record per chunk (well under librdkafka's and Kafka's default
/// message.max.bytes of 1,000,000), so a partition's state has no size limit.
inline constexpr size_t kPartitionStateChunkBytes = 900'000;
/// One state record: chunk `index` of `count` of a partition's state, taken when the
/// partition's next offset was `offset`.
struct PartitionStateChunk {
  int64_t offset = 0;
  uint64_t index = 0;
  uint64_t count = 1;
  std::string bytes;
  std::string written_by;  ///< "run/checkpoint" of its headers (set by the reader)
};
/// The records of `p`: keys "<partition key>#<index>" with their values (format version
/// 2: next offset, index, count, bytes). A partition's chunk 0 always comes with the
/// count of the chunks of its state; on a compacted topic the latest record of every
/// chunk key survives, and chunks of an older, larger state (index ≥ count) are ignored.
std::vector<std::pair<std::string, std::string>> EncodePartitionStateRecords(
    const PartitionState& p);
/// Decode one state record. `key` is the record key; the partition key it names is
/// returned in `partition` ("<partition key>#<index>", or the bare partition key of a
/// single-record state of format version 1).
Result<PartitionStateChunk> DecodePartitionStateRecord(std::string_view key, std::string_view value,
                                                       std::string& partition);
/// The latest committed state record of each of `keys` on `state_topic`: a record counts
/// only when a marker on `checkpoint_topic` names its (tributary-run,
/// tributary-checkpoint) headers — read_committed does that on a real broker, and the
/// check keeps the records of aborted transactions out where the broker does not (the
/// librdkafka mock cluster). Keys without a record are absent. `client` names the
/// readers (client.id and group.id, nothing is committed).
Result<std::map<std::string, PartitionState>> ReadPartitionStates(
    const KafkaConnectOptions& connect, const std::string& state_topic,
    const std::string& checkpoint_topic, const std::set<std::string>& keys, DurationUs timeout,
    const std::string& client);

class KafkaSink : public Sink {
 public:
  explicit KafkaSink(KafkaSinkOptions options);
  ~KafkaSink() override;
  Status Open(RunContext& ctx) override;
  Status Write(const Batch& batch) override;
  Status Commit() override;
  Result<SinkCheckpointRecord> OpenCheckpoints() override;
  Status PrepareCheckpoint(uint64_t checkpoint) override;
  Status CommitCheckpoint(uint64_t checkpoint) override;
  void Close() override;
  const KafkaSinkOptions& options() const { return options_; }

 private:
  enum Table { kReadings, kWindows, kQuarantine, kLate, kTableCount };
  Status Produce(Table table, const std::string& key, const std::string& value);
  Status ProduceTo(const std::string& topic, const std::string& key, const std::string& value);
  Status ProducePartitionStates();
  Status BeginTransactionIfNeeded();
  static void OnDelivery(rd_kafka_t* rk, const rd_kafka_message_t* m, void* opaque);
  Status DeliveryFailures();
  Status SendSourceOffsets();
  // Partition-owned state: every kafka source still owns its partitions (fencing).
  Status CheckMembership() const;
  Result<SinkCheckpointRecord> ReadLastMarker();

  KafkaSinkOptions options_;
  KafkaHandle producer_;
  Ledger* ledger_ = nullptr;
  const RunContext* ctx_ = nullptr;
  std::vector<std::string> zone_layers_;  // zones.layers after the first
  std::array<std::string, kTableCount> topics_;
  std::array<std::string, kTableCount> ledger_keys_;
  std::array<uint64_t, kTableCount> pending_{};  // produced since the last Commit
  bool in_transaction_ = false;
  bool checkpointing_ = false;                // output becomes visible only in CommitCheckpoint
  std::string run_id_;                        // tributary-run header: this process
  std::string next_checkpoint_;               // tributary-checkpoint header: the open interval's id
  std::vector<uint64_t> source_checkpoints_;  // per source index: last raw batch written
  // The partition states of the checkpoint whose barrier was written last.
  std::shared_ptr<const std::vector<PartitionState>> partition_states_;
  // Set by delivery reports, which run on the sink thread inside poll/flush.
  uint64_t failed_ = 0;
  std::string first_failure_;
};

/// Register the `kafka` sink type.
void RegisterKafkaSink(Registry& registry);

}  // namespace tributary
