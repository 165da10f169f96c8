#include "io/sinks/kafka_sink.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <utility>

#include "core/json_writer.h"
#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "core/registry.h"
#include "core/time.h"
#include "io/sinks/mqtt_sink.h"
#include "spatial/h3.h"

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
void AppendReadingFields(std::string& out, const Reading& r) {
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
    s.options.push_back({"flush_timeout", OptionType::kDuration, "30s",
                         "How long a commit waits for the brokers' acknowledgements."});
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
  TRIB_ASSIGN_OR_RETURN(o.flush_timeout, r.GetDuration("flush_timeout"));
  if (o.flush_timeout <= 0) return r.Error("flush_timeout", "must be positive");
  return o;
}

std::string KafkaReadingKey(const Reading& r, int resolution) {
  uint64_t cell = h3::LatLngToCell(r.lat, r.lon, resolution);
  if (cell != h3::kNullCell) return h3::CellToString(cell);
  return std::string(r.device.view());
}

std::string KafkaReadingJson(const Reading& r) {
  std::string out;
  out.reserve(256);
  AppendReadingFields(out, r);
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

std::string KafkaLateJson(const LateRecord& l) {
  std::string out;
  AppendReadingFields(out, l.reading);
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
  const std::string& topic = topics_[table];
  while (true) {
    rd_kafka_resp_err_t err = rd_kafka_producev(
        producer_.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      return KafkaStatus(err, "kafka sink " + options_.name + ": produce to " + topic);
    }
    // The local queue is full: serve delivery reports until there is room.
    rd_kafka_poll(producer_.get(), 10);
  }
  ++pending_[table];
  return Status::Ok();
}

Status KafkaSink::Write(const Batch& batch) {
  if (producer_ == nullptr) return Status::Internal("kafka sink written before Open");
  TRIB_RETURN_IF_ERROR(BeginTransactionIfNeeded());
  if (!topics_[kReadings].empty()) {
    for (const Reading& r : batch.readings) {
      TRIB_RETURN_IF_ERROR(
          Produce(kReadings, KafkaReadingKey(r, options_.h3_resolution), KafkaReadingJson(r)));
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
      TRIB_RETURN_IF_ERROR(
          Produce(kLate, KafkaReadingKey(l.reading, options_.h3_resolution), KafkaLateJson(l)));
    }
  }
  rd_kafka_poll(producer_.get(), 0);  // serve delivery reports
  return Status::Ok();
}

Status KafkaSink::Commit() {
  if (producer_ == nullptr) return Status::Ok();
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
  if (failed_ > 0) {
    Status st = Status::Io(what + ": " + std::to_string(failed_) +
                           " messages could not be delivered (first: " + first_failure_ + ")");
    failed_ = 0;
    return st;
  }
  for (size_t i = 0; i < kTableCount; ++i) {
    if (pending_[i] > 0 && ledger_ != nullptr)
      ledger_->AddSinkCommitted(ledger_keys_[i], pending_[i]);
    pending_[i] = 0;
  }
  return Status::Ok();
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
  registry.AddSink("kafka", &KafkaSinkSectionSpec(),
                   [](const SinkEntry& entry) -> Result<std::unique_ptr<Sink>> {
                     TRIB_ASSIGN_OR_RETURN(KafkaSinkOptions options,
                                           ParseKafkaSinkOptions(entry.options, entry.name));
                     return std::unique_ptr<Sink>(std::make_unique<KafkaSink>(std::move(options)));
                   });
}

}  // namespace tributary
