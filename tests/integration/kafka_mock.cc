#include "integration/kafka_mock.h"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka_mock.h>

#include <algorithm>
#include <chrono>
#include <regex>

namespace tributary::testing {

KafkaMockCluster::KafkaMockCluster(int brokers) {
  Result<KafkaConf> conf = MakeKafkaConf({{"log_level", "3"}});
  if (!conf.ok()) return;
  Result<KafkaHandle> rk = MakeKafkaHandle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!rk.ok()) return;
  owner_ = std::move(*rk);
  cluster_ = rd_kafka_mock_cluster_new(owner_.get(), brokers);
  if (cluster_ != nullptr) bootstrap_ = rd_kafka_mock_cluster_bootstraps(cluster_);
}

KafkaMockCluster::~KafkaMockCluster() {
  if (cluster_ != nullptr) rd_kafka_mock_cluster_destroy(cluster_);
}

std::string KafkaMockCluster::CreateTopic(const std::string& topic, int partitions) {
  rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions, 3);
  return err == RD_KAFKA_RESP_ERR_NO_ERROR ? "" : rd_kafka_err2str(err);
}

std::string KafkaMockCluster::Produce(
    const std::string& topic, const std::vector<std::pair<std::string, std::string>>& messages,
    int32_t partition) {
  Result<KafkaConf> conf = MakeKafkaConf({{"bootstrap.servers", bootstrap_}, {"linger.ms", "5"}});
  if (!conf.ok()) return conf.status().ToString();
  Result<KafkaHandle> rk = MakeKafkaHandle(RD_KAFKA_PRODUCER, std::move(*conf));
  if (!rk.ok()) return rk.status().ToString();
  for (const auto& [key, value] : messages) {
    while (true) {
      rd_kafka_resp_err_t err =
          rd_kafka_producev(rk->get(), RD_KAFKA_V_TOPIC(topic.c_str()),
                            RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA : partition),
                            RD_KAFKA_V_KEY(key.data(), key.size()),
                            RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) return rd_kafka_err2str(err);
      rd_kafka_poll(rk->get(), 10);
    }
  }
  if (rd_kafka_flush(rk->get(), 30000) != RD_KAFKA_RESP_ERR_NO_ERROR) return "flush timed out";
  return "";
}

std::map<int32_t, int64_t> KafkaMockCluster::Committed(const std::string& group,
                                                       const std::string& topic, int partitions) {
  std::map<int32_t, int64_t> out;
  Result<KafkaConf> conf = MakeKafkaConf({{"bootstrap.servers", bootstrap_}, {"group.id", group}});
  if (!conf.ok()) return out;
  Result<KafkaHandle> rk = MakeKafkaHandle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!rk.ok()) return out;
  KafkaPartitionList list(rd_kafka_topic_partition_list_new(partitions));
  for (int p = 0; p < partitions; ++p)
    rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p);
  if (rd_kafka_committed(rk->get(), list.get(), 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < list->cnt; ++i) out[list->elems[i].partition] = list->elems[i].offset;
  }
  rd_kafka_consumer_close(rk->get());
  return out;
}

std::vector<KafkaMockCluster::Message> KafkaMockCluster::ReadAll(const std::string& topic,
                                                                 size_t expected, int timeout_ms,
                                                                 int idle_ms,
                                                                 const std::string& reader) {
  std::vector<Message> out;
  Result<KafkaConf> conf = MakeKafkaConf({{"bootstrap.servers", bootstrap_},
                                          {"group.id", "test-reader-" + topic + reader},
                                          {"auto.offset.reset", "earliest"},
                                          {"isolation.level", "read_committed"}});
  if (!conf.ok()) return out;
  Result<KafkaHandle> rk = MakeKafkaHandle(RD_KAFKA_CONSUMER, std::move(*conf));
  if (!rk.ok()) return out;
  rd_kafka_poll_set_consumer(rk->get());
  KafkaPartitionList list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk->get(), list.get());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  auto last = std::chrono::steady_clock::now();
  while (out.size() < expected && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk->get(), 200);
    if (m == nullptr) {
      if (idle_ms > 0 && !out.empty() &&
          std::chrono::steady_clock::now() - last > std::chrono::milliseconds(idle_ms)) {
        break;
      }
      continue;
    }
    last = std::chrono::steady_clock::now();
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      Message msg{m->partition,
                  m->offset,
                  std::string(static_cast<const char*>(m->key), m->key_len),
                  std::string(static_cast<const char*>(m->payload), m->len),
                  {}};
      rd_kafka_headers_t* hdrs = nullptr;
      if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name = nullptr;
        const void* value = nullptr;
        size_t size = 0;
        for (size_t i = 0;
             rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
             ++i) {
          msg.headers[name] = std::string(static_cast<const char*>(value), size);
        }
      }
      out.push_back(std::move(msg));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk->get());
  return out;
}

Committed ReadCommitted(KafkaMockCluster& kafka, const std::string& topic,
                        const std::set<std::string>& markers, int timeout_ms) {
  Committed c;
  std::vector<KafkaMockCluster::Message> all = kafka.ReadAll(topic, 1'000'000, timeout_ms, 2000);
  c.visible = all.size();
  static const std::regex clock_fields(
      "\"(arrival_time|emitted_at|emitted_at_us|latency_s|latency_ms|topic)\":(\"[^\"]*\"|[-0-9.e]+"
      "),?");
  for (const auto& m : all) {
    auto run = m.headers.find("tributary-run");
    auto ckpt = m.headers.find("tributary-checkpoint");
    if (run == m.headers.end() || ckpt == m.headers.end()) {
      ADD_FAILURE() << topic << " offset " << m.offset << " has no checkpoint headers";
      continue;
    }
    if (markers.count(run->second + "/" + ckpt->second) == 0) continue;
    c.runs.insert(run->second);
    c.records.push_back(m.key + " " + std::regex_replace(m.value, clock_fields, ""));
  }
  std::sort(c.records.begin(), c.records.end());
  return c;
}

}  // namespace tributary::testing
