// Moran's I: global spatial autocorrelation of one metric over a set of sensors.
//
//   I = (n / S0) · Σ_i Σ_j w_ij (x_i − x̄)(x_j − x̄) / Σ_i (x_i − x̄)²,  S0 = Σ_i Σ_j w_ij
//
// (Moran 1950; Cliff & Ord 1981). I near +1: neighbours alike (clustered), near −1:
// neighbours unlike (a checkerboard), near E[I] = −1/(n − 1): no pattern. The z-score
// uses the variance under the normality assumption (Cliff & Ord 1981, eq. 1.37).
//
// Weights are binary and symmetric-by-construction for a distance band (w_ij = 1 when
// 0 < d_ij ≤ band) and row-standardised for k nearest neighbours (w_ij = 1/k for the
// k nearest j of i), distances in metres (haversine on the mean Earth radius).
// Local Moran's I_i (Anselin 1995) uses the same weights:
//   I_i = (x_i − x̄) / m2 · Σ_j w_ij (x_j − x̄),  m2 = Σ (x_i − x̄)² / n.
// Cost is O(n²) in the number of sensors of one window (hundreds), which is fine.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "spatial/idw.h"

namespace tributary {

enum class MoranWeights { kDistanceBand, kKNearest };

struct MoranOptions {
  MoranWeights weights = MoranWeights::kDistanceBand;
  double band_m = 2000;  ///< distance band, metres
  int k = 4;             ///< neighbours for kKNearest
};

struct MoranResult {
  double i = NAN;         ///< Moran's I; NaN with fewer than 3 sensors, no weights or no variance
  double expected = NAN;  ///< E[I] = −1/(n − 1)
  double z = NAN;         ///< (I − E[I]) / sqrt(Var[I]) under normality
  size_t n = 0;
  double s0 = 0;              ///< sum of weights
  std::vector<double> local;  ///< local I_i per sensor, in input order
};

/// Compute global and local Moran's I of the sensors' values.
MoranResult ComputeMoran(const std::vector<SensorValue>& sensors, const MoranOptions& options);

/// Same, with explicit weights: w[i][j] (diagonal ignored). For tests against worked
/// examples given as contiguity matrices.
MoranResult ComputeMoranWithWeights(const std::vector<double>& values,
                                    const std::vector<std::vector<double>>& w);

/// Great-circle distance in metres (haversine, mean Earth radius).
double HaversineM(double lat1, double lon1, double lat2, double lon2);

}  // namespace tributary
