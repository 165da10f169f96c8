// End-to-end: the built binary reads sensor messages from a real Mosquitto broker
// (the `mqtt` source) into the local sqlite store.
#include <MQTTAsync.h>
#include <MQTTClient.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sqlite3.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "core/ledger.h"
#include "core/time.h"
#include "integration/mosquitto.h"
#include "io/mqtt_client.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::MosquittoBroker;
using testing::QueryInt;

// The TCP_NODELAY setting of each socket of this process connected to 127.0.0.1:`port`.
std::vector<int> NoDelayOfSocketsTo(int port) {
  std::vector<int> out;
  DIR* fds = ::opendir("/proc/self/fd");
  if (fds == nullptr) return out;
  while (const dirent* e = ::readdir(fds)) {
    int fd = std::atoi(e->d_name);
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    if (fd <= 2 || ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0 ||
        peer.sin_family != AF_INET || ntohs(peer.sin_port) != port) {
      continue;
    }
    int value = -1;
    socklen_t vlen = sizeof value;
    if (::getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &value, &vlen) == 0) out.push_back(value);
  }
  ::closedir(fds);
  return out;
}

// Paho leaves Nagle's algorithm on; with it a small publish waits up to the peer's delayed
// ACK (40 ms). Every client connection to the broker must have it off.
TEST(MqttClientTest, ConnectionsToTheBrokerSendWithoutNagleDelay) {
  if (MosquittoBroker::BinaryPath().empty()) GTEST_SKIP() << "mosquitto is not installed";
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  MqttConnectOptions o;
  o.broker = broker.url();
  o.clean_session = true;
  o.client_id = "nodelay-sync";
  auto sync = MqttClient::Create(
      o, [](std::string_view, std::string_view, int) {}, nullptr);
  ASSERT_TRUE(sync.ok()) << sync.status().ToString();
  ASSERT_TRUE((*sync)->Connect().ok());
  std::vector<int> after_sync = NoDelayOfSocketsTo(broker.port());
  ASSERT_EQ(after_sync.size(), 1u);
  EXPECT_EQ(after_sync[0], 1);
  o.client_id = "nodelay-async";
  auto async = MqttPublisher::Create(o);
  ASSERT_TRUE(async.ok()) << async.status().ToString();
  ASSERT_TRUE((*async)->Connect().ok());
  std::vector<int> after_async = NoDelayOfSocketsTo(broker.port());
  ASSERT_EQ(after_async.size(), 2u);
  EXPECT_EQ(after_async[0], 1);
  EXPECT_EQ(after_async[1], 1);
}

std::atomic<int> paho_trace_below_error{0};
void CountPahoTrace(enum MQTTCLIENT_TRACE_LEVELS level, char* /*message*/) {
  if (level < MQTTCLIENT_TRACE_ERROR) paho_trace_below_error.fetch_add(1);
}
void CountPahoAsyncTrace(enum MQTTASYNC_TRACE_LEVELS level, char* /*message*/) {
  if (level < MQTTASYNC_TRACE_ERROR) paho_trace_below_error.fetch_add(1);
}

