// Source::SetPaused, as the memory ceiling uses it: every built-in source stops taking
// input while paused and goes on from where it stopped, losing nothing.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "core/time.h"
#include "integration/kafka_mock.h"
#include "integration/mosquitto.h"
#include "io/sources/file_source.h"
#include "io/sources/kafka_source.h"
#include "io/sources/mqtt_source.h"
#include "io/sources/simulator.h"
#include "server/metrics.h"
#include "test_util.h"

namespace tributary {
namespace {

TEST(SourcePauseTest, FileSourceStopsReadingAndResumesAtItsPosition) {
  testing::TempDir dir;
  std::string text;
  for (int i = 1; i <= 50; ++i) text += "{\"i\":" + std::to_string(i) + "}\n";
  testing::WriteFile(dir.File("in.ndjson"), text);
  FileSourceOptions o;
  o.paths = {dir.File("in.ndjson")};
  FileSource source(o);
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  RawBatch b;
  ASSERT_TRUE(source.Poll(b, 20, 0).ok());
  ASSERT_EQ(b.size(), 20u);
  source.SetPaused(true);
  for (int k = 0; k < 3; ++k) {
    RawBatch paused;
    ASSERT_TRUE(source.Poll(paused, 20, 10 * kMicrosPerMilli).ok());
    EXPECT_TRUE(paused.empty());
    EXPECT_FALSE(paused.end_of_stream);
  }
  source.SetPaused(false);
  std::vector<int64_t> lines;
  bool end = false;
  for (int k = 0; k < 10 && !end; ++k) {
    RawBatch rest;
    ASSERT_TRUE(source.Poll(rest, 20, 0).ok());
    for (const RawRecord& r : rest.records) lines.push_back(r.offset);
    end = rest.end_of_stream;
  }
  EXPECT_TRUE(end);
  ASSERT_EQ(lines.size(), 30u);
  EXPECT_EQ(lines.front(), 21);
  EXPECT_EQ(lines.back(), 50);
}

TEST(SourcePauseTest, SimulatorStandsStillWhilePaused) {
  SimulatorOptions o;
  o.start = *ParseTime("2024-05-01T00:00:00Z");
  o.duration = 10 * kMicrosPerMinute;
  o.as_fast_as_possible = true;
  SimulatorSource source(o);
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  RawBatch b;
  ASSERT_TRUE(source.Poll(b, 100, 0).ok());
  ASSERT_EQ(b.size(), 100u);
  source.SetPaused(true);
  RawBatch paused;
  ASSERT_TRUE(source.Poll(paused, 100, 20 * kMicrosPerMilli).ok());
  EXPECT_TRUE(paused.empty());
  source.SetPaused(false);
  RawBatch next;
  ASSERT_TRUE(source.Poll(next, 100, 0).ok());
  ASSERT_FALSE(next.empty());
  EXPECT_EQ(next.records.front().offset, 100) << "the sequence goes on, nothing skipped";
}

TEST(SourcePauseTest, KafkaPartitionsPauseForTheMemoryCeilingAndResume) {
  testing::KafkaMockCluster kafka(1);
  ASSERT_FALSE(kafka.bootstrap().empty());
  ASSERT_EQ(kafka.CreateTopic("mem", 2), "");
  std::vector<std::pair<std::string, std::string>> msgs;
  for (int i = 0; i < 4000; ++i) msgs.emplace_back(std::to_string(i % 7), "{}");
  ASSERT_EQ(kafka.Produce("mem", msgs), "");
  KafkaSourceOptions o;
  o.name = "mem-unit";
  o.connect.brokers = kafka.bootstrap();
  o.topics = {"mem"};
  o.group_id = "mem-unit";
  o.poll_records = 100;
  o.max_uncommitted = 1'000'000;  // the backlog never pauses it here
  KafkaSource source(o);
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  size_t received = 0;
  const TimeUs deadline = NowUs() + 30 * kMicrosPerSecond;
  while (received < 300 && NowUs() < deadline) {
    RawBatch b;
    ASSERT_TRUE(source.Poll(b, 1024, 100 * kMicrosPerMilli).ok());
    received += b.size();
  }
  ASSERT_GE(received, 300u);
  source.SetPaused(true);
  // The next poll pauses every assigned partition; what librdkafka had fetched before
  // may still come, then nothing.
  size_t while_paused = 0;
  size_t quiet_polls = 0;
  for (int k = 0; k < 40 && quiet_polls < 5; ++k) {
    RawBatch b;
    ASSERT_TRUE(source.Poll(b, 1024, 50 * kMicrosPerMilli).ok());
    EXPECT_TRUE(source.paused());
    while_paused += b.size();
    quiet_polls = b.empty() ? quiet_polls + 1 : 0;
  }
  EXPECT_EQ(quiet_polls, 5u) << "records kept coming while paused";
  EXPECT_LT(received + while_paused, 4000u);
  std::string metrics = RenderPrometheus(MetricsInput{});
  EXPECT_NE(metrics.find("tributary_kafka_paused{source=\"mem-unit\"} 1\n"), std::string::npos);
  source.SetPaused(false);
  size_t after = 0;
  while (received + while_paused + after < 4000 && NowUs() < deadline + 30 * kMicrosPerSecond) {
    RawBatch b;
    ASSERT_TRUE(source.Poll(b, 1024, 100 * kMicrosPerMilli).ok());
    EXPECT_FALSE(source.paused());
    after += b.size();
  }
  EXPECT_EQ(received + while_paused + after, 4000u) << "every record, each once";
  source.Close();
}

TEST(SourcePauseTest, MqttStopsTakingMessagesAndTheBrokerKeepsThem) {
  if (testing::MosquittoBroker::BinaryPath().empty()) GTEST_SKIP() << "mosquitto is not installed";
  testing::MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  MqttSourceOptions o;
  o.connect.broker = broker.url();
  o.connect.client_id = "pause-unit";
  o.connect.clean_session = false;
  o.topics = {"p/#"};
  o.qos = 1;
  o.buffer = 5;
  MqttSource source(o);
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  source.SetPaused(true);
  std::vector<std::string> lines;
  for (int i = 0; i < 40; ++i) lines.push_back("{\"i\":" + std::to_string(i) + "}");
  ASSERT_EQ(broker.Publish("p/a", lines, 1).exit_code, 0);
  for (int k = 0; k < 5; ++k) {
    RawBatch b;
    ASSERT_TRUE(source.Poll(b, 1000, 50 * kMicrosPerMilli).ok());
    EXPECT_TRUE(b.empty()) << "a paused source hands on nothing";
  }
  EXPECT_LE(source.buffered(), 5u) << "the bounded buffer holds the rest back at the broker";
  source.SetPaused(false);
  std::vector<std::string> got;
  const TimeUs deadline = NowUs() + 15 * kMicrosPerSecond;
  while (got.size() < lines.size() && NowUs() < deadline) {
    RawBatch b;
    ASSERT_TRUE(source.Poll(b, 1000, 100 * kMicrosPerMilli).ok());
    for (const RawRecord& r : b.records) got.emplace_back(b.Payload(r));
  }
  source.Close();
  EXPECT_EQ(got, lines) << "all of them, in order, after the pause";
}

}  // namespace
}  // namespace tributary
