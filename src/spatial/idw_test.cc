// IDW against values computed by hand, and the tiled grid path against per-point queries.
#include "spatial/idw.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace tributary {
namespace {

// Metres east of (0, 0) on the equator, in degrees of longitude (the projection's scale).
double East(double metres) {
  return metres / (6371008.8 * M_PI / 180.0);
}

std::unique_ptr<IdwInterpolator> Make(std::vector<SensorValue> s, IdwOptions o = {}) {
  auto idw = IdwInterpolator::Make(std::move(s), o, 0, 0);
  EXPECT_TRUE(idw.ok()) << idw.status().ToString();
  return idw.ok() ? std::move(*idw) : nullptr;
}

TEST(IdwTest, HandComputedTwoSensors) {
  // A = 10 at 0 m, B = 20 at 1000 m east.
  std::vector<SensorValue> s = {{0, 0, 10}, {0, East(1000), 20}};
  auto idw = Make(s);
  // Midway: equal weights.
  EXPECT_NEAR(idw->At(0, East(500)), 15.0, 1e-9);
  // 250 m from A, 750 m from B, power 2: w = 1/250², 1/750² = 9 : 1 → (90 + 20) / 10.
  EXPECT_NEAR(idw->At(0, East(250)), 11.0, 1e-9);
  // Power 1: weights 3 : 1 → (30 + 20) / 4.
  auto linear = Make(s, {1.0, 8, 0});
  EXPECT_NEAR(linear->At(0, East(250)), 12.5, 1e-9);
  // Power 3: weights 27 : 1 → (270 + 20) / 28.
  auto cubic = Make(s, {3.0, 8, 0});
  EXPECT_NEAR(cubic->At(0, East(250)), 290.0 / 28.0, 1e-9);
  // At a sensor: its own value, exactly.
  EXPECT_EQ(idw->At(0, 0), 10.0);
  EXPECT_EQ(idw->At(0, East(1000)), 20.0);
  // k = 1: nearest neighbour.
  auto nn = Make(s, {2.0, 1, 0});
  EXPECT_EQ(nn->At(0, East(400)), 10.0);
  EXPECT_EQ(nn->At(0, East(600)), 20.0);
}

TEST(IdwTest, HandComputedThreeSensorsOffAxis) {
  // A = 0 at (0, 0), B = 6 at 300 m north, C = 12 at 400 m east; query at A + (0, 0)...
  // at the point P = (400 m east, 300 m north): |PA| = 500, |PB| = 400, |PC| = 300.
  // w = 1/250000, 1/160000, 1/90000 → in units of 1/3.6e7: 144, 225, 400.
  double north = 300.0 / (6371008.8 * M_PI / 180.0);
  std::vector<SensorValue> s = {{0, 0, 0}, {north, 0, 6}, {0, East(400), 12}};
  auto idw = Make(s);
  double want = (144 * 0.0 + 225 * 6.0 + 400 * 12.0) / (144 + 225 + 400);
  EXPECT_NEAR(idw->At(north, East(400)), want, 1e-6);
}

TEST(IdwTest, RadiusLeavesCellsWithoutSensorsEmpty) {
  std::vector<SensorValue> s = {{0, 0, 10}, {0, East(1000), 20}};
  auto idw = Make(s, {2.0, 8, 300});
  EXPECT_TRUE(std::isnan(idw->At(0, East(500))));  // both 500 m away
  EXPECT_EQ(idw->At(0, East(900)), 20.0);          // only B in range
  GridSpec grid{0, -East(10), East(1000), East(10), 10, 1};
  std::vector<float> out;
  idw->Interpolate(grid, out);
  ASSERT_EQ(out.size(), 10u);
  EXPECT_EQ(out[0], 10.0f);  // cell centre at 50 m
  EXPECT_TRUE(std::isnan(out[5]));
  EXPECT_EQ(out[9], 20.0f);
}

TEST(IdwTest, RejectsBadOptions) {
  EXPECT_FALSE(IdwInterpolator::Make({}, {0.0, 8, 0}, 0, 0).ok());
  EXPECT_FALSE(IdwInterpolator::Make({}, {2.0, 0, 0}, 0, 0).ok());
  EXPECT_FALSE(IdwInterpolator::Make({}, {2.0, 8, -1}, 0, 0).ok());
  EXPECT_FALSE(IdwInterpolator::Make({}, {2.0, 8, 0}, 95, 0).ok());
}

// The tiled grid must equal a k-nearest query per cell, everywhere.
TEST(IdwTest, GridEqualsPerCellQueries) {
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> lat(52.4, 52.6), lon(13.2, 13.6), v(0, 100);
  std::vector<SensorValue> s;
  for (int i = 0; i < 300; ++i) s.push_back({lat(rng), lon(rng), v(rng)});
  for (double radius : {0.0, 1500.0}) {
    auto idw = IdwInterpolator::Make(s, {2.0, 8, radius}, 52.5, 13.4);
    ASSERT_TRUE(idw.ok());
    GridSpec grid{13.15, 52.35, 13.65, 52.65, 137, 91};  // not multiples of the tile
    std::vector<float> out;
    (*idw)->Interpolate(grid, out);
    int nan = 0;
    for (int r = 0; r < grid.height; ++r) {
      for (int c = 0; c < grid.width; ++c) {
        float want = static_cast<float>((*idw)->At(grid.CellLat(r), grid.CellLon(c)));
        float got = out[static_cast<size_t>(r * grid.width + c)];
        if (std::isnan(want)) {
          ++nan;
          ASSERT_TRUE(std::isnan(got)) << r << "," << c;
        } else {
          ASSERT_NEAR(got, want, 1e-4) << r << "," << c << " radius " << radius;
        }
      }
    }
    if (radius > 0) {
      EXPECT_GT(nan, 0);  // the grid reaches beyond the sensors' range
    }
  }
}

}  // namespace
}  // namespace tributary
