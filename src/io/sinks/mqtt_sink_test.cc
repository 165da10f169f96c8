#include "io/sinks/mqtt_sink.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cmath>
#include <map>
#include <thread>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "core/registry.h"
#include "core/sink_health.h"
#include "integration/mosquitto.h"
#include "io/sources/mqtt_source.h"

namespace tributary {
namespace {

using testing::MosquittoBroker;

WindowResult Result1(const char* metric, const char* group, double mean) {
  WindowResult w;
  w.window = Intern("5m");
  w.group_by = Intern("device");
  w.group = Intern(group);
  w.metric = Intern(metric);
  w.start = 1'714'564'800'000'000;
  w.end = w.start + 300'000'000;
  w.count = 10;
  w.mean = mean;
  w.max = mean + 1;
  return w;
}

TEST(MqttSinkTest, TopicTemplateAndJson) {
  WindowResult w = Result1("pm25", "dev/1+#", 12.5);
  EXPECT_EQ(MqttWindowTopic("tributary/windows/{metric}/{group}", w),
            "tributary/windows/pm25/dev_1__");
  EXPECT_EQ(MqttWindowTopic("x/{window}/{group_by}/{unknown}", w), "x/5m/device/{unknown}");
  std::string json = MqttWindowJson(w);
  EXPECT_NE(json.find("\"metric\":\"pm25\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"mean\":12.5"), std::string::npos) << json;
  EXPECT_NE(json.find("\"max\":13.5"), std::string::npos) << json;
  EXPECT_NE(json.find("\"start\":\"2024-05-01T12:00:00Z\""), std::string::npos) << json;
  EXPECT_EQ(json.find("\"min\""), std::string::npos) << json;  // NaN aggregates left out
  EXPECT_NE(json.find("\"count\":10"), std::string::npos) << json;
}

TEST(MqttSinkTest, SubscriberReceivesPublishedWindows) {
  if (MosquittoBroker::BinaryPath().empty()) GTEST_SKIP() << "mosquitto is not installed";
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");

  // The subscriber: the mqtt source, on all window topics.
  MqttSourceOptions so;
  so.connect.broker = broker.url();
  so.connect.client_id = "window-reader";
  so.topics = {"tributary/windows/#"};
  MqttSource subscriber(so);
  RunContext ctx;
  Ledger ledger;
  ctx.ledger = &ledger;
  ASSERT_TRUE(subscriber.Open(ctx).ok());

  MqttSinkOptions o;
  o.name = "mq";
  o.connect.broker = broker.url();
  o.connect.client_id = "window-writer";
  o.connect.clean_session = true;
  o.topic = "tributary/windows/{metric}/{group}";
  o.qos = 1;
  MqttSink sink(o);
  ASSERT_TRUE(sink.Open(ctx).ok());
  Batch batch;
  batch.windows.push_back(Result1("pm25", "d1", 10));
  batch.windows.push_back(Result1("pm25", "d2", 20));
  batch.windows.push_back(Result1("no2", "d1", 30));
  ASSERT_TRUE(sink.Write(batch).ok());
  ASSERT_TRUE(sink.Commit().ok());
  EXPECT_EQ(ledger.Snapshot().sink_committed["mq/windows"], 3u);

  std::map<std::string, std::string> got;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (got.size() < 3 && std::chrono::steady_clock::now() < deadline) {
    RawBatch b;
    ASSERT_TRUE(subscriber.Poll(b, 100, 100'000).ok());
    for (const RawRecord& r : b.records) got[r.topic.str()] = std::string(b.Payload(r));
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_NE(got["tributary/windows/pm25/d1"].find("\"mean\":10"), std::string::npos);
  EXPECT_NE(got["tributary/windows/pm25/d2"].find("\"mean\":20"), std::string::npos);
  EXPECT_NE(got["tributary/windows/no2/d1"].find("\"mean\":30"), std::string::npos);
  sink.Close();
  subscriber.Close();
}

TEST(MqttSinkTest, RetainedResultReachesALaterSubscriber) {
  if (MosquittoBroker::BinaryPath().empty()) GTEST_SKIP() << "mosquitto is not installed";
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  RunContext ctx;
  MqttSinkOptions o;
  o.name = "mq";
  o.connect.broker = broker.url();
  o.connect.client_id = "retainer";
  o.topic = "latest/{window}/{group_by}/{group}/{metric}";
  o.qos = 2;
  o.retain = true;
  {
    MqttSink sink(o);
    ASSERT_TRUE(sink.Open(ctx).ok());
    Batch batch;
    batch.windows.push_back(Result1("pm25", "d9", 42));
    ASSERT_TRUE(sink.Write(batch).ok());
    ASSERT_TRUE(sink.Commit().ok());
  }
  MqttSourceOptions so;
  so.connect.broker = broker.url();
  so.connect.clean_session = true;
  so.topics = {"latest/#"};
  MqttSource late(so);
  ASSERT_TRUE(late.Open(ctx).ok());
  RawBatch got;
  for (int i = 0; i < 50 && got.empty(); ++i) ASSERT_TRUE(late.Poll(got, 10, 100'000).ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got.records[0].topic.str(), "latest/5m/device/d9/pm25");
  EXPECT_NE(got.Payload(got.records[0]).find("\"mean\":42"), std::string::npos);
}

TEST(MqttSinkTest, OpenFailsClearlyWithoutBroker) {
  MqttSinkOptions o;
  o.connect.broker = "mqtt://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  o.connect.clean_session = true;
  o.connect.connect_timeout = 1'000'000;
  MqttSink sink(o);
  RunContext ctx;
  Status s = sink.Open(ctx);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cannot connect to mqtt://127.0.0.1"), std::string::npos)
      << s.message();
}

}  // namespace
}  // namespace tributary

namespace tributary {
namespace {

// A source whose buffer is full (the pipeline is slow) must not hold up the sink's
// acknowledgements in the same process.
TEST(MqttSinkTest, CommitNotBlockedByAFullSourceBuffer) {
  if (MosquittoBroker::BinaryPath().empty()) GTEST_SKIP() << "mosquitto is not installed";
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  MqttSourceOptions so;
  so.connect.broker = broker.url();
  so.connect.client_id = "slow-reader";
  so.topics = {"in/#"};
  so.buffer = 2;
  MqttSource source(so);
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  ASSERT_EQ(broker.Publish("in/x", {"1", "2", "3", "4", "5", "6"}, 1).exit_code, 0);
  for (int i = 0; i < 100 && source.buffered() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(source.buffered(), 2u);

  MqttSinkOptions o;
  o.name = "mq";
  o.connect.broker = broker.url();
  o.connect.clean_session = true;
  o.ack_timeout = 3'000'000;
  MqttSink sink(o);
  ASSERT_TRUE(sink.Open(ctx).ok());
  Batch batch;
  batch.windows.push_back(Result1("pm25", "d1", 10));
  ASSERT_TRUE(sink.Write(batch).ok());
  Status s = sink.Commit();
  EXPECT_TRUE(s.ok()) << s.message();
  sink.Close();
  source.Close();
}

// The mqtt sink as a pipeline builds it, behind the circuit breaker: while the broker is
// down, results wait in the local buffer; once it is up, a probe sends them in order.
TEST(MqttSinkTest, BuffersWhileTheBrokerIsDownAndPublishesWhenItIsBack) {
  if (MosquittoBroker::BinaryPath().empty()) GTEST_SKIP() << "mosquitto is not installed";
  MosquittoBroker broker;  // its port is chosen now; it starts later
  testing::TempDir data;
  YAML::Node node = YAML::Load(
      "{name: mq-breaker, type: mqtt, client_id: breaker-writer, clean_session: true, "
      "connect_timeout: 1s, topic: 'out/{group}', breaker_probe_interval: 100ms, "
      "breaker_probe_interval_max: 200ms}");
  node["broker"] = broker.url();
  SinkEntry e;
  e.name = "mq-breaker";
  e.type = "mqtt";
  e.options =
      OptionReader(node, "pipeline.yaml", "sinks[0]", {&SinkCommonSpec(), &MqttSinkSectionSpec()});
  ASSERT_TRUE(e.options.CheckKeys().ok());
  Result<std::unique_ptr<Sink>> made = Registry::Get().MakeSink(e);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  std::unique_ptr<Sink> sink = std::move(made).value();
  Ledger ledger;
  RunContext ctx;
  ctx.ledger = &ledger;
  ctx.data_dir = data.path();
  ASSERT_TRUE(sink->Open(ctx).ok()) << "a broker that is down does not stop the run";
  for (int i = 0; i < 3; ++i) {
    Batch b;
    b.windows.push_back(Result1("pm25", ("d" + std::to_string(i)).c_str(), i));
    ASSERT_TRUE(sink->Write(b).ok());
  }
  ASSERT_TRUE(sink->Commit().ok());
  EXPECT_EQ(SinkHealthSnapshot()["mq-breaker"].state, BreakerState::kOpen);
  EXPECT_EQ(SinkHealthSnapshot()["mq-breaker"].buffered_rows, 3u);
  EXPECT_EQ(ledger.Snapshot().sink_committed["mq-breaker/windows"], 0u);

  ASSERT_EQ(broker.Start(), "");
  MqttSourceOptions so;
  so.connect.broker = broker.url();
  so.connect.client_id = "breaker-reader";
  so.topics = {"out/#"};
  MqttSource subscriber(so);
  ASSERT_TRUE(subscriber.Open(ctx).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Batch live;
  live.windows.push_back(Result1("pm25", "d3", 3));
  ASSERT_TRUE(sink->Write(live).ok());  // the probe drains the buffer first
  ASSERT_TRUE(sink->Commit().ok());
  EXPECT_EQ(SinkHealthSnapshot()["mq-breaker"].state, BreakerState::kClosed);
  EXPECT_EQ(SinkHealthSnapshot()["mq-breaker"].buffered_rows, 0u);
  EXPECT_EQ(ledger.Snapshot().sink_committed["mq-breaker/windows"], 4u);
  std::vector<std::string> topics;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (topics.size() < 4 && std::chrono::steady_clock::now() < deadline) {
    RawBatch b;
    ASSERT_TRUE(subscriber.Poll(b, 100, 100'000).ok());
    for (const RawRecord& r : b.records) topics.push_back(r.topic.str());
  }
  EXPECT_EQ(topics, (std::vector<std::string>{"out/d0", "out/d1", "out/d2", "out/d3"}))
      << "the buffered results in order, then the live one";
  sink->Close();
  subscriber.Close();
}

}  // namespace
}  // namespace tributary
