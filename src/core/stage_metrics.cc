#include "core/stage_metrics.h"

#include <mutex>

namespace tributary {

namespace {

struct StageMetricsRegistry {
  std::mutex mu;
  std::map<std::string, uint64_t, std::less<>> stages;
  std::map<std::pair<std::string, std::string>, SinkLatencyHistogram> latency;
};

StageMetricsRegistry& StageRegistry() {
  static StageMetricsRegistry* r = new StageMetricsRegistry();  // never destroyed: used at exit
  return *r;
}

}  // namespace

void AddStageEvents(std::string_view stage, uint64_t n) {
  StageMetricsRegistry& r = StageRegistry();
  std::lock_guard lock(r.mu);
  auto it = r.stages.find(stage);
  if (it == r.stages.end()) it = r.stages.emplace(std::string(stage), 0).first;
  it->second += n;
}

std::map<std::string, uint64_t> StageEventsSnapshot() {
  StageMetricsRegistry& r = StageRegistry();
  std::lock_guard lock(r.mu);
  return {r.stages.begin(), r.stages.end()};
}

void ObserveSinkLatency(std::string_view sink, std::string_view op, double seconds) {
  StageMetricsRegistry& r = StageRegistry();
  std::lock_guard lock(r.mu);
  SinkLatencyHistogram& h = r.latency[{std::string(sink), std::string(op)}];
  for (size_t i = 0; i < kSinkLatencyBuckets.size(); ++i) {
    if (seconds <= kSinkLatencyBuckets[i]) ++h.buckets[i];
  }
  ++h.count;
  h.sum_seconds += seconds;
}

std::map<std::pair<std::string, std::string>, SinkLatencyHistogram> SinkLatencySnapshot() {
  StageMetricsRegistry& r = StageRegistry();
  std::lock_guard lock(r.mu);
  return r.latency;
}

}  // namespace tributary
