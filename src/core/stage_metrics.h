// Throughput of each pipeline stage and the latency of each sink call, shared with the
// metrics endpoint (server/metrics.h renders them).
//
// Stage names: `source:<name>` counts raw records read; `ingest`, `operator:<name>` and
// `sink:<name>` count the readings, window results and alerts in the batches leaving
// the stage (for a sink: the batches it wrote). Sink latency is one observation per
// call of Sink::Write or Sink::Commit (each retry is a call), in seconds, kept as a
// cumulative Prometheus histogram per sink and operation.
//
// Threading: process-wide, one mutex; stages update once per batch.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace tributary {

/// Add `n` events to the counter of `stage`.
void AddStageEvents(std::string_view stage, uint64_t n);
/// Every stage's counter so far, by stage name.
std::map<std::string, uint64_t> StageEventsSnapshot();

/// Upper bounds (seconds) of the sink latency histogram buckets; +Inf is implied.
inline constexpr std::array<double, 14> kSinkLatencyBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

struct SinkLatencyHistogram {
  std::array<uint64_t, kSinkLatencyBuckets.size()> buckets{};  ///< cumulative: <= bound
  uint64_t count = 0;
  double sum_seconds = 0;
};

/// Record one call of `op` ("write" or "commit") of sink `sink` that took `seconds`.
void ObserveSinkLatency(std::string_view sink, std::string_view op, double seconds);
/// Every histogram so far, by (sink, op).
std::map<std::pair<std::string, std::string>, SinkLatencyHistogram> SinkLatencySnapshot();

}  // namespace tributary
