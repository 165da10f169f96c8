// Streaming per-sensor quality control, run as an operator before the window operator
// so that its flags reach windows and sinks. Checks only add flags; no reading is ever
// dropped or changed.
//
// Implemented checks, per (device, metric) key, in arrival order of the batch:
//   spike           robust z = |x − median| / (1.4826 · MAD) over the previous
//                   `spike_window` readings; flagged SPIKE when z ≥ spike_z.
//   flatline        the value repeated exactly `flatline_count` or more times in a row;
//                   flagged FLATLINE from the count-th identical reading on.
//   rate of change  |Δvalue| / Δt (per minute, event time) above the metric's physical
//                   limit; flagged RATE_OF_CHANGE.
// The score of a reading is the strongest normalised check (z / spike_z, Δ / limit, run
// length / flatline_count); scores ≥ 1 mean flagged. State is bounded: a ring of
// `spike_window` values per key.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/model.h"
#include "stream/operator.h"

namespace tributary {

/// Thresholds of the per-sensor checks for one metric.
struct QcMetricLimits {
  size_t spike_window = 30;       ///< readings in the rolling median/MAD
  double spike_z = 6.0;           ///< robust z at or above which a reading is a spike
  size_t flatline_count = 10;     ///< identical consecutive readings that make a flatline
  double max_rate_per_min = NAN;  ///< physical limit of |Δ| per minute; NaN = no check
};

/// Immutable QC definition: default limits and per-metric overrides.
struct QcOptions {
  QcMetricLimits defaults;
  std::unordered_map<std::string, QcMetricLimits> per_metric;  ///< by canonical metric
  /// Limits for `metric` (the override when present, otherwise the defaults).
  const QcMetricLimits& For(Symbol metric) const;
};

/// Physical rate-of-change limits of the simulator's canonical metrics (per minute).
QcOptions DefaultQcOptions();

/// The QC operator. Not thread-safe; one instance per operator chain.
class QcOperator : public Operator {
 public:
  explicit QcOperator(QcOptions options) : options_(std::move(options)) {}
  std::string_view name() const override { return "qc"; }
  Status Open(RunContext& ctx) override;
  Status Process(Batch& batch) override;
  Status Finish(Batch& out) override;

  /// Scores of the readings of the last processed batch, parallel to batch.readings.
  const std::vector<float>& last_scores() const { return scores_; }

 private:
  struct KeyState {
    std::deque<double> recent;  ///< last spike_window values (oldest first)
    double last_value = NAN;
    TimeUs last_time = 0;
    size_t run_length = 0;  ///< consecutive identical values including the last
  };
  float Check(Reading& r);

  QcOptions options_;
  std::unordered_map<uint64_t, KeyState> state_;  ///< key: device id << 32 | metric id
  std::vector<float> scores_;
  std::vector<double> scratch_;
};

}  // namespace tributary
