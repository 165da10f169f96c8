#include "spatial/variogram.h"

#include <algorithm>

#include "spatial/moran.h"

namespace tributary {

std::vector<VariogramBin> EmpiricalVariogram(const std::vector<SensorValue>& s, double lag_m,
                                             double max_lag_m) {
  return EmpiricalVariogramOf(
      s.size(), [&](size_t i) { return s[i].value; },
      [&](size_t i, size_t j) { return HaversineM(s[i].lat, s[i].lon, s[j].lat, s[j].lon); }, lag_m,
      max_lag_m);
}

namespace {

// The model's shape at h for range a, without nugget and partial sill (0..1).
double Shape(VariogramModel m, double h, double a) {
  if (m == VariogramModel::kSpherical) {
    if (h >= a) return 1;
    double r = h / a;
    return 1.5 * r - 0.5 * r * r * r;
  }
  return 1 - std::exp(-3 * h / a);
}

// Weighted least squares of γ ≈ c0 + c·f for a fixed range; c0, c >= 0.
VariogramFit SolveForRange(const std::vector<VariogramBin>& bins, VariogramModel m, double a) {
  double sw = 0, sf = 0, sff = 0, sg = 0, sfg = 0;
  for (const VariogramBin& b : bins) {
    double w = static_cast<double>(b.pairs), f = Shape(m, b.h, a);
    sw += w;
    sf += w * f;
    sff += w * f * f;
    sg += w * b.gamma;
    sfg += w * f * b.gamma;
  }
  double det = sw * sff - sf * sf;
  double c0 = 0, c = 0;
  if (std::fabs(det) > 1e-12 * sw * sff) {
    c0 = (sff * sg - sf * sfg) / det;
    c = (sw * sfg - sf * sg) / det;
  }
  if (c0 < 0 || !(std::fabs(det) > 1e-12 * sw * sff)) {  // no nugget
    c0 = 0;
    c = sff > 0 ? sfg / sff : 0;
  }
  if (c < 0) {  // pure nugget
    c = 0;
    c0 = sg / sw;
  }
  VariogramFit fit;
  fit.model = m;
  fit.nugget = c0;
  fit.sill = c0 + c;
  fit.range = a;
  fit.sse = 0;
  for (const VariogramBin& b : bins) {
    double e = b.gamma - (c0 + c * Shape(m, b.h, a));
    fit.sse += static_cast<double>(b.pairs) * e * e;
  }
  fit.ok = true;
  return fit;
}

}  // namespace

double VariogramFit::Gamma(double h) const {
  if (!ok) return NAN;
  if (h <= 0) return 0;
  return nugget + (sill - nugget) * Shape(model, h, range);
}

VariogramFit FitVariogram(const std::vector<VariogramBin>& bins, VariogramModel model) {
  VariogramFit best;
  if (bins.size() < 3) return best;
  double hmax = 0, gmax = 0;
  for (const VariogramBin& b : bins) {
    hmax = std::max(hmax, b.h);
    gmax = std::max(gmax, b.gamma);
  }
  if (!(gmax > 0)) return best;
  // Scan ranges from the first lag to twice the largest, then refine. Structure at a
  // shorter range than the closest sensor pairs cannot be seen, so a range at that lower
  // bound means none: the variance is all nugget.
  const int kSteps = 60;
  double lo = bins.front().h, hi = std::max(hmax * 2, lo * 1.01);
  double best_a = lo;
  for (int i = 0; i <= kSteps; ++i) {
    double a = lo * std::pow(hi / lo, static_cast<double>(i) / kSteps);
    VariogramFit f = SolveForRange(bins, model, a);
    if (!best.ok || f.sse < best.sse) {
      best = f;
      best_a = a;
    }
  }
  double step = std::pow(hi / lo, 1.0 / kSteps);
  double x0 = best_a / step, x1 = best_a * step;
  const double g = (std::sqrt(5.0) - 1) / 2;
  for (int it = 0; it < 60; ++it) {
    double p = x1 - g * (x1 - x0), q = x0 + g * (x1 - x0);
    if (SolveForRange(bins, model, p).sse < SolveForRange(bins, model, q).sse) {
      x1 = q;
    } else {
      x0 = p;
    }
  }
  VariogramFit refined = SolveForRange(bins, model, std::max(lo, (x0 + x1) / 2));
  if (refined.sse <= best.sse) best = refined;
  if (best.range <= lo * (1 + 1e-6)) best.nugget = best.sill;
  return best;
}

}  // namespace tributary
