#include "io/sinks/kafka_sink.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <random>
#include <sstream>
#include <utility>

#include "core/json_writer.h"
#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "core/registry.h"
#include "core/time.h"
#include "io/sinks/breaker_sink.h"
#include "io/sinks/mqtt_sink.h"
#include "io/sources/kafka_source.h"
#include "spatial/enrich.h"
#include "spatial/h3.h"
#include "spatial/s2cell.h"
#include "stream/checkpoint.h"

namespace tributary {
namespace {

constexpr std::array<const char*, 4> kTableNames = {"readings", "windows", "quarantine", "late"};

void AddNumber(std::string& out, const char* key, double v) {
  if (!std::isfinite(v)) return;
  out += ",\"";
  out += key;
  out += "\":";
  AppendJsonNumber(out, v);
}

void AddString(std::string& out, const char* key, std::string_view v) {
  out += ",\"";
  out += key;
  out += "\":";
  AppendJsonString(out, v);
}

// The fields of a reading, without the enclosing braces' closing.
void AppendReadingFields(std::string& out, const Reading& r,
                         const std::vector<std::string>& zone_layers) {
  out += "{\"device\":";
  AppendJsonString(out, r.device.view());
  AddString(out, "metric", r.metric.view());
  AddNumber(out, "value", r.value);
  AddString(out, "event_time", FormatTime(r.event_time));
  AddString(out, "arrival_time", FormatTime(r.arrival_time));
  AddNumber(out, "lat", r.lat);
  AddNumber(out, "lon", r.lon);
  if (r.h3 != 0) AddString(out, "h3", h3::CellToString(r.h3));
  if (!r.zone.empty()) AddString(out, "zone", r.zone.view());
  if (!zone_layers.empty()) {
    out += ",\"zones\":";
    AppendExtraZonesJson(r, zone_layers, out);
  }
  if (r.s2 != 0) AddString(out, "s2", S2CellToken(r.s2));
  AddNumber(out, "qc_score", r.qc_score);
  out += ",\"provenance\":";
  out += ProvenanceToJson(r.prov, r.device, r.flags);
}

int64_t TimeoutMs(DurationUs d) {
  return std::max<int64_t>(d / kMicrosPerMilli, 1);
}

}  // namespace

const SectionSpec& KafkaSinkSectionSpec() {
  static const SectionSpec spec = [] {
    SectionSpec s{
        "sinks[] (type: kafka)",
        "Readings, window results and the dead-letter records (quarantined, late) as JSON "
        "messages on Kafka topics, through an idempotent producer. Readings are keyed by "
        "their H3 cell, so one area's readings stay in one partition. Commit waits until "
        "the brokers acknowledged every message; with `transactional_id` each commit is "
        "one Kafka transaction.",
        KafkaConnectionOptionSpecs()};
    s.options.push_back({"readings_topic", OptionType::kString, "sensor.readings",
                         "Topic of accepted readings; empty: not produced."});
    s.options.push_back({"windows_topic", OptionType::kString, "sensor.windows",
                         "Topic of window results (keyed by group); empty: not produced."});
    s.options.push_back({"quarantine_topic", OptionType::kString, "sensor.quarantine",
                         "Dead-letter topic of quarantined records (reason, detail, raw "
                         "payload); empty: not produced."});
    s.options.push_back({"late_topic", OptionType::kString, "sensor.late_events",
                         "Dead-letter topic of readings that arrived past a window's grace; "
                         "empty: not produced."});
    s.options.push_back({"h3_resolution", OptionType::kInt, "5",
                         "H3 resolution of the cell that keys readings (5: ~250 km² cells).",
                         "0..15"});
    s.options.push_back({"transactional_id", OptionType::kString, "",
                         "When set, each commit is one Kafka transaction under this id (one "
                         "id per running process); readers with isolation.level="
                         "read_committed see whole commits only."});
    s.options.push_back({"checkpoint_topic", OptionType::kString, "tributary.checkpoints",
                         "With checkpoints on: the topic of the markers that record which "
                         "checkpoint each transaction committed (keyed by transactional_id; "
                         "make it compacted)."});
    s.options.push_back(
        {"state_topic", OptionType::kString, "",
         "Partition-owned state (docs/SCALING.md): the compacted changelog topic that holds "
         "the window, dedup, QC and alert-rule state of every input partition of the "
         "pipeline's kafka "
         "source (key `<topic>/<partition>`, value the partition's next offset and its "
         "state), written inside each checkpoint's transaction. Any worker of the group "
         "restores a partition from it when the partition is assigned to it. Needs "
         "`transactional_id` and checkpoints; empty: off."});
    s.options.push_back({"flush_timeout", OptionType::kDuration, "30s",
                         "How long a commit waits for the brokers' acknowledgements."});
    for (OptionSpec& o : BreakerOptionSpecs()) s.options.push_back(o);
    return s;
  }();
  return spec;
}

Result<KafkaSinkOptions> ParseKafkaSinkOptions(const OptionReader& r, std::string name) {
  KafkaSinkOptions o;
  o.name = std::move(name);
  TRIB_ASSIGN_OR_RETURN(o.connect, ParseKafkaConnectOptions(r));
  TRIB_ASSIGN_OR_RETURN(o.readings_topic, r.GetString("readings_topic"));
  TRIB_ASSIGN_OR_RETURN(o.windows_topic, r.GetString("windows_topic"));
  TRIB_ASSIGN_OR_RETURN(o.quarantine_topic, r.GetString("quarantine_topic"));
  TRIB_ASSIGN_OR_RETURN(o.late_topic, r.GetString("late_topic"));
  TRIB_ASSIGN_OR_RETURN(int64_t res, r.GetInt("h3_resolution"));
  o.h3_resolution = static_cast<int>(res);
  TRIB_ASSIGN_OR_RETURN(o.transactional_id, r.GetString("transactional_id"));
  TRIB_ASSIGN_OR_RETURN(o.checkpoint_topic, r.GetString("checkpoint_topic"));
  TRIB_ASSIGN_OR_RETURN(o.state_topic, r.GetString("state_topic"));
  if (!o.state_topic.empty() && o.transactional_id.empty()) {
    return r.Error("state_topic", "needs `transactional_id` (state commits with the output)");
  }
  TRIB_ASSIGN_OR_RETURN(o.flush_timeout, r.GetDuration("flush_timeout"));
  if (o.flush_timeout <= 0) return r.Error("flush_timeout", "must be positive");
  return o;
}

std::string KafkaReadingKey(const Reading& r, int resolution) {
  uint64_t cell = h3::LatLngToCell(r.lat, r.lon, resolution);
  if (cell != h3::kNullCell) return h3::CellToString(cell);
  return std::string(r.device.view());
}

std::string KafkaReadingJson(const Reading& r, const std::vector<std::string>& zone_layers) {
  std::string out;
  out.reserve(256);
  AppendReadingFields(out, r, zone_layers);
  out += '}';
  return out;
}

std::string KafkaQuarantineJson(const QuarantineRecord& q) {
  std::string out = "{\"reason\":";
  AppendJsonString(out, q.reason.view());
  AddString(out, "detail", q.detail);
  AddString(out, "raw", q.raw);
  AddString(out, "arrival_time", FormatTime(q.arrival_time));
  if (!q.device.empty()) AddString(out, "device", q.device.view());
  if (!q.metric.empty()) AddString(out, "metric", q.metric.view());
  out += ",\"provenance\":";
  out += ProvenanceToJson(q.prov, q.device, QcFlags{});
  out += '}';
  return out;
}

std::string KafkaLateJson(const LateRecord& l, const std::vector<std::string>& zone_layers) {
  std::string out;
  AppendReadingFields(out, l.reading, zone_layers);
  AddString(out, "window", l.window.view());
  AddNumber(out, "lateness_s", static_cast<double>(l.lateness) / kMicrosPerSecond);
  AddString(out, "watermark", FormatTime(l.watermark));
  out += '}';
  return out;
}

KafkaSink::KafkaSink(KafkaSinkOptions options) : options_(std::move(options)) {
  topics_ = {options_.readings_topic, options_.windows_topic, options_.quarantine_topic,
             options_.late_topic};
  for (size_t i = 0; i < kTableCount; ++i) {
    ledger_keys_[i] = options_.name + "/" + kTableNames[i];
  }
}

KafkaSink::~KafkaSink() {
  Close();
}

void KafkaSink::OnDelivery(rd_kafka_t* /*rk*/, const rd_kafka_message_t* m, void* opaque) {
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
  auto* self = static_cast<KafkaSink*>(opaque);
  if (self->failed_++ == 0) {
    self->first_failure_ =
        std::string(rd_kafka_topic_name(m->rkt)) + ": " + rd_kafka_err2str(m->err);
  }
}

Status KafkaSink::Open(RunContext& ctx) {
  ledger_ = ctx.ledger;
  ctx_ = &ctx;
  if (ctx.config != nullptr) zone_layers_ = ExtraZoneLayerNames(*ctx.config);
  KafkaProperties props = {
      {"bootstrap.servers", options_.connect.brokers},
      {"client.id", "tributary-" + options_.name},
      // No duplicates or reordering from the producer's own retries; implies acks=all.
      {"enable.idempotence", "true"},
      {"linger.ms", "5"},
  };
  if (!options_.transactional_id.empty()) {
    props.emplace_back("transactional.id", options_.transactional_id);
  }
  props.insert(props.end(), options_.connect.properties.begin(), options_.connect.properties.end());
  TRIB_ASSIGN_OR_RETURN(KafkaConf conf, MakeKafkaConf(props));
  rd_kafka_conf_set_dr_msg_cb(conf.get(), &KafkaSink::OnDelivery);
  rd_kafka_conf_set_opaque(conf.get(), this);
  TRIB_ASSIGN_OR_RETURN(producer_, MakeKafkaHandle(RD_KAFKA_PRODUCER, std::move(conf)));
  if (!options_.transactional_id.empty()) {
    // Fences an older producer with the same id and aborts what it left open.
    TRIB_RETURN_IF_ERROR(
        KafkaStatus(rd_kafka_init_transactions(producer_.get(), TimeoutMs(options_.flush_timeout)),
                    "kafka sink " + options_.name + ": init transactions"));
  }
  return Status::Ok();
}

Status KafkaSink::BeginTransactionIfNeeded() {
  if (options_.transactional_id.empty() || in_transaction_) return Status::Ok();
  TRIB_RETURN_IF_ERROR(KafkaStatus(rd_kafka_begin_transaction(producer_.get()),
                                   "kafka sink " + options_.name + ": begin transaction"));
  in_transaction_ = true;
  return Status::Ok();
}

Status KafkaSink::Produce(Table table, const std::string& key, const std::string& value) {
  TRIB_RETURN_IF_ERROR(ProduceTo(topics_[table], key, value));
  ++pending_[table];
  return Status::Ok();
}

Status KafkaSink::ProduceTo(const std::string& topic, const std::string& key,
                            const std::string& value) {
  while (true) {
    rd_kafka_resp_err_t err =
        checkpointing_
            ? rd_kafka_producev(producer_.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                                RD_KAFKA_V_KEY(key.data(), key.size()),
                                RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                RD_KAFKA_V_HEADER("tributary-run", run_id_.data(),
                                                  static_cast<ssize_t>(run_id_.size())),
                                RD_KAFKA_V_HEADER("tributary-checkpoint", next_checkpoint_.data(),
                                                  static_cast<ssize_t>(next_checkpoint_.size())),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)
            : rd_kafka_producev(producer_.get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                                RD_KAFKA_V_KEY(key.data(), key.size()),
                                RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      return KafkaStatus(err, "kafka sink " + options_.name + ": produce to " + topic);
    }
    // The local queue is full: serve delivery reports until there is room.
    rd_kafka_poll(producer_.get(), 10);
  }
  return Status::Ok();
}

Status KafkaSink::Write(const Batch& batch) {
  if (producer_ == nullptr) return Status::Internal("kafka sink written before Open");
  TRIB_RETURN_IF_ERROR(BeginTransactionIfNeeded());
  if (batch.partition_states != nullptr) partition_states_ = batch.partition_states;
  if (batch.source_index >= 0 && batch.source_checkpoint != 0) {
    const auto i = static_cast<size_t>(batch.source_index);
    if (source_checkpoints_.size() <= i) source_checkpoints_.resize(i + 1, 0);
    source_checkpoints_[i] = std::max(source_checkpoints_[i], batch.source_checkpoint);
  }
  if (!topics_[kReadings].empty()) {
    for (const Reading& r : batch.readings) {
      TRIB_RETURN_IF_ERROR(Produce(kReadings, KafkaReadingKey(r, options_.h3_resolution),
                                   KafkaReadingJson(r, zone_layers_)));
    }
  }
  if (!topics_[kWindows].empty()) {
    for (const WindowResult& w : batch.windows) {
      TRIB_RETURN_IF_ERROR(Produce(kWindows, std::string(w.group.view()), MqttWindowJson(w)));
    }
  }
  if (!topics_[kQuarantine].empty()) {
    for (const QuarantineRecord& q : batch.quarantine) {
      TRIB_RETURN_IF_ERROR(
          Produce(kQuarantine, std::string(q.device.view()), KafkaQuarantineJson(q)));
    }
  }
  if (!topics_[kLate].empty()) {
    for (const LateRecord& l : batch.late) {
      TRIB_RETURN_IF_ERROR(Produce(kLate, KafkaReadingKey(l.reading, options_.h3_resolution),
                                   KafkaLateJson(l, zone_layers_)));
    }
  }
  rd_kafka_poll(producer_.get(), 0);  // serve delivery reports
  return Status::Ok();
}

Status KafkaSink::Commit() {
  if (producer_ == nullptr || checkpointing_) return Status::Ok();
  const std::string what = "kafka sink " + options_.name;
  if (in_transaction_) {
    rd_kafka_error_t* error =
        rd_kafka_commit_transaction(producer_.get(), TimeoutMs(options_.flush_timeout));
    if (error != nullptr) {
      if (rd_kafka_error_txn_requires_abort(error)) {
        // The transaction's messages are gone; failing the run keeps the sources from
        // committing their input, so a restart produces them again.
        Status st = KafkaStatus(error, what + ": commit transaction");
        Status aborted = KafkaStatus(
            rd_kafka_abort_transaction(producer_.get(), TimeoutMs(options_.flush_timeout)),
            what + ": abort transaction");
        if (!aborted.ok()) spdlog::warn("{}", aborted.ToString());
        in_transaction_ = false;
        return Status::Io(st.message() + " (transaction aborted)");
      }
      return KafkaStatus(error, what + ": commit transaction");  // retryable or fatal
    }
    in_transaction_ = false;
  } else {
    rd_kafka_resp_err_t err =
        rd_kafka_flush(producer_.get(), static_cast<int>(TimeoutMs(options_.flush_timeout)));
    if (err == RD_KAFKA_RESP_ERR__TIMED_OUT) {
      return Status::Timeout(what + ": " + std::to_string(rd_kafka_outq_len(producer_.get())) +
                             " messages not acknowledged within " +
                             FormatDuration(options_.flush_timeout));
    }
  }
  TRIB_RETURN_IF_ERROR(DeliveryFailures());
  for (size_t i = 0; i < kTableCount; ++i) {
    if (pending_[i] > 0 && ledger_ != nullptr)
      ledger_->AddSinkCommitted(ledger_keys_[i], pending_[i]);
    pending_[i] = 0;
  }
  return Status::Ok();
}

Status KafkaSink::DeliveryFailures() {
  if (failed_ == 0) return Status::Ok();
  Status st = Status::Io("kafka sink " + options_.name + ": " + std::to_string(failed_) +
                         " messages could not be delivered (first: " + first_failure_ + ")");
  failed_ = 0;
  return st;
}

namespace {

// Read `topic` from its beginning to the end offsets found at the start, calling
// `each` for every message (read_committed).
Status ReadTopicToEnd(const KafkaConnectOptions& connect, const std::string& topic,
                      const std::string& client, DurationUs timeout,
                      const std::function<void(const rd_kafka_message_t&)>& each) {
  const std::string what = "topic " + topic;
  KafkaProperties props = {{"bootstrap.servers", connect.brokers},
                           {"group.id", client},  // assign() needs one; nothing is committed
                           {"isolation.level", "read_committed"},
                           {"enable.auto.commit", "false"},
                           {"enable.partition.eof", "true"},
                           {"client.id", client}};
  props.insert(props.end(), connect.properties.begin(), connect.properties.end());
  // The group settings of a source make no sense for this reader.
  std::erase_if(props, [](const auto& kv) {
    return kv.first == "partition.assignment.strategy" || kv.first == "group.instance.id";
  });
  TRIB_ASSIGN_OR_RETURN(KafkaConf conf, MakeKafkaConf(props));
  TRIB_ASSIGN_OR_RETURN(KafkaHandle consumer, MakeKafkaHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  const int timeout_ms = static_cast<int>(TimeoutMs(timeout));
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(consumer.get(), topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(consumer.get(), 0, rkt, &md, timeout_ms);
  rd_kafka_topic_destroy(rkt);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaStatus(err, what + ": metadata");
  std::unique_ptr<const rd_kafka_metadata_t, void (*)(const rd_kafka_metadata_t*)> guard(
      md, &rd_kafka_metadata_destroy);
  if (md->topic_cnt != 1 || md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
    return Status::Ok();  // nothing was ever written
  }
  if (md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaStatus(md->topics[0].err, what);
  KafkaPartitionList list(rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt));
  std::map<int32_t, int64_t> ends;
  for (int i = 0; i < md->topics[0].partition_cnt; ++i) {
    const int32_t p = md->topics[0].partitions[i].id;
    int64_t low = 0;
    int64_t high = 0;
    TRIB_RETURN_IF_ERROR(KafkaStatus(
        rd_kafka_query_watermark_offsets(consumer.get(), topic.c_str(), p, &low, &high, timeout_ms),
        what + ": offsets of partition " + std::to_string(p)));
    if (high <= low) continue;
    ends[p] = high;
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  if (ends.empty()) return Status::Ok();
  TRIB_RETURN_IF_ERROR(KafkaStatus(rd_kafka_assign(consumer.get(), list.get()), what + ": assign"));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (!ends.empty()) {
    if (std::chrono::steady_clock::now() > deadline) {
      return Status::Timeout(what + ": not read to its end within " + FormatDuration(timeout));
    }
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer.get(), 100);
    if (m == nullptr) continue;
    std::unique_ptr<rd_kafka_message_t, void (*)(rd_kafka_message_t*)> msg(
        m, &rd_kafka_message_destroy);
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      ends.erase(m->partition);
      continue;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Status::Io(what + ": " + rd_kafka_message_errstr(m));
    }
    auto end = ends.find(m->partition);
    if (end == ends.end()) continue;
    if (m->offset < end->second) each(*m);
    if (m->offset + 1 >= end->second) ends.erase(end);
  }
  return Status::Ok();
}

}  // namespace

// The marker value: "checkpoint=<id> run=<run> readings=<n> windows=<n> quarantine=<n>
// late=<n>", the rows being what that transaction stored per table.
Result<SinkCheckpointRecord> KafkaSink::ReadLastMarker() {
  SinkCheckpointRecord rec;
  Status bad;
  Status read = ReadTopicToEnd(
      options_.connect, options_.checkpoint_topic, "tributary-markers-" + options_.transactional_id,
      options_.flush_timeout, [&](const rd_kafka_message_t& m) {
        std::string_view key(static_cast<const char*>(m.key), m.key_len);
        if (!bad.ok() || key != options_.transactional_id) return;
        std::istringstream in(std::string(static_cast<const char*>(m.payload), m.len));
        SinkCheckpointRecord r;
        std::string field;
        while (in >> field) {
          const size_t eq = field.find('=');
          if (eq == std::string::npos) continue;
          const std::string name = field.substr(0, eq);
          const std::string value = field.substr(eq + 1);
          if (name == "run") continue;
          const uint64_t n = std::strtoull(value.c_str(), nullptr, 10);
          if (name == "checkpoint") {
            r.checkpoint = n;
          } else {
            for (size_t t = 0; t < kTableCount; ++t) {
              if (name == kTableNames[t] && n > 0) r.rows[ledger_keys_[t]] = n;
            }
          }
        }
        if (r.checkpoint == 0) {
          bad = Status::Corrupt("marker at offset " + std::to_string(m.offset) +
                                " has no checkpoint id");
          return;
        }
        rec = std::move(r);  // one key lands in one partition, so the last is the latest
      });
  if (read.ok()) read = bad;
  TRIB_RETURN_IF_ERROR(read.WithContext("kafka sink " + options_.name + ": checkpoint topic"));
  return rec;
}

Result<SinkCheckpointRecord> KafkaSink::OpenCheckpoints() {
  if (producer_ == nullptr) return Status::Internal("kafka sink: OpenCheckpoints before Open");
  if (options_.transactional_id.empty()) {
    return Status::Invalid(
        "checkpoints need `transactional_id`: the kafka sink commits each checkpoint as one "
        "Kafka transaction");
  }
  if (options_.checkpoint_topic.empty()) {
    return Status::Invalid("checkpoints need `checkpoint_topic`");
  }
  // Open already ran init_transactions, which aborted any transaction an earlier process
  // left open: what the markers say now is final.
  TRIB_ASSIGN_OR_RETURN(SinkCheckpointRecord rec, ReadLastMarker());
  std::random_device rd;
  std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(NowUs()));
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(gen()));
  run_id_ = buf;
  next_checkpoint_ = std::to_string(rec.checkpoint + 1);
  checkpointing_ = true;
  return rec;
}

