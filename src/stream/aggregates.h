// Window aggregates: the per-(window, group, metric) accumulator and the table of
// aggregate names a window definition may ask for.
//
// Determinism. A window's final values must not depend on the order its readings
// arrived in (any order within grace gives the same row, bit for bit). Running
// sums in floating point are order dependent in their last bits, and so is
// Welford's update for the variance. So the accumulator keeps *exact* sums: each
// sum is an expansion of non-overlapping doubles (Shewchuk's algorithm, as in
// Python's math.fsum) whose value is exactly the real sum of the inputs. The exact
// sum does not depend on order, and reading it out rounds once, correctly, so the
// result is order independent too:
//   mean = round(Σx) / n
//   std  = sqrt(round(Σ(x − mean)²) / (n − 1))   (sample standard deviation, ddof 1)
// where Σ(x − mean)² = Σx² − 2·mean·Σx + n·mean² is evaluated exactly from the exact
// Σx and Σx² (x² is split exactly into two doubles). This is also more accurate
// than Welford: no cancellation for values with a large mean and a tiny spread
// (pressure in Pa, temperature in K). min, max and count are order independent by
// nature; first/last break event-time ties by value; the centroid is an exact mean
// of the positions. Exactness assumes no overflow (|x| < 1e150), far beyond any
// sensor value.
//
// Cost: an expansion typically holds 2–4 doubles, kept inline; a rare longer one
// moves to the heap. Adding one value touches each stored double once.
//
// Order statistics (median, p95, q<NN>/p<NN>, trimmed_mean) are exact: only when a
// definition asks for one does its accumulator keep the window's values (8 bytes per
// reading); they are selected with nth_element when the window is emitted. Quantile
// definition: linear interpolation between closest ranks (Hyndman & Fan type 7, the
// default of numpy, R and polars' "linear"): for sorted x[0..n), h = (n − 1)·q,
//   Q(q) = x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋ + 1] − x[⌊h⌋])
// Selection is by value (−0.0 before +0.0), so the result does not depend on order.
// trimmed_mean is the exact mean of the values v with Q(0.10) <= v <= Q(0.90) (the
// seed's polars filter), aggregation_method "trimmed_mean_10_90".
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/model.h"
#include "core/status.h"

namespace tributary {

class CheckpointWriter;
class CheckpointReader;

/// An exactly rounded, order-independent sum of doubles (non-overlapping expansion).
/// Non-finite inputs must be filtered by the caller.
class ExactSum {
 public:
  ExactSum() = default;
  ExactSum(const ExactSum& other);
  ExactSum& operator=(const ExactSum& other);
  ExactSum(ExactSum&& other) noexcept;
  ExactSum& operator=(ExactSum&& other) noexcept;

  /// Add `x` exactly.
  void Add(double x);
  /// Add another exact sum exactly (for merging partial windows).
  void Add(const ExactSum& other);
  /// The exact sum rounded once to the nearest double (ties to even).
  double Value() const;
  /// The stored expansion, smallest magnitude first; its exact sum is the value.
  std::span<const double> partials() const;
  /// Heap bytes held beyond sizeof(ExactSum) (0 unless the expansion spilled).
  size_t HeapBytes() const;
  /// Checkpoints: the partials, exactly.
  void Encode(CheckpointWriter& out) const;
  void Decode(CheckpointReader& in);

 private:
  // Adds to a spilled or full expansion (out of line: rare).
  [[gnu::noinline]] void AddSlow(double x);

