// Zones: point-in-polygon with holes, multipolygons, boundary points and the
// antimeridian; several layers; every boundary file format, written with GDAL at test
// time in a projected CRS so reprojection to WGS84 is exercised too.
#include "spatial/zones.h"

#include <gdal_priv.h>
#include <geos_c.h>
#include <gtest/gtest.h>
#include <ogrsf_frmts.h>

#include <random>
#include <set>

#include "core/pipeline_config.h"
#include "spatial/enrich.h"
#include "spatial/h3.h"
#include "test_util.h"

namespace tributary {
namespace {

using Layers = std::vector<std::pair<std::string, std::vector<ZoneSet::WktZone>>>;

std::shared_ptr<const ZoneSet> MustBuild(const Layers& layers) {
  auto set = ZoneSet::FromWkt(layers);
  EXPECT_TRUE(set.ok()) << set.status().ToString();
  return set.ok() ? *set : nullptr;
}

std::string IdAt(ZoneLocator& loc, double lat, double lon, size_t layer = 0) {
  return loc.LocateId(layer, lat, lon).str();
}

TEST(ZonesTest, PolygonWithHoleExcludesTheHole) {
  // A 10°×10° square with a 2°×2° hole in the middle (x = lon, y = lat).
  ZoneLocator loc(MustBuild(
      {{"park", {{"ring", "", "POLYGON((0 0,10 0,10 10,0 10,0 0),(4 4,6 4,6 6,4 6,4 4))"}}}}));
  EXPECT_EQ(IdAt(loc, 1, 1), "ring");
  EXPECT_EQ(IdAt(loc, 5, 5), "");             // in the hole
  EXPECT_EQ(IdAt(loc, 4, 5), "ring");         // on the hole's edge: the ring covers it
  EXPECT_EQ(IdAt(loc, 5, 3.999999), "ring");  // just outside the hole
  EXPECT_EQ(IdAt(loc, 11, 5), "");            // outside the shell
}

TEST(ZonesTest, MultiPolygonCoversEveryPart) {
  ZoneLocator loc(MustBuild(
      {{"islands",
        {{"isl", "",
          "MULTIPOLYGON(((0 0,1 0,1 1,0 1,0 0)),((5 5,7 5,7 7,5 7,5 5),(5.5 5.5,6 5.5,6 6,"
          "5.5 6,5.5 5.5)))"}}}}));
  EXPECT_EQ(IdAt(loc, 0.5, 0.5), "isl");
  EXPECT_EQ(IdAt(loc, 6.5, 6.5), "isl");
  EXPECT_EQ(IdAt(loc, 5.75, 5.75), "");  // hole of the second part
  EXPECT_EQ(IdAt(loc, 3, 3), "");        // between the parts, inside the envelope
}

TEST(ZonesTest, BoundaryPointsGoToTheSmallestId) {
  // Four unit squares meeting at (1, 1); ids deliberately not in geometric order.
  ZoneLocator loc(MustBuild({{"grid",
                              {{"d", "", "POLYGON((0 0,1 0,1 1,0 1,0 0))"},
                               {"b", "", "POLYGON((1 0,2 0,2 1,1 1,1 0))"},
                               {"c", "", "POLYGON((0 1,1 1,1 2,0 2,0 1))"},
                               {"a2", "", "POLYGON((1 1,2 1,2 2,1 2,1 1))"}}}}));
  EXPECT_EQ(IdAt(loc, 0.5, 0.5), "d");
  EXPECT_EQ(IdAt(loc, 0.5, 1.0), "b");   // edge shared by d and b (lat 0.5, lon 1)
  EXPECT_EQ(IdAt(loc, 1.0, 0.5), "c");   // edge shared by d and c
  EXPECT_EQ(IdAt(loc, 1.5, 1.0), "a2");  // edge shared by c and a2
  EXPECT_EQ(IdAt(loc, 1.0, 1.0), "a2");  // the vertex all four share
  EXPECT_EQ(IdAt(loc, 0.0, 0.0), "d");   // outer corner: covered by d only
  // Same answer however often it is asked (prepared geometries are built lazily).
  for (int i = 0; i < 3; ++i) EXPECT_EQ(IdAt(loc, 1.0, 1.0), "a2");
}

TEST(ZonesTest, AntimeridianSplitPolygon) {
  // Fiji-like: a zone across 180° split into two parts as RFC 7946 asks.
  ZoneLocator loc(
      MustBuild({{"eez",
                  {{"fj", "",
                    "MULTIPOLYGON(((177 -20,180 -20,180 -15,177 -15,177 -20)),"
                    "((-180 -20,-178 -20,-178 -15,-180 -15,-180 -20)))"},
                   {"far", "", "POLYGON((170 -20,172 -20,172 -15,170 -15,170 -20))"}}}}));
  EXPECT_EQ(IdAt(loc, -17, 179.9), "fj");
  EXPECT_EQ(IdAt(loc, -17, -179.9), "fj");
  EXPECT_EQ(IdAt(loc, -17, 180.0), "fj");
  EXPECT_EQ(IdAt(loc, -17, -180.0), "fj");
  EXPECT_EQ(IdAt(loc, -17, 180.1), "fj");  // wraps to -179.9
  EXPECT_EQ(IdAt(loc, -17, -177.5), "");
  EXPECT_EQ(IdAt(loc, -17, 0), "");
  EXPECT_EQ(IdAt(loc, -17, 171), "far");
  EXPECT_EQ(IdAt(loc, NAN, 171), "");
}

// The crossing-count fast path and GEOS must agree everywhere, on edges and vertices too:
// a jittered grid of polygons sharing their boundaries, one with a hole, checked against
// GEOS covers evaluated directly (smallest covering id wins).
// The boundary rule by GEOS alone: the smallest id among the zones covering (x, y).
std::string GeosAnswer(GEOSContextHandle_t h,
                       const std::vector<std::pair<std::string, GEOSGeometry*>>& geoms, double x,
                       double y) {
  GEOSGeometry* pt = GEOSGeom_createPointFromXY_r(h, x, y);
  std::string want;
  for (const auto& [id, g] : geoms) {
    if (GEOSCovers_r(h, g, pt) == 1 && (want.empty() || id < want)) want = id;
  }
  GEOSGeom_destroy_r(h, pt);
  return want;
}

TEST(ZonesTest, FastPathAgreesWithGeosCovers) {
  std::mt19937_64 rng(9);
  std::uniform_real_distribution<double> jitter(-0.3, 0.3);
  const int n = 12;
  std::vector<std::pair<double, double>> v((n + 1) * (n + 1));
  for (int j = 0; j <= n; ++j) {
    for (int i = 0; i <= n; ++i) {
      bool border = i == 0 || j == 0 || i == n || j == n;
      v[j * (n + 1) + i] = {i + (border ? 0 : jitter(rng)), j + (border ? 0 : jitter(rng))};
    }
  }
  auto at = [&](int i, int j) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g %.17g", v[j * (n + 1) + i].first,
                  v[j * (n + 1) + i].second);
    return std::string(buf);
  };
  std::vector<ZoneSet::WktZone> zones;
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < n; ++i) {
      std::string shell = "(" + at(i, j) + "," + at(i + 1, j) + "," + at(i + 1, j + 1) + "," +
                          at(i, j + 1) + "," + at(i, j) + ")";
      double cx = (v[j * (n + 1) + i].first + v[(j + 1) * (n + 1) + i + 1].first) / 2;
      double cy = (v[j * (n + 1) + i].second + v[(j + 1) * (n + 1) + i + 1].second) / 2;
      std::string hole;
      if ((i + j) % 5 == 0) {
        char buf[200];
        std::snprintf(buf, sizeof buf, ",(%g %g,%g %g,%g %g,%g %g,%g %g)", cx - .1, cy - .1,
                      cx + .1, cy - .1, cx + .1, cy + .1, cx - .1, cy + .1, cx - .1, cy - .1);
        hole = buf;
      }
      zones.push_back({"z" + std::to_string(rng() % 1000000), "", "POLYGON(" + shell + hole + ")"});
    }
  }
  auto set = MustBuild({{"grid", zones}});
  ZoneLocator loc(set);
  GEOSContextHandle_t h = GEOS_init_r();
  GEOSWKTReader* reader = GEOSWKTReader_create_r(h);
  std::vector<std::pair<std::string, GEOSGeometry*>> geoms;
  for (const auto& z : zones) {
    geoms.push_back({z.id, GEOSWKTReader_read_r(h, reader, z.wkt.c_str())});
  }
  std::vector<std::pair<double, double>> points;
  std::uniform_real_distribution<double> u(-0.5, n + 0.5);
  for (int k = 0; k < 4000; ++k) points.push_back({u(rng), u(rng)});
  for (const auto& p : v) points.push_back(p);  // every vertex
  for (int j = 0; j < n; ++j) {                 // midpoints of horizontal edges
    for (int i = 0; i < n; ++i) {
      const auto& a = v[j * (n + 1) + i];
      const auto& b = v[j * (n + 1) + i + 1];
      points.push_back({(a.first + b.first) / 2, (a.second + b.second) / 2});
    }
  }
  for (const auto& [x, y] : points) {
    ASSERT_EQ(IdAt(loc, y, x), GeosAnswer(h, geoms, x, y)) << "at " << x << "," << y;
  }
  // Both the whole-cell cache and the exact tests answered some of them.
  EXPECT_GT(loc.stats().cell_hits, 0u);
  EXPECT_GT(loc.stats().fast_tests, 0u);
  EXPECT_GT(loc.stats().geos_tests, 0u);
  for (auto& [id, g] : geoms) GEOSGeom_destroy_r(h, g);
  GEOSWKTReader_destroy_r(h, reader);
  GEOS_finish_r(h);
}

