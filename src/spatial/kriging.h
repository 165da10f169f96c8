// Ordinary kriging with a fitted variogram, for offline and backfill surfaces where
// accuracy matters more than latency.
//
// At each point p the estimate is Σ λ_i z_i over its n nearest sensors, with weights
// from the ordinary kriging system (unbiased: Σ λ_i = 1, minimum variance):
//   | γ(d_11) … γ(d_1n) 1 | |λ_1|   |γ(d_1p)|
//   |   ⋮         ⋮     ⋮ | | ⋮ | = |  ⋮   |
//   | γ(d_n1) … γ(d_nn) 1 | |λ_n|   |γ(d_np)|
//   |   1    …   1     0 | | μ |   |  1   |
// and the kriging variance σ² = Σ λ_i γ(d_ip) + μ. γ is the fitted model with γ(0) = 0,
// so the estimate at a sensor is its value (an exact interpolator). Distances are
// metres on the same local equirectangular projection as IDW. The system is solved with
// Eigen's LU with partial pivoting, one per grid cell: O(cells · n³), hence offline.
#pragma once

#include <vector>

#include "core/status.h"
#include "spatial/idw.h"
#include "spatial/variogram.h"

namespace tributary {

struct KrigingEstimate {
  double value = NAN;
  double variance = NAN;
};

class OrdinaryKriging {
 public:
  /// `neighbours`: sensors per local system (2..64).
  static Result<OrdinaryKriging> Make(std::vector<SensorValue> sensors, const VariogramFit& model,
                                      int neighbours, double origin_lat, double origin_lon);

  KrigingEstimate At(double lat, double lon) const;
  /// Fill `values` (and `variances` if not null) for the grid, row-major, north first.
  void Interpolate(const GridSpec& grid, std::vector<float>& values,
                   std::vector<float>* variances = nullptr) const;

 private:
  OrdinaryKriging() = default;
  std::vector<SensorValue> sensors_;
  std::vector<double> xy_;
  VariogramFit model_;
  int neighbours_ = 16;
  double lat0_ = 0, lon0_ = 0, kx_ = 0, ky_ = 0;
};

}  // namespace tributary
