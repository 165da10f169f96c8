#include "alert/forecast.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace tributary {
namespace {

constexpr TimeUs kHour = 3600 * kMicrosPerSecond;

TEST(ForecastTest, LinearTrendUsesTheLastPointsAndReportsItsError) {
  std::vector<SeriesPoint> s;
  // An old flat stretch the last-50 window must ignore, then a 0.5/h rise.
  for (int i = 0; i < 20; ++i) s.push_back({i * kHour, 100.0});
  for (int i = 0; i < 50; ++i) s.push_back({(20 + i) * kHour, 10.0 + 0.5 * i});
  Result<Forecast> f = LinearTrendForecast(s, 50);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->points, 50u);
  EXPECT_NEAR(f->slope_per_hour, 0.5, 1e-9);
  EXPECT_NEAR(f->next, 10.0 + 0.5 * 50, 1e-9);
  EXPECT_NEAR(f->next_day, 10.0 + 0.5 * 49 + 12, 1e-9);
  EXPECT_EQ(f->next_time, 70 * kHour);
  EXPECT_NEAR(f->rmse, 0, 1e-9);
  // Noise shows in the error.
  s.back().v += 5;
  f = LinearTrendForecast(s, 50);
  ASSERT_TRUE(f.ok());
  EXPECT_GT(f->rmse, 0.5);
  EXPECT_FALSE(LinearTrendForecast(std::vector<SeriesPoint>{{0, 1}}).ok());
}

TEST(ForecastTest, SeasonalNaiveRepeatsYesterday) {
  std::vector<SeriesPoint> s;
  for (int h = 0; h < 48; ++h) {
    s.push_back({h * kHour, 15 + 5 * std::sin(2 * M_PI * (h % 24) / 24.0)});
  }
  Result<Forecast> f = SeasonalNaiveForecast(s);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->next_time, 48 * kHour);
  EXPECT_NEAR(f->next, s[24].v, 1e-12);  // 48 h − 24 h
  EXPECT_NEAR(f->rmse, 0, 1e-9);         // a perfect diurnal cycle
}

}  // namespace
}  // namespace tributary

#include "server/api.h"
#include "server/live_state.h"

namespace tributary {
namespace {

TEST(ForecastTest, ApiForecastsAWindowSeries) {
  LiveState live(LiveStateOptions{}, nullptr);
  Batch b;
  for (int i = 0; i < 10; ++i) {
    WindowResult w;
    w.window = Intern("h1");
    w.group = Intern("zone-a");
    w.metric = Intern("temperature");
    w.start = i * kHour;
    w.end = (i + 1) * kHour;
    w.mean = 20 + i;
    b.windows.push_back(w);
  }
  live.OnBatch(b);
  Result<std::string> body =
      ForecastJson(live, {{"window", "h1"}, {"group", "zone-a"}, {"metric", "temperature"}});
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_NE(body->find("\"next\":30"), std::string::npos) << *body;
  EXPECT_NE(body->find("\"slope_per_hour\":1"), std::string::npos) << *body;
  EXPECT_FALSE(ForecastJson(live, {{"window", "h1"}}).ok());
}

}  // namespace
}  // namespace tributary
