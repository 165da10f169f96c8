#include "core/time.h"

#include <gtest/gtest.h>

#include <cmath>

namespace tributary {
namespace {

constexpr TimeUs kMay1Noon = 1714564800LL * kMicrosPerSecond;  // 2024-05-01T12:00:00Z

TEST(TimeTest, ParsesIso8601Variants) {
  EXPECT_EQ(*ParseTime("2024-05-01T12:00:00Z"), kMay1Noon);
  EXPECT_EQ(*ParseTime("2024-05-01 12:00:00Z"), kMay1Noon);
  EXPECT_EQ(*ParseTime("2024-05-01T12:00:00"), kMay1Noon);  // naive → UTC
  EXPECT_EQ(*ParseTime("2024-05-01T14:00:00+02:00"), kMay1Noon);
  EXPECT_EQ(*ParseTime("2024-05-01T06:30:00-0530"), kMay1Noon);
  EXPECT_EQ(*ParseTime("2024-05-01T12:00:00.5Z"), kMay1Noon + 500000);
  EXPECT_EQ(*ParseTime("2024-05-01T12:00:00.123456789Z"), kMay1Noon + 123456);
  EXPECT_EQ(*ParseTime("2024-05-01T12:00Z"), kMay1Noon);
  EXPECT_EQ(*ParseTime("2024-05-01"), kMay1Noon - 12 * kMicrosPerHour);
  EXPECT_EQ(*ParseTime("  2024-05-01T12:00:00Z "), kMay1Noon);
}

TEST(TimeTest, ParsesEpochByMagnitude) {
  EXPECT_EQ(*ParseTime("1714564800"), kMay1Noon);
  EXPECT_EQ(*ParseTime("1714564800000"), kMay1Noon);
  EXPECT_EQ(*ParseTime("1714564800000000"), kMay1Noon);
  EXPECT_EQ(*ParseTime("1714564800.25"), kMay1Noon + 250000);
  EXPECT_EQ(*EpochToTime(1714564800, EpochUnit::kSeconds), kMay1Noon);
  EXPECT_EQ(*EpochToTime(1714564800000.0, EpochUnit::kMillis), kMay1Noon);
  EXPECT_EQ(*EpochToTime(1714564800000000.0, EpochUnit::kMicros), kMay1Noon);
  EXPECT_FALSE(EpochToTime(NAN).ok());
}

TEST(TimeTest, RejectsMalformedTimestampsWithReason) {
  for (const char* bad :
       {"", "yesterday", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "2024-05-01T25:00:00Z",
        "2024-05-01T12:00:00+2", "2024-05-01T12:00:00Zjunk", "2024/05/01", "2024-05-01X12:00"}) {
    Result<TimeUs> r = ParseTime(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find("bad timestamp"), std::string::npos);
    }
  }
  EXPECT_TRUE(ParseTime("2024-02-29T00:00:00Z").ok());  // leap day
  EXPECT_FALSE(ParseTime("2023-02-29T00:00:00Z").ok());
}

TEST(TimeTest, FormatRoundTrips) {
  EXPECT_EQ(FormatTime(kMay1Noon), "2024-05-01T12:00:00Z");
  EXPECT_EQ(FormatTime(kMay1Noon + 1), "2024-05-01T12:00:00.000001Z");
  EXPECT_EQ(FormatTime(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatTime(-1), "1969-12-31T23:59:59.999999Z");
  for (TimeUs t : {kMay1Noon, kMay1Noon + 987654, TimeUs{-86400000001}, TimeUs{951782400000000}}) {
    EXPECT_EQ(*ParseTime(FormatTime(t)), t);
  }
}

TEST(TimeTest, Durations) {
  EXPECT_EQ(*ParseDuration("30s"), 30 * kMicrosPerSecond);
  EXPECT_EQ(*ParseDuration("5m"), 5 * kMicrosPerMinute);
  EXPECT_EQ(*ParseDuration("1h30m"), 90 * kMicrosPerMinute);
  EXPECT_EQ(*ParseDuration("250ms"), 250 * kMicrosPerMilli);
  EXPECT_EQ(*ParseDuration("2d"), 2 * kMicrosPerDay);
  EXPECT_EQ(*ParseDuration("1.5s"), 1500 * kMicrosPerMilli);
  EXPECT_EQ(*ParseDuration("10"), 10 * kMicrosPerSecond);
  EXPECT_FALSE(ParseDuration("-5m").ok());
  EXPECT_FALSE(ParseDuration("5 parsecs").ok());
  EXPECT_FALSE(ParseDuration("").ok());
  EXPECT_FALSE(ParseDuration("m").ok());
  EXPECT_EQ(FormatDuration(90 * kMicrosPerMinute), "1h30m");
  EXPECT_EQ(FormatDuration(0), "0s");
  EXPECT_EQ(FormatDuration(250 * kMicrosPerMilli), "250ms");
}

TEST(TimeTest, FloorDivRoundsDown) {
  EXPECT_EQ(FloorDiv(7, 2), 3);
  EXPECT_EQ(FloorDiv(-7, 2), -4);
  EXPECT_EQ(FloorDiv(-8, 2), -4);
  EXPECT_EQ(FloorDiv(0, 5), 0);
}

}  // namespace
}  // namespace tributary
