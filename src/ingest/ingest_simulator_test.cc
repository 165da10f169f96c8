// The simulator's byte stream through the ingestion stage, checked against what the
// simulator says it sent (its per-message ground truth).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "ingest/ingest.h"
#include "io/sources/simulator.h"

namespace tributary {
namespace {

constexpr TimeUs kStart = 1714564800000000;  // 2024-05-01T12:00:00Z

TEST(IngestSimulator, EveryMessageEndsWhereTheGroundTruthSays) {
  SimulatorOptions so;
  so.seed = 11;
  so.devices = 120;
  so.start = kStart;
  so.duration = 3 * kMicrosPerHour;
  so.as_fast_as_possible = true;
  so.malformed_rate = 0.05;
  so.duplicate_rate = 0.03;
  so.projected_share = 0.1;
  Simulator sim(so);

  PipelineConfig config;
  config.file = "<test>";
  config.processing.dedup_horizon = kMicrosPerHour;
  config.processing.drift_threshold = 5 * kMicrosPerMinute;
  config.processing.max_future = 5 * kMicrosPerMinute;
  config.sources.push_back(SourceEntry{"simulator", "simulator", {}});
  auto made = IngestStage::Make(config);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  std::unique_ptr<IngestStage> stage = std::move(made).value();
  Ledger ledger;
  RunContext ctx;
  ctx.config = &config;
  ctx.ledger = &ledger;
  ASSERT_TRUE(stage->Open(ctx).ok());

  // Expected fate of every message, from the simulator's own description of it.
  std::map<std::string, uint64_t> expected_reasons;
  uint64_t expected_forwarded = 0, expected_duplicates = 0;
  std::set<std::pair<uint32_t, TimeUs>> forwarded_keys;  // (device, sensor time)
  auto expect = [&](const SimMessage& m) {
    const SimDevice& dev = sim.devices()[m.device];
    uint64_t metrics = DeviceTypeMetrics(dev.type).size();
    bool broken_json =
        m.kind == SimMessageKind::kMalformed && (m.malformed == MalformedKind::kTruncatedJson ||
                                                 m.malformed == MalformedKind::kInvalidJson ||
                                                 m.malformed == MalformedKind::kNanCoordinate);
    if (broken_json) {
      ++expected_reasons["malformed_json"];
    } else if (m.sensor_time - m.arrival_time > config.processing.max_future) {
      ++expected_reasons["future_timestamp"];
    } else if (m.kind == SimMessageKind::kMalformed &&
               m.malformed == MalformedKind::kLatOutOfRange) {
      ++expected_reasons["coordinate_out_of_range"];
    } else {
      uint64_t good = metrics;
      if (m.kind == SimMessageKind::kMalformed && m.malformed == MalformedKind::kUnknownUnit) {
        ++expected_reasons["unknown_unit"];
        --good;
      }
      auto key = std::make_pair(m.device, m.sensor_time);
      if (m.kind == SimMessageKind::kDuplicate && forwarded_keys.count(key) != 0) {
        expected_duplicates += good;
      } else {
        expected_forwarded += good;
        forwarded_keys.insert(key);
      }
    }
  };

  uint64_t forwarded = 0, duplicates = 0, messages = 0, transformed = 0;
  std::map<std::string, uint64_t> reasons;
  SimMessage msg;
  bool more = true;
  while (more) {
    RawBatch raw;
    while (raw.size() < 500 && (more = sim.Next(msg))) {
      raw.Add(msg.payload, msg.arrival_time, Intern("sim/test"), static_cast<int64_t>(msg.sequence),
              0);
      expect(msg);
      ++messages;
    }
    Batch out;
    ASSERT_TRUE(stage->Process(raw, out).ok());
    forwarded += out.readings.size();
    duplicates += out.duplicates;
    for (const QuarantineRecord& q : out.quarantine) ++reasons[q.reason.str()];
    for (const Reading& r : out.readings) {
      // Projected devices are reprojected by PROJ; the simulator's own UTM formulae
      // (src/io/sources/simulator.cc) are an independent check to a few cm.
      const SimDevice* dev = nullptr;
      for (const SimDevice& d : sim.devices()) {
        if (d.id == r.device.view()) dev = &d;
      }
      ASSERT_NE(dev, nullptr) << r.device.view();
      EXPECT_EQ(r.flags.Has(QcFlag::kCrsTransformed), dev->projected);
      if (dev->projected) {
        ++transformed;
        EXPECT_NEAR(r.lat, dev->lat, 1e-6) << dev->id;
        EXPECT_NEAR(r.lon, dev->lon, 1e-6) << dev->id;
        EXPECT_EQ(r.prov.crs_source.view().substr(0, 8), "EPSG:326");
        EXPECT_NEAR(r.prov.orig_x, dev->utm_x, 0.01);
      }
      ASSERT_TRUE(std::isfinite(r.value));
      ASSERT_TRUE(MetricBySymbol(r.metric) != nullptr) << r.metric.view();
      ASSERT_TRUE(r.prov.source.view() == "simulator");
    }
  }
  const SimulatorStats& stats = sim.stats();
  ASSERT_EQ(messages, stats.messages);
  ASSERT_GT(stats.malformed_messages, 0u);
  ASSERT_GT(stats.duplicate_messages, 0u);
  ASSERT_GT(stats.projected_messages, 0u);
  ASSERT_GT(stats.mg_m3_messages, 0u);

  EXPECT_GT(transformed, 0u);
  EXPECT_EQ(reasons, expected_reasons);
  EXPECT_EQ(forwarded, expected_forwarded);
  EXPECT_EQ(duplicates, expected_duplicates);
  EXPECT_EQ(reasons["malformed_json"],
            stats.malformed_by_kind[static_cast<size_t>(MalformedKind::kTruncatedJson)] +
                stats.malformed_by_kind[static_cast<size_t>(MalformedKind::kInvalidJson)] +
                stats.malformed_by_kind[static_cast<size_t>(MalformedKind::kNanCoordinate)]);
  LedgerSnapshot s = ledger.Snapshot();
  EXPECT_EQ(s.input, forwarded + s.quarantined + s.duplicate);
  EXPECT_EQ(s.duplicate, duplicates);
  EXPECT_GT(s.quarantine_reasons["future_timestamp"], 0u);  // the far-ahead clocks
}

}  // namespace
}  // namespace tributary
