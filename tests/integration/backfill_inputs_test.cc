// Backfill beyond plain NDJSON: compressed and Parquet inputs, parallel decoding equal to
// one worker, memory planning, the landing folder (--watch) and the NetCDF export.
#include <duckdb.h>
#include <gtest/gtest.h>
#include <netcdf.h>
#include <sqlite3.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "stream/backfill.h"
#include "stream/backfill_input.h"
#include "test_util.h"

namespace tributary {
namespace {

namespace fs = std::filesystem;
using testing::ReadFile;
using testing::RunTributary;
using testing::TempDir;
using testing::WriteFile;

// Rows of `sql` as tab-separated lines, sorted (order-independent dump).
std::string SortedRows(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::vector<std::string> lines;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "cannot open " << db_path;
    sqlite3_close(db);
    return {};
  }
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
  } else {
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      std::string line;
      for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
        const unsigned char* t = sqlite3_column_text(stmt, c);
        line += t ? reinterpret_cast<const char*>(t) : "NULL";
        line += '\t';
      }
      lines.push_back(line);
    }
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const std::string& l : lines) out += l + "\n";
  return out;
}

LedgerSnapshot ReadLedger(const std::string& dir) {
  Result<LedgerSnapshot> l = ParseLedgerJson(ReadFile(dir + "/ledger.json"));
  EXPECT_TRUE(l.ok()) << l.status().ToString();
  return l.ok() ? *l : LedgerSnapshot{};
}

void ExpectSameLedger(const LedgerSnapshot& a, const LedgerSnapshot& b) {
  EXPECT_EQ(a.input, b.input);
  EXPECT_EQ(a.accepted, b.accepted);
  EXPECT_EQ(a.quarantined, b.quarantined);
  EXPECT_EQ(a.late, b.late);
  EXPECT_EQ(a.duplicate, b.duplicate);
  EXPECT_EQ(a.quarantine_reasons, b.quarantine_reasons);
  EXPECT_EQ(a.windows_emitted, b.windows_emitted);
}

constexpr const char* kWindows =
    "SELECT window, group_key, metric, window_start_us, window_end_us, sample_count, mean, min, "
    "max, late_arrival_count FROM latest_windows";
// Readings without the input path (topic), which names the file read.
constexpr const char* kReadings =
    "SELECT device_id, metric, event_time_us, value, lat, lon FROM readings";
constexpr const char* kQuarantine = "SELECT reason, raw FROM quarantine";

void GzipFile(const std::string& from, const std::string& to) {
  std::string data = ReadFile(from);
  gzFile gz = gzopen(to.c_str(), "wb6");
  ASSERT_NE(gz, nullptr);
  ASSERT_EQ(gzwrite(gz, data.data(), static_cast<unsigned>(data.size())),
            static_cast<int>(data.size()));
  ASSERT_EQ(gzclose(gz), Z_OK);
}

void ZstdFile(const std::string& from, const std::string& to) {
  std::string data = ReadFile(from);
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  ASSERT_FALSE(ZSTD_isError(n)) << ZSTD_getErrorName(n);
  out.resize(n);
  WriteFile(to, out);
}

class BackfillInputsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::CommandResult sim = RunTributary({"simulate", "--seed", "5", "--devices", "30",
                                               "--start", "2024-05-01T00:00:00Z", "--duration",
                                               "2h", "-o", dir_.File("archive.ndjson")});
    ASSERT_EQ(sim.exit_code, 0) << sim.err;
    WriteConfig("");
  }
  void WriteConfig(const std::string& extra) {
    WriteFile(
        dir_.File("p.yaml"),
        "sources:\n  - name: archive\n    type: file\n    path: " + dir_.File("archive.ndjson") +
            "\nprocessing:\n  out_of_orderness: 30s\n  dedup_horizon: 1h\n"
            "windows:\n  - name: dev\n    type: tumbling\n    size: 10m\n"
            "    group_by: device\n    aggregates: [count, mean, min, max, centroid]\n"
            "  - name: all\n    type: tumbling\n    size: 15m\n    group_by: all\n"
            "sinks:\n  - name: local\n    type: sqlite\n" +
            extra);
  }
  testing::CommandResult Backfill(const std::string& out, const std::vector<std::string>& inputs,
                                  std::vector<std::string> extra = {}) {
    std::vector<std::string> args{
        "backfill", "--config",      dir_.File("p.yaml"), "--output",
        out,        "--no-progress", "--as-of",           "2024-06-01T00:00:00Z"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), inputs.begin(), inputs.end());
    return RunTributary(args);
  }
  TempDir dir_;
};

