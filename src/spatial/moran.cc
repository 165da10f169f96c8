#include "spatial/moran.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace tributary {

double HaversineM(double lat1, double lon1, double lat2, double lon2) {
  constexpr double kR = 6371008.8, kD = M_PI / 180;
  double dlat = (lat2 - lat1) * kD, dlon = (lon2 - lon1) * kD;
  double a = std::sin(dlat / 2) * std::sin(dlat / 2) +
             std::cos(lat1 * kD) * std::cos(lat2 * kD) * std::sin(dlon / 2) * std::sin(dlon / 2);
  return 2 * kR * std::asin(std::min(1.0, std::sqrt(a)));
}

MoranResult ComputeMoranWithWeights(const std::vector<double>& x,
                                    const std::vector<std::vector<double>>& w) {
  MoranResult out;
  const size_t n = x.size();
  out.n = n;
  if (n < 3 || w.size() != n) return out;
  double mean = std::accumulate(x.begin(), x.end(), 0.0) / static_cast<double>(n);
  std::vector<double> z(n);
  double m2 = 0;
  for (size_t i = 0; i < n; ++i) {
    z[i] = x[i] - mean;
    m2 += z[i] * z[i];
  }
  double s0 = 0, s1 = 0, s2 = 0, cross = 0;
  std::vector<double> row(n, 0), col(n, 0);
  out.local.assign(n, NAN);
  for (size_t i = 0; i < n; ++i) {
    double lag = 0;
    for (size_t j = 0; j < n; ++j) {
      if (i == j) continue;
      double wij = w[i][j];
      double wji = w[j][i];
      s0 += wij;
      s1 += 0.5 * (wij + wji) * (wij + wji);
      row[i] += wij;
      col[i] += wji;
      lag += wij * z[j];
    }
    cross += z[i] * lag;
    if (m2 > 0) out.local[i] = z[i] * lag / (m2 / static_cast<double>(n));
  }
  out.s0 = s0;
  for (size_t i = 0; i < n; ++i) s2 += (row[i] + col[i]) * (row[i] + col[i]);
  double nd = static_cast<double>(n);
  out.expected = -1.0 / (nd - 1);
  if (s0 <= 0 || m2 <= 0) return out;
  out.i = nd / s0 * cross / m2;
  // Variance under normality (Cliff & Ord 1981).
  double var = (nd * nd * s1 - nd * s2 + 3 * s0 * s0) / ((nd * nd - 1) * s0 * s0) -
               out.expected * out.expected;
  if (var > 0) out.z = (out.i - out.expected) / std::sqrt(var);
  return out;
}

MoranResult ComputeMoran(const std::vector<SensorValue>& sensors, const MoranOptions& options) {
  const size_t n = sensors.size();
  std::vector<double> x(n);
  std::vector<std::vector<double>> w(n, std::vector<double>(n, 0.0));
  std::vector<std::vector<double>> d(n, std::vector<double>(n, 0.0));
  for (size_t i = 0; i < n; ++i) {
    x[i] = sensors[i].value;
    for (size_t j = i + 1; j < n; ++j) {
      d[i][j] = d[j][i] =
          HaversineM(sensors[i].lat, sensors[i].lon, sensors[j].lat, sensors[j].lon);
    }
  }
  if (options.weights == MoranWeights::kDistanceBand) {
    for (size_t i = 0; i < n; ++i) {
      for (size_t j = 0; j < n; ++j) {
        if (i != j && d[i][j] <= options.band_m) w[i][j] = 1;
      }
    }
  } else {
    size_t k = std::min(static_cast<size_t>(std::max(1, options.k)), n > 0 ? n - 1 : 0);
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n && k > 0; ++i) {
      std::iota(order.begin(), order.end(), 0);
      std::erase(order, i);
      // Ties broken by index so the weights are deterministic.
      std::partial_sort(
          order.begin(), order.begin() + static_cast<ptrdiff_t>(k), order.end(),
          [&](size_t a, size_t b) { return d[i][a] != d[i][b] ? d[i][a] < d[i][b] : a < b; });
      for (size_t m = 0; m < k; ++m) w[i][order[m]] = 1.0 / static_cast<double>(k);
      order.resize(n);
    }
  }
  return ComputeMoranWithWeights(x, w);
}

}  // namespace tributary
