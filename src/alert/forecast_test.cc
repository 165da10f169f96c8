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

// A diurnal temperature: 15 °C ± 6 °C with its peak at 15:00, a slow warming of
// 0.5 °C a day and deterministic noise, sampled every 15 min over `days`.
std::vector<SeriesPoint> Diurnal(int days, double noise = 0.3) {
  std::vector<SeriesPoint> s;
  constexpr TimeUs kStep = 15 * 60 * kMicrosPerSecond;
  uint64_t state = 42;
  for (int i = 0; i < days * 96; ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    double u = static_cast<double>(state >> 11) / 9007199254740992.0 - 0.5;
    double hour = (i % 96) / 4.0;
    double v = 15 + 6 * std::sin(2 * M_PI * (hour - 9) / 24.0) + 0.5 * i / 96.0 + 2 * noise * u;
    s.push_back({i * kStep, v});
  }
  return s;
}

TEST(ForecastTest, HoltWintersFollowsADiurnalCycleBetterThanTheTrend) {
  std::vector<SeriesPoint> s = Diurnal(6);
  Result<Forecast> hw = HoltWintersForecast(s);
  ASSERT_TRUE(hw.ok()) << hw.status().ToString();
  EXPECT_EQ(hw->method, "holt_winters");
  EXPECT_EQ(hw->season_points, 96u);
  EXPECT_EQ(hw->holdout_points, 96u);
  // The next step continues the cycle: 15 min after the last sample (23:45 of day 6) the
  // true value is that of 00:00 of day 7.
  double truth = 15 + 6 * std::sin(2 * M_PI * (0 - 9) / 24.0) + 0.5 * 6;
  EXPECT_NEAR(hw->next, truth, 0.6);
  EXPECT_NEAR(hw->next_day, truth + 0.5, 1.0);
  EXPECT_LT(hw->holdout_rmse, 0.6);
  EXPECT_LE(hw->holdout_mae, hw->holdout_rmse);
  EXPECT_GE(hw->alpha, 0);
  EXPECT_LE(hw->gamma, 1);
  // The seed paper's line cannot follow the cycle: its holdout error is several degrees.
  Result<Forecast> lin = LinearTrendForecast(s, 50);
  ASSERT_TRUE(lin.ok());
  EXPECT_GT(lin->holdout_rmse, 3 * hw->holdout_rmse);
  // Seasonal-naive misses the warming and the noise averages out less.
  Result<Forecast> naive = SeasonalNaiveForecast(s);
  ASSERT_TRUE(naive.ok());
  EXPECT_EQ(naive->holdout_points, 96u);
  EXPECT_GT(naive->holdout_rmse, hw->holdout_rmse);
}

TEST(ForecastTest, HoltWintersUsesGivenParametersAndNeedsTwoSeasons) {
  std::vector<SeriesPoint> s = Diurnal(3, 0);
  Result<Forecast> f = HoltWintersForecast(s, 24 * kHour, {0.3, 0.0, 0.1});
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_DOUBLE_EQ(f->alpha, 0.3);
  EXPECT_DOUBLE_EQ(f->beta, 0.0);
  EXPECT_DOUBLE_EQ(f->gamma, 0.1);
  // A missing stretch is interpolated, not fatal.
  s.erase(s.begin() + 100, s.begin() + 104);
  EXPECT_TRUE(HoltWintersForecast(s).ok());
  EXPECT_FALSE(HoltWintersForecast(Diurnal(1)).ok());
  EXPECT_FALSE(HoltWintersForecast(s, 24 * kHour, {1.5, NAN, NAN}).ok());
}

TEST(ForecastTest, ClampKeepsForecastsWithinPhysicalBounds) {
  std::vector<SeriesPoint> s;
  for (int i = 0; i < 20; ++i) s.push_back({i * kHour, 30.0 - 2.0 * i});  // falling PM2.5
  Result<Forecast> f = LinearTrendForecast(s, 50);
  ASSERT_TRUE(f.ok());
  EXPECT_LT(f->next_day, 0);
  ClampForecast(*f, 0, 1000);
  EXPECT_TRUE(f->clamped);
  EXPECT_EQ(f->next_day, 0);
  EXPECT_EQ(f->next, 0);
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
  EXPECT_NE(body->find("\"holdout\":{\"points\":2,\"rmse\":0,\"mae\":0}"), std::string::npos)
      << *body;
  EXPECT_FALSE(
      ForecastJson(
          live, {{"window", "h1"}, {"group", "zone-a"}, {"metric", "temperature"}, {"alpha", "2"}})
          .ok());
}

TEST(ForecastTest, ApiClampsAFallingPm25TrendAtZero) {
  LiveState live(LiveStateOptions{}, nullptr);
  Batch b;
  for (int i = 0; i < 10; ++i) {
    WindowResult w;
    w.window = Intern("h1");
    w.group = Intern("zone-a");
    w.metric = Intern("pm25");
    w.start = i * kHour;
    w.end = (i + 1) * kHour;
    w.mean = 20 - 2 * i;
    b.windows.push_back(w);
  }
  live.OnBatch(b);
  Result<std::string> body =
      ForecastJson(live, {{"window", "h1"}, {"group", "zone-a"}, {"metric", "pm25"}});
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_NE(body->find("\"next\":0,"), std::string::npos) << *body;
  EXPECT_NE(body->find("\"next_day\":0,"), std::string::npos) << *body;
  EXPECT_NE(body->find("\"clamped\":true"), std::string::npos) << *body;
}

}  // namespace
}  // namespace tributary
