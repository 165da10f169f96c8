// Alert rules: what makes an alert fire, stay firing and resolve.
//
// Rules come from `alerts.rules[]` (AlertRuleSectionSpec). Each rule has a kind:
//   reading_threshold  every accepted reading of `metric` (optionally only some devices
//                      or zones) is compared with `level`; key = device
//   window_threshold   one aggregate (mean, p95, max, nowcast, aqi) of the results of
//                      window `window` for `metric`; key = the window's group
//   aqi_category       the AQI of window results: firing while the category is at or
//                      above `min_category`; each category change while firing is a
//                      re-notify; key = group
//   rate_of_change     (value − previous value) / (event-time gap) × `per`, per device
//                      and metric, compared with `level`; key = device
//   stale              no reading of a device (of `metric`, or of any metric) for more
//                      than `stale_factor` × its expected interval; key = device
//   geofence           a device entered a zone of a zone layer (`layer`, only `zones`
//                      when given); resolved when it leaves it. With `fire_on: leave`
//                      the other way round (a tracker leaving its permitted area).
//                      key = "device@zone"
//   proximity          a reading of `metric` beyond `level` within `radius_m` (geodesic)
//                      of a point (`lat`, `lon`, named `place`: a stack, a school);
//                      resolved by the device's next reading of the metric that is back
//                      within `clear` or farther than the radius. key = "device@place"
// Both are evaluated by the spatial module's GeofenceEngine (spatial/geofence.h) on the
// enriched readings; its GeofenceEvents become alerts here (OnGeofence).
//
// Hysteresis. `op` > or >= fires when value op level, and resolves only once the value
// falls to `clear` or below (< for >=); < and <= mirror that. Without `clear` the clear
// level is the level itself. A firing alert never fires again: one alert per (rule,
// key) at a time (de-duplication); while it fires, a value still beyond the clear
// level re-notifies once `renotify` of event time has passed since the last
// notification (0: never).
//
// Clocks. Everything is evaluated in EVENT TIME, so the same input gives the same
// alerts whatever the wall clock: readings at their event time, window results at
// their window end, geofence events at theirs. Stale sensors are judged against the
// operator WATERMARK (batch.watermark): a device is stale when W − (its latest event
// time) > stale_factor × expected interval. The watermark reaches the alert operator
// with every batch and with every idle tick (when the input is silent it follows
// processing time, stream/watermark.h), so a dead network is reported too. The expected
// interval is `expected_interval` of the rule unless a lookup is installed
// (SetExpectedIntervalLookup, for the device registry) and knows the device.
//
// Determinism: events come in input order — for one batch, readings (in batch order),
// then window results (in batch order), then stale checks sorted by rule and key.
// Window revisions re-evaluate a key only when their end is not older than the last
// result evaluated for it.
//
// Threading: an AlertEngine belongs to one thread (the operator's).
#pragma once

#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/config.h"
#include "core/model.h"
#include "core/pipeline_config.h"
#include "spatial/geofence.h"

namespace tributary {

/// The `alerts` section, `alerts.rules[]` entries, for docs and validation.
const SectionSpec& AlertsSectionSpec();
const SectionSpec& AlertRuleSectionSpec();

enum class AlertRuleKind {
  kReadingThreshold,
  kWindowThreshold,
  kAqiCategory,
  kRateOfChange,
  kStale,
  kGeofence,
  kProximity
};
enum class CompareOp { kGt, kGe, kLt, kLe };
enum class WindowAggregate { kMean, kP95, kMax, kNowcast, kAqi };

/// One rule, resolved from config. Immutable once built.
struct AlertRule {
  std::string name;
  Symbol name_symbol;
  AlertRuleKind kind = AlertRuleKind::kReadingThreshold;
  Symbol kind_symbol;
  Symbol metric;  ///< empty: any metric (stale only)
  Symbol window;  ///< window rules: the window definition name
  WindowAggregate aggregate = WindowAggregate::kMean;
  CompareOp op = CompareOp::kGt;
  double level = NAN;
  double clear = NAN;           ///< resolved clear level (== level without hysteresis)
  std::vector<Symbol> devices;  ///< empty: every device
  std::vector<Symbol> zones;    ///< empty: every zone
  Symbol severity;
  DurationUs renotify = 0;  ///< 0: never re-notify
  DurationUs per = 0;       ///< rate_of_change: the rate's time unit
  DurationUs expected_interval = 0;
  double stale_factor = 3;
  int min_category = 2;               ///< aqi_category: 0 Good … 5 Hazardous
  bool fire_on_leave = false;         ///< geofence: fire on leaving, resolve on entering
  GeofenceRule geofence;              ///< geofence and proximity: what the engine checks
  std::vector<std::string> channels;  ///< delivery channels; empty: all
  std::string message;                ///< optional text prefix for people

