#include "ingest/ingest.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace tributary {
namespace {

constexpr TimeUs kEvent = 1714564800000000;                 // 2024-05-01T12:00:00Z
constexpr TimeUs kArrival = kEvent + 2 * kMicrosPerSecond;  // two seconds of latency

// The simulator's wide payload (src/io/sources/simulator.h) at kEvent.
std::string Wide(std::string_view device = "aq-0042", int64_t ts_ms = kEvent / 1000,
                 std::string_view extra = "") {
  return fmt::format(
      R"({{"device_id":"{}","sensor_ts":{},"lat":52.510123,"lon":13.391234,"pm25":12.3,)"
      R"("pm10":20.1,"no2":18.0,"temperature":14.21,"humidity":61.0,"battery_pct":88,)"
      R"("firmware":"aq-2.1.0"{}}})",
      device, ts_ms, extra);
}

// A minimal valid wide payload with the given extra fields.
std::string Rec(std::string_view fields, std::string_view device = "dev-1") {
  return fmt::format(R"({{"device_id":"{}","sensor_ts":{},"lat":52.5,"lon":13.4,{}}})", device,
                     kEvent / 1000, fields);
}

ProcessingOptions DefaultProcessing() {
  ProcessingOptions p;
  p.out_of_orderness = 30 * kMicrosPerSecond;
  p.idle_timeout = kMicrosPerMinute;
  p.grace = 15 * kMicrosPerMinute;
  p.dedup_horizon = kMicrosPerHour;
  p.drift_threshold = 5 * kMicrosPerMinute;
  p.max_future = 5 * kMicrosPerMinute;
  return p;
}

class IngestStageTest : public ::testing::Test {
 protected:
  void SetUp() override { Build(DefaultProcessing()); }

  void Build(ProcessingOptions p, std::vector<std::string> names = {"sim", "mqtt-city"}) {
    config_ = PipelineConfig{};
    config_.file = "<test>";
    config_.processing = p;
    for (const std::string& n : names) config_.sources.push_back(SourceEntry{n, "simulator", {}});
    auto made = IngestStage::Make(config_);
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    stage_ = std::move(made).value();
    ledger_ = std::make_unique<Ledger>();
    ctx_ = RunContext{};
    ctx_.config = &config_;
    ctx_.ledger = ledger_.get();
    ASSERT_TRUE(stage_->Open(ctx_).ok());
  }

  // Run payloads through the stage as one batch; checks the per-call ledger invariant.
  Batch Run(const std::vector<std::string>& payloads, TimeUs arrival = kArrival,
            uint16_t source = 0) {
    RawBatch raw;
    raw.source_index = source;
    int64_t offset = next_offset_;
    for (const std::string& p : payloads) raw.Add(p, arrival, Intern("sensors/test"), offset++, 3);
    next_offset_ = offset;
    LedgerSnapshot before = ledger_->Snapshot();
    Batch out;
    Status st = stage_->Process(raw, out);
    EXPECT_TRUE(st.ok()) << st.ToString();
    LedgerSnapshot after = ledger_->Snapshot();
    uint64_t input = after.input - before.input;
    uint64_t quarantined = after.quarantined - before.quarantined;
    uint64_t duplicate = after.duplicate - before.duplicate;
    EXPECT_EQ(input, out.readings.size() + quarantined + duplicate);
    EXPECT_EQ(quarantined, out.quarantine.size());
    EXPECT_EQ(duplicate, out.duplicates);
    return out;
  }
  Batch Run(const std::string& payload, TimeUs arrival = kArrival) {
    return Run(std::vector<std::string>{payload}, arrival);
  }

  // Exactly one quarantine record with `reason` and no readings; returns it.
  QuarantineRecord ExpectQuarantined(const std::string& payload, std::string_view reason,
                                     std::vector<std::string_view> detail_parts = {},
                                     TimeUs arrival = kArrival) {
    Batch out = Run(payload, arrival);
    EXPECT_TRUE(out.readings.empty()) << payload;
    EXPECT_EQ(out.quarantine.size(), 1u) << payload;
    if (out.quarantine.empty()) return {};
    const QuarantineRecord& q = out.quarantine[0];
    EXPECT_EQ(q.reason.view(), reason) << payload << " -> " << q.detail;
    for (std::string_view part : detail_parts) {
      EXPECT_NE(q.detail.find(part), std::string::npos) << "'" << part << "' not in: " << q.detail;
    }
    if (reason != "payload_too_large") {
      EXPECT_EQ(q.raw, payload);
    }
    EXPECT_EQ(q.arrival_time, arrival);
    EXPECT_EQ(q.prov.source.view(), "sim");
    EXPECT_EQ(q.prov.topic.view(), "sensors/test");
    EXPECT_EQ(q.prov.partition, 3);
    return q;
  }

  const Reading* Find(const Batch& b, std::string_view metric) {
    for (const Reading& r : b.readings) {
      if (r.metric.view() == metric) return &r;
    }
    return nullptr;
  }

