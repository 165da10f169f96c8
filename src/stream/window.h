// The event-time window stage: turns readings into windowed statistics per
// (window definition, group, metric, window start), and routes late readings.
//
// Window definitions come from the pipeline's `windows:` list (WindowSectionSpec).
// A definition assigns a reading at event time t to windows [start, start + size):
//   tumbling: start = floor((t − offset) / size)·size + offset   (one window)
//   sliding:  every start = k·step + offset with start <= t < start + size
//             (size / step windows, rounded up). Two-tier pre-aggregation (`pane`,
//             default gcd(size, step)): the reading is added once, to the pane
//             [p, p + pane) holding t; a window merges its size / pane panes when it
//             is emitted, so the cost per reading does not grow with size / step.
//             The partials merge exactly (exact sums, kept values), so the rows are
//             identical to adding the reading to every window. A reading for windows
//             already emitted (within grace) is added to their merged state directly.
//   session:  per key, readings closer than `gap` in event time form one session
//             [first event, last event + gap); a reading that falls within `gap` of
//             two sessions merges them (see "Sessions" below)
// and groups it by device, zone (reading.zone), H3 cell (reading.h3) or all. A
// definition with a `metrics` list only takes readings of those metrics.
//
// Time (see watermark.h): the operator watermark W is computed after each batch
// from the readings seen; readings of a batch are judged against the watermark as
// it was after the previous batch, so the order of readings inside a batch never
// matters. With grace G per definition, a window [s, e):
//   - collects readings while W < e;
//   - is emitted ON TIME once W >= e (revision 0, at the end of the batch or idle
//     call that moved W there);
//   - keeps its state while W < e + G: a reading arriving then still updates it
//     (and counts in late_count), and the window is emitted again at the end of that
//     batch as a REVISION (revision 1, 2, …, flag REVISION) carrying the full,
//     corrected values;
//   - is freed once W >= e + G. A reading for it after that is LATE for that
//     definition, with lateness = W − (e + G).
// Finish() emits every window not emitted yet and every pending revision, then
// frees everything. So users see an early result when the window ends and
// corrections within grace; the last row of a key is its final value. For a
// sliding definition a reading is late only when even the last window containing
// it is past grace; earlier windows already past grace do not take it.
//
// Late routing and the ledger. For each definition a reading belongs to (by metric
// filter) and is late for, one LateRecord goes to batch.late (the reading with
// QcFlag::kLate, the definition name, the lateness and W). The reading itself is:
//   - LATE in the ledger (moved out of batch.readings; counted once) when it is late
//     for EVERY definition it belongs to;
//   - ACCEPTED otherwise (kept in batch.readings, without kLate): it counted in at
//     least one window. Its LateRecords for the definitions it missed are still
//     produced, so a late sink sees every miss; the ledger counts the reading once.
// A reading that no definition takes, and every reading when no definition is
// configured, is accepted. Readings with a non-finite value are accepted and passed
// on but not aggregated (validation quarantines them before this stage). Nothing is
// dropped.
//
// Late policy. With `late_policy: next_window` a reading past grace for a definition
// is not late for it: it is added to the NEXT OPEN window of its key — the earliest
// window with end + grace > W (for sessions: the key's latest session still held) —
// counted in that window's late_count, and the reading passed on carries
// QcFlag::kLateArrival; the ledger counts it accepted. (A session definition without
// a held session for the key still routes the reading to the late sink.) The default
// `late_policy: late_sink` is the rule above.
//
// Sessions. A session of a key is [first, last + gap) over its readings' event times.
// It is emitted when W >= its end, kept until W >= end + grace, and within that time
// a reading within `gap` of it extends it (a revision). A reading that bridges two
// held sessions merges them into one whose row has the start of the merged session,
// is flagged REVISION and numbered one above the highest revision merged. A session
// row is identified by (window, group, metric, start); when a revision moves the
// start earlier or merges sessions, the new row SUPERSEDES every earlier row of the
// same (window, group, metric) whose [start, end) lies within it — consumers replace
// those rows. A reading whose own session [t, t + gap) would end before W − grace and
// that joins no held session is late, with lateness W − (t + gap + grace).
//
// Quality flags (WindowFlag) on every row, besides BELOW_MIN_SAMPLES and REVISION:
//   SPARSE           count / expected < 0.7, expected = (end − start) /
//                    expected_interval × distinct sensors; on a resampled window
//                    count is what the sensors sent, not the filled grid points
//                    (the same holds for INSUFFICIENT_CAPTURE)
//   RANGE_VIOLATION  p95 (max when p95 is not configured) outside the metric's
//                    physical bounds (ingest/metrics.h)
//   LATENCY_DEGRADED late_count / count > 0.2
//   LOW_COVERAGE     fewer than 2 distinct sensors (group_by other than device)
//   GAP_BEFORE       more than 2 windows (steps) missing since the previous window
//                    of the same key (tumbling and sliding)
//   CENTROID_JUMP    centroid moved more than 0.5° in latitude or longitude since the
//                    previous window of the same key (group_by other than device)
//   INSUFFICIENT_CAPTURE  count / expected below `data_capture` (EU rule, 0.75):
//                    the row keeps its values but is not valid
//   EXCEEDANCE       valid and mean > `exceedance_threshold`; exceedance_count is the
//                    key's exceeding windows in the calendar period (UTC) up to this one
// "expected" is per sensor: its interval from SetExpectedInterval (the device
// registry) when known, else expected_interval.
// "Previous window" is the latest window of the key with an earlier start emitted
// before this row (among the key's last 4 windows); those two flags therefore
// depend on what was emitted before, not only on the window's own readings.
//
// NowCast and AQI (alert/aqi.h) are computed on 1 h tumbling windows: each key keeps
// a ring of its last 12 hourly means (an hour counts as present when its window had
// at least min_samples readings); the row's nowcast is the PM NowCast of the hours
// ending with this one, truncated (0.1 µg/m³ for pm25, 1 for pm10), and aqi its
// AQI; both NaN for other metrics. With grace shorter than the window the previous
// hours are final when an hour is first emitted, so the NowCast is deterministic.
//
// Presets (`preset:`), from seed 001's tuning table; explicit keys override them.
// The metric filter is set too. The same table (WindowPresets()) is generated into
// docs/CONFIGURATION.md.
// clang-format off
//   preset                   type      size  step  gap   grace  min  aggregates        metrics
//   pm25_regulatory          tumbling  1h    —     —     10m    45   mean nowcast aqi  pm25
//   pm25_realtime            sliding   15m   5m    —     3m     8    p95 median        pm25
//   temp_regulatory          tumbling  1h    —     —     5m     50   mean std          temperature
//   temp_realtime            sliding   5m    1m    —     1m     3    mean std          temperature
//   soil_regulatory          tumbling  30m   —     —     8m     12   trimmed_mean      soil_moisture
//   soil_realtime            sliding   30m   10m   —     8m     12   trimmed_mean      soil_moisture
//   soil_burst               session   —     —     12m   15m    3    median            soil_moisture
//   flow_regulatory          tumbling  15m   —     —     5m     10   mean max          flow
//   flow_realtime            sliding   15m   5m    —     5m     10   mean max          flow
//   do_regulatory            tumbling  30m   —     —     5m     20   mean min          dissolved_oxygen
//   conductivity_regulatory  tumbling  1h    —     —     10m    40   median            conductivity
// clang-format on
// The table gives no realtime row for temperature nor a tumbling soil row; those take
// the seed's window shapes (5m/1m, 30m) with the grace of one step / the soil row's
// grace, and the seed's default min_samples of 3 for temp_realtime.
//
// Determinism: the final row of a window is identical for the same readings in any
// arrival order within grace (aggregates.h explains the exact sums). The rows of one
// call come as: revisions, then windows closing on time, each in (window end,
// definition, start) order and, within a window, by metric and group name; session
// rows follow those of tumbling and sliding windows in each part, in (end,
// definition, key, start) order. Order statistics are exact (aggregates.h), so they
// are order independent too. What depends on arrival order by its nature:
// late_count and LATENCY_DEGRADED, GAP_BEFORE and CENTROID_JUMP (other windows), and
// the NowCast when grace is not shorter than the window.
//
// Memory shedding. While the flag given to SetMemoryShed is set (the process is above
// the memory ceiling's shed level, stream/memory_guard.h), a reading that would open a key
// — (definition, group, metric) — that the stage has never held for some definition it
// belongs to is refused before any definition takes it: it goes to batch.quarantine
// with reason `memory_shed` (raw: the reading as a long-shape JSON object) and is
// counted quarantined in the ledger. Readings of known keys are processed as usual;
// the watermark still observes refused readings, so due windows close and free memory.
// A log line reports refusals when shedding starts and every 10 s while it lasts.
//
// State: open windows live in slices, one per (definition, window start), each a
// hash map from (group, metric) to a compact accumulator (for pane definitions, a
// window holds its merged accumulators only from its emission until it is freed;
// before, its state is the panes it shares with the overlapping windows). An ordered timeline of
// slices by their next due time (end, then end + grace) finds what to emit or free
// as the watermark advances without scanning open windows. Sessions are held per
// (definition, key) in a map by start, with their own timeline. Per key, a small
// history (its last 4 window starts and centroids, 12 hourly means when the NowCast
// is configured) lives as long as the operator: memory grows with the keys seen.
//
// Threading: one operator per worker thread; no call is concurrent (operator.h).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "core/config.h"
#include "core/pipeline_config.h"
#include "stream/aggregates.h"
#include "stream/operator.h"
#include "stream/watermark.h"

