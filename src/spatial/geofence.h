// Geofences and proximity rules on the readings' positions, for the alerting step.
//
// Two kinds of rule (`geofences[]`):
//   zone       — a device enters or leaves a zone of a zone layer (optionally only some
//                zone ids). The device's zone is the one enrichment attached
//                (reading.zone / extra_zones), so a mobile sensor's crossing is seen on
//                its first reading in the new zone. Its first reading ever only sets the
//                state (no event: tributary does not know where it was before).
//   proximity  — a reading of `metric` above `above` within `radius_m` (geodesic,
//                haversine) of a point: a stack, a school.
// A device's state moves only forward in event time: a reading older than the newest
// one already seen for that device (out of order) is checked by proximity rules but
// does not change zone state, so late data cannot produce a spurious leave/enter pair.
//
// GeofenceEngine is plain logic (no threads, no I/O); the caller (the alert step) feeds
// it enriched readings in arrival order and consumes the events. One thread at a time.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "core/config.h"
#include "core/model.h"
#include "core/status.h"

namespace tributary {

/// What a rule reports.
struct GeofenceEvent {
  enum class Kind : uint8_t { kEnter, kLeave, kProximity };
  Kind kind = Kind::kEnter;
  Symbol rule;
  Symbol device;
  Symbol zone;    ///< the zone entered or left (zone rules)
  Symbol metric;  ///< proximity rules: the metric; zone rules: the reading's metric
  TimeUs event_time = 0;
  double lat = NAN, lon = NAN;
  double value = NAN;       ///< the reading's value
  double distance_m = NAN;  ///< proximity rules: distance to the point
};

/// "enter", "leave" or "proximity".
const char* GeofenceKindName(GeofenceEvent::Kind kind);

struct GeofenceRule {
  enum class Type : uint8_t { kZone, kProximity };
  std::string name;
  Symbol name_symbol;
  Type type = Type::kZone;
  // Zone rules.
  size_t layer = 0;           ///< index into zones.layers
  std::vector<Symbol> zones;  ///< empty: every zone of the layer
  bool on_enter = true, on_leave = true;
  // Proximity rules.
  double lat = NAN, lon = NAN, radius_m = 0;
  Symbol metric;
  double above = 0;
};

/// The geofences[] section.
const SectionSpec& GeofenceSectionSpec();

/// Read one geofences[] entry; `layers` are the names of zones.layers in order.
Result<GeofenceRule> ParseGeofenceRule(const OptionReader& options,
                                       const std::vector<std::string>& layers);

class GeofenceEngine {
 public:
  explicit GeofenceEngine(std::vector<GeofenceRule> rules);
  /// Check one enriched reading against every rule; append events to `out`.
  void Process(const Reading& r, std::vector<GeofenceEvent>& out);

 private:
  struct DeviceState {
    TimeUs last_time = kMinTime;
    std::vector<Symbol> zone;  // per rule
  };
  std::vector<GeofenceRule> rules_;
  std::unordered_map<uint32_t, DeviceState> devices_;
};

}  // namespace tributary