Status KafkaSink::PrepareCheckpoint(uint64_t /*checkpoint*/) {
  if (producer_ == nullptr) return Status::Internal("kafka sink: prepare before Open");
  // Every message of the transaction acknowledged; still invisible to read_committed.
  rd_kafka_resp_err_t err =
      rd_kafka_flush(producer_.get(), static_cast<int>(TimeoutMs(options_.flush_timeout)));
  if (err == RD_KAFKA_RESP_ERR__TIMED_OUT) {
    return Status::Timeout(
        "kafka sink " + options_.name + ": " + std::to_string(rd_kafka_outq_len(producer_.get())) +
        " messages not acknowledged within " + FormatDuration(options_.flush_timeout));
  }
  return DeliveryFailures();
}

Status KafkaSink::SendSourceOffsets() {
  if (ctx_ == nullptr) return Status::Ok();
  for (size_t i = 0; i < ctx_->sources.size(); ++i) {
    const auto* source = dynamic_cast<const KafkaSource*>(ctx_->sources[i]);
    if (source == nullptr) continue;
    const uint64_t through = i < source_checkpoints_.size() ? source_checkpoints_[i] : 0;
    std::map<std::pair<std::string, int32_t>, int64_t> offsets =
        source->TransactionOffsets(through);
    if (offsets.empty()) continue;
    KafkaPartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size())));
    for (const auto& [key, next] : offsets) {
      rd_kafka_topic_partition_list_add(list.get(), key.first.c_str(), key.second)->offset = next;
    }
    rd_kafka_consumer_group_metadata_t* md = source->GroupMetadata();
    if (md == nullptr) continue;
    rd_kafka_error_t* error = rd_kafka_send_offsets_to_transaction(
        producer_.get(), list.get(), md, static_cast<int>(TimeoutMs(options_.flush_timeout)));
    rd_kafka_consumer_group_metadata_destroy(md);
    if (error != nullptr) {
      return KafkaStatus(error, "kafka sink " + options_.name + ": send offsets of source " +
                                    std::to_string(i + 1) + " to the transaction");
    }
  }
  return Status::Ok();
}

