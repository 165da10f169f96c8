#include "io/sinks/parquet_sink.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "core/registry.h"
#include "io/sinks/gpkg.h"
#include "sink_test_records.h"
#include "test_util.h"

#ifdef TRIBUTARY_HAVE_DUCKDB
#include <duckdb.h>

#include "duck_test_reader.h"
#endif

namespace tributary {
namespace {

namespace fs = std::filesystem;

const TimeUs kT0 = testing::kSinkT0;
using testing::BareReading;
using testing::FullReading;

SinkEntry Entry(const std::string& yaml) {
  SinkEntry e;
  e.name = "archive";
  e.type = "parquet";
  e.options = OptionReader(YAML::Load(yaml), "test.yaml", "sinks[0]", {&ParquetSinkSpec()});
  return e;
}

TEST(ParquetSinkOptionsTest, ReadsDefaultsAndValidates) {
  Result<ParquetSinkOptions> o = ReadParquetSinkOptions(Entry("{}"));
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->name, "archive");
  EXPECT_EQ(o->path, "");
  EXPECT_TRUE(o->readings && o->windows && o->quarantine && o->late);
  EXPECT_EQ(o->target_file_bytes, int64_t{128} << 20);
  EXPECT_EQ(o->compression, ParquetCompression::kZstd);
  EXPECT_EQ(o->threads, 1);

  o = ReadParquetSinkOptions(
      Entry("{path: /tmp/a, tables: [readings, late], target_file_mb: 16, compression: snappy}"));
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->path, "/tmp/a");
  EXPECT_TRUE(o->readings && o->late);
  EXPECT_FALSE(o->windows || o->quarantine);
  EXPECT_EQ(o->target_file_bytes, int64_t{16} << 20);
  EXPECT_EQ(o->compression, ParquetCompression::kSnappy);

  o = ReadParquetSinkOptions(Entry("{tables: [readings, alerts]}"));
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("unknown table 'alerts'"), std::string::npos);
  o = ReadParquetSinkOptions(Entry("{target_file_mb: 0}"));
  EXPECT_FALSE(o.ok());
  o = ReadParquetSinkOptions(Entry("{compression: lz4}"));
  EXPECT_FALSE(o.ok());
}

TEST(ParquetSinkOptionsTest, FactoryNeedsDuckDb) {
  Result<std::unique_ptr<Sink>> sink = Registry::Get().MakeSink(Entry("{}"));
  if (ParquetSinkAvailable()) {
    EXPECT_TRUE(sink.ok()) << sink.status().ToString();
  } else {
    ASSERT_FALSE(sink.ok());
    EXPECT_NE(sink.status().message().find(
                  "built without DuckDB; run scripts/setup.sh --deps-only and rebuild"),
              std::string::npos)
        << sink.status().message();
  }
}

TEST(ParquetSinkOptionsTest, GeoMetadataIsGeoParquet100) {
  EXPECT_EQ(GeoParquetMetadata(),
            R"({"version":"1.0.0","primary_column":"geometry","columns":{"geometry":)"
            R"({"encoding":"WKB","geometry_types":["Point"]}}})");
}

#ifdef TRIBUTARY_HAVE_DUCKDB

using Reader = testing::DuckTestReader;
using testing::WkbHex;

class ParquetSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_.ledger = &ledger_;
    ctx_.data_dir = dir_.path();
  }

  ParquetSinkOptions Options() const {
    ParquetSinkOptions o;
    o.name = "archive";
    o.path = Root();
    return o;
  }
  std::string Root() const { return dir_.File("arch"); }

  std::unique_ptr<Sink> Make(const ParquetSinkOptions& o) {
    Result<std::unique_ptr<Sink>> s = MakeParquetSink(o);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // Every file below the root, relative to it, sorted.
  std::vector<std::string> Files() const {
    std::vector<std::string> out;
    if (!fs::exists(Root())) return out;
    for (const auto& e : fs::recursive_directory_iterator(Root())) {
      if (e.is_regular_file()) out.push_back(fs::relative(e.path(), Root()).string());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  std::string Glob(const std::string& table) const {
    return "read_parquet('" + Root() + "/" + table + "/**/*.parquet', hive_partitioning = true)";
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

TEST_F(ParquetSinkTest, ArchivesMixedBatchesAndReadsThemBack) {
  auto sink = Make(Options());
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(sink->Open(ctx_).ok());

  Batch b1;
  b1.readings.push_back(FullReading());
  b1.readings.push_back(BareReading("node-2", "temperature", kT0, -3.25));  // no position
  b1.readings.push_back(BareReading("node-2", "temperature", kT0 + kMicrosPerDay, 4.5));
  WindowResult w = testing::FullWindowResult();
  b1.windows.push_back(w);
  ASSERT_TRUE(sink->Write(b1).ok());

  Batch b2;
  QuarantineRecord q;
  q.reason = Intern("malformed_json");
  q.detail = "unexpected end of input";
  q.raw = std::string("{\"a\":\xff\x00", 7);  // invalid UTF-8 and a NUL byte
  q.arrival_time = kT0 + 5 * kMicrosPerSecond;
  q.prov.source = Intern("mqtt-city");
  q.prov.topic = Intern("city/air/x");
  q.prov.offset = 7;
  b2.quarantine.push_back(q);
  LateRecord l;
  l.reading = FullReading();
  l.reading.event_time = kT0 - kMicrosPerHour;
  l.window = Intern("device_1m");
  l.lateness = 90 * kMicrosPerSecond;
  l.watermark = kT0 - 10 * kMicrosPerMinute;
  l.reading.qc_score = 1.25f;  // a QC check flagged it before it missed its window
  b2.late.push_back(l);
  ASSERT_TRUE(sink->Write(b2).ok());
  // Nothing is visible before the commit.
  EXPECT_TRUE(Files().empty());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();

  EXPECT_EQ(Files(), (std::vector<std::string>{
                         "late/date=2024-05-01/metric=pm25/part-000006.parquet",
                         "quarantine/date=2024-05-01/part-000005.parquet",
                         "readings/date=2024-05-01/metric=pm25/part-000001.parquet",
                         "readings/date=2024-05-01/metric=temperature/part-000002.parquet",
                         "readings/date=2024-05-02/metric=temperature/part-000003.parquet",
                         "windows/date=2024-05-01/metric=pm25/part-000004.parquet",
                     }))
      << "(sequence numbers are shared by the tables of one archive)";
  EXPECT_EQ(Committed("archive/readings"), 3u);
  EXPECT_EQ(Committed("archive/windows"), 1u);
  EXPECT_EQ(Committed("archive/quarantine"), 1u);
  EXPECT_EQ(Committed("archive/late"), 1u);

  Reader db;
  EXPECT_EQ(db.Rows("SELECT \"date\", metric, device_id, value, epoch_us(event_time), "
                    "epoch_us(arrival_time), lat, lon, zone_id, h3, qc_flags, source, topic, "
                    "\"partition\", \"offset\", firmware_version, calibration_date, crs_source, "
                    "original_x, original_y, hex(geometry) FROM " +
                    Glob("readings") + " ORDER BY event_time, device_id"),
            (std::vector<std::string>{
                "2024-05-01|temperature|node-2|-3.25|1714564800000000|1714564801000000|NULL|"
                "NULL|NULL|NULL||NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL",
                "2024-05-01|pm25|node-17|12.5|1714564800123456|1714564802000000|48.2082|"
                "16.3738|zone-a|85283473fffffff|CALIBRATED|CRS_TRANSFORMED|mqtt-city|city/air/"
                "node-17|3|991|2.4.1|2024-03-01|EPSG:32633|601234.5|5340123.25|" +
                    WkbHex(16.3738, 48.2082),
                "2024-05-02|temperature|node-2|4.5|1714651200000000|1714651201000000|NULL|NULL|"
                "NULL|NULL||NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL",
            }));
  // The partition columns come from the folder names only.
  EXPECT_EQ(db.One("SELECT count(*) FROM parquet_schema('" + Root() +
                   "/readings/date=2024-05-01/metric=pm25/part-000001.parquet') WHERE name IN "
                   "('date', 'metric')"),
            "0");
  EXPECT_EQ(db.One("SELECT typeof(\"date\"), typeof(event_time), typeof(geometry) FROM " +
                   Glob("readings") + " LIMIT 1"),
            "DATE|TIMESTAMP WITH TIME ZONE|BLOB");

  EXPECT_EQ(db.Rows("SELECT \"date\", metric, \"window\", group_by, group_key, "
                    "epoch_us(window_start), epoch_us(window_end), sample_count, mean, min, max, "
                    "std, median, p95, trimmed_mean, first, last, centroid_lat, centroid_lon, "
                    "distinct_sensors, late_arrival_count, aggregation_method, quality_flags, "
                    "revision, epoch_us(emitted_at), quantiles, hex(geometry) FROM " +
                    Glob("windows")),
            (std::vector<std::string>{
                "2024-05-01|pm25|device_1m|device|node-17|1714564800000000|1714564860000000|6|"
                "11.0|8.0|15.5|2.25|10.5|15.0|NULL|9.0|12.0|48.2|16.37|1|2|mean|SPARSE|1|"
                "1714564860500000|{\"0.9\":14.5}|" +
                WkbHex(16.37, 48.2)}));

  EXPECT_EQ(db.One("SELECT interpolated_sample_fraction FROM " + Glob("windows")), "0.5");
  EXPECT_EQ(db.One("SELECT exceedance_count FROM " + Glob("windows")), "4");

  EXPECT_EQ(db.Rows("SELECT \"date\", reason, detail, hex(raw), octet_length(raw), device_id, "
                    "metric, epoch_us(arrival_time), source, topic, \"partition\", \"offset\" "
                    "FROM " +
                    Glob("quarantine")),
            (std::vector<std::string>{"2024-05-01|malformed_json|unexpected end of input|"
                                      "7B2261223AFF00|7|NULL|NULL|1714564805000000|mqtt-city|"
                                      "city/air/x|NULL|7"}));

  EXPECT_EQ(db.Rows("SELECT \"date\", metric, \"window\", device_id, value, epoch_us(event_time), "
                    "lateness_us, lateness_s, epoch_us(watermark), lat, lon, zone_id, h3, "
                    "qc_flags, firmware_version, hex(geometry), qc_score FROM " +
                    Glob("late")),
            (std::vector<std::string>{"2024-05-01|pm25|device_1m|node-17|12.5|"
                                      "1714561200000000|90000000|90.0|1714564200000000|48.2082|"
                                      "16.3738|zone-a|85283473fffffff|CALIBRATED|CRS_TRANSFORMED|"
                                      "2.4.1|" +
                                      WkbHex(16.3738, 48.2082) + "|1.25"}));

  // GeoParquet metadata on every file with a geometry column, none on quarantine; zstd.
  std::string geo = std::string(GeoParquetMetadata());
  for (const std::string& f : Files()) {
    std::string path = Root() + "/" + f;
    std::vector<std::string> kv = db.Rows(
        "SELECT decode(key), decode(value) FROM "
        "parquet_kv_metadata('" +
        path + "') WHERE decode(key) = 'geo'");
    if (f.rfind("quarantine/", 0) == 0) {
      EXPECT_TRUE(kv.empty()) << f;
    } else {
      EXPECT_EQ(kv, std::vector<std::string>{"geo|" + geo}) << f;
    }
    EXPECT_EQ(db.Rows("SELECT DISTINCT compression FROM parquet_metadata('" + path + "')"),
              std::vector<std::string>{"ZSTD"})
        << f;
  }
}

TEST_F(ParquetSinkTest, CommitsAddFilesAndReopenContinuesTheSequence) {
  {
    auto sink = Make(Options());
    ASSERT_TRUE(sink->Open(ctx_).ok());
    Batch b;
    b.readings.push_back(BareReading("a", "pm25", kT0, 1));
    ASSERT_TRUE(sink->Write(b).ok());
    ASSERT_TRUE(sink->Commit().ok());
    ASSERT_TRUE(sink->Commit().ok());  // nothing buffered: no file
    b.readings[0].event_time += kMicrosPerSecond;
    ASSERT_TRUE(sink->Write(b).ok());
    ASSERT_TRUE(sink->Commit().ok());
    b.readings[0].event_time += kMicrosPerSecond;
    ASSERT_TRUE(sink->Write(b).ok());
    sink->Close();  // without a commit: not written
  }
  EXPECT_EQ(Files(), (std::vector<std::string>{
                         "readings/date=2024-05-01/metric=pm25/part-000001.parquet",
                         "readings/date=2024-05-01/metric=pm25/part-000002.parquet",
                     }));
  // A temporary file left by a crash is removed at Open.
  testing::WriteFile(Root() + "/readings/date=2024-05-01/metric=pm25/.part-000003.parquet.tmp",
                     "partial");
  {
    auto sink = Make(Options());
    ASSERT_TRUE(sink->Open(ctx_).ok());
    Batch b;
    b.readings.push_back(BareReading("a", "pm25", kT0 + kMicrosPerMinute, 1));
    ASSERT_TRUE(sink->Write(b).ok());
    ASSERT_TRUE(sink->Commit().ok());
    sink->Close();
  }
  EXPECT_EQ(Files(), (std::vector<std::string>{
                         "readings/date=2024-05-01/metric=pm25/part-000001.parquet",
                         "readings/date=2024-05-01/metric=pm25/part-000002.parquet",
                         "readings/date=2024-05-01/metric=pm25/part-000003.parquet",
                     }));
  EXPECT_EQ(Committed("archive/readings"), 3u);
  Reader db;
  EXPECT_EQ(db.One("SELECT count(*), count(DISTINCT event_time) FROM " + Glob("readings")), "3|3");
}

TEST_F(ParquetSinkTest, LargePartitionsRollOverAtTheTargetSize) {
  ParquetSinkOptions o = Options();
  o.target_file_bytes = 256 << 10;
  auto sink = Make(o);
  ASSERT_TRUE(sink->Open(ctx_).ok());
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> value(0, 1000);
  const int kRows = 200000;  // random doubles: ~8 bytes per row that zstd cannot shrink
  // First commit: one file per partition teaches the sink the size per row.
  Batch b;
  for (int i = 0; i < 20000; ++i) {
    b.readings.push_back(BareReading("a", "pm25", kT0 + i, value(rng)));
  }
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  b.readings.clear();
  for (int i = 0; i < kRows; ++i) {
    b.readings.push_back(BareReading("a", "pm25", kT0 + kMicrosPerSecond + i, value(rng)));
  }
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();

  std::vector<std::string> files = Files();
  ASSERT_GE(files.size(), 5u);
  for (size_t i = 1; i < files.size(); ++i) {
    auto size = fs::file_size(Root() + "/" + files[i]);
    EXPECT_LT(size, 2u * (256u << 10)) << files[i];
    EXPECT_GT(size, (256u << 10) / 3) << files[i];
  }
  Reader db;
  EXPECT_EQ(db.One("SELECT count(*), count(DISTINCT event_time) FROM " + Glob("readings")),
            std::to_string(20000 + kRows) + "|" + std::to_string(20000 + kRows));
  EXPECT_EQ(Committed("archive/readings"), static_cast<uint64_t>(20000 + kRows));
}

TEST_F(ParquetSinkTest, UnusualMetricNamesAreEscapedInFolderNames) {
  auto sink = Make(Options());
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  b.readings.push_back(BareReading("a", "no2/raw value", kT0, 1));
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();
  EXPECT_EQ(Files(), (std::vector<std::string>{
                         "readings/date=2024-05-01/metric=no2%2Fraw%20value/part-000001.parquet"}));
  Reader db;
  EXPECT_EQ(db.One("SELECT metric FROM " + Glob("readings")), "no2/raw value");
}

TEST_F(ParquetSinkTest, DefaultFolderIsInTheDataDirAndOnlyConfiguredTablesAreWritten) {
  ParquetSinkOptions o = Options();
  o.path.clear();
  o.windows = o.quarantine = o.late = false;
  auto sink = Make(o);
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  b.readings.push_back(BareReading("a", "pm25", kT0, 1));
  QuarantineRecord q;
  q.reason = Intern("x");
  b.quarantine.push_back(q);
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();
  EXPECT_TRUE(
      fs::exists(dir_.File("archive/readings/date=2024-05-01/metric=pm25/"
                           "part-000001.parquet")));
  EXPECT_FALSE(fs::exists(dir_.File("archive/quarantine")));
  EXPECT_EQ(Committed("archive/quarantine"), 0u);
}

TEST_F(ParquetSinkTest, UnwritableFolderGivesAnErrorNamingIt) {
  testing::WriteFile(dir_.File("file"), "x");
  ParquetSinkOptions o = Options();
  o.path = dir_.File("file/arch");
  auto sink = Make(o);
  Status st = sink->Open(ctx_);
  sink->Close();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find(dir_.File("file/arch")), std::string::npos) << st.message();
}

#endif  // TRIBUTARY_HAVE_DUCKDB

}  // namespace
}  // namespace tributary