  PipelineConfig config_;
  std::unique_ptr<IngestStage> stage_;
  std::unique_ptr<Ledger> ledger_;
  RunContext ctx_;
  int64_t next_offset_ = 1;
};

TEST_F(IngestStageTest, SimulatorWidePayloadBecomesOneReadingPerMetric) {
  Batch out = Run(Wide());
  ASSERT_EQ(out.readings.size(), 5u);
  EXPECT_TRUE(out.quarantine.empty());
  const char* metrics[] = {"pm25", "pm10", "no2", "temperature", "humidity"};
  double values[] = {12.3, 20.1, 18.0, 14.21, 61.0};
  for (size_t i = 0; i < 5; ++i) {
    const Reading& r = out.readings[i];
    EXPECT_EQ(r.metric.view(), metrics[i]);
    EXPECT_DOUBLE_EQ(r.value, values[i]);
    EXPECT_EQ(r.device.view(), "aq-0042");
    EXPECT_EQ(r.event_time, kEvent);
    EXPECT_EQ(r.arrival_time, kArrival);
    EXPECT_DOUBLE_EQ(r.lat, 52.510123);
    EXPECT_DOUBLE_EQ(r.lon, 13.391234);
    EXPECT_TRUE(r.flags.empty()) << QcFlagsToString(r.flags);
    EXPECT_EQ(r.prov.source.view(), "sim");
    EXPECT_EQ(r.prov.topic.view(), "sensors/test");
    EXPECT_EQ(r.prov.partition, 3);
    EXPECT_EQ(r.prov.offset, 1);
    EXPECT_EQ(r.prov.firmware.view(), "aq-2.1.0");
    EXPECT_TRUE(r.prov.crs_source.empty());
  }
  LedgerSnapshot s = ledger_->Snapshot();
  EXPECT_EQ(s.input, 5u);
  EXPECT_EQ(s.quarantined, 0u);
  EXPECT_EQ(s.duplicate, 0u);
}

TEST_F(IngestStageTest, ProvenanceNamesTheSourceOfTheBatch) {
  Batch out = Run({Wide()}, kArrival, 1);
  ASSERT_FALSE(out.readings.empty());
  EXPECT_EQ(out.readings[0].prov.source.view(), "mqtt-city");
  RawBatch bad;
  bad.source_index = 7;
  bad.Add(Wide(), kArrival);
  Batch ignored;
  EXPECT_FALSE(stage_->Process(bad, ignored).ok());
}

TEST_F(IngestStageTest, MgPerCubicMetreIsConvertedAndFlagged) {
  // The simulator's mg/m³ vendor: pm25 = µg/m³ value / 1000 with 4 decimals.
  Batch out =
      Run(R"({"device_id":"aq-0100","sensor_ts":1714564800000,"lat":52.5,"lon":13.4,"pm25":0.0123,)"
          R"("pm10":20.1,"no2":18.0,"temperature":14.21,"humidity":61.0,"battery_pct":88,)"
          R"("firmware":"pm-vx-1.4.2","units":{"pm25":"mg/m3"}})");
  ASSERT_EQ(out.readings.size(), 5u);
  const Reading* pm25 = Find(out, "pm25");
  ASSERT_NE(pm25, nullptr);
  EXPECT_NEAR(pm25->value, 12.3, 1e-9);
  EXPECT_TRUE(pm25->flags.Has(QcFlag::kUnitConverted));
  EXPECT_EQ(pm25->prov.firmware.view(), "pm-vx-1.4.2");
  EXPECT_FALSE(Find(out, "pm10")->flags.Has(QcFlag::kUnitConverted));
  EXPECT_EQ(Find(out, "pm10")->value, 20.1);
}

TEST_F(IngestStageTest, UnitConversionsToCanonicalUnits) {
  struct Case {
    std::string fields;
    std::string metric;
    double expected;
    bool converted;
  };
  std::vector<Case> cases = {
      {R"("pm25":0.0123,"units":{"pm25":"mg/m3"})", "pm25", 12.3, true},
      {R"("pm25":12.3,"units":{"pm25":"µg/m³"})", "pm25", 12.3, false},
      {R"("pm25":12.3,"units":{"PM2.5":"ug/m^3"})", "pm25", 12.3, false},
      {R"("pm2_5":0.004,"units":{"pm2_5":"mg_m3"})", "pm25", 4.0, true},
      {R"("temperature":68,"units":{"temperature":"°F"})", "temperature", 20.0, true},
      {R"("temperature":293.15,"unit":"K")", "temperature", 20.0, true},
      {R"("temp_f":50)", "temperature", 10.0, true},
      {R"("pressure":101.325,"units":{"pressure":"kPa"})", "pressure", 1013.25, true},
      {R"("pressure":29.92,"units":{"pressure":"inHg"})", "pressure", 1013.2074, true},
      {R"("pressure":1013,"units":{"pressure":"mbar"})", "pressure", 1013.0, false},
      {R"("pm10":25000,"units":{"pm10":"ng/m3"})", "pm10", 25.0, true},
      {R"("no2":0.02,"units":{"no2":"ppm"})", "no2", 20.0, true},
      {R"("no2":20,"units":{"no2":"ppb"})", "no2", 20.0, false},
      {R"("no2":37.632,"units":{"no2":"ug/m3"})", "no2", 20.0, true},
      {R"("o3":98.156,"units":{"o3":"µg/m³"})", "o3", 50.0, true},
      {R"("so2":0.026203,"units":{"so2":"mg/m3"})", "so2", 10.0, true},
      {R"("co":0.5,"units":{"co":"ppm"})", "co", 500.0, true},
      {R"("co":1.145603,"units":{"co":"mg/m3"})", "co", 1000.0, true},
      {R"("temperature":20,"units":{"temperature":"degC"})", "temperature", 20.0, false},
      {R"("wind_speed":36,"units":{"wind_speed":"km/h"})", "wind_speed", 10.0, true},
      {R"("wind_speed":10,"units":{"wind_speed":"mph"})", "wind_speed", 4.4704, true},
      {R"("wind_speed":10,"units":{"wind_speed":"knots"})", "wind_speed", 5.14444, true},
      {R"("stage":10,"units":{"stage":"ft"})", "stage", 3.048, true},
      {R"("flow":1000,"units":{"flow":"cfs"})", "flow", 28.316846592, true},
      {R"("humidity":55,"units":{"humidity":"%"})", "humidity", 55.0, false},
      {R"("soil_moisture":31.5,"units":{"soil_moisture":"%"})", "soil_moisture", 31.5, false},
      {R"("dissolved_oxygen":8.2,"units":{"dissolved_oxygen":"ppm"})", "dissolved_oxygen", 8.2,
       false},
      {R"("conductivity":1.2,"units":{"conductivity":"mS/cm"})", "conductivity", 1200.0, true},
  };
  int n = 0;
  for (const Case& c : cases) {
    // A new device per case keeps dedup out of the way.
    Batch out = Run(Rec(c.fields, "conv-" + std::to_string(n++)));
    ASSERT_EQ(out.readings.size(), 1u)
        << c.fields << " " << (out.quarantine.empty() ? "" : out.quarantine[0].detail);
    const Reading& r = out.readings[0];
    EXPECT_EQ(r.metric.view(), c.metric) << c.fields;
    EXPECT_NEAR(r.value, c.expected, 1e-3) << c.fields;
    EXPECT_EQ(r.flags.Has(QcFlag::kUnitConverted), c.converted) << c.fields;
  }
}

TEST_F(IngestStageTest, UnknownUnitQuarantinesOnlyThatReading) {
  // The simulator's unknown_unit fault: the first metric's unit is "furlongs".
  Batch out = Run(Wide("aq-0007", kEvent / 1000, R"(,"units":{"pm25":"furlongs"})"));
  ASSERT_EQ(out.readings.size(), 4u);
  ASSERT_EQ(out.quarantine.size(), 1u);
  const QuarantineRecord& q = out.quarantine[0];
  EXPECT_EQ(q.reason.view(), "unknown_unit");
  EXPECT_EQ(q.metric.view(), "pm25");
  EXPECT_EQ(q.device.view(), "aq-0007");
  EXPECT_NE(q.detail.find("pm25"), std::string::npos);
  EXPECT_NE(q.detail.find("furlongs"), std::string::npos);
  EXPECT_EQ(q.prov.firmware.view(), "aq-2.1.0");
  EXPECT_EQ(Find(out, "pm25"), nullptr);
  LedgerSnapshot s = ledger_->Snapshot();
  EXPECT_EQ(s.input, 5u);
  EXPECT_EQ(s.quarantined, 1u);
  EXPECT_EQ(s.quarantine_reasons["unknown_unit"], 1u);
}

TEST_F(IngestStageTest, UnitOfTheWrongDimensionIsUnknownForThatMetric) {
  Batch out = Run(Rec(R"("temperature":20,"pm25":5,"unit":"ug/m3")"));
  ASSERT_EQ(out.readings.size(), 1u);
  EXPECT_EQ(out.readings[0].metric.view(), "pm25");
  ASSERT_EQ(out.quarantine.size(), 1u);
  EXPECT_EQ(out.quarantine[0].reason.view(), "unknown_unit");
  EXPECT_EQ(out.quarantine[0].metric.view(), "temperature");
  EXPECT_NE(out.quarantine[0].detail.find("not a unit of temperature"), std::string::npos)
      << out.quarantine[0].detail;
}

TEST_F(IngestStageTest, LongShapeFromSeed001) {
  Batch out = Run(std::vector<std::string>{
      R"({"timestamp":"2024-05-01T12:00:00+00:00","sensor_id":"s-1","metric_value":12.5,)"
      R"("latitude":52.5,"longitude":13.4,"metric":"pm25","unit":"ug_m3"})",
      R"({"timestamp":"2024-05-01T14:00:00+02:00","sensor_id":"s-2","metric_value":0.02,)"
      R"("latitude":52.5,"longitude":13.4,"metric":"PM2.5","unit":"mg_m3"})",
      R"({"timestamp":"2024-05-01T12:00:00Z","sensor_id":"s-3","metric_value":7,)"
      R"("latitude":52.5,"longitude":13.4,"metric":"pm25"})"});
  ASSERT_EQ(out.readings.size(), 3u);
  EXPECT_EQ(out.readings[0].device.view(), "s-1");
  EXPECT_EQ(out.readings[0].metric.view(), "pm25");
  EXPECT_EQ(out.readings[0].value, 12.5);
  EXPECT_EQ(out.readings[0].event_time, kEvent);
  EXPECT_FALSE(out.readings[0].flags.Has(QcFlag::kUnitConverted));
  EXPECT_EQ(out.readings[1].event_time, kEvent);  // +02:00 offset normalised to UTC
  EXPECT_NEAR(out.readings[1].value, 20.0, 1e-9);
  EXPECT_TRUE(out.readings[1].flags.Has(QcFlag::kUnitConverted));
  EXPECT_EQ(out.readings[2].value, 7.0);
}

TEST_F(IngestStageTest, LongShapeFailures) {
  const std::string base = R"("timestamp":"2024-05-01T12:00:00Z","sensor_id":"s-9",)"
                           R"("latitude":52.5,"longitude":13.4)";
  QuarantineRecord q =
      ExpectQuarantined("{" + base + R"(,"metric":"pm25","unit":"furlongs","value":3})",
                        "unknown_unit", {"furlongs"});
  EXPECT_EQ(q.metric.view(), "pm25");
  EXPECT_EQ(q.device.view(), "s-9");
  ExpectQuarantined("{" + base + R"(,"metric":"pm25"})", "missing_field", {"metric_value"});
  ExpectQuarantined("{" + base + R"(,"metric":"pm25","metric_value":null})", "missing_field",
                    {"pm25"});
  ExpectQuarantined("{" + base + R"(,"metric":5,"metric_value":1})", "missing_field",
                    {"metric = 5"});
  ExpectQuarantined("{" + base + R"(,"metric":"pm25","metric_value":"high"})", "non_numeric_value",
                    {"\"high\""});
  ExpectQuarantined("{" + base + R"(,"metric":"pm25","metric_value":1e999})", "non_finite_value",
                    {"1e999"});
  // An unknown long-shape metric is accepted as a new metric (finite check only).
  Batch out = Run("{" + base + R"(,"metric":"lux","metric_value":12000})");
  ASSERT_EQ(out.readings.size(), 1u);
  EXPECT_EQ(out.readings[0].metric.view(), "lux");
}

TEST_F(IngestStageTest, RecordLevelReasonCodes) {
  const std::string ts = std::to_string(kEvent / 1000);
  QuarantineRecord q;
  q = ExpectQuarantined(R"({"sensor_ts":)" + ts + R"(,"lat":1,"lon":2,"pm25":3})", "missing_field",
                        {"device id", "device_id"});
  EXPECT_TRUE(q.device.empty());
  ExpectQuarantined(R"({"device_id":"d","lat":1,"lon":2,"pm25":3})", "missing_field",
                    {"timestamp", "sensor_ts"});
  ExpectQuarantined(R"({"device_id":"d","sensor_ts":)" + ts + R"(,"pm25":3})", "missing_field",
                    {"latitude", "longitude"});
  ExpectQuarantined(R"({"device_id":"d","sensor_ts":)" + ts + R"(,"lat":1,"pm25":3})",
                    "missing_field", {"longitude"});
  ExpectQuarantined(R"({"device_id":"d","sensor_ts":)" + ts + R"(,"x":1,"y":2,"pm25":3})",
                    "missing_field", {"crs"});
  ExpectQuarantined(R"({"device_id":"","sensor_ts":)" + ts + R"(,"lat":1,"lon":2,"pm25":3})",
                    "missing_field", {"device id"});
  ExpectQuarantined(R"({"device_id":{"a":1},"sensor_ts":)" + ts + R"(,"lat":1,"lon":2,"pm25":3})",
                    "invalid_device_id", {"device_id = an object"});
  ExpectQuarantined(R"({"device_id":")" + std::string(200, 'd') + R"(","sensor_ts":)" + ts +
                        R"(,"lat":1,"lon":2,"pm25":3})",
                    "invalid_device_id", {"200 bytes"});
  ExpectQuarantined(R"({"device_id":"d","sensor_ts":"yesterday","lat":1,"lon":2,"pm25":3})",
                    "bad_timestamp", {"sensor_ts = \"yesterday\""});
  ExpectQuarantined(
      R"({"device_id":"d","sensor_ts":"2024-13-01T00:00:00Z","lat":1,"lon":2,"pm25":3})",
      "bad_timestamp", {"2024-13-01"});
  ExpectQuarantined(R"({"device_id":"d","sensor_ts":true,"lat":1,"lon":2,"pm25":3})",
                    "bad_timestamp", {"sensor_ts = true"});
  ExpectQuarantined(R"({"device_id":"d","sensor_ts":1e999,"lat":1,"lon":2,"pm25":3})",
                    "bad_timestamp", {"1e999"});
  std::string future = std::to_string((kArrival + 6 * kMicrosPerMinute) / 1000);
  q = ExpectQuarantined(
      R"({"device_id":"fut","sensor_ts":)" + future + R"(,"lat":1,"lon":2,"pm25":3})",
      "future_timestamp", {"ahead"});
  EXPECT_EQ(q.device.view(), "fut");
  ExpectQuarantined(R"({"device_id":"d","sensor_ts":)" + ts + R"(,"lat":"abc","lon":2,"pm25":3})",
                    "nan_coordinate", {"lat = \"abc\""});
  ExpectQuarantined(R"({"device_id":"d","sensor_ts":)" + ts + R"(,"lat":"NaN","lon":2,"pm25":3})",
                    "nan_coordinate", {"lat"});
  ExpectQuarantined(R"({"device_id":"d","sensor_ts":)" + ts + R"(,"lat":1,"lon":-1e999,"pm25":3})",
                    "nan_coordinate", {"lon"});
  ExpectQuarantined(R"({"device_id":"d","sensor_ts":)" + ts + R"(,"lat":123.4,"lon":2,"pm25":3})",
                    "coordinate_out_of_range", {"lat = 123.4"});
  ExpectQuarantined(R"({"device_id":"d","sensor_ts":)" + ts + R"(,"lat":1,"lon":-200,"pm25":3})",
                    "coordinate_out_of_range", {"lon = -200"});
  q = ExpectQuarantined(R"({"device_id":"utm","sensor_ts":)" + ts +
                            R"(,"x":391000.5,"y":5820000.25,"crs":"EPSG:999999","pm25":3})",
                        "unknown_crs", {"EPSG:999999", "391000.5"});
  EXPECT_EQ(q.prov.crs_source.view(), "EPSG:999999");
  EXPECT_EQ(q.prov.orig_x, 391000.5);
  EXPECT_EQ(q.prov.orig_y, 5820000.25);
  ExpectQuarantined(
      R"({"device_id":"d","sensor_ts":)" + ts + R"(,"x":1,"y":2,"crs":"Lambert-ish","pm25":3})",
      "unknown_crs", {"not an EPSG code"});
  ExpectQuarantined(
      R"({"device_id":"d","sensor_ts":)" + ts + R"(,"x":1,"y":2,"crs":true,"pm25":3})",
      "unknown_crs", {"crs = true"});
  q = ExpectQuarantined(R"({"device_id":"utm","sensor_ts":)" + ts +
                            R"(,"x":1e12,"y":5820000.25,"crs":"EPSG:32633","pm25":3})",
                        "crs_transform_failed", {"EPSG:32633"});
  EXPECT_EQ(q.prov.orig_x, 1e12);
  ExpectQuarantined(
      R"({"device_id":"d","sensor_ts":)" + ts + R"(,"lat":1,"lon":2,"battery_pct":80})",
      "no_readings", {"none of the"});
  ExpectQuarantined(
      R"({"device_id":"d","sensor_ts":)" + ts + R"(,"lat":1,"lon":2,"pm25":null,"no2":""})",
      "no_readings", {"null or empty"});
  ExpectQuarantined(R"({"device_id":"d","sensor_ts":)" + ts + R"(,"lat":1,"lon":2,"pm25":3)",
                    "malformed_json");
  q = ExpectQuarantined(R"({"device_id":"d","_csv_error":"line 7: 5 fields, header has 6"})",
                        "malformed_csv", {"line 7"});
  EXPECT_EQ(q.device.view(), "d");
  {
    // The file source's marker carries the original row in _raw: that is the raw kept.
    Batch csv = Run(R"({"_csv_error":"expected 6 fields, got 4","_raw":"a,b,\"c\",d"})");
    ASSERT_EQ(csv.quarantine.size(), 1u);
    EXPECT_EQ(csv.quarantine[0].reason.view(), "malformed_csv");
    EXPECT_EQ(csv.quarantine[0].detail, "expected 6 fields, got 4");
    EXPECT_EQ(csv.quarantine[0].raw, "a,b,\"c\",d");
  }
  std::string many = "{";
  for (int i = 0; i < 1500; ++i) many += (i ? "," : "") + fmt::format(R"("k{}":"v")", i);
  ExpectQuarantined(many + "}", "too_many_fields");
  std::string huge = Rec(R"("pm25":3,"blob":")" + std::string(10 << 20, 'a') + "\"");
  q = ExpectQuarantined(huge, "payload_too_large", {"10485"});
  EXPECT_EQ(q.raw.size(), kMaxQuarantinedRawBytes);
  EXPECT_EQ(q.raw, huge.substr(0, kMaxQuarantinedRawBytes));
}