// Overlapping zones of one layer: the grid's whole-cell answers must still follow the
// boundary rule (smallest id among the covering zones), checked against GEOS alone.
TEST(ZonesTest, GridCacheFollowsTheBoundaryRuleOnOverlaps) {
  std::mt19937_64 rng(21);
  std::uniform_real_distribution<double> pos(0, 9), size(0.05, 1.5);
  std::vector<ZoneSet::WktZone> zones{{"m", "", "POLYGON((0 0,10 0,10 10,0 10,0 0))"}};
  for (int i = 0; i < 60; ++i) {
    double x = pos(rng), y = pos(rng), w = size(rng);
    char buf[200];
    std::snprintf(buf, sizeof buf, "POLYGON((%g %g,%g %g,%g %g,%g %g,%g %g))", x, y, x + w, y,
                  x + w, y + w, x, y + w, x, y);
    // Ids both before and after "m": the big square wins only over the later ones.
    zones.push_back({(i % 2 ? "a" : "z") + std::to_string(i), "", buf});
  }
  auto set = MustBuild({{"overlap", zones}});
  ZoneLocator loc(set);
  GEOSContextHandle_t h = GEOS_init_r();
  GEOSWKTReader* reader = GEOSWKTReader_create_r(h);
  std::vector<std::pair<std::string, GEOSGeometry*>> geoms;
  for (const auto& z : zones)
    geoms.push_back({z.id, GEOSWKTReader_read_r(h, reader, z.wkt.c_str())});
  std::uniform_real_distribution<double> u(-0.5, 10.5);
  for (int k = 0; k < 20000; ++k) {
    double x = u(rng), y = u(rng);
    ASSERT_EQ(IdAt(loc, y, x), GeosAnswer(h, geoms, x, y)) << "at " << x << "," << y;
  }
  EXPECT_GT(loc.stats().cell_hits, 0u);
  EXPECT_FALSE(set->layers()[0].grid.empty());
  for (auto& [id, g] : geoms) GEOSGeom_destroy_r(h, g);
  GEOSWKTReader_destroy_r(h, reader);
  GEOS_finish_r(h);
}

