// Whole runs through the tributary binary with the spatial features: two zone layers
// whose ids reach the store and group windows, S2 cells as a key and a column, Moran's I
// and the variogram stored per closed window, and geofence/proximity alerts from a
// moving device delivered to a webhook.
#include <gtest/gtest.h>
#include <httplib.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#ifdef TRIBUTARY_HAVE_DUCKDB
#include "io/sinks/duck_util.h"
#endif
#include "io/sinks/sqlite_util.h"
#include "spatial/s2cell.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::TempDir;

constexpr int64_t kT0 = 1714564800000;  // 2024-05-01T12:00:00Z, ms

// A flood area over part of the city centre (WGS84 GeoJSON).
constexpr const char* kFloodGeoJson = R"({"type":"FeatureCollection","features":[
{"type":"Feature","properties":{"fid":"F1"},"geometry":{"type":"Polygon","coordinates":
[[[13.35,52.50],[13.45,52.50],[13.45,52.54],[13.35,52.54],[13.35,52.50]]]}}]})";

bool InFlood(double lat, double lon) {
  return lon >= 13.35 && lon <= 13.45 && lat >= 52.50 && lat <= 52.54;
}

std::string Line(const std::string& device, int64_t ms, double lat, double lon,
                 const std::string& metric, double v) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "{\"device_id\":\"%s\",\"timestamp\":%lld,\"lat\":%.6f,\"lon\":%.6f,\"%s\":%.3f}\n",
                device.c_str(), static_cast<long long>(ms), lat, lon, metric.c_str(), v);
  return buf;
}

struct Fixed {
  std::string id;
  double lat, lon;
};

// 16 fixed PM2.5 sensors on a 4 × 4 grid in the centre, with a smooth north-south
// gradient (strong positive autocorrelation), one reading a minute for 10 minutes.
std::vector<Fixed> FixedSensors() {
  std::vector<Fixed> out;
  for (int j = 0; j < 4; ++j) {
    for (int i = 0; i < 4; ++i) {
      out.push_back({"fx-" + std::to_string(j * 4 + i), 52.505 + 0.01 * j, 13.375 + 0.015 * i});
    }
  }
  return out;
}

#ifdef TRIBUTARY_HAVE_DUCKDB
constexpr bool kHaveDuckDb = true;
#else
constexpr bool kHaveDuckDb = false;
#endif

class SpatialRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    { std::ofstream(dir_.File("flood.geojson")) << kFloodGeoJson; }
    std::string lines;
    for (int m = 0; m < 10; ++m) {
      for (const Fixed& f : FixedSensors()) {
        lines +=
            Line(f.id, kT0 + m * 60000, f.lat, f.lon, "pm25", 10 + 400 * (f.lat - 52.5) + 0.1 * m);
      }
    }
    // A bike crossing the city west to east along 52.52 N, one PM10 reading every 30 s,
    // high near a school at (52.52, 13.45).
    for (int k = 0; k <= 20; ++k) {
      double lon = 13.27 + 0.013 * k;
      double v = std::fabs(lon - 13.45) < 0.02 ? 60 : 12;
      bike_.push_back({52.52, lon});
      lines += Line("bike-1", kT0 + k * 30000, 52.52, lon, "pm10", v);
    }
    { std::ofstream(dir_.File("in.ndjson")) << lines; }
  }

  std::string Config(int port) const {
    return "sources:\n  - {name: f, type: file, path: " + dir_.File("in.ndjson") +
           "}\n"
           "zones:\n"
           "  h3_resolution: 8\n"
           "  s2_level: 13\n"
           "  layers:\n"
           "    - {name: district, path: \"builtin:city_districts\", id_field: district_id}\n"
           "    - {name: flood, path: flood.geojson, id_field: fid}\n"
           "windows:\n"
           "  - {name: dev5, type: tumbling, size: 5m, group_by: device, metrics: [pm25],\n"
           "     aggregates: [count, mean, centroid]}\n"
           "  - {name: flood5, type: tumbling, size: 5m, group_by: \"zone:flood\",\n"
           "     aggregates: [count, mean]}\n"
           "  - {name: cells, type: tumbling, size: 5m, group_by: \"s2:10\", metrics: [pm25],\n"
           "     aggregates: [count]}\n"
           "surfaces:\n"
           "  - {name: pm25, window: dev5, metric: pm25, width: 20, formats: [json],\n"
           "     moran_weights: band, moran_band_m: 1500}\n"
           "sinks:\n  - {name: local, type: sqlite}\n" +
           std::string(kHaveDuckDb ? "  - {name: duck, type: duckdb, tables: [readings]}\n" : "") +
           "alerts:\n  rules:\n"
           "    - {name: mitte, kind: geofence, zones: [D5]}\n"
           "    - {name: school, kind: proximity, metric: pm10, level: 35, clear: 30,\n"
           "       lat: 52.52, lon: 13.45, radius_m: 1000, place: school-1}\n"
           "  channels:\n"
           "    - {name: hook, type: webhook, url: 'http://127.0.0.1:" +
           std::to_string(port) + "/hook'}\n";
  }

  TempDir dir_;
  std::vector<std::pair<double, double>> bike_;
};

