#include "alert/aqi.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace tributary {
namespace {

struct Breakpoint {
  double c_lo, c_hi;
  double i_lo, i_hi;
};

// EPA-454/B-24-002 (May 2024), Table 6.
constexpr Breakpoint kPm25[] = {
    {0.0, 9.0, 0, 50},       {9.1, 35.4, 51, 100},     {35.5, 55.4, 101, 150},
    {55.5, 125.4, 151, 200}, {125.5, 225.4, 201, 300}, {225.5, 325.4, 301, 500},
};
constexpr Breakpoint kPm10[] = {
    {0, 54, 0, 50},       {55, 154, 51, 100},   {155, 254, 101, 150},
    {255, 354, 151, 200}, {355, 424, 201, 300}, {425, 604, 301, 500},
};

constexpr size_t kNowCastHours = 12;

}  // namespace

bool AqiPollutantOf(Symbol metric, AqiPollutant& out) {
  static const Symbol kPm25Name = Intern("pm25");
  static const Symbol kPm10Name = Intern("pm10");
  if (metric == kPm25Name) {
    out = AqiPollutant::kPm25;
    return true;
  }
  if (metric == kPm10Name) {
    out = AqiPollutant::kPm10;
    return true;
  }
  return false;
}

double TruncateConcentration(AqiPollutant p, double concentration) {
  if (!std::isfinite(concentration)) return concentration;
  if (p == AqiPollutant::kPm10) return std::trunc(concentration);
  // Tenths: truncate the decimal scaled value, guarding against 12.3 being stored as
  // 12.2999999…: a value within 1e-9 of the next tenth belongs to it.
  const double scaled = concentration * 10.0;
  return std::trunc(scaled + 1e-9 * (scaled >= 0 ? 1 : -1)) / 10.0;
}

double AqiFromConcentration(AqiPollutant p, double concentration) {
  if (std::isnan(concentration) || concentration < 0) return NAN;
  const double c = TruncateConcentration(p, concentration);
  const std::span<const Breakpoint> table = p == AqiPollutant::kPm25
                                                ? std::span<const Breakpoint>(kPm25)
                                                : std::span<const Breakpoint>(kPm10);
  const Breakpoint* bp = &table.back();  // above the top: extend the top segment
  for (const Breakpoint& b : table) {
    if (c <= b.c_hi) {
      bp = &b;
      break;
    }
  }
  const double aqi = (bp->i_hi - bp->i_lo) / (bp->c_hi - bp->c_lo) * (c - bp->c_lo) + bp->i_lo;
  return std::round(aqi);
}

std::string_view AqiCategory(double aqi) {
  if (std::isnan(aqi)) return "";
  if (aqi <= 50) return "Good";
  if (aqi <= 100) return "Moderate";
  if (aqi <= 150) return "Unhealthy for Sensitive Groups";
  if (aqi <= 200) return "Unhealthy";
  if (aqi <= 300) return "Very Unhealthy";
  return "Hazardous";
}

double PmNowCastWeight(std::span<const double> hourly) {
  const size_t n = std::min(hourly.size(), kNowCastHours);
  double lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(hourly[i])) continue;
    lo = std::min(lo, hourly[i]);
    hi = std::max(hi, hourly[i]);
  }
  if (lo > hi) return NAN;
  // All hours equal (including all zero): no change, every hour weighs the same.
  const double w = hi > 0 ? lo / hi : 1.0;
  return std::max(w, 0.5);
}

double PmNowCast(std::span<const double> hourly) {
  size_t recent = 0;
  for (size_t i = 0; i < 3 && i < hourly.size(); ++i) {
    if (!std::isnan(hourly[i])) ++recent;
  }
  if (recent < 2) return NAN;
  const double w = PmNowCastWeight(hourly);
  const size_t n = std::min(hourly.size(), kNowCastHours);
  double num = 0, den = 0, wi = 1;  // wi = w^i, i hours ago (0 for the latest)
  for (size_t i = 0; i < n; ++i, wi *= w) {
    if (std::isnan(hourly[i])) continue;
    num += hourly[i] * wi;
    den += wi;
  }
  return num / den;
}

}  // namespace tributary