// Lazy H3 resolution-4 tiles give exactly the eager index's answers, load only the tiles
// points fall in, and evict beyond their bound.
TEST(ZonesTest, LazyTilesEqualTheEagerIndex) {
  std::mt19937_64 rng(17);
  std::uniform_real_distribution<double> ux(5, 15), uy(45, 50), size(0.02, 0.3);
  std::vector<ZoneSet::WktZone> zones;
  for (int i = 0; i < 3000; ++i) {
    double x = ux(rng), y = uy(rng), w = size(rng), h = size(rng);
    char buf[300];
    // Triangles and quadrilaterals, some overlapping, some with a hole.
    if (i % 3 == 0) {
      std::snprintf(buf, sizeof buf, "POLYGON((%.6f %.6f,%.6f %.6f,%.6f %.6f,%.6f %.6f))", x, y,
                    x + w, y, x + w / 2, y + h, x, y);
    } else if (i % 3 == 1) {
      std::snprintf(buf, sizeof buf,
                    "POLYGON((%.6f %.6f,%.6f %.6f,%.6f %.6f,%.6f %.6f,%.6f %.6f),(%.6f %.6f,%.6f "
                    "%.6f,%.6f %.6f,%.6f %.6f,%.6f %.6f))",
                    x, y, x + w, y, x + w, y + h, x, y + h, x, y, x + w / 4, y + h / 4, x + w / 2,
                    y + h / 4, x + w / 2, y + h / 2, x + w / 4, y + h / 2, x + w / 4, y + h / 4);
    } else {
      std::snprintf(buf, sizeof buf, "POLYGON((%.6f %.6f,%.6f %.6f,%.6f %.6f,%.6f %.6f,%.6f %.6f))",
                    x, y, x + w, y + h / 3, x + w, y + h, x + w / 3, y + h, x, y);
    }
    zones.push_back({"t" + std::to_string(rng() % 100000), "", buf});
  }
  auto eager = ZoneSet::FromWkt({{"tiles", zones}}, ZoneTiling::kEager);
  auto lazy = ZoneSet::FromWkt({{"tiles", zones}}, ZoneTiling::kLazy);
  ASSERT_TRUE(eager.ok() && lazy.ok());
  const ZoneLayer& lazy_layer = (*lazy)->layers()[0];
  ASSERT_TRUE(lazy_layer.lazy);
  EXPECT_FALSE((*eager)->layers()[0].lazy);
  ASSERT_GT(lazy_layer.tiles.size(), 50u);  // 10° × 5° is hundreds of res-4 cells
  ZoneLocator a(*eager);
  ZoneLocator b(*lazy);
  ZoneLocator small(*lazy, /*max_tiles=*/3);
  // Points in the western third only first: the tiles loaded are those points' cells.
  std::uniform_real_distribution<double> west(5, 8);
  std::set<uint64_t> cells;
  int found = 0;
  for (int k = 0; k < 20000; ++k) {
    double x = west(rng), y = uy(rng);
    int want = a.Locate(0, y, x);
    ASSERT_EQ(b.Locate(0, y, x), want) << x << "," << y;
    // Three tiles for a region of dozens: evicts all the time (so only every 50th).
    if (k % 50 == 0) {
      ASSERT_EQ(small.Locate(0, y, x), want) << x << "," << y;
    }
    found += want >= 0;
    uint64_t c = h3::LatLngToCell(y, x, kZoneTileResolution);
    if (lazy_layer.tiles.count(c) != 0) cells.insert(c);
  }
  EXPECT_GT(found, 1000);
  EXPECT_EQ(b.stats().tiles_loaded, cells.size());
  EXPECT_LT(b.stats().tiles_loaded, lazy_layer.tiles.size());
  EXPECT_EQ(b.stats().tiles_evicted, 0u);
  EXPECT_GT(small.stats().tiles_evicted, 0u);
  // Then everywhere (more tiles than the 256 kept), with zones' vertices (boundary points).
  for (int k = 0; k < 4000; ++k) {
    double x = ux(rng), y = uy(rng);
    ASSERT_EQ(b.Locate(0, y, x), a.Locate(0, y, x)) << x << "," << y;
  }
  for (size_t i = 0; i < 300; ++i) {
    const Envelope& e = (*eager)->layers()[0].zones[i].envelope;
    ASSERT_EQ(b.Locate(0, e.min_y, e.min_x), a.Locate(0, e.min_y, e.min_x));
    ASSERT_EQ(b.Locate(0, e.max_y, e.max_x), a.Locate(0, e.max_y, e.max_x));
  }
  EXPECT_EQ(b.LocateId(0, 47, 200).str(), a.LocateId(0, 47, 200).str());  // wraps to -160
}