  /// Whether `value` is beyond the level (fires) or still beyond the clear level.
  bool Fires(double value) const;
  bool StillBeyondClear(double value) const;
};

/// Read one `alerts.rules[]` entry; `windows` names the configured windows (checked),
/// `zone_layers` the `zones.layers` in order (geofence rules).
Result<AlertRule> ParseAlertRule(const OptionReader& options,
                                 const std::vector<std::string>& windows,
                                 const std::vector<std::string>& zone_layers = {});
/// Read every rule of the `alerts` section (names unique).
Result<std::vector<AlertRule>> ParseAlertRules(const PipelineConfig& config);

/// The AQI category index of an AQI value: 0 Good … 5 Hazardous; -1 for NaN.
int AqiCategoryIndex(double aqi);

/// Evaluates rules against the stream and keeps the life of every open alert.
class AlertEngine {
 public:
  explicit AlertEngine(std::vector<AlertRule> rules);

  /// Give the expected interval of a device (0 when unknown: the rule's own is used).
  using IntervalLookup = std::function<DurationUs(Symbol device)>;
  void SetExpectedIntervalLookup(IntervalLookup lookup) { interval_lookup_ = std::move(lookup); }

  /// Evaluate reading_threshold, rate_of_change, stale-recovery, geofence and proximity
  /// rules.
  void OnReading(const Reading& r, std::vector<AlertEvent>& out);
  /// Evaluate window_threshold and aqi_category rules.
  void OnWindow(const WindowResult& w, std::vector<AlertEvent>& out);
  /// Turn one event of the geofence engine (of the rule named e.rule) into alerts.
  void OnGeofence(const GeofenceEvent& e, std::vector<AlertEvent>& out);
  /// Check stale rules against the watermark `w` (no-op when it did not move).
  void OnWatermark(TimeUs w, std::vector<AlertEvent>& out);

  const std::vector<AlertRule>& rules() const { return rules_; }
  /// Alerts firing now.
  size_t firing() const;

  /// The life of every key of every rule, the geofence state and the last watermark
  /// (stream/checkpoint.h).
  void Snapshot(CheckpointWriter& out) const;
  Status Restore(CheckpointReader& in);

 private:
  struct KeyState {
    bool firing = false;
    TimeUs fired_at = 0;
    TimeUs last_notified = 0;
    TimeUs last_time = kMinTime;  ///< event time of the last value evaluated
    double last_value = NAN;
    int category = -1;
    Symbol key;
    Symbol metric;
    Symbol device, zone;  ///< geofence and proximity keys
  };
  using StateMap = std::unordered_map<uint64_t, KeyState>;

  static uint64_t Pack(Symbol a, Symbol b) { return (static_cast<uint64_t>(a.id) << 32) | b.id; }
  bool Matches(const AlertRule& rule, const Reading& r) const;
  // Threshold life cycle shared by the threshold-like kinds.
  void Threshold(size_t rule_index, KeyState& s, double value, TimeUs t, TimeUs arrival,
                 std::vector<AlertEvent>& out);
  AlertEvent Make(const AlertRule& rule, const KeyState& s, AlertState state, TimeUs t,
                  double value, double level, TimeUs arrival) const;

  std::vector<AlertRule> rules_;
  std::vector<StateMap> state_;                                // per rule
  std::unordered_map<Symbol, std::vector<size_t>> by_metric_;  // reading rules by metric
  std::vector<size_t> any_metric_;                             // reading rules on any metric
  std::vector<size_t> window_rules_, stale_rules_;
  std::unordered_map<Symbol, size_t> geofence_rules_;  // geofence/proximity rules by name
  GeofenceEngine geofences_;
  std::vector<GeofenceEvent> geofence_events_;  // reused per reading
  IntervalLookup interval_lookup_;
  TimeUs last_watermark_ = kMinTime;
};

}  // namespace tributary

namespace tributary {

/// The JSON object of one alert event, as channels, the API and live events carry it:
/// {"id","rule","kind","key","metric","severity","state","fired_at","event_time",
///  "value","level","message","emitted_at"}; times are ISO-8601 UTC. `id` is
/// "rule|key|fired_at_us", the same for every event of one alert life.
std::string AlertEventJson(const AlertEvent& e);
/// The alert life id "rule|key|fired_at_us".
std::string AlertId(const AlertEvent& e);

}  // namespace tributary