Status KafkaSink::CheckMembership() const {
  if (ctx_ == nullptr) return Status::Ok();
  for (const Source* s : ctx_->sources) {
    if (const auto* source = dynamic_cast<const KafkaSource*>(s)) {
      TRIB_RETURN_IF_ERROR(source->CheckMembership());
    }
  }
  return Status::Ok();
}

Status KafkaSink::CommitCheckpoint(uint64_t checkpoint) {
  if (!checkpointing_) {
    return Status::Internal("kafka sink: CommitCheckpoint before OpenCheckpoints");
  }
  const std::string what = "kafka sink " + options_.name;
  // A checkpoint without output still commits a marker: the sink must report it.
  TRIB_RETURN_IF_ERROR(BeginTransactionIfNeeded());
  TRIB_RETURN_IF_ERROR(SendSourceOffsets());
  TRIB_RETURN_IF_ERROR(ProducePartitionStates());
  if (!options_.state_topic.empty()) {
    // Fencing: a member the group forgot must not commit the state of partitions
    // another member may have restored already. Before the marker: on a broker without
    // transaction isolation (the mock) a marker counts as committed.
    Status member = CheckMembership();
    if (!member.ok()) {
      Status aborted = KafkaStatus(
          rd_kafka_abort_transaction(producer_.get(), TimeoutMs(options_.flush_timeout)),
          what + ": abort transaction");
      if (aborted.ok()) in_transaction_ = false;
      return member.WithContext(what + ": checkpoint " + std::to_string(checkpoint) +
                                " aborted, not committed");
    }
  }
  std::string marker = "checkpoint=" + std::to_string(checkpoint) + " run=" + run_id_;
  for (size_t t = 0; t < kTableCount; ++t) {
    marker += std::string(" ") + kTableNames[t] + "=" + std::to_string(pending_[t]);
  }
  const std::string& key = options_.transactional_id;
  rd_kafka_resp_err_t err = rd_kafka_producev(
      producer_.get(), RD_KAFKA_V_TOPIC(options_.checkpoint_topic.c_str()),
      RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_VALUE(marker.data(), marker.size()),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return KafkaStatus(err, what + ": produce to " + options_.checkpoint_topic);
  }
  rd_kafka_error_t* error =
      rd_kafka_commit_transaction(producer_.get(), TimeoutMs(options_.flush_timeout));
  if (error != nullptr) {
    // The coordinator fails the run; the next start aborts this transaction (if it is
    // still open) and gives the sink the checkpoint's epoch log again.
    return KafkaStatus(error,
                       what + ": commit transaction of checkpoint " + std::to_string(checkpoint));
  }
  in_transaction_ = false;
  TRIB_RETURN_IF_ERROR(DeliveryFailures());
  for (size_t i = 0; i < kTableCount; ++i) {
    if (pending_[i] > 0 && ledger_ != nullptr)
      ledger_->AddSinkCommitted(ledger_keys_[i], pending_[i]);
    pending_[i] = 0;
  }
  next_checkpoint_ = std::to_string(checkpoint + 1);
  return Status::Ok();
}

