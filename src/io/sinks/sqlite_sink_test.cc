#include "io/sinks/sqlite_sink.h"

#include <gtest/gtest.h>
#include <simdjson.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>

#include "core/registry.h"
#include "io/sinks/sqlite_util.h"
#include "sink_test_records.h"
#include "test_util.h"

namespace tributary {
namespace {

const TimeUs kT0 = testing::kSinkT0;
using testing::FullReading;

Reading BareReading(const char* device, TimeUs t, double value) {
  return testing::BareReading(device, "temperature", t, value);
}

WindowResult FullWindow() {
  WindowResult w;
  w.window = Intern("device_1m");
  w.group_by = Intern("device");
  w.group = Intern("node-17");
  w.metric = Intern("pm25");
  w.start = kT0;
  w.end = kT0 + kMicrosPerMinute;
  w.count = 6;
  w.mean = 11.0;
  w.min = 8.0;
  w.max = 15.5;
  w.std = 2.25;
  w.median = 10.5;
  w.p95 = 15.0;
  w.trimmed_mean = 10.75;
  w.first = 9.0;
  w.last = 12.0;
  w.centroid_lat = 48.2;
  w.centroid_lon = 16.37;
  w.distinct_sensors = 1;
  w.late_count = 2;
  w.quantiles = {{0.9, 14.5}, {0.99, 15.4}};
  w.aggregation_method = Intern("mean");
  w.flags =
      static_cast<uint32_t>(WindowFlag::kSparse) | static_cast<uint32_t>(WindowFlag::kLowCoverage);
  w.revision = 1;
  w.emitted_at = kT0 + kMicrosPerMinute + 500000;
  return w;
}

class SqliteSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_.ledger = &ledger_;
    ctx_.data_dir = dir_.path();
  }

  SqliteSinkOptions Options() const {
    SqliteSinkOptions o;
    o.name = "local";
    o.path = dir_.File("store.gpkg");
    return o;
  }

  // A read-only connection to the store, as a user's sqlite3 CLI would open it.
  std::unique_ptr<SqliteDb> Reader(const std::string& path = {}) {
    auto db = std::make_unique<SqliteDb>();
    Status st = db->Open(path.empty() ? dir_.File("store.gpkg") : path, /*read_only=*/true);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return db;
  }

  int64_t Count(const std::string& table, const std::string& path = {}) {
    auto db = Reader(path);
    Result<int64_t> n = db->QueryInt("SELECT count(*) FROM " + table);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    return n.value_or(-1);
  }

  uint64_t Committed(const std::string& key) const {
    LedgerSnapshot s = ledger_.Snapshot();
    auto it = s.sink_committed.find(key);
    return it == s.sink_committed.end() ? 0 : it->second;
  }

  testing::TempDir dir_;
  Ledger ledger_;
  RunContext ctx_;
};

TEST_F(SqliteSinkTest, RoundTripsReadingsWithEveryField) {
  auto sink = MakeSqliteSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  b.readings.push_back(FullReading());
  Reading bare = BareReading("node-2", kT0, -3.25);  // NaN position, no zone, no h3
  b.readings.push_back(bare);
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();

  auto db = Reader();
  auto stmt = db->Prepare(
      "SELECT device_id, metric, value, unit, event_time_us, event_time, arrival_time_us, "
      "arrival_time, lat, lon, zone_id, h3, qc_flags, provenance FROM readings ORDER BY id");
  ASSERT_TRUE(stmt.ok()) << stmt.status().ToString();
  ASSERT_TRUE(*stmt->Step());
  EXPECT_EQ(stmt->ColumnText(0), "node-17");
  EXPECT_EQ(stmt->ColumnText(1), "pm25");
  EXPECT_DOUBLE_EQ(stmt->ColumnDouble(2), 12.5);
  EXPECT_TRUE(stmt->ColumnIsNull(3));
  EXPECT_EQ(stmt->ColumnInt(4), kT0 + 123456);
  EXPECT_EQ(stmt->ColumnText(5), "2024-05-01T12:00:00.123456Z");
  EXPECT_EQ(stmt->ColumnInt(6), kT0 + 2 * kMicrosPerSecond);
  EXPECT_EQ(stmt->ColumnText(7), "2024-05-01T12:00:02Z");
  EXPECT_DOUBLE_EQ(stmt->ColumnDouble(8), 48.2082);
  EXPECT_DOUBLE_EQ(stmt->ColumnDouble(9), 16.3738);
  EXPECT_EQ(stmt->ColumnText(10), "zone-a");
  EXPECT_EQ(stmt->ColumnText(11), "85283473fffffff");
  EXPECT_EQ(stmt->ColumnText(12), "CALIBRATED|CRS_TRANSFORMED");
  std::string prov(stmt->ColumnText(13));
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(prov).get(doc), simdjson::SUCCESS) << prov;
  EXPECT_EQ(std::string_view(doc["device_id"]), "node-17");
  EXPECT_EQ(std::string_view(doc["source"]), "mqtt-city");
  EXPECT_EQ(std::string_view(doc["topic"]), "city/air/node-17");
  EXPECT_EQ(int64_t(doc["partition"]), 3);
  EXPECT_EQ(int64_t(doc["offset"]), 991);
  EXPECT_EQ(std::string_view(doc["firmware_version"]), "2.4.1");
  EXPECT_EQ(std::string_view(doc["crs_source"]), "EPSG:32633");
  EXPECT_DOUBLE_EQ(double(doc["original_x"]), 601234.5);
  EXPECT_EQ(simdjson::dom::array(doc["qc_flags"]).size(), 2u);

  ASSERT_TRUE(*stmt->Step());
  EXPECT_EQ(stmt->ColumnText(0), "node-2");
  EXPECT_DOUBLE_EQ(stmt->ColumnDouble(2), -3.25);
  EXPECT_EQ(stmt->ColumnText(5), "2024-05-01T12:00:00Z");
  EXPECT_TRUE(stmt->ColumnIsNull(8));   // NaN lat → NULL
  EXPECT_TRUE(stmt->ColumnIsNull(9));   // NaN lon → NULL
  EXPECT_TRUE(stmt->ColumnIsNull(10));  // no zone
  EXPECT_TRUE(stmt->ColumnIsNull(11));  // h3 == 0
  EXPECT_FALSE(stmt->ColumnIsNull(12));
  EXPECT_EQ(stmt->ColumnText(12), "");  // no flags: '' so NOT LIKE filters keep the row
  ASSERT_EQ(parser.parse(std::string(stmt->ColumnText(13))).get(doc), simdjson::SUCCESS);
  EXPECT_FALSE(*stmt->Step());
}

