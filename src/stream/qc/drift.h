// Calibration drift of low-cost sensors against co-located reference stations.
//
// Pairs come from the device registry: an entry with `reference: <device id>` pairs
// that sensor with the reference station beside it (ingest/device_registry.h). For
// every pair and metric both report, the operator accumulates means per `bucket` of
// event time (hourly by default) and keeps the pairs of bucket means of the last
// `window` (7 days). Once `min_pairs` buckets are held, it fits
//     sensor = offset + slope · reference
// (Theil–Sen by default: the median of pairwise slopes, robust to a few bad hours; or
// ordinary least squares). The first such fit is the pair's baseline; every later
// bucket refits the window and measures the drift against the baseline:
//     slope drift  = slope / slope₀ − 1      (relative)
//     offset drift = offset − offset₀        (canonical unit)
// Past `slope_threshold` (or `offset_threshold`) a recalibration alert fires (an
// AlertEvent of kind `calibration_drift`, rule `alert_rule`, key the sensor) and goes
// through the alert operator to the sinks and channels; it resolves once both drifts
// are back under 80 % of their thresholds.
//
// With `apply_correction`, every later reading of the sensor is mapped onto the
// reference's scale with the current fit, x' = (x − offset) / slope, flagged
// DRIFT_CORRECTED, and the fit is recorded in Provenance::drift_correction. Fits always
// use the raw values, never corrected ones.
//
// A bucket closes when the largest event time seen passes its end by `close_after`
// (readings for a closed bucket are not counted in it). Everything is in event time, so
// the same input gives the same fits and alerts.
//
// Threading: one instance per operator chain; not thread-safe.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/model.h"
#include "core/pipeline_config.h"
#include "stream/operator.h"

namespace tributary {

class DeviceRegistry;

/// The `anomaly.drift` section, for docs and validation.
const SectionSpec& DriftSectionSpec();

enum class DriftFitMethod { kTheilSen, kOls };

/// The resolved `anomaly.drift` options.
struct DriftOptions {
  bool enabled = false;
  std::vector<Symbol> metrics;  ///< empty: every metric both devices report
  DurationUs window = 7 * 24 * kMicrosPerHour;
  DurationUs bucket = kMicrosPerHour;
  size_t min_pairs = 72;          ///< bucket pairs needed for a fit
  size_t min_bucket_samples = 3;  ///< readings of each device a bucket needs
  DriftFitMethod fit = DriftFitMethod::kTheilSen;
  double slope_threshold = 0.15;
  double offset_threshold = NAN;  ///< NaN: offset drift does not alert
  DurationUs close_after = 10 * kMicrosPerMinute;
  bool apply_correction = false;
  std::string alert_rule = "recalibration";
  Symbol severity;
};

/// Read `anomaly.drift` (disabled when absent).
Result<DriftOptions> ReadDriftOptions(const PipelineConfig& config);

/// A straight line sensor = offset + slope · reference over `pairs` bucket means.
struct DriftFit {
  double slope = NAN;
  double offset = NAN;
  size_t pairs = 0;
};

/// Fit y = offset + slope·x. NaN slope when x does not vary.
DriftFit FitDriftLine(const std::vector<double>& x, const std::vector<double>& y,
                      DriftFitMethod method);

/// The reference station of a device ("" when it has none).
using ReferenceLookup = std::function<std::string(std::string_view device)>;

/// The state of one pair, for tests and the report.
struct DriftPairStatus {
  Symbol sensor, reference, metric;
  bool has_baseline = false, has_fit = false, firing = false;
  DriftFit baseline, fit;
  double slope_drift = NAN, offset_drift = NAN;
  TimeUs fired_at = 0;
};

class DriftOperator final : public Operator {
 public:
  /// `known_pairs` (sensor, reference) are watched from the start; other sensors are
  /// looked up with `lookup` when they first report.
  DriftOperator(DriftOptions options, ReferenceLookup lookup,
                std::vector<std::pair<std::string, std::string>> known_pairs);
  /// Null when `anomaly.drift` is not enabled; an error when it is but there is no
  /// device registry to pair sensors with references.
  static Result<std::unique_ptr<DriftOperator>> Make(const PipelineConfig& config,
                                                     std::shared_ptr<DeviceRegistry> registry);

  std::string_view name() const override { return "drift"; }
  Status Open(RunContext& ctx) override;
  Status Process(Batch& batch) override;
  Status Finish(Batch& out) override;
  Status Snapshot(CheckpointWriter& out) const override;
  Status Restore(CheckpointReader& in) override;

  std::vector<DriftPairStatus> Pairs() const;

 private:
  struct Acc {
    double s_sum = 0, r_sum = 0;
    uint64_t s_n = 0, r_n = 0;
  };
  struct Point {
    int64_t bucket = 0;
    double reference = 0, sensor = 0;
  };
  struct PairState {
    Symbol sensor, reference, metric;
    std::map<int64_t, Acc> open;         // bucket index → sums
    std::deque<Point> points;            // closed buckets in the window, oldest first
    int64_t closed_through = INT64_MIN;  // last bucket index closed
    bool has_baseline = false, has_fit = false, firing = false;
    DriftFit baseline, fit;
    double slope_drift = NAN, offset_drift = NAN;
    Symbol correction;
    TimeUs fired_at = 0;
  };
  static uint64_t Key(Symbol sensor, Symbol metric) {
    return (static_cast<uint64_t>(sensor.id) << 32) | metric.id;
  }
  bool Watched(Symbol metric) const;
  Symbol ReferenceOf(Symbol device);
  PairState& Pair(Symbol sensor, Symbol reference, Symbol metric);
  void CloseBuckets(PairState& p, std::vector<AlertEvent>& out);
  void Evaluate(PairState& p, TimeUs t, std::vector<AlertEvent>& out);

  DriftOptions options_;
  ReferenceLookup lookup_;
  std::vector<std::pair<std::string, std::string>> known_pairs_;
  Symbol rule_, kind_;
  std::unordered_map<uint32_t, Symbol> reference_of_;             // sensor → reference (or empty)
  std::unordered_map<uint32_t, std::vector<Symbol>> sensors_of_;  // reference → sensors
  std::map<uint64_t, PairState> pairs_;  // ordered: alerts come out in a stable order
  TimeUs max_time_ = kMinTime;
  std::vector<double> xs_, ys_;
};

}  // namespace tributary
