#include "spatial/geofence.h"

#include <algorithm>

#include "spatial/moran.h"
#include "stream/checkpoint.h"

namespace tributary {

const char* GeofenceKindName(GeofenceEvent::Kind kind) {
  switch (kind) {
    case GeofenceEvent::Kind::kEnter:
      return "enter";
    case GeofenceEvent::Kind::kLeave:
      return "leave";
    case GeofenceEvent::Kind::kProximity:
      return "proximity";
    case GeofenceEvent::Kind::kProximityEnd:
      return "proximity_end";
  }
  return "?";
}

GeofenceEngine::GeofenceEngine(std::vector<GeofenceRule> rules) : rules_(std::move(rules)) {
  for (GeofenceRule& r : rules_) {
    if (std::isnan(r.clear)) r.clear = r.above;
    if (r.place.empty()) r.place = r.name;
  }
}

void GeofenceEngine::Process(const Reading& r, std::vector<GeofenceEvent>& out) {
  auto event = [&](GeofenceEvent::Kind kind, const GeofenceRule& rule, Symbol zone) {
    GeofenceEvent e;
    e.kind = kind;
    e.rule = rule.name;
    e.device = r.device;
    e.zone = zone;
    e.metric = r.metric;
    e.event_time = r.event_time;
    e.arrival_time = r.arrival_time;
    e.lat = r.lat;
    e.lon = r.lon;
    e.value = r.value;
    return e;
  };
  DeviceState& st = devices_[r.device.id];
  if (st.last_time.size() != rules_.size()) {
    st.last_time.resize(rules_.size(), kMinTime);
    st.zone.resize(rules_.size());
    st.near.resize(rules_.size(), 0);
  }
  for (size_t i = 0; i < rules_.size(); ++i) {
    const GeofenceRule& rule = rules_[i];
    if (rule.type == GeofenceRule::Type::kProximity) {
      if (r.metric != rule.metric || !std::isfinite(r.value)) continue;
      if (r.event_time < st.last_time[i]) continue;  // older than what the rule saw
      st.last_time[i] = r.event_time;
      double d = HaversineM(r.lat, r.lon, rule.lat, rule.lon);
      bool within = d <= rule.radius_m;  // false for a reading without position (NaN)
      if (st.near[i] == 0 && within && r.value > rule.above) {
        st.near[i] = 1;
        GeofenceEvent e = event(GeofenceEvent::Kind::kProximity, rule, rule.place);
        e.distance_m = d;
        out.push_back(e);
      } else if (st.near[i] != 0 && !(within && r.value > rule.clear)) {
        st.near[i] = 0;
        GeofenceEvent e = event(GeofenceEvent::Kind::kProximityEnd, rule, rule.place);
        e.distance_m = d;
        out.push_back(e);
      }
      continue;
    }
    // A reading without a position says nothing about where the device is.
    if (!std::isfinite(r.lat) || !std::isfinite(r.lon)) continue;
    if (r.event_time < st.last_time[i]) continue;
    bool first = st.last_time[i] == kMinTime;
    st.last_time[i] = r.event_time;
    Symbol now = rule.layer == 0 ? r.zone : r.extra_zones[rule.layer - 1];
    auto watched = [&](Symbol z) {
      return !z.empty() && (rule.zones.empty() ||
                            std::find(rule.zones.begin(), rule.zones.end(), z) != rule.zones.end());
    };
    Symbol before = st.zone[i];
    st.zone[i] = now;
    if (first || before == now) continue;
    if (watched(before)) out.push_back(event(GeofenceEvent::Kind::kLeave, rule, before));
    if (watched(now)) out.push_back(event(GeofenceEvent::Kind::kEnter, rule, now));
  }
}

void GeofenceEngine::Snapshot(CheckpointWriter& out) const {
  out.Section("geofence");
  out.U64(rules_.size());
  // Sorted by device, so the same state always encodes to the same bytes.
  std::vector<uint32_t> ids;
  ids.reserve(devices_.size());
  for (const auto& [id, d] : devices_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  out.U64(ids.size());
  for (uint32_t id : ids) {
    const DeviceState& d = devices_.at(id);
    out.U64(id);
    out.U64(d.last_time.size());
    for (TimeUs t : d.last_time) out.I64(t);
    out.U64(d.zone.size());
    for (Symbol z : d.zone) out.U64(z.id);
    out.U64(d.near.size());
    for (uint8_t n : d.near) out.Bool(n != 0);
  }
}

Status GeofenceEngine::Restore(CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("geofence"));
  const uint64_t rules = in.U64();
  if (in.ok() && rules != rules_.size()) {
    return Status::Invalid("checkpoint: " + std::to_string(rules) +
                           " geofence and proximity rules when it was taken, " +
                           std::to_string(rules_.size()) + " now");
  }
  devices_.clear();
  for (uint64_t n = in.Count(); n > 0 && in.ok(); --n) {
    // Symbol ids through the reader's map: the state may come from another process.
    DeviceState& d = devices_[in.SymId(in.U64())];
    d.last_time.resize(in.Count());
    for (TimeUs& t : d.last_time) t = in.I64();
    d.zone.resize(in.Count());
    for (Symbol& z : d.zone) z = in.Sym();
    d.near.resize(in.Count());
    for (uint8_t& v : d.near) v = in.Bool() ? 1 : 0;
  }
  return in.status();
}

}  // namespace tributary
