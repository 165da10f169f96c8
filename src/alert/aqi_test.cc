#include "alert/aqi.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace tributary {
namespace {

// Breakpoints, the AQI equation, truncation (0.1 µg/m³ PM2.5, 1 µg/m³ PM10) and
// rounding of the index: EPA, "Technical Assistance Document for the Reporting of
// Daily Air Quality – the Air Quality Index (AQI)", EPA-454/B-24-002, May 2024,
// section IV and Table 6; AirNow-Tech, "The AQI Equation (2024 – valid beginning
// May 6th, 2024)". Expected values are that equation worked by hand.

TEST(AqiTest, Pm25BreakpointEdges2024) {
  const AqiPollutant p = AqiPollutant::kPm25;
  EXPECT_EQ(AqiFromConcentration(p, 0.0), 0);
  EXPECT_EQ(AqiFromConcentration(p, 9.0), 50);  // the 2024 "Good" ceiling (was 12.0)
  EXPECT_EQ(AqiFromConcentration(p, 9.1), 51);
  EXPECT_EQ(AqiFromConcentration(p, 35.4), 100);
  EXPECT_EQ(AqiFromConcentration(p, 35.5), 101);
  EXPECT_EQ(AqiFromConcentration(p, 55.4), 150);
  EXPECT_EQ(AqiFromConcentration(p, 55.5), 151);
  EXPECT_EQ(AqiFromConcentration(p, 125.4), 200);
  EXPECT_EQ(AqiFromConcentration(p, 125.5), 201);
  EXPECT_EQ(AqiFromConcentration(p, 225.4), 300);
  EXPECT_EQ(AqiFromConcentration(p, 225.5), 301);
  EXPECT_EQ(AqiFromConcentration(p, 325.4), 500);
}

TEST(AqiTest, Pm25WorkedValuesAndTruncation) {
  const AqiPollutant p = AqiPollutant::kPm25;
  // 35.9: (150 − 101) / (55.4 − 35.5) · (35.9 − 35.5) + 101 = 101.98… → 102.
  EXPECT_EQ(AqiFromConcentration(p, 35.9), 102);
  // 12.0: (100 − 51) / (35.4 − 9.1) · (12.0 − 9.1) + 51 = 56.40… → 56.
  EXPECT_EQ(AqiFromConcentration(p, 12.0), 56);
  // Truncated, not rounded: 9.09 is 9.0 (AQI 50), 35.49 is 35.4 (AQI 100).
  EXPECT_EQ(AqiFromConcentration(p, 9.09), 50);
  EXPECT_EQ(AqiFromConcentration(p, 35.49), 100);
  EXPECT_EQ(TruncateConcentration(p, 12.3), 12.3);  // not 12.2 from 12.2999…
  EXPECT_EQ(TruncateConcentration(p, 12.36), 12.3);
  // Above the top breakpoint the top segment extends ("beyond the AQI"):
  // (500 − 301) / (325.4 − 225.5) · (500.0 − 225.5) + 301 = 847.8… → 848.
  EXPECT_EQ(AqiFromConcentration(p, 500.0), 848);
  EXPECT_TRUE(std::isnan(AqiFromConcentration(p, -1)));
  EXPECT_TRUE(std::isnan(AqiFromConcentration(p, NAN)));
}

TEST(AqiTest, Pm10) {
  const AqiPollutant p = AqiPollutant::kPm10;
  EXPECT_EQ(AqiFromConcentration(p, 54), 50);
  EXPECT_EQ(AqiFromConcentration(p, 54.9), 50);  // truncated to 54
  EXPECT_EQ(AqiFromConcentration(p, 55), 51);
  EXPECT_EQ(AqiFromConcentration(p, 154), 100);
  EXPECT_EQ(AqiFromConcentration(p, 155), 101);
  EXPECT_EQ(AqiFromConcentration(p, 254), 150);
  EXPECT_EQ(AqiFromConcentration(p, 354), 200);
  EXPECT_EQ(AqiFromConcentration(p, 424), 300);
  EXPECT_EQ(AqiFromConcentration(p, 425), 301);
  EXPECT_EQ(AqiFromConcentration(p, 604), 500);
  // 100: (100 − 51) / (154 − 55) · (100 − 55) + 51 = 73.27… → 73.
  EXPECT_EQ(AqiFromConcentration(p, 100.7), 73);
}

TEST(AqiTest, Categories) {
  EXPECT_EQ(AqiCategory(0), "Good");
  EXPECT_EQ(AqiCategory(50), "Good");
  EXPECT_EQ(AqiCategory(51), "Moderate");
  EXPECT_EQ(AqiCategory(101), "Unhealthy for Sensitive Groups");
  EXPECT_EQ(AqiCategory(151), "Unhealthy");
  EXPECT_EQ(AqiCategory(201), "Very Unhealthy");
  EXPECT_EQ(AqiCategory(301), "Hazardous");
  EXPECT_EQ(AqiCategory(848), "Hazardous");
  EXPECT_EQ(AqiCategory(NAN), "");
  AqiPollutant p;
  EXPECT_TRUE(AqiPollutantOf(Intern("pm25"), p));
  EXPECT_EQ(p, AqiPollutant::kPm25);
  EXPECT_TRUE(AqiPollutantOf(Intern("pm10"), p));
  EXPECT_EQ(p, AqiPollutant::kPm10);
  EXPECT_FALSE(AqiPollutantOf(Intern("no2"), p));
}

// The NowCast steps as EPA's fact sheet "PM NowCast" (nepis.epa.gov P100X0J6) states
// them: w = 1 − (max − min) / max over the last 12 hours, at least 0.5; NowCast =
// Σ c_i·w^(i−1) / Σ w^(i−1). Validity (2 of the 3 most recent hours) and the
// truncation after the weighted average: AirNow-Tech, "The NowCast for PM2.5 and PM10".

TEST(NowCastTest, ConstantHoursGiveTheirMean) {
  std::vector<double> hours(12, 20.0);
  EXPECT_DOUBLE_EQ(PmNowCastWeight(hours), 1.0);
  EXPECT_DOUBLE_EQ(PmNowCast(hours), 20.0);
  std::vector<double> zeros(12, 0.0);
  EXPECT_EQ(PmNowCast(zeros), 0.0);
}

TEST(NowCastTest, SinglePulseUsesTheHalfWeightFloor) {
  // The pulse case of the NowCast literature: one hour at 71 µg/m³, all others 0.
  // min/max = 0, so w = 0.5 and the denominator is Σ 0.5^i (i = 0..11) = 2 − 2^−11.
  std::vector<double> hours(12, 0.0);
  hours[0] = 71;
  EXPECT_EQ(PmNowCastWeight(hours), 0.5);
  const double denom = 2.0 - std::ldexp(1.0, -11);
  EXPECT_DOUBLE_EQ(PmNowCast(hours), 71.0 / denom);  // 35.508…
  EXPECT_EQ(TruncateConcentration(AqiPollutant::kPm25, PmNowCast(hours)), 35.5);
  EXPECT_EQ(AqiFromConcentration(AqiPollutant::kPm25, PmNowCast(hours)), 101);
  // One hour later the pulse is c2: half its weight.
  std::vector<double> later(12, 0.0);
  later[1] = 71;
  EXPECT_DOUBLE_EQ(PmNowCast(later), 71.0 * 0.5 / denom);
}

TEST(NowCastTest, WeightedByRecency) {
  // Rising hours 10, 12, …, 32 (c1 = 32): w* = 10 / 32 = 0.3125 → floored at 0.5.
  std::vector<double> hours;
  for (int i = 0; i < 12; ++i) hours.push_back(32.0 - 2.0 * i);
  EXPECT_EQ(PmNowCastWeight(hours), 0.5);
  double num = 0, den = 0;
  for (int i = 0; i < 12; ++i) {
    num += hours[static_cast<size_t>(i)] * std::pow(0.5, i);
    den += std::pow(0.5, i);
  }
  EXPECT_DOUBLE_EQ(PmNowCast(hours), num / den);
  // A mild change keeps w* above the floor: hours 20 (c1) and 16 (others): w = 0.8.
  std::vector<double> mild(12, 16.0);
  mild[0] = 20;
  EXPECT_DOUBLE_EQ(PmNowCastWeight(mild), 0.8);
  num = 20;
  den = 1;
  for (int i = 1; i < 12; ++i) {
    num += 16 * std::pow(0.8, i);
    den += std::pow(0.8, i);
  }
  EXPECT_DOUBLE_EQ(PmNowCast(mild), num / den);
}

TEST(NowCastTest, EpaWorkedExample) {
  // The worked example of EPA/AirNow, "Computing the NowCast" (AirNow training
  // material for the PM NowCast; the same steps as EPA's fact sheet "The NowCast
  // Method", nepis.epa.gov P100X0J6): the 12 hourly PM2.5 averages, oldest first,
  //   50 80 75 90 82 53 64 74 21 10 16 13  (µg/m³; 13 is the current hour)
  // have range 90 − 10 = 80, scaled rate 80 / 90, weight 1 − 80/90 = 0.11 < 0.5, so
  // w = 0.5, and NowCast = (13·0.5⁰ + 16·0.5¹ + 10·0.5² + 21·0.5³ + …) / Σ 0.5^i
  // = 17.4 µg/m³ as the document states (17.41…, truncated to 0.1).
  const std::vector<double> oldest_first = {50, 80, 75, 90, 82, 53, 64, 74, 21, 10, 16, 13};
  const std::vector<double> hours(oldest_first.rbegin(), oldest_first.rend());
  EXPECT_EQ(PmNowCastWeight(hours), 0.5);
  EXPECT_NEAR(PmNowCast(hours), 17.41, 0.005);
  EXPECT_EQ(TruncateConcentration(AqiPollutant::kPm25, PmNowCast(hours)), 17.4);
  // Its AQI with the 2024 breakpoints (Moderate, 9.1–35.4 → 51–100), worked by hand:
  // (100 − 51) / (35.4 − 9.1) · (17.4 − 9.1) + 51 = 66.46… → 66.
  EXPECT_EQ(AqiFromConcentration(AqiPollutant::kPm25, PmNowCast(hours)), 66);
  EXPECT_EQ(AqiCategory(66), "Moderate");
}

TEST(NowCastTest, MissingHours) {
  std::vector<double> hours(12, 10.0);
  hours[0] = NAN;  // c1 missing, c2 and c3 present: valid
  EXPECT_DOUBLE_EQ(PmNowCast(hours), 10.0);
  hours[1] = NAN;  // c1 and c2 missing: only 1 of the 3 most recent hours
  EXPECT_TRUE(std::isnan(PmNowCast(hours)));
  std::vector<double> two{30, NAN, 10};  // c1, c3 present: valid; missing hours skipped
  const double w = 0.5;                  // 10 / 30 < 0.5
  EXPECT_DOUBLE_EQ(PmNowCast(two), (30 + 10 * w * w) / (1 + w * w));
  std::vector<double> one{30};
  EXPECT_TRUE(std::isnan(PmNowCast(one)));
  // Only the 12 most recent hours count.
  std::vector<double> long_run(24, 10.0);
  long_run[20] = 1000;
  EXPECT_DOUBLE_EQ(PmNowCast(long_run), 10.0);
}

}  // namespace
}  // namespace tributary