TEST_F(SqliteSinkTest, TimeTextMatchesFormatTimeAcrossDaysAndEras) {
  auto sink = MakeSqliteSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  const std::vector<TimeUs> times = {
      0,
      1,
      -1,                  // 1969-12-31T23:59:59.999999Z
      -kMicrosPerDay - 5,  // before the epoch, across a day boundary
      kT0,
      kT0 + 999999,
      kT0 + kMicrosPerDay - 1,  // last µs of a day
      kT0 + kMicrosPerDay,      // first of the next: cached date must change
      kT0 + 10,                 // back to the earlier day
      DaysFromCivil(2024, 2, 29) * kMicrosPerDay + 43 * kMicrosPerSecond + 70,
      DaysFromCivil(9999, 12, 31) * kMicrosPerDay + kMicrosPerDay - 1,
      DaysFromCivil(12000, 6, 1) * kMicrosPerDay + 7,  // five-digit year: slow path
      DaysFromCivil(-50, 1, 1) * kMicrosPerDay,        // negative year: slow path
  };
  Batch b;
  for (size_t i = 0; i < times.size(); ++i) {
    b.readings.push_back(BareReading("clock", times[i], static_cast<double>(i)));
  }
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();

  auto db = Reader();
  auto stmt = db->Prepare(
      "SELECT event_time_us, event_time, arrival_time_us, arrival_time FROM readings "
      "ORDER BY value");
  ASSERT_TRUE(stmt.ok());
  size_t n = 0;
  while (*stmt->Step()) {
    EXPECT_EQ(stmt->ColumnInt(0), times[n]);
    EXPECT_EQ(stmt->ColumnText(1), FormatTime(times[n]));
    EXPECT_EQ(stmt->ColumnText(3), FormatTime(stmt->ColumnInt(2)));
    ++n;
  }
  EXPECT_EQ(n, times.size());
}

TEST_F(SqliteSinkTest, RoundTripsWindowsWithNanAsNull) {
  auto sink = MakeSqliteSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  b.windows.push_back(FullWindow());
  WindowResult sparse;  // only count configured: every aggregate NaN
  sparse.window = Intern("zone_5m");
  sparse.group_by = Intern("zone");
  sparse.group = Intern("zone-a");
  sparse.metric = Intern("no2");
  sparse.start = kT0;
  sparse.end = kT0 + 5 * kMicrosPerMinute;
  sparse.count = 1;
  sparse.emitted_at = kT0 + 6 * kMicrosPerMinute;
  b.windows.push_back(sparse);
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();

  auto db = Reader();
  auto stmt = db->Prepare(
      "SELECT window, group_by, group_key, metric, window_start_us, window_end_us, "
      "window_start, window_end, sample_count, mean, min, max, std, median, p95, trimmed_mean, "
      "first, last, centroid_lat, centroid_lon, distinct_sensors, late_arrival_count, "
      "aggregation_method, quality_flags, revision, emitted_at_us, emitted_at, quantiles "
      "FROM windows ORDER BY id");
  ASSERT_TRUE(stmt.ok()) << stmt.status().ToString();
  ASSERT_TRUE(*stmt->Step());
  EXPECT_EQ(stmt->ColumnText(0), "device_1m");
  EXPECT_EQ(stmt->ColumnText(1), "device");
  EXPECT_EQ(stmt->ColumnText(2), "node-17");
  EXPECT_EQ(stmt->ColumnText(3), "pm25");
  EXPECT_EQ(stmt->ColumnInt(4), kT0);
  EXPECT_EQ(stmt->ColumnInt(5), kT0 + kMicrosPerMinute);
  EXPECT_EQ(stmt->ColumnText(6), "2024-05-01T12:00:00Z");
  EXPECT_EQ(stmt->ColumnText(7), "2024-05-01T12:01:00Z");
  EXPECT_EQ(stmt->ColumnInt(8), 6);
  const double expected[] = {11.0, 8.0, 15.5, 2.25, 10.5, 15.0, 10.75, 9.0, 12.0, 48.2, 16.37};
  for (int i = 0; i < 11; ++i) EXPECT_DOUBLE_EQ(stmt->ColumnDouble(9 + i), expected[i]) << i;
  EXPECT_EQ(stmt->ColumnInt(20), 1);
  EXPECT_EQ(stmt->ColumnInt(21), 2);
  EXPECT_EQ(stmt->ColumnText(22), "mean");
  EXPECT_EQ(stmt->ColumnText(23), "SPARSE|LOW_COVERAGE");
  EXPECT_EQ(stmt->ColumnInt(24), 1);
  EXPECT_EQ(stmt->ColumnInt(25), kT0 + kMicrosPerMinute + 500000);
  EXPECT_EQ(stmt->ColumnText(26), "2024-05-01T12:01:00.500000Z");
  std::string quantiles(stmt->ColumnText(27));
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(quantiles).get(doc), simdjson::SUCCESS) << quantiles;
  EXPECT_DOUBLE_EQ(double(doc["0.9"]), 14.5);
  EXPECT_DOUBLE_EQ(double(doc["0.99"]), 15.4);

  ASSERT_TRUE(*stmt->Step());
  EXPECT_EQ(stmt->ColumnText(0), "zone_5m");
  EXPECT_EQ(stmt->ColumnInt(8), 1);
  for (int col = 9; col <= 19; ++col) EXPECT_TRUE(stmt->ColumnIsNull(col)) << col;
  EXPECT_TRUE(stmt->ColumnIsNull(22));  // no aggregation method
  EXPECT_EQ(stmt->ColumnText(23), "");
  EXPECT_EQ(stmt->ColumnInt(24), 0);
  EXPECT_TRUE(stmt->ColumnIsNull(27));  // no extra quantiles
  EXPECT_FALSE(*stmt->Step());
}

TEST_F(SqliteSinkTest, RegulatoryColumnsRoundTrip) {
  auto sink = MakeSqliteSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  WindowResult hourly = FullWindow();
  hourly.nowcast = 35.5;
  hourly.aqi = 101;
  hourly.interpolated_sample_fraction = 0.25;
  hourly.exceedance_count = 3;
  b.windows.push_back(hourly);
  WindowResult plain = FullWindow();
  plain.start += kMicrosPerMinute;
  plain.end += kMicrosPerMinute;
  b.windows.push_back(plain);
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();
  auto db = Reader();
  EXPECT_EQ(*db->QueryText("SELECT nowcast || '/' || aqi FROM windows ORDER BY id LIMIT 1"),
            "35.5/101");
  EXPECT_EQ(*db->QueryInt("SELECT count(*) FROM windows WHERE nowcast IS NULL AND aqi IS NULL"), 1);
  EXPECT_EQ(*db->QueryText("SELECT interpolated_sample_fraction FROM windows ORDER BY id LIMIT 1"),
            "0.25");
  EXPECT_EQ(*db->QueryInt("SELECT exceedance_count FROM windows ORDER BY id LIMIT 1"), 3);
  EXPECT_EQ(*db->QueryInt("SELECT count(*) FROM windows WHERE exceedance_count IS NULL"), 1);
  EXPECT_EQ(
      *db->QueryInt("SELECT count(*) FROM windows WHERE interpolated_sample_fraction IS NULL"), 1);
}