TEST_F(IngestStageTest, ValueLevelReasonCodes) {
  QuarantineRecord q;
  q = ExpectQuarantined(Rec(R"("pm25":"n/a")"), "non_numeric_value", {"pm25 = \"n/a\""});
  EXPECT_EQ(q.metric.view(), "pm25");
  EXPECT_EQ(q.device.view(), "dev-1");
  ExpectQuarantined(Rec(R"("pm25":true)"), "non_numeric_value", {"pm25 = true"});
  ExpectQuarantined(Rec(R"("pm25":[1,2])"), "non_numeric_value", {"an array"});
  ExpectQuarantined(Rec(R"("pm25":"NaN")"), "non_finite_value", {"pm25"});
  ExpectQuarantined(Rec(R"("pm25":1e999)"), "non_finite_value", {"1e999"});
  ExpectQuarantined(Rec(R"("lux":-1e999)"), "non_finite_value", {"lux"});
  ExpectQuarantined(Rec(R"("pm25":1500)"), "out_of_bounds", {"pm25 = 1500", "[0, 1000]"});
  ExpectQuarantined(Rec(R"("pm25":-3)"), "out_of_bounds", {"pm25 = -3"});
  ExpectQuarantined(Rec(R"("temperature":-60)"), "out_of_bounds", {"temperature = -60"});
  ExpectQuarantined(Rec(R"("humidity":101)"), "out_of_bounds", {"humidity"});
  ExpectQuarantined(Rec(R"("temp_f":212)"), "out_of_bounds", {"temp_f = 212 degF (100 degC)"});
  // Bounds apply after conversion: 2 mg/m³ is 2000 µg/m³.
  ExpectQuarantined(Rec(R"("pm25":2,"units":{"pm25":"mg/m3"})"), "out_of_bounds",
                    {"2 mg/m3", "2000"});
  ExpectQuarantined(Rec(R"("pm25":3,"units":{"pm25":"parsecs"})"), "unknown_unit",
                    {"pm25", "parsecs"});
  std::string long_name(100, 'z');
  ExpectQuarantined(Rec("\"" + long_name + "\":1"), "unknown_metric", {"zzzz"});
}

