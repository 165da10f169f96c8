#include "stream/qc/qc.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "core/intern.h"
#include "ingest/time_zone.h"

namespace tributary {
namespace {

constexpr TimeUs kStart = 1714521600LL * 1000000;  // 2024-05-01T00:00:00Z
constexpr TimeUs kMinute = 60LL * 1000000;

Reading MakeReading(Symbol device, Symbol metric, TimeUs t, double v) {
  Reading r;
  r.device = device;
  r.metric = metric;
  r.event_time = t;
  r.arrival_time = t;
  r.value = v;
  return r;
}

// A diurnal temperature curve with sensor noise (σ = 0.2 °C), one reading a minute per
// device; a fraction of readings is replaced by spikes of ±(3..8) °C, marked
// SIMULATED_FAULT so detections can be scored.
TEST(QcOperatorTest, SpikeDetectionAndFalsePositiveRates) {
  std::mt19937 rng(14);
  std::normal_distribution<double> noise(0.0, 0.2);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  QcOperator op(DefaultQcOptions());
  Symbol metric = Intern("temperature");
  size_t faults = 0, detected = 0, clean = 0, false_pos = 0;
  for (int d = 0; d < 20; ++d) {
    Symbol device = Intern("aq-" + std::to_string(d));
    Batch batch;
    for (int i = 0; i < 2000; ++i) {
      double t_min = i;
      double v = 15.0 + 5.0 * std::sin(2 * M_PI * t_min / 1440.0) + noise(rng);
      Reading r = MakeReading(device, metric, kStart + i * kMinute, v);
      if (i > 30 && u(rng) < 0.01) {
        double size = 3.0 + 5.0 * u(rng);
        r.value += u(rng) < 0.5 ? size : -size;
        r.flags.Set(QcFlag::kSimulatedFault);
      }
      batch.readings.push_back(r);
    }
    ASSERT_TRUE(op.Process(batch).ok());
    ASSERT_EQ(batch.readings.size(), 2000u);  // never drops
    for (size_t i = 0; i < batch.readings.size(); ++i) {
      const Reading& r = batch.readings[i];
      bool fault = r.flags.Has(QcFlag::kSimulatedFault);
      bool hit = r.flags.Has(QcFlag::kSpike);
      if (fault) {
        ++faults;
        detected += hit;
        EXPECT_GE(batch.readings[i].qc_score, 1.0f);
      } else {
        ++clean;
        false_pos += hit;
      }
    }
  }
  double detection = static_cast<double>(detected) / static_cast<double>(faults);
  double fp = static_cast<double>(false_pos) / static_cast<double>(clean);
  std::printf("spike: %zu faults, detection %.4f, false positives %.5f of %zu clean\n", faults,
              detection, fp, clean);
  ASSERT_GT(faults, 200u);
  EXPECT_GE(detection, 0.9);
  EXPECT_LE(fp, 0.01);
}

// In a dense network only the nearest `neighbor_max` sensors with a recent value judge a
// reading: 32 sensors 100 m away agree with it, 60 more 1.5 km away (still within the
// radius) read far higher.
TEST(QcOperatorTest, NeighboursAreTheNearestWithARecentValue) {
  Symbol metric = Intern("pm25");
  auto judged = [&](size_t neighbor_max) {
    QcOptions o = DefaultQcOptions();
    o.neighbor_max = neighbor_max;
    QcOperator op(o);
    Batch batch;
    auto add = [&](const std::string& name, double dlat, TimeUs t, double v) {
      Reading r = MakeReading(Intern(name), metric, t, v);
      r.lat = 52.5 + dlat;
      r.lon = 13.4;
      batch.readings.push_back(r);
    };
    for (int i = 0; i < 32; ++i) add("near-" + std::to_string(i), 0.0009, kStart, 10.0 + i % 3);
    for (int i = 0; i < 60; ++i) add("far-" + std::to_string(i), 0.0135, kStart, 50.0 + i % 3);
    add("judged", 0.0, kStart + kMinute, 10.5);
    EXPECT_TRUE(op.Process(batch).ok());
    return batch.readings.back().flags.Has(QcFlag::kNeighborDisagreement);
  };
  EXPECT_FALSE(judged(32)) << "the 32 nearest agree";
  EXPECT_TRUE(judged(100)) << "all 92 neighbours: the median is the far sensors'";
}

// The spike ring is kept sorted; its median and MAD must equal those selected from the
// unsorted values (nth_element, as for the neighbours), ties, zeros and even counts
// included, and the sorted copy must follow the ring as values come and go.
TEST(QcOperatorTest, SortedRingStatisticsEqualSelection) {
  auto select_median = [](std::vector<double> v) {
    size_t mid = v.size() / 2;
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid), v.end());
    double m = v[mid];
    if (v.size() % 2 == 0) {
      m = (m + *std::max_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(mid))) / 2.0;
    }
    return m;
  };
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<int> small(-3, 3);
  std::normal_distribution<double> noise(20.0, 5.0);
  for (int trial = 0; trial < 2000; ++trial) {
    const size_t window = 1 + static_cast<size_t>(trial % 33);
    std::vector<double> ring;
    std::vector<double> sorted;
    size_t next = 0;
    for (int i = 0; i < 80; ++i) {
      double v = trial % 3 == 0 ? noise(rng) : static_cast<double>(small(rng)) * 0.5;
      if (trial % 3 == 1 && v == 0.0 && i % 2 == 0) v = -0.0;
      if (ring.size() < window) {
        ring.push_back(v);
        SortedInsert(sorted, v);
      } else {
        SortedErase(sorted, ring[next]);
        SortedInsert(sorted, v);
        ring[next] = v;
        next = (next + 1) % ring.size();
      }
      std::vector<double> expected = ring;
      std::sort(expected.begin(), expected.end());
      ASSERT_EQ(sorted, expected) << "trial " << trial << " reading " << i;
      const double m = select_median(ring);
      ASSERT_EQ(SortedMedian(sorted), m) << "trial " << trial << " reading " << i;
      std::vector<double> deviations;
      for (double x : ring) deviations.push_back(std::fabs(x - m));
      ASSERT_EQ(SortedMedianDeviation(sorted, m), select_median(deviations))
          << "trial " << trial << " reading " << i;
    }
  }
}

