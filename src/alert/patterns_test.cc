#include "alert/patterns.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "sim_readings.h"
#include "spatial/moran.h"
#include "stream/checkpoint.h"

namespace tributary {
namespace {

constexpr TimeUs kStart = 1714521600LL * kMicrosPerSecond;  // 2024-05-01T00:00:00Z
constexpr TimeUs kMin = kMicrosPerMinute;

Result<std::vector<PatternRule>> Parse(const std::string& patterns) {
  TRIB_ASSIGN_OR_RETURN(
      PipelineConfig c,
      ParsePipelineConfig("sources:\n  - {name: s, type: simulator}\n"
                          "windows:\n  - {name: d5, type: tumbling, size: 5m, group_by: device}\n"
                          "sinks:\n  - {name: l, type: sqlite}\nalerts:\n  patterns:\n" +
                              patterns,
                          "<test>"));
  return ParsePatternRules(c);
}

TEST(PatternRulesTest, ParsesAndRejectsWithLocations) {
  auto ok = Parse(
      "    - name: front\n      kind: co_occurrence\n      within: 30m\n      radius_m: 8000\n"
      "      conditions:\n        - {metric: temperature, trend: rising, min_change: 3}\n"
      "        - {metric: pressure, trend: falling, min_change: 2}\n"
      "    - {name: plume, kind: sequence, count: 3, downwind: true,\n"
      "       conditions: [{metric: pm25, trend: rising, min_change: 15, over: 10m}]}\n");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  ASSERT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[0].kind, PatternKind::kCoOccurrence);
  EXPECT_EQ((*ok)[0].hold, 30 * kMin);
  EXPECT_EQ((*ok)[1].steps, (std::vector<size_t>{0, 0, 0}));
  EXPECT_EQ((*ok)[1].conditions[0].over, 10 * kMin);
  struct Bad {
    const char* yaml;
    const char* message;
  };
  const Bad bad[] = {
      {"    - {name: a, kind: co_occurrence, conditions: [{metric: pm25}]}\n", "at least two"},
      {"    - {name: a, kind: sequence, conditions: [{metric: nope}, {metric: pm25}]}\n",
       "unknown metric"},
      {"    - {name: a, kind: sequence, source: w9, conditions: [{metric: pm25}, {metric: "
       "pm10}]}\n",
       "no window definition"},
      {"    - {name: a, kind: sequence, conditions: [{metric: pm25, trend: above}, {metric: "
       "pm10}]}\n",
       "required for trend above"},
      {"    - {name: a, kind: co_occurrence, downwind: true, conditions: [{metric: pm25}, "
       "{metric: pm10}]}\n",
       "only for kind: sequence"},
      {"    - {name: a, kind: sequence, conditions: [{metric: pm25, level: 3, trnd: above}]}\n",
       "trnd"},
  };
  for (const Bad& b : bad) {
    auto r = Parse(b.yaml);
    ASSERT_FALSE(r.ok()) << b.yaml;
    EXPECT_NE(r.status().ToString().find(b.message), std::string::npos) << r.status().ToString();
    EXPECT_NE(r.status().ToString().find("alerts.patterns[0]"), std::string::npos)
        << r.status().ToString();
  }
}

TEST(PatternRulesTest, Bearing) {
  EXPECT_NEAR(BearingDeg(52.5, 13.4, 52.6, 13.4), 0, 1e-6);
  EXPECT_NEAR(BearingDeg(52.5, 13.4, 52.5, 13.5), 90, 0.1);
  EXPECT_NEAR(BearingDeg(52.5, 13.4, 52.4, 13.4), 180, 1e-6);
  EXPECT_NEAR(BearingDeg(52.5, 13.4, 52.5, 13.3), 270, 0.1);
}

// Add `offset(t)` to the readings of `device`/`metric` between t0 and t0 + hold.
void Inject(std::vector<Reading>& stream, Symbol device, Symbol metric, TimeUs t0, DurationUs ramp,
            DurationUs hold, double size) {
  for (Reading& r : stream) {
    if (r.device != device || r.metric != metric || r.event_time < t0 || r.event_time > t0 + hold) {
      continue;
    }
    double f =
        ramp <= 0
            ? 1.0
            : std::min(1.0, static_cast<double>(r.event_time - t0) / static_cast<double>(ramp));
    r.value += size * f;
    r.flags.Set(QcFlag::kSimulatedFault);
  }
}

std::vector<AlertEvent> RunAll(PatternOperator& op, const std::vector<Reading>& stream,
                               size_t from = 0, size_t to = SIZE_MAX) {
  std::vector<AlertEvent> alerts;
  to = std::min(to, stream.size());
  for (size_t i = from; i < to; i += 1000) {
    Batch b;
    b.readings.assign(stream.begin() + static_cast<std::ptrdiff_t>(i),
                      stream.begin() + static_cast<std::ptrdiff_t>(std::min(to, i + 1000)));
    TimeUs wm = kMinTime;
    for (const Reading& r : b.readings) wm = std::max(wm, r.event_time - 2 * kMin);
    b.watermark = wm;
    size_t n = b.readings.size();
    EXPECT_TRUE(op.Process(b).ok());
    EXPECT_EQ(b.readings.size(), n);
    alerts.insert(alerts.end(), b.alerts.begin(), b.alerts.end());
  }
  return alerts;
}

struct Sim {
  std::vector<Reading> stream;
  std::vector<SimDevice> devices;
};

const Sim& CitySim() {
  static const Sim sim = [] {
    SimulatorOptions so;
    so.seed = 8;
    so.devices = 60;
    so.start = kStart;
    so.duration = 3 * kMicrosPerDay;
    so.as_fast_as_possible = true;
    Sim s;
    s.stream = testing::SimulatorReadings(so, &s.devices);
    return s;
  }();
  return sim;
}

// Temperature rising at one weather station while pressure falls at its nearest
// neighbour, ten minutes apart: eight such fronts injected into three simulated days.
TEST(PatternOperatorTest, CoOccurrenceOfInjectedFrontsAtNeighbouringStations) {
  Sim sim = CitySim();
  std::vector<const SimDevice*> ws;
  for (const SimDevice& d : sim.devices) {
    if (d.type == DeviceType::kWeather) ws.push_back(&d);
  }
  ASSERT_GE(ws.size(), 4u);
  auto rules = Parse(
      "    - name: front\n      kind: co_occurrence\n      within: 30m\n      radius_m: 12000\n"
      "      conditions:\n        - {metric: temperature, trend: rising, min_change: 3}\n"
      "        - {metric: pressure, trend: falling, min_change: 2}\n");
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  std::set<std::string> expected;
  Symbol temp = Intern("temperature"), pres = Intern("pressure");
  for (int k = 0; k < 8; ++k) {
    const SimDevice* a = ws[static_cast<size_t>(k) % ws.size()];
    const SimDevice* b = nullptr;
    double best = INFINITY;
    for (const SimDevice* d : ws) {
      double m = HaversineM(a->lat, a->lon, d->lat, d->lon);
      if (d != a && m < best) best = m, b = d;
    }
    ASSERT_LT(best, 12000.0);
    TimeUs t0 = kStart + 4 * kMicrosPerHour + k * 8 * kMicrosPerHour;
    Inject(sim.stream, Intern(a->id), temp, t0, 15 * kMin, 60 * kMin, 4.0);
    Inject(sim.stream, Intern(b->id), pres, t0 + 10 * kMin, 10 * kMin, 60 * kMin, -3.0);
    expected.insert(std::min(a->id, b->id) + "+" + std::max(a->id, b->id));
  }
  PatternOperator op(std::move(rules).value());
  std::vector<AlertEvent> alerts = RunAll(op, sim.stream);
  std::set<std::string> fired;
  size_t resolved = 0;
  for (const AlertEvent& a : alerts) {
    EXPECT_EQ(a.kind.view(), "pattern");
    EXPECT_EQ(a.rule.view(), "front");
    if (a.state == AlertState::kFiring) fired.insert(std::string(a.key.view()));
    resolved += a.state == AlertState::kResolved;
  }
  size_t detected = 0;
  for (const std::string& k : expected) {
    detected += fired.count(k);
  }
  size_t false_pos = 0;
  for (const std::string& k : fired) false_pos += expected.count(k) == 0;
  std::printf(
      "pattern front: %zu/%zu injected pairs detected, %zu other alerts in 3 days, %zu "
      "resolved\n",
      detected, expected.size(), false_pos, resolved);
  EXPECT_GE(static_cast<double>(detected) / static_cast<double>(expected.size()), 0.8);
  EXPECT_EQ(false_pos, 0u);
  EXPECT_GT(resolved, 0u);
}

// PM2.5 rising at three air-quality nodes in a row downwind. Triples of nodes that lie
// roughly on a line are taken from the simulated layout; for each, a wind reading says
// the wind blows along the line, and the rise passes the nodes eight minutes apart.
struct PlumeCase {
  std::vector<const SimDevice*> nodes;
  double bearing = 0;
};

std::vector<PlumeCase> FindLines(const std::vector<SimDevice>& devices, size_t want) {
  std::vector<const SimDevice*> aq;
  for (const SimDevice& d : devices) {
    if (d.type == DeviceType::kAirQuality) aq.push_back(&d);
  }
  std::vector<PlumeCase> out;
  std::set<const SimDevice*> used;
  for (const SimDevice* a : aq) {
    for (const SimDevice* b : aq) {
      for (const SimDevice* c : aq) {
        if (out.size() >= want) return out;
        if (a == b || b == c || a == c || used.count(a) || used.count(b) || used.count(c)) {
          continue;
        }
        double ab = HaversineM(a->lat, a->lon, b->lat, b->lon);
        double bc = HaversineM(b->lat, b->lon, c->lat, c->lon);
        if (ab > 5000 || bc > 5000 || ab < 1000 || bc < 1000) continue;
        double b1 = BearingDeg(a->lat, a->lon, b->lat, b->lon);
        double b2 = BearingDeg(b->lat, b->lon, c->lat, c->lon);
        double diff = std::fabs(std::fmod(b1 - b2 + 540.0, 360.0) - 180.0);
        if (diff > 15) continue;
        out.push_back(PlumeCase{{a, b, c}, b1});
        used.insert({a, b, c});
      }
    }
  }
  return out;
}

struct PlumeRun {
  size_t detected = 0, expected = 0, other = 0;
};

PlumeRun RunPlumes(bool wind_along_line) {
  Sim sim = CitySim();
  std::vector<PlumeCase> lines = FindLines(sim.devices, 6);
  EXPECT_GE(lines.size(), 3u);
  Symbol pm25 = Intern("pm25"), wdir = Intern("wind_direction");
  std::set<std::string> expected;
  for (size_t k = 0; k < lines.size(); ++k) {
    const PlumeCase& pc = lines[k];
    TimeUs t0 = kStart + 6 * kMicrosPerHour + static_cast<TimeUs>(k) * 10 * kMicrosPerHour;
    // The wind: from the opposite of the line's bearing (it blows along the line), or
    // (the control) against it. Reported by a mast at the first node an hour earlier.
    double from = std::fmod(pc.bearing + (wind_along_line ? 180.0 : 0.0), 360.0);
    Reading w;
    w.device = Intern("mast");
    w.metric = wdir;
    w.event_time = w.arrival_time = t0 - kMicrosPerHour;
    w.value = from;
    w.lat = 52.52;
    w.lon = 13.40;
    auto pos = std::lower_bound(sim.stream.begin(), sim.stream.end(), w.arrival_time,
                                [](const Reading& r, TimeUs t) { return r.arrival_time < t; });
    sim.stream.insert(pos, w);
    std::string key;
    for (size_t n = 0; n < 3; ++n) {
      Inject(sim.stream, Intern(pc.nodes[n]->id), pm25, t0 + static_cast<TimeUs>(n) * 8 * kMin,
             5 * kMin, 40 * kMin, 40.0);
      key += (n ? ">" : "") + pc.nodes[n]->id;
    }
    expected.insert(key);
  }
  auto rules = Parse(
      "    - {name: plume, kind: sequence, count: 3, downwind: true, within: 30m, radius_m: 5000,\n"
      "       direction_tolerance: 30,\n"
      "       conditions: [{metric: pm25, trend: rising, min_change: 25, over: 10m}]}\n");
  EXPECT_TRUE(rules.ok()) << rules.status().ToString();
  PatternOperator op(std::move(rules).value());
  PlumeRun run;
  run.expected = expected.size();
  for (const AlertEvent& a : RunAll(op, sim.stream)) {
    if (a.state != AlertState::kFiring) continue;
    if (expected.count(std::string(a.key.view()))) {
      ++run.detected;
      EXPECT_EQ(a.value, 3);
      EXPECT_NE(a.message.find("downwind"), std::string::npos) << a.message;
    } else {
      ++run.other;
      std::printf("pattern plume: unexpected %s\n", a.message.c_str());
    }
  }
  return run;
}

TEST(PatternOperatorTest, SequenceOfRisesDownwindAtThreeNodes) {
  PlumeRun along = RunPlumes(true);
  std::printf(
      "pattern plume: %zu/%zu injected downwind sequences detected, %zu other alerts in "
      "3 days\n",
      along.detected, along.expected, along.other);
  EXPECT_EQ(along.detected, along.expected);
  EXPECT_EQ(along.other, 0u);
  // The same rises with the wind the other way are upwind: no match.
  PlumeRun against = RunPlumes(false);
  std::printf("pattern plume, wind reversed: %zu matches\n", against.detected + against.other);
  EXPECT_EQ(against.detected, 0u);
}

TEST(PatternOperatorTest, WindowSourceAndSnapshotRestore) {
  // Per-device five-minute means rising at two stations: the window results are the input.
  auto rules = Parse(
      "    - {name: pair, kind: co_occurrence, source: d5, within: 15m, radius_m: 2000,\n"
      "       conditions: [{metric: pm25, trend: rising, min_change: 10},\n"
      "                    {metric: no2, trend: above, level: 80}]}\n");
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  auto window = [](const char* dev, const char* metric, TimeUs end, double mean) {
    WindowResult w;
    w.window = Intern("d5");
    w.group_by = Intern("device");
    w.group = Intern(dev);
    w.metric = Intern(metric);
    w.start = end - 5 * kMin;
    w.end = end;
    w.mean = mean;
    w.centroid_lat = 52.5;
    w.centroid_lon = std::string_view(dev) == "a" ? 13.40 : 13.41;
    return w;
  };
  std::vector<std::vector<WindowResult>> batches = {
      {window("a", "pm25", kStart + 5 * kMin, 10), window("b", "no2", kStart + 5 * kMin, 20)},
      {window("a", "pm25", kStart + 10 * kMin, 12), window("b", "no2", kStart + 10 * kMin, 30)},
      {window("a", "pm25", kStart + 15 * kMin, 30)},  // +18: rising event at a
      {window("b", "no2", kStart + 20 * kMin, 95)},   // above: completes the match
      {window("a", "pm25", kStart + 90 * kMin, 31)},
  };
  auto run = [&](PatternOperator& op, size_t from, size_t to) {
    std::vector<AlertEvent> out;
    for (size_t i = from; i < to; ++i) {
      Batch b;
      b.windows = batches[i];
      b.watermark = b.windows.front().end;
      EXPECT_TRUE(op.Process(b).ok());
      out.insert(out.end(), b.alerts.begin(), b.alerts.end());
    }
    return out;
  };
  PatternOperator a(*rules);
  run(a, 0, 3);
  CheckpointWriter w;
  ASSERT_TRUE(a.Snapshot(w).ok());
  PatternOperator b(*rules);
  CheckpointReader rd(w.bytes());
  ASSERT_TRUE(b.Restore(rd).ok());
  ASSERT_TRUE(rd.at_end());
  std::vector<AlertEvent> ea = run(a, 3, 5), eb = run(b, 3, 5);
  ASSERT_EQ(ea.size(), 2u);
  EXPECT_EQ(ea[0].state, AlertState::kFiring);
  EXPECT_EQ(ea[0].key.view(), "a+b");
  EXPECT_EQ(ea[0].fired_at, kStart + 20 * kMin);
  EXPECT_EQ(ea[1].state, AlertState::kResolved);
  ASSERT_EQ(eb.size(), ea.size());
  for (size_t i = 0; i < ea.size(); ++i) {
    EXPECT_EQ(ea[i].key, eb[i].key);
    EXPECT_EQ(ea[i].state, eb[i].state);
    EXPECT_EQ(ea[i].message, eb[i].message);
  }
}

}  // namespace
}  // namespace tributary
