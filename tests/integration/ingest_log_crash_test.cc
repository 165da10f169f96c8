// Sources that cannot rewind, under kill -9: with checkpoints on, the `mqtt` source acknowledges
// a QoS 1 or 2 message only once its ingest log holds it, so killing the process at random
// moments while a real Mosquitto broker delivers loses no message and, with the dedup
// stage, stores none twice.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/ledger.h"
#include "core/time.h"
#include "integration/mosquitto.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::SpawnTributaryRun;

using testing::MosquittoBroker;
using testing::QueryInt;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

int WaitExit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

// Kills the run `pid` with SIGKILL at random moments 0.4-1.8 s apart and starts it again,
// until `done` or 12 kills; `pid` is the last run then. Returns the number of kills.
int KillAndRestart(pid_t& pid, const std::atomic<bool>& done, const std::string& config,
                   const std::string& log, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> wait_ms(400, 1800);
  int kills = 0;
  while (!done.load() && kills < 12) {
    std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms(rng)));
    kill(pid, SIGKILL);
    WaitExit(pid);
    ++kills;
    pid = SpawnTributaryRun({config}, log);
    EXPECT_GT(pid, 0);
    if (pid <= 0) break;
  }
  return kills;
}

// Lets the run `pid` store all `n` readings (the store is there once the run committed
// its first checkpoint), stops it, and checks that each is stored once, that some
// restart replayed from the ingest log, and that the ledger balances.
void StopAndExpectEachStoredOnce(pid_t pid, const std::string& data, const std::string& log, int n,
                                 int kills) {
  const std::string db = data + "/tributary.gpkg";
  for (int i = 0; i < 60; ++i) {
    if (QueryInt(db, "SELECT count(*) FROM readings") >= n) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  kill(pid, SIGTERM);
  const int status = WaitExit(pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFile(log);
  EXPECT_GE(kills, 3);
  const std::string runs = ReadFile(log);
  // The log mattered: some restart found records in it that no checkpoint covered.
  EXPECT_NE(runs.find("replayed from the ingest log"), std::string::npos) << runs;
  EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM readings"), n) << runs;
  EXPECT_EQ(QueryInt(db, "SELECT count(DISTINCT device_id || '/' || event_time_us) FROM readings"),
            n);
  Result<LedgerSnapshot> ledger = ParseLedgerJson(ReadFile(data + "/ledger.json"));
  ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
  EXPECT_TRUE(ledger->balanced());
  EXPECT_EQ(ledger->accepted, static_cast<uint64_t>(n));
  EXPECT_EQ(ledger->quarantined, 0u);
}

// Publishes 2,400 readings in bursts at `qos` (subscribed at the same QoS) while the
// process is killed with SIGKILL every 0.4-1.8 s and restarted; checks each is stored once.
void KillRepeatedlyWhileMqttDelivers(int qos) {
  MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  TempDir dir;
  const std::string data = dir.File("data");
  const std::string config = dir.File("mqtt.yaml");
  WriteFile(config, "pipeline:\n  name: mqtt-crash\n  data_dir: " + data +
                        "\n"
                        "processing:\n  dedup_horizon: 1h\n"
                        "sources:\n  - name: city\n    type: mqtt\n    broker: " +
                        broker.url() +
                        "\n    client_id: tributary-crash\n    topics: [city/+/up]\n    qos: " +
                        std::to_string(qos) +
                        "\n"
                        "sinks:\n  - name: local\n    type: sqlite\n"
                        "checkpoint:\n  enabled: true\n  interval: 1s\n"
                        "  ingest_log_fsync: every_message\n");
  const std::string log = dir.File("runs.log");

  constexpr int kBursts = 24;
  constexpr int kPerBurst = 100;
  const int64_t base_ms = NowUs() / 1000 - 600'000;
  // The first run subscribes (persistent session), so the broker queues from then on.
  pid_t pid = SpawnTributaryRun({config}, log);
  ASSERT_GT(pid, 0);
  std::this_thread::sleep_for(std::chrono::seconds(2));

  std::atomic<bool> published{false};
  std::thread publisher([&] {
    for (int b = 0; b < kBursts; ++b) {
      std::vector<std::string> lines;
      for (int i = 0; i < kPerBurst; ++i) {
        const int n = b * kPerBurst + i;
        lines.push_back("{\"device_id\":\"dev-" + std::to_string(n % 10) +
                        "\",\"sensor_ts\":" + std::to_string(base_ms + 10 * n) +
                        ",\"lat\":52.5,\"lon\":13.4,\"pm25\":" + std::to_string(n % 50) + "}");
      }
      EXPECT_EQ(broker.Publish("city/dev-" + std::to_string(b % 10) + "/up", lines, qos).exit_code,
                0);
      std::this_thread::sleep_for(std::chrono::milliseconds(120));
    }
    published = true;
  });
  const int kills = KillAndRestart(pid, published, config, log, 20261202);
  publisher.join();
  // The last run takes what the broker queued and what the log holds.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  StopAndExpectEachStoredOnce(pid, data, log, kBursts * kPerBurst, kills);
}

TEST(IngestLogCrash, MqttKilledRepeatedlyLosesNoAcknowledgedMessage) {
  if (MosquittoBroker::BinaryPath().empty()) GTEST_SKIP() << "mosquitto is not installed";
  KillRepeatedlyWhileMqttDelivers(1);
}

// QoS 2: Paho sends PUBREC on receipt and runs the callback (the log append) at PUBREL;
// in between the message is in Paho's file store (`ingest-<source>/paho/`), so a kill
// there loses it neither.
TEST(IngestLogCrash, MqttQos2KilledRepeatedlyLosesNoAcknowledgedMessage) {
  if (MosquittoBroker::BinaryPath().empty()) GTEST_SKIP() << "mosquitto is not installed";
  KillRepeatedlyWhileMqttDelivers(2);
}

// The `tail` source: rows appended to a growing NDJSON file while the process is killed
// with SIGKILL every 0.4-1.8 s and restarted. Each row read goes to the ingest log before
// it is handed on, and the file is read on from where the log ends: every row is stored
// once.
TEST(IngestLogCrash, TailKilledRepeatedlyLosesNoRow) {
  TempDir dir;
  const std::string data = dir.File("data");
  const std::string input = dir.File("in.ndjson");
  const std::string config = dir.File("tail.yaml");
  WriteFile(input, "");
  WriteFile(config, "pipeline:\n  name: tail-crash\n  data_dir: " + data +
                        "\n"
                        "processing:\n  dedup_horizon: 1h\n"
                        "sources:\n  - {name: feed, type: tail, path: " +
                        input +
                        ", poll_interval: 50ms}\n"
                        "sinks:\n  - name: local\n    type: sqlite\n"
                        "checkpoint:\n  enabled: true\n  interval: 1s\n");
  const std::string log = dir.File("runs.log");
  constexpr int kBursts = 24;
  constexpr int kPerBurst = 100;
  const int64_t base_ms = NowUs() / 1000 - 600'000;
  pid_t pid = SpawnTributaryRun({config}, log);
  ASSERT_GT(pid, 0);
  std::atomic<bool> written{false};
  std::thread writer([&] {
    for (int b = 0; b < kBursts; ++b) {
      std::string lines;
      for (int i = 0; i < kPerBurst; ++i) {
        const int n = b * kPerBurst + i;
        lines += "{\"device_id\":\"dev-" + std::to_string(n % 10) +
                 "\",\"sensor_ts\":" + std::to_string(base_ms + 10 * n) +
                 ",\"lat\":52.5,\"lon\":13.4,\"pm25\":" + std::to_string(n % 50) + "}\n";
      }
      FILE* f = std::fopen(input.c_str(), "ab");
      ASSERT_NE(f, nullptr);
      std::fwrite(lines.data(), 1, lines.size(), f);
      std::fclose(f);
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    written = true;
  });
  const int kills = KillAndRestart(pid, written, config, log, 20261203);
  writer.join();
  StopAndExpectEachStoredOnce(pid, data, log, kBursts * kPerBurst, kills);
}

// The `http` source with `respond: logged`: every 202 is answered only once the request's
// records are fsynced in the ingest log, so killing the process right after the last
// answer (long before any checkpoint) loses none of them; the restart replays them.
TEST(IngestLogCrash, HttpKilledAfterAnsweringLosesNoAnsweredRecord) {
  TempDir dir;
  const std::string data = dir.File("data");
  const std::string config = dir.File("http.yaml");
  const int port = testing::FreeLoopbackPort();
  WriteFile(config, "pipeline:\n  name: http-crash\n  data_dir: " + data +
                        "\n"
                        "sources:\n  - name: gateway\n    type: http\n    listen: 127.0.0.1:" +
                        std::to_string(port) +
                        "\n    respond: logged\n"
                        "sinks:\n  - name: local\n    type: sqlite\n"
                        "checkpoint:\n  enabled: true\n  interval: 1h\n");
  const std::string log = dir.File("runs.log");
  pid_t pid = SpawnTributaryRun({config}, log);
  ASSERT_GT(pid, 0);
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(1, 0);
  bool up = false;
  for (int i = 0; i < 100 && !up; ++i) {
    auto r = client.Get("/");
    up = static_cast<bool>(r);
    if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(up) << ReadFile(log);
  constexpr int kRequests = 40;
  constexpr int kPerRequest = 25;
  const int64_t base_ms = NowUs() / 1000 - 600'000;
  for (int q = 0; q < kRequests; ++q) {
    std::string body;
    for (int i = 0; i < kPerRequest; ++i) {
      const int n = q * kPerRequest + i;
      body += "{\"device_id\":\"gw-" + std::to_string(n % 7) +
              "\",\"sensor_ts\":" + std::to_string(base_ms + 10 * n) +
              ",\"lat\":52.5,\"lon\":13.4,\"pm25\":" + std::to_string(n % 40) + "}\n";
    }
    auto r = client.Post("/ingest", body, "application/x-ndjson");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 202) << r->body;
    EXPECT_NE(r->body.find("\"logged\":true"), std::string::npos) << r->body;
  }
  kill(pid, SIGKILL);
  WaitExit(pid);
  // The restart replays the log; --duration ends it with a final checkpoint and commit.
  testing::CommandResult run =
      testing::RunTributary({"run", config, "--listen", "off", "--duration", "4s", "--quiet"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string db = data + "/tributary.gpkg";
  EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM readings"), kRequests * kPerRequest)
      << ReadFile(log);
  Result<LedgerSnapshot> ledger = ParseLedgerJson(ReadFile(data + "/ledger.json"));
  ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
  EXPECT_TRUE(ledger->balanced());
  EXPECT_EQ(ledger->input, static_cast<uint64_t>(kRequests * kPerRequest));
}

}  // namespace
}  // namespace tributary
