// End-to-end: the built binary consumes sensor messages from a 3-broker librdkafka mock
// cluster (the `kafka` source) into the local sqlite store and a `kafka` sink, stops
// mid-stream, and a second run resumes from the committed offsets.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>

#include "core/ledger.h"
#include "core/time.h"
#include "integration/kafka_mock.h"
#include "spatial/h3.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::KafkaMockCluster;
using testing::QueryInt;

// Message i: device dev-(i % 20), one second apart per device, pm25 = i; positions spread
// over four H3 resolution-5 areas.
std::string Reading(int i, int64_t base_ms) {
  const double lat = 48.0 + (i % 4) * 1.5;
  return "{\"device_id\":\"dev-" + std::to_string(i % 20) +
         "\",\"sensor_ts\":" + std::to_string(base_ms + 1000LL * (i / 20)) +
         ",\"lat\":" + std::to_string(lat) + ",\"lon\":11.0,\"pm25\":" + std::to_string(i % 500) +
         "}";
}

TEST(KafkaRunTest, ConsumesIntoSqliteAndKafkaAndResumesFromCommittedOffsets) {
  KafkaMockCluster kafka(3);
  ASSERT_FALSE(kafka.bootstrap().empty());
  constexpr int kPartitions = 3;
  ASSERT_EQ(kafka.CreateTopic("sensors", kPartitions), "");
  ASSERT_EQ(kafka.CreateTopic("out.readings", kPartitions), "");
  ASSERT_EQ(kafka.CreateTopic("sensor.quarantine", 1), "");

  constexpr int kFirst = 3000;
  constexpr int kSecond = 2000;
  constexpr int kBad = 5;
  const int64_t base_ms = NowUs() / 1000 - 3'600'000;
  std::vector<std::pair<std::string, std::string>> first;
  for (int i = 0; i < kFirst; ++i)
    first.emplace_back("dev-" + std::to_string(i % 20), Reading(i, base_ms));
  for (int i = 0; i < kBad; ++i) first.emplace_back("bad", "{\"device_id\": \"broken\"");
  ASSERT_EQ(kafka.Produce("sensors", first), "");

  testing::TempDir dir;
  testing::WriteFile(dir.File("kafka.yaml"),
                     "pipeline:\n  name: kafka-e2e\n  commit_interval: 200ms\n"
                     "sources:\n  - name: bus\n    type: kafka\n    brokers: " +
                         kafka.bootstrap() +
                         "\n    topics: [sensors]\n    group_id: e2e\n"
                         "    properties: [session.timeout.ms=6000]\n"
                         "sinks:\n  - name: local\n    type: sqlite\n"
                         "  - name: out\n    type: kafka\n    brokers: " +
                         kafka.bootstrap() +
                         "\n    readings_topic: out.readings\n    windows_topic: ''\n"
                         "    late_topic: ''\n    transactional_id: tributary-e2e\n");
  const std::vector<std::string> run_args = {
      "run",    dir.File("kafka.yaml"), "--data-dir", dir.File("data"), "--duration", "10s",
      "--quiet"};
  testing::CommandResult run = testing::RunTributary(run_args);
  ASSERT_EQ(run.exit_code, 0) << run.err;

  // Every record of the first part is stored once, and the group's offsets point past it.
  const std::string db = dir.File("data/tributary.gpkg");
  const std::string distinct_records =
      "SELECT count(DISTINCT json_extract(provenance, '$.partition') || '/' || "
      "json_extract(provenance, '$.offset')) FROM readings";
  EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM readings"), kFirst);
  EXPECT_EQ(QueryInt(db, distinct_records), kFirst);
  EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM quarantine"), kBad);
  std::map<int32_t, int64_t> committed = kafka.Committed("e2e", "sensors", kPartitions);
  int64_t committed_total = 0;
  for (const auto& [p, off] : committed) committed_total += std::max<int64_t>(off, 0);
  EXPECT_EQ(committed_total, kFirst + kBad);

  // Mid-stream: more records arrive while nothing runs; the second run reads only those.
  std::vector<std::pair<std::string, std::string>> second;
  for (int i = kFirst; i < kFirst + kSecond; ++i)
    second.emplace_back("dev-" + std::to_string(i % 20), Reading(i, base_ms));
  ASSERT_EQ(kafka.Produce("sensors", second), "");
  std::vector<std::string> second_args = run_args;
  second_args[5] = "20s";  // rejoining the group takes the coordinator a few seconds
  second_args.pop_back();
  run = testing::RunTributary(second_args);
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(QueryInt(db, "SELECT count(*) FROM readings"), kFirst + kSecond) << run.err;
  EXPECT_EQ(QueryInt(db, distinct_records), kFirst + kSecond);
  EXPECT_EQ(QueryInt(db,
                     "SELECT count(DISTINCT json_extract(provenance, '$.device_id') || '/' "
                     "|| event_time) FROM readings"),
            kFirst + kSecond);
  committed = kafka.Committed("e2e", "sensors", kPartitions);
  committed_total = 0;
  for (const auto& [p, off] : committed) committed_total += std::max<int64_t>(off, 0);
  EXPECT_EQ(committed_total, kFirst + kSecond + kBad);
  Result<LedgerSnapshot> ledger = ParseLedgerJson(testing::ReadFile(dir.File("data/ledger.json")));
  ASSERT_TRUE(ledger.ok()) << ledger.status().ToString();
  EXPECT_TRUE(ledger->balanced());

  // The kafka sink produced every reading (committed transactions), keyed by its H3
  // cell at resolution 5, and the broken payloads to the dead-letter topic.
  std::vector<KafkaMockCluster::Message> out =
      kafka.ReadAll("out.readings", kFirst + kSecond, 20000);
  ASSERT_EQ(out.size(), static_cast<size_t>(kFirst + kSecond));
  std::set<std::string> keys;
  for (const auto& m : out) keys.insert(m.key);
  std::set<std::string> expected_keys;
  for (int k = 0; k < 4; ++k) {
    expected_keys.insert(h3::CellToString(h3::LatLngToCell(48.0 + k * 1.5, 11.0, 5)));
  }
  EXPECT_EQ(keys, expected_keys);
  EXPECT_NE(out.front().value.find("\"metric\":\"pm25\""), std::string::npos) << out.front().value;
  std::vector<KafkaMockCluster::Message> dead = kafka.ReadAll("sensor.quarantine", kBad, 10000);
  ASSERT_EQ(dead.size(), static_cast<size_t>(kBad));
  EXPECT_NE(dead.front().value.find("\"raw\":\"{\\\"device_id\\\": \\\"broken\\\"\""),
            std::string::npos)
      << dead.front().value;
}

}  // namespace
}  // namespace tributary