TEST_F(SqliteSinkTest, LatestWindowsViewKeepsTheHighestRevision) {
  auto sink = MakeSqliteSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  for (uint32_t rev = 0; rev < 3; ++rev) {
    WindowResult w = FullWindow();
    w.revision = rev;
    w.mean = 10.0 + rev;
    b.windows.push_back(w);
  }
  WindowResult next = FullWindow();  // the next window of the same key, one revision
  next.start += kMicrosPerMinute;
  next.end += kMicrosPerMinute;
  next.revision = 0;
  next.mean = 20.0;
  b.windows.push_back(next);
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();

  auto db = Reader();
  auto stmt = db->Prepare(
      "SELECT window_start_us, revision, mean FROM latest_windows "
      "ORDER BY window_start_us");
  ASSERT_TRUE(stmt.ok()) << stmt.status().ToString();
  ASSERT_TRUE(*stmt->Step());
  EXPECT_EQ(stmt->ColumnInt(0), kT0);
  EXPECT_EQ(stmt->ColumnInt(1), 2);
  EXPECT_DOUBLE_EQ(stmt->ColumnDouble(2), 12.0);
  ASSERT_TRUE(*stmt->Step());
  EXPECT_EQ(stmt->ColumnInt(0), kT0 + kMicrosPerMinute);
  EXPECT_EQ(stmt->ColumnInt(1), 0);
  EXPECT_DOUBLE_EQ(stmt->ColumnDouble(2), 20.0);
  EXPECT_FALSE(*stmt->Step());
}

TEST_F(SqliteSinkTest, QuarantineKeepsRawBytesExactly) {
  auto sink = MakeSqliteSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  const std::string raw("{\"pm25\": \xff\xfe\x00\x01 broken \xc0\xaf", 22);
  ASSERT_EQ(raw.size(), 22u);
  Batch b;
  QuarantineRecord q;
  q.reason = Intern("malformed_json");
  q.detail = "unexpected byte 0xff at offset 9";
  q.raw = raw;
  q.arrival_time = kT0 + 7;
  q.device = Intern("node-17");
  q.metric = Intern("pm25");
  q.prov.source = Intern("mqtt-city");
  q.prov.topic = Intern("city/air/node-17");
  q.prov.partition = 2;
  q.prov.offset = 4711;
  b.quarantine.push_back(q);
  QuarantineRecord empty;  // nothing known but the (empty) payload
  empty.reason = Intern("empty_payload");
  empty.arrival_time = kT0;
  b.quarantine.push_back(empty);
  b.quarantine.push_back(q);  // identical bad payloads are both kept
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();
  EXPECT_EQ(Committed("local/quarantine"), 3u);

  auto db = Reader();
  auto stmt = db->Prepare(
      "SELECT reason, detail, raw, typeof(raw), device_id, metric, arrival_time_us, "
      "arrival_time, source, topic, partition, offset, provenance FROM quarantine ORDER BY id");
  ASSERT_TRUE(stmt.ok()) << stmt.status().ToString();
  ASSERT_TRUE(*stmt->Step());
  EXPECT_EQ(stmt->ColumnText(0), "malformed_json");
  EXPECT_EQ(stmt->ColumnText(1), "unexpected byte 0xff at offset 9");
  EXPECT_EQ(stmt->ColumnBlob(2), raw);
  EXPECT_EQ(stmt->ColumnText(3), "blob");
  EXPECT_EQ(stmt->ColumnText(4), "node-17");
  EXPECT_EQ(stmt->ColumnText(5), "pm25");
  EXPECT_EQ(stmt->ColumnInt(6), kT0 + 7);
  EXPECT_EQ(stmt->ColumnText(7), "2024-05-01T12:00:00.000007Z");
  EXPECT_EQ(stmt->ColumnText(8), "mqtt-city");
  EXPECT_EQ(stmt->ColumnText(9), "city/air/node-17");
  EXPECT_EQ(stmt->ColumnInt(10), 2);
  EXPECT_EQ(stmt->ColumnInt(11), 4711);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string prov(stmt->ColumnText(12));
  ASSERT_EQ(parser.parse(prov).get(doc), simdjson::SUCCESS) << prov;
  EXPECT_EQ(int64_t(doc["offset"]), 4711);

  ASSERT_TRUE(*stmt->Step());
  EXPECT_EQ(stmt->ColumnText(0), "empty_payload");
  EXPECT_TRUE(stmt->ColumnIsNull(1));
  EXPECT_EQ(stmt->ColumnText(3), "blob");  // a zero-length BLOB, not NULL
  EXPECT_EQ(stmt->ColumnBlob(2).size(), 0u);
  EXPECT_TRUE(stmt->ColumnIsNull(4));
  EXPECT_TRUE(stmt->ColumnIsNull(5));
  EXPECT_TRUE(stmt->ColumnIsNull(8));
  EXPECT_TRUE(stmt->ColumnIsNull(10));  // partition -1 → NULL
  EXPECT_TRUE(stmt->ColumnIsNull(11));  // offset -1 → NULL
  ASSERT_TRUE(*stmt->Step());
  EXPECT_EQ(stmt->ColumnBlob(2), raw);
  EXPECT_FALSE(*stmt->Step());
}

