// The kafka source against a librdkafka mock cluster: pausing under backpressure,
// resuming after commits, offsets committed only through OnCommitted, lag gauges.
#include "io/sources/kafka_source.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "core/time.h"
#include "integration/kafka_mock.h"
#include "server/metrics.h"

namespace tributary {
namespace {

TEST(KafkaSourceTest, PausesWhileRecordsWaitForSinksAndCommitsOnlyOnCommitted) {
  testing::KafkaMockCluster kafka(3);
  ASSERT_FALSE(kafka.bootstrap().empty());
  ASSERT_EQ(kafka.CreateTopic("t", 1), "");
  std::vector<std::pair<std::string, std::string>> msgs;
  for (int i = 0; i < 3000; ++i) msgs.emplace_back("k", "{\"i\":" + std::to_string(i) + "}");
  ASSERT_EQ(kafka.Produce("t", msgs), "");

  KafkaSourceOptions o;
  o.name = "unit";
  o.connect.brokers = kafka.bootstrap();
  o.topics = {"t"};
  o.group_id = "unit";
  o.max_uncommitted = 1000;  // pause at 750 waiting records, resume under 500
  KafkaSource source(o);
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());

  size_t received = 0;
  uint64_t last_checkpoint = 0;
  int64_t expected_offset = 0;
  const TimeUs deadline = NowUs() + 30 * kMicrosPerSecond;
  while (!source.paused() && NowUs() < deadline) {
    RawBatch batch;
    ASSERT_TRUE(source.Poll(batch, 1024, 100 * kMicrosPerMilli).ok());
    EXPECT_LE(batch.size(), 500u);  // poll_records
    for (const RawRecord& r : batch.records) {
      EXPECT_EQ(r.offset, expected_offset++);
      EXPECT_EQ(r.topic.view(), "t");
    }
    received += batch.size();
    if (!batch.empty()) {
      EXPECT_GT(batch.checkpoint, last_checkpoint);
      last_checkpoint = batch.checkpoint;
    }
  }
  ASSERT_TRUE(source.paused());
  EXPECT_GE(received, 750u);
  // Paused: polling goes on (the consumer stays in its group) and measures the lag.
  for (int i = 0; i < 5; ++i) {
    RawBatch batch;
    ASSERT_TRUE(source.Poll(batch, 1024, 100 * kMicrosPerMilli).ok());
    EXPECT_TRUE(source.paused());
    for (const RawRecord& r : batch.records) EXPECT_EQ(r.offset, expected_offset++);
    received += batch.size();
    if (!batch.empty()) last_checkpoint = batch.checkpoint;
  }
  EXPECT_TRUE(source.committed_offsets().empty());       // nothing committed downstream yet
  EXPECT_EQ(kafka.Committed("unit", "t", 1)[0], -1001);  // RD_KAFKA_OFFSET_INVALID

  std::string metrics = RenderPrometheus(MetricsInput{});
  EXPECT_NE(metrics.find("tributary_kafka_paused{source=\"unit\"} 1\n"), std::string::npos)
      << metrics;
  EXPECT_NE(
      metrics.find("tributary_kafka_consumer_lag{source=\"unit\",topic=\"t\",partition=\"0\"}"),
      std::string::npos)
      << metrics;

  source.OnCommitted(last_checkpoint);
  EXPECT_EQ(source.committed_offsets().at({"t", 0}), static_cast<int64_t>(received));
  EXPECT_EQ(kafka.Committed("unit", "t", 1)[0], static_cast<int64_t>(received));

  // Committed: the next poll resumes and records flow again, from where they stopped.
  size_t after = 0;
  while (after == 0 && NowUs() < deadline + 10 * kMicrosPerSecond) {
    RawBatch batch;
    ASSERT_TRUE(source.Poll(batch, 1024, 100 * kMicrosPerMilli).ok());
    EXPECT_FALSE(source.paused());
    if (!batch.empty()) {
      EXPECT_EQ(batch.records.front().offset, static_cast<int64_t>(received));
    }
    after += batch.size();
  }
  EXPECT_GT(after, 0u);
  source.Close();
  EXPECT_EQ(RenderPrometheus(MetricsInput{}).find("source=\"unit\""), std::string::npos);
}

}  // namespace
}  // namespace tributary
