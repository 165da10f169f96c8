// Inverse-distance-weighted (IDW) interpolation of sensor values onto a regular grid.
//
// The value at a grid cell centre p is  sum_i w_i v_i / sum_i w_i  with w_i = 1 / d_i^power
// over the k sensors nearest to p (only those within the search radius, when one is set);
// a sensor at distance 0 gives its own value (the mean of all sensors at that point). A
// cell with no sensor inside the radius is NaN (no data).
//
// Distances are metres on a local equirectangular projection centred on the grid
// (x = R·Δlon·cos(lat0), y = R·Δlat): two multiplications per point, and for the city-
// and region-sized grids IDW is used on (a few hundred km) it is within about 1% of the
// geodesic distance, which only perturbs weights; ECEF chords would be exact but cost a
// third coordinate and trigonometry per point for no visible change in a surface.
//
// Speed: neighbours come from a nanoflann k-d tree, but not per cell. The grid is
// processed in tiles of 16 × 16 cells: one k-nearest query at the tile centre gives the
// distance r_k of its k-th neighbour, and every neighbour any cell of the tile can have
// lies within r_k + (tile diagonal) of that centre (triangle inequality), so one radius
// query per tile yields a short candidate list that each cell scans exactly.
//
// Threading: an IdwInterpolator is immutable after construction; Interpolate may run
// concurrently on one instance.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace tributary {

struct IdwOptions {
  double power = 2.0;   ///< distance exponent (> 0)
  int k = 8;            ///< neighbours per cell (1..64)
  double radius_m = 0;  ///< search radius in metres; 0: unlimited
};

/// A regular lat/lon grid: `width` × `height` cells covering the box; row 0 is the
/// northernmost row (image order), column 0 the westernmost.
struct GridSpec {
  double min_lon = 0, min_lat = 0, max_lon = 0, max_lat = 0;
  int width = 0, height = 0;
  double CellLon(int col) const { return min_lon + (col + 0.5) * (max_lon - min_lon) / width; }
  double CellLat(int row) const { return max_lat - (row + 0.5) * (max_lat - min_lat) / height; }
};

/// One sensor's value at its position (degrees).
struct SensorValue {
  double lat = 0, lon = 0, value = 0;
};

class IdwInterpolator {
 public:
  /// Index `sensors` (non-finite ones are skipped). Fails for invalid options.
  static Result<std::unique_ptr<IdwInterpolator>> Make(std::vector<SensorValue> sensors,
                                                       const IdwOptions& options, double origin_lat,
                                                       double origin_lon);
  ~IdwInterpolator();

  /// The interpolated value at one point (NaN when no sensor is in range).
  double At(double lat, double lon) const;
  /// Fill `out` (resized to width × height, row-major) for the grid.
  void Interpolate(const GridSpec& grid, std::vector<float>& out) const;

  size_t sensors() const { return sensors_.size(); }

 private:
  struct Tree;
  IdwInterpolator(std::vector<SensorValue> sensors, const IdwOptions& options, double origin_lat,
                  double origin_lon);
  double FromCandidates(double x, double y, const uint32_t* cand, size_t n) const;

  std::vector<SensorValue> sensors_;
  std::vector<double> xy_;  // projected sensor positions, metres, x then y
  IdwOptions options_;
  double lat0_, lon0_, kx_, ky_;  // projection: x = (lon - lon0) kx, y = (lat - lat0) ky
  std::unique_ptr<Tree> tree_;
};

}  // namespace tributary
