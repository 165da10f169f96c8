// Unit tests of the H3 grid that need no reference library: known cells, index fields,
// validation, hierarchy and geometry invariants. The cell-for-cell comparison with h3-js
// is in h3_reference_test.cc.
#include "spatial/h3.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "test_util.h"

namespace tributary::h3 {
namespace {

constexpr uint64_t kSanFranciscoRes9 = 0x89283082803ffffULL;
constexpr double kEarthAreaKm2 = 4.0 * M_PI * 6371.007180918475 * 6371.007180918475;
const std::set<int> kPentagonBaseCells = {4, 14, 24, 38, 49, 58, 63, 72, 83, 97, 107, 117};

uint64_t BaseCellIndex(int bc) {
  return (uint64_t{1} << 59) | (static_cast<uint64_t>(bc) << 45) | ((uint64_t{1} << 45) - 1);
}

/// The centre child of `cell` at `res` (all further digits 0).
uint64_t CenterChild(uint64_t cell, int res) {
  uint64_t h = (cell & ~(uint64_t{15} << 52)) | (static_cast<uint64_t>(res) << 52);
  for (int r = 1; r <= res; ++r) h &= ~(uint64_t{7} << ((15 - r) * 3));
  return h;
}

std::vector<uint64_t> AllBaseCells() {
  std::vector<uint64_t> cells;
  for (int bc = 0; bc < kNumBaseCells; ++bc) cells.push_back(BaseCellIndex(bc));
  return cells;
}

TEST(H3, KnownCells) {
  // Values published by the reference implementation for these points.
  EXPECT_EQ(LatLngToCell(37.7749, -122.4194, 9), kSanFranciscoRes9);
  EXPECT_EQ(CellToString(LatLngToCell(37.7749, -122.4194, 0)), "8029fffffffffff");
  EXPECT_EQ(CellToString(LatLngToCell(37.7749, -122.4194, 5)), "85283083fffffff");
  EXPECT_EQ(CellToString(LatLngToCell(37.7749, -122.4194, 15)), "8f283082800b390");
  EXPECT_EQ(CellToString(LatLngToCell(90.0, 0.0, 0)), "8001fffffffffff");
  EXPECT_EQ(CellToString(LatLngToCell(90.0, 0.0, 15)), "8f0326233ab0399");
  EXPECT_EQ(CellToString(LatLngToCell(-90.0, 0.0, 7)), "87f29380effffff");
  EXPECT_EQ(CellToString(LatLngToCell(-90.0, 0.0, 15)), "8ff29380e0d0cc4");
}

TEST(H3, InvalidInputGivesNullCell) {
  EXPECT_EQ(LatLngToCell(NAN, 0.0, 5), kNullCell);
  EXPECT_EQ(LatLngToCell(0.0, INFINITY, 5), kNullCell);
  EXPECT_EQ(LatLngToCell(90.5, 0.0, 5), kNullCell);
  EXPECT_EQ(LatLngToCell(-91.0, 0.0, 5), kNullCell);
  EXPECT_EQ(LatLngToCell(10.0, 10.0, -1), kNullCell);
  EXPECT_EQ(LatLngToCell(10.0, 10.0, 16), kNullCell);
  // Longitude wraps.
  EXPECT_EQ(LatLngToCell(10.0, 370.0, 8), LatLngToCell(10.0, 10.0, 8));
  EXPECT_EQ(LatLngToCell(10.0, 180.0, 8), LatLngToCell(10.0, -180.0, 8));
}

TEST(H3, IndexFields) {
  EXPECT_EQ(GetResolution(kSanFranciscoRes9), 9);
  EXPECT_EQ(GetBaseCell(kSanFranciscoRes9), 20);
  EXPECT_EQ(GetResolution(BaseCellIndex(121)), 0);
  EXPECT_EQ(GetBaseCell(BaseCellIndex(121)), 121);
  for (int res = 0; res <= kMaxResolution; ++res) {
    uint64_t c = LatLngToCell(-33.86, 151.21, res);
    EXPECT_EQ(GetResolution(c), res);
    EXPECT_TRUE(IsValidCell(c));
  }
}

TEST(H3, StringConversion) {
  EXPECT_EQ(CellToString(kSanFranciscoRes9), "89283082803ffff");
  EXPECT_EQ(StringToCell("89283082803ffff"), kSanFranciscoRes9);
  EXPECT_EQ(StringToCell("89283082803FFFF"), kSanFranciscoRes9);
  EXPECT_EQ(StringToCell(""), kNullCell);
  EXPECT_EQ(StringToCell("0"), kNullCell);
  EXPECT_EQ(StringToCell("0x89283082803ffff"), kNullCell);
  EXPECT_EQ(StringToCell("89283082803fffg"), kNullCell);
  EXPECT_EQ(StringToCell("089283082803ffff0"), kNullCell);         // 17 digits
  EXPECT_EQ(StringToCell("89283082803fff7"), kNullCell);           // digit 7 inside res 9
  EXPECT_EQ(StringToCell("0089283082803ffff"), kNullCell);         // too long
  EXPECT_EQ(StringToCell("089283082803ffff"), kSanFranciscoRes9);  // leading zero is fine
  for (uint64_t c : AllBaseCells()) EXPECT_EQ(StringToCell(CellToString(c)), c);
}

TEST(H3, Validation) {
  EXPECT_TRUE(IsValidCell(kSanFranciscoRes9));
  EXPECT_FALSE(IsValidCell(0));
  EXPECT_FALSE(IsValidCell(kSanFranciscoRes9 | (uint64_t{1} << 63)));  // reserved bit
  EXPECT_FALSE(
      IsValidCell((kSanFranciscoRes9 & ~(uint64_t{15} << 59)) | (uint64_t{2} << 59)));  // edge mode
  EXPECT_FALSE(IsValidCell(kSanFranciscoRes9 | (uint64_t{1} << 56)));                   // mode bits
  EXPECT_FALSE(IsValidCell((kSanFranciscoRes9 & ~(uint64_t{127} << 45)) |
                           (uint64_t{122} << 45)));  // base cell 122
  // A digit past the resolution must be 7.
  EXPECT_FALSE(IsValidCell(kSanFranciscoRes9 & ~uint64_t{7}));
  // Pentagon base cell 4 has no k (digit 1) sub-sequence.
  uint64_t pent_res1 = (BaseCellIndex(4) & ~(uint64_t{15} << 52)) | (uint64_t{1} << 52);
  uint64_t k_child = pent_res1 & ~(uint64_t{7} << 42);
  k_child |= uint64_t{1} << 42;
  EXPECT_FALSE(IsValidCell(k_child));
  uint64_t j_child = (pent_res1 & ~(uint64_t{7} << 42)) | (uint64_t{2} << 42);
  EXPECT_TRUE(IsValidCell(j_child));
}

TEST(H3, PentagonsAreTheTwelveBaseCellsAndTheirCentreChildren) {
  int count = 0;
  for (uint64_t c : AllBaseCells()) {
    EXPECT_EQ(IsPentagon(c), kPentagonBaseCells.count(GetBaseCell(c)) == 1);
    count += IsPentagon(c) ? 1 : 0;
  }
  EXPECT_EQ(count, 12);
  for (int bc : kPentagonBaseCells) {
    std::vector<uint64_t> kids = CellToChildren(BaseCellIndex(bc), 1);
    ASSERT_EQ(kids.size(), 6u);
    EXPECT_TRUE(IsPentagon(kids[0]));
    for (size_t i = 1; i < kids.size(); ++i) EXPECT_FALSE(IsPentagon(kids[i]));
  }
}

TEST(H3, ParentsAndChildren) {
  uint64_t cell = LatLngToCell(48.8566, 2.3522, 6);
  EXPECT_EQ(CellToParent(cell, 6), cell);
  EXPECT_EQ(CellToParent(cell, 7), kNullCell);
  EXPECT_EQ(CellToParent(cell, -1), kNullCell);
  uint64_t p4 = CellToParent(cell, 4);
  EXPECT_EQ(GetResolution(p4), 4);
  EXPECT_EQ(CellToParent(CellToParent(cell, 5), 4), p4);
  EXPECT_EQ(CellToParent(cell, 0), BaseCellIndex(GetBaseCell(cell)));

  std::vector<uint64_t> kids = CellToChildren(cell, 7);
  ASSERT_EQ(kids.size(), 7u);
  EXPECT_TRUE(std::is_sorted(kids.begin(), kids.end()));
  for (uint64_t k : kids) EXPECT_EQ(CellToParent(k, 6), cell);
  EXPECT_EQ(CellToChildren(cell, 8).size(), 49u);
  EXPECT_EQ(CellToChildren(cell, 6), std::vector<uint64_t>{cell});
  EXPECT_TRUE(CellToChildren(cell, 5).empty());
  EXPECT_TRUE(CellToChildren(cell, 16).empty());
  EXPECT_TRUE(CellToChildren(BaseCellIndex(0), kMaxChildLevels + 1).empty());  // too many
  // A pentagon loses its k child at every level: 1 + 5 * (7^n - 1) / 6 descendants.
  EXPECT_EQ(CellToChildren(BaseCellIndex(4), 2).size(), 41u);
  EXPECT_EQ(CellToChildren(BaseCellIndex(117), 3).size(), 286u);
}

TEST(H3, CentreRoundTripsAtEveryResolution) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int n = 0; n < 500; ++n) {
    double lat = std::asin(2.0 * u(rng) - 1.0) * 180.0 / M_PI;
    double lng = u(rng) * 360.0 - 180.0;
    for (int res = 0; res <= kMaxResolution; ++res) {
      uint64_t c = LatLngToCell(lat, lng, res);
      LatLng centre = CellToLatLng(c);
      ASSERT_EQ(LatLngToCell(centre.lat, centre.lng, res), c) << CellToString(c);
    }
  }
  EXPECT_TRUE(std::isnan(CellToLatLng(0).lat));
}

