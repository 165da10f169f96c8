// Streaming per-sensor quality control, run as an operator after zone enrichment and
// before the window operator, so that its flags reach windows and sinks. Checks only add
// flags and a score; no reading is ever dropped or changed.
//
// Checks, per (device, metric) key, in arrival order of the batch:
//   spike           robust z = |x − median| / (1.4826 · MAD) over the previous
//                   `spike_window` readings; flagged SPIKE when z ≥ spike_z.
//   flatline        the value repeated exactly `flatline_count` or more times in a row;
//                   flagged FLATLINE from the count-th identical reading on.
//   rate of change  |Δvalue| / Δt (per minute, event time) above the metric's physical
//                   limit; flagged RATE_OF_CHANGE.
//   baseline        the value above the `baseline_percentile` of the trailing
//                   `baseline_days` days at the same hour of day, per sensor and per
//                   zone (seed 001: rolling percentile baselines instead of fixed
//                   thresholds); flagged BASELINE_EXCEEDED once the baseline holds
//                   `baseline_min_days` days. Hours and days are local ones of
//                   `baseline_time_zone` (UTC by default), so a rush hour keeps its
//                   baseline across a daylight-saving change.
//   neighbours      robust z of the value against the median and MAD of the latest
//                   values of the same metric from the nearest `neighbor_max` other
//                   sensors within `neighbor_radius_m` that reported within
//                   `neighbor_max_age`; flagged
//                   NEIGHBOR_DISAGREEMENT when z ≥ neighbor_z and at least
//                   `neighbor_min` neighbours answered.
//
// The score of a reading (Reading::qc_score) is the strongest normalised check: z /
// spike_z, Δ / limit, (run length − 1) / (flatline_count − 1), z / neighbor_z, and for
// the baseline 1 + the relative excess over the percentile when exceeded. A score ≥ 1
// means the reading carries at least one flag of these checks.
//
// Baseline memory is bounded: per key and hour of day a ring of `baseline_days` day
// buckets, each holding the day's `baseline_keep` largest values and its count. The
// trailing percentile is the r-th largest of the kept values, r = ⌈(1 − p) · n⌉ over the
// n readings of the window. It is exact while no single day holds more than
// `baseline_keep` of the window's r largest values; otherwise it is a lower bound (more
// readings flagged, never fewer). Zones take `baseline_zone_keep` per day, since a zone
// day holds the readings of all its sensors. Readings flagged SPIKE or RATE_OF_CHANGE do
// not enter baselines or neighbour values.
//
// Neighbours sit in a uniform grid of `neighbor_radius_m` cells on a local
// equirectangular projection per metric; a query reads the 3×3 cells around the reading.
//
// Threading: one instance per operator chain; not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/config.h"
#include "core/model.h"
#include "stream/operator.h"

namespace tributary {

struct PipelineConfig;
class TimeZone;

/// Bits of QcMetricLimits::checks.
enum class QcCheck : uint32_t {
  kSpike = 1u << 0,
  kFlatline = 1u << 1,
  kRate = 1u << 2,
  kBaseline = 1u << 3,
  kNeighbors = 1u << 4,
};
inline constexpr uint32_t kAllQcChecks = 0x1f;

/// Thresholds of the per-sensor checks for one (sensor type, metric).
struct QcMetricLimits {
  uint32_t checks = kAllQcChecks;     ///< QcCheck bits that run
  size_t spike_window = 30;           ///< readings in the rolling median/MAD
  double spike_z = 6.0;               ///< robust z at or above which a reading is a spike
  size_t flatline_count = 10;         ///< identical consecutive readings that make a flatline
  double max_rate_per_min = NAN;      ///< physical limit of |Δ| per minute; NaN = no check
  double baseline_percentile = 0.99;  ///< flagged above this trailing percentile
  double neighbor_z = 6.0;            ///< robust z against the neighbours' median
  /// Floor of the neighbours' robust σ in the metric's unit: sensors a few units apart
  /// are not in disagreement even when the neighbours agree exactly among themselves.
  double neighbor_min_sigma = 1.0;
  bool Has(QcCheck c) const { return (checks & static_cast<uint32_t>(c)) != 0; }
};

/// A `qc.rules[]` entry: limits for the readings it matches, over the defaults.
struct QcRule {
  std::string metric;   ///< canonical metric; empty = every metric
  std::string devices;  ///< glob over device ids ("aq-*"); empty = every device
  std::string model;    ///< device model from the registry; empty = any
  std::optional<uint32_t> checks;
  std::optional<size_t> spike_window;
  std::optional<double> spike_z;
  std::optional<size_t> flatline_count;
  std::optional<double> max_rate_per_min;
  std::optional<double> baseline_percentile;
  std::optional<double> neighbor_z;
  std::optional<double> neighbor_min_sigma;
};

/// Immutable QC definition.
struct QcOptions {
  bool enabled = true;
  QcMetricLimits defaults;
  /// Built-in per-metric limits (physical rates, neighbour σ floors), before rules.
  std::unordered_map<std::string, QcMetricLimits> per_metric;
  /// Rules in config order; every matching rule applies its keys, later ones win.
  std::vector<QcRule> rules;
  int64_t baseline_days = 30;      ///< trailing days of the baseline
  int64_t baseline_min_days = 7;   ///< days with data before the baseline judges
  size_t baseline_keep = 4;        ///< largest values kept per sensor, hour and day
  size_t baseline_zone_keep = 64;  ///< largest values kept per zone, hour and day
  bool baseline_zones = true;      ///< also judge against the reading's zone baseline
  /// Zone of the baselines' hours and days; null = UTC.
  std::shared_ptr<const TimeZone> baseline_time_zone;
  double neighbor_radius_m = 2000.0;
  size_t neighbor_min = 3;
  size_t neighbor_max = 32;  ///< nearest neighbours with a recent value that count
  DurationUs neighbor_max_age = 15 * kMicrosPerMinute;

