// Empirical semivariogram and a fitted model, per set of sensors.
//
// The empirical (Matheron) estimator over distance bins of width `lag_m`:
//   γ(h_k) = 1 / (2 N_k) · Σ_{(i,j) in bin k} (z_i − z_j)²
// with h_k the mean pair distance of the bin (haversine metres). A model
//   spherical:   γ(h) = c0 + c · (1.5 h/a − 0.5 (h/a)³)  for h < a, c0 + c beyond
//   exponential: γ(h) = c0 + c · (1 − exp(−3 h / a))     (a = practical range)
// is fitted by least squares weighted by the pairs per bin: for a given range a the
// model is linear in (c0, c), solved exactly (with c0, c >= 0); a is found by a scan
// over the lag distances refined by golden-section search. The nugget/sill ratio
// c0 / (c0 + c) measures how much of the variance is noise at the sensors' spacing:
// above 0.7 neighbouring sensors barely predict each other, and interpolated surfaces
// fall back to nearest-neighbour (the seeds' threshold).
#pragma once

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

/// Empirical semivariogram; pairs farther than `max_lag_m` are ignored. Empty bins are
/// left out.
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
