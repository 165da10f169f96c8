// End-to-end: the built binary runs a file of readings with known faults through the QC
// checks; the flags and scores are read back from the SQLite store.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <string>

#include "io/sinks/sqlite_util.h"
#include "test_util.h"

namespace tributary {
namespace {

// Six temperature sensors ~220 m apart, one reading a minute for an hour. s1 spikes by
// +12 °C at minute 40; s2 is stuck at 16.0 from minute 20 to 34 (15 readings); s6 reads
// 9 °C above the others all along. s3..s5 are sound.
std::string FaultyReadings() {
  std::string lines;
  for (int i = 0; i < 60; ++i) {
    for (int d = 1; d <= 6; ++d) {
      double v = 15.0 + 0.02 * i + 0.05 * std::sin(i + d);
      if (d == 1 && i == 40) v += 12.0;
      if (d == 2 && i >= 20 && i < 35) v = 16.0;
      if (d == 6) v += 9.0;
      char buf[200];
      std::snprintf(buf, sizeof buf,
                    "{\"device_id\":\"s%d\",\"timestamp\":%lld,\"lat\":%.4f,\"lon\":13.4,"
                    "\"temperature\":%.3f}\n",
                    d, 1714564800000LL + i * 60000LL + d * 10LL, 52.5 + 0.002 * d, v);
      lines += buf;
    }
  }
  return lines;
}

// Any flag of the QC checks (the readings carry TIMESTAMP_DRIFT too: their event times are
// in 2024).
const std::string kAnyQcFlag =
    "(qc_flags LIKE '%SPIKE%' OR qc_flags LIKE '%FLATLINE%' OR qc_flags LIKE "
    "'%RATE_OF_CHANGE%' OR qc_flags LIKE '%BASELINE_EXCEEDED%' OR qc_flags LIKE "
    "'%NEIGHBOR_DISAGREEMENT%')";

class QcRunTest : public ::testing::Test {
 protected:
  void RunWith(const std::string& qc_section) {
    { std::ofstream(dir_.File("in.ndjson")) << FaultyReadings(); }
    {
      std::ofstream(dir_.File("p.yaml"))
          << "sources:\n  - name: f\n    type: file\n    path: " << dir_.File("in.ndjson")
          << "\nwindows:\n  - {name: m1, type: tumbling, size: 1m}\n"
             "sinks:\n  - name: local\n    type: sqlite\n"
          << qc_section;
    }
    testing::CommandResult run = testing::RunTributary(
        {"run", dir_.File("p.yaml"), "--data-dir", dir_.File("data"), "--quiet"});
    ASSERT_EQ(run.exit_code, 0) << run.err;
    ASSERT_TRUE(db_.Open(dir_.File("data") + "/tributary.gpkg", true).ok());
  }
  int64_t Count(const std::string& where) {
    Result<int64_t> n = db_.QueryInt("SELECT count(*) FROM readings WHERE " + where);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    return n.ok() ? *n : -1;
  }

  testing::TempDir dir_;
  SqliteDb db_;
};

TEST_F(QcRunTest, FlagsAndScoresReachTheStore) {
  RunWith("");  // QC is on by default
  EXPECT_EQ(Count("1"), 360);
  EXPECT_EQ(Count("qc_score IS NULL"), 0);
  // The spike: SPIKE and RATE_OF_CHANGE on the reading, RATE_OF_CHANGE on the way back.
  EXPECT_EQ(Count("device_id = 's1' AND qc_flags LIKE '%SPIKE%'"), 1);
  EXPECT_EQ(Count("device_id = 's1' AND event_time = '2024-05-01T12:40:00.010000Z' AND qc_flags "
                  "LIKE '%SPIKE%' AND qc_flags LIKE '%RATE_OF_CHANGE%' AND qc_score >= 2"),
            1);
  EXPECT_EQ(Count("device_id = 's1' AND qc_flags LIKE '%RATE_OF_CHANGE%'"), 2);
  // The stuck sensor: FLATLINE from its 10th identical reading (minutes 29..34).
  EXPECT_EQ(Count("qc_flags LIKE '%FLATLINE%'"), 6);
  EXPECT_EQ(Count("device_id = 's2' AND qc_flags LIKE '%FLATLINE%' AND event_time >= "
                  "'2024-05-01T12:29' AND event_time < '2024-05-01T12:35'"),
            6);
  // The sensor 9 °C off its neighbours: flagged once three neighbours have reported.
  EXPECT_GE(Count("device_id = 's6' AND qc_flags LIKE '%NEIGHBOR_DISAGREEMENT%'"), 58);
  EXPECT_EQ(Count("device_id != 's6' AND device_id != 's1' AND qc_flags LIKE "
                  "'%NEIGHBOR_DISAGREEMENT%'"),
            0);
  // Sound sensors carry no flag and a score below 1; flagged readings a score of 1 or more.
  EXPECT_EQ(Count("device_id IN ('s3', 's4', 's5') AND (qc_score >= 1 OR " + kAnyQcFlag + ")"), 0);
  EXPECT_GT(Count("device_id IN ('s3', 's4', 's5') AND qc_score > 0"), 0);
  EXPECT_EQ(Count(kAnyQcFlag + " AND qc_score < 1"), 0);
}

TEST_F(QcRunTest, DisabledLeavesNoFlagsAndZeroScores) {
  RunWith("qc:\n  enabled: false\n");
  EXPECT_EQ(Count("1"), 360);
  EXPECT_EQ(Count("qc_score != 0"), 0);
  EXPECT_EQ(Count(kAnyQcFlag), 0);
}

}  // namespace
}  // namespace tributary
