// Source options of ingestion end to end: vendor formats (with the sample payloads in
// examples/payloads/), the field mapping, time zones, epoch units and a default CRS.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>

#include "core/ledger.h"
#include "core/run_context.h"
#include "ingest/ingest.h"
#include "io/sources/simulator.h"
#include "test_util.h"

namespace tributary {
namespace {

constexpr TimeUs kArrival = 1714564802000000;  // 2024-05-01T12:00:02Z

std::string Sample(const std::string& name) {
  return testing::ReadFile(
      (std::filesystem::path(TRIBUTARY_SOURCE_DIR) / "examples/payloads" / name).string());
}

class Stage {
 public:
  // `options`: YAML lines of the source (indented by the caller's 4 spaces).
  Status Build(const std::string& options) {
    std::string yaml = "sources:\n  - name: s\n    type: simulator\n" + options;
    auto parsed = ParsePipelineConfig(yaml, "test.yaml");
    if (!parsed.ok()) return parsed.status();
    config_ = std::move(parsed).value();
    config_.processing.max_future = 5 * kMicrosPerMinute;
    config_.processing.drift_threshold = 100 * kMicrosPerDay;
    config_.processing.dedup_horizon = kMicrosPerHour;
    auto made = IngestStage::Make(config_);
    if (!made.ok()) return made.status();
    stage_ = std::move(made).value();
    ctx_.config = &config_;
    ctx_.ledger = &ledger_;
    return stage_->Open(ctx_);
  }

  Batch Run(const std::string& payload, TimeUs arrival = kArrival) {
    RawBatch raw;
    raw.Add(payload, arrival, Intern("t"), 1, -1);
    Batch out;
    EXPECT_TRUE(stage_->Process(raw, out).ok());
    return out;
  }

