// End-to-end: the device registry's reporting interval reaches the window stage (SPARSE)
// and the alert stage (stale sensors) of a pipeline built by `tributary run`.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "io/sinks/sqlite_util.h"
#include "test_util.h"

namespace tributary {
namespace {

// s1 reports each minute as its registry entry says; s2 should report every 10 s but
// sends every 30 s for ten minutes and then falls silent. With the definition's default
// expected interval (60 s) neither window would be SPARSE and s2 would never be stale.
void WriteInputs(const testing::TempDir& dir, bool with_registry) {
  const int64_t t0 = 1714564800000;  // 2024-05-01T12:00:00Z
  std::string lines;
  for (int i = 0; i < 20; ++i) {
    lines += "{\"device_id\":\"s1\",\"timestamp\":" + std::to_string(t0 + i * 60000) +
             ",\"lat\":52.5,\"lon\":13.4,\"pm25\":10}\n";
    if (i < 10) {
      for (int j = 0; j < 2; ++j) {
        lines +=
            "{\"device_id\":\"s2\",\"timestamp\":" + std::to_string(t0 + i * 60000 + j * 30000) +
            ",\"lat\":52.6,\"lon\":13.5,\"pm25\":12}\n";
      }
    }
  }
  testing::WriteFile(dir.File("in.ndjson"), lines);
  testing::WriteFile(dir.File("devices.yaml"),
                     "devices:\n  s1: {interval: 1m}\n  s2: {interval: 10s}\n");
  std::ofstream(dir.File("p.yaml"))
      << "processing:\n  registry: " << (with_registry ? dir.File("devices.yaml") : "''")
      << "\nsources:\n  - name: f\n    type: file\n    path: " << dir.File("in.ndjson")
      << "\nwindows:\n  - {name: w10, type: tumbling, size: 10m, group_by: device}\n"
         "sinks:\n  - name: local\n    type: sqlite\n"
         "alerts:\n  rules:\n"
         "    - {name: quiet, kind: stale, stale_factor: 5, expected_interval: 1h}\n";
}

struct Outcome {
  std::string s1_flags, s2_flags;
  int64_t stale_alerts = -1;
};

Outcome RunPipeline(bool with_registry) {
  testing::TempDir dir;
  WriteInputs(dir, with_registry);
  testing::CommandResult run =
      testing::RunTributary({"run", dir.File("p.yaml"), "--data-dir", dir.File("data"), "--quiet"});
  Outcome o;
  EXPECT_EQ(run.exit_code, 0) << run.err;
  SqliteDb db;
  if (!db.Open(dir.File("data") + "/tributary.gpkg", true).ok()) {
    ADD_FAILURE() << "no store";
    return o;
  }
  auto flags = [&](const std::string& device) {
    Result<std::string> f = db.QueryText(
        "SELECT quality_flags FROM latest_windows WHERE window = 'w10' AND group_key = '" + device +
        "' AND window_start = '2024-05-01T12:00:00Z'");
    return f.ok() ? *f : std::string("(no row)");
  };
  o.s1_flags = flags("s1");
  o.s2_flags = flags("s2");
  o.stale_alerts = *db.QueryInt("SELECT count(*) FROM alerts WHERE rule = 'quiet' AND key = 's2'");
  return o;
}

TEST(RegistryIntervalTest, WindowsAndStaleRulesUseEachDevicesReportingInterval) {
  Outcome o = RunPipeline(true);
  EXPECT_EQ(o.s1_flags.find("SPARSE"), std::string::npos) << o.s1_flags;
  EXPECT_NE(o.s2_flags.find("SPARSE"), std::string::npos) << o.s2_flags;
  EXPECT_EQ(o.stale_alerts, 1);
}

TEST(RegistryIntervalTest, WithoutRegistryTheDefinitionsIntervalApplies) {
  Outcome o = RunPipeline(false);
  EXPECT_EQ(o.s1_flags.find("SPARSE"), std::string::npos) << o.s1_flags;
  EXPECT_EQ(o.s2_flags.find("SPARSE"), std::string::npos) << o.s2_flags;
  EXPECT_EQ(o.stale_alerts, 0);
}

}  // namespace
}  // namespace tributary
