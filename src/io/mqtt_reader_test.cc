#include "io/mqtt_reader.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "integration/mosquitto.h"

namespace tributary {
namespace {

using testing::MosquittoBroker;

#define REQUIRE_MOSQUITTO() \
  if (MosquittoBroker::BinaryPath().empty()) GTEST_SKIP() << "mosquitto is not installed"

std::string VarInt(size_t n) {
  std::string out;
  do {
    auto b = static_cast<uint8_t>(n % 128);
    n /= 128;
    if (n > 0) b |= 0x80;
    out.push_back(static_cast<char>(b));
  } while (n > 0);
  return out;
}

std::string Str(const std::string& s) {
  return std::string{static_cast<char>(s.size() >> 8), static_cast<char>(s.size() & 0xFF)} + s;
}

std::string Pkt(uint8_t first, const std::string& body) {
  return std::string(1, static_cast<char>(first)) + VarInt(body.size()) + body;
}

struct Events : MqttPacketSink {
  std::vector<std::string> got;
  void OnPublish(std::string_view topic, std::string_view payload, int qos, uint16_t id) override {
    got.push_back("publish " + std::string(topic) + " " + std::string(payload) + " qos" +
                  std::to_string(qos) + " id" + std::to_string(id));
  }
  void OnPubrel(uint16_t id) override { got.push_back("pubrel " + std::to_string(id)); }
  void OnSuback(uint16_t id, std::string_view codes) override {
    std::string s = "suback " + std::to_string(id);
    for (char c : codes) s += " " + std::to_string(static_cast<uint8_t>(c));
    got.push_back(s);
  }
  void OnPingresp() override { got.push_back("pingresp"); }
};

TEST(MqttPacketsTest, WalksWholePacketsAndStopsAtAnIncompleteOne) {
  const std::string a = Pkt(0x30, Str("aq/1") + "hello");
  const std::string b = Pkt(0x32, Str("aq/2") + std::string("\x00\x07", 2) + "world");
  const std::string c = Pkt(0x90, std::string("\x00\x01\x01\x80", 4));
  const std::string stream = a + b + c + std::string("\xD0\x00", 2);
  Events e;
  MqttWalk w = WalkMqttPackets(stream.substr(0, a.size() + 3), false, e);
  EXPECT_EQ(w.consumed, a.size());
  EXPECT_EQ(w.next_size, b.size());
  EXPECT_TRUE(w.error.empty());
  ASSERT_EQ(e.got.size(), 1u);
  EXPECT_EQ(e.got[0], "publish aq/1 hello qos0 id0");

  Events all;
  w = WalkMqttPackets(stream, false, all);
  EXPECT_EQ(w.consumed, stream.size());
  EXPECT_EQ(all.got,
            (std::vector<std::string>{"publish aq/1 hello qos0 id0", "publish aq/2 world qos1 id7",
                                      "suback 1 1 128", "pingresp"}));
}

TEST(MqttPacketsTest, Mqtt5PropertiesAreSkippedAndDisconnectNamesItsReason) {
  // PUBLISH QoS 1 with two properties (payload format, message expiry), then the broker's
  // DISCONNECT with reason 0x8E (session taken over).
  const std::string props = std::string("\x01\x01\x02\x00\x00\x00\x3C", 7);
  const std::string pub =
      Pkt(0x32, Str("aq/5") + std::string("\x00\x03", 2) + VarInt(props.size()) + props + "v5");
  const std::string disc = Pkt(0xE0, std::string("\x8E\x00", 2));
  Events e;
  MqttWalk w = WalkMqttPackets(pub + disc, true, e);
  ASSERT_EQ(e.got.size(), 1u);
  EXPECT_EQ(e.got[0], "publish aq/5 v5 qos1 id3");
  EXPECT_EQ(w.consumed, pub.size());
  EXPECT_NE(w.error.find("the broker disconnected: Session taken over"), std::string::npos)
      << w.error;
}

TEST(MqttPacketsTest, MalformedPacketsAreErrorsNotMessages) {
  Events e;
  // A length of five bytes.
  EXPECT_EQ(WalkMqttPackets(std::string("\x30\xFF\xFF\xFF\xFF\x01", 6), false, e).error,
            "malformed packet length from the broker");
  // A topic longer than the packet.
  EXPECT_EQ(WalkMqttPackets(Pkt(0x30, std::string("\x00\x20", 2) + "short"), false, e).error,
            "malformed PUBLISH from the broker");
  // QoS 3 does not exist; QoS 1 needs a packet id other than 0.
  EXPECT_EQ(WalkMqttPackets(Pkt(0x36, Str("t") + std::string("\x00\x01", 2)), false, e).error,
            "malformed PUBLISH from the broker");
  EXPECT_EQ(WalkMqttPackets(Pkt(0x32, Str("t") + std::string("\x00\x00", 2)), false, e).error,
            "malformed PUBLISH from the broker");
  EXPECT_TRUE(e.got.empty());
}

// Messages from a reader connected to `broker`, collected under a lock.
struct Inbox {
  std::mutex mu;
  std::vector<std::string> payloads;
  std::atomic<int> lost{0};