TEST_F(SqliteSinkTest, RoundTripsLateRecords) {
  auto sink = MakeSqliteSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  LateRecord l;
  l.reading = FullReading();
  l.reading.qc_score = 1.25f;  // a QC check flagged it before it missed its window
  l.window = Intern("device_1m");
  l.lateness = 90 * kMicrosPerSecond + 250000;
  l.watermark = kT0 + 20 * kMicrosPerMinute;
  b.late.push_back(l);
  LateRecord no_wm;
  no_wm.reading = BareReading("node-3", kT0, 1.0);
  no_wm.reading.value = NAN;
  no_wm.window = Intern("device_1m");
  no_wm.watermark = kMinTime;
  b.late.push_back(no_wm);
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();

  auto db = Reader();
  auto stmt = db->Prepare(
      "SELECT window, device_id, metric, value, event_time_us, event_time, arrival_time_us, "
      "arrival_time, lateness_us, lateness_s, watermark_us, watermark, lat, lon, zone_id, h3, "
      "qc_flags, provenance, qc_score FROM late ORDER BY id");
  ASSERT_TRUE(stmt.ok()) << stmt.status().ToString();
  ASSERT_TRUE(*stmt->Step());
  EXPECT_EQ(stmt->ColumnText(0), "device_1m");
  EXPECT_EQ(stmt->ColumnText(1), "node-17");
  EXPECT_EQ(stmt->ColumnText(2), "pm25");
  EXPECT_DOUBLE_EQ(stmt->ColumnDouble(3), 12.5);
  EXPECT_EQ(stmt->ColumnInt(4), kT0 + 123456);
  EXPECT_EQ(stmt->ColumnText(5), "2024-05-01T12:00:00.123456Z");
  EXPECT_EQ(stmt->ColumnInt(6), kT0 + 2 * kMicrosPerSecond);
  EXPECT_EQ(stmt->ColumnText(7), "2024-05-01T12:00:02Z");
  EXPECT_EQ(stmt->ColumnInt(8), 90 * kMicrosPerSecond + 250000);
  EXPECT_DOUBLE_EQ(stmt->ColumnDouble(9), 90.25);
  EXPECT_EQ(stmt->ColumnInt(10), kT0 + 20 * kMicrosPerMinute);
  EXPECT_EQ(stmt->ColumnText(11), "2024-05-01T12:20:00Z");
  EXPECT_DOUBLE_EQ(stmt->ColumnDouble(12), 48.2082);
  EXPECT_DOUBLE_EQ(stmt->ColumnDouble(13), 16.3738);
  EXPECT_EQ(stmt->ColumnText(14), "zone-a");
  EXPECT_EQ(stmt->ColumnText(15), "85283473fffffff");
  EXPECT_EQ(stmt->ColumnText(16), "CALIBRATED|CRS_TRANSFORMED");
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string prov(stmt->ColumnText(17));
  ASSERT_EQ(parser.parse(prov).get(doc), simdjson::SUCCESS) << prov;
  EXPECT_EQ(std::string_view(doc["calibration_date"]), "2024-03-01");

  EXPECT_DOUBLE_EQ(stmt->ColumnDouble(18), 1.25);

  ASSERT_TRUE(*stmt->Step());
  EXPECT_TRUE(stmt->ColumnIsNull(3));  // NaN value → NULL
  EXPECT_EQ(stmt->ColumnInt(8), 0);
  EXPECT_DOUBLE_EQ(stmt->ColumnDouble(18), 0.0);  // QC did not run
  EXPECT_TRUE(stmt->ColumnIsNull(10));            // no watermark yet
  EXPECT_TRUE(stmt->ColumnIsNull(11));
  EXPECT_TRUE(stmt->ColumnIsNull(12));
  EXPECT_FALSE(*stmt->Step());
}

TEST_F(SqliteSinkTest, EmptySymbolsInKeyColumnsAreStoredAsEmptyText) {
  auto sink = MakeSqliteSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  WindowResult w = FullWindow();
  w.group = Symbol{};  // an upstream slip must not fail the whole batch on NOT NULL
  b.windows.push_back(w);
  QuarantineRecord q;  // no reason code at all
  b.quarantine.push_back(q);
  Status st = sink->Write(b);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();
  auto db = Reader();
  EXPECT_EQ(*db->QueryText("SELECT quote(group_key) FROM windows"), "''");
  EXPECT_EQ(*db->QueryText("SELECT quote(reason) FROM quarantine"), "''");
}

TEST_F(SqliteSinkTest, DefaultPathIsInTheDataDir) {
  SqliteSinkOptions o = Options();
  o.path.clear();
  ctx_.data_dir = dir_.File("data/nested");  // created by the sink when missing
  auto sink = MakeSqliteSink(o);
  Status st = sink->Open(ctx_);
  ASSERT_TRUE(st.ok()) << st.ToString();
  sink->Close();
  EXPECT_TRUE(std::filesystem::exists(dir_.File("data/nested/tributary.gpkg")));
  EXPECT_EQ(Count("readings", dir_.File("data/nested/tributary.gpkg")), 0);
}

TEST_F(SqliteSinkTest, CountsCommittedRowsPerTableInTheLedger) {
  auto sink = MakeSqliteSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  for (int i = 0; i < 5; ++i) b.readings.push_back(BareReading("n", kT0 + i, i));
  b.windows.push_back(FullWindow());
  ASSERT_TRUE(sink->Write(b).ok());
  // Nothing is counted (or visible to readers) before the commit.
  EXPECT_EQ(Committed("local/readings"), 0u);
  EXPECT_EQ(Count("readings"), 0);
  ASSERT_TRUE(sink->Commit().ok());
  EXPECT_EQ(Committed("local/readings"), 5u);
  EXPECT_EQ(Committed("local/windows"), 1u);
  EXPECT_EQ(Count("readings"), 5);
  // Enabled tables appear in the ledger even with no rows.
  LedgerSnapshot s = ledger_.Snapshot();
  EXPECT_EQ(s.sink_committed.count("local/quarantine"), 1u);
  EXPECT_EQ(s.sink_committed.count("local/late"), 1u);

  Batch more;
  more.readings.push_back(BareReading("n", kT0 + 100, 1));
  ASSERT_TRUE(sink->Write(more).ok());
  ASSERT_TRUE(sink->Commit().ok());
  ASSERT_TRUE(sink->Commit().ok());  // nothing new: counts unchanged
  EXPECT_EQ(Committed("local/readings"), 6u);
  sink->Close();
  EXPECT_EQ(Count("readings"), 6);
}

TEST_F(SqliteSinkTest, DuplicatesAreIgnoredAndNotCounted) {
  auto sink = MakeSqliteSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  b.readings.push_back(BareReading("n", kT0, 1.0));
  b.readings.push_back(BareReading("n", kT0, 2.0));  // same key in the same batch
  b.readings.push_back(BareReading("n", kT0 + 1, 3.0));
  b.windows.push_back(FullWindow());
  b.windows.push_back(FullWindow());  // same window key and revision
  LateRecord l;
  l.reading = BareReading("n", kT0 - kMicrosPerHour, 4.0);
  l.window = Intern("device_1m");
  l.watermark = kT0;
  b.late.push_back(l);
  b.late.push_back(l);
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  // A replay of the same input after a restart (at-least-once) stores nothing new.
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();
  EXPECT_EQ(Committed("local/readings"), 2u);
  EXPECT_EQ(Committed("local/windows"), 1u);
  EXPECT_EQ(Committed("local/late"), 1u);
  EXPECT_EQ(Count("readings"), 2);
  EXPECT_EQ(Count("windows"), 1);
  EXPECT_EQ(Count("late"), 1);
  auto db = Reader();
  // The first row of a key wins.
  EXPECT_EQ(
      *db->QueryText("SELECT value FROM readings WHERE event_time_us = " + std::to_string(kT0)),
      "1.0");
}

