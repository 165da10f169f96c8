#include "alert/rules.h"

#include <gtest/gtest.h>

#include <functional>

#include "core/pipeline_config.h"
#include "stream/checkpoint.h"

namespace tributary {
namespace {

Reading At(const char* device, const char* metric, TimeUs t, double v) {
  Reading r;
  r.device = Intern(device);
  r.metric = Intern(metric);
  r.event_time = t;
  r.arrival_time = t;
  r.value = v;
  return r;
}

constexpr TimeUs kMin = 60 * kMicrosPerSecond;

Result<std::vector<AlertRule>> Rules(const std::string& yaml) {
  TRIB_ASSIGN_OR_RETURN(PipelineConfig c, ParsePipelineConfig(yaml, "test.yaml"));
  return ParseAlertRules(c);
}

TEST(AlertRulesTest, ThresholdHysteresisDedupAndRenotify) {
  auto rules = Rules(R"(
sources: [{name: s, type: simulator}]
alerts:
  rules:
    - {name: pm_high, kind: reading_threshold, metric: pm25, level: 35, clear: 30,
       renotify: 10m, severity: critical}
)");
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  AlertEngine e(*rules);
  std::vector<AlertEvent> out;
  e.OnReading(At("d1", "pm25", 0, 20), out);
  EXPECT_TRUE(out.empty());
  e.OnReading(At("d1", "pm25", kMin, 40), out);       // fires
  e.OnReading(At("d1", "pm25", 2 * kMin, 50), out);   // deduplicated
  e.OnReading(At("d1", "pm25", 3 * kMin, 32), out);   // below level, above clear: still firing
  e.OnReading(At("d1", "pm25", 12 * kMin, 33), out);  // renotify after 10 min
  e.OnReading(At("d2", "pm25", 12 * kMin, 36), out);  // another key fires on its own
  e.OnReading(At("d1", "pm25", 13 * kMin, 29), out);  // resolves
  e.OnReading(At("d1", "pm25", 14 * kMin, 34), out);  // below level: nothing
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].state, AlertState::kFiring);
  EXPECT_EQ(out[0].key.view(), "d1");
  EXPECT_EQ(out[0].severity.view(), "critical");
  EXPECT_DOUBLE_EQ(out[0].value, 40);
  EXPECT_EQ(out[1].state, AlertState::kRenotify);
  EXPECT_EQ(out[1].fired_at, kMin);
  EXPECT_EQ(out[2].key.view(), "d2");
  EXPECT_EQ(out[3].state, AlertState::kResolved);
  EXPECT_EQ(out[3].fired_at, kMin);
  EXPECT_EQ(out[3].event_time, 13 * kMin);
  EXPECT_EQ(e.firing(), 1u);
}

TEST(AlertRulesTest, RateOfChangeStaleAndWindow) {
  auto rules = Rules(R"(
sources: [{name: s, type: simulator}]
windows: [{name: h1, type: tumbling, size: 1h, aggregates: [mean, p95]}]
alerts:
  rules:
    - {name: rise, kind: rate_of_change, metric: stage, level: 0.5, per: 1h}
    - {name: quiet, kind: stale, expected_interval: 1m, stale_factor: 3}
    - {name: p95, kind: window_threshold, window: h1, metric: pm25, aggregate: p95, level: 35}
)");
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  AlertEngine e(*rules);
  std::vector<AlertEvent> out;
  e.OnReading(At("g1", "stage", 0, 1.0), out);
  e.OnReading(At("g1", "stage", 30 * kMin, 1.1), out);  // 0.2 m/h
  EXPECT_TRUE(out.empty());
  e.OnReading(At("g1", "stage", 60 * kMin, 1.5), out);  // 0.8 m/h
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].rule.view(), "rise");
  EXPECT_NEAR(out[0].value, 0.8, 1e-9);
  out.clear();
  e.OnWatermark(62 * kMin, out);  // 2 min of silence: not yet stale
  EXPECT_TRUE(out.empty());
  e.OnWatermark(64 * kMin, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].rule.view(), "quiet");
  EXPECT_EQ(out[0].key.view(), "g1");
  EXPECT_NEAR(out[0].value, 240, 1e-9);  // the gap when the watermark noticed it
  // Fired when the sensor became stale (last reading + 3 min), whichever watermark
  // noticed it: its id does not depend on how the input was batched.
  EXPECT_EQ(out[0].fired_at, 63 * kMin);
  EXPECT_EQ(out[0].event_time, 64 * kMin);
  EXPECT_EQ(AlertId(out[0]), "quiet|g1|" + std::to_string(63 * kMin));
  out.clear();
  // Reports again: the stale alert resolves, and so does the rise (0 m/h now).
  e.OnReading(At("g1", "stage", 65 * kMin, 1.5), out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].rule.view(), "rise");
  EXPECT_EQ(out[0].state, AlertState::kResolved);
  EXPECT_EQ(out[1].rule.view(), "quiet");
  EXPECT_EQ(out[1].state, AlertState::kResolved);
  out.clear();
  WindowResult w;
  w.window = Intern("h1");
  w.group = Intern("zone-a");
  w.metric = Intern("pm25");
  w.end = 60 * kMin;
  w.p95 = 40;
  e.OnWindow(w, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].key.view(), "zone-a");
}

