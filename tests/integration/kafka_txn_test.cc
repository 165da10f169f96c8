// Exactly-once read-process-write on the librdkafka mock cluster: with a transactional
// kafka sink listed last, the kafka source's offsets are committed inside the producer
// transaction (rd_kafka_send_offsets_to_transaction), not by the source; listed before
// another sink, the source commits them itself after every sink committed.
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "core/time.h"
#include "integration/kafka_mock.h"
#include "io/sources/kafka_source.h"
#include "stream/runtime.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::KafkaMockCluster;

std::string TxnReading(int i, int64_t base_ms) {
  return "{\"device_id\":\"txn-" + std::to_string(i % 10) +
         "\",\"sensor_ts\":" + std::to_string(base_ms + 1000LL * (i / 10)) +
         ",\"lat\":47.0,\"lon\":8.0,\"pm25\":" + std::to_string(i % 100) + "}";
}

struct TxnRun {
  bool offsets_in_transaction = false;
  LedgerSnapshot ledger;
};

// Run the pipeline until `expected` records were read and committed, then stop.
TxnRun RunUntil(const std::string& yaml, uint64_t expected) {
  TxnRun result;
  Result<PipelineConfig> config = ParsePipelineConfig(yaml, "txn.yaml");
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  if (!config.ok()) return result;
  Result<std::unique_ptr<Pipeline>> built = Pipeline::Build(*config);
  EXPECT_TRUE(built.ok()) << built.status().ToString();
  if (!built.ok()) return result;
  Pipeline& p = **built;
  std::thread stopper([&] {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!p.running() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    while (p.running() && std::chrono::steady_clock::now() < deadline) {
      if (p.LedgerNow().input >= expected) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // a commit or two more
    p.Stop();
  });
  Status st = p.Run();
  stopper.join();
  EXPECT_TRUE(st.ok()) << st.ToString();
  const auto* source = dynamic_cast<const KafkaSource*>(p.source(0));
  EXPECT_NE(source, nullptr);
  if (source != nullptr) result.offsets_in_transaction = source->offsets_in_transaction();
  result.ledger = p.LedgerNow();
  return result;
}

int64_t Total(const std::map<int32_t, int64_t>& committed) {
  int64_t total = 0;
  for (const auto& [p, off] : committed) total += std::max<int64_t>(off, 0);
  return total;
}

TEST(KafkaTxnTest, OffsetsAreCommittedInsideTheProducerTransaction) {
  KafkaMockCluster kafka(3);
  ASSERT_FALSE(kafka.bootstrap().empty());
  ASSERT_EQ(kafka.CreateTopic("txn.in", 3), "");
  ASSERT_EQ(kafka.CreateTopic("txn.out", 3), "");
  constexpr int kFirst = 1500;
  constexpr int kSecond = 700;
  const int64_t base_ms = NowUs() / 1000 - 3'600'000;
  std::vector<std::pair<std::string, std::string>> in;
  for (int i = 0; i < kFirst; ++i)
    in.emplace_back("k" + std::to_string(i % 10), TxnReading(i, base_ms));
  ASSERT_EQ(kafka.Produce("txn.in", in), "");

  testing::TempDir dir;
  const std::string yaml =
      "pipeline:\n  name: txn\n  commit_interval: 100ms\n  data_dir: " + dir.path() +
      "\nsources:\n  - name: bus\n    type: kafka\n    brokers: " + kafka.bootstrap() +
      "\n    topics: [txn.in]\n    group_id: txn\n    properties: [session.timeout.ms=6000]\n"
      "sinks:\n  - name: out\n    type: kafka\n    brokers: " +
      kafka.bootstrap() +
      "\n    readings_topic: txn.out\n    windows_topic: ''\n    late_topic: ''\n"
      "    quarantine_topic: ''\n    transactional_id: tributary-txn\n";
  TxnRun first = RunUntil(yaml, kFirst);
  EXPECT_TRUE(first.offsets_in_transaction);
  EXPECT_EQ(first.ledger.input, static_cast<uint64_t>(kFirst));
  // The group's offsets came with the transactions: everything read is committed.
  EXPECT_EQ(Total(kafka.Committed("txn", "txn.in", 3)), kFirst);

  // A second run reads only what arrived since, and produces each reading once.
  in.clear();
  for (int i = kFirst; i < kFirst + kSecond; ++i)
    in.emplace_back("k" + std::to_string(i % 10), TxnReading(i, base_ms));
  ASSERT_EQ(kafka.Produce("txn.in", in), "");
  TxnRun second = RunUntil(yaml, kSecond);
  EXPECT_TRUE(second.offsets_in_transaction);
  EXPECT_EQ(second.ledger.input, static_cast<uint64_t>(kSecond));
  EXPECT_EQ(Total(kafka.Committed("txn", "txn.in", 3)), kFirst + kSecond);
  std::vector<KafkaMockCluster::Message> out = kafka.ReadAll("txn.out", kFirst + kSecond, 20000);
  EXPECT_EQ(out.size(), static_cast<size_t>(kFirst + kSecond));
  std::set<std::string> distinct;
  for (const auto& m : out) distinct.insert(m.value);
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kFirst + kSecond));
}

TEST(KafkaTxnTest, NotTheLastSinkLeavesOffsetsToTheSource) {
  KafkaMockCluster kafka(3);
  ASSERT_FALSE(kafka.bootstrap().empty());
  ASSERT_EQ(kafka.CreateTopic("txn2.in", 2), "");
  ASSERT_EQ(kafka.CreateTopic("txn2.out", 2), "");
  constexpr int kCount = 600;
  const int64_t base_ms = NowUs() / 1000 - 3'600'000;
  std::vector<std::pair<std::string, std::string>> in;
  for (int i = 0; i < kCount; ++i)
    in.emplace_back("k" + std::to_string(i % 10), TxnReading(i, base_ms));
  ASSERT_EQ(kafka.Produce("txn2.in", in), "");
  testing::TempDir dir;
  const std::string yaml =
      "pipeline:\n  name: txn2\n  commit_interval: 100ms\n  data_dir: " + dir.path() +
      "\nsources:\n  - name: bus\n    type: kafka\n    brokers: " + kafka.bootstrap() +
      "\n    topics: [txn2.in]\n    group_id: txn2\n    properties: [session.timeout.ms=6000]\n"
      "sinks:\n  - name: out\n    type: kafka\n    brokers: " +
      kafka.bootstrap() +
      "\n    readings_topic: txn2.out\n    windows_topic: ''\n    late_topic: ''\n"
      "    quarantine_topic: ''\n    transactional_id: tributary-txn2\n"
      "  - name: local\n    type: sqlite\n";
  TxnRun run = RunUntil(yaml, kCount);
  EXPECT_FALSE(run.offsets_in_transaction);
  EXPECT_EQ(Total(kafka.Committed("txn2", "txn2.in", 2)), kCount);
  EXPECT_EQ(testing::QueryInt(dir.File("tributary.gpkg"), "SELECT count(*) FROM readings"), kCount);
}

}  // namespace
}  // namespace tributary