TEST_F(SqliteSinkTest, ReopenIsIdempotent) {
  for (int run = 0; run < 3; ++run) {
    auto sink = MakeSqliteSink(Options());
    Status st = sink->Open(ctx_);
    ASSERT_TRUE(st.ok()) << "run " << run << ": " << st.ToString();
    Batch b;
    b.readings.push_back(BareReading("n", kT0 + run, run));
    ASSERT_TRUE(sink->Write(b).ok());
    ASSERT_TRUE(sink->Commit().ok());
    sink->Close();
    sink->Close();  // Close is idempotent
  }
  EXPECT_EQ(Count("readings"), 3);
  EXPECT_EQ(Committed("local/readings"), 3u);
  auto db = Reader();
  EXPECT_EQ(*db->QueryInt("SELECT count(*) FROM schema_version"), 1);
  EXPECT_EQ(*db->QueryInt("SELECT version FROM schema_version"), kSqliteSchemaVersion);
  EXPECT_EQ(*db->QueryText("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(*db->QueryInt("SELECT count(*) FROM sqlite_master WHERE name = 'latest_windows'"), 1);
}

TEST_F(SqliteSinkTest, RefusesAStoreWithANewerSchema) {
  {
    auto sink = MakeSqliteSink(Options());
    ASSERT_TRUE(sink->Open(ctx_).ok());
    sink->Close();
  }
  {
    SqliteDb db;
    ASSERT_TRUE(db.Open(dir_.File("store.gpkg")).ok());
    ASSERT_TRUE(db.Exec("INSERT INTO schema_version VALUES (99, 'later', 'future')").ok());
  }
  auto sink = MakeSqliteSink(Options());
  Status st = sink->Open(ctx_);
  sink->Close();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("schema version 99"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(dir_.File("store.gpkg")), std::string::npos) << st.message();
}

TEST_F(SqliteSinkTest, CloseWithoutCommitRollsBack) {
  auto sink = MakeSqliteSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  b.readings.push_back(BareReading("n", kT0, 1));
  ASSERT_TRUE(sink->Write(b).ok());
  sink->Close();
  EXPECT_EQ(Count("readings"), 0);
  EXPECT_EQ(Committed("local/readings"), 0u);
  EXPECT_TRUE(sink->Commit().ok());  // nothing open any more
}

TEST_F(SqliteSinkTest, BatchRowsCommitsFullTransactionsEarly) {
  SqliteSinkOptions o = Options();
  o.batch_rows = 4;
  auto sink = MakeSqliteSink(o);
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  for (int i = 0; i < 3; ++i) b.readings.push_back(BareReading("n", kT0 + i, i));
  ASSERT_TRUE(sink->Write(b).ok());
  EXPECT_EQ(Count("readings"), 0);  // 3 < 4: still open
  Batch c;
  for (int i = 3; i < 5; ++i) c.readings.push_back(BareReading("n", kT0 + i, i));
  ASSERT_TRUE(sink->Write(c).ok());
  EXPECT_EQ(Count("readings"), 5);  // reached 4: committed by the Write
  EXPECT_EQ(Committed("local/readings"), 5u);
  ASSERT_TRUE(sink->Commit().ok());
  EXPECT_EQ(Committed("local/readings"), 5u);
  sink->Close();
}

// With checkpoints the sink commits every batch_rows as without them; a crash before
// the next CommitCheckpoint leaves rows that no checkpoint covers, and the next
// OpenCheckpoints removes them, so the replayed interval gets the same ids again.
TEST_F(SqliteSinkTest, CheckpointsRemoveRowsCommittedAfterTheLastCheckpointAtOpen) {
  SqliteSinkOptions o = Options();
  o.batch_rows = 4;
  AlertEvent alert;
  alert.rule = Intern("pm25_high");
  alert.kind = Intern("reading_threshold");
  alert.key = Intern("n");
  alert.metric = Intern("pm25");
  alert.severity = Intern("warning");
  alert.fired_at = kT0;
  alert.event_time = kT0;
  alert.value = 40;
  alert.level = 35;
  alert.message = "pm25 at n is 40 > 35";
  ctx_.checkpointing = true;
  auto interval = [&](int from, int to, bool with_alert) {
    Batch b;
    for (int i = from; i < to; ++i) b.readings.push_back(BareReading("n", kT0 + i, i));
    if (with_alert) b.alerts.push_back(alert);
    return b;
  };
  {
    auto sink = MakeSqliteSink(o);
    ASSERT_TRUE(sink->Open(ctx_).ok());
    Result<SinkCheckpointRecord> rec = sink->OpenCheckpoints();
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    EXPECT_EQ(rec->checkpoint, 0u);
    ASSERT_TRUE(sink->Write(interval(0, 5, false)).ok());
    EXPECT_EQ(Count("readings"), 5);  // committed at batch_rows, not yet counted
    EXPECT_EQ(Committed("local/readings"), 0u);
    ASSERT_TRUE(sink->CommitCheckpoint(1).ok());
    EXPECT_EQ(Committed("local/readings"), 5u);
    // The next interval: committed rows, an alert held back, then a crash.
    ASSERT_TRUE(sink->Write(interval(5, 11, true)).ok());
    EXPECT_EQ(Count("readings"), 11);
    EXPECT_EQ(Count("alerts"), 0);
    EXPECT_EQ(Committed("local/readings"), 5u);
    sink->Close();
  }
  Ledger ledger;
  RunContext ctx = ctx_;
  ctx.ledger = &ledger;
  auto sink = MakeSqliteSink(o);
  ASSERT_TRUE(sink->Open(ctx).ok());
  Result<SinkCheckpointRecord> rec = sink->OpenCheckpoints();
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->checkpoint, 1u);
  EXPECT_EQ(rec->rows["local/readings"], 5u);
  EXPECT_EQ(Count("readings"), 5);
  EXPECT_EQ(Count("alerts"), 0);
  // The interval again, as recovery replays it: the same ids, the alert once.
  ASSERT_TRUE(sink->Write(interval(5, 11, true)).ok());
  ASSERT_TRUE(sink->CommitCheckpoint(2).ok());
  sink->Close();
  EXPECT_EQ(Count("readings"), 11);
  EXPECT_EQ(Count("alerts"), 1);
  auto db = Reader();
  EXPECT_EQ(db->QueryInt("SELECT count(*) FROM readings WHERE id = event_time_us - " +
                         std::to_string(kT0) + " + 1")
                .value_or(-1),
            11);
  EXPECT_EQ(db->QueryInt("SELECT notifications FROM alerts").value_or(-1), 1);
  EXPECT_EQ(
      db->QueryInt("SELECT checkpoint_id FROM sink_checkpoints WHERE sink = 'local'").value_or(-1),
      2);
  EXPECT_EQ(
      db->QueryInt("SELECT readings_id FROM sink_checkpoints WHERE sink = 'local'").value_or(-1),
      11);
  LedgerSnapshot s = ledger.Snapshot();
  EXPECT_EQ(s.sink_committed["local/readings"], 6u);

  // A run without checkpoints in between: its rows stay when checkpoints are back.
  {
    RunContext plain = ctx;
    plain.checkpointing = false;
    auto without = MakeSqliteSink(o);
    ASSERT_TRUE(without->Open(plain).ok());
    ASSERT_TRUE(without->Write(interval(11, 14, false)).ok());
    ASSERT_TRUE(without->Commit().ok());
    without->Close();
  }
  auto again = MakeSqliteSink(o);
  ASSERT_TRUE(again->Open(ctx).ok());
  ASSERT_TRUE(again->OpenCheckpoints().ok());
  again->Close();
  EXPECT_EQ(Count("readings"), 14);
}

// The sink needs no epoch log: PrepareCheckpoint makes the whole interval durable,
// alerts and spatial statistics included (sink_checkpoint_prepared). A process killed
// after the prepare and before the store decided the checkpoint comes back at the last
// one (the prepared rows removed); killed after the decision and before
// CommitCheckpoint, it comes back at the decided one, finished at open from what the
// prepare stored, with the same rows, ids, alert and ledger counts as a commit.
TEST_F(SqliteSinkTest, APreparedCheckpointIsFinishedAtOpenOnlyWhenTheStoreDecidedIt) {
  SqliteSinkOptions o = Options();
  o.batch_rows = 4;
  AlertEvent alert;
  alert.rule = Intern("pm25_high");
  alert.kind = Intern("reading_threshold");
  alert.key = Intern("n");
  alert.metric = Intern("pm25");
  alert.severity = Intern("warning");
  alert.fired_at = kT0;
  alert.event_time = kT0;
  alert.value = 40;
  alert.level = 35;
  alert.message = "pm25 at n is 40 > 35";
  SpatialStats stats;
  stats.surface = Intern("pm25_surface");
  stats.window = Intern("t10m");
  stats.metric = Intern("pm25");
  stats.start = kT0;
  stats.end = kT0 + 600 * kMicrosPerSecond;
  stats.zone = Intern("all");
  stats.sensors = 12;
  stats.weights = Intern("knn:4");
  stats.variogram_model = Intern("spherical");
  stats.method = Intern("idw");
  stats.revision = 1;
  stats.emitted_at = stats.end;
  ctx_.checkpointing = true;
  auto interval = [&](int from, int to, bool with_extras) {
    Batch b;
    for (int i = from; i < to; ++i) b.readings.push_back(BareReading("n", kT0 + i, i));
    if (with_extras) {
      b.alerts.push_back(alert);
      b.spatial_stats.push_back(stats);
    }
    return b;
  };
  // Checkpoint 1 committed, checkpoint 2 prepared, then the process dies.
  auto prepare_two = [&] {
    for (const char* suffix : {"", "-wal", "-shm"}) {
      std::filesystem::remove(dir_.File(std::string("store.gpkg") + suffix));
    }
    Ledger ledger;
    RunContext ctx = ctx_;
    ctx.ledger = &ledger;
    auto sink = MakeSqliteSink(o);
    ASSERT_TRUE(sink->Open(ctx).ok());
    EXPECT_FALSE(sink->NeedsEpochLog());
    ASSERT_TRUE(sink->OpenCheckpoints().ok());
    ASSERT_TRUE(sink->Write(interval(0, 5, false)).ok());
    ASSERT_TRUE(sink->PrepareCheckpoint(1).ok());
    ASSERT_TRUE(sink->CommitCheckpoint(1).ok());
    ASSERT_TRUE(sink->Write(interval(5, 11, true)).ok());
    ASSERT_TRUE(sink->Write(interval(11, 13, false)).ok());  // 2 rows after a commit
    ASSERT_TRUE(sink->PrepareCheckpoint(2).ok());
    // Durable before the decision: every row, the held alert and stats in the
    // prepared row, not yet in their tables.
    EXPECT_EQ(Count("readings"), 13);
    EXPECT_EQ(Count("alerts"), 0);
    EXPECT_EQ(Count("sink_checkpoint_prepared"), 1);
    EXPECT_EQ(ledger.Snapshot().sink_committed["local/readings"], 5u);
    sink->Close();
  };

  // Killed before the decision: the store is still at 1.
  prepare_two();
  {
    Ledger ledger;
    RunContext ctx = ctx_;
    ctx.ledger = &ledger;
    ctx.checkpoint_decided = 1;
    auto sink = MakeSqliteSink(o);
    ASSERT_TRUE(sink->Open(ctx).ok());
    Result<SinkCheckpointRecord> rec = sink->OpenCheckpoints();
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    EXPECT_EQ(rec->checkpoint, 1u);
    EXPECT_EQ(rec->rows["local/readings"], 5u);
    EXPECT_EQ(Count("readings"), 5);
    EXPECT_EQ(Count("alerts"), 0);
    EXPECT_EQ(Count("spatial_stats"), 0);
    EXPECT_EQ(Count("sink_checkpoint_prepared"), 0);
    // Recovery processes the interval again: the same ids, the alert once.
    ASSERT_TRUE(sink->Write(interval(5, 11, true)).ok());
    ASSERT_TRUE(sink->Write(interval(11, 13, false)).ok());
    ASSERT_TRUE(sink->PrepareCheckpoint(2).ok());
    ASSERT_TRUE(sink->CommitCheckpoint(2).ok());
    EXPECT_EQ(ledger.Snapshot().sink_committed["local/readings"], 8u);
    sink->Close();
  }
  auto db = Reader();
  const std::string ids_in_order =
      "SELECT count(*) FROM readings WHERE id = event_time_us - " + std::to_string(kT0) + " + 1";
  EXPECT_EQ(db->QueryInt(ids_in_order).value_or(-1), 13);
  EXPECT_EQ(db->QueryInt("SELECT notifications FROM alerts").value_or(-1), 1);
  EXPECT_EQ(Count("spatial_stats"), 1);
  EXPECT_EQ(
      db->QueryInt("SELECT checkpoint_id FROM sink_checkpoints WHERE sink = 'local'").value_or(-1),
      2);
  EXPECT_EQ(Count("sink_checkpoint_prepared"), 0);
  db.reset();

  // Killed after the decision (the store at 2), before CommitCheckpoint(2).
  prepare_two();
  {
    Ledger ledger;
    RunContext ctx = ctx_;
    ctx.ledger = &ledger;
    ctx.checkpoint_decided = 2;
    auto sink = MakeSqliteSink(o);
    ASSERT_TRUE(sink->Open(ctx).ok());
    Result<SinkCheckpointRecord> rec = sink->OpenCheckpoints();
    ASSERT_TRUE(rec.ok()) << rec.status().ToString();
    EXPECT_EQ(rec->checkpoint, 2u);
    EXPECT_EQ(rec->rows["local/readings"], 8u);  // the rows of checkpoint 2's commit
    EXPECT_EQ(Count("readings"), 13);
    EXPECT_EQ(Count("alerts"), 1);
    EXPECT_EQ(Count("spatial_stats"), 1);
    EXPECT_EQ(Count("sink_checkpoint_prepared"), 0);
    // The next interval continues the ids.
    ASSERT_TRUE(sink->Write(interval(13, 15, false)).ok());
    ASSERT_TRUE(sink->PrepareCheckpoint(3).ok());
    ASSERT_TRUE(sink->CommitCheckpoint(3).ok());
    EXPECT_EQ(ledger.Snapshot().sink_committed["local/readings"], 2u);
    sink->Close();
  }
  db = Reader();
  EXPECT_EQ(db->QueryInt(ids_in_order).value_or(-1), 15);
  EXPECT_EQ(db->QueryInt("SELECT notifications FROM alerts").value_or(-1), 1);
  EXPECT_EQ(
      db->QueryInt("SELECT checkpoint_id FROM sink_checkpoints WHERE sink = 'local'").value_or(-1),
      3);
  EXPECT_EQ(
      db->QueryInt("SELECT readings_id FROM sink_checkpoints WHERE sink = 'local'").value_or(-1),
      15);
}

TEST_F(SqliteSinkTest, WritesOnlyTheConfiguredTables) {
  SqliteSinkOptions o = Options();
  o.readings = false;
  o.quarantine = false;
  o.late = false;
  auto sink = MakeSqliteSink(o);
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  b.readings.push_back(BareReading("n", kT0, 1));
  b.windows.push_back(FullWindow());
  QuarantineRecord q;
  q.reason = Intern("malformed_json");
  b.quarantine.push_back(q);
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();
  EXPECT_EQ(Count("readings"), 0);  // created, but empty
  EXPECT_EQ(Count("quarantine"), 0);
  EXPECT_EQ(Count("windows"), 1);
  LedgerSnapshot s = ledger_.Snapshot();
  EXPECT_EQ(s.sink_committed.count("local/readings"), 0u);
  EXPECT_EQ(s.sink_committed.at("local/windows"), 1u);
}

TEST_F(SqliteSinkTest, UnwritablePathGivesAnErrorNamingIt) {
  testing::WriteFile(dir_.File("not-a-folder"), "plain file");
  SqliteSinkOptions o = Options();
  o.path = dir_.File("not-a-folder/store.gpkg");
  auto sink = MakeSqliteSink(o);
  Status st = sink->Open(ctx_);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kIoError);
  EXPECT_FALSE(st.retryable());
  EXPECT_NE(st.message().find(o.path), std::string::npos) << st.message();
  Batch b;
  b.readings.push_back(BareReading("n", kT0, 1));
  EXPECT_FALSE(sink->Write(b).ok());  // never opened: an error, not a crash
  sink->Close();                      // after a failed Open, too
  sink->Close();
}

