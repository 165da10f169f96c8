// The US EPA Air Quality Index (AQI) and the PM NowCast, as pure functions.
//
// Domain. The AQI maps a pollutant concentration onto a 0–500 scale in six
// categories (Good … Hazardous). Within a category it is the linear interpolation
//   AQI = (I_hi − I_lo) / (C_hi − C_lo) · (C − C_lo) + I_lo
// between the category's concentration breakpoints [C_lo, C_hi] and index
// breakpoints [I_lo, I_hi], after the concentration is TRUNCATED (not rounded) to the
// pollutant's reporting precision — 0.1 µg/m³ for PM2.5, 1 µg/m³ for PM10 — and the
// resulting index is rounded to the nearest integer. Breakpoints are those of EPA's
// Technical Assistance Document for the Reporting of Daily Air Quality – the AQI,
// EPA-454/B-24-002 (May 2024), Table 6, valid from 6 May 2024:
//   PM2.5 (µg/m³, 24 h): 0.0–9.0 | 9.1–35.4 | 35.5–55.4 | 55.5–125.4 | 125.5–225.4 | 225.5–325.4
//   PM10  (µg/m³, 24 h): 0–54    | 55–154   | 155–254   | 255–354    | 355–424     | 425–604
//   AQI:                 0–50    | 51–100   | 101–150   | 151–200    | 201–300     | 301–500
// A truncated concentration above the top breakpoint extends the top segment
// linearly (an index above 500, "beyond the AQI"); below 0 there is no index (NaN).
//
// The NowCast (same document, "How the NowCast is calculated") turns the last 12
// hourly averages c1 (most recent) … c12 into a real-time estimate of the 24-hour
// concentration: with cmin/cmax over the hours present, the weight factor
// w* = cmin / cmax (= 1 − range / cmax), floored for PM at w = max(w*, 0.5), and
//   NowCast = Σ c_i · w^(i−1) / Σ w^(i−1)    over the hours i present.
// It is valid only when at least 2 of the 3 most recent hours are present. The raw
// hourly averages are used (no truncation); the NowCast is then truncated like any
// concentration before it enters the AQI equation.
#pragma once

#include <span>
#include <string_view>

#include "core/intern.h"

namespace tributary {

/// Pollutants with AQI breakpoints here.
enum class AqiPollutant { kPm25, kPm10 };

/// The pollutant of a canonical metric name ("pm25", "pm10"); false for others.
bool AqiPollutantOf(Symbol metric, AqiPollutant& out);
/// Truncate a concentration to the pollutant's reporting precision (0.1 or 1 µg/m³).
double TruncateConcentration(AqiPollutant p, double concentration);
/// The AQI of a concentration in µg/m³ (truncated here first), rounded to an integer;
/// NaN for a NaN or negative concentration.
double AqiFromConcentration(AqiPollutant p, double concentration);
/// Category name of an AQI value: "Good", "Moderate", "Unhealthy for Sensitive
/// Groups", "Unhealthy", "Very Unhealthy", "Hazardous"; "" for NaN.
std::string_view AqiCategory(double aqi);

/// The PM NowCast of hourly averages, most recent first (hourly[0] = c1; NaN = hour
/// missing; at most the first 12 are used). NaN unless 2 of the 3 most recent hours
/// are present. Not truncated (see TruncateConcentration).
double PmNowCast(std::span<const double> hourly);
/// The weight factor w used by PmNowCast for these hours (NaN when none is present).
double PmNowCastWeight(std::span<const double> hourly);

}  // namespace tributary
