#include "stream/qc/iforest.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <set>
#include <utility>

#include "sim_readings.h"
#include "stream/checkpoint.h"

namespace tributary {
namespace {

constexpr TimeUs kStart = 1714521600LL * kMicrosPerSecond;  // 2024-05-01T00:00:00Z

TEST(IsolationForestTest, OutliersScoreHighAndTrainingIsDeterministic) {
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> rows;
  for (int i = 0; i < 1000; ++i) {
    float a = n(rng);
    rows.push_back(a);
    rows.push_back(2 * a + 0.1f * n(rng));  // correlated features
    rows.push_back(n(rng));
  }
  IsolationForest::Options o;
  o.trees = 64;
  o.sample_size = 256;
  o.seed = 9;
  IsolationForest f = IsolationForest::Train(rows, 3, o);
  IsolationForest g = IsolationForest::Train(rows, 3, o);
  ASSERT_TRUE(f.trained());
  EXPECT_EQ(f.trees(), 64u);
  const float inlier[] = {0.2f, 0.4f, -0.1f};
  const float far[] = {6.0f, 12.0f, 0.0f};
  // Each value ordinary on its own, their combination is not: a = 1 but the second
  // feature says a = −1.
  const float broken[] = {1.0f, -2.0f, 0.0f};
  EXPECT_EQ(f.Score(inlier), g.Score(inlier));
  EXPECT_EQ(f.Score(broken), g.Score(broken));
  std::printf("iforest: inlier %.3f, far %.3f, broken correlation %.3f\n", f.Score(inlier),
              f.Score(far), f.Score(broken));
  EXPECT_LT(f.Score(inlier), 0.5);
  EXPECT_GT(f.Score(far), 0.7);
  // Axis-parallel splits see a broken correlation only weakly (a known limit of the
  // isolation forest): higher than an inlier, far below a point out of range.
  EXPECT_GT(f.Score(broken), f.Score(inlier));
  // Another seed gives another forest.
  o.seed = 10;
  EXPECT_NE(IsolationForest::Train(rows, 3, o).Score(inlier), f.Score(inlier));
  // Encoding round trip.
  CheckpointWriter w;
  f.Encode(w);
  CheckpointReader r(w.bytes());
  IsolationForest h = IsolationForest::Decode(r);
  ASSERT_TRUE(r.status().ok());
  EXPECT_EQ(h.Score(broken), f.Score(broken));
  EXPECT_FALSE(IsolationForest::Train({}, 3, o).trained());
  EXPECT_TRUE(std::isnan(IsolationForest{}.Score(inlier)));
}

TEST(IsolationForestTest, NormaliserMatchesTheHarmonicSeries) {
  // c(n) = 2 H(n−1) − 2 (n−1)/n, with H the exact harmonic number for small n.
  double h = 0;
  for (int i = 1; i < 256; ++i) h += 1.0 / i;
  double exact = 2 * h - 2.0 * 255 / 256;
  EXPECT_NEAR(IsolationPathNormaliser(256), exact, 0.01);
  EXPECT_EQ(IsolationPathNormaliser(1), 0);
  EXPECT_EQ(IsolationPathNormaliser(2), 1);
}

// A score is the mean path length over the trees, whatever the node layout: a forest of
// one split (x < 0.5 left, else right) and two leaves scores by hand.
TEST(IsolationForestTest, DecodedForestScoresByHandAndCorruptNodesAreRejected) {
  auto encode = [](uint64_t right) {
    CheckpointWriter w;
    w.U64(1);    // dims
    w.F64(1.0);  // normaliser
    w.U64(1);    // one tree, rooted at node 0
    w.U64(0);
    w.U64(3);  // nodes: value, right child (absolute, 0 = leaf), feature, leaf size
    for (auto [value, r] : {std::pair<double, uint64_t>{0.5, right}, {1.0, 0}, {3.0, 0}}) {
      w.F64(value);
      w.U64(r);
      w.U64(0);
      w.U64(0);
    }
    return w;
  };
  CheckpointWriter good = encode(2);
  CheckpointReader r(good.bytes());
  IsolationForest f = IsolationForest::Decode(r);
  ASSERT_TRUE(r.status().ok());
  const float low[] = {0.2f}, high[] = {0.9f};
  EXPECT_DOUBLE_EQ(f.Score(low), std::exp2(-1.0));
  EXPECT_DOUBLE_EQ(f.Score(high), std::exp2(-3.0));
  // A right child outside the tree (or before its left child) must not be walked.
  for (uint64_t bad : {1u, 3u, 7u}) {
    CheckpointWriter w = encode(bad);
    CheckpointReader rd(w.bytes());
    IsolationForest g = IsolationForest::Decode(rd);
    EXPECT_FALSE(rd.status().ok()) << bad;
    EXPECT_FALSE(g.trained());
  }
}

AnomalyOptions TestOptions() {
  AnomalyOptions o;
  o.enabled = true;
  for (const char* m : {"pm25", "pm10", "no2", "temperature", "humidity"}) {
    o.metrics.push_back(Intern(m));
  }
  o.devices = {"aq-*"};
  o.history = 1440;
  o.forest.trees = 100;
  o.forest.sample_size = 256;
  o.min_samples = 1440;  // a whole day, so the first model knows the diurnal cycle
  o.retrain_every = 12 * kMicrosPerHour;
  o.shadow = kMicrosPerHour;
  o.threshold = 0.66;
  return o;
}

// Two simulated days of a city network (air-quality nodes report pm25, pm10, no2,
// temperature and humidity each minute). After the first 12 h, one message in 200 of an
// air-quality node gets a multivariate fault: its PM2.5 is raised to 2.5 × its PM10
// (physically impossible, PM2.5 is part of PM10) and its humidity dropped by 40 points.
// Each value alone stays within the network's ranges; the combination does not.
struct AnomalyScenario {
  std::vector<Reading> stream;
  size_t faulted_messages = 0;
};

AnomalyScenario MakeScenario() {
  SimulatorOptions so;
  so.seed = 21;
  so.devices = 24;
  so.start = kStart;
  so.duration = 3 * kMicrosPerDay;
  so.as_fast_as_possible = true;
  so.malformed_rate = 0;
  AnomalyScenario sc;
  sc.stream = testing::SimulatorReadings(so);
  std::mt19937 rng(17);
  std::uniform_real_distribution<double> u(0, 1);
  Symbol pm25 = Intern("pm25"), pm10 = Intern("pm10"), hum = Intern("humidity");
  Symbol temp = Intern("temperature");
  // Readings of one message are consecutive and share device and event time.
  for (size_t i = 0; i < sc.stream.size();) {
    size_t j = i;
    while (j < sc.stream.size() && sc.stream[j].device == sc.stream[i].device &&
           sc.stream[j].event_time == sc.stream[i].event_time) {
      ++j;
    }
    const Reading& first = sc.stream[i];
    bool aq = first.device.view().substr(0, 3) == "aq-";
    if (aq && first.event_time > kStart + kMicrosPerDay && u(rng) < 0.005) {
      double p10 = NAN;
      for (size_t k = i; k < j; ++k) {
        if (sc.stream[k].metric == pm10) p10 = sc.stream[k].value;
      }
      for (size_t k = i; k < j && std::isfinite(p10); ++k) {
        Reading& r = sc.stream[k];
        if (r.metric == pm25) r.value = 3 * p10;
        if (r.metric == hum) r.value = std::max(0.0, r.value - 40);
        if (r.metric == temp) r.value += 6;
        r.flags.Set(QcFlag::kSimulatedFault);
      }
      if (std::isfinite(p10)) ++sc.faulted_messages;
    }
    i = j;
  }
  return sc;
}

// The end of the message that holds stream[i - 1]: the pipeline never splits the
// readings of one message (same device and event time) over two batches.
size_t MessageEnd(const std::vector<Reading>& stream, size_t i) {
  while (i > 0 && i < stream.size() && stream[i].device == stream[i - 1].device &&
         stream[i].event_time == stream[i - 1].event_time) {
    ++i;
  }
  return i;
}

std::vector<Reading> RunAll(AnomalyOperator& op, const std::vector<Reading>& stream,
                            size_t from = 0, size_t to = SIZE_MAX) {
  std::vector<Reading> seen;
  to = std::min(to, stream.size());
  for (size_t i = from, end = 0; i < to; i = end) {
    end = std::min(to, MessageEnd(stream, std::min(to, i + 1000)));
    Batch b;
    b.readings.assign(stream.begin() + static_cast<std::ptrdiff_t>(i),
                      stream.begin() + static_cast<std::ptrdiff_t>(end));
    size_t n = b.readings.size();
    EXPECT_TRUE(op.Process(b).ok());
    EXPECT_EQ(b.readings.size(), n);  // never drops
    seen.insert(seen.end(), b.readings.begin(), b.readings.end());
  }
  return seen;
}

TEST(AnomalyOperatorTest, FlagsInjectedMultivariateFaultsWithFewFalsePositives) {
  AnomalyScenario sc = MakeScenario();
  AnomalyOperator op(TestOptions());
  std::vector<Reading> seen = RunAll(op, sc.stream);
  ASSERT_EQ(seen.size(), sc.stream.size());
  // A faulted message counts as detected when its last reading (whose vector holds the
  // whole message) is flagged; clean readings of the scored devices give the false
  // positives.
  Symbol hum = Intern("humidity");
  size_t faults = 0, detected = 0, clean = 0, false_pos = 0;
  for (size_t i = 0; i < seen.size(); ++i) {
    const Reading& r = seen[i];
    EXPECT_EQ(r.value, sc.stream[i].value);  // values untouched
    if (std::isnan(r.prov.anomaly_score)) {
      EXPECT_FALSE(r.flags.Has(QcFlag::kAnomaly));
      continue;
    }
    bool fault = r.flags.Has(QcFlag::kSimulatedFault);
    bool hit = r.flags.Has(QcFlag::kAnomaly);
    if (fault && r.metric == hum) {
      ++faults;
      detected += hit;
    } else if (!fault) {
      ++clean;
      false_pos += hit;
    }
  }
  double detection = static_cast<double>(detected) / static_cast<double>(faults);
  double fp = static_cast<double>(false_pos) / static_cast<double>(clean);
  std::printf(
      "iforest: %zu faulted messages scored, detection %.3f; false positives %.4f of "
      "%zu clean readings; %llu models trained, %llu promoted (last agreement %.3f)\n",
      faults, detection, fp, clean, static_cast<unsigned long long>(op.stats().trained),
      static_cast<unsigned long long>(op.stats().promoted), op.stats().last_agreement);
  ASSERT_GT(faults, 50u);
  EXPECT_GE(detection, 0.75);
  EXPECT_LE(fp, 0.04);
  // Retraining on schedule with a shadow period: candidates were trained and took over,
  // and they largely agreed with the models they replaced.
  EXPECT_GT(op.stats().promoted, 0u);
  EXPECT_GT(op.stats().trained, op.stats().promoted);
  EXPECT_GT(op.stats().last_agreement, 0.9);
  // Devices outside `devices` are never scored.
  for (const Reading& r : seen) {
    if (r.device.view().substr(0, 3) != "aq-") {
      ASSERT_TRUE(std::isnan(r.prov.anomaly_score));
    }
  }
}

TEST(AnomalyOperatorTest, SameInputSameFlagsAndSnapshotRestoreContinuesIdentically) {
  AnomalyScenario sc = MakeScenario();
  const size_t cut = MessageEnd(sc.stream, sc.stream.size() / 2);
  AnomalyOperator a(TestOptions());
  std::vector<Reading> first = RunAll(a, sc.stream, 0, cut);
  CheckpointWriter w;
  ASSERT_TRUE(a.Snapshot(w).ok());
  AnomalyOperator b(TestOptions());
  CheckpointReader rd(w.bytes());
  ASSERT_TRUE(b.Restore(rd).ok());
  ASSERT_TRUE(rd.at_end());
  std::vector<Reading> rest_a = RunAll(a, sc.stream, cut);
  std::vector<Reading> rest_b = RunAll(b, sc.stream, cut);
  ASSERT_EQ(rest_a.size(), rest_b.size());
  size_t scored = 0;
  for (size_t i = 0; i < rest_a.size(); ++i) {
    ASSERT_EQ(rest_a[i].flags.bits, rest_b[i].flags.bits) << i;
    bool na = std::isnan(rest_a[i].prov.anomaly_score);
    ASSERT_EQ(na, std::isnan(rest_b[i].prov.anomaly_score));
    if (!na) {
      ASSERT_EQ(rest_a[i].prov.anomaly_score, rest_b[i].prov.anomaly_score);
      ++scored;
    }
  }
  EXPECT_GT(scored, 10000u);
  // A second operator over the whole input gives the same flags (seeded, no wall clock).
  AnomalyOperator c(TestOptions());
  std::vector<Reading> all = RunAll(c, sc.stream);
  for (size_t i = 0; i < rest_a.size(); ++i) {
    ASSERT_EQ(all[cut + i].flags.bits, rest_a[i].flags.bits);
  }
}

TEST(AnomalyOperatorTest, ConfigNeedsTwoKnownMetrics) {
  auto parse = [](const std::string& yaml) {
    return ParsePipelineConfig(
        "sources:\n  - {name: s, type: simulator}\nsinks:\n  - {name: l, type: sqlite}\n" + yaml,
        "<test>");
  };
  auto ok = parse("anomaly:\n  iforest: {enabled: true, metrics: [pm25, pm10], shadow: 0s}\n");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  auto o = ReadAnomalyOptions(*ok);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->metrics.size(), 2u);
  EXPECT_EQ(o->shadow, 0);
  auto one = parse("anomaly:\n  iforest: {enabled: true, metrics: [pm25]}\n");
  ASSERT_TRUE(one.ok());
  EXPECT_FALSE(ReadAnomalyOptions(*one).ok());
  auto unknown = parse("anomaly:\n  iforest: {enabled: true, metrics: [pm25, nope]}\n");
  ASSERT_TRUE(unknown.ok());
  EXPECT_FALSE(ReadAnomalyOptions(*unknown).ok());
  auto typo = parse("anomaly:\n  iforest: {enabled: true, metric: [pm25, pm10]}\n");
  ASSERT_TRUE(typo.ok());
  EXPECT_FALSE(ReadAnomalyOptions(*typo).ok());
}

}  // namespace
}  // namespace tributary
