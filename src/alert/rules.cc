#include "alert/rules.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "alert/aqi.h"
#include "core/json_writer.h"
#include "core/registry.h"
#include "spatial/zones.h"
#include "stream/checkpoint.h"

namespace tributary {

const SectionSpec& AlertsSectionSpec() {
  static const SectionSpec spec{
      "alerts",
      "Alert rules and the channels that deliver their alerts. Rules are evaluated in event "
      "time by an operator after the window stage; every alert event (firing, renotify, "
      "resolved) reaches every sink (the sqlite sink keeps each alert's life in its `alerts` "
      "table), the live events of the HTTP API (`event: alert`) and the channels.",
      {
          {"rules", OptionType::kSection, "", "List of rules (`alerts.rules[]`)."},
          {"patterns", OptionType::kSection, "",
           "List of pattern rules across sensors (`alerts.patterns[]`)."},
          {"channels", OptionType::kSection, "",
           "List of delivery channels (`alerts.channels[]`)."},
          {"summary", OptionType::kSection, "",
           "Daily summary emails and their subscribers (`alerts.summary`)."},
          {"queue_file", OptionType::kString, "",
           "SQLite file of the channels' persistent retry queues. Empty: "
           "`<data_dir>/alert_queue.db`."},
          {"shutdown_wait", OptionType::kDuration, "5s",
           "At the end of a run, how long channels may go on delivering; what is left stays "
           "queued for the next run.",
           "0s..10m"},
      }};
  return spec;
}

const SectionSpec& AlertRuleSectionSpec() {
  static const SectionSpec spec{
      "alerts.rules[]",
      "One alert rule. An alert fires once per (rule, key) — the key is the device, the "
      "window group, or device@zone — and resolves when the value is back within the clear "
      "level (hysteresis). All times are event time; stale sensors are judged against the "
      "watermark, and a stale alert fires at the event time the sensor became stale (its "
      "last reading + `stale_factor` × interval), so its id does not depend on batching.",
      {
          {"name", OptionType::kString, "", "Unique rule name.", {}, true},
          {"kind", OptionType::kEnum, "",
           "`reading_threshold` (each reading), `window_threshold` (an aggregate of window "
           "results), `aqi_category` (AQI category of window results), `rate_of_change` "
           "(change per `per` between consecutive readings of a device), `stale` (no data "
           "for `stale_factor` × expected interval), `geofence` (a device entered or left a "
           "zone of a zone layer), `proximity` (a reading beyond `level` within `radius_m` of "
           "a point).",
           "reading_threshold|window_threshold|aqi_category|rate_of_change|stale|geofence|"
           "proximity",
           true},
          {"metric", OptionType::kString, "",
           "Canonical metric (`pm25`, `stage`, ...). Required except for `stale` (any "
           "metric) and `geofence` (every reading)."},
          {"window", OptionType::kString, "",
           "Window definition name (`window_threshold`, `aqi_category`)."},
          {"aggregate", OptionType::kEnum, "mean",
           "Aggregate of the window result compared (`window_threshold`).",
           "mean|p95|max|nowcast|aqi"},
          {"op", OptionType::kEnum, ">", "Comparison: fires when value op level.", ">|>=|<|<="},
          {"level", OptionType::kDouble, "",
           "Level in the metric's canonical unit (per `per` for rates; AQI for `aggregate: "
           "aqi`). Required for threshold, rate and proximity rules."},
          {"clear", OptionType::kDouble, "",
           "Clear level (hysteresis): a firing alert resolves only once the value is back to "
           "this (below it for > and >=, above it for < and <=). Default: the level."},
          {"severity", OptionType::kEnum, "warning", "Severity carried by the alert.",
           "info|warning|critical"},
          {"renotify", OptionType::kDuration, "0s",
           "While firing, notify again after this much event time; 0 never.", "0s..30d"},
          {"devices", OptionType::kStringList, "", "Only these devices (empty: all)."},
          {"zones", OptionType::kStringList, "",
           "Only readings in these zones, or (geofence) only these zones of its layer (empty: "
           "all)."},
          {"per", OptionType::kDuration, "1h", "Time unit of the rate (`rate_of_change`).",
           "1s..30d"},
          {"expected_interval", OptionType::kDuration, "1m",
           "A device's reporting interval (`stale`), unless the device registry knows it.",
           "1s..30d"},
          {"stale_factor", OptionType::kDouble, "3",
           "A device is stale after this many expected intervals without data.", "1..1000"},
          {"min_category", OptionType::kEnum, "unhealthy_sensitive",
           "Lowest AQI category that fires (`aqi_category`).",
           "moderate|unhealthy_sensitive|unhealthy|very_unhealthy|hazardous"},
          {"layer", OptionType::kString, "",
           "Geofence: the zone layer (`zones.layers[].name`); default the first."},
          {"fire_on", OptionType::kEnum, "enter",
           "Geofence: fire when a device enters a watched zone (resolved when it leaves), or "
           "when it leaves one (resolved when it is back).",
           "enter|leave"},
          {"lat", OptionType::kDouble, "", "Proximity: latitude of the point (WGS84).", "-90..90"},
          {"lon", OptionType::kDouble, "", "Proximity: longitude of the point (WGS84).",
           "-180..180"},
          {"radius_m", OptionType::kDouble, "",
           "Proximity: geodesic (haversine) distance from the point, in metres.", "0..20000000"},
          {"place", OptionType::kString, "",
           "Proximity: name of the point in the alert key (`device@place`); default the rule "
           "name."},
          {"channels", OptionType::kStringList, "",
           "Names of the channels that deliver this rule's alerts (empty: every channel)."},
          {"message", OptionType::kString, "", "Text put before the generated message."},
      }};
  return spec;
}

bool AlertRule::Fires(double value) const {
  switch (op) {
    case CompareOp::kGt:
      return value > level;
    case CompareOp::kGe:
      return value >= level;
    case CompareOp::kLt:
      return value < level;
    case CompareOp::kLe:
      return value <= level;
  }
  return false;
}

bool AlertRule::StillBeyondClear(double value) const {
  switch (op) {
    case CompareOp::kGt:
      return value > clear;
    case CompareOp::kGe:
      return value >= clear;
    case CompareOp::kLt:
      return value < clear;
    case CompareOp::kLe:
      return value <= clear;
  }
  return false;
}

int AqiCategoryIndex(double aqi) {
  if (!std::isfinite(aqi) || aqi < 0) return -1;
  if (aqi <= 50) return 0;
  if (aqi <= 100) return 1;
  if (aqi <= 150) return 2;
  if (aqi <= 200) return 3;
  if (aqi <= 300) return 4;
  return 5;
}

namespace {

const char* OpText(CompareOp op) {
  switch (op) {
    case CompareOp::kGt:
      return ">";
    case CompareOp::kGe:
      return ">=";
    case CompareOp::kLt:
      return "<";
    case CompareOp::kLe:
      return "<=";
  }
  return ">";
}

std::vector<Symbol> Symbols(const std::vector<std::string>& v) {
  std::vector<Symbol> out;
  for (const std::string& s : v) out.push_back(Intern(s));
  std::sort(out.begin(), out.end());
  return out;
}

bool Contains(const std::vector<Symbol>& sorted, Symbol s) {
  return std::binary_search(sorted.begin(), sorted.end(), s);
}

}  // namespace

namespace {

// The geofence/proximity options of a rule into r.geofence (other kinds must not set them).
Status ParseGeofencePart(const OptionReader& o, const std::string& kind,
                         const std::vector<std::string>& zone_layers, AlertRule& r) {
  GeofenceRule& g = r.geofence;
  g.name = r.name_symbol;
  bool zone_rule = r.kind == AlertRuleKind::kGeofence;
  bool proximity = r.kind == AlertRuleKind::kProximity;
  for (const char* key : {"layer", "fire_on"}) {
    if (!zone_rule && o.Has(key)) return o.Error(key, "only geofence rules have it");
  }
  for (const char* key : {"lat", "lon", "radius_m", "place"}) {
    if (!proximity && o.Has(key)) return o.Error(key, "only proximity rules have it");
  }
  if (zone_rule) {
    g.type = GeofenceRule::Type::kZone;
    if (zone_layers.empty()) {
      return o.Error("kind", "geofence rules need zone layers (zones.layers)");
    }
    if (o.Has("layer")) {
      TRIB_ASSIGN_OR_RETURN(std::string layer, o.GetString("layer"));
      auto it = std::find(zone_layers.begin(), zone_layers.end(), layer);
      if (it == zone_layers.end()) {
        std::string known;
        for (const std::string& l : zone_layers) known += (known.empty() ? "" : ", ") + l;
        return o.Error("layer", "no zone layer named '" + layer + "' (layers: " + known + ")");
      }
      g.layer = static_cast<size_t>(it - zone_layers.begin());
    }
    g.zones = r.zones;
    TRIB_ASSIGN_OR_RETURN(std::string fire_on, o.GetString("fire_on"));
    r.fire_on_leave = fire_on == "leave";
  }
  if (proximity) {
    g.type = GeofenceRule::Type::kProximity;
    for (const char* key : {"lat", "lon", "radius_m"}) {
      if (!o.Has(key)) return o.Error(key, "required for kind " + kind);
    }
    if (r.op != CompareOp::kGt && r.op != CompareOp::kGe) {
      return o.Error("op", "proximity rules fire above the level (op > or >=)");
    }
    TRIB_ASSIGN_OR_RETURN(g.lat, o.GetDouble("lat"));
    TRIB_ASSIGN_OR_RETURN(g.lon, o.GetDouble("lon"));
    TRIB_ASSIGN_OR_RETURN(g.radius_m, o.GetDouble("radius_m"));
    TRIB_ASSIGN_OR_RETURN(std::string place, o.GetString("place"));
    g.place = Intern(place.empty() ? r.name : place);
    g.metric = r.metric;
    // The engine starts an episode when value > above; for >= take the level's
    // predecessor so that value == level starts one too.
    g.above = r.op == CompareOp::kGe ? std::nextafter(r.level, -INFINITY) : r.level;
    g.clear = r.clear;
  }
  return Status::Ok();
}

}  // namespace

Result<AlertRule> ParseAlertRule(const OptionReader& o, const std::vector<std::string>& windows,
                                 const std::vector<std::string>& zone_layers) {
  AlertRule r;
  TRIB_ASSIGN_OR_RETURN(r.name, o.GetString("name"));
  if (r.name.empty()) return o.Error("name", "must not be empty");
  r.name_symbol = Intern(r.name);
  TRIB_ASSIGN_OR_RETURN(std::string kind, o.GetString("kind"));
  static const std::pair<const char*, AlertRuleKind> kKinds[] = {
      {"reading_threshold", AlertRuleKind::kReadingThreshold},
      {"window_threshold", AlertRuleKind::kWindowThreshold},
      {"aqi_category", AlertRuleKind::kAqiCategory},
      {"rate_of_change", AlertRuleKind::kRateOfChange},
      {"stale", AlertRuleKind::kStale},
      {"geofence", AlertRuleKind::kGeofence},
      {"proximity", AlertRuleKind::kProximity}};
  for (const auto& [n, k] : kKinds) {
    if (kind == n) r.kind = k;
  }
  r.kind_symbol = Intern(kind);
  TRIB_ASSIGN_OR_RETURN(std::string metric, o.GetString("metric"));
  r.metric = Intern(metric);
  bool needs_metric = r.kind != AlertRuleKind::kStale && r.kind != AlertRuleKind::kGeofence;
  if (needs_metric && metric.empty()) return o.Error("metric", "required for kind " + kind);

  TRIB_ASSIGN_OR_RETURN(std::string window, o.GetString("window"));
  bool window_rule =
      r.kind == AlertRuleKind::kWindowThreshold || r.kind == AlertRuleKind::kAqiCategory;
  if (window_rule) {
    if (window.empty()) return o.Error("window", "required for kind " + kind);
    if (std::find(windows.begin(), windows.end(), window) == windows.end()) {
      std::string known;
      for (const std::string& w : windows) known += (known.empty() ? "" : ", ") + w;
      return o.Error("window", "no window definition named '" + window +
                                   "' (defined: " + (known.empty() ? "none" : known) + ")");
    }
  }
  r.window = Intern(window);
  TRIB_ASSIGN_OR_RETURN(std::string agg, o.GetString("aggregate"));
  static const std::pair<const char*, WindowAggregate> kAggs[] = {
      {"mean", WindowAggregate::kMean},
      {"p95", WindowAggregate::kP95},
      {"max", WindowAggregate::kMax},
      {"nowcast", WindowAggregate::kNowcast},
      {"aqi", WindowAggregate::kAqi}};
  for (const auto& [n, a] : kAggs) {
    if (agg == n) r.aggregate = a;
  }
  TRIB_ASSIGN_OR_RETURN(std::string op, o.GetString("op"));
  r.op = op == ">"    ? CompareOp::kGt
         : op == ">=" ? CompareOp::kGe
         : op == "<"  ? CompareOp::kLt
                      : CompareOp::kLe;
  bool needs_level = r.kind == AlertRuleKind::kReadingThreshold ||
                     r.kind == AlertRuleKind::kWindowThreshold ||
                     r.kind == AlertRuleKind::kRateOfChange || r.kind == AlertRuleKind::kProximity;
  if (o.Has("level")) {
    TRIB_ASSIGN_OR_RETURN(r.level, o.GetDouble("level"));
  } else if (needs_level) {
    return o.Error("level", "required for kind " + kind);
  }
  r.clear = r.level;
  if (o.Has("clear")) {
    if (!needs_level) {
      return o.Error("clear", "only threshold, rate and proximity rules have a clear level");
    }
    TRIB_ASSIGN_OR_RETURN(r.clear, o.GetDouble("clear"));
    bool upward = r.op == CompareOp::kGt || r.op == CompareOp::kGe;
    if (upward && r.clear > r.level) {
      return o.Error("clear", fmt::format("clear level {} must not be above the level {} for op {}",
                                          r.clear, r.level, op));
    }
    if (!upward && r.clear < r.level) {
      return o.Error("clear", fmt::format("clear level {} must not be below the level {} for op {}",
                                          r.clear, r.level, op));
    }
  }
  TRIB_ASSIGN_OR_RETURN(std::string severity, o.GetString("severity"));
  r.severity = Intern(severity);
  TRIB_ASSIGN_OR_RETURN(r.renotify, o.GetDuration("renotify"));
  TRIB_ASSIGN_OR_RETURN(std::vector<std::string> devices, o.GetStringList("devices"));
  TRIB_ASSIGN_OR_RETURN(std::vector<std::string> zones, o.GetStringList("zones"));
  r.devices = Symbols(devices);
  r.zones = Symbols(zones);
  TRIB_ASSIGN_OR_RETURN(r.per, o.GetDuration("per"));
  TRIB_ASSIGN_OR_RETURN(r.expected_interval, o.GetDuration("expected_interval"));
  TRIB_ASSIGN_OR_RETURN(r.stale_factor, o.GetDouble("stale_factor"));
  TRIB_ASSIGN_OR_RETURN(std::string cat, o.GetString("min_category"));
  static const char* kCats[] = {"good",      "moderate",       "unhealthy_sensitive",
                                "unhealthy", "very_unhealthy", "hazardous"};
  for (int i = 0; i < 6; ++i) {
    if (cat == kCats[i]) r.min_category = i;
  }
  TRIB_RETURN_IF_ERROR(ParseGeofencePart(o, kind, zone_layers, r));
  TRIB_ASSIGN_OR_RETURN(r.channels, o.GetStringList("channels"));
  TRIB_ASSIGN_OR_RETURN(r.message, o.GetString("message"));
  return r;
}

Result<std::vector<AlertRule>> ParseAlertRules(const PipelineConfig& config) {
  std::vector<AlertRule> rules;
  const OptionReader& alerts = config.alerts;
  YAML::Node list = alerts.Node("rules");
  if (!list.IsDefined() || list.IsNull()) return rules;
  if (!list.IsSequence()) return alerts.Error("rules", "expected a list (entries start with '- ')");
  std::vector<std::string> windows;
  for (const OptionReader& w : config.windows) {
    Result<std::string> name = w.GetString("name");
    if (name.ok()) windows.push_back(*name);
  }
  std::vector<std::string> zone_layers = ZoneLayerNames(config.zones);
  std::set<std::string> names;
  size_t i = 0;
  for (const YAML::Node& item : list) {
    std::string path = "alerts.rules[" + std::to_string(i++) + "]";
    OptionReader reader(item, alerts.file(), path, {&AlertRuleSectionSpec()});
    if (!item.IsMap()) return reader.Error("", "expected a mapping with name and kind");
    TRIB_RETURN_IF_ERROR(reader.CheckKeys());
    TRIB_ASSIGN_OR_RETURN(AlertRule rule, ParseAlertRule(reader, windows, zone_layers));
    if (!names.insert(rule.name).second) {
      return reader.Error("name", "duplicate rule name '" + rule.name + "'");
    }
    rules.push_back(std::move(rule));
  }
  return rules;
}

namespace {

std::vector<GeofenceRule> GeofenceRulesOf(const std::vector<AlertRule>& rules) {
  std::vector<GeofenceRule> out;
  for (const AlertRule& r : rules) {
    if (r.kind == AlertRuleKind::kGeofence || r.kind == AlertRuleKind::kProximity) {
      out.push_back(r.geofence);
    }
  }
  return out;
}

}  // namespace

AlertEngine::AlertEngine(std::vector<AlertRule> rules)
    : rules_(std::move(rules)), geofences_(GeofenceRulesOf(rules_)) {
  state_.resize(rules_.size());
  for (size_t i = 0; i < rules_.size(); ++i) {
    const AlertRule& r = rules_[i];
    switch (r.kind) {
      case AlertRuleKind::kReadingThreshold:
      case AlertRuleKind::kRateOfChange:
        by_metric_[r.metric].push_back(i);
        break;
      case AlertRuleKind::kWindowThreshold:
      case AlertRuleKind::kAqiCategory:
        window_rules_.push_back(i);
        break;
      case AlertRuleKind::kStale:
        stale_rules_.push_back(i);
        if (r.metric) {
          by_metric_[r.metric].push_back(i);
        } else {
          any_metric_.push_back(i);
        }
        break;
      case AlertRuleKind::kGeofence:
      case AlertRuleKind::kProximity:
        geofence_rules_[r.name_symbol] = i;
        break;
    }
  }
}

size_t AlertEngine::firing() const {
  size_t n = 0;
  for (const StateMap& m : state_) {
    for (const auto& [k, s] : m) n += s.firing ? 1 : 0;
  }
  return n;
}

bool AlertEngine::Matches(const AlertRule& rule, const Reading& r) const {
  if (!rule.devices.empty() && !Contains(rule.devices, r.device)) return false;
  if (!rule.zones.empty() && !Contains(rule.zones, r.zone)) return false;
  return true;
}

AlertEvent AlertEngine::Make(const AlertRule& rule, const KeyState& s, AlertState state, TimeUs t,
                             double value, double level, TimeUs arrival) const {
  AlertEvent e;
  e.rule = rule.name_symbol;
  e.kind = rule.kind_symbol;
  e.key = s.key;
  e.metric = s.metric;
  e.severity = rule.severity;
  e.state = state;
  e.fired_at = s.fired_at;
  e.event_time = t;
  e.value = value;
  e.level = level;
  e.source_arrival = arrival;
  std::string what;
  switch (rule.kind) {
    case AlertRuleKind::kStale:
      what = state == AlertState::kResolved
                 ? fmt::format("{} reports again", s.key.view())
                 : fmt::format("{} sent no {} data for {:.0f} s (limit {:.0f} s)", s.key.view(),
                               s.metric ? s.metric.view() : std::string_view("new"), value, level);
      break;
    case AlertRuleKind::kAqiCategory:
      what = fmt::format("AQI of {} at {} is {:.0f} ({})", s.metric.view(), s.key.view(), value,
                         AqiCategory(value));
      break;
    case AlertRuleKind::kGeofence: {
      bool inside = (state == AlertState::kResolved) == rule.fire_on_leave;
      what =
          fmt::format("{} {} zone {}", s.device.view(), inside ? "entered" : "left", s.zone.view());
      break;
    }
    case AlertRuleKind::kProximity:
      what = state == AlertState::kResolved
                 ? fmt::format("{} at {} is back within {:.4g} or beyond {:.0f} m of {}",
                               s.metric.view(), s.device.view(), level, rule.geofence.radius_m,
                               s.zone.view())
                 : fmt::format("{} at {} is {:.4g} ({} {:.4g}) {:.0f} m from {} (within {:.0f} m)",
                               s.metric.view(), s.device.view(), value, OpText(rule.op), level,
                               s.last_value, s.zone.view(), rule.geofence.radius_m);
      break;
    case AlertRuleKind::kRateOfChange:
      what = fmt::format("{} at {} changes by {:.4g} per {} ({} {:.4g})", s.metric.view(),
                         s.key.view(), value, FormatDuration(rule.per),
                         state == AlertState::kResolved ? "clear at" : OpText(rule.op), level);
      break;
    default:
      what = fmt::format("{} at {} is {:.4g} ({} {:.4g})", s.metric.view(), s.key.view(), value,
                         state == AlertState::kResolved ? "clear at" : OpText(rule.op), level);
      break;
  }
  e.message = rule.message.empty() ? what : rule.message + ": " + what;
  return e;
}

void AlertEngine::Threshold(size_t ri, KeyState& s, double value, TimeUs t, TimeUs arrival,
                            std::vector<AlertEvent>& out) {
  const AlertRule& rule = rules_[ri];
  s.last_value = value;
  if (!s.firing) {
    if (rule.Fires(value)) {
      s.firing = true;
      s.fired_at = t;
      s.last_notified = t;
      out.push_back(Make(rule, s, AlertState::kFiring, t, value, rule.level, arrival));
    }
    return;
  }
  if (!rule.StillBeyondClear(value)) {
    out.push_back(Make(rule, s, AlertState::kResolved, t, value, rule.clear, arrival));
    s.firing = false;
    return;
  }
  if (rule.renotify > 0 && t - s.last_notified >= rule.renotify) {
    s.last_notified = t;
    out.push_back(Make(rule, s, AlertState::kRenotify, t, value, rule.level, arrival));
  }
}

void AlertEngine::OnReading(const Reading& r, std::vector<AlertEvent>& out) {
  if (!geofences_.empty()) {
    geofence_events_.clear();
    geofences_.Process(r, geofence_events_);
    for (const GeofenceEvent& e : geofence_events_) OnGeofence(e, out);
  }
  if (!std::isfinite(r.value)) return;
  auto visit = [&](size_t ri) {
    const AlertRule& rule = rules_[ri];
    if (!Matches(rule, r)) return;
    Symbol metric = rule.kind == AlertRuleKind::kStale ? rule.metric : r.metric;
    KeyState& s = state_[ri][Pack(r.device, metric)];
    s.key = r.device;
    s.metric = metric;
    switch (rule.kind) {
      case AlertRuleKind::kReadingThreshold:
        if (r.event_time < s.last_time) return;  // an older reading does not undo a newer one
        s.last_time = r.event_time;
        Threshold(ri, s, r.value, r.event_time, r.arrival_time, out);
        break;
      case AlertRuleKind::kRateOfChange: {
        if (s.last_time != kMinTime && r.event_time > s.last_time) {
          double rate = (r.value - s.last_value) / static_cast<double>(r.event_time - s.last_time) *
                        static_cast<double>(rule.per);
          double keep = r.value;
          Threshold(ri, s, rate, r.event_time, r.arrival_time, out);
          s.last_value = keep;
          s.last_time = r.event_time;
        } else if (s.last_time == kMinTime) {
          s.last_value = r.value;
          s.last_time = r.event_time;
        }
        break;
      }
      case AlertRuleKind::kStale:
        if (r.event_time > s.last_time) s.last_time = r.event_time;
        if (s.firing) {
          out.push_back(Make(rule, s, AlertState::kResolved, r.event_time, 0, 0, r.arrival_time));
          s.firing = false;
        }
        break;
      default:
        break;
    }
  };
  auto it = by_metric_.find(r.metric);
  if (it != by_metric_.end()) {
    for (size_t ri : it->second) visit(ri);
  }
  for (size_t ri : any_metric_) visit(ri);
}

void AlertEngine::OnWindow(const WindowResult& w, std::vector<AlertEvent>& out) {
  for (size_t ri : window_rules_) {
    const AlertRule& rule = rules_[ri];
    if (w.window != rule.window || w.metric != rule.metric) continue;
    if (!rule.zones.empty() && !Contains(rule.zones, w.group)) continue;
    if (!rule.devices.empty() && !Contains(rule.devices, w.group)) continue;
    KeyState& s = state_[ri][Pack(w.group, w.metric)];
    if (w.end < s.last_time) continue;  // a revision of an older window
    s.last_time = w.end;
    s.key = w.group;
    s.metric = w.metric;
    if (rule.kind == AlertRuleKind::kAqiCategory) {
      int cat = AqiCategoryIndex(w.aqi);
      if (cat < 0) continue;
      int before = s.category;
      s.category = cat;
      s.last_value = w.aqi;
      if (!s.firing && cat >= rule.min_category) {
        s.firing = true;
        s.fired_at = w.end;
        s.last_notified = w.end;
        out.push_back(Make(rule, s, AlertState::kFiring, w.end, w.aqi, rule.min_category, 0));
      } else if (s.firing && cat < rule.min_category) {
        out.push_back(Make(rule, s, AlertState::kResolved, w.end, w.aqi, rule.min_category, 0));
        s.firing = false;
      } else if (s.firing && (cat != before ||
                              (rule.renotify > 0 && w.end - s.last_notified >= rule.renotify))) {
        s.last_notified = w.end;
        out.push_back(Make(rule, s, AlertState::kRenotify, w.end, w.aqi, rule.min_category, 0));
      }
      continue;
    }
    double v = NAN;
    switch (rule.aggregate) {
      case WindowAggregate::kMean:
        v = w.mean;
        break;
      case WindowAggregate::kP95:
        v = w.p95;
        break;
      case WindowAggregate::kMax:
        v = w.max;
        break;
      case WindowAggregate::kNowcast:
        v = w.nowcast;
        break;
      case WindowAggregate::kAqi:
        v = w.aqi;
        break;
    }
    if (!std::isfinite(v)) continue;
    Threshold(ri, s, v, w.end, 0, out);
  }
}

void AlertEngine::OnGeofence(const GeofenceEvent& e, std::vector<AlertEvent>& out) {
  auto it = geofence_rules_.find(e.rule);
  if (it == geofence_rules_.end()) return;
  size_t ri = it->second;
  const AlertRule& rule = rules_[ri];
  if (!rule.devices.empty() && !Contains(rule.devices, e.device)) return;
  bool starts = false;
  switch (e.kind) {
    case GeofenceEvent::Kind::kEnter:
      starts = !rule.fire_on_leave;
      break;
    case GeofenceEvent::Kind::kLeave:
      starts = rule.fire_on_leave;
      break;
    case GeofenceEvent::Kind::kProximity:
      starts = true;
      break;
    case GeofenceEvent::Kind::kProximityEnd:
      starts = false;
      break;
  }
  KeyState& s = state_[ri][Pack(e.device, e.zone)];
  s.key = Intern(fmt::format("{}@{}", e.device.view(), e.zone.view()));
  s.device = e.device;
  s.zone = e.zone;
  bool proximity = rule.kind == AlertRuleKind::kProximity;
  s.metric = proximity ? e.metric : Symbol{};
  // Proximity alerts carry the reading's value against the level; zone alerts none.
  double value = proximity ? e.value : NAN;
  s.last_value = e.distance_m;
  if (starts && !s.firing) {
    s.firing = true;
    s.fired_at = e.event_time;
    s.last_notified = e.event_time;
    out.push_back(Make(rule, s, AlertState::kFiring, e.event_time, value,
                       proximity ? rule.level : NAN, e.arrival_time));
  } else if (!starts && s.firing) {
    out.push_back(Make(rule, s, AlertState::kResolved, e.event_time, value,
                       proximity ? rule.clear : NAN, e.arrival_time));
    s.firing = false;
  }
}

void AlertEngine::OnWatermark(TimeUs w, std::vector<AlertEvent>& out) {
  if (w <= last_watermark_ || w == kMinTime) return;
  last_watermark_ = w;
  for (size_t ri : stale_rules_) {
    const AlertRule& rule = rules_[ri];
    std::vector<KeyState*> due;
    for (auto& [k, s] : state_[ri]) {
      if (s.firing || s.last_time == kMinTime) continue;
      DurationUs interval = 0;
      if (interval_lookup_) interval = interval_lookup_(s.key);
      if (interval <= 0) interval = rule.expected_interval;
      auto limit = static_cast<DurationUs>(rule.stale_factor * static_cast<double>(interval));
      if (w - s.last_time > limit) due.push_back(&s);
    }
    std::sort(due.begin(), due.end(),
              [](const KeyState* a, const KeyState* b) { return a->key.view() < b->key.view(); });
    for (KeyState* s : due) {
      DurationUs interval = interval_lookup_ ? interval_lookup_(s->key) : 0;
      if (interval <= 0) interval = rule.expected_interval;
      // Fired at the event time the sensor became stale, not at the watermark that
      // noticed it: the alert's id then depends on the input only, not on its batching.
      const auto limit = static_cast<DurationUs>(rule.stale_factor * static_cast<double>(interval));
      s->firing = true;
      s->fired_at = s->last_time + limit;
      s->last_notified = s->fired_at;
      double gap_s = static_cast<double>(w - s->last_time) / kMicrosPerSecond;
      double limit_s = rule.stale_factor * static_cast<double>(interval) / kMicrosPerSecond;
      out.push_back(Make(rule, *s, AlertState::kFiring, w, gap_s, limit_s, 0));
    }
    // Re-notify stale alerts still open.
    if (rule.renotify > 0) {
      std::vector<KeyState*> again;
      for (auto& [k, s] : state_[ri]) {
        if (s.firing && w - s.last_notified >= rule.renotify) again.push_back(&s);
      }
      std::sort(again.begin(), again.end(),
                [](const KeyState* a, const KeyState* b) { return a->key.view() < b->key.view(); });
      for (KeyState* s : again) {
        s->last_notified = w;
        double gap_s = static_cast<double>(w - s->last_time) / kMicrosPerSecond;
        out.push_back(Make(rule, *s, AlertState::kRenotify, w, gap_s, NAN, 0));
      }
    }
  }
}

}  // namespace tributary