// Partition-owned state: one record per partition on `state_topic` inside the
// checkpoint's transaction, delivered before the marker is produced, so a marker never
// names a checkpoint whose state records the brokers do not have.
Status KafkaSink::ProducePartitionStates() {
  std::shared_ptr<const std::vector<PartitionState>> states = std::move(partition_states_);
  partition_states_.reset();
  if (options_.state_topic.empty() || states == nullptr || states->empty()) return Status::Ok();
  for (const PartitionState& p : *states) {
    for (const auto& [key, value] : EncodePartitionStateRecords(p)) {
      TRIB_RETURN_IF_ERROR(ProduceTo(options_.state_topic, key, value));
    }
  }
  rd_kafka_resp_err_t err =
      rd_kafka_flush(producer_.get(), static_cast<int>(TimeoutMs(options_.flush_timeout)));
  if (err == RD_KAFKA_RESP_ERR__TIMED_OUT) {
    return Status::Timeout("kafka sink " + options_.name +
                           ": partition states not acknowledged "
                           "within " +
                           FormatDuration(options_.flush_timeout));
  }
  return DeliveryFailures();
}

std::vector<std::pair<std::string, std::string>> EncodePartitionStateRecords(
    const PartitionState& p) {
  const size_t count = std::max<size_t>(
      1, (p.state.size() + kPartitionStateChunkBytes - 1) / kPartitionStateChunkBytes);
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    CheckpointWriter w;
    w.Section("partition-state");
    w.U64(2);  // format version
    w.I64(p.offset);
    w.U64(i);
    w.U64(count);
    const size_t from = std::min(p.state.size(), i * kPartitionStateChunkBytes);
    w.Str(std::string_view(p.state).substr(from, kPartitionStateChunkBytes));
    out.emplace_back(p.key + "#" + std::to_string(i), w.Take());
  }
  return out;
}