TEST_F(IngestStageTest, EveryReasonCodeIsReachable) {
  // The reason tests above cover each code; make sure none was forgotten.
  SCOPED_TRACE("see RecordLevelReasonCodes and ValueLevelReasonCodes");
  std::vector<std::string> payloads = {
      "{",                                                                     // malformed_json
      R"({"_csv_error":"x"})",                                                 // malformed_csv
      std::string(kMaxPayloadBytes + 1, ' '),                                  // payload_too_large
      "",                                                                      // malformed_json
      R"({"pm25":1})",                                                         // missing_field
      R"({"device_id":[],"sensor_ts":1,"lat":1,"lon":1,"pm25":1})",            // invalid_device_id
      R"({"device_id":"a","sensor_ts":"x","lat":1,"lon":1,"pm25":1})",         // bad_timestamp
      R"({"device_id":"a","sensor_ts":4102444800,"lat":1,"lon":1,"pm25":1})",  // future
      R"({"device_id":"a","sensor_ts":1714564800,"lat":"x","lon":1,"pm25":1})",
      R"({"device_id":"a","sensor_ts":1714564800,"lat":91,"lon":1,"pm25":1})",
      R"({"device_id":"a","sensor_ts":1714564800,"x":1,"y":1,"crs":"EPSG:999999","pm25":1})",
      R"({"device_id":"a","sensor_ts":1714564800,"x":1e12,"y":1,"crs":"EPSG:32633","pm25":1})",
      R"({"device_id":"a","sensor_ts":1714564800,"lat":1,"lon":1})",  // no_readings
      R"({"device_id":"a","sensor_ts":1714564800,"lat":1,"lon":1,"pm25":1,"unit":"x"})",
      R"({"device_id":"a","sensor_ts":1714564800,"lat":1,"lon":1,"pm25":"x"})",
      R"({"device_id":"a","sensor_ts":1714564800,"lat":1,"lon":1,"pm25":1e400})",
      R"({"device_id":"a","sensor_ts":1714564800,"lat":1,"lon":1,"pm25":1e4})",
      "{\"device_id\":\"a\",\"sensor_ts\":1714564800,\"lat\":1,\"lon\":1,\"" +
          std::string(80, 'q') + "\":1}",  // unknown_metric
  };
  std::string many = "{";
  for (int i = 0; i < 1100; ++i) many += (i ? "," : "") + fmt::format(R"("k{}":"v")", i);
  payloads.push_back(many + "}");  // too_many_fields
  Run(payloads, kEvent);
  LedgerSnapshot s = ledger_->Snapshot();
  for (size_t i = 0; i < kQuarantineReasonCount; ++i) {
    auto reason = static_cast<QuarantineReason>(i);
    // unknown_device needs a registry: IngestRegistryTest.UnknownDevicesQuarantined.
    if (reason == QuarantineReason::kUnknownDevice) continue;
    std::string name(QuarantineReasonName(reason));
    EXPECT_GE(s.quarantine_reasons[name], 1u) << name;
  }
  EXPECT_TRUE(s.balanced());
}

