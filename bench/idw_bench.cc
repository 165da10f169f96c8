// IDW grid throughput: a 1000 × 1000 grid over a 40 km square from 2,000 sensors with
// k = 8, power 2, no radius (every cell gets a value), on one thread.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "spatial/idw.h"

namespace {

void BM_IdwGrid(benchmark::State& state) {
  const int sensors = static_cast<int>(state.range(0));
  const int side = static_cast<int>(state.range(1));
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<double> lat(52.34, 52.70), lon(13.10, 13.70), v(0, 80);
  std::vector<tributary::SensorValue> s;
  for (int i = 0; i < sensors; ++i) s.push_back({lat(rng), lon(rng), v(rng)});
  auto idw = tributary::IdwInterpolator::Make(s, {2.0, 8, 0}, 52.52, 13.40);
  if (!idw.ok()) std::abort();
  tributary::GridSpec grid{13.10, 52.34, 13.70, 52.70, side, side};
  std::vector<float> out;
  for (auto _ : state) {
    (*idw)->Interpolate(grid, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * side * side);
}
BENCHMARK(BM_IdwGrid)->Args({2000, 1000})->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
