#include "ingest/time_zone.h"

#include <gtest/gtest.h>

namespace tributary {
namespace {

TimeUs T(std::string_view iso) {
  auto t = ParseTime(iso);
  EXPECT_TRUE(t.ok()) << iso;
  return t.ok() ? *t : 0;
}

TEST(IngestTimeZone, BerlinOffsetsAndTransitions) {
  auto zone = TimeZone::Load("Europe/Berlin");
  ASSERT_TRUE(zone.ok()) << zone.status().ToString();
  const TimeZone& z = **zone;
  EXPECT_EQ(z.OffsetAt(T("2024-01-15T12:00:00Z") / kMicrosPerSecond), 3600);
  EXPECT_EQ(z.OffsetAt(T("2024-07-15T12:00:00Z") / kMicrosPerSecond), 7200);
  // Spring forward 2024-03-31 01:00Z, fall back 2024-10-27 01:00Z.
  EXPECT_EQ(z.OffsetAt(T("2024-03-31T00:59:59Z") / kMicrosPerSecond), 3600);
  EXPECT_EQ(z.OffsetAt(T("2024-03-31T01:00:00Z") / kMicrosPerSecond), 7200);
  EXPECT_EQ(z.OffsetAt(T("2024-10-27T00:59:59Z") / kMicrosPerSecond), 7200);
  EXPECT_EQ(z.OffsetAt(T("2024-10-27T01:00:00Z") / kMicrosPerSecond), 3600);
}

TEST(IngestTimeZone, LocalToUtcAcrossDst) {
  auto zone = TimeZone::Load("Europe/Berlin");
  ASSERT_TRUE(zone.ok());
  const TimeZone& z = **zone;
  // Ordinary winter and summer wall times.
  EXPECT_EQ(z.LocalToUtc(T("2024-01-15T12:00:00")), T("2024-01-15T11:00:00Z"));
  EXPECT_EQ(z.LocalToUtc(T("2024-07-15T12:00:00.250")), T("2024-07-15T10:00:00.250Z"));
  // Around the spring gap: 01:59 CET exists, 02:00–02:59 do not, 03:00 CEST exists.
  EXPECT_EQ(z.LocalToUtc(T("2024-03-31T01:59:00")), T("2024-03-31T00:59:00Z"));
  // Rule: the offset before the transition (CET) → 02:30 becomes 01:30Z (03:30 CEST).
  EXPECT_EQ(z.LocalToUtc(T("2024-03-31T02:30:00")), T("2024-03-31T01:30:00Z"));
  EXPECT_EQ(z.LocalToUtc(T("2024-03-31T03:00:00")), T("2024-03-31T01:00:00Z"));
  // The autumn hour 02:00–02:59 happens twice; rule: the first occurrence (CEST).
  EXPECT_EQ(z.LocalToUtc(T("2024-10-27T01:59:00")), T("2024-10-26T23:59:00Z"));
  EXPECT_EQ(z.LocalToUtc(T("2024-10-27T02:30:00")), T("2024-10-27T00:30:00Z"));
  EXPECT_EQ(z.LocalToUtc(T("2024-10-27T03:00:00")), T("2024-10-27T02:00:00Z"));
}

TEST(IngestTimeZone, FooterRuleBeyondTheTable) {
  // Past the last transition of the file the POSIX footer rule applies.
  auto zone = TimeZone::Load("Europe/Berlin");
  ASSERT_TRUE(zone.ok());
  EXPECT_EQ((*zone)->LocalToUtc(T("2090-07-01T12:00:00")), T("2090-07-01T10:00:00Z"));
  EXPECT_EQ((*zone)->LocalToUtc(T("2090-12-01T12:00:00")), T("2090-12-01T11:00:00Z"));
  // Southern hemisphere: Sydney is on daylight time in January (+11).
  auto sydney = TimeZone::Load("Australia/Sydney");
  ASSERT_TRUE(sydney.ok());
  EXPECT_EQ((*sydney)->LocalToUtc(T("2024-01-15T12:00:00")), T("2024-01-15T01:00:00Z"));
  EXPECT_EQ((*sydney)->LocalToUtc(T("2090-01-15T12:00:00")), T("2090-01-15T01:00:00Z"));
  EXPECT_EQ((*sydney)->LocalToUtc(T("2090-07-15T12:00:00")), T("2090-07-15T02:00:00Z"));
}

TEST(IngestTimeZone, UnknownAndHostileNames) {
  EXPECT_FALSE(TimeZone::Load("Mars/Olympus_Mons").ok());
  EXPECT_FALSE(TimeZone::Load("../../etc/passwd").ok());
  EXPECT_FALSE(TimeZone::Load("/etc/localtime").ok());
  EXPECT_FALSE(
      TimeZone::FromTzif("x", "not a tzif file at all, but long enough to have a header").ok());
  auto utc = TimeZone::Load("UTC");
  ASSERT_TRUE(utc.ok());
  EXPECT_EQ((*utc)->LocalToUtc(T("2024-03-31T02:30:00")), T("2024-03-31T02:30:00Z"));
}

TEST(IngestTimeZone, DetectsNaiveTimestamps) {
  EXPECT_FALSE(HasUtcOffset("2024-03-31 02:30:00"));
  EXPECT_FALSE(HasUtcOffset("2024-03-31T02:30:00.123"));
  EXPECT_FALSE(HasUtcOffset("2024-03-31"));
  EXPECT_TRUE(HasUtcOffset("2024-03-31T02:30:00Z"));
  EXPECT_TRUE(HasUtcOffset("2024-03-31T02:30:00+02:00"));
  EXPECT_TRUE(HasUtcOffset("2024-03-31T02:30:00-0530"));
  EXPECT_TRUE(HasUtcOffset("1714564800"));  // epoch numbers are UTC
}

}  // namespace
}  // namespace tributary
