// Pattern rules across sensors (complex event processing): sequences and
// co-occurrences of conditions at neighbouring devices within a time window.
//
// Rules come from `alerts.patterns[]`. Each has `conditions`, each about one metric of
// one device:
//   rising / falling  the value changed by at least `min_change` over the trailing
//                     `over` (readings), or since the device's previous window result
//                     (with `source: <window>`, on the window's per-device means);
//   above / below     the value (or window mean) is beyond `level`.
// A condition is edge-triggered: it produces an *event* (time, device, position) when it
// becomes true for a device, not again until it was false in between.
//
// Kinds:
//   co_occurrence  every condition has an event within `within` of the others, each at a
//                  device within `radius_m` of the device of the event that completed the
//                  match ("temperature rising while pressure falls at neighbouring
//                  stations within 30 minutes"). key: the devices, sorted, joined by '+'.
//   sequence       the conditions happen in order, each at a different device within
//                  `radius_m` of the one before, the whole chain within `within`. One
//                  condition with `count: 3` is that condition at three devices in a row.
//                  With `downwind: true` each step must lie downwind of the previous one:
//                  the bearing from one device to the next within `direction_tolerance`
//                  of the direction the wind blows to (the `wind_metric`, meteorological
//                  "from" degrees, at the wind-reporting device nearest the step's start,
//                  its latest value). key: the devices in order, joined by '>'.
//
// A match fires an alert (kind `pattern`, rule the pattern's name, value the number of
// devices, message naming the devices); it stays firing while new matches of the same
// key arrive and resolves once the watermark passes the last match by `hold`.
// Everything is evaluated in event time in input order, so the same input gives the same
// alerts. The pattern operator runs after the window stage and before the alert
// operator, which hands its events to the sinks and channels.
//
// Threading: one instance per operator chain; not thread-safe.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/config.h"
#include "core/model.h"
#include "core/pipeline_config.h"
#include "stream/operator.h"

namespace tributary {

/// `alerts.patterns[]` and `alerts.patterns[].conditions[]`, for docs and validation.
const SectionSpec& PatternRuleSectionSpec();
const SectionSpec& PatternConditionSectionSpec();

enum class PatternKind { kCoOccurrence, kSequence };
enum class PatternTrend { kRising, kFalling, kAbove, kBelow };

struct PatternCondition {
  Symbol metric;
  PatternTrend trend = PatternTrend::kRising;
  double min_change = 0;
  double level = NAN;
  DurationUs over = 30 * kMicrosPerMinute;
};

/// One pattern rule, resolved from config. Immutable once built.
struct PatternRule {
  std::string name;
  Symbol name_symbol;
  PatternKind kind = PatternKind::kCoOccurrence;
  std::vector<PatternCondition> conditions;
  std::vector<size_t> steps;  ///< sequence: condition index per step, in order
  Symbol source;              ///< window name; empty: readings
  DurationUs within = 30 * kMicrosPerMinute;
  double radius_m = 5000;
  bool downwind = false;
  Symbol wind_metric;
  double direction_tolerance = 45;
  DurationUs hold = 0;
  Symbol severity;
  std::vector<std::string> channels;
  std::string message;
};

/// Read every `alerts.patterns[]` entry (names unique, windows checked).
Result<std::vector<PatternRule>> ParsePatternRules(const PipelineConfig& config);

/// Initial bearing from point 1 to point 2, degrees clockwise from north in [0, 360).
double BearingDeg(double lat1, double lon1, double lat2, double lon2);

class PatternOperator final : public Operator {
 public:
  explicit PatternOperator(std::vector<PatternRule> rules);
  /// Null when there are no `alerts.patterns`.
  static Result<std::unique_ptr<PatternOperator>> Make(const PipelineConfig& config);

  std::string_view name() const override { return "patterns"; }
  Status Open(RunContext& ctx) override;
  Status Process(Batch& batch) override;
  Status Finish(Batch& out) override;
  Status Snapshot(CheckpointWriter& out) const override;
  Status Restore(CheckpointReader& in) override;

  const std::vector<PatternRule>& rules() const { return rules_; }
  /// Matches found so far (each firing or extending an alert).
  uint64_t matches() const { return matches_; }

 private:
  struct Position {
    double lat = NAN, lon = NAN;
  };
  struct Event {
    TimeUs time = 0;
    Symbol device;
    uint32_t condition = 0;
    double lat = NAN, lon = NAN;
  };
  struct Track {                                   // one (condition, device)
    std::deque<std::pair<TimeUs, double>> recent;  // readings within `over`
    double last_mean = NAN;                        // window source: previous mean
    bool active = false;
  };
  struct Firing {
    TimeUs fired_at = 0, last_match = 0;
    Symbol metric;
  };
  struct RuleState {
    std::unordered_map<uint64_t, Track> tracks;  // condition << 32 | device
    std::deque<Event> events;                    // within `within` of the latest
    std::map<std::string, Firing> firing;        // by key
  };
  struct Wind {
    double lat = NAN, lon = NAN, from_deg = NAN;
    TimeUs time = 0;
  };

  void Observe(size_t rule, uint32_t cond, Symbol device, TimeUs t, double value, double lat,
               double lon, bool window_value, TimeUs arrival, std::vector<AlertEvent>& out);
  void Match(size_t rule, const Event& e, TimeUs arrival, std::vector<AlertEvent>& out);
  bool Chain(const PatternRule& r, const RuleState& s, size_t step, const Event& next,
             TimeUs earliest, std::vector<const Event*>& chain) const;
  bool Downwind(const PatternRule& r, const Event& from, const Event& to) const;
  void Fire(size_t rule, const std::string& key, const std::vector<const Event*>& events, TimeUs t,
            TimeUs arrival, std::vector<AlertEvent>& out);

  std::vector<PatternRule> rules_;
  std::vector<RuleState> state_;
  // Per metric: (rule, condition) pairs watching it.
  std::unordered_map<uint32_t, std::vector<std::pair<size_t, uint32_t>>> by_metric_;
  std::unordered_map<uint32_t, std::vector<size_t>> by_source_;  // window name → rules
  std::unordered_map<uint32_t, Wind> wind_;                      // by device, the latest
  std::unordered_map<uint32_t, bool> wind_metric_;               // metric ids used for wind
  Symbol kind_, device_group_;
  uint64_t matches_ = 0;
};

}  // namespace tributary
