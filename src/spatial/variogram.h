// Empirical semivariogram and a fitted model, per set of sensors.
//
// The empirical (Matheron) estimator over distance bins of width `lag_m`:
//   γ(h_k) = 1 / (2 N_k) · Σ_{(i,j) in bin k} (z_i − z_j)²
// with h_k the mean pair distance of the bin (haversine metres for sensors; any metric
// through EmpiricalVariogramOf). Bins are centred on multiples of the lag, as GSLIB's
// gamv (the default), or start at zero, as R's gstat. A model
//   spherical:   γ(h) = c0 + c · (1.5 h/a − 0.5 (h/a)³)  for h < a, c0 + c beyond
//   exponential: γ(h) = c0 + c · (1 − exp(−3 h / a))     (a = practical range)
// is fitted by least squares weighted by the pairs per bin: for a given range a the
// model is linear in (c0, c), solved exactly (with c0, c >= 0); a is found by a scan
// over the lag distances refined by golden-section search. The nugget/sill ratio
// c0 / (c0 + c) measures how much of the variance is noise at the sensors' spacing:
// above 0.7 neighbouring sensors barely predict each other, and interpolated surfaces
// fall back to nearest-neighbour (the seeds' threshold).
#pragma once

#include <algorithm>
#include <cmath>
#include <string_view>
#include <vector>

#include "spatial/idw.h"

namespace tributary {

struct VariogramBin {
  double h = 0;      ///< mean distance of the pairs, metres
  double gamma = 0;  ///< semivariance
  size_t pairs = 0;
};

enum class LagBins {
  /// Bin k holds h in [(k − ½)·lag, (k + ½)·lag); bin 0 the pairs closer than lag/2.
  kCentred,
  /// Bin k holds h in [k·lag, (k + 1)·lag).
  kFromZero,
};

/// Empirical semivariogram of `n` points given their values and a distance between two
/// of them: pairs farther than `max_lag` or at distance 0 are ignored, empty bins left out.
template <class Value, class Distance>
std::vector<VariogramBin> EmpiricalVariogramOf(size_t n, Value value, Distance distance, double lag,
                                               double max_lag,
                                               LagBins binning = LagBins::kCentred) {
  std::vector<VariogramBin> bins;
  if (!(lag > 0) || !(max_lag > 0)) return bins;
  const bool centred = binning == LagBins::kCentred;
  const double offset = centred ? 0.5 : 0;
  const size_t nbins = centred ? static_cast<size_t>(std::floor(max_lag / lag + 0.5)) + 1
                               : std::max<size_t>(1, static_cast<size_t>(std::ceil(max_lag / lag)));
  std::vector<double> sum_h(nbins, 0), sum_sq(nbins, 0);
  std::vector<size_t> count(nbins, 0);
  for (size_t i = 0; i < n; ++i) {
    const double zi = value(i);
    for (size_t j = i + 1; j < n; ++j) {
      const double h = distance(i, j);
      if (h > max_lag || h <= 0) continue;
      const size_t b = std::min(nbins - 1, static_cast<size_t>(std::floor(h / lag + offset)));
      const double d = zi - value(j);
      sum_h[b] += h;
      sum_sq[b] += d * d;
      ++count[b];
    }
  }
  for (size_t b = 0; b < nbins; ++b) {
    if (count[b] == 0) continue;
    const double pairs = static_cast<double>(count[b]);
    bins.push_back({sum_h[b] / pairs, sum_sq[b] / (2 * pairs), count[b]});
  }
  return bins;
}

/// Empirical semivariogram of sensors, haversine distances in metres, bins centred on
/// multiples of `lag_m`; pairs farther than `max_lag_m` are ignored.
std::vector<VariogramBin> EmpiricalVariogram(const std::vector<SensorValue>& sensors, double lag_m,
                                             double max_lag_m);

enum class VariogramModel { kSpherical, kExponential };

struct VariogramFit {
  VariogramModel model = VariogramModel::kSpherical;
  double nugget = NAN;  ///< c0
  double sill = NAN;    ///< c0 + c (total sill)
  double range = NAN;   ///< a, metres
  double sse = NAN;     ///< weighted squared error of the fit
  bool ok = false;      ///< false with fewer than 3 bins or no variance
  /// Nugget/sill ratio (NaN when not fitted or the sill is 0).
  double NuggetSillRatio() const { return ok && sill > 0 ? nugget / sill : NAN; }
  /// The model's semivariance at distance h (metres).
  double Gamma(double h) const;
};

/// Fit `model` to the bins.
VariogramFit FitVariogram(const std::vector<VariogramBin>& bins, VariogramModel model);

/// Threshold above which surfaces switch to nearest neighbour.
inline constexpr double kNuggetSillNearestNeighbour = 0.7;

}  // namespace tributary
