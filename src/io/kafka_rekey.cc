#include "io/kafka_rekey.h"

#include <simdjson.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <unordered_set>

#include "spatial/h3.h"

namespace tributary {
namespace {

constexpr int kBaseResolution = 5;

bool Number(simdjson::dom::element e, double* out) {
  if (e.is_double()) {
    *out = e.get_double().value_unsafe();
    return true;
  }
  if (e.is_int64()) {
    *out = static_cast<double>(e.get_int64().value_unsafe());
    return true;
  }
  return false;
}

bool FindLatLon(simdjson::dom::object o, double* lat, double* lon) {
  bool has_lat = false;
  bool has_lon = false;
  for (auto field : o) {
    std::string_view k = field.key;
    if (!has_lat && (k == "lat" || k == "latitude")) has_lat = Number(field.value, lat);
    if (!has_lon && (k == "lon" || k == "lng" || k == "longitude")) {
      has_lon = Number(field.value, lon);
    }
  }
  return has_lat && has_lon;
}

struct DeliveryFailures {
  uint64_t count = 0;
  std::string first;
};

void OnDelivery(rd_kafka_t* /*rk*/, const rd_kafka_message_t* m, void* opaque) {
  if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) return;
  auto* f = static_cast<DeliveryFailures*>(opaque);
  if (f->count++ == 0) f->first = rd_kafka_err2str(m->err);
}

}  // namespace

std::string RekeyReport::ToText() const {
  return "read " + std::to_string(read) + " messages: " + std::to_string(rekeyed_fine) +
         " in the split cells (now " + std::to_string(fine_keys) + " keys), " +
         std::to_string(rekeyed_base) + " keyed by their resolution-5 cell, " +
         std::to_string(kept) + " without a position kept their key\n";
}

bool RekeyPosition(std::string_view json, double* lat, double* lon) {
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(json.data(), json.size()).get(doc) != simdjson::SUCCESS) return false;
  simdjson::dom::object o;
  if (doc.get_object().get(o) != simdjson::SUCCESS) return false;
  if (FindLatLon(o, lat, lon)) return true;
  for (const char* nested : {"location", "position"}) {
    simdjson::dom::object inner;
    if (o[nested].get_object().get(inner) == simdjson::SUCCESS && FindLatLon(inner, lat, lon)) {
      return true;
    }
  }
  return false;
}

std::string RekeyKey(double lat, double lon, const std::string& key, const RekeyOptions& o,
                     bool* fine) {
  *fine = false;
  if (!std::isfinite(lat) || !std::isfinite(lon)) return key;
  const uint64_t cell = h3::LatLngToCell(lat, lon, o.resolution);
  if (cell == h3::kNullCell) return key;
  // A listed cell of any resolution up to `resolution` contains this one when it is
  // one of its ancestors.
  for (uint64_t listed : o.cells) {
    const int res = h3::GetResolution(listed);
    if (res <= o.resolution && h3::CellToParent(cell, res) == listed) {
      *fine = true;
      return h3::CellToString(cell);
    }
  }
  return h3::CellToString(h3::CellToParent(cell, std::min(kBaseResolution, o.resolution)));
}

