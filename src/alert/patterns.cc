#include "alert/patterns.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "ingest/metrics.h"
#include "spatial/moran.h"
#include "stream/checkpoint.h"

namespace tributary {

const SectionSpec& PatternRuleSectionSpec() {
  static const SectionSpec spec{
      "alerts.patterns[]",
      "A pattern rule across sensors: conditions that co-occur, or follow each other, at "
      "neighbouring devices within a time window (complex event processing). A match fires "
      "an alert (kind `pattern`, key the devices involved) through the alert operator; it "
      "resolves once no new match of the same devices came for `hold`.",
      {
          {"name", OptionType::kString, "", "Unique pattern name (the alerts' rule).", {}, true},
          {"kind", OptionType::kEnum, "",
           "`co_occurrence` (every condition at neighbouring devices within `within`) or "
           "`sequence` (the conditions in order, each at another device within `radius_m` "
           "of the one before).",
           "co_occurrence|sequence", true},
          {"conditions",
           OptionType::kSection,
           "",
           "List of conditions (`alerts.patterns[].conditions[]`).",
           {},
           true},
          {"count", OptionType::kInt, "0",
           "Sequence with one condition: how many devices in a row (0: the number of "
           "conditions).",
           "0..20"},
          {"source", OptionType::kString, "",
           "Window definition whose per-device results (`group_by: device`) are the input; "
           "empty: the readings."},
          {"within", OptionType::kDuration, "30m", "Time window of one match (event time).",
           "1s..7d"},
          {"radius_m", OptionType::kDouble, "5000",
           "Neighbourhood: greatest distance between devices of consecutive steps (haversine, "
           "metres).",
           "0..1000000"},
          {"downwind", OptionType::kBool, "false",
           "Sequence: each step must lie downwind of the previous one."},
          {"wind_metric", OptionType::kString, "wind_direction",
           "Metric giving the direction the wind blows from (degrees clockwise from north)."},
          {"direction_tolerance", OptionType::kDouble, "45",
           "Greatest angle (degrees) between a step's bearing and the downwind direction.",
           "0..180"},
          {"hold", OptionType::kDuration, "",
           "A firing match resolves once the watermark passes its last match by this; "
           "default `within`.",
           "1s..30d"},
          {"severity", OptionType::kEnum, "warning", "Severity carried by the alert.",
           "info|warning|critical"},
          {"channels", OptionType::kStringList, "",
           "Names of the channels that deliver this pattern's alerts (empty: every channel)."},
          {"message", OptionType::kString, "", "Text put before the generated message."},
      }};
  return spec;
}

const SectionSpec& PatternConditionSectionSpec() {
  static const SectionSpec spec{
      "alerts.patterns[].conditions[]",
      "One condition of a pattern, about one metric of one device. It produces an event when "
      "it becomes true for a device (edge-triggered).",
      {
          {"metric", OptionType::kString, "", "Canonical metric.", {}, true},
          {"trend", OptionType::kEnum, "rising",
           "`rising`/`falling`: changed by at least `min_change` over `over` (readings) or "
           "since the previous window result (`source`); `above`/`below`: beyond `level`.",
           "rising|falling|above|below"},
          {"min_change", OptionType::kDouble, "0",
           "Least change (canonical unit) for rising/falling.", "0.."},
          {"level", OptionType::kDouble, "", "Level for above/below (canonical unit)."},
          {"over", OptionType::kDuration, "30m",
           "Span of the change of rising/falling on readings.", "1s..1d"},
      }};
  return spec;
}

namespace {

Result<PatternCondition> ParseCondition(const OptionReader& r) {
  PatternCondition c;
  TRIB_ASSIGN_OR_RETURN(std::string metric, r.GetString("metric"));
  if (FindMetric(metric) == nullptr) return r.Error("metric", "unknown metric '" + metric + "'");
  c.metric = Intern(metric);
  TRIB_ASSIGN_OR_RETURN(std::string trend, r.GetString("trend"));
  c.trend = trend == "falling" ? PatternTrend::kFalling
            : trend == "above" ? PatternTrend::kAbove
            : trend == "below" ? PatternTrend::kBelow
                               : PatternTrend::kRising;
  TRIB_ASSIGN_OR_RETURN(c.min_change, r.GetDouble("min_change"));
  TRIB_ASSIGN_OR_RETURN(c.over, r.GetDuration("over"));
  bool threshold = c.trend == PatternTrend::kAbove || c.trend == PatternTrend::kBelow;
  if (threshold) {
    if (!r.Has("level")) return r.Error("level", "required for trend " + trend);
    TRIB_ASSIGN_OR_RETURN(c.level, r.GetDouble("level"));
  }
  return c;
}

}  // namespace

Result<std::vector<PatternRule>> ParsePatternRules(const PipelineConfig& config) {
  std::vector<PatternRule> rules;
  const OptionReader& alerts = config.alerts;
  YAML::Node list = alerts.Node("patterns");
  if (!list.IsDefined() || list.IsNull()) return rules;
  if (!list.IsSequence()) {
    return alerts.Error("patterns", "expected a list (entries start with '- ')");
  }
  std::set<std::string> windows;
  for (const OptionReader& w : config.windows) {
    Result<std::string> name = w.GetString("name");
    if (name.ok()) windows.insert(*name);
  }
  std::set<std::string> names;
  size_t i = 0;
  for (const YAML::Node& item : list) {
    std::string path = "alerts.patterns[" + std::to_string(i++) + "]";
    OptionReader reader(item, alerts.file(), path, {&PatternRuleSectionSpec()});
    if (!item.IsMap()) return reader.Error("", "expected a mapping with name, kind, conditions");
    TRIB_RETURN_IF_ERROR(reader.CheckKeys());
    PatternRule r;
    TRIB_ASSIGN_OR_RETURN(r.name, reader.GetString("name"));
    if (!names.insert(r.name).second) {
      return reader.Error("name", "duplicate pattern name '" + r.name + "'");
    }
    r.name_symbol = Intern(r.name);
    TRIB_ASSIGN_OR_RETURN(std::string kind, reader.GetString("kind"));
    r.kind = kind == "sequence" ? PatternKind::kSequence : PatternKind::kCoOccurrence;
    YAML::Node conds = reader.Node("conditions");
    if (!conds.IsSequence() || conds.size() == 0) {
      return reader.Error("conditions", "expected a non-empty list of conditions");
    }
    size_t k = 0;
    for (const YAML::Node& c : conds) {
      OptionReader cr(c, alerts.file(), path + ".conditions[" + std::to_string(k++) + "]",
                      {&PatternConditionSectionSpec()});
      if (!c.IsMap()) return cr.Error("", "expected a mapping with metric and trend");
      TRIB_RETURN_IF_ERROR(cr.CheckKeys());
      TRIB_ASSIGN_OR_RETURN(PatternCondition cond, ParseCondition(cr));
      r.conditions.push_back(cond);
    }
    TRIB_ASSIGN_OR_RETURN(int64_t count, reader.GetInt("count"));
    if (r.kind == PatternKind::kSequence) {
      if (count > 0 && r.conditions.size() != 1) {
        return reader.Error("count", "needs exactly one condition");
      }
      size_t steps = count > 0 ? static_cast<size_t>(count) : r.conditions.size();
      if (steps < 2) return reader.Error("count", "a sequence needs at least two steps");
      for (size_t s = 0; s < steps; ++s) r.steps.push_back(count > 0 ? 0 : s);
    } else {
      if (count > 0) return reader.Error("count", "only for kind: sequence");
      if (r.conditions.size() < 2) {
        return reader.Error("conditions", "a co-occurrence needs at least two conditions");
      }
    }
    TRIB_ASSIGN_OR_RETURN(std::string source, reader.GetString("source"));
    if (!source.empty()) {
      if (windows.count(source) == 0) {
        return reader.Error("source", "no window definition named '" + source + "'");
      }
      r.source = Intern(source);
    }
    TRIB_ASSIGN_OR_RETURN(r.within, reader.GetDuration("within"));
    TRIB_ASSIGN_OR_RETURN(r.radius_m, reader.GetDouble("radius_m"));
    TRIB_ASSIGN_OR_RETURN(r.downwind, reader.GetBool("downwind"));
    if (r.downwind && r.kind != PatternKind::kSequence) {
      return reader.Error("downwind", "only for kind: sequence");
    }
    TRIB_ASSIGN_OR_RETURN(std::string wind, reader.GetString("wind_metric"));
    r.wind_metric = Intern(wind);
    TRIB_ASSIGN_OR_RETURN(r.direction_tolerance, reader.GetDouble("direction_tolerance"));
    r.hold = r.within;
    if (reader.Has("hold")) {
      TRIB_ASSIGN_OR_RETURN(r.hold, reader.GetDuration("hold"));
    }
    TRIB_ASSIGN_OR_RETURN(std::string severity, reader.GetString("severity"));
    r.severity = Intern(severity);
    TRIB_ASSIGN_OR_RETURN(r.channels, reader.GetStringList("channels"));
    TRIB_ASSIGN_OR_RETURN(r.message, reader.GetString("message"));
    rules.push_back(std::move(r));
  }
  return rules;
}

double BearingDeg(double lat1, double lon1, double lat2, double lon2) {
  constexpr double kRad = M_PI / 180.0;
  double p1 = lat1 * kRad, p2 = lat2 * kRad, dl = (lon2 - lon1) * kRad;
  double y = std::sin(dl) * std::cos(p2);
  double x = std::cos(p1) * std::sin(p2) - std::sin(p1) * std::cos(p2) * std::cos(dl);
  double b = std::atan2(y, x) / kRad;
  return b < 0 ? b + 360.0 : b;
}

PatternOperator::PatternOperator(std::vector<PatternRule> rules) : rules_(std::move(rules)) {
  state_.resize(rules_.size());
  kind_ = Intern("pattern");
  device_group_ = Intern("device");
  for (size_t i = 0; i < rules_.size(); ++i) {
    const PatternRule& r = rules_[i];
    if (r.source) {
      by_source_[r.source.id].push_back(i);
    } else {
      for (size_t c = 0; c < r.conditions.size(); ++c) {
        by_metric_[r.conditions[c].metric.id].emplace_back(i, static_cast<uint32_t>(c));
      }
    }
    if (r.downwind) wind_metric_[r.wind_metric.id] = true;
  }
}

Result<std::unique_ptr<PatternOperator>> PatternOperator::Make(const PipelineConfig& config) {
  TRIB_ASSIGN_OR_RETURN(std::vector<PatternRule> rules, ParsePatternRules(config));
  if (rules.empty()) return std::unique_ptr<PatternOperator>();
  return std::make_unique<PatternOperator>(std::move(rules));
}

Status PatternOperator::Open(RunContext& ctx) {
  (void)ctx;
  return Status::Ok();
}

Status PatternOperator::Process(Batch& batch) {
  for (const Reading& r : batch.readings) {
    if (!std::isfinite(r.value)) continue;
    if (!wind_metric_.empty() && wind_metric_.count(r.metric.id) != 0 && std::isfinite(r.lat)) {
      Wind& w = wind_[r.device.id];
      if (r.event_time >= w.time) w = Wind{r.lat, r.lon, r.value, r.event_time};
    }
    auto it = by_metric_.find(r.metric.id);
    if (it == by_metric_.end()) continue;
    for (const auto& [rule, cond] : it->second) {
      Observe(rule, cond, r.device, r.event_time, r.value, r.lat, r.lon, false, r.arrival_time,
              batch.alerts);
    }
  }
  for (const WindowResult& w : batch.windows) {
    if (w.group_by != device_group_ || w.revision != 0) continue;
    auto it = by_source_.find(w.window.id);
    if (it == by_source_.end()) continue;
    for (size_t rule : it->second) {
      const PatternRule& r = rules_[rule];
      for (size_t c = 0; c < r.conditions.size(); ++c) {
        if (r.conditions[c].metric != w.metric) continue;
        Observe(rule, static_cast<uint32_t>(c), w.group, w.end, w.mean, w.centroid_lat,
                w.centroid_lon, true, w.emitted_at, batch.alerts);
      }
    }
  }
  // Resolve matches not renewed for `hold`.
  if (batch.watermark != kMinTime) {
    for (size_t i = 0; i < rules_.size(); ++i) {
      auto& firing = state_[i].firing;
      for (auto it = firing.begin(); it != firing.end();) {
        if (batch.watermark <= it->second.last_match + rules_[i].hold) {
          ++it;
          continue;
        }
        AlertEvent e;
        e.rule = rules_[i].name_symbol;
        e.kind = kind_;
        e.key = Intern(it->first);
        e.metric = it->second.metric;
        e.severity = rules_[i].severity;
        e.state = AlertState::kResolved;
        e.fired_at = it->second.fired_at;
        e.event_time = it->second.last_match + rules_[i].hold;
        e.message = fmt::format("pattern {} at {}: no new match for {}", rules_[i].name, it->first,
                                FormatDuration(rules_[i].hold));
        batch.alerts.push_back(std::move(e));
        it = firing.erase(it);
      }
    }
  }
  return Status::Ok();
}

void PatternOperator::Observe(size_t rule, uint32_t cond, Symbol device, TimeUs t, double value,
                              double lat, double lon, bool window_value, TimeUs arrival,
                              std::vector<AlertEvent>& out) {
  if (!std::isfinite(value)) return;
  const PatternRule& r = rules_[rule];
  const PatternCondition& c = r.conditions[cond];
  RuleState& s = state_[rule];
  Track& tr = s.tracks[(static_cast<uint64_t>(cond) << 32) | device.id];
  bool now = false;
  if (c.trend == PatternTrend::kAbove) {
    now = value > c.level;
  } else if (c.trend == PatternTrend::kBelow) {
    now = value < c.level;
  } else {
    double change = NAN;
    if (window_value) {
      change = value - tr.last_mean;
      tr.last_mean = value;
    } else {
      while (!tr.recent.empty() && tr.recent.front().first < t - c.over) tr.recent.pop_front();
      // A change needs most of the span behind it, or the first readings of a device
      // would compare with almost nothing.
      if (!tr.recent.empty() && t - tr.recent.front().first >= c.over / 2) {
        change = value - tr.recent.front().second;
      }
      if (tr.recent.empty() || t >= tr.recent.back().first) tr.recent.emplace_back(t, value);
    }
    if (std::isfinite(change)) {
      now = c.trend == PatternTrend::kRising ? change >= c.min_change && change > 0
                                             : change <= -c.min_change && change < 0;
    }
  }
  bool edge = now && !tr.active;
  tr.active = now;
  if (!edge || !std::isfinite(lat) || !std::isfinite(lon)) return;
  Event e{t, device, cond, lat, lon};
  // Keep the events that a match ending at or after `t` can still use.
  TimeUs latest = s.events.empty() ? t : std::max(t, s.events.back().time);
  while (!s.events.empty() && s.events.front().time < latest - r.within) s.events.pop_front();
  s.events.push_back(e);
  Match(rule, e, arrival, out);
}

bool PatternOperator::Downwind(const PatternRule& r, const Event& from, const Event& to) const {
  const Wind* best = nullptr;
  double best_d = INFINITY;
  for (const auto& [device, w] : wind_) {
    if (!std::isfinite(w.from_deg)) continue;
    double d = HaversineM(from.lat, from.lon, w.lat, w.lon);
    if (d < best_d || (d == best_d && best != nullptr && w.time > best->time)) {
      best_d = d;
      best = &w;
    }
  }
  if (best == nullptr) return false;
  double to_deg = std::fmod(best->from_deg + 180.0, 360.0);
  double bearing = BearingDeg(from.lat, from.lon, to.lat, to.lon);
  double diff = std::fabs(std::fmod(bearing - to_deg + 540.0, 360.0) - 180.0);
  return diff <= r.direction_tolerance;
}

bool PatternOperator::Chain(const PatternRule& r, const RuleState& s, size_t step,
                            const Event& next, TimeUs earliest,
                            std::vector<const Event*>& chain) const {
  // chain holds the events of steps step+1.. (last first); find one for `step`.
  uint32_t want = static_cast<uint32_t>(r.steps[step]);
  for (auto it = s.events.rbegin(); it != s.events.rend(); ++it) {
    const Event& e = *it;
    if (e.time > next.time || e.time < earliest || e.condition != want) continue;
    bool used = std::any_of(chain.begin(), chain.end(),
                            [&](const Event* c) { return c->device == e.device; });
    if (used) continue;
    if (HaversineM(e.lat, e.lon, next.lat, next.lon) > r.radius_m) continue;
    if (r.downwind && !Downwind(r, e, next)) continue;
    chain.push_back(&e);
    if (step == 0 || Chain(r, s, step - 1, e, earliest, chain)) return true;
    chain.pop_back();
  }
  return false;
}

void PatternOperator::Match(size_t rule, const Event& e, TimeUs arrival,
                            std::vector<AlertEvent>& out) {
  const PatternRule& r = rules_[rule];
  const RuleState& s = state_[rule];
  std::vector<const Event*> events;
  if (r.kind == PatternKind::kSequence) {
    if (r.steps.back() != e.condition) return;
    events.push_back(&s.events.back());
    if (!Chain(r, s, r.steps.size() - 2, e, e.time - r.within, events)) return;
    std::reverse(events.begin(), events.end());
    std::string key;
    for (const Event* ev : events) key += (key.empty() ? "" : ">") + std::string(ev->device.view());
    Fire(rule, key, events, e.time, arrival, out);
    return;
  }
  events.push_back(&s.events.back());
  for (uint32_t c = 0; c < r.conditions.size(); ++c) {
    if (c == e.condition) continue;
    const Event* found = nullptr;
    for (auto it = s.events.rbegin(); it != s.events.rend(); ++it) {
      if (it->condition != c || std::llabs(it->time - e.time) > r.within) continue;
      if (HaversineM(it->lat, it->lon, e.lat, e.lon) > r.radius_m) continue;
      found = &*it;
      break;
    }
    if (found == nullptr) return;
    events.push_back(found);
  }
  std::vector<std::string> devices;
  for (const Event* ev : events) devices.emplace_back(ev->device.view());
  std::sort(devices.begin(), devices.end());
  devices.erase(std::unique(devices.begin(), devices.end()), devices.end());
  std::string key;
  for (const std::string& d : devices) key += (key.empty() ? "" : "+") + d;
  Fire(rule, key, events, e.time, arrival, out);
}

void PatternOperator::Fire(size_t rule, const std::string& key,
                           const std::vector<const Event*>& events, TimeUs t, TimeUs arrival,
                           std::vector<AlertEvent>& out) {
  const PatternRule& r = rules_[rule];
  ++matches_;
  auto [it, inserted] = state_[rule].firing.try_emplace(key);
  it->second.last_match = std::max(it->second.last_match, t);
  if (!inserted) return;  // one alert per key while it fires
  it->second.fired_at = t;
  it->second.metric = r.conditions[events.front()->condition].metric;
  auto trend_name = [](PatternTrend tr) {
    switch (tr) {
      case PatternTrend::kRising:
        return "rising";
      case PatternTrend::kFalling:
        return "falling";
      case PatternTrend::kAbove:
        return "above";
      case PatternTrend::kBelow:
        return "below";
    }
    return "";
  };
  std::string parts;
  for (const Event* ev : events) {
    const PatternCondition& c = r.conditions[ev->condition];
    if (!parts.empty()) parts += r.kind == PatternKind::kSequence ? " → " : ", ";
    parts += fmt::format("{} {} at {} ({})", c.metric.view(), trend_name(c.trend),
                         ev->device.view(), FormatTime(ev->time));
  }
  AlertEvent a;
  a.rule = r.name_symbol;
  a.kind = kind_;
  a.key = Intern(key);
  a.metric = it->second.metric;
  a.severity = r.severity;
  a.state = AlertState::kFiring;
  a.fired_at = t;
  a.event_time = t;
  a.value = static_cast<double>(events.size());
  a.source_arrival = arrival;
  a.message = (r.message.empty() ? "" : r.message + ": ") +
              fmt::format("pattern {}: {} within {}{}", r.name, parts, FormatDuration(r.within),
                          r.downwind ? ", downwind" : "");
  out.push_back(std::move(a));
}

Status PatternOperator::Finish(Batch& out) {
  (void)out;
  return Status::Ok();
}

Status PatternOperator::Snapshot(CheckpointWriter& out) const {
  out.Section("patterns");
  out.U64(rules_.size());
  for (size_t i = 0; i < rules_.size(); ++i) {
    const RuleState& s = state_[i];
    out.Str(rules_[i].name);
    std::vector<uint64_t> keys;
    for (const auto& [k, t] : s.tracks) keys.push_back(k);
    std::sort(keys.begin(), keys.end());
    out.U64(keys.size());
    for (uint64_t k : keys) {
      const Track& t = s.tracks.at(k);
      out.U64(k);
      out.U64(t.recent.size());
      for (const auto& [time, v] : t.recent) {
        out.I64(time);
        out.F64(v);
      }
      out.F64(t.last_mean);
      out.Bool(t.active);
    }
    out.U64(s.events.size());
    for (const Event& e : s.events) {
      out.I64(e.time);
      out.U64(e.device.id);
      out.U64(e.condition);
      out.F64(e.lat);
      out.F64(e.lon);
    }
    out.U64(s.firing.size());
    for (const auto& [key, f] : s.firing) {
      out.Str(key);
      out.I64(f.fired_at);
      out.I64(f.last_match);
      out.U64(f.metric.id);
    }
  }
  std::vector<uint32_t> ids;
  for (const auto& [id, w] : wind_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  out.U64(ids.size());
  for (uint32_t id : ids) {
    const Wind& w = wind_.at(id);
    out.U64(id);
    out.F64(w.lat);
    out.F64(w.lon);
    out.F64(w.from_deg);
    out.I64(w.time);
  }
  out.U64(matches_);
  return Status::Ok();
}

Status PatternOperator::Restore(CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("patterns"));
  // Symbol ids through the reader (another process's ids, for a partition's state).
  auto sym = [&in]() {
    Symbol s = in.Sym();
    if (s.id >= InternedCount()) in.Fail("patterns: symbol id out of range");
    return s;
  };
  if (in.U64() != rules_.size()) return Status::Invalid("patterns: the rules changed");
  for (size_t i = 0; i < rules_.size() && in.ok(); ++i) {
    RuleState& s = state_[i];
    s = RuleState{};
    if (in.Str() != rules_[i].name) return Status::Invalid("patterns: the rules changed");
    uint64_t tracks = in.Count();
    for (uint64_t k = 0; k < tracks && in.ok(); ++k) {
      const uint64_t key = in.U64();  // condition << 32 | device
      Track& t = s.tracks[(key >> 32) << 32 | in.SymId(key & 0xffffffffu)];
      uint64_t n = in.Count();
      for (uint64_t j = 0; j < n && in.ok(); ++j) {
        TimeUs time = in.I64();
        t.recent.emplace_back(time, in.F64());
      }
      t.last_mean = in.F64();
      t.active = in.Bool();
    }
    uint64_t events = in.Count();
    for (uint64_t k = 0; k < events && in.ok(); ++k) {
      Event e;
      e.time = in.I64();
      e.device = sym();
      e.condition = static_cast<uint32_t>(in.U64());
      if (e.condition >= rules_[i].conditions.size()) in.Fail("patterns: condition out of range");
      e.lat = in.F64();
      e.lon = in.F64();
      s.events.push_back(e);
    }
    uint64_t firing = in.Count();
    for (uint64_t k = 0; k < firing && in.ok(); ++k) {
      std::string key(in.Str());
      Firing& f = s.firing[key];
      f.fired_at = in.I64();
      f.last_match = in.I64();
      f.metric = sym();
    }
  }
  wind_.clear();
  uint64_t winds = in.Count();
  for (uint64_t k = 0; k < winds && in.ok(); ++k) {
    Wind& w = wind_[in.SymId(in.U64())];
    w.lat = in.F64();
    w.lon = in.F64();
    w.from_deg = in.F64();
    w.time = in.I64();
  }
  matches_ = in.U64();
  return in.status();
}

}  // namespace tributary
