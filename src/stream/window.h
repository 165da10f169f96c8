// The event-time window stage: turns readings into windowed statistics per
// (window definition, group, metric, window start), and routes late readings.
//
// Window definitions come from the pipeline's `windows:` list (WindowSectionSpec).
// A definition assigns a reading at event time t to windows [start, start + size):
//   tumbling: start = floor((t − offset) / size)·size + offset   (one window)
//   sliding:  every start = k·step + offset with start <= t < start + size
//             (size / step windows, rounded up)
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
// Determinism: the final row of a window is identical for the same readings in any
// arrival order within grace (aggregates.h explains the exact sums). The rows of one
// call come as: revisions, then windows closing on time, each in (window end,
// definition, start) order and, within a window, by metric and group name.
//
// State: open windows live in slices, one per (definition, window start), each a
// hash map from (group, metric) to a compact accumulator. An ordered timeline of
// slices by their next due time (end, then end + grace) finds what to emit or free
// as the watermark advances without scanning open windows. Later window types plug
// in as other assigners: sessions keep per-key slices keyed by their last event.
//
// Threading: one operator per worker thread; no call is concurrent (operator.h).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
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
enum class GroupBy { kDevice, kZone, kH3, kAll };

/// One window definition, resolved from config. Immutable once built.
struct WindowDefinition {
  std::string name;
  Symbol name_symbol;
  WindowType type = WindowType::kTumbling;
  DurationUs size = 0;
  DurationUs step = 0;  ///< distance between window starts; == size when tumbling
  DurationUs offset = 0;
  DurationUs grace = 0;
  GroupBy group_by = GroupBy::kDevice;
  Symbol group_by_symbol;       ///< "device", "zone", "h3" or "all"
  std::vector<Symbol> metrics;  ///< empty: every metric
  AggregateSet aggregates;
  Symbol aggregation_method;
  int64_t min_samples = 1;

  /// Whether readings of `metric` belong to this definition.
  bool Accepts(Symbol metric) const;
  /// Start of the latest window that contains event time `t`.
  TimeUs LastStart(TimeUs t) const { return FloorDiv(t - offset, step) * step + offset; }
};

/// Read one `windows[]` entry; `processing` gives the default grace.
Result<WindowDefinition> ParseWindowDefinition(const OptionReader& options,
                                               const ProcessingOptions& processing);
/// Read every window definition of a pipeline (names must be unique).
Result<std::vector<WindowDefinition>> ParseWindowDefinitions(const PipelineConfig& config);

/// Size of the operator's state, for metrics and benchmarks.
struct WindowStats {
  size_t open_windows = 0;  ///< (definition, group, metric, start) keys held
  size_t open_slices = 0;   ///< (definition, start) slices held
  size_t state_bytes = 0;   ///< estimated heap bytes of all window state
};

/// The window stage (see the file comment for its rules).
class WindowOperator : public Operator {
 public:
  /// Wall clock, for OnIdle's quiet time and emitted_at; tests pass a fake one.
  using Clock = std::function<TimeUs()>;

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

  const std::vector<WindowDefinition>& definitions() const { return definitions_; }
  TimeUs watermark() const { return tracker_.watermark(); }
  const WatermarkTracker& tracker() const { return tracker_; }
  WindowStats Stats() const;

 private:
  struct Slice;  // one (definition, window start) and its cells; defined in window.cc
  using SliceId = std::pair<uint16_t, TimeUs>;       // (definition, window start)
  using Due = std::tuple<TimeUs, uint16_t, TimeUs>;  // (due time, definition, start)
  struct DirtyRef;

  // Add `r` to the windows of definition `d`; returns the lateness when the
  // reading is late for it, or -1 when at least one window took it.
  DurationUs Assign(uint16_t d, const Reading& r, TimeUs watermark);
  Slice& GetSlice(uint16_t d, TimeUs start);
  // Emit pending revisions, then every slice due at the current watermark.
  void EmitDue(std::vector<WindowResult>& out);
  void EmitRevisions(std::vector<WindowResult>& out);
  void EmitSlice(Slice& slice, std::vector<WindowResult>& out);
  void FreeSlice(const SliceId& id);
  void CountEmitted(size_t n);

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
};

/// Build the window stage from the pipeline's `windows` list and `processing` options.
Result<std::unique_ptr<Operator>> MakeWindowOperator(const PipelineConfig& config);
/// The same with an explicit wall clock (tests, simulations).
Result<std::unique_ptr<WindowOperator>> MakeWindowOperator(const PipelineConfig& config,
                                                           WindowOperator::Clock clock);

}  // namespace tributary