 private:
  PipelineConfig config_;
  std::unique_ptr<IngestStage> stage_;
  Ledger ledger_;
  RunContext ctx_;
};

const Reading* Find(const Batch& b, std::string_view metric) {
  for (const Reading& r : b.readings) {
    if (r.metric.view() == metric) return &r;
  }
  return nullptr;
}

std::string Reasons(const Batch& b) {
  std::string s;
  for (const QuarantineRecord& q : b.quarantine)
    s += fmt::format("{}: {}\n", q.reason.view(), q.detail);
  return s;
}

TEST(IngestFormats, SensorCommunityPush) {
  Stage s;
  ASSERT_TRUE(s.Build("    format: sensor_community\n").ok());
  Batch b = s.Run(Sample("sensor_community.json"));
  ASSERT_TRUE(b.quarantine.empty()) << Reasons(b);
  ASSERT_EQ(b.readings.size(), 5u);  // pm10, pm25, temperature, pressure, humidity
  const Reading* pm25 = Find(b, "pm25");
  ASSERT_NE(pm25, nullptr);
  EXPECT_DOUBLE_EQ(pm25->value, 4.57);
  EXPECT_DOUBLE_EQ(Find(b, "pm10")->value, 9.40);
  const Reading* pressure = Find(b, "pressure");
  ASSERT_NE(pressure, nullptr);
  EXPECT_NEAR(pressure->value, 1003.74, 1e-9);  // Pa → hPa
  EXPECT_TRUE(pressure->flags.Has(QcFlag::kUnitConverted));
  EXPECT_EQ(pm25->device.view(), "15473641");
  EXPECT_EQ(pm25->event_time, kArrival);  // no timestamp: the arrival time
  EXPECT_DOUBLE_EQ(pm25->lat, 52.516275);
  EXPECT_EQ(pm25->prov.firmware.view(), "NRZ-2020-133");
}

TEST(IngestFormats, SensorCommunityApiRowAndBrokenEntries) {
  Stage s;
  ASSERT_TRUE(s.Build("    format: sensor_community\n").ok());
  Batch b = s.Run(Sample("sensor_community_api.json"));
  ASSERT_TRUE(b.quarantine.empty()) << Reasons(b);
  ASSERT_EQ(b.readings.size(), 2u);
  EXPECT_EQ(b.readings[0].device.view(), "17358");
  EXPECT_EQ(b.readings[0].event_time, *ParseTime("2024-05-01T12:00:03Z"));
  EXPECT_DOUBLE_EQ(Find(b, "pm25")->value, 6.20);
  EXPECT_DOUBLE_EQ(Find(b, "pm10")->lon, 13.391);

  b = s.Run(R"({"esp8266id":"1","sensordatavalues":[{"value":"1"}]})");
  ASSERT_EQ(b.quarantine.size(), 1u);
  EXPECT_EQ(b.quarantine[0].reason.view(), "missing_field");
  EXPECT_NE(b.quarantine[0].detail.find("sensordatavalues[0]"), std::string::npos);
  b = s.Run(R"({"esp8266id":"1","sensordatavalues":{}})");
  ASSERT_EQ(b.quarantine.size(), 1u);
  EXPECT_EQ(b.quarantine[0].reason.view(), "missing_field");
  // Push without GPS: no position, named by the format's own fields.
  b = s.Run(R"({"esp8266id":"1","sensordatavalues":[{"value_type":"SDS_P2","value":"3"}]})");
  ASSERT_EQ(b.quarantine.size(), 1u);
  EXPECT_NE(b.quarantine[0].detail.find("GPS_lat"), std::string::npos) << b.quarantine[0].detail;
}

TEST(IngestFormats, TtnV3Uplink) {
  Stage s;
  ASSERT_TRUE(s.Build("    format: ttn_v3\n").ok());
  Batch b = s.Run(Sample("ttn_v3.json"));
  ASSERT_TRUE(b.quarantine.empty()) << Reasons(b);
  ASSERT_EQ(b.readings.size(), 4u);  // battery is metadata
  const Reading* r = Find(b, "pm25");
  ASSERT_NE(r, nullptr);
  EXPECT_DOUBLE_EQ(r->value, 12.3);
  EXPECT_EQ(r->device.view(), "aq-node-17");
  EXPECT_EQ(r->event_time, *ParseTime("2024-05-01T12:00:00.987654Z"));  // gateway time
  EXPECT_DOUBLE_EQ(r->lat, 52.5201);  // locations.user before the gateway's location
  EXPECT_DOUBLE_EQ(r->lon, 13.4049);
  EXPECT_EQ(r->prov.firmware.view(), "2.4.1");

  // Device GPS in the decoded payload wins; without gateway time, received_at.
  b = s.Run(R"({"end_device_ids":{"device_id":"t1"},"uplink_message":{"decoded_payload":)"
            R"({"latitude":48.1,"longitude":11.5,"temperature":20,"bme":{"humidity":40}},)"
            R"("rx_metadata":[{"rssi":-90,"location":{"latitude":1,"longitude":2}}],)"
            R"("received_at":"2024-05-01T12:00:01Z"}})");
  ASSERT_TRUE(b.quarantine.empty()) << Reasons(b);
  ASSERT_EQ(b.readings.size(), 2u);
  EXPECT_DOUBLE_EQ(b.readings[0].lat, 48.1);
  EXPECT_EQ(b.readings[0].event_time, *ParseTime("2024-05-01T12:00:01Z"));
  EXPECT_NE(Find(b, "humidity"), nullptr);
  // Only the gateway knows a position.
  b = s.Run(R"({"end_device_ids":{"device_id":"t1"},"uplink_message":{"decoded_payload":)"
            R"({"pm25":7},"rx_metadata":[{"time":"2024-05-01T12:00:00Z"},)"
            R"({"location":{"latitude":50.5,"longitude":7.5}}]}})");
  ASSERT_EQ(b.readings.size(), 1u) << Reasons(b);
  EXPECT_DOUBLE_EQ(b.readings[0].lat, 50.5);
  // A join accept is not an uplink.
  b = s.Run(R"({"end_device_ids":{"device_id":"t1"},"join_accept":{}})");
  ASSERT_EQ(b.quarantine.size(), 1u);
  EXPECT_NE(b.quarantine[0].detail.find("uplink_message"), std::string::npos);
}

TEST(IngestFormats, ChirpstackV4Uplink) {
  Stage s;
  ASSERT_TRUE(s.Build("    format: chirpstack_v4\n").ok());
  Batch b = s.Run(Sample("chirpstack_v4.json"));
  ASSERT_TRUE(b.quarantine.empty()) << Reasons(b);
  ASSERT_EQ(b.readings.size(), 4u);
  const Reading* r = Find(b, "temperature");
  ASSERT_NE(r, nullptr);
  EXPECT_DOUBLE_EQ(r->value, 21.5);
  EXPECT_EQ(r->device.view(), "0101010101010101");
  EXPECT_EQ(r->event_time, *ParseTime("2024-05-01T12:00:00.512344Z"));
  EXPECT_DOUBLE_EQ(r->lat, 52.5301);  // the gateway's location
  b = s.Run(
      R"({"deviceInfo":{"deviceName":"n7"},"object":{"pm10":5},)"
      R"("rxInfo":[{"gwTime":"2024-05-01T12:00:00Z","location":{"latitude":1,"longitude":2}}]})");
  ASSERT_EQ(b.readings.size(), 1u) << Reasons(b);
  EXPECT_EQ(b.readings[0].device.view(), "n7");
  EXPECT_EQ(b.readings[0].event_time, *ParseTime("2024-05-01T12:00:00Z"));
}

TEST(IngestFormats, OpenWeatherMapUnits) {
  Stage standard;
  ASSERT_TRUE(standard.Build("    format: owm\n").ok());
  Batch b = standard.Run(Sample("owm.json"));
  ASSERT_TRUE(b.quarantine.empty()) << Reasons(b);
  ASSERT_EQ(b.readings.size(), 6u);
  const Reading* t = Find(b, "temperature");
  ASSERT_NE(t, nullptr);
  EXPECT_NEAR(t->value, 12.0, 1e-9);  // 285.15 K
  EXPECT_TRUE(t->flags.Has(QcFlag::kUnitConverted));
  EXPECT_EQ(t->device.view(), "owm-2950159");
  EXPECT_EQ(t->event_time, 1714564800 * kMicrosPerSecond);
  EXPECT_DOUBLE_EQ(t->lat, 52.5244);
  EXPECT_DOUBLE_EQ(Find(b, "pressure")->value, 1012);
  EXPECT_DOUBLE_EQ(Find(b, "wind_speed")->value, 4.12);
  EXPECT_DOUBLE_EQ(Find(b, "rainfall")->value, 0.35);

  Stage imperial;
  ASSERT_TRUE(imperial.Build("    format: owm\n    owm_units: imperial\n").ok());
  b = imperial.Run(R"({"coord":{"lon":1,"lat":2},"main":{"temp":50},"wind":{"speed":10},)"
                   R"("dt":1714564800,"name":"Somewhere","cod":200})");
  ASSERT_TRUE(b.quarantine.empty()) << Reasons(b);
  EXPECT_NEAR(Find(b, "temperature")->value, 10.0, 1e-9);
  EXPECT_NEAR(Find(b, "wind_speed")->value, 4.4704, 1e-9);
  EXPECT_EQ(b.readings[0].device.view(), "owm-Somewhere");

  b = standard.Run(R"({"cod":"404","message":"city not found"})");
  ASSERT_EQ(b.quarantine.size(), 1u);
  EXPECT_NE(b.quarantine[0].detail.find("city not found"), std::string::npos);
}

TEST(IngestFormats, FieldMappingTimeZoneAndDefaultCrs) {
  Stage s;
  Status st = s.Build(
      "    time_zone: Europe/Berlin\n"
      "    crs: EPSG:32633\n"
      "    mapping:\n"
      "      device_id: meta.dev\n"
      "      timestamp: ts\n"
      "      x: pos.e\n"
      "      y: pos.n\n"
      "      firmware: meta.fw\n"
      "      metrics: {pm2_5: pm25, noise_db: noise}\n"
      "      units: {pm25: mg/m3}\n");
  ASSERT_TRUE(st.ok()) << st.ToString();
  // 2024-03-31 02:30 in Berlin does not exist: the CET offset applies (→ 01:30Z).
  Batch b = s.Run(Sample("mapped.json"), *ParseTime("2024-03-31T01:31:00Z"));
  ASSERT_TRUE(b.quarantine.empty()) << Reasons(b);
  ASSERT_EQ(b.readings.size(), 2u);
  const Reading* pm = Find(b, "pm25");
  ASSERT_NE(pm, nullptr);
  EXPECT_NEAR(pm->value, 12.3, 1e-9);  // mg/m3 → µg/m³
  EXPECT_EQ(pm->device.view(), "st-114");
  EXPECT_EQ(pm->prov.firmware.view(), "1.9");
  EXPECT_EQ(pm->event_time, *ParseTime("2024-03-31T01:30:00Z"));
  EXPECT_TRUE(pm->flags.Has(QcFlag::kCrsTransformed));
  EXPECT_EQ(pm->prov.crs_source.view(), "EPSG:32633");
  EXPECT_DOUBLE_EQ(pm->prov.orig_x, 391000.5);
  EXPECT_DOUBLE_EQ(pm->prov.orig_y, 5820000.25);
  double x = 0, y = 0;
  LatLonToUtm(pm->lat, pm->lon, 33, false, x, y);
  EXPECT_NEAR(x, 391000.5, 0.01);
  EXPECT_NEAR(y, 5820000.25, 0.01);
  EXPECT_NE(Find(b, "noise_db"), nullptr);  // a configured new metric name
  // The ambiguous autumn hour: the first occurrence (CEST).
  b = s.Run(R"({"meta":{"dev":"a"},"ts":"2024-10-27T02:30:00","pos":{"e":391000,"n":5820000},)"
            R"("pm25":0.01})",
            *ParseTime("2024-10-27T00:31:00Z"));
  ASSERT_EQ(b.readings.size(), 1u) << Reasons(b);
  EXPECT_EQ(b.readings[0].event_time, *ParseTime("2024-10-27T00:30:00Z"));
  // An explicit offset is not reinterpreted; the payload's own unit wins over the config.
  b = s.Run(R"({"meta":{"dev":"b"},"ts":"2024-10-27T02:30:00Z","pos":{"e":391000,"n":5820000},)"
            R"("pm25":5,"units":{"pm25":"ug/m3"}})",
            *ParseTime("2024-10-27T02:31:00Z"));
  ASSERT_EQ(b.readings.size(), 1u) << Reasons(b);
  EXPECT_EQ(b.readings[0].event_time, *ParseTime("2024-10-27T02:30:00Z"));
  EXPECT_DOUBLE_EQ(b.readings[0].value, 5);
  // Fields outside the mapping are not metrics any more.
  b = s.Run(R"({"meta":{"dev":"c"},"ts":"2024-05-01T12:00:00Z","pos":{"e":391000,"n":5820000},)"
            R"("co2":400})");
  ASSERT_EQ(b.quarantine.size(), 1u);
  EXPECT_EQ(b.quarantine[0].reason.view(), "no_readings");
}

TEST(IngestFormats, EpochUnit) {
  Stage s;
  ASSERT_TRUE(s.Build("    epoch_unit: s\n").ok());
  // 1714564800 ms would be 1970 with the auto rule's magnitudes mis-set; here it is s.
  Batch b = s.Run(R"({"device_id":"d","ts":1714564800,"lat":1,"lon":2,"pm25":3})");
  ASSERT_EQ(b.readings.size(), 1u) << Reasons(b);
  EXPECT_EQ(b.readings[0].event_time, 1714564800 * kMicrosPerSecond);
  Stage ms;
  ASSERT_TRUE(ms.Build("    epoch_unit: ms\n").ok());
  b = ms.Run(R"({"device_id":"d","ts":"1714564800500","lat":1,"lon":2,"pm25":3})");
  ASSERT_EQ(b.readings.size(), 1u) << Reasons(b);
  EXPECT_EQ(b.readings[0].event_time, 1714564800500 * kMicrosPerMilli);
  // Seconds read as milliseconds land in 1970: far from arrival, but not in the future.
  b = ms.Run(R"({"device_id":"d","ts":1714564800,"lat":1,"lon":2,"pm25":3})");
  ASSERT_EQ(b.readings.size(), 1u) << Reasons(b);
  EXPECT_EQ(b.readings[0].event_time, 1714564800 * kMicrosPerMilli);
}

TEST(IngestFormats, OptionErrorsNameTheLineAndKey) {
  struct Case {
    std::string options;
    std::string expect;
  };
  for (const Case& c : std::vector<Case>{
           {"    format: csv\n", "format"},
           {"    time_zone: Mars/Base\n", "test.yaml:4"},
           {"    crs: EPSG:999999\n", "crs"},
           {"    crs: UTM33\n", "not an EPSG code"},
           {"    mapping:\n      device: x\n", "device"},
           {"    mapping:\n      device_id: \"a..b\"\n", "mapping.device_id"},
           {"    mapping:\n      metrics:\n        pm25: [a]\n", "test.yaml:6"},
           {"    mapping:\n      units:\n        pm25: parsecs\n", "mapping.units.pm25"},
           {"    format: owm\n    mapping: {device_id: x}\n", "format: json"},
       }) {
    Stage s;
    Status st = s.Build(c.options);
    ASSERT_FALSE(st.ok()) << c.options;
    EXPECT_NE(st.message().find(c.expect), std::string::npos)
        << c.options << " -> " << st.message();
  }
}

}  // namespace
}  // namespace tributary