  static constexpr uint32_t kInline = 4;
  double inline_[kInline] = {};
  uint32_t size_ = 0;
  std::unique_ptr<std::vector<double>> spill_;  // holds all partials once size_ > kInline
};

/// Round the exact sum of an expansion, e.g. one built by hand (ties to even).
double RoundExpansion(std::span<const double> partials);
/// Add `x` exactly to an expansion held in a vector.
void AddToExpansion(std::vector<double>& partials, double x);

/// Every aggregate name a window definition may list. Some are always computed and
/// may be listed for clarity; the planned ones are rejected as "not supported yet".
enum class AggregateKind : uint8_t {
  kCount,
  kMean,
  kMin,
  kMax,
  kStd,
  kFirst,
  kLast,
  kDistinctSensors,
  kCentroid,
  kMedian,
  kP95,
  kTrimmedMean,
  kNowCast,
  kAqi,
  kQuantile,   ///< q<NN> / p<NN>: any other quantile, in WindowResult::quantiles
  kLateCount,  ///< late_arrival_count; always computed
};

/// One row of the aggregate table (docs and validation are generated from it).
struct AggregateInfo {
  AggregateKind kind;
  std::string_view name;
  bool supported;
  std::string_view description;
};

/// The aggregate table, in documentation order.
std::span<const AggregateInfo> AggregateTable();

/// A set of AggregateKinds, plus the extra quantiles asked for by name.
struct AggregateSet {
  uint32_t bits = 0;
  std::vector<double> quantiles;  ///< q in [0, 1], ascending, unique (not 0.5 nor 0.95)
  void Add(AggregateKind k) { bits |= 1u << static_cast<uint32_t>(k); }
  bool Has(AggregateKind k) const { return (bits & (1u << static_cast<uint32_t>(k))) != 0; }
  /// Whether the accumulators must keep every value (an order statistic is asked for).
  bool NeedsValues() const {
    return Has(AggregateKind::kMedian) || Has(AggregateKind::kP95) ||
           Has(AggregateKind::kTrimmedMean) || !quantiles.empty();
  }
};

/// Parse a quantile aggregate name: "q<NN>" or "p<NN>" with NN a percentage in
/// [0, 100], decimals allowed ("p99.9"). Returns the fraction, or -1 when `name` is
/// not of that form.
double ParseQuantileName(std::string_view name);

/// The type-7 quantile of `values` (see the file comment); reorders `values`.
/// NaN when empty. `q` in [0, 1].
double SelectQuantile(std::vector<double>& values, double q);

/// The type-7 quantile of values sorted ascending (−0.0 before +0.0); NaN when empty.
double SortedQuantile(std::span<const double> sorted, double q);

/// Resolve aggregate names (and q<NN>/p<NN>; "p50"/"q50" mean median, "q95" p95).
/// Unknown names and planned ones are errors whose message names the aggregate and
/// lists the supported ones.
Result<AggregateSet> ParseAggregates(const std::vector<std::string>& names);

/// The regulatory aggregation_method column for a set: "nowcast" when the NowCast is
/// computed, else "mean" when the mean is, else "trimmed_mean_10_90", "median", "p95",
/// then the first configured of std/min/max, otherwise "count".
std::string_view AggregationMethodName(const AggregateSet& set);

/// How a window puts each sensor's readings on a common time grid before it
/// aggregates (seed 001: mixed 1 s / 10 s / 1 min sensors on one 1-minute grid).
/// Grid points are start + k·interval inside the window; a point with readings of
/// the sensor in [point, point + interval) is observed and takes their exact mean.
/// The other points of the sensor are filled after its first observed point:
///   kForwardFill  the value of the latest observed point before it;
///   kLinear       interpolated in time between the observed points around it, and
///                 the last observed value after the last one (no extrapolation).
/// Points before a sensor's first observed point in the window stay empty.
enum class ResampleMode : uint8_t { kNone, kForwardFill, kLinear };

/// The state of one (window, group, metric): compact, mergeable, order independent.
class WindowAccumulator {
 public:
  /// Add one reading. Returns false (and changes nothing) for a non-finite value.
  /// `keep_value`: also store the value for order statistics (AggregateSet::NeedsValues).
  /// `keep_sample`: also store (device, time, value, position) for resampling.
  bool Add(const Reading& r, bool keep_value = false, bool keep_sample = false);
  /// The grid samples of the kept samples over [start, end) (see ResampleMode): one
  /// reading per filled grid point and sensor, added with `keep_values`. Readings
  /// outside [start, end) (taken by late_policy next_window) count in the first or
  /// last point. `interpolated` is the number of filled, not observed, points.
  WindowAccumulator Resample(TimeUs start, TimeUs end, DurationUs interval, ResampleMode mode,
                             bool keep_values, uint64_t& interpolated) const;
  /// Fold another accumulator of the same key in (sessions, panes, restore).
  void Merge(const WindowAccumulator& other);

  uint64_t count() const { return count_; }
  /// The distinct devices seen (symbol ids), into `out` (cleared first).
  void Devices(std::vector<uint32_t>& out) const;
  /// Exact mean, max and positions (NaN when empty / without positions).
  double mean() const;
  double max() const { return count_ > 0 ? max_ : NAN; }
  double centroid_lat() const;
  double centroid_lon() const;
  /// Fill count, the configured statistics (others stay NaN), first/last, centroid
  /// and distinct_sensors.
  /// Order statistics are filled when values were kept.
  void Fill(const AggregateSet& set, WindowResult& out) const;
  /// Bytes held on the heap beyond sizeof(WindowAccumulator).
  size_t HeapBytes() const;
  /// Checkpoints: every field, so a restored accumulator is indistinguishable.
  void Encode(CheckpointWriter& out) const;
  void Decode(CheckpointReader& in);

 private:
  void AddDevice(Symbol device);
  static void AddMultiple(ExactSum& sum, double x, uint64_t k);
  void FlushPositionRun();
  double PositionMean(const ExactSum& sum, double run_value) const;

  uint64_t count_ = 0;
  uint64_t positions_ = 0;  // readings with a finite lat/lon
  double min_ = 0, max_ = 0;
  TimeUs first_time_ = 0, last_time_ = 0;
  double first_ = 0, last_ = 0;
  ExactSum sum_, sum_sq_, lat_, lon_;
  // The latest run of readings at one position, not yet in lat_/lon_.
  double run_lat_ = 0, run_lon_ = 0;
  uint64_t run_ = 0;
  Symbol device_;                                        // the first device seen
  std::unique_ptr<std::vector<uint32_t>> more_devices_;  // others, sorted ids
  // Every value, when order statistics are asked for; selection reorders it, which
  // changes no result (hence mutable).
  mutable std::unique_ptr<std::vector<double>> values_;
  struct Sample {
    uint32_t device;
    TimeUs time;
    double value, lat, lon;
  };
  std::unique_ptr<std::vector<Sample>> samples_;  // resampled definitions only
};

}  // namespace tributary