TEST_F(IngestStageTest, DriftIsFlaggedAndKept) {
  // Arrived 10 minutes after the event: TIMESTAMP_DRIFT, still forwarded.
  Batch out = Run(Wide(), kEvent + 10 * kMicrosPerMinute);
  ASSERT_EQ(out.readings.size(), 5u);
  for (const Reading& r : out.readings) EXPECT_TRUE(r.flags.Has(QcFlag::kTimestampDrift));
  // Within the threshold: no flag.
  out = Run(Wide("aq-0043"), kEvent + 4 * kMicrosPerMinute);
  ASSERT_EQ(out.readings.size(), 5u);
  EXPECT_FALSE(out.readings[0].flags.Has(QcFlag::kTimestampDrift));
  // A clock running ahead within max_future but beyond the drift threshold.
  ProcessingOptions p = DefaultProcessing();
  p.drift_threshold = kMicrosPerMinute;
  Build(p);
  out = Run(Wide("aq-0044"), kEvent - 3 * kMicrosPerMinute);
  ASSERT_EQ(out.readings.size(), 5u);
  EXPECT_TRUE(out.readings[0].flags.Has(QcFlag::kTimestampDrift));
}

TEST_F(IngestStageTest, DuplicatesWithinTheHorizonAreCountedNotForwarded) {
  Batch first = Run(Wide());
  EXPECT_EQ(first.readings.size(), 5u);
  // The same message again (a re-send), in the same batch twice and in a later batch.
  Batch again = Run(std::vector<std::string>{Wide(), Wide()});
  EXPECT_TRUE(again.readings.empty());
  EXPECT_EQ(again.duplicates, 10u);
  // Same event time, different value: still a duplicate of the key.
  Batch changed = Run(Rec(R"("pm25":99)", "aq-0042"));
  EXPECT_EQ(changed.duplicates, 1u);
  // A later event time is new.
  Batch later = Run(Wide("aq-0042", kEvent / 1000 + 60000));
  EXPECT_EQ(later.readings.size(), 5u);
  LedgerSnapshot s = ledger_->Snapshot();
  EXPECT_EQ(s.duplicate, 11u);
  EXPECT_EQ(s.input, 5u + 10u + 1u + 5u);
}

