#include "spatial/zone_outlines.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <cmath>
#include <string>

namespace tributary {
namespace {

// A circle of `n` vertices around (lon, lat) as WKT.
std::string CircleWkt(double lon, double lat, double r, int n) {
  std::string wkt = "POLYGON((";
  for (int i = 0; i <= n; ++i) {
    double a = 2 * M_PI * (i % n) / n;
    if (i > 0) wkt += ",";
    wkt += std::to_string(lon + r * std::cos(a)) + " " + std::to_string(lat + r * std::sin(a));
  }
  return wkt + "))";
}

TEST(ZoneOutlines, SmallZonesStayExactLargeOnesAreSimplified) {
  auto set =
      ZoneSet::FromWkt({{"district",
                         {{"a", "Alpha", "POLYGON((13 52,13.1 52,13.1 52.1,13 52.1,13 52))"},
                          {"b", "", CircleWkt(13.5, 52.5, 0.1, 2000)}}},
                        {"flood", {{"f1", "", "POLYGON((13 52,13.2 52,13.2 52.2,13 52))"}}}});
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  auto outlines = BuildZoneOutlines(**set, 100);
  ASSERT_TRUE(outlines.ok()) << outlines.status().ToString();
  ASSERT_EQ(outlines->size(), 3u);
  const ZoneOutline& a = (*outlines)[0];
  EXPECT_EQ(a.id, "a");
  EXPECT_EQ(a.name, "Alpha");
  EXPECT_EQ(a.layer_index, 0u);
  EXPECT_FALSE(a.simplified);
  EXPECT_EQ(a.vertices, 5u);
  simdjson::dom::parser p;
  simdjson::dom::element g = p.parse(a.geometry);
  EXPECT_EQ(std::string_view(g["type"]), "Polygon");
  simdjson::dom::array ring = g["coordinates"].at(0);
  EXPECT_EQ(ring.size(), 5u);
  EXPECT_DOUBLE_EQ(double(ring.at(1).at(0)), 13.1);  // x = longitude first
  EXPECT_DOUBLE_EQ(double(ring.at(1).at(1)), 52.0);

  const ZoneOutline& b = (*outlines)[1];
  EXPECT_TRUE(b.simplified);
  EXPECT_LE(b.vertices, 100u);
  EXPECT_GE(b.vertices, 4u);  // still a polygon
  simdjson::dom::parser p2;
  simdjson::dom::element gb = p2.parse(b.geometry);
  EXPECT_EQ(std::string_view(gb["type"]), "Polygon");
  EXPECT_EQ(gb["coordinates"].at(0).get_array().size(), b.vertices);

  EXPECT_EQ((*outlines)[2].layer, "flood");
  EXPECT_EQ((*outlines)[2].layer_index, 1u);

  // 0: never simplify.
  auto exact = BuildZoneOutlines(**set, 0);
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ((*exact)[1].vertices, 2001u);
  EXPECT_FALSE((*exact)[1].simplified);
}

TEST(ZoneOutlines, TheBuiltinCityDistrictsAreWireReady) {
  ZoneLayerSpec spec;
  spec.name = "district";
  spec.path = "builtin:city_districts";
  spec.id_field = "district_id";
  spec.name_field = "name";
  auto set = ZoneSet::Load({spec});
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  auto outlines = BuildZoneOutlines(**set, 400);
  ASSERT_TRUE(outlines.ok()) << outlines.status().ToString();
  ASSERT_EQ(outlines->size(), (*set)->layers()[0].zones.size());
  for (const ZoneOutline& o : *outlines) {
    simdjson::dom::parser p;
    simdjson::dom::element g = p.parse(o.geometry);
    std::string_view type = g["type"];
    EXPECT_TRUE(type == "Polygon" || type == "MultiPolygon") << o.id << " " << type;
    EXPECT_FALSE(o.name.empty()) << o.id;
    EXPECT_LE(o.vertices, 400u);
  }
}

}  // namespace
}  // namespace tributary