TEST_F(SqliteSinkTest, NotADatabaseGivesAnErrorNamingTheFile) {
  testing::WriteFile(dir_.File("store.gpkg"), std::string(4096, 'x'));
  auto sink = MakeSqliteSink(Options());
  Status st = sink->Open(ctx_);
  sink->Close();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.code(), StatusCode::kCorrupt);
  EXPECT_NE(st.message().find(dir_.File("store.gpkg")), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("not a database"), std::string::npos) << st.message();
}

TEST_F(SqliteSinkTest, LockedDatabaseIsRetryableAndARetrySucceeds) {
  SqliteSinkOptions o = Options();
  o.busy_timeout = 50 * kMicrosPerMilli;
  auto sink = MakeSqliteSink(o);
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  b.readings.push_back(BareReading("n", kT0, 1));

  auto other = std::make_unique<SqliteDb>();
  ASSERT_TRUE(other->Open(o.path).ok());
  ASSERT_TRUE(other->Exec("BEGIN IMMEDIATE").ok());  // another writer holds the lock
  Status st = sink->Write(b);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(st.retryable()) << st.ToString();
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_NE(st.message().find(o.path), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("locked"), std::string::npos) << st.message();

  ASSERT_TRUE(other->Exec("COMMIT").ok());
  other.reset();
  ASSERT_TRUE(sink->Write(b).ok());  // the runtime's retry
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();
  EXPECT_EQ(Count("readings"), 1);
  EXPECT_EQ(Committed("local/readings"), 1u);
}