  MqttClient::MessageHandler Handler() {
    return [this](std::string_view, std::string_view payload, int) {
      std::lock_guard<std::mutex> lock(mu);
      payloads.emplace_back(payload);
    };
  }
  MqttClient::LostHandler LostHandler() {
    return [this](const std::string&) { lost.fetch_add(1); };
  }
  // Wait up to `seconds` for `done`, checked every 10 ms.
  template <typename Done>
  static void WaitUntil(Done done, int seconds = 10) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  size_t Count() {
    std::lock_guard<std::mutex> lock(mu);
    return payloads.size();
  }
  size_t WaitFor(size_t n) {
    WaitUntil([&] { return Count() >= n; });
    return Count();
  }
};

MqttConnectOptions Connection(const MosquittoBroker& broker, const std::string& id) {
  MqttConnectOptions o;
  o.broker = broker.url();
  o.client_id = id;
  o.clean_session = true;
  return o;
}

TEST(MqttReaderTest, LargeMessagesBetweenSmallOnesArriveWholeAndInOrder) {
  REQUIRE_MOSQUITTO();
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  Inbox inbox;
  auto reader =
      MqttReader::Create(Connection(broker, "large"), inbox.Handler(), inbox.LostHandler());
  ASSERT_TRUE(reader.ok()) << reader.status().message();
  ASSERT_TRUE((*reader)->Connect().ok());
  ASSERT_TRUE((*reader)->Subscribe({"big/#"}, 1).ok());
  // 300 KB lines, each spanning several reads, among small ones.
  std::vector<std::string> lines;
  for (int i = 0; i < 40; ++i) {
    lines.push_back(i % 10 == 5 ? std::string(300'000, static_cast<char>('a' + i % 26))
                                : "small-" + std::to_string(i));
  }
  ASSERT_EQ(broker.Publish("big/x", lines, 1).exit_code, 0);
  ASSERT_EQ(inbox.WaitFor(lines.size()), lines.size());
  std::lock_guard<std::mutex> lock(inbox.mu);
  EXPECT_EQ(inbox.payloads, lines);
  EXPECT_EQ(inbox.lost.load(), 0);
}

TEST(MqttReaderTest, KeepAliveHoldsAnIdleConnection) {
  REQUIRE_MOSQUITTO();
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  Inbox inbox;
  MqttConnectOptions o = Connection(broker, "idle");
  // Mosquitto 2.0 drops a client silent for 1.5 keep-alive intervals, checking now and
  // then: with keep-alive 1 s, a client that sends nothing is gone after about 5 s.
  o.keepalive_s = 1;
  auto reader = MqttReader::Create(o, inbox.Handler(), inbox.LostHandler());
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE((*reader)->Connect().ok());
  ASSERT_TRUE((*reader)->Subscribe({"idle/#"}, 0).ok());
  std::this_thread::sleep_for(std::chrono::seconds(7));
  EXPECT_TRUE((*reader)->IsConnected());
  EXPECT_EQ(inbox.lost.load(), 0);
  ASSERT_EQ(broker.Publish("idle/x", {"still here"}, 1).exit_code, 0);
  ASSERT_EQ(inbox.WaitFor(1), 1u);
}

TEST(MqttReaderTest, ABrokerGoingAwayIsReportedAsLost) {
  REQUIRE_MOSQUITTO();
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  Inbox inbox;
  auto reader =
      MqttReader::Create(Connection(broker, "gone"), inbox.Handler(), inbox.LostHandler());
  ASSERT_TRUE(reader.ok());
  ASSERT_TRUE((*reader)->Connect().ok());
  broker.Stop();
  Inbox::WaitUntil([&] { return inbox.lost.load() > 0; });
  EXPECT_EQ(inbox.lost.load(), 1);
  EXPECT_FALSE((*reader)->IsConnected());
  Status again = (*reader)->Connect();
  EXPECT_FALSE(again.ok());
  EXPECT_EQ(again.code(), StatusCode::kUnavailable) << again.message();
}

TEST(MqttReaderTest, AServerThatIsNotABrokerIsNamed) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ASSERT_EQ(::listen(listener, 1), 0);
  std::thread server([&] {
    const int c = ::accept(listener, nullptr, nullptr);
    if (c < 0) return;
    char buf[256];
    (void)::recv(c, buf, sizeof buf, 0);
    const std::string answer = "HTTP/1.1 400 Bad Request\r\n\r\n";
    (void)::send(c, answer.data(), answer.size(), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ::close(c);
  });
  MqttConnectOptions o;
  o.broker = "mqtt://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  o.clean_session = true;
  auto reader = MqttReader::Create(o, nullptr, nullptr);
  ASSERT_TRUE(reader.ok());
  Status s = (*reader)->Connect();
  server.join();
  ::close(listener);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("is not an MQTT CONNACK"), std::string::npos) << s.message();
}

TEST(MqttReaderTest, OnlyPlainTcpBrokers) {
  MqttConnectOptions o;
  o.broker = "mqtts://127.0.0.1:8883";
  EXPECT_FALSE(MqttReader::Supports(o));
  EXPECT_FALSE(MqttReader::Create(o, nullptr, nullptr).ok());
  o.broker = "mqtt://localhost";
  EXPECT_TRUE(MqttReader::Supports(o));
}

}  // namespace
}  // namespace tributary
