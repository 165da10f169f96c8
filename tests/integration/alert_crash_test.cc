// Alerts across a kill -9 with checkpoints on (docs/RELIABILITY.md, "Alert channels
// across a crash"): an alert emitted before the last complete checkpoint must reach its
// channel after a restart, even when it was still waiting in the channel's memory (a
// slow receiver) when the process died, since the restart restores a state in which it
// already fired and does not emit it again.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <mutex>
#include <thread>

#include "alert/dispatch.h"
#include "core/pipeline_config.h"
#include "io/sinks/sqlite_util.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::ReadFile;
using testing::SpawnTributaryRun;
using testing::TempDir;
using testing::WriteFile;

// A webhook receiver that takes connections and never answers: the kernel completes
// the handshake (listen backlog), nothing ever accepts, so every request hangs until
// the client's timeout.
class SilentReceiver {
 public:
  SilentReceiver() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 64);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~SilentReceiver() { Close(); }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A webhook receiver that answers 204 at once and keeps every body.
class Receiver {
 public:
  explicit Receiver(int port) {
    http_.Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu_);
      bodies_.push_back(req.body);
      res.status = 204;
    });
    bound_ = http_.bind_to_port("127.0.0.1", port);
    if (bound_) thread_ = std::thread([this] { http_.listen_after_bind(); });
    while (bound_ && !http_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ~Receiver() {
    http_.stop();
    if (thread_.joinable()) thread_.join();
  }
  bool bound() const { return bound_; }
  std::vector<std::string> bodies() {
    std::lock_guard lock(mu_);
    return bodies_;
  }

 private:
  httplib::Server http_;
  bool bound_ = false;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> bodies_;
};

// The integer `sql` answers on the SQLite file `path`, or -1 while it cannot be read.
int64_t TryQueryInt(const std::string& path, const std::string& sql) {
  SqliteDb db;
  if (!db.Open(path, true).ok()) return -1;
  Result<int64_t> v = db.QueryInt(sql);
  return v.ok() ? *v : -1;
}

std::string TryQueryText(const std::string& path, const std::string& sql) {
  SqliteDb db;
  if (!db.Open(path, true).ok()) return {};
  Result<std::string> v = db.QueryText(sql);
  return v.ok() ? *v : std::string();
}