Result<RekeyReport> RekeyTopic(const RekeyOptions& o) {
  if (o.from == o.to) return Status::Invalid("rekey: --from and --to must differ");
  if (o.resolution < kBaseResolution || o.resolution > 15) {
    return Status::Invalid("rekey: --resolution must be 5..15");
  }
  const int timeout = static_cast<int>(o.timeout_ms);
  // assign() needs a group id; nothing is committed to it.
  KafkaProperties cprops = {{"bootstrap.servers", o.brokers},
                            {"group.id", "tributary-rekey"},
                            {"enable.auto.commit", "false"},
                            {"enable.partition.eof", "true"},
                            {"client.id", "tributary-rekey"}};
  cprops.insert(cprops.end(), o.properties.begin(), o.properties.end());
  TRIB_ASSIGN_OR_RETURN(KafkaConf cconf, MakeKafkaConf(cprops));
  TRIB_ASSIGN_OR_RETURN(KafkaHandle consumer, MakeKafkaHandle(RD_KAFKA_CONSUMER, std::move(cconf)));
  KafkaProperties pprops = {{"bootstrap.servers", o.brokers},
                            {"enable.idempotence", "true"},
                            {"linger.ms", "5"},
                            {"client.id", "tributary-rekey"}};
  pprops.insert(pprops.end(), o.properties.begin(), o.properties.end());
  TRIB_ASSIGN_OR_RETURN(KafkaConf pconf, MakeKafkaConf(pprops));
  DeliveryFailures failures;
  rd_kafka_conf_set_dr_msg_cb(pconf.get(), &OnDelivery);
  rd_kafka_conf_set_opaque(pconf.get(), &failures);
  TRIB_ASSIGN_OR_RETURN(KafkaHandle producer, MakeKafkaHandle(RD_KAFKA_PRODUCER, std::move(pconf)));

  rd_kafka_topic_t* rkt = rd_kafka_topic_new(consumer.get(), o.from.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(consumer.get(), 0, rkt, &md, timeout);
  rd_kafka_topic_destroy(rkt);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return KafkaStatus(err, "rekey: metadata of " + o.from);
  std::unique_ptr<const rd_kafka_metadata_t, void (*)(const rd_kafka_metadata_t*)> guard(
      md, &rd_kafka_metadata_destroy);
  if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::Invalid("rekey: topic " + o.from + " not found");
  }
  KafkaPartitionList list(rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt));
  std::map<int32_t, int64_t> ends;  // partition → end offset at the start
  for (int i = 0; i < md->topics[0].partition_cnt; ++i) {
    const int32_t p = md->topics[0].partitions[i].id;
    int64_t low = 0;
    int64_t high = 0;
    TRIB_RETURN_IF_ERROR(KafkaStatus(
        rd_kafka_query_watermark_offsets(consumer.get(), o.from.c_str(), p, &low, &high, timeout),
        "rekey: offsets of " + o.from + "/" + std::to_string(p)));
    if (high <= low) continue;
    ends[p] = high;
    rd_kafka_topic_partition_list_add(list.get(), o.from.c_str(), p)->offset = low;
  }
  RekeyReport report;
  if (ends.empty()) return report;
  TRIB_RETURN_IF_ERROR(KafkaStatus(rd_kafka_assign(consumer.get(), list.get()), "rekey: assign"));

  std::unordered_set<std::string> fine_keys;
  auto last_progress = std::chrono::steady_clock::now();
  while (!ends.empty()) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer.get(), 100);
    if (m == nullptr) {
      if (std::chrono::steady_clock::now() - last_progress > std::chrono::milliseconds(timeout)) {
        return Status::Timeout("rekey: no progress reading " + o.from + " for " +
                               std::to_string(o.timeout_ms) + " ms");
      }
      continue;
    }
    std::unique_ptr<rd_kafka_message_t, void (*)(rd_kafka_message_t*)> msg(
        m, &rd_kafka_message_destroy);
    last_progress = std::chrono::steady_clock::now();
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      ends.erase(m->partition);
      continue;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return Status::Io("rekey: reading " + o.from + ": " + rd_kafka_message_errstr(m));
    }
    auto end = ends.find(m->partition);
    if (end == ends.end() || m->offset >= end->second) continue;  // arrived after the start
    if (m->offset + 1 >= end->second) ends.erase(end);
    ++report.read;
    const std::string old_key = m->key == nullptr
                                    ? std::string()
                                    : std::string(static_cast<const char*>(m->key), m->key_len);
    double lat = std::numeric_limits<double>::quiet_NaN();
    double lon = lat;
    std::string_view value(static_cast<const char*>(m->payload), m->len);
    const bool positioned = m->payload != nullptr && RekeyPosition(value, &lat, &lon);
    bool fine = false;
    std::string key = positioned ? RekeyKey(lat, lon, old_key, o, &fine) : old_key;
    if (fine) {
      ++report.rekeyed_fine;
      fine_keys.insert(key);
    } else if (positioned) {
      ++report.rekeyed_base;
    } else {
      ++report.kept;
    }
    rd_kafka_headers_t* headers = nullptr;
    // Owned by the message once produced.
    rd_kafka_headers_t* copy = rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR
                                   ? rd_kafka_headers_copy(headers)
                                   : rd_kafka_headers_new(0);
    rd_kafka_timestamp_type_t ts_type;
    const int64_t ts = rd_kafka_message_timestamp(m, &ts_type);
    while (true) {
      err = rd_kafka_producev(
          producer.get(), RD_KAFKA_V_TOPIC(o.to.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
          RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_TIMESTAMP(ts > 0 ? ts : 0),
          RD_KAFKA_V_HEADERS(copy), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_headers_destroy(copy);
        return KafkaStatus(err, "rekey: produce to " + o.to);
      }
      rd_kafka_poll(producer.get(), 10);
    }
    rd_kafka_poll(producer.get(), 0);
  }
  if (rd_kafka_flush(producer.get(), timeout) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::Timeout("rekey: " + std::to_string(rd_kafka_outq_len(producer.get())) +
                           " messages to " + o.to + " not acknowledged");
  }
  if (failures.count > 0) {
    return Status::Io("rekey: " + std::to_string(failures.count) + " messages to " + o.to +
                      " could not be delivered (first: " + failures.first + ")");
  }
  rd_kafka_consumer_close(consumer.get());
  report.fine_keys = fine_keys.size();
  return report;
}

}  // namespace tributary