TEST_F(IngestStageTest, DuplicatesOutsideTheHorizonPassAndStateIsEvicted) {
  ProcessingOptions p = DefaultProcessing();
  p.dedup_horizon = 10 * kMicrosPerMinute;
  p.drift_threshold = 30 * kMicrosPerDay;
  Build(p);
  EXPECT_EQ(Run(Wide("d-1"), kArrival).readings.size(), 5u);
  // Two hours later (in event time) the stream has moved on.
  int64_t later_ms = (kEvent + 2 * kMicrosPerHour) / 1000;
  EXPECT_EQ(Run(Wide("d-2", later_ms), kArrival + 2 * kMicrosPerHour).readings.size(), 5u);
  EXPECT_EQ(stage_->dedup().size(), 5u);  // d-1's keys were evicted
  // The old message re-sent now is behind the horizon: not flagged as duplicate.
  Batch old = Run(Wide("d-1"), kArrival + 2 * kMicrosPerHour);
  EXPECT_EQ(old.readings.size(), 5u);
  EXPECT_EQ(old.duplicates, 0u);
}

TEST_F(IngestStageTest, DropoutsAreNotReadings) {
  Batch out = Run(Rec(R"("pm25":null,"pm10":5,"no2":"")"));
  ASSERT_EQ(out.readings.size(), 1u);
  EXPECT_EQ(out.readings[0].metric.view(), "pm10");
  EXPECT_EQ(ledger_->Snapshot().input, 1u);
}