TEST(ZonesTest, RejectsNonPolygons) {
  auto set = ZoneSet::FromWkt({{"bad", {{"l1", "", "LINESTRING(0 0,1 1)"}}}});
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find("zone l1 of layer bad"), std::string::npos);
  EXPECT_NE(set.status().message().find("LineString"), std::string::npos);
}

TEST(ZonesTest, PackedRTreeFindsExactlyTheContainingBoxes) {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> u(0, 100), w(0, 5);
  std::vector<Envelope> boxes;
  for (int i = 0; i < 5000; ++i) {
    double x = u(rng), y = u(rng);
    boxes.push_back({x, y, x + w(rng), y + w(rng)});
  }
  PackedRTree tree(boxes);
  EXPECT_EQ(tree.size(), boxes.size());
  for (int q = 0; q < 2000; ++q) {
    double x = u(rng), y = u(rng);
    std::vector<uint32_t> got;
    tree.Query(x, y, [&](uint32_t i) {
      got.push_back(i);
      return true;
    });
    std::sort(got.begin(), got.end());
    std::vector<uint32_t> want;
    for (uint32_t i = 0; i < boxes.size(); ++i) {
      if (boxes[i].Contains(x, y)) want.push_back(i);
    }
    ASSERT_EQ(got, want) << "query " << x << "," << y;
  }
}

