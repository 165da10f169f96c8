#include "io/kafka_client.h"

#include <array>

namespace tributary {

std::vector<OptionSpec> KafkaConnectionOptionSpecs() {
  return {
      {"brokers",
       OptionType::kString,
       "",
       "Bootstrap servers, `host:port[,host:port...]`.",
       {},
       true},
      {"properties", OptionType::kStringList, "",
       "Extra librdkafka properties as `key=value` entries (e.g. "
       "`security.protocol=SASL_SSL`), applied after tributary's own settings."},
  };
}

Result<KafkaConnectOptions> ParseKafkaConnectOptions(const OptionReader& r) {
  KafkaConnectOptions o;
  TRIB_ASSIGN_OR_RETURN(o.brokers, r.GetString("brokers"));
  if (o.brokers.empty()) return r.Error("brokers", "must name at least one host:port");
  TRIB_ASSIGN_OR_RETURN(std::vector<std::string> props, r.GetStringList("properties"));
  for (const std::string& p : props) {
    size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0) {
      return r.Error("properties", "entry '" + p + "' is not key=value");
    }
    o.properties.emplace_back(p.substr(0, eq), p.substr(eq + 1));
  }
  return o;
}

Result<KafkaConf> MakeKafkaConf(const KafkaProperties& properties) {
  KafkaConf conf(rd_kafka_conf_new());
  std::array<char, 512> err{};
  for (const auto& [key, value] : properties) {
    if (rd_kafka_conf_set(conf.get(), key.c_str(), value.c_str(), err.data(), err.size()) !=
        RD_KAFKA_CONF_OK) {
      return Status::Invalid("kafka property " + key + "=" + value + ": " + err.data());
    }
  }
  return conf;
}

Result<KafkaHandle> MakeKafkaHandle(rd_kafka_type_t type, KafkaConf conf) {
  std::array<char, 512> err{};
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), err.data(), err.size());
  if (rk == nullptr) {
    // On failure the configuration still belongs to the caller (freed by `conf`).
    return Status::Invalid(std::string("cannot create kafka client: ") + err.data());
  }
  (void)conf.release();  // rd_kafka_new took it over
  return KafkaHandle(rk);
}

Status KafkaStatus(rd_kafka_resp_err_t err, const std::string& what) {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return Status::Ok();
  std::string msg = what + ": " + rd_kafka_err2str(err);
  switch (err) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
      return Status::Unavailable(msg);
    default:
      return Status::Io(msg);
  }
}

Status KafkaStatus(rd_kafka_error_t* error, const std::string& what) {
  if (error == nullptr) return Status::Ok();
  KafkaError owned(error);
  std::string msg = what + ": " + rd_kafka_error_string(error);
  if (rd_kafka_error_is_retriable(error)) return Status::Unavailable(msg);
  return Status::Io(msg);
}

}  // namespace tributary
