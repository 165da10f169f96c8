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

namespace {

struct LineFit {
  TimeUs origin = 0;
  double a = 0, b = 0;  ///< v = a + b·(t − origin) in seconds
  double rmse = 0;
  double At(TimeUs t) const { return a + b * static_cast<double>(t - origin) / kMicrosPerSecond; }
};

// Least squares over `s` (>= 2 samples), time origin at its last sample.
Result<LineFit> FitLine(std::span<const SeriesPoint> s) {
  LineFit f;
  f.origin = s.back().t;
  double n = static_cast<double>(s.size()), sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const SeriesPoint& p : s) {
    double x = static_cast<double>(p.t - f.origin) / kMicrosPerSecond;
    sx += x;
    sy += p.v;
    sxx += x * x;
    sxy += x * p.v;
  }
  double den = n * sxx - sx * sx;
  if (den <= 0) return Status::Invalid("samples share one time: no trend");
  f.b = (n * sxy - sx * sy) / den;
  f.a = (sy - f.b * sx) / n;
  double sse = 0;
  for (const SeriesPoint& p : s) sse += (p.v - f.At(p.t)) * (p.v - f.At(p.t));
  f.rmse = std::sqrt(sse / n);
  return f;
}

void SetHoldout(Forecast& f, double sse, double sae, size_t n) {
  f.holdout_points = n;
  if (n == 0) return;
  f.holdout_rmse = std::sqrt(sse / static_cast<double>(n));
  f.holdout_mae = sae / static_cast<double>(n);
}

}  // namespace

Result<Forecast> LinearTrendForecast(std::span<const SeriesPoint> series, size_t points) {
  std::vector<SeriesPoint> all = Finite(series);
  if (points < 2) return Status::Invalid("a linear trend needs at least 2 points");
  std::span<const SeriesPoint> s(all);
  if (s.size() > points) s = s.subspan(s.size() - points);
  if (s.size() < 2) return Status::Invalid("not enough samples for a trend (need 2)");
  TRIB_ASSIGN_OR_RETURN(LineFit fit, FitLine(s));
  Forecast f;
  f.method = "linear";
  f.points = s.size();
  TimeUs last = s.back().t;
  DurationUs step = MedianStep(all);
  f.next_time = last + step;
  f.next = fit.At(f.next_time);
  f.next_day_time = last + kDay;
  f.next_day = fit.At(f.next_day_time);
  f.slope_per_hour = fit.b * 3600;
  f.rmse = fit.rmse;
  // Holdout: the last fifth of the used samples, predicted by a fit on the `points`
  // samples before them.
  size_t h = s.size() / 5;
  if (h >= 1 && all.size() - h >= 2) {
    std::span<const SeriesPoint> train(all.data(), all.size() - h);
    if (train.size() > points) train = train.subspan(train.size() - points);
    Result<LineFit> hf = FitLine(train);
    if (hf.ok()) {
      double sse = 0, sae = 0;
      for (size_t i = all.size() - h; i < all.size(); ++i) {
        double e = all[i].v - hf->At(all[i].t);
        sse += e * e;
        sae += std::fabs(e);
      }
      SetHoldout(f, sse, sae, h);
    }
  }
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
  // Holdout: the samples of the last season, each predicted by the sample a season
  // before it (which lies before the held-back span).
  double hsse = 0, hsae = 0;
  size_t hn = 0;
  if (last - period >= s.front().t) {
    for (const SeriesPoint& p : s) {
      double prev = 0;
      if (p.t <= last - period || !at(p.t - period, prev)) continue;
      hsse += (p.v - prev) * (p.v - prev);
      hsae += std::fabs(p.v - prev);
      ++hn;
    }
  }
  SetHoldout(f, hsse, hsae, hn);
  return f;
}