TEST_F(IngestStageTest, CsvRowsWithStringValues) {
  // The file source re-encodes CSV rows as objects of strings keyed by header names.
  Batch out = Run(
      R"({"sensor_id":"csv-1","timestamp":"2024-05-01 12:00:00","latitude":"52.5",)"
      R"("longitude":"13.4","pm2_5":"12.5","temperature":" 14.0 ","humidity":"","firmware":"1.0"})");
  ASSERT_EQ(out.readings.size(), 2u) << (out.quarantine.empty() ? "" : out.quarantine[0].detail);
  EXPECT_EQ(out.readings[0].metric.view(), "pm25");
  EXPECT_EQ(out.readings[0].value, 12.5);
  EXPECT_EQ(out.readings[0].event_time, kEvent);
  EXPECT_EQ(out.readings[0].lat, 52.5);
  EXPECT_EQ(out.readings[1].value, 14.0);
  EXPECT_EQ(out.readings[1].prov.firmware.view(), "1.0");
}

TEST_F(IngestStageTest, CoordinatesGivenAsXyInWgs84) {
  Batch out =
      Run(R"({"device_id":"xy","ts":1714564800,"x":13.4,"y":52.5,"crs":"EPSG:4326","pm25":1})");
  ASSERT_EQ(out.readings.size(), 1u);
  EXPECT_EQ(out.readings[0].lat, 52.5);
  EXPECT_EQ(out.readings[0].lon, 13.4);
  EXPECT_EQ(out.readings[0].event_time, kEvent);  // epoch seconds
}

TEST_F(IngestStageTest, NumericDeviceIdsAndUnknownMetrics) {
  Batch out = Run(R"({"id":42,"time":1714564800000000,"lat":1,"lon":2,"lux":1200.5,"rssi":-70})");
  ASSERT_EQ(out.readings.size(), 1u);
  EXPECT_EQ(out.readings[0].device.view(), "42");
  EXPECT_EQ(out.readings[0].metric.view(), "lux");
  EXPECT_EQ(out.readings[0].value, 1200.5);
  EXPECT_EQ(out.readings[0].event_time, kEvent);  // epoch microseconds
}

// Simulator fault kinds (src/io/sources/simulator.h, MalformedKind).
TEST_F(IngestStageTest, SimulatorFaultKinds) {
  std::string wide = Wide("aq-0001");
  ExpectQuarantined(wide.substr(0, wide.size() / 2), "malformed_json");  // truncated
  std::string no_colon = wide;
  no_colon.erase(no_colon.find("\"sensor_ts\":") + 11, 1);
  QuarantineRecord q = ExpectQuarantined(no_colon, "malformed_json", {"sensor_ts"});
  EXPECT_EQ(q.device.view(), "aq-0001");  // read before the JSON broke
  std::string nan = wide;
  nan.replace(nan.find("52.510123"), 9, "NaN");
  ExpectQuarantined(nan, "malformed_json", {"lat"});
  std::string lat = wide;
  lat.replace(lat.find("52.510123"), 9, "123.4");
  ExpectQuarantined(lat, "coordinate_out_of_range", {"lat = 123.4"});
}