TEST(H3, BoundaryShapes) {
  uint64_t hex = LatLngToCell(51.5, -0.12, 8);  // Class II: 6 vertices
  std::vector<LatLng> b = CellToBoundary(hex);
  EXPECT_EQ(b.size(), 6u);
  LatLng c = CellToLatLng(hex);
  for (const LatLng& v : b) {
    // A res-8 hexagon edge is about 0.5 km: vertices within 0.01 degrees of the centre.
    EXPECT_NEAR(v.lat, c.lat, 0.01);
    EXPECT_NEAR(v.lng, c.lng, 0.02);
  }
  EXPECT_EQ(CellToBoundary(BaseCellIndex(4)).size(), 5u);  // res-0 pentagon
  // Class III pentagons cross an icosahedron edge on every side: 10 vertices.
  EXPECT_EQ(CellToBoundary(CellToChildren(BaseCellIndex(4), 1)[0]).size(), 10u);
  EXPECT_TRUE(CellToBoundary(0).empty());
}

TEST(H3, GridDiskSizes) {
  uint64_t hex = LatLngToCell(40.7, -74.0, 7);
  std::vector<uint64_t> d0 = GridDisk(hex, 0);
  EXPECT_EQ(d0, std::vector<uint64_t>{hex});
  std::vector<uint64_t> d1 = GridDisk(hex, 1);
  EXPECT_EQ(d1.size(), 7u);
  EXPECT_EQ(d1.front(), hex);
  EXPECT_EQ(GridDisk(hex, 2).size(), 19u);
  EXPECT_EQ(GridDisk(hex, 5).size(), 91u);
  std::set<uint64_t> unique(d1.begin(), d1.end());
  EXPECT_EQ(unique.size(), 7u);
  // Each neighbour of a hexagon has the hexagon in its own ring.
  for (uint64_t n : d1) {
    std::vector<uint64_t> back = GridDisk(n, 1);
    EXPECT_NE(std::find(back.begin(), back.end(), hex), back.end());
  }
  uint64_t pent = CenterChild(BaseCellIndex(38), 5);
  EXPECT_TRUE(IsPentagon(pent));
  EXPECT_EQ(GridDisk(pent, 1).size(), 6u);
  EXPECT_EQ(GridDisk(pent, 2).size(), 16u);
  EXPECT_TRUE(GridDisk(hex, -1).empty());
  EXPECT_TRUE(GridDisk(0, 1).empty());
}

