// Moran's I against cases computed by hand from the definition (Moran 1950) and the
// normality variance of Cliff & Ord (1981), the checkerboard extreme (I = −1), and a
// published example computed with R's ape.
#include "spatial/moran.h"

#include <gtest/gtest.h>

#include <cmath>

namespace tributary {
namespace {

std::vector<std::vector<double>> LineAdjacency(size_t n) {
  std::vector<std::vector<double>> w(n, std::vector<double>(n, 0));
  for (size_t i = 0; i + 1 < n; ++i) w[i][i + 1] = w[i + 1][i] = 1;
  return w;
}

TEST(MoranTest, GradientOnALineByHand) {
  // x = 1..5, neighbours on a line. Deviations −2..2, Σz² = 10, S0 = 8,
  // Σ w z z = 2·(2 + 0 + 0 + 2) = 8 → I = 5/8 · 8/10 = 0.5; E[I] = −0.25.
  // S1 = 16, S2 = 4 + 16 + 16 + 16 + 4 = 56 → Var = (25·16 − 5·56 + 3·64)/(24·64) − 1/16
  // = 0.140625, sd 0.375 → z = 0.75 / 0.375 = 2.
  MoranResult r = ComputeMoranWithWeights({1, 2, 3, 4, 5}, LineAdjacency(5));
  EXPECT_DOUBLE_EQ(r.i, 0.5);
  EXPECT_DOUBLE_EQ(r.expected, -0.25);
  EXPECT_NEAR(r.z, 2.0, 1e-12);
  // Local I_i = z_i · Σ_j w_ij z_j / (Σz²/n): I_1 = (−2)(−1)/2 = 1, I_3 = 0, I_5 = 1.
  ASSERT_EQ(r.local.size(), 5u);
  EXPECT_DOUBLE_EQ(r.local[0], 1.0);
  EXPECT_DOUBLE_EQ(r.local[2], 0.0);
  EXPECT_DOUBLE_EQ(r.local[4], 1.0);
}

TEST(MoranTest, CheckerboardIsPerfectlyNegative) {
  // 4 × 4 checkerboard with rook contiguity: every neighbour pair differs → I = −1.
  const int n = 4;
  std::vector<double> x;
  std::vector<std::vector<double>> w(n * n, std::vector<double>(n * n, 0));
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < n; ++c) {
      x.push_back((r + c) % 2);
      int i = r * n + c;
      if (c + 1 < n) w[i][i + 1] = w[i + 1][i] = 1;
      if (r + 1 < n) w[i][i + n] = w[i + n][i] = 1;
    }
  }
  EXPECT_NEAR(ComputeMoranWithWeights(x, w).i, -1.0, 1e-12);
  // Two halves (left 0, right 1): strongly positive.
  for (int r = 0; r < n; ++r) {
    for (int c = 0; c < n; ++c) x[r * n + c] = c < n / 2 ? 0 : 1;
  }
  EXPECT_GT(ComputeMoranWithWeights(x, w).i, 0.5);
}

TEST(MoranTest, DistanceBandAndKNearestFromPositions) {
  // Five sensors 1 km apart along the equator: a 1.5 km band is the line adjacency.
  std::vector<SensorValue> s;
  for (int i = 0; i < 5; ++i) s.push_back({0, i * 1000.0 / (6371008.8 * M_PI / 180), i + 1.0});
  MoranResult band = ComputeMoran(s, {MoranWeights::kDistanceBand, 1500, 0});
  EXPECT_NEAR(band.i, 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(band.s0, 8);
  // k = 1, row-standardised: ends pick their only neighbour, the middle ones pick the
  // lower index on ties → pairs (1→2),(2→1),(3→2),(4→3),(5→4); Σ w z z = 2+2+0+0+2 = 6
  // over S0 = 5 → I = 5/5 · 6/10 = 0.6.
  MoranResult knn = ComputeMoran(s, {MoranWeights::kKNearest, 0, 1});
  EXPECT_NEAR(knn.i, 0.6, 1e-12);
  // Too few sensors or no variance: no value.
  EXPECT_TRUE(std::isnan(ComputeMoran({s[0], s[1]}, {}).i));
  for (auto& v : s) v.value = 7;
  EXPECT_TRUE(std::isnan(ComputeMoran(s, {MoranWeights::kDistanceBand, 1500, 0}).i));
}

// A published example: the 8 × 8 "chess pattern" of the Cross Validated question "Why is
// Moran's I not equal to −1 in perfectly dispersed point pattern" (Cross Validated,
// stats.stackexchange.com; the values in the question's R session), computed there with
// Moran.I of the R package ape (Paradis & Schliep), which row-standardises the
// inverse-distance weights it is given: observed I = −0.07775248, expected −0.01587302.
// (Its sd, 0.01499786, is the randomisation variance; ours is under normality, so z is
// not compared.) The values repeat 1,0,1,0,1,0,1,0, 0,1,0,1,0,1,0,1 down the columns of
// x = 1..8 (each repeated 8 times) and y = 1..8.
TEST(MoranTest, PublishedChessPatternWithInverseDistanceWeights) {
  const int n = 64;
  const int pattern[16] = {1, 0, 1, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 1, 0, 1};
  std::vector<double> values(n), x(n), y(n);
  for (int i = 0; i < n; ++i) {
    values[i] = pattern[i % 16];
    x[i] = 1 + i / 8;
    y[i] = 1 + i % 8;
  }
  std::vector<std::vector<double>> w(n, std::vector<double>(n, 0));
  for (int i = 0; i < n; ++i) {
    double row = 0;
    for (int j = 0; j < n; ++j) {
      if (i != j) row += w[i][j] = 1 / std::hypot(x[i] - x[j], y[i] - y[j]);
    }
    for (int j = 0; j < n; ++j) w[i][j] /= row;  // row-standardised, as ape does
  }
  MoranResult m = ComputeMoranWithWeights(values, w);
  EXPECT_NEAR(m.i, -0.07775248, 5e-9);
  EXPECT_NEAR(m.expected, -0.01587302, 5e-9);
  EXPECT_NEAR(m.s0, 64, 1e-9);
  EXPECT_LT(m.z, -3);  // strongly dispersed either way
}

}  // namespace
}  // namespace tributary
