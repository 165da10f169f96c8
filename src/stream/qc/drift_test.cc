#include "stream/qc/drift.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <random>

#include "sim_readings.h"
#include "stream/checkpoint.h"

namespace tributary {
namespace {

constexpr TimeUs kStart = 1714521600LL * kMicrosPerSecond;  // 2024-05-01T00:00:00Z

TEST(DriftFitTest, ExactLineAndRobustnessToOutliers) {
  std::vector<double> x, y;
  for (int i = 0; i < 50; ++i) {
    x.push_back(i);
    y.push_back(2.0 + 0.8 * i);
  }
  DriftFit ols = FitDriftLine(x, y, DriftFitMethod::kOls);
  DriftFit ts = FitDriftLine(x, y, DriftFitMethod::kTheilSen);
  EXPECT_NEAR(ols.slope, 0.8, 1e-12);
  EXPECT_NEAR(ols.offset, 2.0, 1e-9);
  EXPECT_NEAR(ts.slope, 0.8, 1e-12);
  EXPECT_NEAR(ts.offset, 2.0, 1e-9);
  // Five wild hours (a sensor fault) pull least squares away, not Theil–Sen.
  for (int i = 0; i < 5; ++i) y[static_cast<size_t>(i * 10 + 3)] += 200;
  ols = FitDriftLine(x, y, DriftFitMethod::kOls);
  ts = FitDriftLine(x, y, DriftFitMethod::kTheilSen);
  EXPECT_GT(std::fabs(ols.offset - 2.0) + std::fabs(ols.slope - 0.8), 1.0);
  EXPECT_NEAR(ts.slope, 0.8, 0.02);
  EXPECT_NEAR(ts.offset, 2.0, 1.0);
  // A reference that never varies cannot be fitted.
  EXPECT_TRUE(std::isnan(FitDriftLine({1, 1, 1}, {2, 3, 4}, DriftFitMethod::kTheilSen).slope));
}

// A simulated city (six days, readings every five minutes). Eight air-quality nodes act
// as reference stations; beside each sits a low-cost twin "lc-<id>" reading 1.3 × the
// reference + 2 µg/m³ + noise. From day 3 the gain of four twins decays linearly to 35 %
// below its start by day 6 (sensor ageing); the other four stay as they are.
struct DriftScenario {
  std::vector<Reading> stream;        // references and twins interleaved, in arrival order
  std::vector<std::string> drifting;  // twin ids
  std::vector<std::string> stable;
};

DriftScenario MakeScenario() {
  SimulatorOptions so;
  so.seed = 5;
  so.devices = 30;
  so.start = kStart;
  so.duration = 6 * kMicrosPerDay;
  so.interval = 5 * kMicrosPerMinute;
  so.as_fast_as_possible = true;
  std::vector<SimDevice> devices;
  std::vector<Reading> sim = testing::SimulatorReadings(so, &devices);
  std::vector<std::string> refs;
  for (const SimDevice& d : devices) {
    if (d.type == DeviceType::kAirQuality && refs.size() < 8) refs.push_back(d.id);
  }
  DriftScenario sc;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < refs.size(); ++i) {
    index[refs[i]] = i;
    (i < 4 ? sc.drifting : sc.stable).push_back("lc-" + refs[i]);
  }
  std::mt19937 rng(7);
  std::normal_distribution<double> noise(0.0, 1.0);
  Symbol pm25 = Intern("pm25");
  for (const Reading& r : sim) {
    sc.stream.push_back(r);
    auto it = index.find(std::string(r.device.view()));
    if (it == index.end() || r.metric != pm25) continue;
    double days = static_cast<double>(r.event_time - kStart) / static_cast<double>(kMicrosPerDay);
    double gain = 1.3;
    if (it->second < 4 && days > 3) gain *= 1.0 - 0.35 * (days - 3) / 3;
    Reading twin = r;
    twin.device = Intern("lc-" + refs[it->second]);
    twin.value = gain * r.value + 2.0 + noise(rng);
    sc.stream.push_back(twin);
  }
  return sc;
}

DriftOptions TestOptions() {
  DriftOptions o;
  o.enabled = true;
  o.metrics = {Intern("pm25")};
  o.window = 48 * kMicrosPerHour;
  o.min_pairs = 24;
  o.slope_threshold = 0.15;
  o.severity = Intern("warning");
  return o;
}

ReferenceLookup TwinLookup() {
  return [](std::string_view device) -> std::string {
    return device.substr(0, 3) == "lc-" ? std::string(device.substr(3)) : std::string();
  };
}

std::vector<AlertEvent> RunAll(DriftOperator& op, std::vector<Reading> stream, size_t from = 0,
                               size_t to = SIZE_MAX, std::vector<Reading>* seen = nullptr) {
  std::vector<AlertEvent> alerts;
  to = std::min(to, stream.size());
  for (size_t i = from; i < to; i += 1000) {
    Batch b;
    b.readings.assign(stream.begin() + static_cast<std::ptrdiff_t>(i),
                      stream.begin() + static_cast<std::ptrdiff_t>(std::min(to, i + 1000)));
    size_t n = b.readings.size();
    EXPECT_TRUE(op.Process(b).ok());
    EXPECT_EQ(b.readings.size(), n);  // never drops
    for (AlertEvent& a : b.alerts) alerts.push_back(a);
    if (seen != nullptr) seen->insert(seen->end(), b.readings.begin(), b.readings.end());
  }
  return alerts;
}

TEST(DriftOperatorTest, DetectsDriftingTwinsAndNotStableOnes) {
  DriftScenario sc = MakeScenario();
  DriftOperator op(TestOptions(), TwinLookup(), {});
  std::vector<AlertEvent> alerts = RunAll(op, sc.stream);
  std::map<std::string, TimeUs> fired;
  for (const AlertEvent& a : alerts) {
    EXPECT_EQ(a.rule.view(), "recalibration");
    EXPECT_EQ(a.kind.view(), "calibration_drift");
    EXPECT_EQ(a.metric.view(), "pm25");
    if (a.state == AlertState::kFiring) fired.emplace(std::string(a.key.view()), a.fired_at);
  }
  size_t detected = 0, false_pos = 0;
  for (const std::string& d : sc.drifting) {
    auto it = fired.find(d);
    if (it == fired.end()) continue;
    ++detected;
    double delay_h = static_cast<double>(it->second - (kStart + 3 * kMicrosPerDay)) /
                     static_cast<double>(kMicrosPerHour);
    std::printf("drift: %s fired %.1f h after the drift began\n", d.c_str(), delay_h);
    EXPECT_GT(delay_h, 0);  // not before the drift existed
  }
  for (const std::string& d : sc.stable) false_pos += fired.count(d);
  std::printf("drift: detection %zu/%zu drifting pairs, false positives %zu/%zu stable pairs\n",
              detected, sc.drifting.size(), false_pos, sc.stable.size());
  EXPECT_EQ(detected, sc.drifting.size());
  EXPECT_EQ(false_pos, 0u);
  // Baselines near the twins' true calibration (1.3 × reference + 2).
  for (const DriftPairStatus& p : op.Pairs()) {
    ASSERT_TRUE(p.has_baseline) << p.sensor.view();
    EXPECT_NEAR(p.baseline.slope, 1.3, 0.1) << p.sensor.view();
  }
}

TEST(DriftOperatorTest, CorrectionMapsOntoTheReferenceAndIsRecorded) {
  DriftScenario sc = MakeScenario();
  DriftOptions o = TestOptions();
  o.apply_correction = true;
  DriftOperator op(o, TwinLookup(), {});
  std::vector<Reading> seen;
  RunAll(op, sc.stream, 0, SIZE_MAX, &seen);
  // On the last day, compare each twin reading with the reference reading it copied.
  std::map<std::pair<uint32_t, TimeUs>, double> ref;
  Symbol pm25 = Intern("pm25");
  for (const Reading& r : sc.stream) {
    if (r.metric == pm25 && r.device.view().substr(0, 3) != "lc-") {
      ref[{r.device.id, r.event_time}] = r.value;
    }
  }
  size_t corrected = 0;
  double err_corrected = 0, err_raw = 0;
  for (size_t i = 0; i < seen.size(); ++i) {
    const Reading& r = seen[i];
    if (r.device.view().substr(0, 3) != "lc-" || r.event_time < kStart + 5 * kMicrosPerDay) {
      continue;
    }
    ASSERT_TRUE(r.flags.Has(QcFlag::kDriftCorrected));
    ASSERT_NE(r.prov.drift_correction.view().find("slope="), std::string_view::npos);
    ASSERT_NE(r.prov.drift_correction.view().find("ref="), std::string_view::npos);
    double truth = ref.at({Intern(r.device.view().substr(3)).id, r.event_time});
    err_corrected += std::fabs(r.value - truth);
    err_raw += std::fabs(sc.stream[i].value - truth);
    ++corrected;
  }
  ASSERT_GT(corrected, 1000u);
  err_corrected /= static_cast<double>(corrected);
  err_raw /= static_cast<double>(corrected);
  std::printf("drift correction: mean |error| %.2f raw, %.2f corrected (%zu readings)\n", err_raw,
              err_corrected, corrected);
  EXPECT_LT(err_corrected, 0.5 * err_raw);
  // Provenance JSON carries the fit.
  const Reading* twin = nullptr;
  for (const Reading& r : seen) {
    if (r.device.view().substr(0, 3) == "lc-") twin = &r;
  }
  ASSERT_NE(twin, nullptr);
  std::string json = ProvenanceToJson(twin->prov, twin->device, twin->flags);
  EXPECT_NE(json.find("\"drift_correction\":\"slope="), std::string::npos) << json;
  EXPECT_NE(json.find("DRIFT_CORRECTED"), std::string::npos) << json;
}

TEST(DriftOperatorTest, SnapshotRestoreContinuesIdentically) {
  DriftScenario sc = MakeScenario();
  size_t half = sc.stream.size() * 3 / 5;
  DriftOperator a(TestOptions(), TwinLookup(), {});
  RunAll(a, sc.stream, 0, half);
  CheckpointWriter w;
  ASSERT_TRUE(a.Snapshot(w).ok());
  DriftOperator b(TestOptions(), TwinLookup(), {});
  CheckpointReader rd(w.bytes());
  ASSERT_TRUE(b.Restore(rd).ok());
  ASSERT_TRUE(rd.at_end());
  std::vector<AlertEvent> from_a = RunAll(a, sc.stream, half);
  std::vector<AlertEvent> from_b = RunAll(b, sc.stream, half);
  ASSERT_FALSE(from_a.empty());
  ASSERT_EQ(from_a.size(), from_b.size());
  for (size_t i = 0; i < from_a.size(); ++i) {
    EXPECT_EQ(from_a[i].key, from_b[i].key);
    EXPECT_EQ(from_a[i].fired_at, from_b[i].fired_at);
    EXPECT_EQ(from_a[i].message, from_b[i].message);
  }
  CheckpointReader bad(std::string_view(w.bytes()).substr(0, w.size() / 2));
  DriftOperator c(TestOptions(), TwinLookup(), {});
  EXPECT_FALSE(c.Restore(bad).ok());
}

}  // namespace
}  // namespace tributary