namespace {

// The series on a regular grid of `step` from its first sample: the nearest sample
// within half a step, else linear interpolation between the neighbours.
std::vector<double> Regularise(const std::vector<SeriesPoint>& s, DurationUs step) {
  size_t n = static_cast<size_t>((s.back().t - s.front().t) / step) + 1;
  std::vector<double> x(n);
  size_t j = 0;
  for (size_t k = 0; k < n; ++k) {
    TimeUs t = s.front().t + static_cast<TimeUs>(k) * step;
    while (j + 1 < s.size() && s[j + 1].t <= t) ++j;
    const SeriesPoint& a = s[j];
    const SeriesPoint& b = j + 1 < s.size() ? s[j + 1] : s[j];
    if (std::llabs(a.t - t) <= step / 2 || b.t == a.t) {
      x[k] = a.v;
    } else if (std::llabs(b.t - t) <= step / 2) {
      x[k] = b.v;
    } else {
      double w = static_cast<double>(t - a.t) / static_cast<double>(b.t - a.t);
      x[k] = a.v + w * (b.v - a.v);
    }
  }
  return x;
}

struct HwState {
  double level = 0, trend = 0;
  std::vector<double> season;
  double sse = 0;
  size_t errors = 0;
  double Predict(size_t last_index, size_t h) const {
    return level + static_cast<double>(h) * trend + season[(last_index + h) % season.size()];
  }
};

// Run the smoothing over x[0, n) (n >= 2m) with season m.
HwState RunHoltWinters(std::span<const double> x, size_t m, double alpha, double beta,
                       double gamma) {
  HwState st;
  double first = 0, second = 0;
  for (size_t i = 0; i < m; ++i) {
    first += x[i];
    second += x[m + i];
  }
  first /= static_cast<double>(m);
  second /= static_cast<double>(m);
  st.level = first;
  st.trend = (second - first) / static_cast<double>(m);
  st.season.resize(m);
  for (size_t i = 0; i < m; ++i) st.season[i] = x[i] - first;
  for (size_t t = m; t < x.size(); ++t) {
    double& s = st.season[t % m];
    double e = x[t] - (st.level + st.trend + s);
    st.sse += e * e;
    ++st.errors;
    double level = alpha * (x[t] - s) + (1 - alpha) * (st.level + st.trend);
    st.trend = beta * (level - st.level) + (1 - beta) * st.trend;
    s = gamma * (x[t] - level) + (1 - gamma) * s;
    st.level = level;
  }
  return st;
}

// The given parameters, or the grid point with the least one-step squared error.
HoltWintersParams FitHoltWinters(std::span<const double> x, size_t m, HoltWintersParams given) {
  static const double kAlpha[] = {0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9};
  static const double kBeta[] = {0, 0.01, 0.05, 0.1, 0.2};
  static const double kGamma[] = {0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9};
  auto grid = [](double v, std::span<const double> g) {
    return std::isnan(v) ? std::vector<double>(g.begin(), g.end()) : std::vector<double>{v};
  };
  HoltWintersParams best = given;
  double best_sse = INFINITY;
  for (double a : grid(given.alpha, kAlpha)) {
    for (double b : grid(given.beta, kBeta)) {
      for (double g : grid(given.gamma, kGamma)) {
        double sse = RunHoltWinters(x, m, a, b, g).sse;
        if (sse < best_sse) {
          best_sse = sse;
          best = {a, b, g};
        }
      }
    }
  }
  return best;
}

}  // namespace

Result<Forecast> HoltWintersForecast(std::span<const SeriesPoint> series, DurationUs period,
                                     HoltWintersParams params) {
  for (double p : {params.alpha, params.beta, params.gamma}) {
    if (!std::isnan(p) && (p < 0 || p > 1)) {
      return Status::Invalid("Holt-Winters parameters must lie in 0..1");
    }
  }
  if (period <= 0) return Status::Invalid("the season must be positive");
  std::vector<SeriesPoint> s = Finite(series);
  if (s.size() < 4) return Status::Invalid("not enough samples for Holt-Winters");
  DurationUs step = MedianStep(s);
  if (step <= 0) return Status::Invalid("samples share one time: no step");
  size_t m = static_cast<size_t>(std::llround(static_cast<double>(period) / step));
  if (m < 2) return Status::Invalid("the season is shorter than two sampling steps");
  std::vector<double> x = Regularise(s, step);
  if (x.size() < 2 * m) {
    return Status::Invalid("Holt-Winters needs two full seasons (" + std::to_string(2 * m) +
                           " steps), got " + std::to_string(x.size()));
  }
  Forecast f;
  f.method = "holt_winters";
  f.points = s.size();
  f.season_points = m;
  // Holdout: one season, when three are available.
  if (x.size() >= 3 * m) {
    std::span<const double> train(x.data(), x.size() - m);
    HoltWintersParams hp = FitHoltWinters(train, m, params);
    HwState st = RunHoltWinters(train, m, hp.alpha, hp.beta, hp.gamma);
    double sse = 0, sae = 0;
    for (size_t h = 1; h <= m; ++h) {
      double e = x[train.size() - 1 + h] - st.Predict(train.size() - 1, h);
      sse += e * e;
      sae += std::fabs(e);
    }
    SetHoldout(f, sse, sae, m);
  }
  HoltWintersParams p = FitHoltWinters(x, m, params);
  HwState st = RunHoltWinters(x, m, p.alpha, p.beta, p.gamma);
  f.alpha = p.alpha;
  f.beta = p.beta;
  f.gamma = p.gamma;
  f.rmse = st.errors > 0 ? std::sqrt(st.sse / static_cast<double>(st.errors)) : NAN;
  size_t last = x.size() - 1;
  TimeUs last_t = s.front().t + static_cast<TimeUs>(last) * step;
  f.next_time = last_t + step;
  f.next = st.Predict(last, 1);
  size_t day_steps =
      static_cast<size_t>(std::max<int64_t>(1, std::llround(static_cast<double>(kDay) / step)));
  f.next_day_time = last_t + static_cast<TimeUs>(day_steps) * step;
  f.next_day = st.Predict(last, day_steps);
  f.slope_per_hour = st.trend * 3600.0 * kMicrosPerSecond / static_cast<double>(step);
  return f;
}

void ClampForecast(Forecast& f, double lo, double hi) {
  for (double* v : {&f.next, &f.next_day}) {
    if (*v < lo) {
      *v = lo;
      f.clamped = true;
    } else if (*v > hi) {
      *v = hi;
      f.clamped = true;
    }
  }
}

}  // namespace tributary
