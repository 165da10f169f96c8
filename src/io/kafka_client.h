// RAII wrappers around librdkafka handles, and the connection options every Kafka
// source and sink shares.
//
// librdkafka handles are thread-safe (rd_kafka_t may be used from several threads);
// the wrappers only guarantee that every handle is destroyed exactly once.
#pragma once

#include <librdkafka/rdkafka.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/status.h"

namespace tributary {

struct KafkaHandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
struct KafkaTopicPartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
struct KafkaQueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct KafkaErrorDeleter {
  void operator()(rd_kafka_error_t* e) const { rd_kafka_error_destroy(e); }
};
struct KafkaConfDeleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};

using KafkaHandle = std::unique_ptr<rd_kafka_t, KafkaHandleDeleter>;
using KafkaPartitionList =
    std::unique_ptr<rd_kafka_topic_partition_list_t, KafkaTopicPartitionListDeleter>;
using KafkaQueue = std::unique_ptr<rd_kafka_queue_t, KafkaQueueDeleter>;
using KafkaError = std::unique_ptr<rd_kafka_error_t, KafkaErrorDeleter>;
using KafkaConf = std::unique_ptr<rd_kafka_conf_t, KafkaConfDeleter>;

/// librdkafka configuration properties, in the order they are applied.
using KafkaProperties = std::vector<std::pair<std::string, std::string>>;

/// Options shared by the kafka source and sink.
struct KafkaConnectOptions {
  std::string brokers;         ///< bootstrap servers, "host:port,host:port"
  KafkaProperties properties;  ///< extra librdkafka properties ("key=value" entries)
};

/// The `brokers` and `properties` options, for a connector's SectionSpec.
std::vector<OptionSpec> KafkaConnectionOptionSpecs();
/// Read `brokers` and `properties`; errors name the key.
Result<KafkaConnectOptions> ParseKafkaConnectOptions(const OptionReader& reader);

/// A configuration with `properties` set; an unknown property or bad value is an error
/// naming it.
Result<KafkaConf> MakeKafkaConf(const KafkaProperties& properties);
/// Create a producer or consumer from `conf` (taken over, also on failure).
Result<KafkaHandle> MakeKafkaHandle(rd_kafka_type_t type, KafkaConf conf);

/// A Status from a librdkafka error code; transient broker errors are retryable.
Status KafkaStatus(rd_kafka_resp_err_t err, const std::string& what);
/// A Status from a librdkafka error object (taken over); retryable when the error is.
Status KafkaStatus(rd_kafka_error_t* error, const std::string& what);

}  // namespace tributary
