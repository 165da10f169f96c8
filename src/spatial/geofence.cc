#include "spatial/geofence.h"

#include <algorithm>

#include "spatial/moran.h"

namespace tributary {

const char* GeofenceKindName(GeofenceEvent::Kind kind) {
  switch (kind) {
    case GeofenceEvent::Kind::kEnter:
      return "enter";
    case GeofenceEvent::Kind::kLeave:
      return "leave";
    case GeofenceEvent::Kind::kProximity:
      return "proximity";
  }
  return "?";
}

const SectionSpec& GeofenceSectionSpec() {
  static const SectionSpec spec{
      "geofences[]",
      "Rules on positions that produce events for alerting: a device entering or leaving a "
      "zone (`type: zone`), or a reading above a threshold near a point (`type: "
      "proximity`).",
      {
          {"name", OptionType::kString, "", "Name of the rule (in its events).", {}, true},
          {"type", OptionType::kEnum, "", "`zone` or `proximity`.", "zone|proximity", true},
          {"layer", OptionType::kString, "",
           "zone: the zone layer (`zones.layers[].name`); default the first."},
          {"zones", OptionType::kStringList, "", "zone: zone ids watched; empty: all."},
          {"on", OptionType::kStringList, "enter, leave", "zone: `enter`, `leave` or both."},
          {"lat", OptionType::kDouble, "", "proximity: latitude of the point.", "-90..90"},
          {"lon", OptionType::kDouble, "", "proximity: longitude of the point.", "-180..180"},
          {"radius_m", OptionType::kDouble, "", "proximity: geodesic distance, metres.", "0.."},
          {"metric", OptionType::kString, "", "proximity: canonical metric (`pm25`)."},
          {"above", OptionType::kDouble, "", "proximity: fire when the value exceeds this."},
      }};
  return spec;
}

Result<GeofenceRule> ParseGeofenceRule(const OptionReader& options,
                                       const std::vector<std::string>& layers) {
  const OptionReader o(options.node(), options.file(), options.path(), {&GeofenceSectionSpec()});
  TRIB_RETURN_IF_ERROR(o.CheckKeys());
  GeofenceRule rule;
  TRIB_ASSIGN_OR_RETURN(rule.name, o.GetString("name"));
  rule.name_symbol = Intern(rule.name);
  TRIB_ASSIGN_OR_RETURN(std::string type, o.GetString("type"));
  if (type == "zone") {
    rule.type = GeofenceRule::Type::kZone;
    if (layers.empty()) return o.Error("type", "zone rules need zones.layers");
    if (o.Has("layer")) {
      TRIB_ASSIGN_OR_RETURN(std::string layer, o.GetString("layer"));
      auto it = std::find(layers.begin(), layers.end(), layer);
      if (it == layers.end()) return o.Error("layer", "no zone layer named '" + layer + "'");
      rule.layer = static_cast<size_t>(it - layers.begin());
    }
    TRIB_ASSIGN_OR_RETURN(std::vector<std::string> zones, o.GetStringList("zones"));
    for (const std::string& z : zones) rule.zones.push_back(Intern(z));
    TRIB_ASSIGN_OR_RETURN(std::vector<std::string> on, o.GetStringList("on"));
    rule.on_enter = rule.on_leave = false;
    for (const std::string& w : on) {
      if (w == "enter") {
        rule.on_enter = true;
      } else if (w == "leave") {
        rule.on_leave = true;
      } else {
        return o.Error("on", "unknown transition '" + w + "' (known: enter, leave)");
      }
    }
  } else {
    rule.type = GeofenceRule::Type::kProximity;
    for (const char* key : {"lat", "lon", "radius_m", "metric", "above"}) {
      if (!o.Has(key)) return o.Error(key, "required for proximity rules");
    }
    TRIB_ASSIGN_OR_RETURN(rule.lat, o.GetDouble("lat"));
    TRIB_ASSIGN_OR_RETURN(rule.lon, o.GetDouble("lon"));
    TRIB_ASSIGN_OR_RETURN(rule.radius_m, o.GetDouble("radius_m"));
    TRIB_ASSIGN_OR_RETURN(std::string metric, o.GetString("metric"));
    rule.metric = Intern(metric);
    TRIB_ASSIGN_OR_RETURN(rule.above, o.GetDouble("above"));
  }
  return rule;
}

GeofenceEngine::GeofenceEngine(std::vector<GeofenceRule> rules) : rules_(std::move(rules)) {}

void GeofenceEngine::Process(const Reading& r, std::vector<GeofenceEvent>& out) {
  auto event = [&](GeofenceEvent::Kind kind, const GeofenceRule& rule) {
    GeofenceEvent e;
    e.kind = kind;
    e.rule = rule.name_symbol;
    e.device = r.device;
    e.metric = r.metric;
    e.event_time = r.event_time;
    e.lat = r.lat;
    e.lon = r.lon;
    e.value = r.value;
    return e;
  };
  DeviceState& st = devices_[r.device.id];
  bool first = st.last_time == kMinTime;
  bool in_order = r.event_time > st.last_time;
  if (st.zone.size() != rules_.size()) st.zone.resize(rules_.size());
  for (size_t i = 0; i < rules_.size(); ++i) {
    const GeofenceRule& rule = rules_[i];
    if (rule.type == GeofenceRule::Type::kProximity) {
      if (r.metric != rule.metric || !(r.value > rule.above)) continue;
      double d = HaversineM(r.lat, r.lon, rule.lat, rule.lon);
      if (d <= rule.radius_m) {
        GeofenceEvent e = event(GeofenceEvent::Kind::kProximity, rule);
        e.distance_m = d;
        out.push_back(e);
      }
      continue;
    }
    if (!in_order) continue;
    Symbol now = rule.layer == 0 ? r.zone : r.extra_zones[rule.layer - 1];
    auto watched = [&](Symbol z) {
      return !z.empty() && (rule.zones.empty() ||
                            std::find(rule.zones.begin(), rule.zones.end(), z) != rule.zones.end());
    };
    Symbol before = st.zone[i];
    st.zone[i] = now;
    if (first || before == now) continue;
    if (rule.on_leave && watched(before)) {
      GeofenceEvent e = event(GeofenceEvent::Kind::kLeave, rule);
      e.zone = before;
      out.push_back(e);
    }
    if (rule.on_enter && watched(now)) {
      GeofenceEvent e = event(GeofenceEvent::Kind::kEnter, rule);
      e.zone = now;
      out.push_back(e);
    }
  }
  if (in_order) st.last_time = r.event_time;
}

}  // namespace tributary