TEST(AlertRulesTest, AqiCategoryChange) {
  auto rules = Rules(R"(
sources: [{name: s, type: simulator}]
windows: [{name: h1, preset: pm25_regulatory}]
alerts:
  rules:
    - {name: aqi, kind: aqi_category, window: h1, metric: pm25, min_category: unhealthy_sensitive}
)");
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  AlertEngine e(*rules);
  std::vector<AlertEvent> out;
  WindowResult w;
  w.window = Intern("h1");
  w.group = Intern("d1");
  w.metric = Intern("pm25");
  for (double aqi : {80.0, 120.0, 160.0, 90.0}) {
    w.end += 60 * kMin;
    w.aqi = aqi;
    e.OnWindow(w, out);
  }
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].state, AlertState::kFiring);
  EXPECT_EQ(out[1].state, AlertState::kRenotify);  // category changed while firing
  EXPECT_EQ(out[2].state, AlertState::kResolved);
}

TEST(AlertRulesTest, GeofenceAndProximityRulesFireAndResolve) {
  auto rules = Rules(R"(
sources: [{name: s, type: simulator}]
zones:
  layers:
    - {name: district, path: "builtin:city_districts", id_field: district_id}
    - {name: site, path: "builtin:city_districts", id_field: district_id}
alerts:
  rules:
    - {name: fence, kind: geofence, zones: [school]}
    - {name: out, kind: geofence, layer: site, zones: [yard], fire_on: leave}
    - {name: stack, kind: proximity, metric: pm25, level: 35, clear: 30, lat: 52.52,
       lon: 13.40, radius_m: 500, place: stack-1}
)");
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  ASSERT_EQ((*rules)[1].geofence.layer, 1u);
  AlertEngine e(*rules);
  std::vector<AlertEvent> out;
  auto at = [](const char* zone, const char* site, TimeUs t, double lat, double v) {
    Reading r = At("truck", "pm25", t, v);
    r.zone = Intern(zone);
    r.extra_zones[0] = Intern(site);
    r.lat = lat;
    r.lon = 13.40;
    return r;
  };
  e.OnReading(at("park", "yard", 1, 52.60, 10), out);    // first position: no event
  e.OnReading(at("school", "yard", 2, 52.60, 10), out);  // enters school → fence fires
  e.OnReading(at("park", "road", 3, 52.5236, 50), out);  // leaves school, yard; 400 m, 50
  e.OnReading(at("park", "yard", 4, 52.5236, 32), out);  // back in yard; 32 > clear 30
  e.OnReading(at("park", "yard", 5, 52.5236, 29), out);  // proximity clears
  std::vector<std::string> got;
  for (const AlertEvent& a : out) {
    got.push_back(a.rule.str() + ":" + AlertStateName(a.state) + ":" + a.key.str() + "@" +
                  std::to_string(a.event_time));
  }
  EXPECT_EQ(got, (std::vector<std::string>{
                     "fence:firing:truck@school@2", "fence:resolved:truck@school@3",
                     "out:firing:truck@yard@3", "stack:firing:truck@stack-1@3",
                     "out:resolved:truck@yard@4", "stack:resolved:truck@stack-1@5"}));
  EXPECT_EQ(out[0].message, "truck entered zone school");
  EXPECT_EQ(out[1].message, "truck left zone school");
  EXPECT_EQ(out[3].value, 50);
  EXPECT_EQ(out[3].level, 35);
  EXPECT_NE(out[3].message.find("400 m from stack-1"), std::string::npos) << out[3].message;
  EXPECT_EQ(out[5].level, 30);
}