TEST_F(SpatialRunTest, ZonesS2MoranAndGeofencesEndToEnd) {
  httplib::Server http;
  std::mutex mu;
  std::vector<std::string> got;
  http.Post("/hook", [&](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    got.push_back(req.body);
    res.status = 200;
  });
  int port = http.bind_to_any_port("127.0.0.1");
  std::thread t([&] { http.listen_after_bind(); });
  { std::ofstream(dir_.File("p.yaml")) << Config(port); }
  testing::CommandResult run = testing::RunTributary(
      {"run", dir_.File("p.yaml"), "--data-dir", dir_.File("data"), "--quiet"});
  http.stop();
  t.join();
  ASSERT_EQ(run.exit_code, 0) << run.err;
  SqliteDb db;
  ASSERT_TRUE(db.Open(dir_.File("data") + "/tributary.gpkg", true).ok());

  // Every reading carries its flood-layer id (or null) in `zones` and its S2 cell.
  int in_flood = 0;
  for (const auto& [lat, lon] : bike_) in_flood += InFlood(lat, lon);
  for (const Fixed& f : FixedSensors()) in_flood += 10 * InFlood(f.lat, f.lon);
  EXPECT_EQ(*db.QueryInt("SELECT count(*) FROM readings WHERE zones = '{\"flood\":\"F1\"}'"),
            in_flood);
  EXPECT_EQ(*db.QueryInt("SELECT count(*) FROM readings WHERE zones = '{\"flood\":null}'"),
            static_cast<int64_t>(bike_.size()) + 160 - in_flood);
  EXPECT_EQ(*db.QueryInt("SELECT count(*) FROM readings WHERE zones IS NULL OR s2 IS NULL"), 0);
  for (const Fixed& f : FixedSensors()) {
    EXPECT_EQ(*db.QueryText("SELECT s2 FROM readings WHERE device_id = '" + f.id + "' LIMIT 1"),
              S2CellToken(S2CellIdAt(f.lat, f.lon, 13)));
  }
#ifdef TRIBUTARY_HAVE_DUCKDB
  // The DuckDB store carries the same extra-layer ids and S2 cells.
  {
    DuckDbConnection duck;
    ASSERT_TRUE(duck.Open(dir_.File("data") + "/tributary.duckdb", 1).ok());
    DuckDbResult r;
    ASSERT_TRUE(duck.Exec("SELECT count(*) FILTER (WHERE zones = '{\"flood\":\"F1\"}'), "
                          "count(*) FILTER (WHERE zones = '{\"flood\":null}'), "
                          "count(*) FILTER (WHERE zones IS NULL OR s2 IS NULL) FROM readings",
                          &r)
                    .ok());
    EXPECT_EQ(r.Int(0, 0), in_flood);
    EXPECT_EQ(r.Int(1, 0), static_cast<int64_t>(bike_.size()) + 160 - in_flood);
    EXPECT_EQ(r.Int(2, 0), 0);
    for (const Fixed& f : FixedSensors()) {
      DuckDbResult s2;
      ASSERT_TRUE(
          duck.Exec("SELECT s2 FROM readings WHERE device_id = '" + f.id + "' LIMIT 1", &s2).ok());
      EXPECT_EQ(s2.Text(0, 0), S2CellToken(S2CellIdAt(f.lat, f.lon, 13)));
    }
  }
#endif

  // Windows group by the second layer's zone, with no spatial join per window.
  EXPECT_EQ(*db.QueryInt("SELECT sum(sample_count) FROM windows WHERE window = 'flood5' AND "
                         "group_by = 'zone:flood' AND group_key = 'F1'"),
            in_flood);
  // ... and by S2 cell of level 10, keyed by token.
  std::set<std::string> want_cells;
  for (const Fixed& f : FixedSensors())
    want_cells.insert(S2CellToken(S2CellIdAt(f.lat, f.lon, 10)));
  std::set<std::string> cells;
  for (const std::string& c : want_cells) {
    if (*db.QueryInt("SELECT count(*) FROM windows WHERE window = 'cells' AND group_key = '" + c +
                     "'") > 0) {
      cells.insert(c);
    }
  }
  EXPECT_EQ(cells, want_cells);
  EXPECT_EQ(*db.QueryInt("SELECT sum(sample_count) FROM windows WHERE window = 'cells'"), 160);

  // Moran's I and the variogram of both closed windows, over all sensors and per zone.
  EXPECT_EQ(*db.QueryInt("SELECT count(*) FROM spatial_stats WHERE surface = 'pm25' AND zone = "
                         "'all' AND weights = 'band:1500m' AND sensors = 16"),
            2);
  EXPECT_EQ(*db.QueryInt("SELECT count(*) FROM spatial_stats WHERE zone = 'all' AND morans_i > "
                         "0.3 AND morans_z > 2"),
            2)
      << "a smooth gradient is strongly autocorrelated";
  EXPECT_EQ(*db.QueryInt("SELECT count(*) FROM spatial_stats WHERE zone = 'all' AND nugget_sill "
                         "IS NOT NULL AND sill > 0 AND surface_method IN ('idw', 'nearest')"),
            2);
  EXPECT_GE(*db.QueryInt("SELECT count(*) FROM spatial_stats WHERE zone_layer = 'district' AND "
                         "sensors >= 3"),
            1);

  // The bike entered and left Mitte (D5), and passed the school with high PM10.
  EXPECT_EQ(*db.QueryText("SELECT state || ' ' || key || ' ' || kind FROM alerts WHERE rule = "
                          "'mitte'"),
            "resolved bike-1@D5 geofence");
  EXPECT_EQ(*db.QueryText("SELECT state || ' ' || key || ' ' || first_value FROM alerts WHERE "
                          "rule = 'school'"),
            "resolved bike-1@school-1 60.0");
  EXPECT_EQ(*db.QueryInt("SELECT count(*) FROM alerts"), 2);
  std::lock_guard lock(mu);
  ASSERT_EQ(got.size(), 4u);
  int firing = 0, resolved = 0;
  for (const std::string& body : got) {
    firing += body.find("\"state\":\"firing\"") != std::string::npos;
    resolved += body.find("\"state\":\"resolved\"") != std::string::npos;
  }
  EXPECT_EQ(firing, 2);
  EXPECT_EQ(resolved, 2);
}

TEST_F(SpatialRunTest, UnknownLayerInGroupByIsAConfigError) {
  std::string config = Config(1);
  size_t at = config.find("\"zone:flood\"");
  config.replace(at, 12, "\"zone:rivers\"");
  { std::ofstream(dir_.File("p.yaml")) << config; }
  testing::CommandResult check = testing::RunTributary({"check", dir_.File("p.yaml")});
  EXPECT_EQ(check.exit_code, 2);
  EXPECT_NE(check.err.find("no zone layer named 'rivers' (zones.layers: district, flood)"),
            std::string::npos)
      << check.err;
}

}  // namespace
}  // namespace tributary