namespace tributary {

/// The options of one `windows[]` entry, for docs and validation.
const SectionSpec& WindowSectionSpec();

enum class WindowType { kTumbling, kSliding, kSession };
enum class GroupBy { kDevice, kZone, kH3, kAll, kS2 };
enum class LatePolicy { kLateSink, kNextWindow };
enum class ExceedancePeriod { kYear, kMonth, kAll };

/// One built-in preset (seed 001's tuning table); see the file comment.
struct WindowPreset {
  std::string_view name;
  std::string_view type;  ///< "tumbling", "sliding" or "session"
  std::string_view size;  ///< durations as config text; "" when not applicable
  std::string_view step;
  std::string_view gap;
  std::string_view grace;
  int64_t min_samples;
  std::vector<std::string> aggregates;
  std::vector<std::string> metrics;
  double data_capture;          ///< EU data-capture fraction; 0: off
  double exceedance_threshold;  ///< NaN: no exceedance count
};

/// The built-in presets, in documentation order.
const std::vector<WindowPreset>& WindowPresets();

/// One window definition, resolved from config. Immutable once built.
struct WindowDefinition {
  std::string name;
  Symbol name_symbol;
  WindowType type = WindowType::kTumbling;
  DurationUs size = 0;  ///< tumbling/sliding length; == gap for sessions
  DurationUs step = 0;  ///< distance between window starts; == size when tumbling
  DurationUs gap = 0;   ///< session inactivity gap (sessions only)
  DurationUs offset = 0;
  DurationUs grace = 0;
  /// Sliding only: pane length of the two-tier pre-aggregation (divides size and
  /// step); 0 when readings go into every window directly.
  DurationUs pane = 0;
  ResampleMode resample = ResampleMode::kNone;      ///< grid before aggregating
  DurationUs resample_interval = kMicrosPerMinute;  ///< the grid's spacing
  GroupBy group_by = GroupBy::kDevice;
  Symbol group_by_symbol;       ///< "device", "zone", "zone:<layer>", "h3", "s2:<level>", "all"
  size_t zone_layer = 0;        ///< kZone: index into zones.layers (0: reading.zone)
  int s2_level = 0;             ///< kS2: the cell level (0-30)
  std::vector<Symbol> metrics;  ///< empty: every metric
  AggregateSet aggregates;
  Symbol aggregation_method;
  int64_t min_samples = 1;
  LatePolicy late_policy = LatePolicy::kLateSink;
  DurationUs expected_interval = 60 * kMicrosPerSecond;  ///< per sensor, for SPARSE
  double data_capture = 0;            ///< EU rule: valid when count ≥ this × expected
  double exceedance_threshold = NAN;  ///< mean above it exceeds; NaN: not counted
  ExceedancePeriod exceedance_period = ExceedancePeriod::kYear;
  std::string preset;  ///< "" when none

