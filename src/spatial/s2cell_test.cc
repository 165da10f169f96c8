// S2 cell ids against published values.
#include "spatial/s2cell.h"

#include <gtest/gtest.h>

#include <cmath>

namespace tributary {
namespace {

// Tokens from the test suite of the independent pure-Python S2 implementation `s2cell`
// by Adam Liddell (github.com/aaliddell/s2cell, tests/test_s2cell.py,
// test_lat_lon_to_token): written without libs2, so agreement checks our use of it.
TEST(S2CellTest, TokensMatchAnIndependentImplementation) {
  struct Case {
    double lat, lon;
    int level;
    const char* token;
  };
  const Case cases[] = {
      {0, 0, 0, "1"},
      {0, 0, 30, "1000000000000001"},
      {45, 45, 30, "4054545155144101"},
      {-45, -45, 30, "bfababaeaaebbeff"},
      {90, -180, 30, "5000000000000001"},
      {12.3456789, 12.3456789, 30, "110430acb787bb6f"},
  };
  for (const Case& c : cases) {
    uint64_t id = S2CellIdAt(c.lat, c.lon, c.level);
    EXPECT_EQ(S2CellToken(id), c.token) << c.lat << "," << c.lon << " level " << c.level;
    EXPECT_EQ(S2CellLevel(id), c.level);
  }
  // Face 0's cell is id 1 << 60 (the face in the top 3 bits, then the level marker).
  EXPECT_EQ(S2CellIdAt(0, 0, 0), uint64_t{1} << 60);
}

TEST(S2CellTest, ParentsNestAndBadInputGivesZero) {
  uint64_t leaf = S2CellIdAt(52.52, 13.40, 30);
  uint64_t l12 = S2CellIdAt(52.52, 13.40, 12);
  // The level-12 cell's id range contains the leaf: lowest set bit 2^(2·(30−12)).
  uint64_t lsb = uint64_t{1} << (2 * (30 - 12));
  EXPECT_EQ(l12 & (lsb - 1), 0u);
  EXPECT_GE(leaf, l12 - (lsb - 1));
  EXPECT_LE(leaf, l12 + (lsb - 1));
  EXPECT_EQ(S2CellIdAt(NAN, 13.4, 10), 0u);
  EXPECT_EQ(S2CellIdAt(95, 13.4, 10), 0u);
  EXPECT_EQ(S2CellIdAt(52.5, 13.4, 31), 0u);
  EXPECT_EQ(S2CellToken(0), "");
  EXPECT_EQ(S2CellLevel(0), -1);
}

}  // namespace
}  // namespace tributary