// Write one layer of polygons (WKT in EPSG:25833, UTM 33N, as a Berlin authority would
// publish them) with GDAL's driver `driver`.
void WriteBoundaryFile(const std::string& driver, const std::string& path,
                       const std::vector<std::pair<std::string, std::string>>& id_wkt) {
  GDALAllRegister();
  GDALDriver* drv = GetGDALDriverManager()->GetDriverByName(driver.c_str());
  ASSERT_NE(drv, nullptr) << driver;
  GDALDatasetUniquePtr ds(drv->Create(path.c_str(), 0, 0, 0, GDT_Unknown, nullptr));
  ASSERT_NE(ds, nullptr) << path;
  OGRSpatialReference srs;
  srs.importFromEPSG(25833);
  OGRLayer* layer = ds->CreateLayer("areas", &srs, wkbMultiPolygon, nullptr);
  ASSERT_NE(layer, nullptr);
  OGRFieldDefn id("area_id", OFTString);
  OGRFieldDefn name("label", OFTString);
  ASSERT_EQ(layer->CreateField(&id), OGRERR_NONE);
  ASSERT_EQ(layer->CreateField(&name), OGRERR_NONE);
  for (const auto& [fid, wkt] : id_wkt) {
    OGRFeatureUniquePtr f(OGRFeature::CreateFeature(layer->GetLayerDefn()));
    f->SetField("area_id", fid.c_str());
    f->SetField("label", ("Area " + fid).c_str());
    OGRGeometry* g = nullptr;
    ASSERT_EQ(OGRGeometryFactory::createFromWkt(wkt.c_str(), &srs, &g), OGRERR_NONE);
    f->SetGeometryDirectly(OGRGeometryFactory::forceToMultiPolygon(g));
    ASSERT_EQ(layer->CreateFeature(f.get()), OGRERR_NONE);
  }
}

