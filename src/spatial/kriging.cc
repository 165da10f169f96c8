#include "spatial/kriging.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <numeric>

namespace tributary {

namespace {
constexpr double kEarthRadiusM = 6371008.8;
constexpr double kDegToRad = M_PI / 180.0;
}  // namespace

Result<OrdinaryKriging> OrdinaryKriging::Make(std::vector<SensorValue> sensors,
                                              const VariogramFit& model, int neighbours,
                                              double origin_lat, double origin_lon) {
  if (!model.ok) return Status::Invalid("kriging needs a fitted variogram");
  if (neighbours < 2 || neighbours > 64) return Status::Invalid("kriging neighbours: 2..64");
  std::erase_if(sensors, [](const SensorValue& s) {
    return !std::isfinite(s.lat) || !std::isfinite(s.lon) || !std::isfinite(s.value);
  });
  if (sensors.size() < 2) return Status::Invalid("kriging needs at least 2 sensors");
  OrdinaryKriging k;
  k.model_ = model;
  k.neighbours_ = neighbours;
  k.lat0_ = origin_lat;
  k.lon0_ = origin_lon;
  k.kx_ = kEarthRadiusM * kDegToRad * std::cos(origin_lat * kDegToRad);
  k.ky_ = kEarthRadiusM * kDegToRad;
  for (const SensorValue& s : sensors) {
    k.xy_.push_back(std::remainder(s.lon - origin_lon, 360.0) * k.kx_);
    k.xy_.push_back((s.lat - origin_lat) * k.ky_);
  }
  k.sensors_ = std::move(sensors);
  return k;
}

KrigingEstimate OrdinaryKriging::At(double lat, double lon) const {
  const double px = std::remainder(lon - lon0_, 360.0) * kx_, py = (lat - lat0_) * ky_;
  const size_t total = sensors_.size();
  auto dist = [&](size_t i, double x, double y) {
    return std::hypot(xy_[2 * i] - x, xy_[2 * i + 1] - y);
  };
  // The n nearest sensors (brute force: offline use, and n ≪ sensors is typical).
  std::vector<size_t> idx(total);
  std::iota(idx.begin(), idx.end(), 0);
  size_t n = std::min(total, static_cast<size_t>(neighbours_));
  std::partial_sort(idx.begin(), idx.begin() + static_cast<ptrdiff_t>(n), idx.end(),
                    [&](size_t a, size_t b) { return dist(a, px, py) < dist(b, px, py); });
  KrigingEstimate out;
  if (dist(idx[0], px, py) < 1e-3) {  // at a sensor: exact
    out.value = sensors_[idx[0]].value;
    out.variance = 0;
    return out;
  }
  Eigen::MatrixXd a(n + 1, n + 1);
  Eigen::VectorXd b(n + 1);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      a(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(j)) =
          i == j ? 0.0
                 : model_.Gamma(std::hypot(xy_[2 * idx[i]] - xy_[2 * idx[j]],
                                           xy_[2 * idx[i] + 1] - xy_[2 * idx[j] + 1]));
    }
    a(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(n)) = 1;
    a(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(i)) = 1;
    b(static_cast<Eigen::Index>(i)) = model_.Gamma(dist(idx[i], px, py));
  }
  a(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(n)) = 0;
  b(static_cast<Eigen::Index>(n)) = 1;
  Eigen::VectorXd w = a.partialPivLu().solve(b);
  if (!w.allFinite()) return out;
  double v = 0, var = 0;
  for (size_t i = 0; i < n; ++i) {
    double l = w(static_cast<Eigen::Index>(i));
    v += l * sensors_[idx[i]].value;
    var += l * b(static_cast<Eigen::Index>(i));
  }
  out.value = v;
  out.variance = var + w(static_cast<Eigen::Index>(n));
  return out;
}

void OrdinaryKriging::Interpolate(const GridSpec& grid, std::vector<float>& values,
                                  std::vector<float>* variances) const {
  size_t cells = static_cast<size_t>(grid.width) * static_cast<size_t>(grid.height);
  values.assign(cells, NAN);
  if (variances != nullptr) variances->assign(cells, NAN);
  for (int r = 0; r < grid.height; ++r) {
    for (int c = 0; c < grid.width; ++c) {
      KrigingEstimate e = At(grid.CellLat(r), grid.CellLon(c));
      size_t i = static_cast<size_t>(r) * static_cast<size_t>(grid.width) + static_cast<size_t>(c);
      values[i] = static_cast<float>(e.value);
      if (variances != nullptr) (*variances)[i] = static_cast<float>(e.variance);
    }
  }
}

}  // namespace tributary
