#include "stream/aggregates.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <random>

namespace tributary {
namespace {

double Sum(const std::vector<double>& v) {
  ExactSum s;
  for (double x : v) s.Add(x);
  return s.Value();
}

TEST(ExactSumTest, CancellationIsExact) {
  EXPECT_EQ(Sum({}), 0.0);
  EXPECT_EQ(Sum({1e16, 1.0, -1e16}), 1.0);
  EXPECT_EQ(Sum({1e100, 1.0, -1e100, 1e-100}), 1.0);
  EXPECT_EQ(Sum(std::vector<double>(10, 0.1)), 1.0);  // naive summation gives 0.9999999999999999
  // Half-even rounding across partials (Python's fsum test case).
  EXPECT_EQ(Sum({1e-16, 1.0, 1e16}), 10000000000000002.0);
}

TEST(ExactSumTest, MatchesIntegerReferenceInAnyOrder) {
  // Values k / 1024 with |k| <= 2^50: 5000 of them sum exactly in 64-bit integers.
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int64_t> k(-(int64_t{1} << 50), int64_t{1} << 50);
  std::vector<double> v;
  int64_t total = 0;
  for (int i = 0; i < 5000; ++i) {
    int64_t x = k(rng) >> (i % 40);  // mixed magnitudes
    total += x;
    v.push_back(static_cast<double>(x) / 1024.0);
  }
  const double expected = static_cast<double>(total) / 1024.0;
  const double first = Sum(v);
  EXPECT_EQ(first, expected);
  for (int round = 0; round < 10; ++round) {
    std::shuffle(v.begin(), v.end(), rng);
    EXPECT_EQ(std::bit_cast<uint64_t>(Sum(v)), std::bit_cast<uint64_t>(first));
  }
}

TEST(ExactSumTest, SpillsToHeapAndCopies) {
  ExactSum s;
  std::vector<double> v;
  for (int e = -300; e <= 300; e += 60) v.push_back(std::ldexp(1.0, e) * 1.5);
  for (double x : v) s.Add(x);
  EXPECT_GT(s.partials().size(), 4u);  // non-overlapping terms cannot merge
  EXPECT_GT(s.HeapBytes(), 0u);
  ExactSum copy(s);
  ExactSum moved(std::move(copy));
  ExactSum assigned;
  assigned = moved;
  for (double x : v) assigned.Add(-x);
  EXPECT_EQ(assigned.Value(), 0.0);
  EXPECT_EQ(moved.Value(), s.Value());
  ExactSum doubled(s);
  doubled.Add(doubled);  // self-add
  EXPECT_EQ(doubled.Value(), 2.0 * s.Value());
}

TEST(ExactSumTest, ExpansionHelpers) {
  std::vector<double> p;
  AddToExpansion(p, 1e16);
  AddToExpansion(p, 1.0);
  AddToExpansion(p, -1e16);
  EXPECT_EQ(RoundExpansion(p), 1.0);
}

Reading R(TimeUs t, double v, std::string_view device = "d") {
  Reading r;
  r.event_time = t;
  r.value = v;
  r.device = Intern(device);
  return r;
}

AggregateSet All() {
  AggregateSet s;
  for (AggregateKind k : {AggregateKind::kCount, AggregateKind::kMean, AggregateKind::kMin,
                          AggregateKind::kMax, AggregateKind::kStd}) {
    s.Add(k);
  }
  return s;
}

TEST(WindowAccumulatorTest, Statistics) {
  WindowAccumulator acc;
  for (double v : {2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0}) acc.Add(R(0, v));
  WindowResult w;
  acc.Fill(All(), w);
  EXPECT_EQ(w.count, 8u);
  EXPECT_EQ(w.mean, 5.0);
  EXPECT_EQ(w.min, 2.0);
  EXPECT_EQ(w.max, 9.0);
  EXPECT_EQ(w.std, std::sqrt(32.0 / 7.0));  // sample std, exact Σ(x − mean)² = 32
  EXPECT_EQ(w.distinct_sensors, 1u);
  EXPECT_TRUE(std::isnan(w.centroid_lat));
}

TEST(WindowAccumulatorTest, StdHasNoCancellation) {
  // A large mean with a tiny spread: sum-of-squares formulas in doubles lose every
  // digit here; the exact evaluation does not.
  WindowAccumulator constant, spread;
  for (int i = 0; i < 1000; ++i) {
    constant.Add(R(i, 101325.1));
    spread.Add(R(i, 1e9 + (i % 2 ? 0.001 : -0.001)));
  }
  WindowResult a, b;
  constant.Fill(All(), a);
  spread.Fill(All(), b);
  EXPECT_EQ(a.std, 0.0);
  EXPECT_EQ(a.mean, 101325.1);
  // The doubles nearest 1e9 ± 0.001 are 1e9 ± d, symmetric (same spacing on both sides).
  const double d = 1e9 + 0.001 - 1e9;
  EXPECT_NEAR(b.std, d * std::sqrt(1000.0 / 999.0), 1e-15);
  EXPECT_EQ(b.mean, 1e9);
}

TEST(WindowAccumulatorTest, SingleValueHasNoStd) {
  WindowAccumulator acc;
  acc.Add(R(0, 3.0));
  WindowResult w;
  acc.Fill(All(), w);
  EXPECT_EQ(w.count, 1u);
  EXPECT_EQ(w.mean, 3.0);
  EXPECT_TRUE(std::isnan(w.std));
}

TEST(WindowAccumulatorTest, FirstLastTiesAndSignedZerosAreOrderIndependent) {
  std::vector<Reading> rs = {R(5, 1.0), R(5, 3.0), R(9, 2.0), R(9, 7.0), R(7, -0.0), R(7, 0.0)};
  std::mt19937_64 rng(3);
  for (int round = 0; round < 20; ++round) {
    std::shuffle(rs.begin(), rs.end(), rng);
    WindowAccumulator acc;
    for (const Reading& r : rs) acc.Add(r);
    WindowResult w;
    acc.Fill(All(), w);
    EXPECT_EQ(w.first, 1.0);  // earliest time, smallest value
    EXPECT_EQ(w.last, 7.0);   // latest time, largest value
    EXPECT_EQ(w.min, -0.0);
    EXPECT_TRUE(std::signbit(w.min));
    EXPECT_EQ(w.max, 7.0);
  }
  WindowAccumulator zeros;
  zeros.Add(R(1, 0.0));
  zeros.Add(R(1, -0.0));
  WindowResult w;
  zeros.Fill(All(), w);
  EXPECT_TRUE(std::signbit(w.min));
  EXPECT_FALSE(std::signbit(w.max));
}

TEST(WindowAccumulatorTest, DistinctSensorsCentroidAndMerge) {
  WindowAccumulator a, b;
  Reading r1 = R(1, 1.0, "s1");
  r1.lat = 50;
  r1.lon = 10;
  Reading r2 = R(2, 2.0, "s2");
  r2.lat = 52;
  r2.lon = 12;
  Reading r3 = R(3, 3.0, "s1");
  Reading r4 = R(4, 4.0, "s3");
  r4.lat = 48;
  r4.lon = 14;
  a.Add(r1);
  a.Add(r2);
  a.Add(r3);
  b.Add(r4);
  b.Add(r1);
  WindowResult wa;
  a.Fill(All(), wa);
  EXPECT_EQ(wa.distinct_sensors, 2u);
  EXPECT_EQ(wa.centroid_lat, 51.0);
  EXPECT_EQ(wa.centroid_lon, 11.0);
  a.Merge(b);
  WindowResult m;
  a.Fill(All(), m);
  EXPECT_EQ(m.count, 5u);
  EXPECT_EQ(m.distinct_sensors, 3u);
  EXPECT_EQ(m.mean, 11.0 / 5.0);
  EXPECT_EQ(m.first, 1.0);
  EXPECT_EQ(m.last, 4.0);
  EXPECT_EQ(m.centroid_lat, 50.0);  // (50 + 52 + 48 + 50) / 4
  EXPECT_EQ(m.centroid_lon, 11.5);  // (10 + 12 + 14 + 10) / 4
  // Merging in the other order gives the same row.
  WindowAccumulator c, d;
  c.Add(r4);
  c.Add(r1);
  d.Add(r1);
  d.Add(r2);
  d.Add(r3);
  c.Merge(d);
  WindowResult m2;
  c.Fill(All(), m2);
  EXPECT_EQ(std::bit_cast<uint64_t>(m2.std), std::bit_cast<uint64_t>(m.std));
  EXPECT_EQ(m2.distinct_sensors, 3u);
  EXPECT_EQ(m2.first, m.first);
  EXPECT_EQ(m2.last, m.last);
}

TEST(WindowAccumulatorTest, NonFiniteIsRejected) {
  WindowAccumulator acc;
  EXPECT_FALSE(acc.Add(R(0, NAN)));
  EXPECT_FALSE(acc.Add(R(0, INFINITY)));
  EXPECT_TRUE(acc.Add(R(0, 1.0)));
  EXPECT_EQ(acc.count(), 1u);
}

TEST(AggregateNamesTest, ParseAndMethod) {
  auto set = ParseAggregates({"mean", "std", "first", "centroid"});
  ASSERT_TRUE(set.ok());
  EXPECT_TRUE(set->Has(AggregateKind::kCount));  // always
  EXPECT_TRUE(set->Has(AggregateKind::kStd));
  EXPECT_FALSE(set->Has(AggregateKind::kMin));
  EXPECT_EQ(AggregationMethodName(*set), "mean");
  EXPECT_EQ(AggregationMethodName(*ParseAggregates({"max"})), "max");
  EXPECT_EQ(AggregationMethodName(*ParseAggregates({})), "count");

  EXPECT_EQ(AggregationMethodName(*ParseAggregates({"median", "p95"})), "median");
  EXPECT_EQ(AggregationMethodName(*ParseAggregates({"trimmed_mean", "max"})), "trimmed_mean_10_90");
  EXPECT_EQ(AggregationMethodName(*ParseAggregates({"mean", "nowcast"})), "nowcast");

  auto q = ParseAggregates({"p90", "q25", "p99.9", "q50", "q95", "p90", "median", "late_count"});
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_TRUE(q->Has(AggregateKind::kMedian));
  EXPECT_TRUE(q->Has(AggregateKind::kP95));
  EXPECT_TRUE(q->Has(AggregateKind::kQuantile));
  EXPECT_EQ(q->quantiles, (std::vector<double>{0.25, 0.9, 0.999}));
  EXPECT_TRUE(q->NeedsValues());
  EXPECT_FALSE(set->NeedsValues());

  for (const char* bad : {"p", "p101", "q-5", "p9x", "p9.", "x50", "q<NN>"}) {
    auto r = ParseAggregates({bad});
    EXPECT_FALSE(r.ok()) << bad;
  }
  EXPECT_EQ(ParseQuantileName("p0"), 0.0);
  EXPECT_EQ(ParseQuantileName("q100"), 1.0);
  EXPECT_EQ(ParseQuantileName("p95"), 0.95);
  EXPECT_EQ(ParseQuantileName("p99.5"), 0.995);
  EXPECT_EQ(ParseQuantileName("mean"), -1);

  auto unknown = ParseAggregates({"average"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown aggregate 'average'"), std::string::npos);
  EXPECT_NE(unknown.status().message().find("median, p95"), std::string::npos);
}

}  // namespace
}  // namespace tributary

namespace tributary {
namespace {

// Hyndman & Fan type 7 on a fully sorted copy: the reference SelectQuantile must match.
double SortedQuantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double h = static_cast<double>(v.size() - 1) * q;
  const size_t lo = static_cast<size_t>(std::floor(h));
  if (lo + 1 >= v.size()) return v[lo];
  return v[lo] + (h - static_cast<double>(lo)) * (v[lo + 1] - v[lo]);
}

TEST(QuantileTest, MatchesSortedReferenceType7) {
  // numpy.quantile([1, 2, 3, 4], 0.5) == 2.5; ([1..10], 0.95) == 9.55 (default "linear").
  std::vector<double> four{4, 1, 3, 2};
  EXPECT_EQ(SelectQuantile(four, 0.5), 2.5);
  std::vector<double> ten{10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
  EXPECT_DOUBLE_EQ(SelectQuantile(ten, 0.95), 9.55);
  EXPECT_EQ(SelectQuantile(ten, 0.0), 1);
  EXPECT_EQ(SelectQuantile(ten, 1.0), 10);
  std::vector<double> one{7};
  EXPECT_EQ(SelectQuantile(one, 0.3), 7);
  std::vector<double> none;
  EXPECT_TRUE(std::isnan(SelectQuantile(none, 0.5)));

  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> unit(0, 1);
  for (int round = 0; round < 200; ++round) {
    const size_t n = 1 + static_cast<size_t>(unit(rng) * 300);
    std::vector<double> v(n);
    // Many ties: values on a coarse grid half of the time.
    for (double& x : v) x = round % 2 ? std::floor(unit(rng) * 8) : unit(rng) * 100 - 50;
    for (double q : {0.0, 0.1, 0.25, 0.5, 0.9, 0.95, 0.999, 1.0}) {
      std::vector<double> work = v;
      EXPECT_EQ(SelectQuantile(work, q), SortedQuantile(v, q)) << n << " " << q;
    }
  }
}

TEST(QuantileTest, AccumulatorOrderStatisticsAreOrderIndependent) {
  AggregateSet set = *ParseAggregates({"median", "p95", "p10", "q75", "trimmed_mean"});
  std::mt19937_64 rng(11);
  std::normal_distribution<double> noise(20, 5);
  std::vector<Reading> rs;
  for (int i = 0; i < 501; ++i) rs.push_back(R(i, noise(rng)));
  rs.push_back(R(600, 100.0));  // a saturation spike the trimmed mean drops
  rs.push_back(R(601, -0.0));
  rs.push_back(R(602, 0.0));
  std::vector<double> values;
  for (const Reading& r : rs) values.push_back(r.value);

  WindowResult reference;
  {
    WindowAccumulator acc;
    for (const Reading& r : rs) acc.Add(r, true);
    acc.Fill(set, reference);
  }
  EXPECT_EQ(reference.median, SortedQuantile(values, 0.5));
  EXPECT_EQ(reference.p95, SortedQuantile(values, 0.95));
  ASSERT_EQ(reference.quantiles.size(), 2u);
  EXPECT_EQ(reference.quantiles[0].first, 0.10);
  EXPECT_EQ(reference.quantiles[0].second, SortedQuantile(values, 0.10));
  EXPECT_EQ(reference.quantiles[1].first, 0.75);
  EXPECT_EQ(reference.quantiles[1].second, SortedQuantile(values, 0.75));
  // Trimmed mean: mean of Q(0.1) <= v <= Q(0.9), as the seed's polars expression.
  const double lo = SortedQuantile(values, 0.1), hi = SortedQuantile(values, 0.9);
  long double sum = 0;
  size_t kept = 0;
  for (double v : values) {
    if (v >= lo && v <= hi) {
      sum += v;
      ++kept;
    }
  }
  EXPECT_NEAR(reference.trimmed_mean, static_cast<double>(sum / kept), 1e-12);
  EXPECT_LT(reference.trimmed_mean, 20.5);

  for (int round = 0; round < 5; ++round) {
    std::shuffle(rs.begin(), rs.end(), rng);
    // Split in two accumulators and merge: same bits.
    WindowAccumulator a, b;
    for (size_t i = 0; i < rs.size(); ++i) (i % 3 ? a : b).Add(rs[i], true);
    a.Merge(b);
    WindowResult w;
    a.Fill(set, w);
    EXPECT_EQ(std::bit_cast<uint64_t>(w.median), std::bit_cast<uint64_t>(reference.median));
    EXPECT_EQ(std::bit_cast<uint64_t>(w.p95), std::bit_cast<uint64_t>(reference.p95));
    EXPECT_EQ(std::bit_cast<uint64_t>(w.trimmed_mean),
              std::bit_cast<uint64_t>(reference.trimmed_mean));
    EXPECT_EQ(w.quantiles, reference.quantiles);
    // Filling twice (values reordered by the first) gives the same row.
    WindowResult again;
    a.Fill(set, again);
    EXPECT_EQ(std::bit_cast<uint64_t>(again.median), std::bit_cast<uint64_t>(w.median));
  }
  // Without kept values the order statistics stay NaN.
  WindowAccumulator plain;
  plain.Add(R(0, 1.0));
  WindowResult w;
  plain.Fill(set, w);
  EXPECT_TRUE(std::isnan(w.median));
  EXPECT_GT(reference.count, 0u);
}

}  // namespace
}  // namespace tributary
