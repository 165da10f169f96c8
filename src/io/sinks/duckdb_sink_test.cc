#include "io/sinks/duckdb_sink.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/registry.h"
#include "sink_test_records.h"
#include "test_util.h"

#ifdef TRIBUTARY_HAVE_DUCKDB
#include "duck_test_reader.h"
#endif

namespace tributary {
namespace {

const TimeUs kT0 = testing::kSinkT0;
using testing::BareReading;
using testing::FullReading;

SinkEntry DuckEntry(const std::string& yaml) {
  SinkEntry e;
  e.name = "store";
  e.type = "duckdb";
  e.options = OptionReader(YAML::Load(yaml), "test.yaml", "sinks[0]", {&DuckDbSinkSpec()});
  return e;
}

TEST(DuckDbSinkOptionsTest, ReadsDefaultsAndValidates) {
  Result<DuckDbSinkOptions> o = ReadDuckDbSinkOptions(DuckEntry("{type: duckdb}"));
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->name, "store");
  EXPECT_EQ(o->path, "");
  EXPECT_TRUE(o->readings && o->windows && o->quarantine && o->late);
  o = ReadDuckDbSinkOptions(DuckEntry("{type: duckdb, path: /x/y.duckdb, tables: [windows]}"));
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->path, "/x/y.duckdb");
  EXPECT_FALSE(o->readings);
  EXPECT_TRUE(o->windows);
  o = ReadDuckDbSinkOptions(DuckEntry("{type: duckdb, tables: [readings, bogus]}"));
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("tables"), std::string::npos) << o.status().message();
}

#ifdef TRIBUTARY_HAVE_DUCKDB

class DuckDbSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_.ledger = &ledger_;
    ctx_.data_dir = dir_.path();
  }
  std::unique_ptr<Sink> Make(const std::string& yaml = "{type: duckdb}") {
    Result<std::unique_ptr<Sink>> s = Registry::Get().MakeSink(DuckEntry(yaml));
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }
  uint64_t Committed(const std::string& table) const {
    LedgerSnapshot s = ledger_.Snapshot();
    auto it = s.sink_committed.find("store/" + table);
    return it == s.sink_committed.end() ? 0 : it->second;
  }
  std::string File() const { return dir_.File("tributary.duckdb"); }

  testing::TempDir dir_;
  Ledger ledger_;
  RunContext ctx_;
};

Batch MixedBatch() {
  Batch b;
  b.readings.push_back(FullReading());
  b.readings.push_back(BareReading("node-2", "temperature", kT0, -3.25));  // no position
  b.windows.push_back(testing::FullWindowResult());
  QuarantineRecord q;
  q.reason = Intern("malformed_json");
  q.detail = "unexpected end of input";
  q.raw = std::string("{\"a\":\xff\x00", 7);  // invalid UTF-8 and a NUL byte
  q.arrival_time = kT0 + 5 * kMicrosPerSecond;
  q.prov.source = Intern("mqtt-city");
  q.prov.topic = Intern("city/air/x");
  q.prov.offset = 7;
  b.quarantine.push_back(q);
  LateRecord l;
  l.reading = FullReading();
  l.reading.event_time = kT0 - kMicrosPerHour;
  l.window = Intern("device_1m");
  l.lateness = 90 * kMicrosPerSecond;
  l.watermark = kT0 - 10 * kMicrosPerMinute;
  l.reading.qc_score = 1.25f;  // a QC check flagged it before it missed its window
  b.late.push_back(l);
  return b;
}

