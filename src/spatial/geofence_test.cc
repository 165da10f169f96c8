// Geofences: a mobile sensor crossing districts, out-of-order readings, and proximity
// to a point, on readings enriched with the builtin city districts.
#include "spatial/geofence.h"

#include <gtest/gtest.h>

#include "core/config.h"
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

Result<GeofenceRule> Parse(const std::string& yaml) {
  auto node = LoadYamlText(yaml, "g.yaml");
  if (!node.ok()) return node.status();
  return ParseGeofenceRule(OptionReader(*node, "g.yaml", "geofences[0]", {&GeofenceSectionSpec()}),
                           {"district"});
}

TEST(GeofenceTest, MobileSensorEntersAndLeavesZones) {
  auto zones = ZoneSet::Load({{"district", "builtin:city_districts", "", "district_id", ""}});
  ASSERT_TRUE(zones.ok()) << zones.status().ToString();
  ZoneEnrichOperator enrich(*zones, -1);
  auto all = Parse("{name: any, type: zone}");
  auto mitte = Parse("{name: mitte, type: zone, zones: [D5], on: [enter]}");
  ASSERT_TRUE(all.ok() && mitte.ok()) << all.status().ToString();
  GeofenceEngine engine({*all, *mitte});
  std::vector<GeofenceEvent> events;
  // D4 (west) → D5 (centre) → D6 (east), then an out-of-order reading back in D4.
  std::vector<Reading> path = {At(52.52, 13.27, 1), At(52.52, 13.28, 2), At(52.52, 13.40, 3),
                               At(52.52, 13.53, 4), At(52.52, 13.27, 3)};
  for (Reading& r : path) {
    enrich.Enrich(r);
    engine.Process(r, events);
  }
  ASSERT_EQ(path[0].zone.str(), "D4");
  ASSERT_EQ(path[2].zone.str(), "D5");
  ASSERT_EQ(path[3].zone.str(), "D6");
  std::vector<std::string> got;
  for (const auto& e : events) {
    got.push_back(e.rule.str() + ":" + GeofenceKindName(e.kind) + ":" + e.zone.str() + "@" +
                  std::to_string(e.event_time));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"any:leave:D4@3", "any:enter:D5@3", "mitte:enter:D5@3",
                                           "any:leave:D5@4", "any:enter:D6@4"}));
}

TEST(GeofenceTest, ProximityToAPoint) {
  // A school at 52.52 N, 13.40 E; 500 m radius; PM2.5 above 35.
  auto rule = Parse(
      "{name: school, type: proximity, lat: 52.52, lon: 13.40, radius_m: 500, metric: pm25, "
      "above: 35}");
  ASSERT_TRUE(rule.ok()) << rule.status().ToString();
  GeofenceEngine engine({*rule});
  std::vector<GeofenceEvent> events;
  engine.Process(At(52.5236, 13.40, 1, 50), events);  // ~400 m north, above → fires
  engine.Process(At(52.5236, 13.40, 2, 20), events);  // below the threshold
  engine.Process(At(52.5260, 13.40, 3, 50), events);  // ~670 m: outside
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, GeofenceEvent::Kind::kProximity);
  EXPECT_NEAR(events[0].distance_m, 400.3, 1.0);
  EXPECT_EQ(events[0].value, 50);
}

TEST(GeofenceTest, ConfigErrors) {
  auto missing = Parse("{name: p, type: proximity, lat: 1, lon: 2}");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("radius_m"), std::string::npos);
  auto layer = Parse("{name: z, type: zone, layer: rivers}");
  ASSERT_FALSE(layer.ok());
  EXPECT_NE(layer.status().message().find("no zone layer named 'rivers'"), std::string::npos);
}

}  // namespace
}  // namespace tributary