  /// Whether readings of `metric` belong to this definition.
  bool Accepts(Symbol metric) const;
  /// Start of the latest window that contains event time `t`.
  TimeUs LastStart(TimeUs t) const { return FloorDiv(t - offset, step) * step + offset; }
};

/// Read one `windows[]` entry; `processing` gives the default grace, `zone_layers` the
/// names of `zones.layers` in order (for `group_by: zone:<layer>`).
Result<WindowDefinition> ParseWindowDefinition(const OptionReader& options,
                                               const ProcessingOptions& processing,
                                               const std::vector<std::string>& zone_layers = {});
/// Read every window definition of a pipeline (names must be unique).
Result<std::vector<WindowDefinition>> ParseWindowDefinitions(const PipelineConfig& config);

/// Size of the operator's state, for metrics and benchmarks.
struct WindowStats {
  size_t open_windows = 0;  ///< (definition, group, metric, start) keys held
  size_t open_slices = 0;   ///< (definition, start) slices held
  size_t open_panes = 0;    ///< (definition, group, metric, pane start) partials held
  size_t state_bytes = 0;   ///< estimated heap bytes of all window state
  size_t known_keys = 0;    ///< (definition, group, metric) keys ever held
  uint64_t shed = 0;        ///< readings refused (memory_shed) since the start
};

/// The window stage (see the file comment for its rules).
class WindowOperator : public Operator {
 public:
  /// Wall clock, for OnIdle's quiet time and emitted_at; tests pass a fake one.
  using Clock = std::function<TimeUs()>;
  /// A device's reporting interval for a metric (e.g. from the device registry), for
  /// SPARSE and the data-capture rule; 0 when unknown (the definition's
  /// expected_interval applies). Called when a window is emitted, on this thread.
  using ExpectedInterval = std::function<DurationUs(Symbol device, Symbol metric)>;