TEST_F(DuckDbSinkTest, StoresEveryTableInTheDataDirAndReadsBack) {
  auto sink = Make();
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b = MixedBatch();
  AlertEvent a;
  a.rule = Intern("pm25_high");
  a.kind = Intern("reading_threshold");
  a.key = Intern("node-17");
  a.metric = Intern("pm25");
  a.severity = Intern("warning");
  a.fired_at = kT0;
  a.event_time = kT0;
  a.value = 41.5;
  a.level = 35;
  a.message = "pm25 at node-17 is 41.5 > 35 (it's high)";
  b.alerts.push_back(a);
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  EXPECT_EQ(Committed("readings"), 2u);
  EXPECT_EQ(Committed("windows"), 1u);
  EXPECT_EQ(Committed("quarantine"), 1u);
  EXPECT_EQ(Committed("late"), 1u);
  // The alert resolves in a later commit: the same row is updated.
  Batch later;
  a.state = AlertState::kResolved;
  a.event_time = kT0 + 10 * kMicrosPerMinute;
  a.value = 20;
  later.alerts.push_back(a);
  ASSERT_TRUE(sink->Write(later).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();
  ASSERT_TRUE(std::filesystem::exists(File()));

  testing::DuckTestReader db(File());
  EXPECT_EQ(db.Rows("SELECT device_id, metric, value, unit, event_time_us, epoch_us(event_time), "
                    "arrival_time_us, epoch_us(arrival_time), lat, lon, zone_id, h3, qc_flags, "
                    "hex(geom) FROM readings ORDER BY event_time_us"),
            (std::vector<std::string>{
                "node-2|temperature|-3.25|NULL|1714564800000000|1714564800000000|"
                "1714564801000000|1714564801000000|NULL|NULL|NULL|NULL||NULL",
                "node-17|pm25|12.5|NULL|1714564800123456|1714564800123456|1714564802000000|"
                "1714564802000000|48.2082|16.3738|zone-a|85283473fffffff|CALIBRATED|CRS_"
                "TRANSFORMED|" +
                    testing::WkbHex(16.3738, 48.2082),
            }));
  // Provenance is the same JSON the SQLite store keeps.
  Reading full = FullReading();
  EXPECT_EQ(db.One("SELECT provenance FROM readings WHERE device_id = 'node-17'"),
            ProvenanceToJson(full.prov, full.device, full.flags));
  EXPECT_EQ(db.One("SELECT typeof(event_time), typeof(geom) FROM readings LIMIT 1"),
            "TIMESTAMP WITH TIME ZONE|BLOB");
  EXPECT_EQ(db.Rows("SELECT \"window\", group_by, group_key, metric, window_start_us, "
                    "window_end_us, epoch_us(window_start), epoch_us(window_end), sample_count, "
                    "mean, min, max, std, median, p95, trimmed_mean, first, last, centroid_lat, "
                    "centroid_lon, nowcast, aqi, distinct_sensors, late_arrival_count, "
                    "aggregation_method, quality_flags, revision, emitted_at_us, "
                    "epoch_us(emitted_at), quantiles, hex(geom), interpolated_sample_fraction, "
                    "exceedance_count FROM latest_windows"),
            (std::vector<std::string>{
                "device_1m|device|node-17|pm25|1714564800000000|1714564860000000|"
                "1714564800000000|1714564860000000|6|11.0|8.0|15.5|2.25|10.5|15.0|NULL|9.0|"
                "12.0|48.2|16.37|NULL|NULL|1|2|mean|SPARSE|1|1714564860500000|"
                "1714564860500000|{\"0.9\":14.5}|" +
                testing::WkbHex(16.37, 48.2) + "|0.5|4"}));
  EXPECT_EQ(db.Rows("SELECT reason, detail, hex(raw), device_id, metric, arrival_time_us, "
                    "epoch_us(arrival_time), source, topic, \"partition\", \"offset\" "
                    "FROM quarantine"),
            (std::vector<std::string>{"malformed_json|unexpected end of input|7B2261223AFF00|"
                                      "NULL|NULL|1714564805000000|1714564805000000|mqtt-city|"
                                      "city/air/x|NULL|7"}));
  EXPECT_EQ(
      db.Rows(
          "SELECT \"window\", device_id, metric, value, event_time_us, lateness_us, "
          "lateness_s, watermark_us, epoch_us(watermark), zone_id, hex(geom), qc_score FROM late"),
      (std::vector<std::string>{"device_1m|node-17|pm25|12.5|1714561200000000|90000000|"
                                "90.0|1714564200000000|1714564200000000|zone-a|" +
                                testing::WkbHex(16.3738, 48.2082) + "|1.25"}));
  EXPECT_EQ(db.Rows("SELECT rule, kind, \"key\", metric, severity, state, fired_at_us, "
                    "resolved_at_us, epoch_us(resolved_at), first_value, last_value, level, "
                    "notifications, message FROM alerts"),
            (std::vector<std::string>{"pm25_high|reading_threshold|node-17|pm25|warning|"
                                      "resolved|1714564800000000|1714565400000000|"
                                      "1714565400000000|41.5|20.0|35.0|1|pm25 at node-17 is "
                                      "41.5 > 35 (it's high)"}));
}

TEST_F(DuckDbSinkTest, ReplayedRowsAreStoredAndCountedOnce) {
  {
    auto sink = Make();
    ASSERT_NE(sink, nullptr);
    ASSERT_TRUE(sink->Open(ctx_).ok());
    Batch b = MixedBatch();
    // The same reading twice in one commit, and again in the next commit.
    b.readings.push_back(FullReading());
    ASSERT_TRUE(sink->Write(b).ok());
    ASSERT_TRUE(sink->Commit().ok());
    ASSERT_TRUE(sink->Write(MixedBatch()).ok());
    ASSERT_TRUE(sink->Commit().ok());
    sink->Close();
  }
  // A new run over the same file replays the batch once more.
  {
    auto sink = Make();
    ASSERT_NE(sink, nullptr);
    ASSERT_TRUE(sink->Open(ctx_).ok());
    ASSERT_TRUE(sink->Write(MixedBatch()).ok());
    ASSERT_TRUE(sink->Commit().ok());
    sink->Close();
  }
  EXPECT_EQ(Committed("readings"), 2u);
  EXPECT_EQ(Committed("windows"), 1u);
  EXPECT_EQ(Committed("late"), 1u);
  EXPECT_EQ(Committed("quarantine"), 3u) << "quarantine rows have no key";
  testing::DuckTestReader db(File());
  EXPECT_EQ(db.One("SELECT count(*) FROM readings"), "2");
  EXPECT_EQ(db.One("SELECT count(*) FROM windows"), "1");
  EXPECT_EQ(db.One("SELECT count(*) FROM late"), "1");
  EXPECT_EQ(db.One("SELECT count(*) FROM quarantine"), "3");
}

TEST_F(DuckDbSinkTest, CloseWithoutCommitStoresNothingAndOnlyChosenTablesGetRows) {
  {
    auto sink = Make("{type: duckdb, tables: [windows]}");
    ASSERT_NE(sink, nullptr);
    ASSERT_TRUE(sink->Open(ctx_).ok());
    ASSERT_TRUE(sink->Write(MixedBatch()).ok());
    ASSERT_TRUE(sink->Commit().ok());
    Batch more;
    WindowResult w = testing::FullWindowResult();
    w.revision = 2;
    more.windows.push_back(w);
    ASSERT_TRUE(sink->Write(more).ok());
    sink->Close();  // revision 2 was never committed
  }
  EXPECT_EQ(Committed("windows"), 1u);
  EXPECT_EQ(Committed("readings"), 0u);
  testing::DuckTestReader db(File());
  EXPECT_EQ(db.One("SELECT count(*) FROM readings"), "0");
  EXPECT_EQ(db.One("SELECT string_agg(revision::VARCHAR, ',') FROM windows"), "1");
}

TEST_F(DuckDbSinkTest, AnUnusableFileGivesAnErrorNamingIt) {
  std::string blocker = dir_.File("not-a-folder");
  testing::WriteFile(blocker, "x");
  auto sink = Make("{type: duckdb, path: '" + blocker + "/store.duckdb'}");
  ASSERT_NE(sink, nullptr);
  Status st = sink->Open(ctx_);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(blocker), std::string::npos) << st.message();
}

#endif  // TRIBUTARY_HAVE_DUCKDB

}  // namespace
}  // namespace tributary
