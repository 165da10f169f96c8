// Checkpoints of a Kafka → Kafka pipeline (docs/RELIABILITY.md): the built binary reads
// a topic of a librdkafka mock cluster and writes readings and window results to
// another through a transactional kafka sink, with checkpoints on. One run goes through
// uninterrupted; another is killed with SIGKILL at random moments and restarted each
// time. The committed output of both must be the same records, each exactly once.
//
// Reading the output: librdkafka's mock cluster (2.0.2) does not implement transaction
// isolation — an aborted transaction's messages stay visible to read_committed
// consumers, and offsets sent to a transaction are acknowledged but not stored — so
// the test keeps what read_committed shows on a real broker: the messages whose
// (tributary-run, tributary-checkpoint) headers name a committed marker on the
// checkpoint topic. Markers are produced only after the checkpoint is decided, so a
// marker exists exactly for the transactions a real broker would have committed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/ledger.h"
#include "core/time.h"
#include "integration/kafka_mock.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::Committed;
using testing::ReadCommitted;
using testing::SpawnTributaryRun;

using testing::KafkaMockCluster;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

constexpr int kDevices = 20;
constexpr int kMessages = 6000;
constexpr int kPartitions = 3;

// Message i: device dev-(i % 20), 10 s apart per device, in event-time order,
// positions over four H3 res-5 areas.
std::string Reading(int i) {
  const int64_t base_ms = 1714521600000;  // 2024-05-01T00:00:00Z
  const double lat = 48.0 + (i % 4) * 1.5;
  return "{\"device_id\":\"dev-" + std::to_string(i % kDevices) +
         "\",\"sensor_ts\":" + std::to_string(base_ms + 10'000LL * (i / kDevices)) +
         ",\"lat\":" + std::to_string(lat) + ",\"lon\":11.0,\"pm25\":" + std::to_string(i % 97) +
         ",\"temperature\":" + std::to_string(10 + i % 13) + "}";
}

std::string Config(const std::string& brokers, const std::string& name, const std::string& topic) {
  return "pipeline:\n  name: " + name + "\n  batch_size: 100\n  queue_capacity: 2\n" +
         "processing:\n  idle_timeout: 24h\n  grace: 5m\n" +
         "sources:\n  - name: bus\n    type: kafka\n    brokers: " + brokers + "\n    topics: [" +
         topic + "]\n    group_id: " + name + "\n    poll_records: 100\n" +
         "    properties: [session.timeout.ms=3000, heartbeat.interval.ms=300]\n" +
         "windows:\n  - name: t5m\n    type: tumbling\n    size: 5m\n"
         "    aggregates: [mean, max, median]\n"
         "  - name: all10m\n    type: tumbling\n    size: 10m\n    group_by: all\n"
         "    aggregates: [mean, std]\n"
         "sinks:\n  - name: out\n    type: kafka\n    brokers: " +
         brokers + "\n    readings_topic: " + name + ".readings\n    windows_topic: " + name +
         ".windows\n    quarantine_topic: ''\n    late_topic: " + name +
         ".late\n    breaker: false\n    transactional_id: " + name +
         "\n    checkpoint_topic: " + name + ".checkpoints\n" +
         "checkpoint:\n  enabled: true\n  interval: 300ms\n";
}

// Committed markers of `name`: "run/checkpoint".
std::set<std::string> Markers(KafkaMockCluster& kafka, const std::string& name) {
  std::set<std::string> out;
  static const std::regex marker("checkpoint=([0-9]+) run=([0-9a-f]+)");
  for (const auto& m : kafka.ReadAll(name + ".checkpoints", 1'000'000, 10000, 2000)) {
    std::smatch sm;
    if (m.key == name && std::regex_search(m.value, sm, marker)) {
      out.insert(sm[2].str() + "/" + sm[1].str());
    }
  }
  return out;
}

struct Output {
  Committed readings;
  Committed windows;
  Committed late;
};

Output ReadOutput(KafkaMockCluster& kafka, const std::string& name) {
  std::set<std::string> markers = Markers(kafka, name);
  EXPECT_FALSE(markers.empty()) << name;
  Output o;
  o.readings = ReadCommitted(kafka, name + ".readings", markers, 30000);
  o.windows = ReadCommitted(kafka, name + ".windows", markers, 30000);
  // In order, the input has no late readings: a short wait shows the topic is empty.
  o.late = ReadCommitted(kafka, name + ".late", markers, 6000);
  return o;
}

void CreateTopics(KafkaMockCluster& kafka, const std::string& name) {
  ASSERT_EQ(kafka.CreateTopic(name + ".readings", kPartitions), "");
  ASSERT_EQ(kafka.CreateTopic(name + ".windows", 1), "");
  ASSERT_EQ(kafka.CreateTopic(name + ".late", 1), "");
  ASSERT_EQ(kafka.CreateTopic(name + ".checkpoints", 1), "");
}

TEST(KafkaCheckpointCrash, KafkaToKafkaKilledRepeatedlyCommitsEachRecordOnce) {
  KafkaMockCluster kafka(3);
  ASSERT_FALSE(kafka.bootstrap().empty());
  // One input partition: the window stage learns of a partition only from its first
  // reading, so with several the interleaving of the first fetches decides what is
  // late — different in any two runs, interrupted or not.
  ASSERT_EQ(kafka.CreateTopic("sensors", 1), "");
  ASSERT_EQ(kafka.CreateTopic("sensors.fed", 1), "");
  std::vector<std::pair<std::string, std::string>> input;
  for (int i = 0; i < kMessages; ++i) {
    input.emplace_back("dev-" + std::to_string(i % kDevices), Reading(i));
  }
  ASSERT_EQ(kafka.Produce("sensors", input), "");
  CreateTopics(kafka, "clean");
  CreateTopics(kafka, "crashed");

  TempDir tmp;
  WriteFile(tmp.File("clean.yaml"), Config(kafka.bootstrap(), "clean", "sensors"));
  WriteFile(tmp.File("crashed.yaml"), Config(kafka.bootstrap(), "crashed", "sensors.fed"));
  // The clean run: long enough to join the group and read everything, then stopped
  // (its last windows stay open in its final checkpoint, as the crashed run's do).
  pid_t pid = SpawnTributaryRun(
      {tmp.File("clean.yaml"), "--data-dir", tmp.File("clean"), "--duration", "20s"},
      tmp.File("clean.log"));
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFile(tmp.File("clean.log"));
  Output clean = ReadOutput(kafka, "clean");
  // Every input message is one reading per metric, committed once.
  ASSERT_EQ(clean.readings.records.size(), static_cast<size_t>(2 * kMessages))
      << ReadFile(tmp.File("clean.log"));

  // Kill the other pipeline at random moments: a restarted member first waits for the
  // killed one to leave the group (session timeout, 3 s), so the delays are long enough
  // for each run to process part of the input.
  // The same input reaches the other pipeline's topic over ~45 s, in 60 slices, so
  // the kills land mid-stream: with a transaction open, windows half full.
  std::thread feeder([&] {
    constexpr int kSlices = 60;
    for (int s = 0; s < kSlices; ++s) {
      std::vector<std::pair<std::string, std::string>> slice(
          input.begin() + s * kMessages / kSlices, input.begin() + (s + 1) * kMessages / kSlices);
      EXPECT_EQ(kafka.Produce("sensors.fed", slice), "");
      std::this_thread::sleep_for(std::chrono::milliseconds(750));
    }
  });
  const std::string log = tmp.File("crashed.log");
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> delay(5000, 11000);
  int kills = 0;
  for (int start = 0; start < 5; ++start) {
    pid = SpawnTributaryRun({tmp.File("crashed.yaml"), "--data-dir", tmp.File("crashed")}, log);
    ASSERT_GT(pid, 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay(rng)));
    EXPECT_EQ(waitpid(pid, &status, WNOHANG), 0) << "the run ended early:\n" << ReadFile(log);
    ::kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    ++kills;
  }
  feeder.join();
  pid = SpawnTributaryRun(
      {tmp.File("crashed.yaml"), "--data-dir", tmp.File("crashed"), "--duration", "20s"}, log);
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << ReadFile(log);
  const std::string log_text = ReadFile(log);
  size_t resumed = 0;
  for (size_t at = log_text.find("resumed from checkpoint"); at != std::string::npos;
       at = log_text.find("resumed from checkpoint", at + 1)) {
    ++resumed;
  }
  EXPECT_GE(resumed, 3u) << log_text;

  Output crashed = ReadOutput(kafka, "crashed");
  EXPECT_EQ(
      std::set<std::string>(clean.readings.records.begin(), clean.readings.records.end()).size(),
      clean.readings.records.size());
  EXPECT_GT(clean.windows.records.size(), 100u);
  EXPECT_TRUE(crashed.readings.records == clean.readings.records)
      << crashed.readings.records.size() << " committed readings after " << kills << " kills, "
      << clean.readings.records.size() << " in the clean run";
  EXPECT_TRUE(crashed.windows.records == clean.windows.records)
      << crashed.windows.records.size() << " committed windows after the kills, "
      << clean.windows.records.size() << " in the clean run";
  EXPECT_EQ(crashed.late.records, clean.late.records);
  // The committed output came from several of the killed processes, each taking over
  // where the last checkpoint of the one before ended.
  EXPECT_GE(crashed.readings.runs.size(), 3u);
  std::cerr << kills << " kills, " << resumed << " runs resumed from a checkpoint, "
            << crashed.readings.runs.size() << " runs committed readings; the mock shows "
            << crashed.readings.visible << " reading messages, " << crashed.readings.records.size()
            << " of them committed\n";

  Result<LedgerSnapshot> a = ParseLedgerJson(ReadFile(tmp.File("clean/ledger.json")));
  Result<LedgerSnapshot> b = ParseLedgerJson(ReadFile(tmp.File("crashed/ledger.json")));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(b->balanced()) << b->ToText();
  EXPECT_EQ(a->ToJson(), b->ToJson());
}

}  // namespace
}  // namespace tributary