Result<PartitionStateChunk> DecodePartitionStateRecord(std::string_view key, std::string_view value,
                                                       std::string& partition) {
  CheckpointReader in(value);
  PartitionStateChunk c;
  TRIB_RETURN_IF_ERROR(
      in.ExpectSection("partition-state").WithContext("state record " + std::string(key)));
  const uint64_t version = in.U64();
  if (in.ok() && version != 1 && version != 2) {
    return Status::Invalid("state record " + std::string(key) + ": format version " +
                           std::to_string(version) + " is not known to this build");
  }
  c.offset = in.I64();
  if (version == 2) {
    c.index = in.U64();
    c.count = in.U64();
    const size_t hash = key.rfind('#');
    if (hash == std::string_view::npos || key.substr(hash + 1) != std::to_string(c.index)) {
      return Status::Corrupt("state record " + std::string(key) + ": the key does not name chunk " +
                             std::to_string(c.index));
    }
    partition = std::string(key.substr(0, hash));
  } else {
    partition = std::string(key);
  }
  c.bytes = std::string(in.Str());
  TRIB_RETURN_IF_ERROR(in.status().WithContext("state record " + std::string(key)));
  if (c.count == 0 || c.index >= c.count) {
    return Status::Corrupt("state record " + std::string(key) + ": chunk " +
                           std::to_string(c.index) + " of " + std::to_string(c.count));
  }
  return c;
}

