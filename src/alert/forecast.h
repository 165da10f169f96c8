// Short forecasts of one series (device or zone, metric): the seed paper's linear trend
// over the last N points, and a seasonal-naive model for diurnal metrics.
//
// Linear: least squares v = a + b·t over the last `points` samples (t in seconds from
// the last sample); `next` is the value one median sampling step after the last sample,
// `next_day` the value 24 h after it. `rmse` is the root mean square residual of the fit.
// Seasonal-naive: the value one season (`period`, default 1 day) before the predicted
// time, taken from the sample nearest to it (within half a step); `rmse` is the in-sample
// error of predicting each sample by the one a season earlier. NaN values are skipped.
#pragma once

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
  std::string method;  ///< "linear" or "seasonal_naive"
  size_t points = 0;   ///< samples used
  TimeUs next_time = 0;
  double next = 0;
  TimeUs next_day_time = 0;
  double next_day = 0;
  double slope_per_hour = 0;  ///< linear only
  double rmse = 0;            ///< fit error, in the series' unit
};

/// Linear trend over the last `points` samples (time-ordered input). Needs >= 2 samples
/// at distinct times.
Result<Forecast> LinearTrendForecast(std::span<const SeriesPoint> series, size_t points = 50);
/// Seasonal-naive with season `period`. Needs samples a full season back.
Result<Forecast> SeasonalNaiveForecast(std::span<const SeriesPoint> series,
                                       DurationUs period = 24 * 3600 * kMicrosPerSecond);

}  // namespace tributary
