#include "ingest/replay_quarantine.h"

#include <gtest/gtest.h>

#include "core/run_context.h"
#include "ingest/ingest.h"
#include "io/sinks/sqlite_sink.h"
#include "io/sinks/sqlite_util.h"
#include "test_util.h"

namespace tributary {
namespace {

constexpr TimeUs kArrival = 1714564802000000;  // 2024-05-01T12:00:02Z

PipelineConfig Config(const std::string& source_options) {
  auto c = ParsePipelineConfig("sources:\n  - name: s\n    type: simulator\n" + source_options,
                               "test.yaml");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  PipelineConfig config = c.ok() ? *c : PipelineConfig{};
  config.processing.max_future = 5 * kMicrosPerMinute;
  config.processing.drift_threshold = 5 * kMicrosPerMinute;
  config.processing.dedup_horizon = kMicrosPerHour;
  return config;
}

int64_t Count(const std::string& path, const std::string& table) {
  SqliteDb db;
  EXPECT_TRUE(db.Open(path, true).ok());
  auto n = db.QueryInt("SELECT count(*) FROM " + table);
  EXPECT_TRUE(n.ok());
  return n.ok() ? *n : -1;
}

TEST(IngestReplayQuarantine, RecoversWhatAFixedMappingReads) {
  testing::TempDir dir;
  std::string store = dir.File("tributary.gpkg");
  // A run without the mapping: both payloads are quarantined.
  PipelineConfig before = Config("");
  auto stage = IngestStage::Make(before);
  ASSERT_TRUE(stage.ok());
  Ledger ledger;
  RunContext ctx;
  ctx.config = &before;
  ctx.ledger = &ledger;
  ASSERT_TRUE((*stage)->Open(ctx).ok());
  RawBatch raw;
  raw.Add(R"({"meta":{"dev":"st-1"},"ts":"2024-05-01T12:00:00Z","lat":52.5,"lon":13.4,)"
          R"("pm25":3,"pm10":4})",
          kArrival, Intern("t"), 1, -1);
  raw.Add("{", kArrival, Intern("t"), 2, -1);
  Batch out;
  ASSERT_TRUE((*stage)->Process(raw, out).ok());
  ASSERT_EQ(out.quarantine.size(), 2u);
  SqliteSinkOptions options;
  options.path = store;
  std::unique_ptr<Sink> sink = MakeSqliteSink(options);
  ASSERT_TRUE(sink->Open(ctx).ok());
  ASSERT_TRUE(sink->Write(out).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();
  LedgerSnapshot snapshot = ledger.Snapshot();
  ASSERT_TRUE(snapshot.balanced());
  ASSERT_EQ(snapshot.quarantine_reasons["missing_field"], 1u);

  // Replay with the mapping fixed: one row recovered, the broken JSON stays.
  PipelineConfig after = Config("    mapping:\n      device_id: meta.dev\n");
  auto report = ReplayQuarantine(after, store, &snapshot);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->rows, 2u);
  EXPECT_EQ(report->recovered, 1u);
  EXPECT_EQ(report->readings, 2u);
  EXPECT_EQ(report->still_quarantined, 1u);
  EXPECT_EQ(report->recovered_by_reason["missing_field"], 1u);
  EXPECT_EQ(Count(store, "quarantine"), 1);
  EXPECT_EQ(Count(store, "readings"), 2);
  EXPECT_TRUE(snapshot.balanced());
  EXPECT_EQ(snapshot.input, 3u);
  EXPECT_EQ(snapshot.accepted, 2u);
  EXPECT_EQ(snapshot.quarantined, 1u);
  EXPECT_EQ(snapshot.quarantine_reasons.count("missing_field"), 0u);
  EXPECT_EQ(snapshot.quarantine_reasons["malformed_json"], 1u);

  // A second replay finds nothing more to move.
  report = ReplayQuarantine(after, store, &snapshot);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->recovered, 0u);
  EXPECT_EQ(Count(store, "readings"), 2);
  EXPECT_TRUE(snapshot.balanced());

  EXPECT_FALSE(ReplayQuarantine(after, dir.File("missing.gpkg"), nullptr).ok());
}

}  // namespace
}  // namespace tributary
