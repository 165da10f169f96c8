#include "io/sources/simulator.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <chrono>
#include <cmath>
#include <map>
#include <set>
#include <thread>

#include "core/pipeline_config.h"
#include "core/registry.h"

namespace tributary {
namespace {

constexpr char kStart[] = "2024-05-01T00:00:00Z";  // a Wednesday

SimulatorOptions FixedOptions(DurationUs duration) {
  SimulatorOptions o;
  o.start = *ParseTime(kStart);
  o.duration = duration;
  o.as_fast_as_possible = true;
  return o;
}

std::vector<SimMessage> Drain(Simulator& sim, size_t limit = SIZE_MAX) {
  std::vector<SimMessage> out;
  SimMessage m;
  while (out.size() < limit && sim.Next(m)) out.push_back(m);
  return out;
}

OptionReader Reader(const std::string& yaml) {
  return OptionReader(YAML::Load(yaml), "test.yaml", "sources[0]", {&SimulatorSectionSpec()});
}

std::string ParseError(const std::string& yaml) {
  Result<SimulatorOptions> r = ParseSimulatorOptions(Reader(yaml));
  return r.ok() ? "ok" : r.status().message();
}

// Physical bounds every well-formed value must respect.
const std::map<std::string, std::pair<double, double>>& Bounds() {
  static const std::map<std::string, std::pair<double, double>> kBounds = {
      {"pm25", {0, 500}},         {"pm10", {0, 600}},          {"no2", {0, 400}},
      {"temperature", {-40, 50}}, {"humidity", {0, 100}},      {"pressure", {950, 1060}},
      {"wind_speed", {0, 40}},    {"soil_moisture", {0, 100}}, {"stage", {0, 10}},
      {"flow", {0, 1000}}};
  return kBounds;
}

TEST(SimulatorTest, SameSeedAndStartGiveTheSameByteStream) {
  SimulatorOptions o = FixedOptions(2 * kMicrosPerHour);
  o.outages_per_day = 5;  // make every code path busy
  Simulator a(o), b(o);
  std::vector<SimMessage> ma = Drain(a), mb = Drain(b);
  ASSERT_GT(ma.size(), 20000u);
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i) {
    ASSERT_EQ(ma[i].payload, mb[i].payload) << "message " << i;
    ASSERT_EQ(ma[i].arrival_time, mb[i].arrival_time) << "message " << i;
    ASSERT_EQ(ma[i].sequence, i);
  }

