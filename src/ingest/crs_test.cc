#include "ingest/crs.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "io/sources/simulator.h"

namespace tributary {
namespace {

constexpr double kDegPerMetre = 1.0 / 111'320.0;  // at the equator, for tolerances

double Dms(double d, double m, double s) {
  return d + m / 60 + s / 3600;
}

TEST(IngestCrs, ParsesEpsgCodes) {
  int code = 0;
  for (std::string_view s :
       {"EPSG:32633", "epsg:32633", "32633", " EPSG::32633 ", "urn:ogc:def:crs:EPSG::32633"}) {
    code = 0;
    EXPECT_TRUE(ParseEpsgCode(s, code)) << s;
    EXPECT_EQ(code, 32633) << s;
  }
  for (std::string_view s :
       {"", "EPSG:", "EPSG:abc", "EPSG:-5", "EPSG:0", "UTM33", "EPSG:1234567", "EPSG:32633x"}) {
    EXPECT_FALSE(ParseEpsgCode(s, code)) << s;
  }
}

TEST(IngestCrs, Utm33NorthAgainstClosedFormAndSimulator) {
  CrsTransformer t;
  LonLat p;
  // On the central meridian (15°E) the northing is k0 × the meridian arc: WGS84 arc to
  // 45° is 4 984 944.378 m, k0 = 0.9996. Tolerance 1 cm.
  ASSERT_TRUE(t.ToWgs84("EPSG:32633", 500000.0, 0.9996 * 4984944.378, p).ok);
  EXPECT_NEAR(p.lon, 15.0, 0.01 * kDegPerMetre);
  EXPECT_NEAR(p.lat, 45.0, 0.01 * kDegPerMetre);
  ASSERT_TRUE(t.ToWgs84("EPSG:32633", 500000.0, 0.0, p).ok);
  EXPECT_NEAR(p.lon, 15.0, 1e-9);
  EXPECT_NEAR(p.lat, 0.0, 1e-9);
  // The simulator's own transverse Mercator series is an independent implementation
  // (Krüger to n^3, sub-millimetre in the zone): PROJ must agree to 1 cm.
  for (auto [lat, lon] : {std::pair{52.5162, 13.3777},
                          {48.2082, 16.3738},
                          {59.3293, 18.0686},
                          {41.9028, 12.4964},
                          {64.0, 12.0}}) {
    double x = 0, y = 0;
    LatLonToUtm(lat, lon, 33, false, x, y);
    ASSERT_TRUE(t.ToWgs84("32633", x, y, p).ok);
    EXPECT_NEAR(p.lat, lat, 0.01 * kDegPerMetre) << lat << "," << lon;
    EXPECT_NEAR(p.lon, lon, 0.01 * kDegPerMetre / std::cos(lat * std::numbers::pi / 180));
  }
  EXPECT_EQ(t.cached(), 1u);  // one PJ for every spelling of the code
}

TEST(IngestCrs, BritishNationalGridOrdnanceSurveyControlPoint) {
  // Ordnance Survey, "A guide to coordinate systems in Great Britain", worked example
  // (Caister water tower): National Grid E 651409.903 N 313177.270, ETRS89 (≈ WGS84 to
  // well under a metre) 52°39'28.8282"N 1°42'57.8663"E. Without the OSTN15 grid PROJ
  // uses the EPSG:1314 Helmert transformation, good to a few metres: tolerance 5 m.
  CrsTransformer t;
  LonLat p;
  ASSERT_TRUE(t.ToWgs84("EPSG:27700", 651409.903, 313177.270, p).ok);
  double lat = Dms(52, 39, 28.8282), lon = Dms(1, 42, 57.8663);
  EXPECT_NEAR(p.lat, lat, 5 * kDegPerMetre);
  EXPECT_NEAR(p.lon, lon, 5 * kDegPerMetre / std::cos(lat * std::numbers::pi / 180));
}

TEST(IngestCrs, WebMercatorClosedForm) {
  // EPSG:3857 inverse: lon = x / R, lat = 2 atan(exp(y / R)) − π/2, R = 6 378 137 m.
  constexpr double kR = 6378137.0;
  constexpr double kRad = 180 / std::numbers::pi;
  CrsTransformer t;
  for (auto [x, y] : {std::pair{0.0, 0.0},
                      {1489199.98, 6894699.80},
                      {-8238310.24, 4970071.58},
                      {15000000.0, -4000000.0}}) {
    LonLat p;
    ASSERT_TRUE(t.ToWgs84("EPSG:3857", x, y, p).ok) << x << "," << y;
    EXPECT_NEAR(p.lon, x / kR * kRad, 1e-9);
    EXPECT_NEAR(p.lat, (2 * std::atan(std::exp(y / kR)) - std::numbers::pi / 2) * kRad, 1e-9);
  }
}

TEST(IngestCrs, GeographicCrsTakesLonLatOrder) {
  // EPSG:4258 (ETRS89) is defined lat/lon; after normalisation x is the longitude.
  CrsTransformer t;
  LonLat p;
  ASSERT_TRUE(t.ToWgs84("EPSG:4258", 13.4, 52.5, p).ok);
  EXPECT_NEAR(p.lon, 13.4, 1e-5);
  EXPECT_NEAR(p.lat, 52.5, 1e-5);
}

TEST(IngestCrs, FailuresHaveReasons) {
  CrsTransformer t;
  LonLat p;
  Verdict v = t.ToWgs84("EPSG:999999", 1, 2, p);
  EXPECT_EQ(v.reason, QuarantineReason::kUnknownCrs);
  EXPECT_NE(v.detail.find("EPSG:999999"), std::string::npos) << v.detail;
  v = t.ToWgs84("EPSG:999999", 1, 2, p);  // the negative result is cached
  EXPECT_EQ(v.reason, QuarantineReason::kUnknownCrs);
  EXPECT_EQ(t.ToWgs84("OSGB", 1, 2, p).reason, QuarantineReason::kUnknownCrs);
  v = t.ToWgs84("EPSG:32633", 1e12, 5e6, p);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.reason, QuarantineReason::kCrsTransformFailed) << v.detail;
  v = t.ToWgs84("EPSG:32633", NAN, 5e6, p);
  EXPECT_EQ(v.reason, QuarantineReason::kCrsTransformFailed);
  EXPECT_TRUE(t.ToWgs84("EPSG:32633", 391000.5, 5820000.25, p).ok);  // still usable
}

}  // namespace
}  // namespace tributary
