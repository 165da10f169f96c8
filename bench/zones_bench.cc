// Point-in-polygon throughput of the zone index: 50,000 irregular polygons tiling a
// 5° × 4° area (a 250 × 200 grid of cells whose shared vertices and edge midpoints are
// jittered, 8 vertices each, so every polygon is a distinct non-rectangular shape and
// points near edges need the exact test), and random points over the area. The
// locator is warmed first: prepared geometries are built on a zone's first lookup.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "spatial/zones.h"

namespace {

constexpr int kNx = 250, kNy = 200;
constexpr double kLon0 = 10.0, kLat0 = 50.0, kCell = 0.02;

std::shared_ptr<const tributary::ZoneSet> MakeZones() {
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> jitter(-0.2 * kCell, 0.2 * kCell);
  // Vertices on a (2 nx + 1) × (2 ny + 1) lattice: corners and edge midpoints, jittered
  // once, so neighbours share their boundary exactly.
  int w = 2 * kNx + 1, h = 2 * kNy + 1;
  std::vector<std::pair<double, double>> v(static_cast<size_t>(w * h));
  for (int j = 0; j < h; ++j) {
    for (int i = 0; i < w; ++i) {
      bool border = i == 0 || j == 0 || i == w - 1 || j == h - 1;
      v[static_cast<size_t>(j * w + i)] = {kLon0 + i * kCell / 2 + (border ? 0 : jitter(rng)),
                                           kLat0 + j * kCell / 2 + (border ? 0 : jitter(rng))};
    }
  }
  auto at = [&](int i, int j) {
    const auto& p = v[static_cast<size_t>(j * w + i)];
    return std::to_string(p.first) + " " + std::to_string(p.second);
  };
  std::vector<tributary::ZoneSet::WktZone> zones;
  for (int y = 0; y < kNy; ++y) {
    for (int x = 0; x < kNx; ++x) {
      int i = 2 * x, j = 2 * y;
      std::string wkt = "POLYGON((" + at(i, j) + "," + at(i + 1, j) + "," + at(i + 2, j) + "," +
                        at(i + 2, j + 1) + "," + at(i + 2, j + 2) + "," + at(i + 1, j + 2) + "," +
                        at(i, j + 2) + "," + at(i, j + 1) + "," + at(i, j) + "))";
      zones.push_back({"z" + std::to_string(y * kNx + x), "", wkt});
    }
  }
  auto set = tributary::ZoneSet::FromWkt({{"grid", zones}});
  if (!set.ok()) std::abort();
  return *set;
}

// Arg 0: uniformly random points (every lookup a cold cache: the worst case).
// Arg 1: the same points in row-major order of 0.1° tiles, as a sensor network's
// readings are (fixed sensors revisit the same zones), so the caches are warm.
void BM_ZoneLookup(benchmark::State& state) {
  static const auto zones = MakeZones();
  tributary::ZoneLocator loc(zones);
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> ulon(kLon0, kLon0 + kNx * kCell);
  std::uniform_real_distribution<double> ulat(kLat0, kLat0 + kNy * kCell);
  std::vector<std::pair<double, double>> points(1 << 20);
  for (auto& p : points) p = {ulat(rng), ulon(rng)};
  if (state.range(0) == 1) {
    auto tile = [](const std::pair<double, double>& p) {
      return std::make_pair(std::floor(p.first * 10), std::floor(p.second * 10));
    };
    std::sort(points.begin(), points.end(),
              [&](const auto& a, const auto& b) { return tile(a) < tile(b); });
  }
  // Warm-up: prepare every zone once.
  int64_t found = 0;
  for (const auto& p : points) found += loc.Locate(0, p.first, p.second) >= 0;
  size_t i = 0;
  for (auto _ : state) {
    const auto& p = points[i++ & (points.size() - 1)];
    benchmark::DoNotOptimize(loc.Locate(0, p.first, p.second));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.counters["zones"] = static_cast<double>(zones->layers()[0].zones.size());
  state.counters["hit_share"] = static_cast<double>(found) / static_cast<double>(points.size());
  // Share of lookups answered by the grid's whole-cell cache (no exact test).
  const auto& st = loc.stats();
  double lookups = static_cast<double>(state.iterations() + static_cast<int64_t>(points.size()));
  state.counters["cell_share"] = static_cast<double>(st.cell_hits) / lookups;
  state.counters["geos_per_lookup"] = static_cast<double>(st.geos_tests) / lookups;
}
BENCHMARK(BM_ZoneLookup)->Arg(0)->Arg(1);

}  // namespace

BENCHMARK_MAIN();
