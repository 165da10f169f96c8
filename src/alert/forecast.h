// Short forecasts of one series (device or zone, metric): the seed paper's linear trend
// over the last N points, and a seasonal-naive model for diurnal metrics.
//
// Linear: least squares v = a + b·t over the last `points` samples (t in seconds from
// the last sample); `next` is the value one median sampling step after the last sample,
// `next_day` the value 24 h after it. `rmse` is the root mean square residual of the fit.
// Seasonal-naive: the value one season (`period`, default 1 day) before the predicted
// time, taken from the sample nearest to it (within half a step); `rmse` is the in-sample
// error of predicting each sample by the one a season earlier. NaN values are skipped.
// Holt-Winters (additive, one season): the series is put on a regular grid of its median
// step (a missing step is interpolated linearly between its neighbours), then level ℓ,
// trend b and the m seasonal terms s (m = period / step) are smoothed:
//   ℓ_t = α(x_t − s_{t−m}) + (1−α)(ℓ_{t−1} + b_{t−1})
//   b_t = β(ℓ_t − ℓ_{t−1}) + (1−β)b_{t−1}
//   s_t = γ(x_t − ℓ_t) + (1−γ)s_{t−m}
// and x̂_{t+h} = ℓ_t + h·b_t + s_{t+h−m}. The first season sets ℓ and s, the first two
// the trend. α, β, γ are configured, or fitted by a grid search minimising the one-step
// squared error. Needs two full seasons (three with a holdout).
//
// Holdout error (every method): the last `holdout` grid steps (default: one season for
// Holt-Winters and seasonal-naive, 20 % for the trend, at most one season) are held
// back, the model is fitted on the rest and its forecasts over the held-back span are
// compared with what was observed: RMSE and MAE in the series' unit. The published
// forecast is then fitted on the whole series.
#pragma once

#include <cmath>
#include <span>
#include <string>

#include "core/status.h"
#include "core/time.h"

namespace tributary {

struct SeriesPoint {
  TimeUs t = 0;
  double v = 0;
};

struct Forecast {
  std::string method;  ///< "linear", "seasonal_naive" or "holt_winters"
  size_t points = 0;   ///< samples used
  TimeUs next_time = 0;
  double next = 0;
  TimeUs next_day_time = 0;
  double next_day = 0;
  double slope_per_hour = 0;  ///< linear only
  double rmse = 0;            ///< fit error, in the series' unit
  size_t holdout_points = 0;  ///< 0: the series was too short for a holdout
  double holdout_rmse = NAN;
  double holdout_mae = NAN;
  double alpha = NAN, beta = NAN, gamma = NAN;  ///< holt_winters only
  size_t season_points = 0;                     ///< holt_winters: grid steps per season
  bool clamped = false;                         ///< a value was moved to a bound
};

/// Smoothing parameters of Holt-Winters; NaN: fitted.
struct HoltWintersParams {
  double alpha = NAN;
  double beta = NAN;
  double gamma = NAN;
};

/// Linear trend over the last `points` samples (time-ordered input). Needs >= 2 samples
/// at distinct times.
Result<Forecast> LinearTrendForecast(std::span<const SeriesPoint> series, size_t points = 50);
/// Seasonal-naive with season `period`. Needs samples a full season back.
Result<Forecast> SeasonalNaiveForecast(std::span<const SeriesPoint> series,
                                       DurationUs period = 24 * 3600 * kMicrosPerSecond);
/// Additive Holt-Winters with season `period`; parameters fitted unless given.
Result<Forecast> HoltWintersForecast(std::span<const SeriesPoint> series,
                                     DurationUs period = 24 * 3600 * kMicrosPerSecond,
                                     HoltWintersParams params = {});
/// Clamp `next` and `next_day` to [lo, hi] (a metric's physical bounds), noting it.
void ClampForecast(Forecast& f, double lo, double hi);

}  // namespace tributary