// Every record of a mixed corpus ends in exactly one place, across batches.
TEST_F(IngestStageTest, LedgerInvariantOverAMixedCorpus) {
  std::vector<std::string> corpus;
  for (int i = 0; i < 40; ++i) {
    int64_t ts = kEvent / 1000 + i * 1000;
    std::string dev = "mix-" + std::to_string(i % 7);
    corpus.push_back(Wide(dev, ts));
    corpus.push_back(Wide(dev, ts));  // duplicate
    corpus.push_back(Wide(dev, ts, R"(,"units":{"pm25":"mg/m3","no2":"bogus"})"));
    corpus.push_back(Rec(R"("pm25":null,"temperature":99)", dev));
    corpus.push_back("{\"device_id\":\"" + dev + "\"");
    corpus.push_back(R"({"timestamp":"2024-05-01T12:00:00Z","sensor_id":")" + dev +
                     R"(","metric":"humidity","metric_value":)" + std::to_string(i) +
                     R"(,"latitude":1,"longitude":2})");
    corpus.push_back(R"({"device_id":")" + dev + R"(","sensor_ts":1,"lat":1,"lon":2})");
    corpus.push_back(Rec(R"("lux":5,"pm10":"x")", dev));
  }
  uint64_t readings = 0, quarantined = 0, duplicates = 0;
  for (size_t begin = 0; begin < corpus.size(); begin += 37) {
    std::vector<std::string> slice(
        corpus.begin() + static_cast<long>(begin),
        corpus.begin() + static_cast<long>(std::min(begin + 37, corpus.size())));
    Batch out = Run(slice);
    readings += out.readings.size();
    quarantined += out.quarantine.size();
    duplicates += out.duplicates;
  }
  LedgerSnapshot s = ledger_->Snapshot();
  EXPECT_EQ(s.input, readings + quarantined + duplicates);
  EXPECT_EQ(s.quarantined, quarantined);
  EXPECT_EQ(s.duplicate, duplicates);
  uint64_t by_reason = 0;
  for (const auto& [reason, n] : s.quarantine_reasons) by_reason += n;
  EXPECT_EQ(by_reason, quarantined);
  EXPECT_GT(readings, 0u);
  EXPECT_GT(duplicates, 0u);
  const IngestCounts& t = stage_->totals();
  EXPECT_EQ(t.input, s.input);
  EXPECT_EQ(t.forwarded, readings);
}

// Hostile payloads never crash the stage and are fully accounted.
constexpr char kNulInString[] = "{\"device_id\":\"h\0x\",\"pm25\":1}";

TEST_F(IngestStageTest, HostileCorpusIsFullyAccounted) {
  std::vector<std::string> corpus = {
      "",
      "{}",
      "[]",
      "null",
      "{\"device_id\":\"\xff\xfe\"}",
      "\xef\xbb\xbf{}",  // BOM
      std::string(100000, '[') + std::string(100000, ']'),
      "{\"a\":" + std::string(50000, '{'),
      R"({"device_id":"h","sensor_ts":1e308,"lat":1e308,"lon":-1e308,"pm25":1e308})",
      R"({"device_id":"h","sensor_ts":99999999999999999999999999,"lat":1,"lon":1,"pm25":1})",
      R"({"device_id":"h","sensor_ts":-1714564800000,"lat":1,"lon":1,"pm25":1})",
      R"({"device_id":"h","sensor_ts":1714564800000,"lat":1,"lon":1,"pm25":-0.0})",
      std::string(10 << 20, 'x'),
      std::string(1 << 20, ' ') + "{}",
      std::string(kNulInString, sizeof(kNulInString) - 1),
  };
  // Every prefix of a valid payload.
  std::string wide = Wide("hostile");
  for (size_t n = 0; n < wide.size(); ++n) corpus.push_back(wide.substr(0, n));
  // Seeded random bytes and random mutations of a valid payload.
  std::mt19937_64 rng(1234);
  for (int i = 0; i < 300; ++i) {
    std::string junk(rng() % 200, '\0');
    for (char& c : junk) c = static_cast<char>(rng() & 0xff);
    corpus.push_back(junk);
    std::string mutated = wide;
    for (int k = 0; k < 3; ++k) mutated[rng() % mutated.size()] = static_cast<char>(rng() & 0xff);
    corpus.push_back(mutated);
  }
  Batch out = Run(corpus, kEvent);
  LedgerSnapshot s = ledger_->Snapshot();
  EXPECT_EQ(s.input, out.readings.size() + s.quarantined + s.duplicate);
  // Every payload counts at least once: as one quarantined record, or as its readings.
  EXPECT_GE(s.input, corpus.size());
  for (const QuarantineRecord& q : out.quarantine) {
    EXPECT_FALSE(q.reason.empty());
    EXPECT_FALSE(q.detail.empty());
    EXPECT_LE(q.raw.size(), kMaxPayloadBytes);
  }
}

TEST_F(IngestStageTest, MakeRejectsUnknownFormatsAndProcessNeedsOpen) {
  PipelineConfig config;
  config.file = "<test>";
  YAML::Node node = YAML::Load("{name: s, type: simulator, format: protobuf}");
  config.sources.push_back(SourceEntry{
      "s", "simulator", OptionReader(node, "<test>", "sources[0]", {&SourceCommonSpec()})});
  auto made = IngestStage::Make(config);
  EXPECT_FALSE(made.ok());
  EXPECT_NE(made.status().message().find("format"), std::string::npos) << made.status().ToString();

  PipelineConfig ok_config;
  ok_config.sources.push_back(SourceEntry{"s", "simulator", {}});
  auto stage = IngestStage::Make(ok_config);
  ASSERT_TRUE(stage.ok());
  RawBatch raw;
  raw.Add(Wide(), kArrival);
  Batch out;
  EXPECT_FALSE((*stage)->Process(raw, out).ok());
}

}  // namespace
}  // namespace tributary
