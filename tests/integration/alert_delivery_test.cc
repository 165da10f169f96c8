// Alert delivery against real servers on loopback: a small SMTP server written here
// (enough SMTP for libcurl: EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT), a cpp-httplib
// server receiving webhooks, and a real Mosquitto carrying MQTT alerts.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "alert/dispatch.h"
#include "core/pipeline_config.h"
#include "integration/mosquitto.h"
#include "integration/smtp_server.h"
#include "io/mqtt_client.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::MosquittoBroker;
using testing::SmtpServer;
using testing::TempDir;

// A webhook receiver that fails the first `fail_first` requests with HTTP 503 and can
// hang (for `hang`) before answering.
class WebhookServer {
 public:
  explicit WebhookServer(int fail_first, std::chrono::milliseconds hang = {}) {
    http_.Post("/hook",
               [this, fail_first, hang](const httplib::Request& req, httplib::Response& res) {
                 if (hang.count() > 0) std::this_thread::sleep_for(hang);
                 std::lock_guard lock(mu_);
                 ++requests_;
                 if (requests_ <= fail_first) {
                   res.status = 503;
                   return;
                 }
                 bodies_.push_back(req.body);
                 res.status = 204;
               });
    port_ = http_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { http_.listen_after_bind(); });
    while (!http_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ~WebhookServer() {
    http_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  int requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::vector<std::string> bodies() {
    std::lock_guard lock(mu_);
    return bodies_;
  }

 private:
  httplib::Server http_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  int requests_ = 0;
  std::vector<std::string> bodies_;
};

std::unique_ptr<AlertDispatcher> Dispatcher(const std::string& channels_yaml) {
  std::string yaml =
      "sources: [{name: s, type: simulator}]\nalerts:\n  channels:\n" + channels_yaml;
  Result<PipelineConfig> c = ParsePipelineConfig(yaml, "test.yaml");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (!c.ok()) return nullptr;
  auto d = AlertDispatcher::Make(*c, {}, {});
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  return d.ok() ? std::move(*d) : nullptr;
}

AlertEvent Alert(const char* key, AlertState state = AlertState::kFiring) {
  AlertEvent e;
  e.rule = Intern("pm_high");
  e.kind = Intern("reading_threshold");
  e.key = Intern(key);
  e.metric = Intern("pm25");
  e.severity = Intern("critical");
  e.state = state;
  e.fired_at = 1'700'000'000'000'000;
  e.event_time = e.fired_at;
  e.value = 41.5;
  e.level = 35;
  e.message = std::string("pm25 at ") + key + " is 41.5 (> 35)";
  return e;
}

template <typename F>
bool WaitFor(F&& done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return done();
}

TEST(AlertDeliveryTest, WebhookIsRetriedWithBackoffUntilDelivered) {
  TempDir dir;
  WebhookServer hook(/*fail_first=*/2);
  auto d = Dispatcher("    - {name: hook, type: webhook, url: 'http://127.0.0.1:" +
                      std::to_string(hook.port()) + "/hook', retry_initial: 20ms}\n");
  ASSERT_NE(d, nullptr);
  ASSERT_TRUE(d->Open(dir.File("queue.db")).ok());
  d->Submit(Alert("dev-1"));
  ASSERT_TRUE(WaitFor([&] { return hook.bodies().size() == 1; }));
  EXPECT_EQ(hook.requests(), 3);
  EXPECT_NE(hook.bodies()[0].find("\"key\":\"dev-1\""), std::string::npos);
  EXPECT_NE(hook.bodies()[0].find("\"state\":\"firing\""), std::string::npos);
  d->Stop(0);
  auto stats = d->Stats();
  EXPECT_EQ(stats[0].delivered, 1u);
  EXPECT_EQ(stats[0].failed_attempts, 2u);
  EXPECT_EQ(stats[0].pending, 0u);
}

TEST(AlertDeliveryTest, UndeliveredAlertsSurviveARestart) {
  TempDir dir;
  int port = 0;
  {
    WebhookServer probe(0);  // find a port, then close it: nothing listens there
    port = probe.port();
  }
  std::string channel =
      "    - {name: hook, type: webhook, url: 'http://127.0.0.1:" + std::to_string(port) +
      "/hook', retry_initial: 10ms, timeout: 200ms}\n";
  {
    auto d = Dispatcher(channel);
    ASSERT_TRUE(d->Open(dir.File("queue.db")).ok());
    d->Submit(Alert("dev-1"));
    d->Submit(Alert("dev-1", AlertState::kResolved));
    ASSERT_TRUE(WaitFor([&] { return d->Stats()[0].failed_attempts >= 1; }));
    d->Stop(0);
    EXPECT_EQ(d->Stats()[0].pending, 2u);
  }
  // The receiver comes up on that port; a new dispatcher delivers both, in order.
  httplib::Server http;
  std::mutex mu;
  std::vector<std::string> got;
  http.Post("/hook", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    got.push_back(req.body);
    res.status = 200;
  });
  ASSERT_TRUE(http.bind_to_port("127.0.0.1", port));
  std::thread t([&] { http.listen_after_bind(); });
  auto d = Dispatcher(channel);
  ASSERT_TRUE(d->Open(dir.File("queue.db")).ok());
  bool ok = WaitFor([&] {
    std::lock_guard lock(mu);
    return got.size() == 2;
  });
  d->Stop(0);
  http.stop();
  t.join();
  ASSERT_TRUE(ok);
  EXPECT_NE(got[0].find("\"state\":\"firing\""), std::string::npos);
  EXPECT_NE(got[1].find("\"state\":\"resolved\""), std::string::npos);
}

TEST(AlertDeliveryTest, EmailReachesTheSmtpServerWithCredentialsFromTheEnvironment) {
  TempDir dir;
  SmtpServer smtp;
  ::setenv("TRIB_TEST_SMTP_PASSWORD", "s3cret", 1);
  auto d = Dispatcher(
      "    - {name: mail, type: email, url: 'smtp://127.0.0.1:" + std::to_string(smtp.port()) +
      "', from: alerts@example.org, to: [ops@example.org, oncall@example.org], "
      "username: tributary, password: '${TRIB_TEST_SMTP_PASSWORD}', starttls: "
      "try}\n");
  ASSERT_NE(d, nullptr);
  ASSERT_TRUE(d->Open(dir.File("queue.db")).ok());
  d->Submit(Alert("dev-7"));
  ASSERT_TRUE(WaitFor([&] { return smtp.mails().size() == 1; }));
  d->Stop(0);
  SmtpServer::Mail m = smtp.mails()[0];
  EXPECT_NE(m.from.find("<alerts@example.org>"), std::string::npos);
  ASSERT_EQ(m.rcpt.size(), 2u);
  EXPECT_NE(m.rcpt[1].find("<oncall@example.org>"), std::string::npos);
  // AUTH PLAIN carries base64("\0tributary\0s3cret").
  EXPECT_EQ(m.auth, "AHRyaWJ1dGFyeQBzM2NyZXQ=");
  EXPECT_NE(m.data.find("Subject: [critical] FIRING pm_high: dev-7"), std::string::npos);
  EXPECT_NE(m.data.find("pm25 at dev-7 is 41.5 (> 35)"), std::string::npos);
}

TEST(AlertDeliveryTest, AHangingWebhookDoesNotDelayMqtt) {
  if (MosquittoBroker::BinaryPath().empty()) GTEST_SKIP() << "mosquitto is not installed";
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  TempDir dir;
  WebhookServer slow(0, std::chrono::milliseconds(3000));
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> received;
  MqttConnectOptions co;
  co.broker = broker.url();
  co.clean_session = true;
  auto sub = MqttClient::Create(
      co,
      [&](std::string_view topic, std::string_view payload, int) {
        std::lock_guard lock(mu);
        received.emplace_back(std::string(topic), std::string(payload));
      },
      [](const std::string&) {});
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE((*sub)->Connect().ok());
  ASSERT_TRUE((*sub)->Subscribe({"alerts/#"}, 1).ok());
  auto d = Dispatcher(
      "    - {name: slow, type: webhook, url: 'http://127.0.0.1:" + std::to_string(slow.port()) +
      "/hook', timeout: 5s}\n" + "    - {name: mq, type: mqtt, broker: '" + broker.url() +
      "', clean_session: true, topic: 'alerts/{rule}/{key}'}\n");
  ASSERT_NE(d, nullptr);
  ASSERT_TRUE(d->Open(dir.File("queue.db")).ok());
  d->Submit(Alert("dev-1"));
  d->Submit(Alert("dev-2"));
  bool ok = WaitFor([&] {
    std::lock_guard lock(mu);
    return received.size() == 2;
  });
  ASSERT_TRUE(ok);
  // Both MQTT alerts arrived while the webhook was still hanging on the first one.
  EXPECT_EQ(slow.bodies().size(), 0u);
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(received[0].first, "alerts/pm_high/dev-1");
    EXPECT_NE(received[1].second.find("\"key\":\"dev-2\""), std::string::npos);
  }
  d->Stop(0);
  (*sub)->Disconnect(kMicrosPerSecond);
}

}  // namespace
}  // namespace tributary