  WindowOperator(std::vector<WindowDefinition> definitions, const ProcessingOptions& processing,
                 Clock clock = NowUs);
  ~WindowOperator() override;
  WindowOperator(const WindowOperator&) = delete;
  WindowOperator& operator=(const WindowOperator&) = delete;

  std::string_view name() const override { return "window"; }
  Status Open(RunContext& ctx) override;
  /// Assign readings, route late ones, advance the watermark, emit due windows.
  Status Process(Batch& batch) override;
  /// Advance processing time by the wall time elapsed since the last batch with
  /// readings, so idle partitions stop holding the watermark; emit what is due.
  Status OnIdle(TimeUs wall_now, Batch& out) override;
  /// Emit all windows still open and pending revisions; free all state.
  Status Finish(Batch& out) override;
  /// Checkpoints: every slice, pane, session and key history and the watermark
  /// tracker, exactly (accumulators keep their exact partial sums and kept values).
  Status Snapshot(CheckpointWriter& out) const override;
  Status Restore(CheckpointReader& in) override;

  /// Use `lookup` for each sensor's expected reporting interval (call before Open).
  void SetExpectedInterval(ExpectedInterval lookup) { expected_interval_ = std::move(lookup); }
  /// Refuse new window keys while `*flag` is set (the memory guard's; not owned, must
  /// outlive the operator's use; null: never). Call before the first Process.
  void SetMemoryShed(const std::atomic<bool>* flag) { memory_shed_ = flag; }

