// Whole runs of the tributary binary with pattern rules, calibration drift and the
// isolation forest: file source → drift → anomaly → window → patterns → alerts → sqlite.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>

#include "io/sinks/sqlite_util.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::TempDir;

constexpr int64_t kT0Ms = 1714564800000;  // 2024-05-01T12:00:00Z

std::string Line(const std::string& device, int64_t ms, double lat, double lon,
                 const std::string& fields) {
  return "{\"device_id\":\"" + device + "\",\"timestamp\":" + std::to_string(ms) +
         ",\"lat\":" + std::to_string(lat) + ",\"lon\":" + std::to_string(lon) + "," + fields +
         "}\n";
}

// Three nodes on a west–east line, a mast reporting wind from the west, and PM2.5 rising
// at the nodes in turn, eight minutes apart: a plume passing downwind.
TEST(PatternRunTest, DownwindSequenceAlertLandsInTheStore) {
  TempDir dir;
  std::string lines;
  const double lons[] = {13.40, 13.42, 13.44};
  for (int m = 0; m < 60; ++m) {
    int64_t ms = kT0Ms + m * 60000;
    if (m % 10 == 0) lines += Line("mast", ms, 52.5, 13.39, "\"wind_direction\":270");
    for (int n = 0; n < 3; ++n) {
      double pm = 10.0 + (m % 3) * 0.5 + (m >= 20 + 8 * n ? 40.0 : 0.0);
      lines +=
          Line("n" + std::to_string(n + 1), ms, 52.5, lons[n], "\"pm25\":" + std::to_string(pm));
    }
  }
  { std::ofstream(dir.File("in.ndjson")) << lines; }
  {
    std::ofstream(dir.File("p.yaml"))
        << "sources:\n  - name: f\n    type: file\n    path: " << dir.File("in.ndjson")
        << "\nwindows:\n  - {name: m1, type: tumbling, size: 1m}\n"
           "sinks:\n  - name: local\n    type: sqlite\n"
           "alerts:\n  patterns:\n"
           "    - name: plume\n      kind: sequence\n      count: 3\n      downwind: true\n"
           "      within: 30m\n      radius_m: 5000\n"
           "      conditions: [{metric: pm25, trend: rising, min_change: 25, over: 10m}]\n";
  }
  testing::CommandResult check = testing::RunTributary({"check", dir.File("p.yaml")});
  ASSERT_EQ(check.exit_code, 0) << check.err << check.out;
  testing::CommandResult run =
      testing::RunTributary({"run", dir.File("p.yaml"), "--data-dir", dir.File("data"), "--quiet"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  SqliteDb db;
  ASSERT_TRUE(db.Open(dir.File("data") + "/tributary.gpkg", true).ok());
  EXPECT_EQ(*db.QueryInt("SELECT count(*) FROM alerts"), 1);
  EXPECT_EQ(*db.QueryText("SELECT rule || ' ' || key || ' ' || fired_at FROM alerts"),
            "plume n1>n2>n3 2024-05-01T12:36:00Z");
  // Nothing was lost on the way.
  EXPECT_EQ(*db.QueryInt("SELECT count(*) FROM readings"), 60 * 3 + 6);
}

// A low-cost sensor beside a reference station whose gain decays from the third day,
// and an isolation forest on two stations' pm25/pm10: the drift alert lands in the
// store, corrected readings carry DRIFT_CORRECTED and the fit in their provenance, and
// scored readings carry their anomaly score.
TEST(PatternRunTest, DriftAlertAndAnomalyScoresLandInTheStore) {
  TempDir dir;
  std::string lines;
  constexpr int kHours = 6 * 24;
  for (int m = 0; m < kHours * 12; ++m) {  // every five minutes for six days
    int64_t ms = kT0Ms + static_cast<int64_t>(m) * 300000;
    double hours = m / 12.0;
    double ref = 20.0 + 12.0 * std::sin(hours * 2 * M_PI / 24.0) + 4.0 * std::sin(hours * 0.37);
    double gain = hours < 72 ? 1.2 : 1.2 * (1.0 - 0.4 * (hours - 72) / 72);
    double pm10 = ref * 1.6 + 3.0 * std::sin(hours * 1.3);
    lines += Line("ref-1", ms, 52.5, 13.40,
                  "\"pm25\":" + std::to_string(ref) + ",\"pm10\":" + std::to_string(pm10));
    lines += Line(
        "lc-1", ms, 52.5, 13.40,
        "\"pm25\":" + std::to_string(gain * ref + 1.0) + ",\"pm10\":" + std::to_string(pm10 * 1.1));
  }
  { std::ofstream(dir.File("in.ndjson")) << lines; }
  { std::ofstream(dir.File("registry.yaml")) << "devices:\n  lc-1:\n    reference: ref-1\n"; }
  {
    std::ofstream(dir.File("p.yaml"))
        << "sources:\n  - name: f\n    type: file\n    path: " << dir.File("in.ndjson")
        << "\nprocessing:\n  registry: " << dir.File("registry.yaml")
        << "\nwindows:\n  - {name: h1, type: tumbling, size: 1h}\n"
           "sinks:\n  - name: local\n    type: sqlite\n"
           "anomaly:\n"
           "  drift: {enabled: true, metrics: [pm25], window: 48h, min_pairs: 24,\n"
           "          apply_correction: true}\n"
           "  iforest: {enabled: true, metrics: [pm25, pm10], step: 5m, min_samples: 100,\n"
           "            history: 600, retrain_every: 1d, shadow: 2h}\n";
  }
  testing::CommandResult run =
      testing::RunTributary({"run", dir.File("p.yaml"), "--data-dir", dir.File("data"), "--quiet"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  SqliteDb db;
  ASSERT_TRUE(db.Open(dir.File("data") + "/tributary.gpkg", true).ok());
  EXPECT_EQ(*db.QueryText("SELECT rule || ' ' || key || ' ' || metric FROM alerts"),
            "recalibration lc-1 pm25");
  std::string fired = *db.QueryText("SELECT fired_at FROM alerts");
  EXPECT_GT(fired, "2024-05-04T12:00:00Z");  // after the drift began on day 3
  int64_t corrected = *db.QueryInt(
      "SELECT count(*) FROM readings WHERE device_id = 'lc-1' AND provenance LIKE "
      "'%DRIFT_CORRECTED%' AND provenance LIKE '%drift_correction%ref=ref-1%'");
  EXPECT_GT(corrected, 1000);
  int64_t scored =
      *db.QueryInt("SELECT count(*) FROM readings WHERE provenance LIKE '%anomaly_score%'");
  EXPECT_GT(scored, 2000);
  EXPECT_EQ(*db.QueryInt("SELECT count(*) FROM readings"), kHours * 12 * 4);
}

}  // namespace
}  // namespace tributary
