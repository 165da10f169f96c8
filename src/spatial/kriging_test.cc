// Ordinary kriging against a two-sensor system solved by hand, exactness at sensors and
// unbiasedness on a constant field.
#include "spatial/kriging.h"

#include <gtest/gtest.h>

namespace tributary {
namespace {

double East(double m) {
  return m / (6371008.8 * M_PI / 180);
}

VariogramFit Spherical(double nugget, double sill, double range) {
  VariogramFit f;
  f.model = VariogramModel::kSpherical;
  f.nugget = nugget;
  f.sill = sill;
  f.range = range;
  f.ok = true;
  return f;
}

TEST(KrigingTest, TwoSensorsByHand) {
  // Spherical, nugget 0, sill 1, range 10 km; sensors 1 km apart with 10 and 20.
  // γ(1000) = 1.5·0.1 − 0.5·0.001 = 0.1495; γ(500) = 0.075 − 0.0000625 = 0.0749375.
  // At the midpoint λ = ½ each (symmetry): ½·0.1495 + μ = 0.0749375 → μ = 0.0001875,
  // σ² = λ·γ(500)·2 + μ = 0.075125.
  auto k =
      OrdinaryKriging::Make({{0, 0, 10}, {0, East(1000), 20}}, Spherical(0, 1, 10000), 8, 0, 0);
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  KrigingEstimate mid = k->At(0, East(500));
  EXPECT_NEAR(mid.value, 15, 1e-9);
  EXPECT_NEAR(mid.variance, 0.075125, 1e-9);
  KrigingEstimate at = k->At(0, 0);
  EXPECT_EQ(at.value, 10);
  EXPECT_EQ(at.variance, 0);
  // Closer to the first sensor: between 10 and 15, and more certain than the midpoint.
  KrigingEstimate near = k->At(0, East(200));
  EXPECT_GT(near.value, 10);
  EXPECT_LT(near.value, 15);
  EXPECT_LT(near.variance, mid.variance);
}

TEST(KrigingTest, ConstantFieldIsReproducedAndGridMatchesPoints) {
  std::vector<SensorValue> s = {{52.50, 13.30, 7},
                                {52.52, 13.42, 7},
                                {52.55, 13.35, 7},
                                {52.48, 13.45, 7},
                                {52.53, 13.50, 7}};
  auto k = OrdinaryKriging::Make(s, Spherical(0.5, 3, 8000), 4, 52.52, 13.40);
  ASSERT_TRUE(k.ok());
  GridSpec grid{13.25, 52.45, 13.55, 52.58, 12, 9};
  std::vector<float> values, variances;
  k->Interpolate(grid, values, &variances);
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_NEAR(values[i], 7.0f, 1e-4) << i;  // weights sum to 1
    EXPECT_GE(variances[i], 0.0f) << i;
  }
  EXPECT_FALSE(OrdinaryKriging::Make(s, VariogramFit{}, 4, 52.5, 13.4).ok());
  EXPECT_FALSE(OrdinaryKriging::Make({s[0]}, Spherical(0, 1, 1000), 4, 52.5, 13.4).ok());
}

}  // namespace
}  // namespace tributary