TEST_F(SqliteSinkTest, FailedWriteLeavesNoPartialBatch) {
  auto sink = MakeSqliteSink(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  {
    // Make one window row fail after the readings of the same batch were inserted.
    SqliteDb db;
    ASSERT_TRUE(db.Open(dir_.File("store.gpkg")).ok());
    ASSERT_TRUE(db.Exec("CREATE TRIGGER fail_boom BEFORE INSERT ON windows "
                        "WHEN NEW.metric = 'boom' BEGIN SELECT RAISE(ABORT, 'boom'); END")
                    .ok());
  }
  Batch good;
  good.readings.push_back(BareReading("n", kT0, 1));
  ASSERT_TRUE(sink->Write(good).ok());

  Batch bad;
  bad.readings.push_back(BareReading("n", kT0 + 1, 2));
  bad.readings.push_back(BareReading("n", kT0 + 2, 3));
  WindowResult w = FullWindow();
  w.metric = Intern("boom");
  bad.windows.push_back(w);
  Status st = sink->Write(bad);
  ASSERT_FALSE(st.ok());
  EXPECT_FALSE(st.retryable());
  EXPECT_NE(st.message().find("boom"), std::string::npos) << st.message();

  ASSERT_TRUE(sink->Commit().ok());  // the earlier batch survives, the failed one is gone
  sink->Close();
  EXPECT_EQ(Count("readings"), 1);
  EXPECT_EQ(Count("windows"), 0);
  EXPECT_EQ(Committed("local/readings"), 1u);
}

TEST(SqliteSinkOptionsTest, ReadsDefaultsAndValidatesTables) {
  Registry& registry = Registry::Get();
  ASSERT_EQ(registry.SinkSpec("sqlite"), &SqliteSinkSpec());
  auto entry = [](const std::string& yaml) {
    YAML::Node node = YAML::Load(yaml);
    SinkEntry e;
    e.name = node["name"].as<std::string>();
    e.type = "sqlite";
    e.options =
        OptionReader(node, "pipeline.yaml", "sinks[0]", {&SinkCommonSpec(), &SqliteSinkSpec()});
    return e;
  };

  SinkEntry plain = entry("{name: local, type: sqlite}");
  ASSERT_TRUE(plain.options.CheckKeys().ok());
  Result<SqliteSinkOptions> o = ReadSqliteSinkOptions(plain);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->name, "local");
  EXPECT_EQ(o->path, "");
  EXPECT_TRUE(o->readings && o->windows && o->quarantine && o->late);
  EXPECT_EQ(o->synchronous, SqliteSynchronous::kNormal);
  EXPECT_EQ(o->batch_rows, 50000);
  EXPECT_EQ(o->busy_timeout, 5 * kMicrosPerSecond);

  SinkEntry custom = entry(
      "{name: store, type: sqlite, path: /tmp/x.gpkg, tables: [windows, late], "
      "synchronous: full, batch_rows: 1000}");
  ASSERT_TRUE(custom.options.CheckKeys().ok());
  o = ReadSqliteSinkOptions(custom);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->path, "/tmp/x.gpkg");
  EXPECT_FALSE(o->readings);
  EXPECT_TRUE(o->windows);
  EXPECT_FALSE(o->quarantine);
  EXPECT_TRUE(o->late);
  EXPECT_EQ(o->synchronous, SqliteSynchronous::kFull);
  EXPECT_EQ(o->batch_rows, 1000);

  SinkEntry off = entry("{name: s, type: sqlite, synchronous: \"off\"}");
  o = ReadSqliteSinkOptions(off);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->synchronous, SqliteSynchronous::kOff);

  o = ReadSqliteSinkOptions(entry("{name: s, type: sqlite, tables: [readings, bogus]}"));
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("bogus"), std::string::npos);
  EXPECT_NE(o.status().message().find("pipeline.yaml"), std::string::npos);

  SinkEntry bad_sync = entry("{name: s, type: sqlite, synchronous: sometimes}");
  EXPECT_FALSE(bad_sync.options.CheckKeys().ok());
  SinkEntry bad_rows = entry("{name: s, type: sqlite, batch_rows: 0}");
  EXPECT_FALSE(bad_rows.options.CheckKeys().ok());
}