template <typename F>
bool WaitFor(F&& done, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

TEST(AlertCrash, AlertWaitingForASlowWebhookSurvivesAKillAfterItsCheckpoint) {
  TempDir dir;
  const std::string data = dir.File("data");
  const std::string config = dir.File("p.yaml");
  const std::string log = dir.File("runs.log");
  const int ingest_port = testing::FreeLoopbackPort();
  SilentReceiver silent;
  const int hook_port = silent.port();
  WriteFile(config, "pipeline:\n  name: alert-crash\n  data_dir: " + data +
                        "\n"
                        "sources:\n  - name: gateway\n    type: http\n    listen: 127.0.0.1:" +
                        std::to_string(ingest_port) +
                        "\n    respond: logged\n"
                        "sinks:\n  - name: local\n    type: sqlite\n"
                        "alerts:\n  rules:\n"
                        "    - {name: pm_high, kind: reading_threshold, metric: pm25, level: 35, "
                        "clear: 30}\n"
                        "  channels:\n"
                        "    - {name: hook, type: webhook, url: 'http://127.0.0.1:" +
                        std::to_string(hook_port) +
                        "/hook', timeout: 5m, retry_initial: 50ms}\n"
                        "checkpoint:\n  enabled: true\n  interval: 200ms\n");
  pid_t pid = SpawnTributaryRun({config}, log);
  ASSERT_GT(pid, 0);
  httplib::Client client("127.0.0.1", ingest_port);
  client.set_connection_timeout(1, 0);
  ASSERT_TRUE(WaitFor([&] { return static_cast<bool>(client.Get("/")); }, std::chrono::seconds(20)))
      << ReadFile(log);
  // Two devices cross the level: two alerts, the first one hangs in the webhook request,
  // the second waits behind it in the channel's inbox.
  const int64_t base_ms = NowUs() / 1000 - 600'000;
  std::string body;
  const double values[] = {10, 40, 45};
  for (int i = 0; i < 3; ++i) {
    for (const char* device : {"d1", "d2"}) {
      body += std::string("{\"device_id\":\"") + device +
              "\",\"sensor_ts\":" + std::to_string(base_ms + i * 60'000) +
              ",\"lat\":52.5,\"lon\":13.4,\"pm25\":" + std::to_string(values[i]) + "}\n";
    }
  }
  auto r = client.Post("/ingest", body, "application/x-ndjson");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 202) << r->body;
  // The alerts table goes through the sinks' commit: once it holds both alerts, a
  // checkpoint that covers them is complete.
  const std::string store = data + "/tributary.gpkg";
  ASSERT_TRUE(WaitFor([&] { return TryQueryInt(store, "SELECT count(*) FROM alerts") == 2; },
                      std::chrono::seconds(30)))
      << ReadFile(log);
  ::kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  const std::string first_id =
      TryQueryText(store, "SELECT alert_id FROM alerts WHERE key = 'd1' ORDER BY id LIMIT 1");
  const std::string second_id =
      TryQueryText(store, "SELECT alert_id FROM alerts WHERE key = 'd2' ORDER BY id LIMIT 1");
  ASSERT_FALSE(first_id.empty());
  ASSERT_FALSE(second_id.empty());

  // The receiver answers now; the restart resumes after the alerts fired.
  silent.Close();
  Receiver hook(hook_port);
  ASSERT_TRUE(hook.bound());
  const size_t before = ReadFile(log).size();
  pid = SpawnTributaryRun({config}, log);
  ASSERT_GT(pid, 0);
  auto has = [&](const std::string& id) {
    for (const std::string& b : hook.bodies()) {
      if (b.find("\"id\":\"" + id + "\"") != std::string::npos) return true;
    }
    return false;
  };
  const bool arrived =
      WaitFor([&] { return has(first_id) && has(second_id); }, std::chrono::seconds(30));
  ::kill(pid, SIGTERM);
  waitpid(pid, &status, 0);
  const std::string restart = ReadFile(log).substr(before);
  EXPECT_NE(restart.find("resumed from checkpoint"), std::string::npos) << restart;
  EXPECT_TRUE(arrived) << "alerts " << first_id << " and " << second_id
                       << " were not delivered after the restart; got " << hook.bodies().size()
                       << " requests\n"
                       << restart;
  // Neither is emitted again by the restored rules: each arrives once.
  EXPECT_EQ(hook.bodies().size(), 2u);
  EXPECT_EQ(TryQueryInt(store, "SELECT count(*) FROM alerts"), 2);
}

// Persist writes the message being delivered and the inbox behind it into the queue file
// while the channel hangs; the worker then applies the delivery's outcome to that row,
// so each alert arrives once and nothing stays queued.
TEST(AlertCrash, PersistWritesTheInFlightMessageAndTheInboxAndDeliversEachOnce) {
  TempDir dir;
  std::mutex mu;
  std::vector<std::string> got;
  int requests = 0;
  httplib::Server http;
  http.Post("/hook", [&](const httplib::Request& req, httplib::Response& res) {
    bool hang = false;
    {
      std::lock_guard lock(mu);
      hang = ++requests == 1;
    }
    if (hang) std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    std::lock_guard lock(mu);
    got.push_back(req.body);
    res.status = 204;
  });
  const int port = http.bind_to_any_port("127.0.0.1");
  std::thread t([&] { http.listen_after_bind(); });
  Result<PipelineConfig> c = ParsePipelineConfig(
      "sources: [{name: s, type: simulator}]\nalerts:\n  channels:\n"
      "    - {name: hook, type: webhook, url: 'http://127.0.0.1:" +
          std::to_string(port) + "/hook', retry_initial: 20ms}\n",
      "test.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto d = AlertDispatcher::Make(*c, {}, {});
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  const std::string queue = dir.File("queue.db");
  ASSERT_TRUE((*d)->Open(queue).ok());
  for (const char* key : {"dev-1", "dev-2", "dev-3"}) {
    AlertEvent e;
    e.rule = Intern("pm_high");
    e.kind = Intern("reading_threshold");
    e.key = Intern(key);
    e.metric = Intern("pm25");
    e.severity = Intern("critical");
    e.state = AlertState::kFiring;
    e.fired_at = 1'700'000'000'000'000;
    e.event_time = e.fired_at;
    e.value = 41.5;
    e.level = 35;
    (*d)->Submit(e);
  }
  ASSERT_TRUE(WaitFor(
      [&] {
        std::lock_guard lock(mu);
        return requests == 1;
      },
      std::chrono::seconds(10)));
  // The first request hangs: all three exist only in memory until Persist.
  EXPECT_EQ(TryQueryInt(queue, "SELECT count(*) FROM alert_queue"), 0);
  ASSERT_TRUE((*d)->Persist().ok());
  EXPECT_EQ(TryQueryInt(queue, "SELECT count(*) FROM alert_queue"), 3);
  EXPECT_EQ(TryQueryText(queue,
                         "SELECT group_concat(key, ',') FROM (SELECT key FROM "
                         "alert_queue ORDER BY id)"),
            "dev-1,dev-2,dev-3");
  const bool all = WaitFor(
      [&] {
        std::lock_guard lock(mu);
        return got.size() >= 3;
      },
      std::chrono::seconds(10));
  ASSERT_TRUE(WaitFor([&] { return (*d)->Stats()[0].pending == 0; }, std::chrono::seconds(5)));
  (*d)->Stop(0);
  http.stop();
  t.join();
  ASSERT_TRUE(all);
  std::lock_guard lock(mu);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_NE(got[0].find("\"key\":\"dev-1\""), std::string::npos);
  EXPECT_NE(got[1].find("\"key\":\"dev-2\""), std::string::npos);
  EXPECT_NE(got[2].find("\"key\":\"dev-3\""), std::string::npos);
  EXPECT_EQ(TryQueryInt(queue, "SELECT count(*) FROM alert_queue"), 0);
  EXPECT_EQ((*d)->Stats()[0].delivered, 3u);
}

}  // namespace
}  // namespace tributary
