#include "alert/forecast.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace tributary {

namespace {

constexpr DurationUs kDay = 24 * 3600 * kMicrosPerSecond;

std::vector<SeriesPoint> Finite(std::span<const SeriesPoint> s) {
  std::vector<SeriesPoint> out;
  for (const SeriesPoint& p : s) {
    if (std::isfinite(p.v)) out.push_back(p);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const SeriesPoint& a, const SeriesPoint& b) { return a.t < b.t; });
  return out;
}

DurationUs MedianStep(const std::vector<SeriesPoint>& s) {
  std::vector<DurationUs> d;
  for (size_t i = 1; i < s.size(); ++i) d.push_back(s[i].t - s[i - 1].t);
  if (d.empty()) return 0;
  std::nth_element(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(d.size() / 2), d.end());
  return d[d.size() / 2];
}

}  // namespace

Result<Forecast> LinearTrendForecast(std::span<const SeriesPoint> series, size_t points) {
  std::vector<SeriesPoint> s = Finite(series);
  if (points < 2) return Status::Invalid("a linear trend needs at least 2 points");
  if (s.size() > points) s.erase(s.begin(), s.end() - static_cast<std::ptrdiff_t>(points));
  if (s.size() < 2) return Status::Invalid("not enough samples for a trend (need 2)");
  TimeUs last = s.back().t;
  double n = static_cast<double>(s.size()), sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const SeriesPoint& p : s) {
    double x = static_cast<double>(p.t - last) / kMicrosPerSecond;
    sx += x;
    sy += p.v;
    sxx += x * x;
    sxy += x * p.v;
  }
  double den = n * sxx - sx * sx;
  if (den <= 0) return Status::Invalid("samples share one time: no trend");
  double b = (n * sxy - sx * sy) / den;
  double a = (sy - b * sx) / n;
  double sse = 0;
  for (const SeriesPoint& p : s) {
    double x = static_cast<double>(p.t - last) / kMicrosPerSecond;
    sse += (p.v - (a + b * x)) * (p.v - (a + b * x));
  }
  Forecast f;
  f.method = "linear";
  f.points = s.size();
  DurationUs step = MedianStep(s);
  f.next_time = last + step;
  f.next = a + b * static_cast<double>(step) / kMicrosPerSecond;
  f.next_day_time = last + kDay;
  f.next_day = a + b * static_cast<double>(kDay) / kMicrosPerSecond;
  f.slope_per_hour = b * 3600;
  f.rmse = std::sqrt(sse / n);
  return f;
}

Result<Forecast> SeasonalNaiveForecast(std::span<const SeriesPoint> series, DurationUs period) {
  std::vector<SeriesPoint> s = Finite(series);
  if (period <= 0) return Status::Invalid("the season must be positive");
  if (s.size() < 2) return Status::Invalid("not enough samples for a seasonal forecast");
  DurationUs step = MedianStep(s);
  DurationUs tol = std::max<DurationUs>(step / 2, 1);
  auto at = [&](TimeUs t, double& out) {
    auto it = std::lower_bound(s.begin(), s.end(), t - tol,
                               [](const SeriesPoint& p, TimeUs x) { return p.t < x; });
    if (it == s.end() || it->t > t + tol) return false;
    auto best = it;
    for (; it != s.end() && it->t <= t + tol; ++it) {
      if (std::llabs(it->t - t) < std::llabs(best->t - t)) best = it;
    }
    out = best->v;
    return true;
  };
  Forecast f;
  f.method = "seasonal_naive";
  TimeUs last = s.back().t;
  f.next_time = last + step;
  f.next_day_time = last + period;
  if (!at(f.next_time - period, f.next)) {
    return Status::Invalid("no sample one season before the next step");
  }
  if (!at(f.next_day_time - period, f.next_day)) f.next_day = s.back().v;
  double sse = 0;
  size_t n = 0;
  for (const SeriesPoint& p : s) {
    double prev = 0;
    if (p.t - period < s.front().t - tol || !at(p.t - period, prev)) continue;
    sse += (p.v - prev) * (p.v - prev);
    ++n;
  }
  f.points = s.size();
  f.rmse = n > 0 ? std::sqrt(sse / static_cast<double>(n)) : NAN;
  return f;
}

}  // namespace tributary