  /// Limits of `metric` for `device` of registry model `model` (defaults, built-in
  /// metric limits, then the matching rules in order).
  QcMetricLimits Resolve(std::string_view metric, std::string_view device,
                         std::string_view model) const;
};

/// Built-in limits of the canonical metrics: physical rate-of-change limits per minute
/// and neighbour σ floors.
QcOptions DefaultQcOptions();

/// The `qc` section spec and the spec of one `qc.rules[]` entry.
const SectionSpec& QcSectionSpec();
const SectionSpec& QcRuleSectionSpec();
/// Read the `qc` section of `config` over DefaultQcOptions().
Result<QcOptions> ParseQcOptions(const PipelineConfig& config);

/// The QC operator.
class QcOperator : public Operator {
 public:
  explicit QcOperator(QcOptions options);
  ~QcOperator() override;
  std::string_view name() const override { return "qc"; }
  Status Open(RunContext& ctx) override;
  Status Process(Batch& batch) override;
  Status Finish(Batch& out) override;
  Status Snapshot(CheckpointWriter& out) const override;
  Status Restore(CheckpointReader& in) override;

  /// Look up a device's registry model for `qc.rules[].model` (none: models are empty).
  void SetModelLookup(std::function<std::string(Symbol device)> lookup) {
    model_lookup_ = std::move(lookup);
  }
  const QcOptions& options() const { return options_; }
  /// Keys with state (sensor keys, zone baselines), for tests and memory estimates.
  size_t sensor_keys() const { return sensors_.size(); }
  size_t zone_keys() const { return zones_.size(); }

 private:
  struct Baseline;
  struct NeighborGrid;
  struct KeyState {
    uint64_t key = 0;  ///< device id << 32 | metric id
    QcMetricLimits limits;
    std::vector<double> recent;  ///< ring of the last spike_window values
    size_t recent_next = 0;      ///< where the next value goes once the ring is full
    /// The ring's values in ascending order (rebuilt from `recent` on restore), so the
    /// spike median and MAD need no selection.
    std::vector<double> recent_sorted;
    double last_value = NAN;
    TimeUs last_time = 0;
    size_t run_length = 0;  ///< consecutive identical values including the last
    std::unique_ptr<Baseline> baseline;
    // Spike statistics of the ring, refreshed every kSpikeRefresh readings (and exactly
    // for a reading that comes within a quarter of the threshold).
    double spike_median = NAN;
    double spike_sigma = NAN;
    uint32_t spike_age = 0;  ///< readings since the statistics were computed
    // The same for the neighbours' median and robust σ (and how many answered).
    double nb_median = NAN;
    double nb_sigma = NAN;
    uint32_t nb_count = 0;
    uint32_t nb_age = 0;
    // Caches rebuilt on demand (not checkpointed): the metric's grid, the sensors within
    // the radius (grid entry indices, as of grid generation `neighbors_gen`) and the
    // zone baseline of the last zone seen.
    NeighborGrid* grid = nullptr;
    uint32_t grid_entry = UINT32_MAX;  ///< this sensor's entry in `grid`
    std::vector<uint32_t> neighbors;
    uint64_t neighbors_gen = UINT64_MAX;
    uint32_t zone_id = 0;
    Baseline* zone_baseline = nullptr;
  };
  KeyState& StateOf(const Reading& r);
  float Check(Reading& r);
  /// Offset (µs) of `baseline_time_zone` at `t`, cached per quarter hour of UTC time
  /// (offsets change on quarter hours).
  int64_t BaselineOffset(TimeUs t);

  QcOptions options_;
  std::function<std::string(Symbol)> model_lookup_;
  // Sensor keys: states in creation order (stable addresses) and, since symbol ids are
  // small dense integers, a direct index [metric id][device id] → 1 + position, which
  // keeps a hash lookup off the per-reading path.
  std::deque<KeyState> sensors_;
  std::vector<std::vector<uint32_t>> sensor_index_;
  std::unordered_map<uint64_t, std::unique_ptr<Baseline>> zones_;      ///< zone id << 32 | metric
  std::unordered_map<uint32_t, std::unique_ptr<NeighborGrid>> grids_;  ///< by metric id
  std::vector<double> scratch_;
  std::vector<double> scratch2_;
  int64_t offset_slot_ = INT64_MIN;  ///< quarter hour of `offset_us_`
  int64_t offset_us_ = 0;
};

/// Build the QC operator of `config` (null when `qc.enabled` is false).
Result<std::unique_ptr<QcOperator>> MakeQcOperator(const PipelineConfig& config);

// The spike check's statistics over ascending values (the ring kept sorted): the
// median (the mean of the middle two for an even count) and the median of |v − m|,
// equal to selecting them from unsorted values. `sorted` must not be empty.
double SortedMedian(const std::vector<double>& sorted);
double SortedMedianDeviation(const std::vector<double>& sorted, double m);
/// Insert `v` / remove one value equal to `v` (with its sign, for zeros) keeping order.
void SortedInsert(std::vector<double>& sorted, double v);
void SortedErase(std::vector<double>& sorted, double v);

}  // namespace tributary
