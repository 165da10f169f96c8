#include "alert/summary.h"

#include <gtest/gtest.h>

#include <cmath>

#include "alert/subscriptions.h"
#include "test_util.h"

namespace tributary {
namespace {

constexpr TimeUs kHour = 3600 * kMicrosPerSecond;

std::shared_ptr<const TimeZone> Berlin() {
  Result<std::shared_ptr<const TimeZone>> z = TimeZone::Load("Europe/Berlin");
  EXPECT_TRUE(z.ok()) << z.status().ToString();
  return *z;
}

TimeUs T(const char* iso) {
  Result<TimeUs> t = ParseTime(iso);
  EXPECT_TRUE(t.ok()) << iso;
  return *t;
}

TEST(SummaryTest, ClockTimesAndTheDailyScheduleFollowTheTimeZone) {
  EXPECT_EQ(*ParseClockTime("07:00"), 420);
  EXPECT_EQ(*ParseClockTime("23:59"), 1439);
  EXPECT_FALSE(ParseClockTime("24:00").ok());
  EXPECT_FALSE(ParseClockTime("7:00").ok());
  EXPECT_FALSE(ParseClockTime("07:60").ok());
  auto berlin = Berlin();
  // 05:30Z in winter is 06:30 in Berlin: before 07:00, not due; 06:00Z is 07:00, due.
  EXPECT_FALSE(SummaryDue(*berlin, 420, T("2026-12-02T05:30:00Z"), ""));
  EXPECT_TRUE(SummaryDue(*berlin, 420, T("2026-12-02T06:00:00Z"), ""));
  EXPECT_TRUE(SummaryDue(*berlin, 420, T("2026-12-02T06:00:00Z"), "2026-12-01"));
  EXPECT_FALSE(SummaryDue(*berlin, 420, T("2026-12-02T06:00:00Z"), "2026-12-02"));
  // In summer Berlin is UTC+2: 05:00Z is already 07:00.
  EXPECT_TRUE(SummaryDue(*berlin, 420, T("2026-07-02T05:00:00Z"), "2026-07-01"));
  // 23:30Z on 1 December is 00:30 on 2 December in Berlin.
  EXPECT_EQ(LocalDate(*berlin, T("2026-12-01T23:30:00Z")), "2026-12-02");
}

TEST(SummaryTest, AdviceFollowsTheCurrentValues) {
  auto has = [](const std::vector<std::string>& v, const char* word) {
    for (const std::string& s : v) {
      if (s.find(word) != std::string::npos) return true;
    }
    return false;
  };
  std::vector<std::string> a =
      SummaryAdvice({{"rainfall", 1.2}, {"temperature", 32}, {"pm25", 80}, {"wind_speed", 3}});
  EXPECT_TRUE(has(a, "umbrella"));
  EXPECT_TRUE(has(a, "Heat"));
  EXPECT_TRUE(has(a, "Poor air quality"));
  EXPECT_FALSE(has(a, "wind"));
  EXPECT_TRUE(has(SummaryAdvice({{"temperature", -3}}), "Frost"));
  EXPECT_TRUE(has(SummaryAdvice({{"wind_speed", 20}}), "Strong wind"));
  std::vector<std::string> calm =
      SummaryAdvice({{"rainfall", 0}, {"pm25", 10}, {"temperature", 18}});
  ASSERT_EQ(calm.size(), 1u);
  EXPECT_EQ(calm[0], "No special precautions needed.");
}

WindowResult Window(const char* group, const char* metric, TimeUs start, double mean, double min,
                    double max) {
  WindowResult w;
  w.window = Intern("district_1h");
  w.group_by = Intern("zone");
  w.group = Intern(group);
  w.metric = Intern(metric);
  w.start = start;
  w.end = start + kHour;
  w.count = 10;
  w.mean = mean;
  w.min = min;
  w.max = max;
  return w;
}

TEST(SummaryTest, DailySummaryHasPeriodsExceedancesForecastAdviceAndTheLink) {
  auto utc = *TimeZone::Load("UTC");
  SummaryInput in;
  in.kind = "zone";
  in.name = "mitte";
  in.unsubscribe_url = "http://127.0.0.1:8080/api/unsubscribe?token=abc";
  // Two days of hourly PM2.5 ending 2026-12-02 07:00Z: 20 at night, 50 from 06:00 to
  // 12:00 (min 45, max 60), 30 in the evening; the other zone must not leak in.
  TimeUs day0 = T("2026-11-30T07:00:00Z");
  for (int h = 0; h < 48; ++h) {
    TimeUs start = day0 + h * kHour;
    int hour = (7 + h) % 24;
    double v = hour >= 6 && hour < 12 ? 50 : hour >= 18 ? 30 : 20;
    in.windows.push_back(Window("mitte", "pm25", start, v, v - 5, v + 10));
    in.windows.push_back(Window("other", "pm25", start, 999, 999, 999));
  }
  in.windows.push_back(Window("mitte", "rainfall", day0 + 47 * kHour, 0.4, 0, 1));
  // A revision replaces its first emission.
  WindowResult rev = in.windows[0];
  rev.mean = 21;
  rev.revision = 1;
  in.windows.push_back(rev);
  AlertEvent e;
  e.rule = Intern("pm25_high");
  e.key = Intern("mitte");
  e.severity = Intern("warning");
  e.state = AlertState::kResolved;
  e.fired_at = T("2026-12-02T06:10:00Z");
  e.message = "pm25 at mitte is 50 > 35";
  in.alerts.push_back(e);
  AlertEvent other = e;
  other.key = Intern("other");
  other.rule = Intern("elsewhere_rule");
  in.alerts.push_back(other);

  SummaryMail m = BuildDailySummary(in, *utc, T("2026-12-02T07:00:00Z"));
  EXPECT_EQ(m.subject, "Daily summary for zone mitte, 2026-12-02");
  const std::string& t = m.text;
  EXPECT_NE(t.find("Morning (06:00-12:00), last 24 h:\n  pm25: min 45.0, mean 50.0, max 60.0 "
                   "ug/m3 (6 windows)"),
            std::string::npos)
      << t;
  // The last 24 h hold 18:00..23:00 of 1 December: 6 windows of 30.
  EXPECT_NE(t.find("Evening (18:00-24:00), last 24 h:\n  pm25: min 25.0, mean 30.0, max 40.0"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("pm25_high (warning) fired at 06:10, resolved: pm25 at mitte is 50 > 35"),
            std::string::npos)
      << t;
  EXPECT_EQ(t.find("elsewhere_rule"), std::string::npos);
  EXPECT_EQ(t.find("999"), std::string::npos);
  EXPECT_NE(t.find("PM2.5 windows with a mean above 35 ug/m3: 6"), std::string::npos) << t;
  EXPECT_NE(t.find("pm25: next window "), std::string::npos) << t;
  EXPECT_NE(t.find("(holt_winters"), std::string::npos) << t;
  EXPECT_NE(t.find("Rain: take an umbrella."), std::string::npos) << t;
  EXPECT_NE(t.find("To stop these emails, open http://127.0.0.1:8080/api/unsubscribe?token=abc"),
            std::string::npos);

  SummaryMail w = BuildWelcomeMail(in, *utc, T("2026-12-02T07:00:00Z"), "07:00");
  EXPECT_NE(w.text.find("every day at 07:00 (UTC)"), std::string::npos) << w.text;
  EXPECT_NE(w.text.find("Current conditions (data up to 07:00):\n  pm25: 50.0 ug/m3"),
            std::string::npos)
      << w.text;
  EXPECT_NE(w.text.find("To unsubscribe, open http://127.0.0.1:8080/api/unsubscribe?token=abc"),
            std::string::npos);
}

TEST(SubscriptionStoreTest, AddsOncePersistsAndRemovesByItsSecret) {
  testing::TempDir dir;
  std::string path = dir.File("subs.db");
  std::string token;
  {
    SubscriptionStore store;
    ASSERT_TRUE(store.Open(path).ok());
    bool created = false;
    Result<Subscription> a =
        store.Add("Ann@Example.ORG", "zone", "mitte", "07:00", "", 1000, created);
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    EXPECT_TRUE(created);
    EXPECT_EQ(a->email, "Ann@example.org");
    EXPECT_EQ(a->token.size(), 32u);
    token = a->token;
    Result<Subscription> again =
        store.Add("Ann@example.org", "zone", "mitte", "08:00", "", 2000, created);
    ASSERT_TRUE(again.ok());
    EXPECT_FALSE(created);
    EXPECT_EQ(again->id, a->id);
    EXPECT_EQ(again->send_at, "07:00");
    Result<Subscription> b =
        store.Add("bob@example.org", "device", "aq-1", "18:30", "", 3000, created);
    ASSERT_TRUE(b.ok());
    EXPECT_NE(b->token, token);
    EXPECT_FALSE(store.Add("not an email", "zone", "mitte", "07:00", "", 1, created).ok());
    ASSERT_TRUE(store.MarkSent(a->id, "2026-12-02").ok());
  }
  SubscriptionStore store;
  ASSERT_TRUE(store.Open(path).ok());
  Result<std::vector<Subscription>> all = store.List();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].last_sent_day, "2026-12-02");
  EXPECT_EQ((*all)[1].kind, "device");
  EXPECT_FALSE(store.RemoveByToken("' OR 1=1 --")->has_value());
  EXPECT_FALSE(store.RemoveByToken(std::string(32, 'f'))->has_value());
  Result<std::optional<Subscription>> gone = store.RemoveByToken(token);
  ASSERT_TRUE(gone.ok());
  ASSERT_TRUE(gone->has_value());
  EXPECT_EQ((*gone)->zone, "mitte");
  EXPECT_FALSE(store.RemoveByToken(token)->has_value());
  EXPECT_EQ(store.List()->size(), 1u);
  EXPECT_TRUE(ValidSubscriberEmail("a.b+c@sub.example.org"));
  EXPECT_FALSE(ValidSubscriberEmail("a@b"));
  EXPECT_FALSE(ValidSubscriberEmail("a@b.org\r\nBcc: x@y.org"));
}

}  // namespace
}  // namespace tributary