TEST_F(BackfillInputsTest, TwoWorkersGiveExactlyTheResultsOfOne) {
  // Small chunks (a low memory ceiling) make many chunks, decoded out of order by two
  // workers; the ordered stage must restore the input order exactly.
  testing::CommandResult one =
      Backfill(dir_.File("one"), {dir_.File("archive.ndjson")}, {"--workers", "1"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  testing::CommandResult two = Backfill(dir_.File("two"), {dir_.File("archive.ndjson")},
                                        {"--workers", "2", "--memory", "8MiB"});
  ASSERT_EQ(two.exit_code, 0) << two.err;
  LedgerSnapshot a = ReadLedger(dir_.File("one"));
  LedgerSnapshot b = ReadLedger(dir_.File("two"));
  EXPECT_TRUE(b.balanced());
  EXPECT_GT(a.input, 10000u);
  EXPECT_GT(a.duplicate + a.late, 0u) << "the archive should exercise dedup and lateness";
  ExpectSameLedger(a, b);
  const std::string wa = SortedRows(dir_.File("one/tributary.gpkg"), kWindows);
  EXPECT_GT(wa.size(), 1000u);
  EXPECT_EQ(wa, SortedRows(dir_.File("two/tributary.gpkg"), kWindows));
  EXPECT_EQ(SortedRows(dir_.File("one/tributary.gpkg"), kReadings),
            SortedRows(dir_.File("two/tributary.gpkg"), kReadings));
  EXPECT_EQ(SortedRows(dir_.File("one/tributary.gpkg"), "SELECT * FROM late"),
            SortedRows(dir_.File("two/tributary.gpkg"), "SELECT * FROM late"));
}

TEST_F(BackfillInputsTest, GzipAndZstdArchivesGiveTheResultsOfThePlainOne) {
  GzipFile(dir_.File("archive.ndjson"), dir_.File("archive.ndjson.gz"));
  ZstdFile(dir_.File("archive.ndjson"), dir_.File("archive.ndjson.zst"));
  ASSERT_EQ(Backfill(dir_.File("plain"), {dir_.File("archive.ndjson")}).exit_code, 0);
  testing::CommandResult gz = Backfill(dir_.File("gz"), {dir_.File("archive.ndjson.gz")});
  ASSERT_EQ(gz.exit_code, 0) << gz.err;
  testing::CommandResult zst = Backfill(dir_.File("zst"), {dir_.File("archive.ndjson.zst")});
  ASSERT_EQ(zst.exit_code, 0) << zst.err;
  const LedgerSnapshot plain = ReadLedger(dir_.File("plain"));
  EXPECT_GT(plain.input, 10000u);
  for (const char* kind : {"gz", "zst"}) {
    SCOPED_TRACE(kind);
    ExpectSameLedger(plain, ReadLedger(dir_.File(kind)));
    for (const char* q : {kWindows, kReadings, kQuarantine}) {
      EXPECT_EQ(SortedRows(dir_.File("plain/tributary.gpkg"), q),
                SortedRows(dir_.File(std::string(kind) + "/tributary.gpkg"), q))
          << q;
    }
  }
}

TEST_F(BackfillInputsTest, ATruncatedCompressedFileIsAnErrorNamingIt) {
  GzipFile(dir_.File("archive.ndjson"), dir_.File("full.ndjson.gz"));
  std::string gz = ReadFile(dir_.File("full.ndjson.gz"));
  WriteFile(dir_.File("cut.ndjson.gz"), gz.substr(0, gz.size() / 2));
  testing::CommandResult r = Backfill(dir_.File("out"), {dir_.File("cut.ndjson.gz")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cut.ndjson.gz"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_.File("out/tributary.gpkg")));
  ZstdFile(dir_.File("archive.ndjson"), dir_.File("full.ndjson.zst"));
  std::string zst = ReadFile(dir_.File("full.ndjson.zst"));
  WriteFile(dir_.File("cut.ndjson.zst"), zst.substr(0, zst.size() / 2));
  r = Backfill(dir_.File("out"), {dir_.File("cut.ndjson.zst")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cut.ndjson.zst"), std::string::npos) << r.err;
}

TEST_F(BackfillInputsTest, ParquetGivesTheResultsOfTheSameRowsAsCsv) {
  // A CSV with a dropout (empty pm25), a value out of range and a broken timestamp.
  std::string csv = "device_id,sensor_ts,lat,lon,pm25,temperature\n";
  uint64_t dropouts = 0;
  const int64_t t0 = 1714521600000;  // 2024-05-01T00:00:00Z in ms
  for (int i = 0; i < 600; ++i) {
    const int dev = i % 6;
    csv += "aq-" + std::to_string(dev) + "," + std::to_string(t0 + (i / 6) * 60000) + "," +
           std::to_string(52.50 + 0.01 * dev) + "," + std::to_string(13.40 + 0.01 * dev) + ",";
    if (i % 97 != 5) {
      csv += std::to_string(10 + (i % 13) * 1.5);
    } else {
      ++dropouts;
    }
    csv += "," + std::string(i == 77 ? "900" : std::to_string(15 + (i % 7))) + "\n";
  }
  WriteFile(dir_.File("rows.csv"), csv);
  duckdb_database db = nullptr;
  duckdb_connection conn = nullptr;
  ASSERT_EQ(duckdb_open(nullptr, &db), DuckDBSuccess);
  ASSERT_EQ(duckdb_connect(db, &conn), DuckDBSuccess);
  duckdb_result res;
  const std::string copy = "COPY (SELECT * FROM read_csv('" + dir_.File("rows.csv") +
                           "', header = true)) TO '" + dir_.File("rows.parquet") +
                           "' (FORMAT parquet)";
  ASSERT_EQ(duckdb_query(conn, copy.c_str(), &res), DuckDBSuccess) << duckdb_result_error(&res);
  duckdb_destroy_result(&res);
  duckdb_disconnect(&conn);
  duckdb_close(&db);

  testing::CommandResult a = Backfill(dir_.File("csv"), {dir_.File("rows.csv")});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  testing::CommandResult b = Backfill(dir_.File("parquet"), {dir_.File("rows.parquet")});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  const LedgerSnapshot lc = ReadLedger(dir_.File("csv"));
  EXPECT_EQ(lc.input, 600u * 2 - dropouts);  // two metrics a row, less the pm25 dropouts
  EXPECT_GE(lc.quarantined, 1u);             // the 900 °C temperature
  ExpectSameLedger(lc, ReadLedger(dir_.File("parquet")));
  EXPECT_EQ(SortedRows(dir_.File("csv/tributary.gpkg"), kWindows),
            SortedRows(dir_.File("parquet/tributary.gpkg"), kWindows));
  EXPECT_EQ(SortedRows(dir_.File("csv/tributary.gpkg"), kReadings),
            SortedRows(dir_.File("parquet/tributary.gpkg"), kReadings));
  // A folder holding both kinds takes both.
  fs::create_directories(dir_.File("mixed"));
  fs::copy_file(dir_.File("rows.parquet"), dir_.File("mixed/a.parquet"));
  GzipFile(dir_.File("archive.ndjson"), dir_.File("mixed/b.ndjson.gz"));
  Result<std::vector<std::string>> files = ExpandBackfillInputs({dir_.File("mixed")});
  ASSERT_TRUE(files.ok()) << files.status().ToString();
  EXPECT_EQ(files->size(), 2u);
}

TEST(BackfillMemoryPlanTest, ChunksFollowTheCeilingAndSizesParse) {
  const BackfillMemoryPlan free_plan = PlanBackfillMemory(0, 2);
  EXPECT_GT(free_plan.available_bytes, 0u);
  EXPECT_LE(free_plan.budget_bytes, free_plan.available_bytes * 3 / 10 + 1);
  const BackfillMemoryPlan small = PlanBackfillMemory(64ull << 20, 2);
  EXPECT_LE(small.budget_bytes, 64ull << 20);
  EXPECT_NE(small.basis.find("--memory"), std::string::npos) << small.basis;
  // Every chunk in flight, decoded, fits in a quarter of the budget.
  EXPECT_LE(small.chunk_bytes * small.chunks_in_flight * 7, small.budget_bytes / 4 + (64 << 10));
  EXPECT_GE(small.chunk_bytes, 64u << 10);
  EXPECT_LE(free_plan.chunk_bytes, 4u << 20);
  EXPECT_GE(free_plan.chunk_bytes, small.chunk_bytes);
  EXPECT_EQ(*ParseByteSize("512MiB"), 512ull << 20);
  EXPECT_EQ(*ParseByteSize("2GB"), 2000000000ull);
  EXPECT_EQ(*ParseByteSize("4096"), 4096u);
  EXPECT_FALSE(ParseByteSize("lots").ok());
  EXPECT_FALSE(ParseByteSize("5 parsecs").ok());
}

TEST_F(BackfillInputsTest, WatchProcessesEachDroppedFileOnceAndMovesIt) {
  Result<PipelineConfig> config = LoadPipelineConfig(dir_.File("p.yaml"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  fs::create_directories(dir_.File("landing"));
  BackfillOptions base;
  base.output_dir = dir_.File("watched");
  base.as_of = 1717200000LL * 1000000;
  BackfillWatchOptions watch;
  watch.dir = dir_.File("landing");
  watch.poll = 100 * 1000;
  std::atomic<bool> stop{false};
  std::vector<BackfillWatchEvent> events;
  std::mutex mu;
  Status watch_status;
  std::thread watcher([&] {
    watch_status =
        WatchBackfillFolder(*config, base, watch, stop, [&](const BackfillWatchEvent& e) {
          std::lock_guard lock(mu);
          events.push_back(e);
        });
  });
  auto wait_for = [&](size_t n) {
    for (int i = 0; i < 600; ++i) {
      {
        std::lock_guard lock(mu);
        if (events.size() >= n) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  };
  // Dropped after the watch started, written under a hidden name and renamed in.
  fs::copy_file(dir_.File("archive.ndjson"), dir_.File("landing/.day1.ndjson"));
  fs::rename(dir_.File("landing/.day1.ndjson"), dir_.File("landing/day1.ndjson"));
  ASSERT_TRUE(wait_for(1));
  WriteFile(dir_.File("landing/broken.ndjson.gz"), "this is not gzip");
  ASSERT_TRUE(wait_for(2));
  fs::copy_file(dir_.File("archive.ndjson"), dir_.File("landing/day1-again.ndjson"));
  ASSERT_TRUE(wait_for(3));
  stop = true;
  watcher.join();
  ASSERT_TRUE(watch_status.ok()) << watch_status.ToString();

  std::lock_guard lock(mu);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_TRUE(events[0].ok);
  EXPECT_FALSE(events[0].already_processed);
  EXPECT_GT(events[0].report.ledger.input, 10000u);
  EXPECT_TRUE(fs::exists(dir_.File("landing/done/day1.ndjson")));
  EXPECT_TRUE(fs::exists(dir_.File("watched/day1.ndjson/tributary.gpkg")));
  EXPECT_TRUE(fs::exists(dir_.File("watched/day1.ndjson/backfill-manifest.json")));
  EXPECT_EQ(ReadLedger(dir_.File("watched/day1.ndjson")).input, events[0].report.ledger.input);

  EXPECT_FALSE(events[1].ok);
  EXPECT_TRUE(fs::exists(dir_.File("landing/failed/broken.ndjson.gz")));
  const std::string reason = ReadFile(dir_.File("landing/failed/broken.ndjson.gz.reason.txt"));
  EXPECT_NE(reason.find("broken.ndjson.gz"), std::string::npos) << reason;
  EXPECT_NE(reason.find("gzip"), std::string::npos) << reason;

  EXPECT_TRUE(events[2].ok);
  EXPECT_TRUE(events[2].already_processed);
  EXPECT_TRUE(fs::exists(dir_.File("landing/done/day1-again.ndjson")));
  EXPECT_FALSE(fs::exists(dir_.File("watched/day1-again.ndjson")));
  const std::string manifest = ReadFile(dir_.File("watched/watch-manifest.json"));
  EXPECT_NE(manifest.find("\"status\":\"done\""), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"status\":\"failed\""), std::string::npos) << manifest;
  EXPECT_NE(manifest.find("\"status\":\"already_processed\""), std::string::npos) << manifest;
  // Nothing is left in the landing folder but done/ and failed/.
  size_t left = 0;
  for (const auto& e : fs::directory_iterator(dir_.File("landing"))) left += e.is_regular_file();
  EXPECT_EQ(left, 0u);
}

TEST_F(BackfillInputsTest, WatchOnceFromTheCommandLine) {
  fs::create_directories(dir_.File("landing"));
  fs::copy_file(dir_.File("archive.ndjson"), dir_.File("landing/a.ndjson"));
  testing::CommandResult r =
      RunTributary({"backfill", "--config", dir_.File("p.yaml"), "--output", dir_.File("w"),
                    "--watch", dir_.File("landing"), "--once", "--poll", "100ms"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("a.ndjson"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(dir_.File("landing/done/a.ndjson")));
  EXPECT_TRUE(fs::exists(dir_.File("w/a.ndjson/tributary.gpkg")));
}

TEST_F(BackfillInputsTest, SurfacesAreExportedAsOneCfNetcdfFile) {
  WriteConfig(
      "surfaces:\n  - name: pm\n    window: dev\n    metric: pm25\n"
      "    min_lon: 13.0\n    min_lat: 52.3\n    max_lon: 13.8\n    max_lat: 52.7\n"
      "    width: 40\n    height: 20\n    formats: [json]\n");
  testing::CommandResult r = Backfill(dir_.File("bf"), {dir_.File("archive.ndjson")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string nc_path = dir_.File("bf/surfaces/pm.nc");
  ASSERT_TRUE(fs::exists(nc_path)) << r.out;
  std::vector<std::string> jsons;
  for (const auto& e : fs::directory_iterator(dir_.File("bf/surfaces/pm"))) {
    if (e.path().extension() == ".json") jsons.push_back(e.path().string());
  }
  std::sort(jsons.begin(), jsons.end());
  ASSERT_GE(jsons.size(), 5u);

  int nc = -1;
  ASSERT_EQ(nc_open(nc_path.c_str(), NC_NOWRITE, &nc), NC_NOERR);
  auto text_att = [&](int var, const char* name) {
    size_t len = 0;
    if (nc_inq_attlen(nc, var, name, &len) != NC_NOERR) return std::string("<missing>");
    std::string v(len, '\0');
    nc_get_att_text(nc, var, name, v.data());
    return v;
  };
  EXPECT_EQ(text_att(NC_GLOBAL, "Conventions"), "CF-1.8");
  int time_dim, lat_dim, lon_dim;
  size_t nt = 0, ny = 0, nx = 0;
  ASSERT_EQ(nc_inq_dimid(nc, "time", &time_dim), NC_NOERR);
  ASSERT_EQ(nc_inq_dimid(nc, "lat", &lat_dim), NC_NOERR);
  ASSERT_EQ(nc_inq_dimid(nc, "lon", &lon_dim), NC_NOERR);
  nc_inq_dimlen(nc, time_dim, &nt);
  nc_inq_dimlen(nc, lat_dim, &ny);
  nc_inq_dimlen(nc, lon_dim, &nx);
  EXPECT_EQ(nt, jsons.size());
  EXPECT_EQ(ny, 20u);
  EXPECT_EQ(nx, 40u);
  int time_var, lat_var, lon_var, crs_var, pm_var;
  ASSERT_EQ(nc_inq_varid(nc, "time", &time_var), NC_NOERR);
  ASSERT_EQ(nc_inq_varid(nc, "lat", &lat_var), NC_NOERR);
  ASSERT_EQ(nc_inq_varid(nc, "lon", &lon_var), NC_NOERR);
  ASSERT_EQ(nc_inq_varid(nc, "crs", &crs_var), NC_NOERR);
  ASSERT_EQ(nc_inq_varid(nc, "pm25", &pm_var), NC_NOERR);
  EXPECT_EQ(text_att(time_var, "units"), "seconds since 1970-01-01 00:00:00 UTC");
  EXPECT_EQ(text_att(time_var, "standard_name"), "time");
  EXPECT_EQ(text_att(lat_var, "units"), "degrees_north");
  EXPECT_EQ(text_att(lon_var, "units"), "degrees_east");
  EXPECT_EQ(text_att(crs_var, "grid_mapping_name"), "latitude_longitude");
  EXPECT_EQ(text_att(pm_var, "units"), "ug m-3");
  EXPECT_EQ(text_att(pm_var, "standard_name"),
            "mass_concentration_of_pm2p5_ambient_aerosol_particles_in_air");
  EXPECT_EQ(text_att(pm_var, "grid_mapping"), "crs");
  EXPECT_NE(text_att(pm_var, "long_name"), "<missing>");
  float fill = 0;
  ASSERT_EQ(nc_get_att_float(nc, pm_var, "_FillValue", &fill), NC_NOERR);
  EXPECT_EQ(fill, NC_FILL_FLOAT);
  // Coordinates: cell centres, south to north.
  std::vector<double> lat(ny), lon(nx), times(nt);
  nc_get_var_double(nc, lat_var, lat.data());
  nc_get_var_double(nc, lon_var, lon.data());
  nc_get_var_double(nc, time_var, times.data());
  EXPECT_NEAR(lat.front(), 52.3 + 0.01, 1e-9);
  EXPECT_NEAR(lat.back(), 52.7 - 0.01, 1e-9);
  EXPECT_NEAR(lon.front(), 13.0 + 0.01, 1e-9);
  EXPECT_GE(times.front(), 1714521600.0 - 600);  // window starts of the archive's day
  EXPECT_DOUBLE_EQ(std::fmod(times.front(), 600.0), 0.0);
  EXPECT_DOUBLE_EQ(times[1] - times[0], 600.0);
  // Values: the grid of the third window equals its JSON surface, rows flipped.
  std::vector<float> grid(ny * nx);
  const size_t start[3] = {2, 0, 0};
  const size_t count[3] = {1, ny, nx};
  ASSERT_EQ(nc_get_vara_float(nc, pm_var, start, count, grid.data()), NC_NOERR);
  nc_close(nc);
  const std::string doc = ReadFile(jsons[2]);
  const size_t at = doc.find("\"values\":[[");
  ASSERT_NE(at, std::string::npos);
  std::vector<double> json_values;
  std::string cell;
  for (size_t i = at + 10; i < doc.size(); ++i) {
    char c = doc[i];
    if (c == ',' || c == ']') {
      if (!cell.empty()) json_values.push_back(cell == "null" ? NAN : std::stod(cell));
      cell.clear();
    } else if (c != '[') {
      cell += c;
    }
    if (c == ']' && i + 1 < doc.size() && doc[i + 1] == ']') break;
  }
  ASSERT_EQ(json_values.size(), ny * nx);
  size_t finite = 0;
  for (size_t row = 0; row < ny; ++row) {
    for (size_t col = 0; col < nx; ++col) {
      const double want = json_values[row * nx + col];
      const float got = grid[(ny - 1 - row) * nx + col];
      if (std::isnan(want)) {
        EXPECT_EQ(got, fill);
      } else {
        ++finite;
        EXPECT_NEAR(got, want, 1e-4 * std::max(1.0, std::fabs(want)));
      }
    }
  }
  EXPECT_GT(finite, nx * ny / 2);
}

}  // namespace
}  // namespace tributary
