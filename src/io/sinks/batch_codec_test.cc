#include "io/sinks/batch_codec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "core/intern.h"
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

// Doubles compared by bits: NaN and -0 must come back as they were.
bool SameBits(double a, double b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

void ExpectSameReading(const Reading& a, const Reading& b) {
  EXPECT_EQ(a.event_time, b.event_time);
  EXPECT_EQ(a.arrival_time, b.arrival_time);
  EXPECT_EQ(a.device, b.device);
  EXPECT_EQ(a.metric, b.metric);
  EXPECT_TRUE(SameBits(a.value, b.value));
  EXPECT_TRUE(SameBits(a.lat, b.lat));
  EXPECT_TRUE(SameBits(a.lon, b.lon));
  EXPECT_EQ(a.h3, b.h3);
  EXPECT_EQ(a.zone, b.zone);
  EXPECT_EQ(a.extra_zones, b.extra_zones);
  EXPECT_EQ(a.s2, b.s2);
  EXPECT_EQ(a.flags, b.flags);
  EXPECT_TRUE(SameBits(a.qc_score, b.qc_score));
  EXPECT_EQ(a.prov.source, b.prov.source);
  EXPECT_EQ(a.prov.topic, b.prov.topic);
  EXPECT_EQ(a.prov.partition, b.prov.partition);
  EXPECT_EQ(a.prov.offset, b.prov.offset);
  EXPECT_EQ(a.prov.firmware, b.prov.firmware);
  EXPECT_EQ(a.prov.calibration_date, b.prov.calibration_date);
  EXPECT_EQ(a.prov.crs_source, b.prov.crs_source);
  EXPECT_TRUE(SameBits(a.prov.orig_x, b.prov.orig_x));
  EXPECT_TRUE(SameBits(a.prov.orig_y, b.prov.orig_y));
  EXPECT_EQ(a.prov.drift_correction, b.prov.drift_correction);
  EXPECT_TRUE(SameBits(a.prov.anomaly_score, b.prov.anomaly_score));
}

void ExpectSameWindow(const WindowResult& x, const WindowResult& y) {
  EXPECT_EQ(x.window, y.window);
  EXPECT_EQ(x.group_by, y.group_by);
  EXPECT_EQ(x.group, y.group);
  EXPECT_EQ(x.metric, y.metric);
  EXPECT_EQ(x.start, y.start);
  EXPECT_EQ(x.end, y.end);
  EXPECT_EQ(x.count, y.count);
  for (auto [u, v] : {std::pair{x.mean, y.mean},
                      {x.min, y.min},
                      {x.max, y.max},
                      {x.std, y.std},
                      {x.median, y.median},
                      {x.p95, y.p95},
                      {x.trimmed_mean, y.trimmed_mean},
                      {x.first, y.first},
                      {x.last, y.last},
                      {x.centroid_lat, y.centroid_lat},
                      {x.centroid_lon, y.centroid_lon},
                      {x.nowcast, y.nowcast},
                      {x.aqi, y.aqi},
                      {x.interpolated_sample_fraction, y.interpolated_sample_fraction}}) {
    EXPECT_TRUE(SameBits(u, v));
  }
  EXPECT_EQ(x.distinct_sensors, y.distinct_sensors);
  EXPECT_EQ(x.exceedance_count, y.exceedance_count);
  EXPECT_EQ(x.late_count, y.late_count);
  EXPECT_EQ(x.quantiles, y.quantiles);
  EXPECT_EQ(x.aggregation_method, y.aggregation_method);
  EXPECT_EQ(x.flags, y.flags);
  EXPECT_EQ(x.revision, y.revision);
  EXPECT_EQ(x.emitted_at, y.emitted_at);
}

// The breaker's buffer format carries every field as well: the extra zone layers and
// the S2 cell of readings (on time and late), the interpolated sample fraction and the
// exceedance count of windows. Both formats give back the same records.
TEST(BatchCodecTest, BothFormatsCarryZoneLayersS2AndWindowExtras) {
  Batch b;
  Reading r = testing::FullReading();
  r.extra_zones = {Intern("floodplain-2"), Symbol{}, Intern("habitat-7")};
  r.s2 = 0x47a1cbd595522b39ULL;
  b.readings.push_back(r);
  WindowResult w = testing::FullWindowResult();
  w.interpolated_sample_fraction = 0.375;
  w.exceedance_count = 12;
  b.windows.push_back(w);
  LateRecord l;
  l.reading = r;
  l.window = Intern("w");
  b.late.push_back(l);
  std::string rows;
  EncodeBatchRecords(b, rows);
  std::string columns;
  EncodeBatchColumns(b, columns);
  for (Result<Batch> back : {DecodeBatchRecords(rows), DecodeBatchColumns(columns)}) {
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    ASSERT_EQ(back->readings.size(), 1u);
    ExpectSameReading(back->readings[0], r);
    ASSERT_EQ(back->windows.size(), 1u);
    ExpectSameWindow(back->windows[0], w);
    ASSERT_EQ(back->late.size(), 1u);
    ExpectSameReading(back->late[0].reading, r);
  }
}

TEST(BatchCodecTest, ColumnsRoundTripEveryFieldOfVariedAndConstantColumns) {
  Batch b;
  for (int i = 0; i < 5; ++i) {
    Reading r = testing::FullReading();
    r.device = Intern("node-" + std::to_string(i));  // varies
    r.value = i == 2 ? -0.0 : (i == 3 ? NAN : 1.5 * i);
    r.event_time += i;
    r.extra_zones[1] = Intern("district-9");  // the same in every row
    r.s2 = 0x47a1cbd595522b39ULL + static_cast<uint64_t>(i % 2);
    r.qc_score = 1.25f;
    r.prov.drift_correction = Intern("slope=0.9 offset=1");
    r.prov.anomaly_score = i == 4 ? 0.75f : NAN;
    b.readings.push_back(r);
  }
  b.readings.push_back(testing::BareReading("n2", "no2", testing::kSinkT0, 3.5));
  // Runs: ten readings per device, times all different.
  for (int i = 0; i < 40; ++i) {
    Reading r = testing::FullReading();
    r.device = Intern("run-" + std::to_string(i / 10));
    r.event_time += 1000 + i;
    b.readings.push_back(r);
  }
  for (int i = 0; i < 3; ++i) {
    WindowResult w = testing::FullWindowResult();
    w.start += i;
    w.interpolated_sample_fraction = 0.25 * i;
    w.exceedance_count = i == 1 ? 4 : -1;
    if (i == 2) w.quantiles.clear();
    b.windows.push_back(w);
  }
  QuarantineRecord q;
  q.reason = Intern("malformed_json");
  q.raw = std::string("a\0b", 3);
  b.quarantine.push_back(q);
  LateRecord l;
  l.reading = testing::FullReading();
  l.window = Intern("w");
  l.lateness = 5;
  b.late.push_back(l);
  AlertEvent a;
  a.rule = Intern("pm_high");
  a.message = "high";
  b.alerts.push_back(a);

  std::string bytes;
  EncodeBatchColumns(b, bytes);
  Result<Batch> back = DecodeBatchColumns(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->readings.size(), b.readings.size());
  for (size_t i = 0; i < b.readings.size(); ++i) {
    SCOPED_TRACE(i);
    ExpectSameReading(back->readings[i], b.readings[i]);
  }
  ASSERT_EQ(back->windows.size(), b.windows.size());
  for (size_t i = 0; i < b.windows.size(); ++i) {
    SCOPED_TRACE(i);
    ExpectSameWindow(back->windows[i], b.windows[i]);
  }
  ASSERT_EQ(back->quarantine.size(), 1u);
  EXPECT_EQ(back->quarantine[0].raw, q.raw);
  ASSERT_EQ(back->late.size(), 1u);
  ExpectSameReading(back->late[0].reading, l.reading);
  ASSERT_EQ(back->alerts.size(), 1u);
  EXPECT_EQ(back->alerts[0].message, "high");

  // Constant columns are written once: far smaller than the rows.
  std::string rows;
  EncodeBatchRecords(b, rows);
  EXPECT_LT(bytes.size(), rows.size());
}

TEST(BatchCodecTest, ColumnsRejectTruncatedBytesAndUnknownSymbols) {
  Batch b;
  b.readings.push_back(testing::FullReading());
  b.readings.push_back(testing::BareReading("n2", "no2", testing::kSinkT0, 3.5));
  b.windows.push_back(testing::FullWindowResult());
  std::string bytes;
  EncodeBatchColumns(b, bytes);
  for (size_t n : {size_t{0}, size_t{1}, bytes.size() / 2, bytes.size() - 1}) {
    Result<Batch> r = DecodeBatchColumns(std::string_view(bytes).substr(0, n));
    EXPECT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
  }
  // The device column (after two 8-byte time columns) names an id never interned.
  Batch one;
  one.readings.push_back(testing::FullReading());
  std::string single;
  EncodeBatchColumns(one, single);
  const size_t device_at = 1 + 4 + 2 * (1 + 8) + 1;
  const auto missing = static_cast<uint32_t>(InternedCount() + 1000);
  std::memcpy(single.data() + device_at, &missing, 4);
  Result<Batch> r = DecodeBatchColumns(single);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
  // Rows are not columns.
  std::string rows;
  EncodeBatchRecords(b, rows);
  EXPECT_FALSE(DecodeBatchColumns(rows).ok());
}

}  // namespace
}  // namespace tributary