TEST(H3, AreasCoverTheSphere) {
  double total = 0;
  for (uint64_t c : AllBaseCells()) total += CellAreaKm2(c);
  EXPECT_NEAR(total, kEarthAreaKm2, kEarthAreaKm2 * 1e-9);
  double res1 = 0;
  for (uint64_t c : AllBaseCells()) {
    for (uint64_t k : CellToChildren(c, 1)) res1 += CellAreaKm2(k);
  }
  EXPECT_NEAR(res1, kEarthAreaKm2, kEarthAreaKm2 * 1e-9);
  // A res-9 hexagon averages 0.1053 km2; a res-0 pentagon is about 2.56 million km2.
  EXPECT_NEAR(CellAreaKm2(kSanFranciscoRes9), 0.105, 0.02);
  EXPECT_NEAR(CellAreaKm2(BaseCellIndex(4)), 2562182.16, 1.0);
  EXPECT_EQ(CellAreaKm2(0), 0.0);
}

TEST(H3, AreasStayPreciseAcrossTheAntimeridianAndNearThePoles) {
  // Spherical excess of the same boundaries computed with 50-digit arithmetic.
  const double r2 = 6371.007180918475 * 6371.007180918475;
  EXPECT_NEAR(CellAreaKm2(StringToCell("89224e4e207ffff")), 2.7532728769436859e-9 * r2,
              2.7532728769436859e-9 * r2 * 1e-9);
  EXPECT_NEAR(CellAreaKm2(StringToCell("8933828deb3ffff")), 3.0210060158423043e-9 * r2,
              3.0210060158423043e-9 * r2 * 1e-9);
  // 5 m from the pole the vertices themselves are only good to ~1e-9 radians.
  EXPECT_NEAR(CellAreaKm2(StringToCell("89032623303ffff")), 2.8191501824789628e-9 * r2,
              2.8191501824789628e-9 * r2 * 1e-7);
}

TEST(H3Cli, PrintsOneCellPerLineAndReportsBadLines) {
  testing::CommandResult r = testing::RunTributary(
      {"h3", "--res", "9"}, "37.7749,-122.4194\nnot,a point\n\n 90 , 0 \n95,0\n1,2,3\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "89283082803ffff\n" + CellToString(LatLngToCell(90, 0, 9)) + "\n");
  EXPECT_NE(r.err.find("line 2"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("line 5"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("line 6"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("line 3"), std::string::npos) << r.err;  // blank lines are skipped
  EXPECT_EQ(r.err.find("line 4"), std::string::npos) << r.err;
}

TEST(H3Cli, FailsWhenNoLineParses) {
  testing::CommandResult r = testing::RunTributary({"h3", "--res", "5"}, "x\n");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("line 1"), std::string::npos) << r.err;
  testing::CommandResult bad_res = testing::RunTributary({"h3", "--res", "16"}, "1,2\n");
  EXPECT_NE(bad_res.exit_code, 0);
}

}  // namespace
}  // namespace tributary::h3