  SimulatorOptions other = o;
  other.seed = 43;
  Simulator c(other);
  std::vector<SimMessage> mc = Drain(c, 1000);
  size_t same = 0;
  for (size_t i = 0; i < mc.size(); ++i) same += mc[i].payload == ma[i].payload;
  EXPECT_LT(same, 10u);
}

TEST(SimulatorTest, MessagesComeOutInArrivalOrderWithinTheDuration) {
  SimulatorOptions o = FixedOptions(3 * kMicrosPerHour);
  o.outages_per_day = 10;
  o.duplicate_rate = 0.05;
  Simulator sim(o);
  std::vector<SimMessage> msgs = Drain(sim);
  ASSERT_FALSE(msgs.empty());
  for (size_t i = 1; i < msgs.size(); ++i) {
    ASSERT_LE(msgs[i - 1].arrival_time, msgs[i].arrival_time) << i;
  }
  EXPECT_GE(msgs.front().arrival_time, o.start);
  EXPECT_LT(msgs.back().arrival_time, o.start + o.duration);
  EXPECT_GT(msgs.back().arrival_time, o.start + o.duration - kMicrosPerMinute);
  EXPECT_EQ(sim.PeekArrival(), kMaxTime);
  SimMessage m;
  EXPECT_FALSE(sim.Next(m));
}

TEST(SimulatorTest, DefaultLayoutIsACityNetwork) {
  Simulator sim(FixedOptions(kMicrosPerHour));
  const std::vector<SimDevice>& devices = sim.devices();
  ASSERT_EQ(devices.size(), 200u);
  std::map<DeviceType, int> by_type;
  std::set<std::string> ids;
  int projected = 0, mg = 0, ahead = 0, drifting = 0;
  for (const SimDevice& d : devices) {
    ++by_type[d.type];
    EXPECT_TRUE(ids.insert(d.id).second) << d.id;
    EXPECT_NEAR(d.lat, 52.52, 0.1) << d.id;  // 10 km ≈ 0.09° of latitude
    EXPECT_NEAR(d.lon, 13.40, 0.15) << d.id;
    EXPECT_LE(std::fabs(d.x_km), 10.0 + 1e-9);
    EXPECT_LE(std::fabs(d.y_km), 10.0 + 1e-9);
    projected += d.projected;
    if (d.mg_m3) {
      ++mg;
      EXPECT_EQ(d.type, DeviceType::kAirQuality);
    }
    if (d.clock_ahead != 0) {
      ++ahead;
      EXPECT_GE(d.clock_ahead, 2 * kMicrosPerMinute);
      EXPECT_LE(d.clock_ahead, 12 * kMicrosPerMinute);
    }
    if (d.drift_per_hour_s != 0) {
      ++drifting;
      // 5 to 30 s a day.
      EXPECT_GE(std::fabs(d.drift_per_hour_s), 5.0 / 24 - 1e-9);
      EXPECT_LE(std::fabs(d.drift_per_hour_s), 30.0 / 24 + 1e-9);
    }
  }
  EXPECT_EQ(by_type[DeviceType::kAirQuality], 100);
  EXPECT_EQ(by_type[DeviceType::kWeather], 30);
  EXPECT_EQ(by_type[DeviceType::kRiver], 20);
  EXPECT_EQ(by_type[DeviceType::kSoil], 50);
  EXPECT_EQ(projected, 10);
  EXPECT_EQ(mg, 10);
  EXPECT_EQ(ahead, 2);
  EXPECT_EQ(drifting, 6);
  EXPECT_EQ(sim.projected_crs(), "EPSG:32633");
  EXPECT_TRUE(ids.count("aq-0001") && ids.count("ws-0030") && ids.count("rg-0020") &&
              ids.count("sm-0050"));
}

// Independent check of the Krüger series: Snyder's (USGS PP 1395) series, accurate to
// millimetres within a few degrees of the central meridian.
void SnyderUtm(double lat, double lon, double lon0, double& x, double& y) {
  const double a = 6378137.0, f = 1 / 298.257223563, k0 = 0.9996;
  const double e2 = f * (2 - f), ep2 = e2 / (1 - e2);
  const double phi = lat * M_PI / 180, dl = (lon - lon0) * M_PI / 180;
  const double n = a / std::sqrt(1 - e2 * std::sin(phi) * std::sin(phi));
  const double t = std::tan(phi) * std::tan(phi), c = ep2 * std::cos(phi) * std::cos(phi);
  const double aa = dl * std::cos(phi);
  const double e4 = e2 * e2, e6 = e4 * e2;
  const double m = a * ((1 - e2 / 4 - 3 * e4 / 64 - 5 * e6 / 256) * phi -
                        (3 * e2 / 8 + 3 * e4 / 32 + 45 * e6 / 1024) * std::sin(2 * phi) +
                        (15 * e4 / 256 + 45 * e6 / 1024) * std::sin(4 * phi) -
                        (35 * e6 / 3072) * std::sin(6 * phi));
  x = 500000 + k0 * n *
                   (aa + (1 - t + c) * std::pow(aa, 3) / 6 +
                    (5 - 18 * t + t * t + 72 * c - 58 * ep2) * std::pow(aa, 5) / 120);
  y = k0 * (m + n * std::tan(phi) *
                    (aa * aa / 2 + (5 - t + 9 * c + 4 * c * c) * std::pow(aa, 4) / 24 +
                     (61 - 58 * t + t * t + 600 * c - 330 * ep2) * std::pow(aa, 6) / 720));
}

TEST(SimulatorTest, UtmMatchesAnIndependentFormula) {
  for (double lat : {0.5, 30.0, 48.1, 52.52, 60.0, 70.0}) {
    for (double lon : {12.0, 13.4, 15.0, 16.9}) {
      double x = 0, y = 0, sx = 0, sy = 0;
      LatLonToUtm(lat, lon, 33, false, x, y);
      SnyderUtm(lat, lon, 15.0, sx, sy);
      EXPECT_NEAR(x, sx, 0.02) << lat << "," << lon;
      EXPECT_NEAR(y, sy, 0.02) << lat << "," << lon;
    }
  }
  // On the central meridian the easting is the false easting exactly.
  double x = 0, y = 0;
  LatLonToUtm(52.0, 15.0, 33, false, x, y);
  EXPECT_NEAR(x, 500000.0, 1e-6);
  // Southern hemisphere: false northing of 10 000 km.
  LatLonToUtm(-33.9, 18.4, 34, true, x, y);
  double sx = 0, sy = 0;
  SnyderUtm(-33.9, 18.4, 21.0, sx, sy);
  EXPECT_NEAR(x, sx, 0.02);
  EXPECT_NEAR(y, 10000000.0 + sy, 0.02);
}

TEST(SimulatorTest, ValuesArePlausibleAndFollowTheDay) {
  SimulatorOptions o = FixedOptions(kMicrosPerDay);
  o.devices = 100;
  o.malformed_rate = 0;
  Simulator sim(o);
  simdjson::dom::parser parser;
  std::array<double, 24> temp_sum{}, pm_sum{};
  std::array<int, 24> temp_n{}, pm_n{};
  std::set<std::string> types_seen;
  uint64_t messages = 0;
  SimMessage m;
  while (sim.Next(m)) {
    ++messages;
    simdjson::dom::element doc;
    ASSERT_EQ(parser.parse(m.payload).get(doc), simdjson::SUCCESS) << m.payload;
    const SimDevice& dev = sim.devices()[m.device];
    types_seen.insert(std::string(DeviceTypeName(dev.type)));
    std::string_view id;
    ASSERT_EQ(doc["device_id"].get(id), simdjson::SUCCESS);
    EXPECT_EQ(id, dev.id);
    int64_t ts = 0;
    ASSERT_EQ(doc["sensor_ts"].get(ts), simdjson::SUCCESS);
    EXPECT_EQ(ts * kMicrosPerMilli, m.sensor_time);
    for (std::string_view metric : DeviceTypeMetrics(dev.type)) {
      double v = 0;
      ASSERT_EQ(doc[metric].get(v), simdjson::SUCCESS) << metric << " in " << m.payload;
      if (metric == "pm25" && dev.mg_m3) v *= 1000;
      auto [lo, hi] = Bounds().at(std::string(metric));
      EXPECT_GE(v, lo) << m.payload;
      EXPECT_LE(v, hi) << m.payload;
    }
    int hour = static_cast<int>(FloorDiv(m.sample_time - o.start, kMicrosPerHour));
    if (hour < 0 || hour > 23) continue;
    if (dev.type == DeviceType::kWeather) {
      temp_sum[hour] += doc["temperature"].get_double().value();
      ++temp_n[hour];
    }
    if (dev.type == DeviceType::kAirQuality && !dev.mg_m3) {
      pm_sum[hour] += doc["pm25"].get_double().value();
      ++pm_n[hour];
    }
  }
  EXPECT_EQ(types_seen.size(), 4u);
  EXPECT_NEAR(static_cast<double>(messages), 100 * 24 * 60, 100 * 24 * 60 * 0.02);
  EXPECT_EQ(messages, sim.stats().messages);

  // Temperature: a diurnal cycle peaking mid-afternoon local time (UTC+1 in Berlin).
  int warmest = 0, coldest = 0;
  std::array<double, 24> temp{}, pm{};
  for (int h = 0; h < 24; ++h) {
    ASSERT_GT(temp_n[h], 0);
    temp[h] = temp_sum[h] / temp_n[h];
    pm[h] = pm_sum[h] / pm_n[h];
    if (temp[h] > temp[warmest]) warmest = h;
    if (temp[h] < temp[coldest]) coldest = h;
  }
  double amplitude = temp[warmest] - temp[coldest];
  EXPECT_GT(amplitude, 4.0);
  EXPECT_LT(amplitude, 16.0);
  EXPECT_GE(warmest, 11);  // 12:00–17:00 local
  EXPECT_LE(warmest, 16);
  EXPECT_TRUE(coldest <= 6 || coldest >= 22) << coldest;
  // PM2.5: the morning rush hour (07:00–09:00 local) is well above the small hours.
  double rush = (pm[6] + pm[7]) / 2, night = (pm[1] + pm[2]) / 2;
  EXPECT_GT(rush, 1.3 * night) << rush << " vs " << night;
}

TEST(SimulatorTest, InjectedFaultsMatchTheCounters) {
  SimulatorOptions o = FixedOptions(6 * kMicrosPerHour);
  o.malformed_rate = 0.05;
  o.duplicate_rate = 0.02;
  o.outages_per_day = 6;
  Simulator sim(o);
  simdjson::dom::parser parser;
  std::set<std::string> seen;
  uint64_t not_json = 0, lat_out = 0, furlongs = 0, mg = 0, projected = 0, repeats = 0;
  uint64_t well_formed = 0, far_behind = 0, ahead_messages = 0, metric_values = 0;
  std::map<SimMessageKind, uint64_t> kinds;
  SimMessage m;
  while (sim.Next(m)) {
    ++kinds[m.kind];
    const SimDevice& dev = sim.devices()[m.device];
    // Truncated payloads may coincide (same short prefix); compare well-formed ones.
    if (m.kind != SimMessageKind::kMalformed && !seen.insert(m.payload).second) {
      ++repeats;
      EXPECT_EQ(m.kind, SimMessageKind::kDuplicate);
    }
    simdjson::dom::element doc;
    if (parser.parse(m.payload).get(doc) != simdjson::SUCCESS) {
      ++not_json;
      ASSERT_EQ(m.kind, SimMessageKind::kMalformed);
      EXPECT_TRUE(m.malformed == MalformedKind::kTruncatedJson ||
                  m.malformed == MalformedKind::kInvalidJson ||
                  m.malformed == MalformedKind::kNanCoordinate);
      continue;
    }
    double lat = 0;
    bool has_lat = doc["lat"].get(lat) == simdjson::SUCCESS;
    std::string_view crs;
    bool has_crs = doc["crs"].get(crs) == simdjson::SUCCESS;
    EXPECT_NE(has_lat, has_crs) << m.payload;
    std::string_view pm_unit, first_unit;
    simdjson::dom::object units;
    bool has_units = doc["units"].get(units) == simdjson::SUCCESS;
    bool is_furlongs = false;
    if (has_units) {
      for (auto field : units) {
        if (field.value.get_string().value() == "furlongs") is_furlongs = true;
      }
      if (units["pm25"].get(pm_unit) != simdjson::SUCCESS) pm_unit = {};
    }
    if (has_lat && lat > 90) {
      ++lat_out;
      EXPECT_EQ(m.malformed, MalformedKind::kLatOutOfRange);
      EXPECT_EQ(lat, 123.4);
    }
    if (is_furlongs) {
      ++furlongs;
      EXPECT_EQ(m.malformed, MalformedKind::kUnknownUnit);
    }
    if (m.kind == SimMessageKind::kMalformed) continue;
    ++well_formed;
    metric_values += DeviceTypeMetrics(dev.type).size();
    if (pm_unit == "mg/m3") {
      ++mg;
      EXPECT_TRUE(dev.mg_m3);
      EXPECT_LT(doc["pm25"].get_double().value(), 0.5);
    }
    if (has_crs) {
      ++projected;
      EXPECT_EQ(crs, "EPSG:32633");
      double x = doc["x"].get_double().value(), y = doc["y"].get_double().value();
      EXPECT_NEAR(x, dev.utm_x, 0.006);
      EXPECT_NEAR(y, dev.utm_y, 0.006);
      EXPECT_GT(x, 350000);
      EXPECT_LT(x, 450000);
    } else {
      EXPECT_EQ(lat, dev.lat);
      EXPECT_EQ(doc["lon"].get_double().value(), dev.lon);
    }
    int64_t ts = doc["sensor_ts"].get_int64().value();
    DurationUs behind = m.arrival_time - ts * kMicrosPerMilli;
    if (dev.clock_ahead == 0 && dev.drift_per_hour_s == 0) {
      if (m.kind == SimMessageKind::kLive) {
        EXPECT_GE(behind, 0) << m.payload;
        EXPECT_LT(behind, 2 * kMicrosPerSecond) << m.payload;
      }
      if (m.kind == SimMessageKind::kBurst && behind > 5 * kMicrosPerMinute) ++far_behind;
    }
    if (dev.clock_ahead >= 6 * kMicrosPerMinute && m.kind == SimMessageKind::kLive) {
      ++ahead_messages;
      EXPECT_GT(-behind, 5 * kMicrosPerMinute) << m.payload;
    }
  }
  const SimulatorStats& s = sim.stats();
  const auto by_kind = [&](MalformedKind k) { return s.malformed_by_kind[static_cast<size_t>(k)]; };
  EXPECT_EQ(s.messages,
            s.live_messages + s.burst_messages + s.duplicate_messages + s.malformed_messages);
  EXPECT_EQ(kinds[SimMessageKind::kLive], s.live_messages);
  EXPECT_EQ(kinds[SimMessageKind::kBurst], s.burst_messages);
  EXPECT_EQ(kinds[SimMessageKind::kDuplicate], s.duplicate_messages);
  EXPECT_EQ(kinds[SimMessageKind::kMalformed], s.malformed_messages);
  EXPECT_EQ(not_json, by_kind(MalformedKind::kTruncatedJson) +
                          by_kind(MalformedKind::kInvalidJson) +
                          by_kind(MalformedKind::kNanCoordinate));
  EXPECT_EQ(lat_out, by_kind(MalformedKind::kLatOutOfRange));
  EXPECT_EQ(furlongs, by_kind(MalformedKind::kUnknownUnit));
  EXPECT_EQ(repeats, s.duplicate_messages);
  EXPECT_EQ(mg, s.mg_m3_messages);
  EXPECT_EQ(projected, s.projected_messages);
  EXPECT_EQ(well_formed, s.live_messages + s.burst_messages + s.duplicate_messages);
  EXPECT_EQ(metric_values, s.metric_values);
  // The rates are honoured roughly (binomial noise over ~70 000 messages).
  EXPECT_NEAR(static_cast<double>(s.malformed_messages) / s.messages, 0.05, 0.01);
  EXPECT_NEAR(static_cast<double>(s.duplicate_messages) / s.messages, 0.02, 0.006);
  for (size_t k = 0; k < kMalformedKindCount; ++k) {
    EXPECT_GT(s.malformed_by_kind[k], 100u) << MalformedKindName(static_cast<MalformedKind>(k));
  }
  // Outages: 200 devices × 6/day × 6 h ≈ 300; bursts carry readings far behind arrival.
  EXPECT_GT(s.outages, 150u);
  EXPECT_GT(s.burst_messages, 1000u);
  EXPECT_GT(far_behind, 100u);
  EXPECT_GT(s.max_burst_delay, 30 * kMicrosPerMinute);
  // At most the longest outage plus one interval, jitter and latency.
  EXPECT_LE(s.max_burst_delay, 40 * kMicrosPerMinute + kMicrosPerMinute + 4 * kMicrosPerSecond);
  EXPECT_GT(ahead_messages, 0u);
  EXPECT_GT(s.clock_ahead_messages, ahead_messages);
  EXPECT_GT(s.drifting_clock_messages, 0u);
}

TEST(SimulatorTest, DriftingClocksGainSecondsPerHour) {
  SimulatorOptions o = FixedOptions(4 * kMicrosPerHour);
  o.malformed_rate = 0;
  o.outages_per_day = 0;
  o.drifting_clock_share = 0.1;
  Simulator sim(o);
  SimMessage m;
  std::map<uint32_t, DurationUs> last_offset;
  while (sim.Next(m)) last_offset[m.device] = m.sensor_time - m.sample_time;
  int drifting = 0;
  for (const auto& [d, offset] : last_offset) {
    const SimDevice& dev = sim.devices()[d];
    if (dev.drift_per_hour_s == 0) continue;
    ++drifting;
    // After nearly four hours the offset is about four times the hourly drift.
    double expected_s = dev.drift_per_hour_s * 4;
    EXPECT_NEAR(static_cast<double>(offset) / 1e6, expected_s,
                std::fabs(dev.drift_per_hour_s) * 0.1 + 0.01)
        << dev.id;
  }
  EXPECT_EQ(drifting, 20);
}

TEST(SimulatorTest, PerTypeIntervals) {
  SimulatorOptions o = FixedOptions(kMicrosPerHour);
  o.type_interval[static_cast<size_t>(DeviceType::kRiver)] = 5 * kMicrosPerMinute;
  o.type_interval[static_cast<size_t>(DeviceType::kAirQuality)] = 10 * kMicrosPerSecond;
  o.malformed_rate = 0;
  o.duplicate_rate = 0;
  o.outages_per_day = 0;
  Simulator sim(o);
  Drain(sim);
  const auto& by_type = sim.stats().messages_by_type;
  EXPECT_NEAR(by_type[static_cast<size_t>(DeviceType::kRiver)], 20 * 12, 20);
  EXPECT_NEAR(by_type[static_cast<size_t>(DeviceType::kAirQuality)], 100 * 360, 100);
  EXPECT_NEAR(by_type[static_cast<size_t>(DeviceType::kWeather)], 30 * 60, 30);
}

TEST(SimulatorTest, OptionsComeFromTheSpecTable) {
  Result<SimulatorOptions> r = ParseSimulatorOptions(Reader("{}"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->devices, 200);
  EXPECT_EQ(r->interval, kMicrosPerMinute);
  EXPECT_DOUBLE_EQ(r->center_lat, 52.52);
  EXPECT_DOUBLE_EQ(r->malformed_rate, 0.01);
  EXPECT_EQ(r->start % kMicrosPerMinute, 0);  // now, floored to the minute
  EXPECT_LE(std::llabs(r->start - NowUs()), 2 * kMicrosPerMinute);

  r = ParseSimulatorOptions(
      Reader("seed: 7\ndevices: 50\nstart: 2024-05-01T06:00:00Z\nspeed: 60\nduration: 2h\n"
             "interval_river: 5m\nsoil_share: 0\nmalformed_rate: 0.1\n"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->seed, 7u);
  EXPECT_EQ(r->devices, 50);
  EXPECT_EQ(r->start, *ParseTime("2024-05-01T06:00:00Z"));
  EXPECT_DOUBLE_EQ(r->speed, 60);
  EXPECT_EQ(r->duration, 2 * kMicrosPerHour);
  EXPECT_EQ(r->IntervalOf(DeviceType::kRiver), 5 * kMicrosPerMinute);
  EXPECT_EQ(r->IntervalOf(DeviceType::kWeather), kMicrosPerMinute);
  EXPECT_EQ(r->type_share[3], 0.0);

  EXPECT_NE(ParseError("devices: 0\n").find("sources[0].devices"), std::string::npos);
  EXPECT_NE(ParseError("devices: 2000000\n").find("above the maximum"), std::string::npos);
  EXPECT_NE(ParseError("jitter: 40s\n").find("sources[0].jitter"), std::string::npos);
  EXPECT_NE(ParseError("start: yesterday\n").find("sources[0].start"), std::string::npos);
  EXPECT_NE(ParseError("outage_min: 1h\noutage_max: 5m\n").find("outage_min"), std::string::npos);
  EXPECT_NE(ParseError("malformed_rate: 2\n").find("malformed_rate"), std::string::npos);
  EXPECT_NE(ParseError("interval_soil: 500ms\n").find("interval_soil"), std::string::npos);
  EXPECT_NE(ParseError("air_quality_share: 0\nweather_share: 0\nriver_share: 0\nsoil_share: 0\n")
                .find("share"),
            std::string::npos);
}

TEST(SimulatorTest, RegisteredAsASourceType) {
  Result<PipelineConfig> config = ParsePipelineConfig(
      "sources:\n  - name: sim\n    type: simulator\n    devices: 5\n    start: "
      "2024-05-01T00:00:00Z\n    duration: 10m\n    as_fast_as_possible: true\n",
      "test.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  Result<std::unique_ptr<Source>> source = Registry::Get().MakeSource(config->sources[0]);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  RunContext ctx;
  ASSERT_TRUE((*source)->Open(ctx).ok());
  RawBatch batch;
  ASSERT_TRUE((*source)->Poll(batch, 100000, 0).ok());
  EXPECT_TRUE(batch.end_of_stream);
  EXPECT_NEAR(static_cast<double>(batch.size()), 50, 5);

  Result<PipelineConfig> bad = ParsePipelineConfig(
      "sources:\n  - name: sim\n    type: simulator\n    devices: 0\n", "test.yaml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("devices"), std::string::npos);
}

TEST(SimulatorSourceTest, AsFastAsPossibleDeliversTheWholeStreamInOrder) {
  SimulatorOptions o = FixedOptions(30 * kMicrosPerMinute);
  SimulatorSource source(o);
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  RawBatch batch;
  std::vector<std::string> payloads;
  int64_t expected_offset = 0;
  bool ended = false;
  for (int polls = 0; polls < 10000 && !ended; ++polls) {
    batch.Clear();
    ASSERT_TRUE(source.Poll(batch, 777, 0).ok());
    for (const RawRecord& r : batch.records) {
      EXPECT_EQ(r.offset, expected_offset++);
      EXPECT_EQ(r.partition, 0);
      EXPECT_GE(r.arrival_time, o.start);
      EXPECT_LT(r.arrival_time, o.start + o.duration);
      std::string topic = r.topic.str();
      EXPECT_EQ(topic.rfind("sim/", 0), 0u) << topic;
      payloads.emplace_back(batch.Payload(r));
    }
    ended = batch.end_of_stream;
  }
  ASSERT_TRUE(ended);
  EXPECT_EQ(payloads.size(), source.Stats().messages);
  // The same stream as the plain generator.
  Simulator sim(o);
  std::vector<SimMessage> direct = Drain(sim);
  ASSERT_EQ(direct.size(), payloads.size());
  for (size_t i = 0; i < direct.size(); ++i) ASSERT_EQ(direct[i].payload, payloads[i]) << i;
  // Topics name the device type and id.
  batch.Clear();
  SimulatorSource again(o);
  ASSERT_TRUE(again.Open(ctx).ok());
  ASSERT_TRUE(again.Poll(batch, 1, 0).ok());
  ASSERT_EQ(batch.size(), 1u);
  const SimDevice& d0 = sim.devices()[direct[0].device];
  EXPECT_EQ(batch.records[0].topic.str(),
            "sim/" + std::string(DeviceTypeName(d0.type)) + "/" + d0.id);
}

TEST(SimulatorSourceTest, FollowsTheSimulatedClock) {
  SimulatorOptions o = FixedOptions(0);
  o.as_fast_as_possible = false;
  o.speed = 60;  // one simulated minute per wall second
  SimulatorSource source(o);
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  auto t0 = std::chrono::steady_clock::now();
  RawBatch batch;
  TimeUs max_arrival = kMinTime;
  size_t records = 0;
  while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1)) {
    batch.Clear();
    ASSERT_TRUE(source.Poll(batch, 1000, 50 * kMicrosPerMilli).ok());
    EXPECT_FALSE(batch.end_of_stream);
    for (const RawRecord& r : batch.records) max_arrival = std::max(max_arrival, r.arrival_time);
    records += batch.size();
  }
  double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double simulated_s = static_cast<double>(max_arrival - o.start) / 1e6;
  // About one simulated minute; never ahead of the clock.
  EXPECT_GT(simulated_s, 40.0);
  EXPECT_LE(simulated_s, 60.0 * wall_s + 1.0);
  // About 200 devices × 1 report per minute.
  EXPECT_GT(records, 120u);
  EXPECT_LT(records, 300u);
}

TEST(SimulatorSourceTest, RateModeEmitsAboutTheTargetRate) {
  SimulatorOptions o = FixedOptions(0);
  o.as_fast_as_possible = false;
  o.rate = 2000;
  SimulatorSource source(o);
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  auto t0 = std::chrono::steady_clock::now();
  size_t records = 0;
  RawBatch batch;
  while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(500)) {
    batch.Clear();
    ASSERT_TRUE(source.Poll(batch, 100, 20 * kMicrosPerMilli).ok());
    records += batch.size();
  }
  double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GT(records, 500u);
  EXPECT_LE(static_cast<double>(records), 2000 * wall_s + 2);
}

TEST(SimulatorSourceTest, StopEndsABlockedPoll) {
  SimulatorOptions o = FixedOptions(0);
  o.as_fast_as_possible = false;
  o.speed = 1e-3;  // nothing becomes due for a long time
  SimulatorSource source(o);
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  RawBatch batch;
  ASSERT_TRUE(source.Poll(batch, 100, 0).ok());  // maybe the first few at the start
  batch.Clear();
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    source.Stop();
  });
  auto t0 = std::chrono::steady_clock::now();
  Status st = source.Poll(batch, 100, 30 * kMicrosPerSecond);
  auto waited = std::chrono::steady_clock::now() - t0;
  stopper.join();
  EXPECT_TRUE(st.ok());
  EXPECT_LT(waited, std::chrono::seconds(2));
}

TEST(SimulatorSourceTest, BoundedClockRunEndsAfterTheDuration) {
  SimulatorOptions o = FixedOptions(2 * kMicrosPerMinute);
  o.as_fast_as_possible = false;
  o.speed = 600;  // two simulated minutes in 0.2 s
  o.devices = 20;
  SimulatorSource source(o);
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  auto t0 = std::chrono::steady_clock::now();
  RawBatch batch;
  size_t records = 0;
  bool ended = false;
  while (!ended && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5)) {
    batch.Clear();
    ASSERT_TRUE(source.Poll(batch, 1000, 100 * kMicrosPerMilli).ok());
    records += batch.size();
    ended = batch.end_of_stream;
  }
  EXPECT_TRUE(ended);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(150));
  EXPECT_EQ(records, source.Stats().messages);
  EXPECT_NEAR(static_cast<double>(records), 40, 6);
}

}  // namespace
}  // namespace tributary