TEST(ZonesTest, ReadsEveryBoundaryFormatAndReprojects) {
  testing::TempDir dir;
  // Two squares 2 km wide in UTM 33N near Berlin's centre (E 391000, N 5820000), the second
  // with a 1 km hole. Points below are the same places in WGS84 (checked with PROJ).
  std::vector<std::pair<std::string, std::string>> zones = {
      {"west",
       "POLYGON((389000 5819000,391000 5819000,391000 5821000,389000 5821000,389000 "
       "5819000))"},
      {"east",
       "POLYGON((391000 5819000,393000 5819000,393000 5821000,391000 5821000,391000 "
       "5819000),(391500 5819500,392500 5819500,392500 5820500,391500 5820500,391500 "
       "5819500))"}};
  struct Format {
    std::string driver, file;
  };
  for (const Format& f : std::vector<Format>{{"GeoJSON", "areas.geojson"},
                                             {"GPKG", "areas.gpkg"},
                                             {"ESRI Shapefile", "areas.shp"},
                                             {"FlatGeobuf", "areas.fgb"}}) {
    SCOPED_TRACE(f.driver);
    std::string path = dir.File(f.file);
    WriteBoundaryFile(f.driver, path, zones);
    auto set = ZoneSet::Load({{"area", path, "", "area_id", "label"}});
    ASSERT_TRUE(set.ok()) << set.status().ToString();
    const ZoneLayer& layer = (*set)->layers()[0];
    ASSERT_EQ(layer.zones.size(), 2u);
    EXPECT_EQ(layer.zones[0].id.str(), "east");  // sorted by id
    EXPECT_EQ(layer.zones[0].name, "Area east");
    // Envelopes are WGS84 degrees with x = longitude.
    EXPECT_NEAR(layer.zones[1].envelope.min_x, 13.364, 0.002);
    EXPECT_NEAR(layer.zones[1].envelope.min_y, 52.510, 0.002);
    ZoneLocator loc(*set);
    // (390000, 5820000) and (392000, 5820000) in UTM 33N.
    double lat_w = 52.51900, lon_w = 13.37881;
    double lat_e = 52.51940, lon_e = 13.40828;
    EXPECT_EQ(IdAt(loc, lat_w, lon_w), "west");
    EXPECT_EQ(IdAt(loc, lat_e, lon_e), "");            // the hole of east
    EXPECT_EQ(IdAt(loc, 52.52614, 13.40803), "east");  // 750 m north: in the ring
    EXPECT_EQ(IdAt(loc, 52.6, 13.4), "");
  }
}

TEST(ZonesTest, LoadErrorsNameTheFileAndField) {
  testing::TempDir dir;
  std::string path = dir.File("a.geojson");
  WriteBoundaryFile("GeoJSON", path, {{"x", "POLYGON((0 0,1 0,1 1,0 1,0 0))"}});
  auto missing_field = ZoneSet::Load({{"area", path, "", "code", ""}});
  ASSERT_FALSE(missing_field.ok());
  EXPECT_NE(missing_field.status().message().find("no id field 'code' (fields: area_id, label)"),
            std::string::npos)
      << missing_field.status().ToString();
  EXPECT_NE(missing_field.status().message().find(path), std::string::npos);
  auto missing_file = ZoneSet::Load({{"area", dir.File("none.gpkg"), "", "id", ""}});
  ASSERT_FALSE(missing_file.ok());
  EXPECT_NE(missing_file.status().message().find("none.gpkg"), std::string::npos);
  auto missing_layer = ZoneSet::Load({{"area", path, "roads", "area_id", ""}});
  ASSERT_FALSE(missing_layer.ok());
  EXPECT_NE(missing_layer.status().message().find("no layer 'roads'"), std::string::npos);
}

