// Semivariogram: the Matheron estimator (bins centred on multiples of the lag) against a
// hand-computed transect, and the fit recovering known model parameters.
#include "spatial/variogram.h"

#include <gtest/gtest.h>

namespace tributary {
namespace {

double East(double m) {
  return m / (6371008.8 * M_PI / 180);
}

TEST(VariogramTest, EmpiricalByHand) {
  // z = 1, 3, 2, 5 at 0, 1, 2, 3 km on the equator, 1 km lags:
  // h = 1 km: (1,3) (3,2) (2,5) → (4 + 1 + 9) / (2·3) = 7/3
  // h = 2 km: (1,2) (3,5)       → (1 + 4) / (2·2)     = 5/4
  // h = 3 km: (1,5)             → 16 / 2               = 8
  std::vector<SensorValue> s = {
      {0, East(0), 1}, {0, East(1000), 3}, {0, East(2000), 2}, {0, East(3000), 5}};
  auto bins = EmpiricalVariogram(s, 1000, 3500);
  ASSERT_EQ(bins.size(), 3u);
  EXPECT_NEAR(bins[0].h, 1000, 1e-6);
  EXPECT_NEAR(bins[0].gamma, 7.0 / 3, 1e-12);
  EXPECT_EQ(bins[0].pairs, 3u);
  EXPECT_NEAR(bins[1].gamma, 1.25, 1e-12);
  EXPECT_NEAR(bins[2].gamma, 8.0, 1e-12);
}

TEST(VariogramTest, FitRecoversModelParameters) {
  for (VariogramModel m : {VariogramModel::kSpherical, VariogramModel::kExponential}) {
    VariogramFit truth;
    truth.model = m;
    truth.nugget = 1;
    truth.sill = 5;
    truth.range = 3000;
    truth.ok = true;
    std::vector<VariogramBin> bins;
    for (double h = 250; h <= 6000; h += 250) bins.push_back({h, truth.Gamma(h), 10});
    VariogramFit fit = FitVariogram(bins, m);
    ASSERT_TRUE(fit.ok);
    EXPECT_NEAR(fit.nugget, 1, 1e-3);
    EXPECT_NEAR(fit.sill, 5, 1e-3);
    EXPECT_NEAR(fit.range, 3000, 3);
    EXPECT_NEAR(fit.NuggetSillRatio(), 0.2, 1e-3);
  }
}

TEST(VariogramTest, PureNoiseHasAHighNuggetSillRatio) {
  // Flat semivariance: no spatial structure, all nugget.
  std::vector<VariogramBin> bins;
  for (double h = 500; h <= 5000; h += 500) bins.push_back({h, 4.0, 20});
  VariogramFit fit = FitVariogram(bins, VariogramModel::kSpherical);
  ASSERT_TRUE(fit.ok);
  EXPECT_GT(fit.NuggetSillRatio(), kNuggetSillNearestNeighbour);
  EXPECT_FALSE(FitVariogram({bins[0], bins[1]}, VariogramModel::kSpherical).ok);
}

}  // namespace
}  // namespace tributary
