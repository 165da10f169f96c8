// Geofences and proximity on the readings' positions: the one implementation behind the
// alert rules of kind `geofence` and `proximity` (alert/rules.h).
//
// Two kinds of rule:
//   zone       — a device enters or leaves a zone of a zone layer (optionally only some
//                zone ids). The device's zone is the one enrichment attached
//                (reading.zone / extra_zones), so a mobile sensor's crossing is seen on
//                its first reading in the new zone. Its first reading ever only sets the
//                state (no event: tributary does not know where it was before); a
//                reading without a position changes nothing.
//   proximity  — a reading of `metric` above `above` within `radius_m` (geodesic,
//                haversine) of a point (a stack, a school) starts a proximity episode
//                (kProximity); the device's next reading of that metric that is farther
//                than `radius_m` or not above `clear` ends it (kProximityEnd).
// A rule's state for a device moves only forward in event time: a reading older than
// the newest one that rule already saw from the device (out of order) changes nothing,
// so late data cannot produce a spurious leave/enter pair. Readings of one message share
// their event time and position, so equal times count as in order.
//
// GeofenceEngine is plain logic (no threads, no I/O); the alert operator feeds it
// enriched readings in batch order and turns the events into alerts. One thread at a
// time.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "core/model.h"
#include "core/status.h"

namespace tributary {

class CheckpointReader;
class CheckpointWriter;

/// What a rule reports.
struct GeofenceEvent {
  enum class Kind : uint8_t { kEnter, kLeave, kProximity, kProximityEnd };
  Kind kind = Kind::kEnter;
  Symbol rule;
  Symbol device;
  Symbol zone;    ///< zone rules: the zone entered or left; proximity rules: the place
  Symbol metric;  ///< the reading's metric
  TimeUs event_time = 0;
  TimeUs arrival_time = 0;  ///< the reading's arrival (alert latency)
  double lat = NAN, lon = NAN;
  double value = NAN;       ///< the reading's value
  double distance_m = NAN;  ///< proximity rules: distance to the point
};

/// "enter", "leave", "proximity" or "proximity_end".
const char* GeofenceKindName(GeofenceEvent::Kind kind);

struct GeofenceRule {
  enum class Type : uint8_t { kZone, kProximity };
  Symbol name;  ///< the rule's name, carried by its events
  Type type = Type::kZone;
  // Zone rules.
  size_t layer = 0;           ///< index into zones.layers
  std::vector<Symbol> zones;  ///< empty: every zone of the layer
  // Proximity rules.
  Symbol place;  ///< name of the point, the zone of its events
  double lat = NAN, lon = NAN, radius_m = 0;
  Symbol metric;
  double above = 0;
  double clear = NAN;  ///< an episode ends at or below this; NaN: `above`
};

class GeofenceEngine {
 public:
  explicit GeofenceEngine(std::vector<GeofenceRule> rules);
  /// Check one enriched reading against every rule; append events to `out`.
  void Process(const Reading& r, std::vector<GeofenceEvent>& out);
  bool empty() const { return rules_.empty(); }
  /// Per device: the newest event time per rule, the zone it is in and the open
  /// proximity episodes (stream/checkpoint.h).
  void Snapshot(CheckpointWriter& out) const;
  Status Restore(CheckpointReader& in);

 private:
  struct DeviceState {
    std::vector<TimeUs> last_time;  // per rule: newest event time seen
    std::vector<Symbol> zone;       // per zone rule: current zone
    std::vector<uint8_t> near;      // per proximity rule: episode open
  };
  std::vector<GeofenceRule> rules_;
  std::unordered_map<uint32_t, DeviceState> devices_;
};

}  // namespace tributary
