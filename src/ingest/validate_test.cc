#include "ingest/validate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

namespace tributary {
namespace {

TEST(IngestValidate, ReasonNamesAreStableAndUnique) {
  std::set<std::string_view> names;
  for (size_t i = 0; i < kQuarantineReasonCount; ++i) {
    auto r = static_cast<QuarantineReason>(i);
    std::string_view name = QuarantineReasonName(r);
    EXPECT_NE(name, "unknown");
    EXPECT_TRUE(names.insert(name).second) << name;
    EXPECT_EQ(QuarantineReasonSymbol(r).view(), name);
  }
  EXPECT_EQ(QuarantineReasonName(QuarantineReason::kMalformedJson), "malformed_json");
  EXPECT_EQ(QuarantineReasonName(QuarantineReason::kOutOfBounds), "out_of_bounds");
}

TEST(IngestValidate, Position) {
  EXPECT_TRUE(CheckPosition(52.5, 13.4, "lat", "lon").ok);
  EXPECT_TRUE(CheckPosition(-90, 180, "lat", "lon").ok);
  Verdict v = CheckPosition(NAN, 13.4, "lat", "lon");
  EXPECT_EQ(v.reason, QuarantineReason::kNanCoordinate);
  EXPECT_NE(v.detail.find("lat"), std::string::npos);
  v = CheckPosition(1, INFINITY, "lat", "longitude");
  EXPECT_EQ(v.reason, QuarantineReason::kNanCoordinate);
  EXPECT_NE(v.detail.find("longitude"), std::string::npos);
  v = CheckPosition(123.4, 13.4, "lat", "lon");
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.reason, QuarantineReason::kCoordinateOutOfRange);
  EXPECT_NE(v.detail.find("lat = 123.4"), std::string::npos) << v.detail;
  v = CheckPosition(10, -180.5, "lat", "lon");
  EXPECT_EQ(v.reason, QuarantineReason::kCoordinateOutOfRange);
}

TEST(IngestValidate, EventTime) {
  TimeUs arrival = 1714564800000000;
  EXPECT_TRUE(CheckEventTime(arrival + 5 * kMicrosPerMinute, arrival, 5 * kMicrosPerMinute).ok);
  Verdict v = CheckEventTime(arrival + 5 * kMicrosPerMinute + 1, arrival, 5 * kMicrosPerMinute);
  EXPECT_EQ(v.reason, QuarantineReason::kFutureTimestamp);
  EXPECT_NE(v.detail.find("ahead"), std::string::npos);
  EXPECT_TRUE(CheckEventTime(arrival - kMicrosPerDay, arrival, 0).ok);
  EXPECT_TRUE(HasTimestampDrift(arrival - 6 * kMicrosPerMinute, arrival, 5 * kMicrosPerMinute));
  EXPECT_TRUE(HasTimestampDrift(arrival + 6 * kMicrosPerMinute, arrival, 5 * kMicrosPerMinute));
  EXPECT_FALSE(HasTimestampDrift(arrival - 5 * kMicrosPerMinute, arrival, 5 * kMicrosPerMinute));
}

TEST(IngestValidate, Wgs84Names) {
  for (std::string_view s : {"", "EPSG:4326", "epsg:4326", "4326", "WGS84", "WGS 84", "wgs-84",
                             "urn:ogc:def:crs:EPSG::4326", "urn:ogc:def:crs:OGC:1.3:CRS84"}) {
    EXPECT_TRUE(IsWgs84(s)) << s;
  }
  for (std::string_view s : {"EPSG:32633", "EPSG:3857", "EPSG:25833", "garbage"}) {
    EXPECT_FALSE(IsWgs84(s)) << s;
  }
}

TEST(IngestValidate, Bounds) {
  const MetricInfo& pm25 = *FindMetric("pm25");
  EXPECT_TRUE(CheckBounds(pm25, 0, 0, "pm25", "").ok);
  EXPECT_TRUE(CheckBounds(pm25, 1000, 1000, "pm25", "").ok);
  Verdict v = CheckBounds(pm25, 1500, 1500, "pm25", "");
  EXPECT_EQ(v.reason, QuarantineReason::kOutOfBounds);
  EXPECT_NE(v.detail.find("pm25 = 1500"), std::string::npos) << v.detail;
  EXPECT_NE(v.detail.find("[0, 1000]"), std::string::npos) << v.detail;
  v = CheckBounds(pm25, 2000, 2, "PM2.5", "mg/m3");
  EXPECT_NE(v.detail.find("PM2.5 = 2 mg/m3 (2000 ug/m3)"), std::string::npos) << v.detail;
  EXPECT_FALSE(CheckBounds(pm25, -0.1, -0.1, "pm25", "").ok);
}

}  // namespace
}  // namespace tributary