  const std::vector<WindowDefinition>& definitions() const { return definitions_; }
  TimeUs watermark() const { return tracker_.watermark(); }
  const WatermarkTracker& tracker() const { return tracker_; }
  WindowStats Stats() const;

 private:
  struct Slice;      // one (definition, window start) and its cells; defined in window.cc
  struct Sessions;   // session windows of every session definition; in window.cc
  struct Histories;  // per (definition, key): previous window, hourly means
  struct Panes;      // pre-aggregated panes of sliding definitions; in window.cc
  struct KnownKeys;  // per definition: every (group, metric) key ever held; in window.cc
  using SliceId = std::pair<uint16_t, TimeUs>;       // (definition, window start)
  using Due = std::tuple<TimeUs, uint16_t, TimeUs>;  // (due time, definition, start)
  struct DirtyRef;

  // Add `r` to the windows of definition `d`; returns the lateness when the
  // reading is late for it, or -1 when at least one window took it.
  // `late_arrival` is set when the late policy took the reading into a next window.
  DurationUs Assign(uint16_t d, const Reading& r, TimeUs watermark, bool& late_arrival);
  DurationUs AssignSession(uint16_t d, const Reading& r, TimeUs watermark, bool& late_arrival);
  // `watermark`: the one readings are judged against (a new slice of a pane
  // definition merges its panes at emission only when it was still open).
  Slice& GetSlice(uint16_t d, TimeUs start, TimeUs watermark);
  // Add `r` to its pane (pane definitions); creates the pane's open windows.
  void AddToPane(uint16_t d, const Reading& r, TimeUs watermark);
  // Emit pending revisions, then every slice due at the current watermark.
  void EmitDue(std::vector<WindowResult>& out);
  void EmitRevisions(std::vector<WindowResult>& out);
  void EmitSlice(Slice& slice, std::vector<WindowResult>& out);
  void FreeSlice(const SliceId& id);
  void CountEmitted(size_t n);
  // Memory shedding: whether `r` would open a key some definition never held, and
  // the quarantine record that refuses it.
  bool OpensNewKey(const Reading& r) const;
  void Shed(const Reading& r, Batch& batch);

  const std::vector<WindowDefinition> definitions_;
  Clock clock_;
  Ledger* ledger_ = nullptr;
  WatermarkTracker tracker_;
  TimeUs wall_at_last_input_ = kMinTime;
  std::map<SliceId, std::unique_ptr<Slice>> slices_;
  std::set<Due> timeline_;
  std::vector<Slice*> last_slice_;  // per definition: the slice used last
  std::vector<size_t> size_hint_;   // per definition: keys in the last freed slice
  std::vector<DirtyRef> dirty_;     // windows of emitted slices updated this batch
  std::unique_ptr<Sessions> sessions_;
  std::unique_ptr<Histories> histories_;
  std::unique_ptr<Panes> panes_;
  std::unique_ptr<KnownKeys> known_;
  ExpectedInterval expected_interval_;              // empty: every sensor at expected_interval
  const std::atomic<bool>* memory_shed_ = nullptr;  // SetMemoryShed
  uint64_t shed_total_ = 0;
  uint64_t shed_since_log_ = 0;
  TimeUs last_shed_log_ = kMinTime;
};

/// Build the window stage from the pipeline's `windows` list and `processing` options.
Result<std::unique_ptr<Operator>> MakeWindowOperator(const PipelineConfig& config);
/// The same with an explicit wall clock (tests, simulations).
Result<std::unique_ptr<WindowOperator>> MakeWindowOperator(const PipelineConfig& config,
                                                           WindowOperator::Clock clock);

}  // namespace tributary
