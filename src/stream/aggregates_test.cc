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

  auto planned = ParseAggregates({"p95"});
  ASSERT_FALSE(planned.ok());
  EXPECT_EQ(planned.status().message(),
            "aggregate 'p95' is not supported yet (supported: count, mean, min, max, std, first, "
            "last, distinct_sensors, centroid)");
  auto unknown = ParseAggregates({"average"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown aggregate 'average'"), std::string::npos);
  EXPECT_NE(unknown.status().message().find("planned: median, p95"), std::string::npos);
}

}  // namespace
}  // namespace tributary