TEST(QcOperatorTest, FlatlineFlaggedFromTheNthIdenticalReading) {
  QcOptions options = DefaultQcOptions();
  options.defaults.flatline_count = 5;
  options.per_metric.clear();
  QcOperator op(options);
  Symbol device = Intern("sm-1"), metric = Intern("soil_moisture");
  Batch batch;
  for (int i = 0; i < 20; ++i) {
    double v = (i >= 10 && i < 16) ? 31.5 : 30.0 + 0.1 * i;  // stuck for six readings
    batch.readings.push_back(MakeReading(device, metric, kStart + i * kMinute, v));
  }
  ASSERT_TRUE(op.Process(batch).ok());
  for (int i = 0; i < 20; ++i) {
    bool expect = i >= 14 && i < 16;  // the 5th and 6th identical readings
    EXPECT_EQ(batch.readings[static_cast<size_t>(i)].flags.Has(QcFlag::kFlatline), expect) << i;
  }
}

TEST(QcOperatorTest, RateOfChangeAgainstThePhysicalLimit) {
  QcOperator op(DefaultQcOptions());  // temperature: 3 °C per minute
  Symbol device = Intern("ws-1"), metric = Intern("temperature");
  Batch batch;
  batch.readings.push_back(MakeReading(device, metric, kStart, 10.0));
  batch.readings.push_back(MakeReading(device, metric, kStart + kMinute, 12.5));       // 2.5/min
  batch.readings.push_back(MakeReading(device, metric, kStart + 2 * kMinute, 16.0));   // 3.5/min
  batch.readings.push_back(MakeReading(device, metric, kStart + 12 * kMinute, 22.0));  // 0.6/min
  ASSERT_TRUE(op.Process(batch).ok());
  EXPECT_FALSE(batch.readings[1].flags.Has(QcFlag::kRateOfChange));
  EXPECT_TRUE(batch.readings[2].flags.Has(QcFlag::kRateOfChange));
  EXPECT_FALSE(batch.readings[3].flags.Has(QcFlag::kRateOfChange));
  EXPECT_GT(batch.readings[2].qc_score, 1.0f);
  EXPECT_LT(batch.readings[3].qc_score, 1.0f);
}

// Baselines by local hour: a sensor's morning hour (08:00 in Berlin) is 07:00 UTC before
// the change to summer time on 2024-03-31 and 06:00 UTC after it. Kept by local hour,
// the baseline of 08:00 has ten days behind it and judges a high reading; kept by UTC
// hour, 06:00 has only three and does not judge yet.
TEST(QcOperatorTest, BaselinesFollowTheLocalHourAcrossDaylightSaving) {
  constexpr TimeUs kMar24 = 1711238400LL * 1000000;  // 2024-03-24T00:00:00Z
  constexpr TimeUs kDay = 24 * 60 * kMinute;
  constexpr TimeUs kHour = 60 * kMinute;
  const Symbol device = Intern("aq-tz"), metric = Intern("pm25");
  auto run = [&](const char* zone) {
    QcOptions o = DefaultQcOptions();
    o.baseline_zones = false;
    QcRule only_baseline;
    only_baseline.checks = static_cast<uint32_t>(QcCheck::kBaseline);
    o.rules.push_back(only_baseline);
    if (zone != nullptr) {
      Result<std::shared_ptr<const TimeZone>> tz = TimeZone::Load(zone);
      EXPECT_TRUE(tz.ok()) << tz.status().ToString();
      o.baseline_time_zone = *tz;
    }
    QcOperator op(o);
    Batch b;
    for (int d = 0; d < 10; ++d) {
      // 08:00 local: UTC + 1 h until 31 March 01:00 UTC, UTC + 2 h after.
      const TimeUs local8 = kMar24 + d * kDay + (d < 7 ? 7 : 6) * kHour;
      for (int i = 0; i < 20; ++i) {
        b.readings.push_back(MakeReading(device, metric, local8 + 3 * i * kMinute, 10 + i % 5));
      }
    }
    const TimeUs judged = kMar24 + 10 * kDay + 6 * kHour + 30 * kMinute;  // 08:30 local
    b.readings.push_back(MakeReading(device, metric, judged, 50));
    b.readings.push_back(MakeReading(device, metric, judged + 3 * kMinute, 11));
    EXPECT_TRUE(op.Process(b).ok());
    const Reading& high = b.readings[b.readings.size() - 2];
    const Reading& usual = b.readings.back();
    EXPECT_FALSE(usual.flags.Has(QcFlag::kBaselineExceeded));
    return high.flags.Has(QcFlag::kBaselineExceeded);
  };
  EXPECT_TRUE(run("Europe/Berlin"));
  EXPECT_FALSE(run(nullptr));
}

}  // namespace
}  // namespace tributary
