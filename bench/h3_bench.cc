// Throughput of point-to-cell assignment, the per-reading cost of keying by H3.
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <vector>

#include "spatial/h3.h"

namespace {

struct Point {
  double lat;
  double lng;
};

/// Points spread uniformly over the sphere (fixed seed).
const std::vector<Point>& Points() {
  static const std::vector<Point> points = [] {
    std::vector<Point> p;
    std::mt19937_64 rng(42);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    for (int i = 0; i < 4096; ++i) {
      p.push_back({std::asin(2.0 * u(rng) - 1.0) * 180.0 / M_PI, u(rng) * 360.0 - 180.0});
    }
    return p;
  }();
  return points;
}

void BM_LatLngToCell(benchmark::State& state) {
  const int res = static_cast<int>(state.range(0));
  const std::vector<Point>& points = Points();
  size_t i = 0;
  for (auto _ : state) {
    const Point& p = points[i++ & 4095];
    benchmark::DoNotOptimize(tributary::h3::LatLngToCell(p.lat, p.lng, res));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_LatLngToCell)->Arg(5)->Arg(9)->Arg(15);

void BM_CellToLatLng(benchmark::State& state) {
  std::vector<uint64_t> cells;
  for (const Point& p : Points()) cells.push_back(tributary::h3::LatLngToCell(p.lat, p.lng, 9));
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(tributary::h3::CellToLatLng(cells[i++ & 4095]));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_CellToLatLng);

}  // namespace

BENCHMARK_MAIN();