TEST(SqliteUtilTest, FullDatabaseIsRetryableAndNamesTheFile) {
  testing::TempDir dir;
  SqliteDb db;
  ASSERT_TRUE(db.Open(dir.File("small.db")).ok());
  ASSERT_TRUE(db.Exec("CREATE TABLE t (b BLOB); PRAGMA max_page_count = 8").ok());
  auto insert = db.Prepare("INSERT INTO t VALUES (?1)");
  ASSERT_TRUE(insert.ok());
  std::string big(64 * 1024, 'z');
  insert->BindBlob(1, big);
  Status st = insert->Run();
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(st.retryable());
  EXPECT_NE(st.message().find(dir.File("small.db")), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("full"), std::string::npos) << st.message();
}

TEST(SqliteUtilTest, StatusMapping) {
  EXPECT_TRUE(SqliteStatus(SQLITE_OK, "f", "x").ok());
  EXPECT_TRUE(SqliteStatus(SQLITE_BUSY, "f", "x").retryable());
  EXPECT_TRUE(SqliteStatus(SQLITE_LOCKED, "f", "x").retryable());
  EXPECT_FALSE(SqliteStatus(SQLITE_CANTOPEN, "f", "x").retryable());
  EXPECT_FALSE(SqliteStatus(SQLITE_READONLY, "f", "x").retryable());
  EXPECT_EQ(SqliteStatus(SQLITE_NOTADB, "f", "x").code(), StatusCode::kCorrupt);
  EXPECT_EQ(SqliteStatus(SQLITE_CONSTRAINT_UNIQUE, "f", "x").code(), StatusCode::kInvalidArgument);
  Status st = SqliteStatus(SQLITE_IOERR_WRITE, "/data/store.gpkg", "commit", "disk I/O error");
  EXPECT_EQ(st.message().substr(0, 31), "sqlite /data/store.gpkg: commit");
  EXPECT_NE(st.message().find("disk I/O error"), std::string::npos);
}

TEST(SqliteUtilTest, StatementsBindAndReadBack) {
  testing::TempDir dir;
  SqliteDb db;
  ASSERT_TRUE(db.Open(dir.File("t.db")).ok());
  ASSERT_TRUE(db.Exec("CREATE TABLE t (i INTEGER, d REAL, s TEXT, b BLOB)").ok());
  auto ins = db.Prepare("INSERT INTO t VALUES (?1, ?2, ?3, ?4)");
  ASSERT_TRUE(ins.ok());
  ins->BindInt(1, -5);
  ins->BindDouble(2, INFINITY);
  ins->BindTextOrNull(3, "");
  ins->BindBlob(4, std::string_view("a\0b", 3));
  ASSERT_TRUE(ins->Run().ok());
  EXPECT_EQ(db.Changes(), 1);
  SqliteStatement moved = std::move(*ins);
  EXPECT_FALSE(ins->valid());
  EXPECT_TRUE(moved.valid());
  auto q = db.Prepare("SELECT i, d, s, b FROM t");
  ASSERT_TRUE(q.ok());
  ASSERT_TRUE(*q->Step());
  EXPECT_EQ(q->ColumnInt(0), -5);
  EXPECT_TRUE(q->ColumnIsNull(1));
  EXPECT_TRUE(q->ColumnIsNull(2));
  EXPECT_EQ(q->ColumnBlob(3), std::string_view("a\0b", 3));
  EXPECT_FALSE(*q->Step());
  auto bad = db.Prepare("SELECT nope FROM t");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("no such column"), std::string::npos);
  EXPECT_NE(bad.status().message().find(dir.File("t.db")), std::string::npos);
}

}  // namespace
}  // namespace tributary
