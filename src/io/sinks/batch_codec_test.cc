#include "io/sinks/batch_codec.h"

#include <gtest/gtest.h>

#include <cmath>

#include "sink_test_records.h"

namespace tributary {
namespace {

TEST(BatchCodecTest, RoundTripsEveryRecordField) {
  Batch b;
  b.readings.push_back(testing::FullReading());
  b.readings.push_back(testing::BareReading("n2", "no2", testing::kSinkT0, 3.5));
  WindowResult w;
  w.window = Intern("w");
  w.group_by = Intern("zone");
  w.group = Intern("z1");
  w.metric = Intern("pm25");
  w.start = 10;
  w.end = 20;
  w.count = 7;
  w.mean = 1.5;
  w.quantiles = {{0.9, 2.5}};
  w.flags = 3;
  w.revision = 2;
  w.emitted_at = 30;
  b.windows.push_back(w);
  QuarantineRecord q;
  q.reason = Intern("malformed_json");
  q.detail = "byte 3";
  q.raw = std::string("a\0b", 3);
  q.arrival_time = 99;
  b.quarantine.push_back(q);
  LateRecord l;
  l.reading = testing::FullReading();
  l.window = Intern("w");
  l.lateness = 5;
  l.watermark = 6;
  b.late.push_back(l);

  std::string bytes;
  EncodeBatchRecords(b, bytes);
  Result<Batch> back = DecodeBatchRecords(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->readings.size(), 2u);
  const Reading& r = back->readings[0];
  const Reading& want = b.readings[0];
  EXPECT_EQ(r.device, want.device);
  EXPECT_EQ(r.event_time, want.event_time);
  EXPECT_EQ(r.value, want.value);
  EXPECT_EQ(r.h3, want.h3);
  EXPECT_EQ(r.flags, want.flags);
  EXPECT_EQ(r.prov.firmware, want.prov.firmware);
  EXPECT_EQ(r.prov.offset, want.prov.offset);
  EXPECT_EQ(r.prov.orig_y, want.prov.orig_y);
  EXPECT_TRUE(std::isnan(back->readings[1].lat));
  ASSERT_EQ(back->windows.size(), 1u);
  EXPECT_EQ(back->windows[0].group, w.group);
  EXPECT_EQ(back->windows[0].quantiles, w.quantiles);
  EXPECT_EQ(back->windows[0].revision, 2u);
  EXPECT_TRUE(std::isnan(back->windows[0].median));
  ASSERT_EQ(back->quarantine.size(), 1u);
  EXPECT_EQ(back->quarantine[0].raw, q.raw);
  ASSERT_EQ(back->late.size(), 1u);
  EXPECT_EQ(back->late[0].lateness, 5);
  EXPECT_EQ(back->late[0].reading.zone, want.zone);
}

TEST(BatchCodecTest, RoundTripsAlertsAndSpatialStats) {
  Batch b;
  AlertEvent a;
  a.rule = Intern("pm_high");
  a.kind = Intern("reading_threshold");
  a.key = Intern("n1");
  a.metric = Intern("pm25");
  a.severity = Intern("critical");
  a.state = AlertState::kResolved;
  a.fired_at = testing::kSinkT0;
  a.event_time = testing::kSinkT0 + 60;
  a.value = 29.5;
  a.level = 30;
  a.message = "pm25 at n1 is 29.5 < 30";
  a.source_arrival = testing::kSinkT0 + 61;
  a.emitted_at = testing::kSinkT0 + 62;
  b.alerts.push_back(a);
  SpatialStats x;
  x.surface = Intern("pm25");
  x.window = Intern("t10m");
  x.metric = Intern("pm25");
  x.start = testing::kSinkT0;
  x.end = testing::kSinkT0 + 600;
  x.zone = Intern("all");  // zone_layer left empty
  x.sensors = 14;
  x.weights = Intern("knn:4");
  x.morans_i = -0.25;
  x.morans_expected = -1.0 / 13;
  x.morans_z = NAN;
  x.variogram_model = Intern("spherical");
  x.nugget = 0;
  x.sill = 2.5;
  x.range_m = 6262;
  x.nugget_sill = 0;
  x.method = Intern("idw");
  x.revision = 2;
  x.emitted_at = testing::kSinkT0 + 700;
  b.spatial_stats.push_back(x);
  std::string bytes;
  EncodeBatchRecords(b, bytes);
  Result<Batch> back = DecodeBatchRecords(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->alerts.size(), 1u);
  const AlertEvent& c = back->alerts[0];
  EXPECT_EQ(c.rule, a.rule);
  EXPECT_EQ(c.kind, a.kind);
  EXPECT_EQ(c.key, a.key);
  EXPECT_EQ(c.metric, a.metric);
  EXPECT_EQ(c.severity, a.severity);
  EXPECT_EQ(c.state, AlertState::kResolved);
  EXPECT_EQ(c.fired_at, a.fired_at);
  EXPECT_EQ(c.event_time, a.event_time);
  EXPECT_EQ(c.value, a.value);
  EXPECT_EQ(c.level, a.level);
  EXPECT_EQ(c.message, a.message);
  EXPECT_EQ(c.source_arrival, a.source_arrival);
  EXPECT_EQ(c.emitted_at, a.emitted_at);
  ASSERT_EQ(back->spatial_stats.size(), 1u);
  const SpatialStats& y = back->spatial_stats[0];
  EXPECT_EQ(y.surface, x.surface);
  EXPECT_EQ(y.window, x.window);
  EXPECT_EQ(y.start, x.start);
  EXPECT_EQ(y.end, x.end);
  EXPECT_TRUE(y.zone_layer.empty());
  EXPECT_EQ(y.zone, x.zone);
  EXPECT_EQ(y.sensors, 14u);
  EXPECT_EQ(y.weights, x.weights);
  EXPECT_EQ(y.morans_i, x.morans_i);
  EXPECT_EQ(y.morans_expected, x.morans_expected);
  EXPECT_TRUE(std::isnan(y.morans_z));
  EXPECT_EQ(y.variogram_model, x.variogram_model);
  EXPECT_EQ(y.sill, 2.5);
  EXPECT_EQ(y.range_m, 6262);
  EXPECT_EQ(y.method, x.method);
  EXPECT_EQ(y.revision, 2u);
  EXPECT_EQ(y.emitted_at, x.emitted_at);
}

TEST(BatchCodecTest, RejectsTruncatedBytes) {
  Batch b;
  b.readings.push_back(testing::FullReading());
  std::string bytes;
  EncodeBatchRecords(b, bytes);
  for (size_t n : {size_t{0}, size_t{1}, bytes.size() / 2, bytes.size() - 1}) {
    Result<Batch> r = DecodeBatchRecords(std::string_view(bytes).substr(0, n));
    EXPECT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
  }
}

}  // namespace
}  // namespace tributary