TEST(AlertRulesTest, RestoredEngineContinuesEveryAlertLife) {
  auto rules = Rules(R"(
sources: [{name: s, type: simulator}]
zones:
  layers:
    - {name: district, path: "builtin:city_districts", id_field: district_id}
alerts:
  rules:
    - {name: pm_high, kind: reading_threshold, metric: pm25, level: 35, clear: 30,
       renotify: 10m}
    - {name: quiet, kind: stale, expected_interval: 1m, stale_factor: 3}
    - {name: fence, kind: geofence, zones: [school]}
    - {name: stack, kind: proximity, metric: pm25, level: 35, clear: 30, lat: 52.52,
       lon: 13.40, radius_m: 500, place: stack-1}
)");
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  using Step = std::function<void(AlertEngine&, std::vector<AlertEvent>&)>;
  auto reading = [](const char* device, const char* zone, TimeUs t, double lat, double v) {
    return Step([=](AlertEngine& e, std::vector<AlertEvent>& out) {
      Reading r = At(device, "pm25", t, v);
      r.zone = Intern(zone);
      r.lat = lat;
      r.lon = 13.40;
      e.OnReading(r, out);
    });
  };
  auto watermark = [](TimeUs w) {
    return Step([=](AlertEngine& e, std::vector<AlertEvent>& out) { e.OnWatermark(w, out); });
  };
  const std::vector<Step> steps = {
      reading("d1", "park", 0, 52.60, 20),
      reading("d1", "school", kMin, 52.60, 40),
      reading("d2", "park", kMin, 52.5236, 50),
      watermark(2 * kMin),
      reading("d1", "school", 3 * kMin, 52.60, 32),
      reading("d1", "park", 12 * kMin, 52.60, 33),
      watermark(12 * kMin),
      reading("d2", "park", 13 * kMin, 52.5236, 29),
      reading("d1", "park", 14 * kMin, 52.60, 29),
  };
  auto text = [](const std::vector<AlertEvent>& events) {
    std::string t;
    for (const AlertEvent& a : events) {
      t += a.rule.str() + ":" + AlertStateName(a.state) + ":" + a.key.str() + "@" +
           std::to_string(a.event_time) + " fired " + std::to_string(a.fired_at) + "\n";
    }
    return t;
  };
  std::vector<AlertEvent> clean;
  size_t clean_firing = 0;
  {
    AlertEngine e(*rules);
    for (const Step& s : steps) s(e, clean);
    clean_firing = e.firing();
  }
  const std::string expected = text(clean);
  for (const char* life :
       {"pm_high:renotify:d1", "quiet:firing:d2", "fence:resolved:d1", "stack:resolved:d2@"}) {
    ASSERT_NE(expected.find(life), std::string::npos) << life << " in\n" << expected;
  }
  for (size_t cut = 0; cut <= steps.size(); ++cut) {
    std::vector<AlertEvent> out;
    AlertEngine a(*rules);
    for (size_t i = 0; i < cut; ++i) steps[i](a, out);
    CheckpointWriter w;
    a.Snapshot(w);
    AlertEngine b(*rules);
    CheckpointReader r(w.bytes());
    Status st = b.Restore(r);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_TRUE(r.at_end());
    for (size_t i = cut; i < steps.size(); ++i) steps[i](b, out);
    EXPECT_EQ(text(out), expected) << "restored after step " << cut;
    EXPECT_EQ(b.firing(), clean_firing) << "restored after step " << cut;
  }
  // Other rules are refused by name.
  auto other = Rules(R"(
sources: [{name: s, type: simulator}]
alerts:
  rules:
    - {name: pm_low, kind: reading_threshold, metric: pm25, level: 5}
    - {name: quiet, kind: stale, expected_interval: 1m, stale_factor: 3}
    - {name: x, kind: reading_threshold, metric: no2, level: 5}
    - {name: y, kind: reading_threshold, metric: no2, level: 9}
)");
  ASSERT_TRUE(other.ok()) << other.status().ToString();
  CheckpointWriter w;
  AlertEngine(*rules).Snapshot(w);
  AlertEngine c(*other);
  CheckpointReader r(w.bytes());
  Status st = c.Restore(r);
  EXPECT_NE(st.message().find("was 'pm_high', now 'pm_low'"), std::string::npos) << st.ToString();
}

TEST(AlertRulesTest, GeofenceRuleErrorsNameTheKey) {
  auto r = Rules(R"(
sources: [{name: s, type: simulator}]
alerts:
  rules:
    - {name: fence, kind: geofence}
)");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("need zone layers"), std::string::npos)
      << r.status().ToString();
  r = Rules(R"(
sources: [{name: s, type: simulator}]
zones:
  layers: [{name: district, path: "builtin:city_districts", id_field: district_id}]
alerts:
  rules:
    - {name: fence, kind: geofence, layer: rivers}
)");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no zone layer named 'rivers' (layers: district)"),
            std::string::npos)
      << r.status().ToString();
  r = Rules(R"(
sources: [{name: s, type: simulator}]
alerts:
  rules:
    - {name: p, kind: proximity, metric: pm25, level: 35, lat: 1, lon: 2}
)");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("alerts.rules[0].radius_m"), std::string::npos)
      << r.status().ToString();
  r = Rules(R"(
sources: [{name: s, type: simulator}]
alerts:
  rules:
    - {name: t, kind: reading_threshold, metric: pm25, level: 35, radius_m: 3}
)");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("only proximity rules"), std::string::npos);
}

TEST(AlertRulesTest, BadRulesNameTheProblem) {
  auto r = Rules(R"(
sources: [{name: s, type: simulator}]
alerts:
  rules:
    - {name: x, kind: window_threshold, window: nope, metric: pm25, level: 1}
)");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no window definition named 'nope'"), std::string::npos);
  r = Rules(R"(
sources: [{name: s, type: simulator}]
alerts:
  rules:
    - {name: x, kind: reading_threshold, metric: pm25, level: 35, clear: 40}
)");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("alerts.rules[0].clear"), std::string::npos);
}

}  // namespace
}  // namespace tributary
