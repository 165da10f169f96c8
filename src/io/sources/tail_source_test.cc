// The `tail` source on real files: growth (complete lines only), rotation, truncation,
// the position saved only on commit and resumed after a restart, MQTT publishing to a
// real Mosquitto, and a run of the binary whose store holds each row once.
#include "io/sources/tail_source.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/ledger.h"
#include "core/time.h"
#include "integration/mosquitto.h"
#include "io/sources/mqtt_source.h"
#include "test_util.h"

namespace tributary {
namespace {

void Append(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::app | std::ios::binary);
  f << text;
}

std::string Row(int i) {
  return "city-" + std::to_string(i % 2) + "," + std::to_string(1714564800 + 60 * i) +
         ",52.5,13.4," + std::to_string(10 + i) + "\n";
}
const char* kHeader = "device_id,sensor_ts,lat,lon,temperature\n";

std::string RowJson(int i) {
  return "{\"device_id\":\"city-" + std::to_string(i % 2) +
         "\",\"sensor_ts\":" + std::to_string(1714564800 + 60 * i) +
         ",\"lat\":52.5,\"lon\":13.4,\"temperature\":" + std::to_string(10 + i) + "}";
}

class TailSourceTest : public ::testing::Test {
 protected:
  std::unique_ptr<TailSource> Make() {
    TailSourceOptions o;
    o.path = path_;
    o.format = FileFormat::kCsv;
    o.poll_interval = 10'000;
    o.source_name = "weather";
    auto s = std::make_unique<TailSource>(o);
    ctx_.data_dir = dir_.path();
    Status st = s->Open(ctx_);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return s;
  }
  // Poll until nothing more comes (a few empty polls in a row).
  std::vector<std::string> Drain(TailSource& s, uint64_t* checkpoint = nullptr) {
    std::vector<std::string> rows;
    int empty = 0;
    while (empty < 3) {
      RawBatch b;
      EXPECT_TRUE(s.Poll(b, 100, 10'000).ok());
      if (b.empty()) {
        ++empty;
        continue;
      }
      empty = 0;
      if (checkpoint != nullptr) *checkpoint = b.checkpoint;
      for (const RawRecord& r : b.records) rows.emplace_back(b.Payload(r));
    }
    return rows;
  }

  testing::TempDir dir_;
  std::string path_ = dir_.File("readings.csv");
  RunContext ctx_;
};

TEST_F(TailSourceTest, FollowsGrowthTakingCompleteLinesOnly) {
  testing::WriteFile(path_, std::string(kHeader) + Row(0) + Row(1));
  auto s = Make();
  EXPECT_EQ(Drain(*s), (std::vector<std::string>{RowJson(0), RowJson(1)}));
  // Half a row is not a row yet.
  std::string row2 = Row(2);
  Append(path_, row2.substr(0, 10));
  EXPECT_TRUE(Drain(*s).empty());
  Append(path_, row2.substr(10) + "\n" + Row(3));  // a blank line between
  EXPECT_EQ(Drain(*s), (std::vector<std::string>{RowJson(2), RowJson(3)}));
  // A row with the wrong number of fields becomes an error record, not a silent skip.
  Append(path_, "only,three,fields\n");
  std::vector<std::string> bad = Drain(*s);
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_NE(bad[0].find("\"_csv_error\":\"expected 5 fields, got 3\""), std::string::npos);
}

TEST_F(TailSourceTest, SurvivesRotationAndTruncation) {
  testing::WriteFile(path_, std::string(kHeader) + Row(0));
  auto s = Make();
  EXPECT_EQ(Drain(*s).size(), 1u);
  // Rotation: the writer still appends to the renamed file before it reopens the path.
  std::filesystem::rename(path_, path_ + ".1");
  Append(path_ + ".1", Row(1));
  EXPECT_EQ(Drain(*s), (std::vector<std::string>{RowJson(1)}));  // path missing: old file read
  testing::WriteFile(path_, std::string(kHeader) + Row(2) + Row(3));
  EXPECT_EQ(Drain(*s), (std::vector<std::string>{RowJson(2), RowJson(3)}));
  EXPECT_EQ(s->rotations(), 1u);
  // Truncation in place (same inode), then new rows with the header again.
  ASSERT_EQ(::truncate(path_.c_str(), 0), 0);
  EXPECT_TRUE(Drain(*s).empty());
  Append(path_, std::string(kHeader) + Row(4));
  EXPECT_EQ(Drain(*s), (std::vector<std::string>{RowJson(4)}));
  EXPECT_EQ(s->truncations(), 1u);
}

TEST_F(TailSourceTest, SavesThePositionOnlyOnCommitAndResumesThere) {
  testing::WriteFile(path_, std::string(kHeader) + Row(0) + Row(1));
  uint64_t first = 0;
  {
    auto s = Make();
    EXPECT_EQ(Drain(*s, &first).size(), 2u);
    ASSERT_NE(first, 0u);
    s->OnCommitted(first);
    ASSERT_TRUE(std::filesystem::exists(s->state_file()));
    EXPECT_EQ(s->state_file(), dir_.File("tail/weather.json"));
    Append(path_, Row(2));
    uint64_t second = 0;
    EXPECT_EQ(Drain(*s, &second).size(), 1u);
    EXPECT_GT(second, first);
    // Not committed: a restart must read row 2 again.
    s->Close();
  }
  Append(path_, Row(3));
  {
    auto s = Make();  // header re-read from the file, rows resume after row 1
    uint64_t cp = 0;
    EXPECT_EQ(Drain(*s, &cp), (std::vector<std::string>{RowJson(2), RowJson(3)}));
    s->OnCommitted(cp);
  }
  {
    auto s = Make();
    EXPECT_TRUE(Drain(*s).empty());
    Append(path_, Row(4));
    EXPECT_EQ(Drain(*s), (std::vector<std::string>{RowJson(4)}));
  }
  // Rotated while stopped: the new file is read from its beginning.
  std::filesystem::rename(path_, path_ + ".1");
  testing::WriteFile(path_, std::string(kHeader) + Row(5));
  {
    auto s = Make();
    EXPECT_EQ(Drain(*s), (std::vector<std::string>{RowJson(5)}));
  }
}

TEST(TailSourceOptionsTest, ParsesAndRejects) {
  auto parse = [](const std::string& yaml) {
    OptionReader r(YAML::Load(yaml), "t.yaml", "sources[0]", {&TailSourceSectionSpec()});
    return ParseTailSourceOptions(r, "w");
  };
  Result<TailSourceOptions> o = parse(
      "path: a.tsv\npublish: {broker: 'mqtt://h:1', client_id: c, topic: weather/readings, qos: "
      "1}\n");
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->delimiter, '\t');
  EXPECT_EQ(o->publish.topic, "weather/readings");
  EXPECT_EQ(o->publish.qos, 1);
  EXPECT_NE(parse("path: a.csv\npublish: {broker: 'mqtt://h:1', client_id: c, topic: a/#}\n")
                .status()
                .ToString()
                .find("publish.topic"),
            std::string::npos);
  EXPECT_NE(parse("path: a.csv\npublish: {topic: a}\n").status().ToString().find("broker"),
            std::string::npos);
  EXPECT_NE(parse("path: a.csv\npublish: {broker: 'mqtt://h', client_id: c, topic: a, x: 1}\n")
                .status()
                .ToString()
                .find("x"),
            std::string::npos);
}

TEST_F(TailSourceTest, PublishesEachRowToMqtt) {
  if (testing::MosquittoBroker::BinaryPath().empty()) GTEST_SKIP() << "mosquitto is not installed";
  testing::MosquittoBroker broker;
  ASSERT_EQ(broker.Start(), "");
  MqttSourceOptions sub;
  sub.connect.broker = broker.url();
  sub.connect.client_id = "tail-sub";
  sub.connect.clean_session = true;
  sub.topics = {"weather/readings"};
  sub.qos = 1;
  MqttSource subscriber(sub);
  RunContext ctx;
  ASSERT_TRUE(subscriber.Open(ctx).ok());

  testing::WriteFile(path_, std::string(kHeader) + Row(0) + Row(1));
  TailSourceOptions o;
  o.path = path_;
  o.poll_interval = 10'000;
  o.source_name = "bridge";
  o.publish.connect.broker = broker.url();
  o.publish.connect.client_id = "tail-pub";
  o.publish.topic = "weather/readings";
  o.publish.qos = 1;
  TailSource tail(o);
  ctx_.data_dir = dir_.path();
  ASSERT_TRUE(tail.Open(ctx_).ok());
  EXPECT_EQ(Drain(tail).size(), 2u);
  Append(path_, Row(2));
  EXPECT_EQ(Drain(tail).size(), 1u);
  EXPECT_EQ(tail.published(), 3u);
  EXPECT_EQ(tail.publish_failures(), 0u);
  std::vector<std::string> got;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (got.size() < 3 && std::chrono::steady_clock::now() < deadline) {
    RawBatch b;
    ASSERT_TRUE(subscriber.Poll(b, 10, 100'000).ok());
    for (const RawRecord& r : b.records) got.emplace_back(b.Payload(r));
  }
  EXPECT_EQ(got, (std::vector<std::string>{RowJson(0), RowJson(1), RowJson(2)}));
  tail.Close();
  subscriber.Close();
}

// The binary follows a file and commits the position with the sinks; a second run resumes
// there (rows appended while it was down are read once) and follows a rotation while it
// runs; a third run finds nothing new.
TEST(TailRunTest, BinaryFollowsAFileAcrossRestartsStoringEachRowOnce) {
  testing::TempDir dir;
  const std::string csv = dir.File("readings.csv");
  std::string text = kHeader;
  for (int i = 0; i < 10; ++i) text += Row(i);
  testing::WriteFile(csv, text);
  testing::WriteFile(dir.File("tail.yaml"),
                     "pipeline:\n  name: tail-e2e\n  commit_interval: 100ms\n"
                     "sources:\n  - name: staging\n    type: tail\n    path: " +
                         csv +
                         "\n    poll_interval: 20ms\n"
                         "sinks:\n  - name: local\n    type: sqlite\n");
  auto args = [&](const char* duration) {
    return std::vector<std::string>{
        "run",    dir.File("tail.yaml"), "--data-dir", dir.File("data"), "--duration", duration,
        "--quiet"};
  };
  testing::CommandResult run = testing::RunTributary(args("2s"));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const std::string db = dir.File("data/tributary.gpkg");
  EXPECT_EQ(testing::QueryInt(db, "SELECT count(*) FROM readings"), 10);
  std::string state = testing::ReadFile(dir.File("data/tail/staging.json"));
  EXPECT_NE(state.find("\"offset\":" + std::to_string(text.size())), std::string::npos) << state;

  // Appended while stopped; then, during the run, rotated with new rows in the new file.
  std::string more;
  for (int i = 10; i < 15; ++i) more += Row(i);
  Append(csv, more);
  std::thread runner([&] { run = testing::RunTributary(args("5s")); });
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  std::filesystem::rename(csv, csv + ".1");
  Append(csv + ".1", Row(15));  // the writer's last row into the old file
  std::string fresh = kHeader;
  for (int i = 16; i < 19; ++i) fresh += Row(i);
  testing::WriteFile(csv, fresh);
  runner.join();
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(testing::QueryInt(db, "SELECT count(*) FROM readings"), 19);
  EXPECT_EQ(testing::QueryInt(
                db, "SELECT count(DISTINCT event_time_us || '/' || device_id) FROM readings"),
            19);
  Result<LedgerSnapshot> ledger = ParseLedgerJson(testing::ReadFile(dir.File("data/ledger.json")));
  ASSERT_TRUE(ledger.ok());
  EXPECT_TRUE(ledger->balanced());
  EXPECT_EQ(ledger->input, 9u);

  run = testing::RunTributary(args("1s"));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(testing::QueryInt(db, "SELECT count(*) FROM readings"), 19);
}

}  // namespace
}  // namespace tributary
