// A librdkafka mock cluster on loopback for tests: real Kafka protocol, brokers inside
// this process (threads of librdkafka), reachable by any client over TCP.
#pragma once

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "io/kafka_client.h"

namespace tributary::testing {

class KafkaMockCluster {
 public:
  /// Start `brokers` mock brokers; bootstrap() is empty on failure.
  explicit KafkaMockCluster(int brokers = 3);
  ~KafkaMockCluster();
  KafkaMockCluster(const KafkaMockCluster&) = delete;
  KafkaMockCluster& operator=(const KafkaMockCluster&) = delete;

  const std::string& bootstrap() const { return bootstrap_; }
  /// Create a topic; "" on success, else the error.
  std::string CreateTopic(const std::string& topic, int partitions);
  /// Produce (key, value) messages to `topic` (partition chosen by key hash when
  /// partition < 0) and wait for every acknowledgement; "" on success.
  std::string Produce(const std::string& topic,
                      const std::vector<std::pair<std::string, std::string>>& messages,
                      int32_t partition = -1);
  /// Committed offsets of `group` for `topic`'s partitions 0..partitions-1 (-1: none).
  std::map<int32_t, int64_t> Committed(const std::string& group, const std::string& topic,
                                       int partitions);
  struct Message {
    int32_t partition;
    int64_t offset;
    std::string key;
    std::string value;
    std::map<std::string, std::string> headers;
  };
  /// Read `topic` from the beginning (read_committed) until `expected` messages,
  /// `timeout_ms` passed, or (idle_ms > 0) nothing came for idle_ms after a first message.
  /// `reader` names the reading consumer group ("test-reader-<topic><reader>"), which
  /// commits what it read: a second read in the same group starts after it.
  std::vector<Message> ReadAll(const std::string& topic, size_t expected, int timeout_ms,
                               int idle_ms = 0, const std::string& reader = "");

 private:
  KafkaHandle owner_;  // the handle the mock cluster lives in
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
  std::string bootstrap_;
};

// What a read_committed consumer of a real broker would see of `topic`. The mock shows the
// messages of aborted transactions too, so only those whose (tributary-run,
// tributary-checkpoint) headers are in `markers` ("run/checkpoint", from the checkpoint
// topic) count. Records are "<key> <value>", sorted, without the processing-clock fields
// (arrival and emission times, latencies) and the input topic's name.
struct Committed {
  std::vector<std::string> records;
  size_t visible = 0;          // messages the mock shows, committed or not
  std::set<std::string> runs;  // processes whose transactions committed these records
};

Committed ReadCommitted(KafkaMockCluster& kafka, const std::string& topic,
                        const std::set<std::string>& markers, int timeout_ms);

}  // namespace tributary::testing