TEST(ZonesTest, BuiltinDistrictsMatchTheExampleFile) {
  EXPECT_EQ(std::string(BuiltinCityDistricts()),
            testing::ReadFile(std::string(TRIBUTARY_SOURCE_DIR) +
                              "/examples/zones/city_districts.geojson"));
  auto set = ZoneSet::Load({{"district", "builtin:city_districts", "", "district_id", "name"}});
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ((*set)->layers()[0].zones.size(), 9u);
  ZoneLocator loc(*set);
  EXPECT_EQ(IdAt(loc, 52.52, 13.40), "D5");  // the simulator's default centre: Mitte
  // Every point of the simulator's default 20 km square is in exactly one district.
  for (double y = -9.9; y <= 9.9; y += 1.1) {
    for (double x = -9.9; x <= 9.9; x += 1.1) {
      double lat = 52.52 + y / 111.195;
      double lon = 13.40 + x / (111.195 * std::cos(52.52 * M_PI / 180));
      EXPECT_FALSE(IdAt(loc, lat, lon).empty()) << lat << "," << lon;
    }
  }
}

TEST(ZonesTest, EnrichmentSetsEveryLayerH3AndNoZone) {
  testing::TempDir dir;
  std::string yaml =
      "sources: [{name: s, type: simulator}]\n"
      "zones:\n"
      "  h3_resolution: 9\n"
      "  layers:\n"
      "    - {name: district, path: builtin:city_districts, id_field: district_id}\n"
      "    - {name: flood, path: flood.geojson, id_field: area_id}\n";
  testing::WriteFile(dir.File("pipeline.yaml"), yaml);
  // A floodplain in UTM 33N covering the simulator centre only.
  WriteBoundaryFile("GeoJSON", dir.File("flood.geojson"),
                    {{"F1",
                      "POLYGON((390000 5819000,393000 5819000,393000 5822000,390000 "
                      "5822000,390000 5819000))"}});
  auto config = LoadPipelineConfig(dir.File("pipeline.yaml"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto op = MakeZoneEnrichOperator(*config);
  ASSERT_TRUE(op.ok()) << op.status().ToString();
  ASSERT_NE(*op, nullptr);
  Batch batch;
  Reading centre;
  centre.lat = 52.52;
  centre.lon = 13.40;
  Reading edge = centre;
  edge.lat = 52.59;  // north of the floodplain, in district D8
  Reading away = centre;
  away.lat = 10;
  batch.readings = {centre, edge, away};
  ASSERT_TRUE((*op)->Process(batch).ok());
  const auto& r = batch.readings;
  EXPECT_EQ(r[0].zone.str(), "D5");
  EXPECT_EQ(r[0].extra_zones[0].str(), "F1");
  EXPECT_FALSE(r[0].flags.Has(QcFlag::kNoZone));
  EXPECT_EQ(r[0].h3, h3::LatLngToCell(52.52, 13.40, 9));
  EXPECT_EQ(r[1].zone.str(), "D8");
  EXPECT_TRUE(r[1].extra_zones[0].empty());
  EXPECT_TRUE(r[1].flags.Has(QcFlag::kNoZone));
  EXPECT_TRUE(r[2].zone.empty());
  EXPECT_TRUE(r[2].flags.Has(QcFlag::kNoZone));
}

TEST(ZonesTest, ConfigErrorsNameTheLine) {
  auto config = ParsePipelineConfig(
      "sources: [{name: s, type: simulator}]\n"
      "zones:\n"
      "  layers:\n"
      "    - {name: d, path: x.geojson}\n",
      "p.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto op = MakeZoneEnrichOperator(*config);
  ASSERT_FALSE(op.ok());
  EXPECT_NE(op.status().message().find("p.yaml:4"), std::string::npos) << op.status().ToString();
  EXPECT_NE(op.status().message().find("id_field"), std::string::npos);
}

}  // namespace
}  // namespace tributary