namespace tributary {

std::string AlertId(const AlertEvent& e) {
  return fmt::format("{}|{}|{}", e.rule.view(), e.key.view(), e.fired_at);
}

std::string AlertEventJson(const AlertEvent& e) {
  JsonWriter w;
  w.BeginObject();
  w.Key("id").String(AlertId(e));
  w.Key("rule").String(e.rule.view());
  w.Key("kind").String(e.kind.view());
  w.Key("key").String(e.key.view());
  w.Key("metric").String(e.metric.view());
  w.Key("severity").String(e.severity.view());
  w.Key("state").String(AlertStateName(e.state));
  w.Key("fired_at").String(FormatTime(e.fired_at));
  w.Key("event_time").String(FormatTime(e.event_time));
  w.Key("value").Number(e.value);
  w.Key("level").Number(e.level);
  w.Key("message").String(e.message);
  w.Key("emitted_at").String(FormatTime(e.emitted_at));
  w.EndObject();
  return w.Take();
}

void AlertEngine::Snapshot(CheckpointWriter& out) const {
  out.Section("alerts");
  out.U64(rules_.size());
  for (size_t i = 0; i < rules_.size(); ++i) {
    out.Str(rules_[i].name);
    std::vector<uint64_t> keys;  // sorted: the same state encodes to the same bytes
    keys.reserve(state_[i].size());
    for (const auto& [k, st] : state_[i]) keys.push_back(k);
    std::sort(keys.begin(), keys.end());
    out.U64(keys.size());
    for (uint64_t k : keys) {
      const KeyState& st = state_[i].at(k);
      out.U64(k);
      out.Bool(st.firing);
      out.I64(st.fired_at);
      out.I64(st.last_notified);
      out.I64(st.last_time);
      out.F64(st.last_value);
      out.I64(st.category);
      for (Symbol sym : {st.key, st.metric, st.device, st.zone}) out.U64(sym.id);
    }
  }
  out.I64(last_watermark_);
  geofences_.Snapshot(out);
}

Status AlertEngine::Restore(CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("alerts"));
  const uint64_t rules = in.Count();
  if (in.ok() && rules != rules_.size()) {
    return Status::Invalid("checkpoint: " + std::to_string(rules) +
                           " alert rules when it was taken, " + std::to_string(rules_.size()) +
                           " now");
  }
  for (size_t i = 0; i < rules_.size() && in.ok(); ++i) {
    const std::string_view name = in.Str();
    if (in.ok() && name != rules_[i].name) {
      return Status::Invalid("checkpoint: alert rule " + std::to_string(i + 1) + " was '" +
                             std::string(name) + "', now '" + rules_[i].name + "'");
    }
    state_[i].clear();
    for (uint64_t n = in.Count(); n > 0 && in.ok(); --n) {
      // Keys pack two symbol ids; both go through the reader's map (the state may come
      // from another process, docs/SCALING.md).
      const uint64_t stored = in.U64();
      const uint64_t key =
          (static_cast<uint64_t>(in.SymId(stored >> 32)) << 32) | in.SymId(stored & 0xffffffffu);
      KeyState& st = state_[i][key];
      st.firing = in.Bool();
      st.fired_at = in.I64();
      st.last_notified = in.I64();
      st.last_time = in.I64();
      st.last_value = in.F64();
      st.category = static_cast<int>(in.I64());
      for (Symbol* sym : {&st.key, &st.metric, &st.device, &st.zone}) *sym = in.Sym();
    }
  }
  last_watermark_ = in.I64();
  TRIB_RETURN_IF_ERROR(in.status());
  return geofences_.Restore(in);
}

}  // namespace tributary
