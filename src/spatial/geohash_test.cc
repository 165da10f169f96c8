// Geohash against the published examples: "u4pruydqqvj" for 57.64911 N, 10.40744 E
// (Niemeyer's geohash.org example, also in the Wikipedia article) and "ezs42", which the
// article decodes to about 42.6 N, 5.6 W.
#include "spatial/geohash.h"

#include <gtest/gtest.h>

namespace tributary {
namespace {

TEST(GeohashTest, PublishedExamples) {
  EXPECT_EQ(geohash::Encode(57.64911, 10.40744, 11), "u4pruydqqvj");
  auto cell = geohash::Decode("ezs42");
  ASSERT_TRUE(cell.ok());
  EXPECT_NEAR(cell->lat(), 42.605, 0.001);
  EXPECT_NEAR(cell->lon(), -5.603, 0.001);
  EXPECT_EQ(geohash::Encode(42.605, -5.603, 5), "ezs42");
}

TEST(GeohashTest, RoundTripAndErrors) {
  for (double lat : {-89.9, -33.86, 0.0, 52.52, 89.9}) {
    for (double lon : {-179.9, -0.1, 13.4, 179.9}) {
      std::string h = geohash::Encode(lat, lon, 9);
      ASSERT_EQ(h.size(), 9u);
      auto c = geohash::Decode(h);
      ASSERT_TRUE(c.ok());
      EXPECT_TRUE(lat >= c->min_lat && lat <= c->max_lat && lon >= c->min_lon && lon <= c->max_lon)
          << h;
      EXPECT_EQ(h.substr(0, 4), geohash::Encode(lat, lon, 4));  // prefixes nest
    }
  }
  EXPECT_EQ(geohash::Encode(91, 0, 5), "");
  auto bad = geohash::Decode("u4pa");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'a' at position 4"), std::string::npos);
}

}  // namespace
}  // namespace tributary
