#include "io/sources/mqtt_source.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "integration/mosquitto.h"

namespace tributary {
namespace {

using testing::MosquittoBroker;

#define REQUIRE_MOSQUITTO() \
  if (MosquittoBroker::BinaryPath().empty()) GTEST_SKIP() << "mosquitto is not installed"

MqttSourceOptions Options(const MosquittoBroker& broker, std::vector<std::string> topics,
                          const std::string& client_id) {
  MqttSourceOptions o;
  o.connect.broker = broker.url();
  o.connect.client_id = client_id;
  o.connect.clean_session = false;
  o.topics = std::move(topics);
  o.qos = 1;
  o.reconnect_min = 100'000;
  o.reconnect_max = 400'000;
  return o;
}

// Poll until `n` records arrived or `timeout_s` passed.
RawBatch PollUntil(MqttSource& source, size_t n, int timeout_s = 10) {
  RawBatch all;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (all.size() < n && std::chrono::steady_clock::now() < deadline) {
    RawBatch b;
    EXPECT_TRUE(source.Poll(b, 1000, 100'000).ok());
    for (const RawRecord& r : b.records) {
      all.Add(b.Payload(r), r.arrival_time, r.topic, r.offset, r.partition);
    }
  }
  return all;
}

TEST(MqttSourceTest, ParsesOptions) {
  YAML::Node node = YAML::Load(
      "broker: mqtt://localhost\nclient_id: a\ntopics: [sensors/+/data, '$share/g/x/#']\n"
      "qos: 2\nbuffer: 5\n");
  OptionReader r(node, "t.yaml", "sources[0]", {&MqttSourceSectionSpec()});
  ASSERT_TRUE(r.CheckKeys().ok());
  Result<MqttSourceOptions> o = ParseMqttSourceOptions(r);
  ASSERT_TRUE(o.ok()) << o.status().message();
  EXPECT_EQ(o->qos, 2);
  EXPECT_EQ(o->buffer, 5u);
  EXPECT_EQ(o->topics.size(), 2u);
  EXPECT_EQ(*MqttPahoUri("mqtt://localhost"), "tcp://localhost:1883");
  EXPECT_EQ(*MqttPahoUri("mqtts://h:9000"), "ssl://h:9000");
  EXPECT_FALSE(MqttPahoUri("http://h").ok());

  // A persistent session needs a client id.
  OptionReader bad(YAML::Load("broker: mqtt://h\ntopics: [a]\n"), "t.yaml", "sources[0]",
                   {&MqttSourceSectionSpec()});
  Result<MqttSourceOptions> e = ParseMqttSourceOptions(bad);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("client_id"), std::string::npos);
}

TEST(MqttSourceTest, WildcardReceivesSeveralDevices) {
  REQUIRE_MOSQUITTO();
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  MqttSource source(Options(broker, {"sensors/+/data"}, "wild"));
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  for (const char* dev : {"d1", "d2", "d3"}) {
    std::string topic = std::string("sensors/") + dev + "/data";
    ASSERT_EQ(broker.Publish(topic, {std::string("{\"device\":\"") + dev + "\"}"}, 1).exit_code, 0);
  }
  ASSERT_EQ(broker.Publish("other/d4/data", {"{}"}, 1).exit_code, 0);
  RawBatch got = PollUntil(source, 3);
  ASSERT_EQ(got.size(), 3u);
  std::set<std::string> topics;
  for (const RawRecord& r : got.records) {
    topics.insert(r.topic.str());
    EXPECT_EQ(r.partition, -1);
    EXPECT_GT(r.arrival_time, 0);
  }
  EXPECT_EQ(topics,
            (std::set<std::string>{"sensors/d1/data", "sensors/d2/data", "sensors/d3/data"}));
  EXPECT_EQ(got.records[0].offset, 1);
  EXPECT_EQ(got.records[2].offset, 3);
  // Nothing else (the unmatched topic) arrives.
  RawBatch more;
  ASSERT_TRUE(source.Poll(more, 10, 200'000).ok());
  EXPECT_TRUE(more.empty());
  source.Close();
}

TEST(MqttSourceTest, PasswordRequiredAndWrongPasswordIsClear) {
  REQUIRE_MOSQUITTO();
  MosquittoBroker broker(MosquittoBroker::Options{"alice", "s3cret", false});
  ASSERT_EQ(broker.Start(), "");
  RunContext ctx;
  {
    MqttSourceOptions o = Options(broker, {"t/#"}, "pw-ok");
    o.connect.username = "alice";
    o.connect.password = "s3cret";
    MqttSource source(o);
    ASSERT_TRUE(source.Open(ctx).ok());
    ASSERT_EQ(broker.Publish("t/x", {"hello"}, 1).exit_code, 0);
    RawBatch got = PollUntil(source, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got.Payload(got.records[0]), "hello");
  }
  {
    MqttSourceOptions o = Options(broker, {"t/#"}, "pw-bad");
    o.connect.username = "alice";
    o.connect.password = "wrong";
    MqttSource source(o);
    Status s = source.Open(ctx);
    ASSERT_FALSE(s.ok());
    // Mosquitto answers a wrong password with "not authorized" (MQTT 3.1.1 code 5).
    EXPECT_NE(s.message().find("refused: not authorized (wrong user name or password"),
              std::string::npos)
        << s.message();
  }
  {
    MqttSourceOptions o = Options(broker, {"t/#"}, "pw-bad5");
    o.connect.protocol = 5;
    o.connect.username = "alice";
    o.connect.password = "wrong";
    MqttSource source(o);
    Status s = source.Open(ctx);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("refused: "), std::string::npos) << s.message();
  }
  {
    MqttSource source(Options(broker, {"t/#"}, "pw-none"));
    Status s = source.Open(ctx);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("refused"), std::string::npos) << s.message();
  }
}

TEST(MqttSourceTest, Qos1AllArriveInOrder) {
  REQUIRE_MOSQUITTO();
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  MqttSourceOptions o = Options(broker, {"q/#"}, "qos1");
  o.buffer = 16;  // small: reading pauses and resumes many times
  MqttSource source(o);
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  std::vector<std::string> lines;
  for (int i = 0; i < 2000; ++i) lines.push_back("m" + std::to_string(i));
  ASSERT_EQ(broker.Publish("q/a", lines, 1).exit_code, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_LE(source.buffered(), 16u);
  RawBatch got = PollUntil(source, lines.size());
  ASSERT_EQ(got.size(), lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(got.Payload(got.records[i]), lines[i]);
    EXPECT_EQ(got.records[i].offset, static_cast<int64_t>(i + 1));
  }
}

TEST(MqttSourceTest, BrokerRestartLosesNothingWithPersistentSession) {
  REQUIRE_MOSQUITTO();
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  MqttSourceOptions o = Options(broker, {"r/+"}, "restart");
  o.reconnect_min = 1'500'000;  // long enough that the publishing below is done first
  o.reconnect_max = 1'500'000;
  MqttSource source(o);
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  ASSERT_EQ(broker.Publish("r/a", {"before"}, 1).exit_code, 0);
  RawBatch first = PollUntil(source, 1);
  ASSERT_EQ(first.size(), 1u);

  broker.Stop();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(broker.Start(), "");
  // Published while the source is still reconnecting: queued in the persistent session.
  std::vector<std::string> during;
  for (int i = 0; i < 50; ++i) during.push_back("during" + std::to_string(i));
  ASSERT_EQ(broker.Publish("r/b", during, 1).exit_code, 0);
  EXPECT_EQ(source.connects(), 1u);  // still waiting to reconnect

  RawBatch got = PollUntil(source, during.size(), 15);
  ASSERT_EQ(got.size(), during.size()) << broker.Log();
  std::set<std::string> payloads;
  for (const RawRecord& r : got.records) payloads.insert(std::string(got.Payload(r)));
  for (const std::string& d : during) EXPECT_EQ(payloads.count(d), 1u) << d;
  // Queued messages may arrive before the reconnect call has returned.
  for (int i = 0; i < 100 && source.connects() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GE(source.connects(), 2u);
  // Offsets continue after the restart.
  EXPECT_EQ(got.records[0].offset, 2);
}

TEST(MqttSourceTest, Mqtt5SharedSubscriptionAndPersistentSession) {
  REQUIRE_MOSQUITTO();
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  MqttSourceOptions o = Options(broker, {"$share/workers/v5/#"}, "v5-reader");
  o.connect.protocol = 5;
  RunContext ctx;
  {
    MqttSource source(o);
    ASSERT_TRUE(source.Open(ctx).ok());
    ASSERT_EQ(broker.Publish("v5/a", {"one"}, 1).exit_code, 0);
    RawBatch got = PollUntil(source, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got.records[0].topic.str(), "v5/a");
    source.Close();
  }
  // Away: the session (with its session expiry) keeps what is published meanwhile.
  ASSERT_EQ(broker.Publish("v5/b", {"two", "three"}, 1).exit_code, 0);
  MqttSource again(o);
  ASSERT_TRUE(again.Open(ctx).ok());
  RawBatch got = PollUntil(again, 2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got.Payload(got.records[0]), "two");
  EXPECT_EQ(got.Payload(got.records[1]), "three");
}

TEST(MqttSourceTest, TlsWithCaFile) {
  REQUIRE_MOSQUITTO();
  MosquittoBroker::Options bo;
  bo.tls = true;
  MosquittoBroker broker(bo);
  ASSERT_EQ(broker.Start(), "");
  ASSERT_EQ(broker.url().rfind("mqtts://", 0), 0u);
  RunContext ctx;
  {
    MqttSourceOptions o = Options(broker, {"tls/#"}, "tls-ok");
    o.connect.ca_file = broker.ca_file();
    MqttSource source(o);
    Status s = source.Open(ctx);
    ASSERT_TRUE(s.ok()) << s.message();
    ASSERT_EQ(broker.Publish("tls/a", {"secret"}, 1).exit_code, 0);
    RawBatch got = PollUntil(source, 1);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got.Payload(got.records[0]), "secret");
  }
  {
    // Without the CA the broker's certificate is not trusted.
    MqttSourceOptions o = Options(broker, {"tls/#"}, "tls-untrusted");
    o.connect.connect_timeout = 2'000'000;
    MqttSource source(o);
    EXPECT_FALSE(source.Open(ctx).ok());
  }
}

TEST(MqttSourceTest, Qos2Delivered) {
  REQUIRE_MOSQUITTO();
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  MqttSourceOptions o = Options(broker, {"q2/#"}, "qos2");
  o.qos = 2;
  MqttSource source(o);
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  std::vector<std::string> lines;
  for (int i = 0; i < 200; ++i) lines.push_back("e" + std::to_string(i));
  ASSERT_EQ(broker.Publish("q2/a", lines, 2).exit_code, 0);
  RawBatch got = PollUntil(source, lines.size());
  ASSERT_EQ(got.size(), lines.size());
  for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(got.Payload(got.records[i]), lines[i]);
}

// Poll hands on at most max_records, in arrival order, also when fewer are asked for
// than the receive thread gathers per chunk; the rest follows, offsets unbroken.
TEST(MqttSourceTest, PollTakesAtMostWhatIsAskedForInOrder) {
  REQUIRE_MOSQUITTO();
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  MqttSource source(Options(broker, {"p/#"}, "pollsplit"));
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  RawBatch none;
  ASSERT_TRUE(source.Poll(none, 1000, 0).ok());  // chunks of up to 1000 from now on
  EXPECT_TRUE(none.empty());
  std::vector<std::string> a;
  std::vector<std::string> b;
  for (int i = 0; i < 20; ++i) a.push_back("a" + std::to_string(i));
  for (int i = 0; i < 10; ++i) b.push_back("b" + std::to_string(i));
  ASSERT_EQ(broker.Publish("p/a", a, 1).exit_code, 0);
  ASSERT_EQ(broker.Publish("p/b", b, 1).exit_code, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (source.buffered() < 30 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(source.buffered(), 30u);
  RawBatch first;
  ASSERT_TRUE(source.Poll(first, 7, 0).ok());
  ASSERT_EQ(first.size(), 7u);
  EXPECT_EQ(source.buffered(), 23u);
  RawBatch rest;
  ASSERT_TRUE(source.Poll(rest, 100, 0).ok());
  ASSERT_EQ(rest.size(), 23u);
  EXPECT_EQ(source.buffered(), 0u);
  std::vector<std::string> want = a;
  want.insert(want.end(), b.begin(), b.end());
  for (size_t i = 0; i < want.size(); ++i) {
    const RawBatch& from = i < 7 ? first : rest;
    const RawRecord& r = from.records[i < 7 ? i : i - 7];
    EXPECT_EQ(from.Payload(r), want[i]) << i;
    EXPECT_EQ(r.offset, static_cast<int64_t>(i + 1)) << i;
    EXPECT_EQ(r.topic.view(), i < 20 ? "p/a" : "p/b") << i;
  }
}

TEST(MqttSourceTest, StopUnblocksPoll) {
  REQUIRE_MOSQUITTO();
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  MqttSource source(Options(broker, {"s/#"}, "stop"));
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    source.Stop();
  });
  auto t0 = std::chrono::steady_clock::now();
  RawBatch b;
  ASSERT_TRUE(source.Poll(b, 10, 30'000'000).ok());
  auto waited = std::chrono::steady_clock::now() - t0;
  stopper.join();
  EXPECT_LT(waited, std::chrono::seconds(5));
}

}  // namespace
}  // namespace tributary