// Paho's default trace level formats a line for every packet (see mqtt_client.cc); the
// clients lower it to errors, so receiving and publishing trace nothing below that.
TEST(MqttClientTest, PahoTracesOnlyErrorsWhileMessagesFlow) {
  if (MosquittoBroker::BinaryPath().empty()) GTEST_SKIP() << "mosquitto is not installed";
  if (std::getenv("MQTT_C_CLIENT_TRACE") != nullptr ||
      std::getenv("MQTT_C_CLIENT_TRACE_LEVEL") != nullptr) {
    GTEST_SKIP() << "Paho's trace is asked for in the environment";
  }
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  MqttConnectOptions o;
  o.broker = broker.url();
  o.clean_session = true;
  o.client_id = "trace-sync";
  std::atomic<int> received{0};
  auto sync = MqttClient::Create(
      o, [&](std::string_view, std::string_view, int) { received.fetch_add(1); }, nullptr);
  ASSERT_TRUE(sync.ok()) << sync.status().ToString();
  o.client_id = "trace-async";
  auto async = MqttPublisher::Create(o);
  ASSERT_TRUE(async.ok()) << async.status().ToString();
  paho_trace_below_error = 0;
  MQTTClient_setTraceCallback(&CountPahoTrace);
  MQTTAsync_setTraceCallback(&CountPahoAsyncTrace);
  ASSERT_TRUE((*sync)->Connect().ok());
  ASSERT_TRUE((*sync)->Subscribe({"trace/#"}, 1).ok());
  ASSERT_TRUE((*async)->Connect().ok());
  constexpr int kMessages = 20;
  for (int i = 0; i < kMessages; ++i) {
    Result<int> token = (*async)->Publish("trace/a", "m" + std::to_string(i), 1, false);
    ASSERT_TRUE(token.ok()) << token.status().ToString();
    ASSERT_TRUE((*async)->WaitForDelivery(*token, 5'000'000).ok());
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (received.load() < kMessages && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  (*sync)->Disconnect(100'000);
  (*async)->Disconnect(100'000);
  MQTTClient_setTraceCallback(nullptr);
  MQTTAsync_setTraceCallback(nullptr);
  EXPECT_EQ(received.load(), kMessages);
  EXPECT_EQ(paho_trace_below_error.load(), 0);
}

TEST(MqttRunTest, BinaryReadsFromBrokerIntoSqlite) {
  if (MosquittoBroker::BinaryPath().empty()) GTEST_SKIP() << "mosquitto is not installed";
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  testing::TempDir dir;
  testing::WriteFile(dir.File("mqtt.yaml"),
                     "pipeline:\n  name: mqtt-e2e\n"
                     "sources:\n  - name: city\n    type: mqtt\n    broker: " +
                         broker.url() +
                         "\n    client_id: tributary-e2e\n    topics: [city/+/up]\n    qos: 1\n"
                         "sinks:\n  - name: local\n    type: sqlite\n");
  testing::CommandResult run;
  std::thread runner([&] {
    run = testing::RunTributary({"run", dir.File("mqtt.yaml"), "--data-dir", dir.File("data"),
                                 "--duration", "6s", "--quiet"});
  });
  // Publish once the run had time to connect and subscribe.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  constexpr int kDevices = 4;
  constexpr int kPerDevice = 10;
  const int64_t now_ms = NowUs() / 1000;
  for (int d = 0; d < kDevices; ++d) {
    std::vector<std::string> lines;
    for (int i = 0; i < kPerDevice; ++i) {
      lines.push_back("{\"device_id\":\"dev-" + std::to_string(d) +
                      "\",\"sensor_ts\":" + std::to_string(now_ms - 1000 * (kPerDevice - i)) +
                      ",\"lat\":52.5,\"lon\":13.4,\"pm25\":" + std::to_string(10 + i) +
                      ",\"temperature\":" + std::to_string(15 + d) + "}");
    }
    ASSERT_EQ(broker.Publish("city/dev-" + std::to_string(d) + "/up", lines, 1).exit_code, 0);
  }
  runner.join();
  ASSERT_EQ(run.exit_code, 0) << run.err;
  Result<LedgerSnapshot> ledger = ParseLedgerJson(testing::ReadFile(dir.File("data/ledger.json")));
  ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
  EXPECT_TRUE(ledger->balanced());
  const std::string db = dir.File("data/tributary.gpkg");
  // Two metrics per message.
  EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM readings"), 2 * kDevices * kPerDevice);
  EXPECT_EQ(QueryInt(db,
                     "SELECT count(DISTINCT json_extract(provenance, '$.topic')) FROM "
                     "readings WHERE json_extract(provenance, '$.topic') LIKE 'city/%/up'"),
            kDevices);
  EXPECT_EQ(QueryInt(db,
                     "SELECT count(*) FROM readings WHERE json_extract(provenance, "
                     "'$.source') = 'city'"),
            2 * kDevices * kPerDevice);
}

}  // namespace
}  // namespace tributary
