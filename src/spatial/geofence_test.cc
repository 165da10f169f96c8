// Geofences: a mobile sensor crossing districts, out-of-order readings, and proximity
// episodes near a point, on readings enriched with the builtin city districts.
#include "spatial/geofence.h"

#include <gtest/gtest.h>

#include "spatial/enrich.h"

namespace tributary {
namespace {

Reading At(double lat, double lon, TimeUs t, double value = 10) {
  Reading r;
  r.device = Intern("bike-7");
  r.metric = Intern("pm25");
  r.lat = lat;
  r.lon = lon;
  r.event_time = t;
  r.value = value;
  return r;
}

GeofenceRule ZoneRule(const std::string& name, std::vector<std::string> zones = {}) {
  GeofenceRule rule;
  rule.name = Intern(name);
  rule.type = GeofenceRule::Type::kZone;
  for (const std::string& z : zones) rule.zones.push_back(Intern(z));
  return rule;
}

TEST(GeofenceTest, MobileSensorEntersAndLeavesZones) {
  auto zones = ZoneSet::Load({{"district", "builtin:city_districts", "", "district_id", ""}});
  ASSERT_TRUE(zones.ok()) << zones.status().ToString();
  ZoneEnrichOperator enrich(*zones, -1);
  GeofenceEngine engine({ZoneRule("any"), ZoneRule("mitte", {"D5"})});
  std::vector<GeofenceEvent> events;
  // D4 (west) → D5 (centre) → D6 (east), then an out-of-order reading back in D4.
  // A reading without a position in between changes nothing.
  std::vector<Reading> path = {At(52.52, 13.27, 1), At(52.52, 13.28, 2), At(NAN, NAN, 2),
                               At(52.52, 13.40, 3), At(52.52, 13.53, 4), At(52.52, 13.27, 3)};
  for (Reading& r : path) {
    enrich.Enrich(r);
    engine.Process(r, events);
  }
  ASSERT_EQ(path[0].zone.str(), "D4");
  ASSERT_TRUE(path[2].zone.empty());
  ASSERT_EQ(path[3].zone.str(), "D5");
  ASSERT_EQ(path[4].zone.str(), "D6");
  std::vector<std::string> got;
  for (const auto& e : events) {
    got.push_back(e.rule.str() + ":" + GeofenceKindName(e.kind) + ":" + e.zone.str() + "@" +
                  std::to_string(e.event_time));
  }
  EXPECT_EQ(got,
            (std::vector<std::string>{"any:leave:D4@3", "any:enter:D5@3", "mitte:enter:D5@3",
                                      "any:leave:D5@4", "any:enter:D6@4", "mitte:leave:D5@4"}));
}

TEST(GeofenceTest, ProximityEpisodeNearAPoint) {
  // A school at 52.52 N, 13.40 E; 500 m radius; PM2.5 above 35, over once at or below 30.
  GeofenceRule rule;
  rule.name = Intern("school");
  rule.type = GeofenceRule::Type::kProximity;
  rule.place = Intern("school-3");
  rule.lat = 52.52;
  rule.lon = 13.40;
  rule.radius_m = 500;
  rule.metric = Intern("pm25");
  rule.above = 35;
  rule.clear = 30;
  GeofenceEngine engine({rule});
  std::vector<GeofenceEvent> events;
  engine.Process(At(52.5236, 13.40, 1, 50), events);  // ~400 m north, above → starts
  engine.Process(At(52.5236, 13.40, 2, 33), events);  // below 35 but above the clear level
  engine.Process(At(52.5236, 13.40, 1, 10), events);  // out of order: ignored
  engine.Process(At(52.5260, 13.40, 3, 50), events);  // ~670 m: outside → ends
  engine.Process(At(52.5200, 13.40, 4, 36), events);  // at the school, above → starts again
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].kind, GeofenceEvent::Kind::kProximity);
  EXPECT_EQ(events[0].zone.str(), "school-3");
  EXPECT_NEAR(events[0].distance_m, 400.3, 1.0);
  EXPECT_EQ(events[0].value, 50);
  EXPECT_EQ(events[1].kind, GeofenceEvent::Kind::kProximityEnd);
  EXPECT_EQ(events[1].event_time, 3);
  EXPECT_NEAR(events[1].distance_m, 667, 2.0);
  EXPECT_EQ(events[2].kind, GeofenceEvent::Kind::kProximity);
  EXPECT_NEAR(events[2].distance_m, 0, 1e-6);
}

}  // namespace
}  // namespace tributary
