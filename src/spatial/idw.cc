#include "spatial/idw.h"

#include <algorithm>
#include <cmath>
#include <nanoflann.hpp>

namespace tributary {

namespace {
constexpr double kEarthRadiusM = 6371008.8;  // mean Earth radius (IUGG)
constexpr double kDegToRad = M_PI / 180.0;
constexpr int kTile = 16;                 // cells per tile side
constexpr double kZeroDistanceSq = 1e-6;  // (1 mm)²: "at the sensor"
constexpr int kMaxK = 64;

// nanoflann's dataset adaptor over the projected coordinates.
struct Cloud {
  const std::vector<double>* xy;
  size_t kdtree_get_point_count() const { return xy->size() / 2; }
  double kdtree_get_pt(size_t i, size_t dim) const { return (*xy)[2 * i + dim]; }
  template <class Bbox>
  bool kdtree_get_bbox(Bbox&) const {
    return false;
  }
};
using KdTree = nanoflann::KDTreeSingleIndexAdaptor<nanoflann::L2_Simple_Adaptor<double, Cloud>,
                                                   Cloud, 2, uint32_t>;
}  // namespace

struct IdwInterpolator::Tree {
  Cloud cloud;
  KdTree index;
  explicit Tree(const std::vector<double>* xy)
      : cloud{xy}, index(2, cloud, nanoflann::KDTreeSingleIndexAdaptorParams(10)) {
    index.buildIndex();
  }
};

IdwInterpolator::IdwInterpolator(std::vector<SensorValue> sensors, const IdwOptions& options,
                                 double origin_lat, double origin_lon)
    : sensors_(std::move(sensors)),
      options_(options),
      lat0_(origin_lat),
      lon0_(origin_lon),
      kx_(kEarthRadiusM * kDegToRad * std::cos(origin_lat * kDegToRad)),
      ky_(kEarthRadiusM * kDegToRad) {
  xy_.reserve(sensors_.size() * 2);
  for (const SensorValue& s : sensors_) {
    xy_.push_back(std::remainder(s.lon - lon0_, 360.0) * kx_);
    xy_.push_back((s.lat - lat0_) * ky_);
  }
  tree_ = std::make_unique<Tree>(&xy_);
}

IdwInterpolator::~IdwInterpolator() = default;

Result<std::unique_ptr<IdwInterpolator>> IdwInterpolator::Make(std::vector<SensorValue> sensors,
                                                               const IdwOptions& options,
                                                               double origin_lat,
                                                               double origin_lon) {
  if (!(options.power > 0) || !std::isfinite(options.power)) {
    return Status::Invalid("IDW power must be a positive number");
  }
  if (options.k < 1 || options.k > kMaxK) {
    return Status::Invalid("IDW k must be within 1.." + std::to_string(kMaxK));
  }
  if (!(options.radius_m >= 0)) return Status::Invalid("IDW radius must be >= 0");
  if (!std::isfinite(origin_lat) || !std::isfinite(origin_lon) || std::fabs(origin_lat) >= 90) {
    return Status::Invalid("IDW grid origin is not a valid position");
  }
  std::erase_if(sensors, [](const SensorValue& s) {
    return !std::isfinite(s.lat) || !std::isfinite(s.lon) || !std::isfinite(s.value);
  });
  return std::unique_ptr<IdwInterpolator>(
      new IdwInterpolator(std::move(sensors), options, origin_lat, origin_lon));
}

// Weighted mean over the k nearest of `cand` to (x, y), honouring the radius.
double IdwInterpolator::FromCandidates(double x, double y, const uint32_t* cand, size_t n) const {
  const size_t k = static_cast<size_t>(options_.k);
  // Keep the k smallest squared distances by insertion into a sorted array.
  double best_d[kMaxK];
  uint32_t best_i[kMaxK];
  size_t m = 0;
  const double limit = options_.radius_m > 0 ? options_.radius_m * options_.radius_m : INFINITY;
  for (size_t c = 0; c < n; ++c) {
    uint32_t i = cand[c];
    double dx = xy_[2 * i] - x, dy = xy_[2 * i + 1] - y;
    double d = dx * dx + dy * dy;
    if (d > limit) continue;
    if (m == k && d >= best_d[k - 1]) continue;
    size_t pos = m < k ? m++ : k - 1;
    while (pos > 0 && best_d[pos - 1] > d) {
      best_d[pos] = best_d[pos - 1];
      best_i[pos] = best_i[pos - 1];
      --pos;
    }
    best_d[pos] = d;
    best_i[pos] = i;
  }
  if (m == 0) return NAN;
  if (best_d[0] <= kZeroDistanceSq) {
    // At a sensor: its own value (the mean of every sensor at that spot).
    double sum = 0;
    size_t count = 0;
    for (size_t j = 0; j < m && best_d[j] <= kZeroDistanceSq; ++j, ++count) {
      sum += sensors_[best_i[j]].value;
    }
    return sum / static_cast<double>(count);
  }
  double num = 0, den = 0;
  const bool square = options_.power == 2.0;
  for (size_t j = 0; j < m; ++j) {
    double w = square ? 1.0 / best_d[j] : std::pow(best_d[j], -0.5 * options_.power);
    num += w * sensors_[best_i[j]].value;
    den += w;
  }
  return num / den;
}

double IdwInterpolator::At(double lat, double lon) const {
  if (sensors_.empty()) return NAN;
  double q[2] = {std::remainder(lon - lon0_, 360.0) * kx_, (lat - lat0_) * ky_};
  uint32_t idx[kMaxK];
  double dist[kMaxK];
  size_t n = tree_->index.knnSearch(q, static_cast<size_t>(options_.k), idx, dist);
  return FromCandidates(q[0], q[1], idx, n);
}

void IdwInterpolator::Interpolate(const GridSpec& grid, std::vector<float>& out) const {
  out.assign(static_cast<size_t>(grid.width) * static_cast<size_t>(grid.height), NAN);
  if (sensors_.empty() || grid.width <= 0 || grid.height <= 0) return;
  // Projected cell centres: x depends on the column only, y on the row only.
  std::vector<double> xs(static_cast<size_t>(grid.width)), ys(static_cast<size_t>(grid.height));
  for (int c = 0; c < grid.width; ++c) {
    xs[static_cast<size_t>(c)] = std::remainder(grid.CellLon(c) - lon0_, 360.0) * kx_;
  }
  for (int r = 0; r < grid.height; ++r)
    ys[static_cast<size_t>(r)] = (grid.CellLat(r) - lat0_) * ky_;

  const size_t k = std::min(static_cast<size_t>(options_.k), sensors_.size());
  std::vector<std::pair<uint32_t, double>> found;
  std::vector<uint32_t> cand;
  uint32_t idx[kMaxK];
  double dist[kMaxK];
  for (int r0 = 0; r0 < grid.height; r0 += kTile) {
    int r1 = std::min(grid.height, r0 + kTile);
    for (int c0 = 0; c0 < grid.width; c0 += kTile) {
      int c1 = std::min(grid.width, c0 + kTile);
      double x0 = xs[static_cast<size_t>(c0)], x1 = xs[static_cast<size_t>(c1 - 1)];
      double y0 = ys[static_cast<size_t>(r0)], y1 = ys[static_cast<size_t>(r1 - 1)];
      double centre[2] = {(x0 + x1) / 2, (y0 + y1) / 2};
      double diag = std::hypot(x1 - x0, y1 - y0);
      size_t n = tree_->index.knnSearch(centre, k, idx, dist);
      double rk = std::sqrt(dist[n - 1]);
      // Every k-nearest neighbour of any cell of the tile is within rk + diag of the
      // centre (|q - c| <= |q - p| + |p - c| <= (rk + diag/2) + diag/2).
      double reach = rk + diag;
      if (options_.radius_m > 0) reach = std::min(reach, options_.radius_m + diag / 2);
      found.clear();
      tree_->index.radiusSearch(centre, reach * reach * (1 + 1e-12), found,
                                nanoflann::SearchParams(32, 0, false));
      cand.clear();
      for (const auto& f : found) cand.push_back(f.first);
      for (int r = r0; r < r1; ++r) {
        float* row = out.data() + static_cast<size_t>(r) * static_cast<size_t>(grid.width);
        double y = ys[static_cast<size_t>(r)];
        for (int c = c0; c < c1; ++c) {
          row[c] = static_cast<float>(
              FromCandidates(xs[static_cast<size_t>(c)], y, cand.data(), cand.size()));
        }
      }
    }
  }
}

}  // namespace tributary