namespace {

std::string HeaderOf(const rd_kafka_message_t& m, const char* name) {
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(&m, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR) return {};
  const void* value = nullptr;
  size_t size = 0;
  if (rd_kafka_header_get_last(headers, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return {};
  }
  return std::string(static_cast<const char*>(value), size);
}

}  // namespace

Result<std::map<std::string, PartitionState>> ReadPartitionStates(
    const KafkaConnectOptions& connect, const std::string& state_topic,
    const std::string& checkpoint_topic, const std::set<std::string>& keys, DurationUs timeout,
    const std::string& client) {
  // Committed checkpoints of every transactional id: "run/checkpoint".
  std::set<std::string> committed;
  TRIB_RETURN_IF_ERROR(ReadTopicToEnd(
      connect, checkpoint_topic, client + "-markers", timeout, [&](const rd_kafka_message_t& m) {
        std::istringstream in(std::string(static_cast<const char*>(m.payload), m.len));
        std::string field;
        std::string run;
        std::string checkpoint;
        while (in >> field) {
          if (field.rfind("checkpoint=", 0) == 0) checkpoint = field.substr(11);
          if (field.rfind("run=", 0) == 0) run = field.substr(4);
        }
        if (!run.empty() && !checkpoint.empty()) committed.insert(run + "/" + checkpoint);
      }));
  // The latest committed record of every chunk key, by partition key and chunk index.
  // One chunk key lands in one partition of the state topic, so the last read is the
  // latest.
  std::map<std::string, std::map<uint64_t, PartitionStateChunk>> chunks;
  Status decode_error;
  TRIB_RETURN_IF_ERROR(ReadTopicToEnd(
      connect, state_topic, client + "-state", timeout, [&](const rd_kafka_message_t& m) {
        std::string_view key(static_cast<const char*>(m.key), m.key_len);
        std::string_view named = key.substr(0, key.rfind('#'));
        if (keys.count(std::string(named)) == 0 && keys.count(std::string(key)) == 0) return;
        // Only records of a committed checkpoint: on a broker without transaction
        // isolation (the mock cluster) an aborted one's records stay visible.
        const std::string id =
            HeaderOf(m, "tributary-run") + "/" + HeaderOf(m, "tributary-checkpoint");
        if (committed.count(id) == 0) return;
        std::string partition;
        Result<PartitionStateChunk> c = DecodePartitionStateRecord(
            key, std::string_view(static_cast<const char*>(m.payload), m.len), partition);
        if (!c.ok()) {
          if (decode_error.ok()) decode_error = c.status();
          return;
        }
        if (keys.count(partition) == 0) return;
        c->written_by = id;
        chunks[partition][c->index] = std::move(*c);
      }));
  TRIB_RETURN_IF_ERROR(decode_error.WithContext("topic " + state_topic));
  std::map<std::string, PartitionState> out;
  for (auto& [partition, parts] : chunks) {
    auto first = parts.find(0);
    if (first == parts.end()) {
      return Status::Corrupt("topic " + state_topic + ": the state of partition " + partition +
                             " has no chunk 0");
    }
    const uint64_t count = first->second.count;
    PartitionState p;
    p.key = partition;
    p.offset = first->second.offset;
    for (uint64_t i = 0; i < count; ++i) {
      auto it = parts.find(i);
      // The chunks of one state were written by one checkpoint's transaction.
      if (it == parts.end() || it->second.written_by != first->second.written_by) {
        return Status::Corrupt("topic " + state_topic + ": the state of partition " + partition +
                               " lacks chunk " + std::to_string(i) + " of " +
                               std::to_string(count));
      }
      p.state += it->second.bytes;
    }
    out[partition] = std::move(p);
  }
  return out;
}

void KafkaSink::Close() {
  if (producer_ == nullptr) return;
  if (in_transaction_) {
    // Not committed: abort, so read_committed consumers never see it.
    Status aborted = KafkaStatus(rd_kafka_abort_transaction(producer_.get(), 5000),
                                 "kafka sink " + options_.name + ": abort transaction");
    if (!aborted.ok()) spdlog::warn("{}", aborted.ToString());
    in_transaction_ = false;
  }
  rd_kafka_flush(producer_.get(), 5000);
  producer_.reset();
}

void RegisterKafkaSink(Registry& registry) {
  registry.AddSink(
      "kafka", &KafkaSinkSectionSpec(),
      [](const SinkEntry& entry) -> Result<std::unique_ptr<Sink>> {
        TRIB_ASSIGN_OR_RETURN(KafkaSinkOptions options,
                              ParseKafkaSinkOptions(entry.options, entry.name));
        TRIB_ASSIGN_OR_RETURN(BreakerOptions breaker, ReadBreakerOptions(entry.options));
        if (!breaker.enabled) {
          return std::unique_ptr<Sink>(std::make_unique<KafkaSink>(std::move(options)));
        }
        std::string name = options.name;
        return MakeBreakerSink(name, std::move(breaker), [options]() -> std::unique_ptr<Sink> {
          return std::make_unique<KafkaSink>(options);
        });
      });
}

}  // namespace tributary
