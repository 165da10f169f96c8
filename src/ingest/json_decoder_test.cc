#include "ingest/json_decoder.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

namespace tributary {
namespace {

constexpr char kSimulatorWide[] =
    R"({"device_id":"aq-0042","sensor_ts":1714564800000,"lat":52.510123,"lon":13.391234,)"
    R"("pm25":12.3,"pm10":20.1,"no2":18.0,"temperature":14.21,"humidity":61.0,)"
    R"("battery_pct":88,"firmware":"aq-2.1.0"})";

class IngestJsonDecoder : public ::testing::Test {
 protected:
  DecodeStatus Decode(std::string_view payload) { return decoder_.Decode(payload, rec_); }
  const MetricField* Metric(std::string_view name) const {
    for (const MetricField& m : rec_.metrics) {
      if (m.name.view() == name) return &m;
    }
    return nullptr;
  }
  void ExpectMalformed(std::string_view payload, std::string_view detail_part = {}) {
    DecodeStatus st = Decode(payload);
    EXPECT_FALSE(st.ok) << payload;
    EXPECT_EQ(st.reason, QuarantineReason::kMalformedJson) << payload << " -> " << st.detail;
    if (!detail_part.empty()) {
      EXPECT_NE(st.detail.find(detail_part), std::string::npos) << st.detail;
    }
  }

  JsonDecoder decoder_;
  DecodedRecord rec_;
};

TEST_F(IngestJsonDecoder, SimulatorWidePayload) {
  DecodeStatus st = Decode(kSimulatorWide);
  ASSERT_TRUE(st.ok) << st.detail;
  EXPECT_FALSE(rec_.long_shape());
  EXPECT_EQ(rec_.role(FieldRole::kDeviceId).text, "aq-0042");
  EXPECT_EQ(rec_.role(FieldRole::kTimestamp).kind, JsonKind::kNumber);
  EXPECT_EQ(rec_.role(FieldRole::kTimestamp).number, 1714564800000.0);
  EXPECT_DOUBLE_EQ(rec_.role(FieldRole::kLat).number, 52.510123);
  EXPECT_DOUBLE_EQ(rec_.role(FieldRole::kLon).number, 13.391234);
  EXPECT_EQ(rec_.role(FieldRole::kFirmware).text, "aq-2.1.0");
  ASSERT_EQ(rec_.metrics.size(), 5u);  // battery_pct and firmware are metadata
  EXPECT_EQ(rec_.metrics[0].name.view(), "pm25");
  EXPECT_EQ(rec_.metrics[0].value.number, 12.3);
  EXPECT_NE(rec_.metrics[0].metric, nullptr);
  EXPECT_EQ(rec_.metrics[4].name.view(), "humidity");
  EXPECT_EQ(rec_.field_count, 11u);
}

TEST_F(IngestJsonDecoder, UnitsObjectAndProjectedCoordinates) {
  DecodeStatus st = Decode(
      R"({"device_id":"ws-0001","sensor_ts":1714564800000,"x":391000.5,"y":5820000.25,)"
      R"("crs":"EPSG:32633","temperature":14.2,"pressure":1013.2,"wind_speed":3.5,)"
      R"("firmware":"ws-1.0","units":{"temperature":"degC","pressure":"hPa","wind_speed":"m/s"}})");
  ASSERT_TRUE(st.ok) << st.detail;
  EXPECT_EQ(rec_.role(FieldRole::kX).number, 391000.5);
  EXPECT_EQ(rec_.role(FieldRole::kY).number, 5820000.25);
  EXPECT_EQ(rec_.role(FieldRole::kCrs).text, "EPSG:32633");
  EXPECT_FALSE(rec_.role(FieldRole::kLat).present());
  EXPECT_EQ(rec_.metrics.size(), 3u);
  ASSERT_EQ(rec_.units.size(), 3u);
  EXPECT_EQ(rec_.units[1].key, "pressure");
  EXPECT_EQ(rec_.units[1].unit, "hPa");
}

TEST_F(IngestJsonDecoder, LongShape) {
  DecodeStatus st =
      Decode(R"({"timestamp":"2024-05-01T12:00:00Z","sensor_id":"s-1","metric":"PM2.5",)"
             R"("metric_value":12.5,"unit":"ug_m3","latitude":52.5,"longitude":13.4})");
  ASSERT_TRUE(st.ok) << st.detail;
  EXPECT_TRUE(rec_.long_shape());
  EXPECT_EQ(rec_.role(FieldRole::kMetricName).text, "PM2.5");
  EXPECT_EQ(rec_.role(FieldRole::kMetricValue).number, 12.5);
  EXPECT_EQ(rec_.role(FieldRole::kUnit).text, "ug_m3");
  EXPECT_EQ(rec_.role(FieldRole::kDeviceId).text, "s-1");
  EXPECT_EQ(rec_.role(FieldRole::kTimestamp).text, "2024-05-01T12:00:00Z");
  EXPECT_EQ(rec_.role(FieldRole::kLat).number, 52.5);
  // metric_value and unit are roles, not wide metrics; latitude is a role too.
  EXPECT_TRUE(rec_.metrics.empty());
  MetricField f;
  decoder_.ResolveMetricName("PM2.5", f);
  ASSERT_NE(f.metric, nullptr);
  EXPECT_EQ(f.name.view(), "pm25");
}

TEST_F(IngestJsonDecoder, RoleAliasesAndPriority) {
  ASSERT_TRUE(Decode(R"({"id":"low","device_id":"high","time":1,"ts":2,"lng":3,"lat":4})").ok);
  EXPECT_EQ(rec_.role(FieldRole::kDeviceId).text, "high");
  EXPECT_EQ(rec_.role(FieldRole::kTimestamp).number, 2.0);  // ts ranks above time
  EXPECT_EQ(rec_.role(FieldRole::kLon).number, 3.0);
  ASSERT_TRUE(Decode(R"({"device":"d","time":"x","longitude":1,"latitude":2})").ok);
  EXPECT_EQ(rec_.role(FieldRole::kDeviceId).text, "d");
  EXPECT_EQ(rec_.role(FieldRole::kLon).path, "longitude");
}

TEST_F(IngestJsonDecoder, NestedPathsAndContainers) {
  DecodeStatus st = Decode(
      R"({"device_id":"n1","ts":1714564800,"location":{"lat":1.5,"lon":2.5,"name":"x"},)"
      R"("payload":{"pm25":7,"rssi":-70},"meta":{"pm10":99,"deep":{"a":[1,2,{"b":null}]}}})");
  ASSERT_TRUE(st.ok) << st.detail;
  EXPECT_EQ(rec_.role(FieldRole::kLat).number, 1.5);
  EXPECT_EQ(rec_.role(FieldRole::kLat).path, "location.lat");
  EXPECT_EQ(rec_.role(FieldRole::kLon).number, 2.5);
  ASSERT_EQ(rec_.metrics.size(), 1u);  // payload.pm25; rssi is metadata; meta is not mapped
  EXPECT_EQ(rec_.metrics[0].path, "payload.pm25");
  EXPECT_EQ(rec_.metrics[0].leaf, "pm25");
  EXPECT_EQ(rec_.metrics[0].name.view(), "pm25");
}

TEST_F(IngestJsonDecoder, ExplicitMetricFieldMapping) {
  FieldMapping mapping = FieldMapping::Defaults();
  mapping.metric_fields.push_back({"sensordatavalues.P2", "pm25"});
  JsonDecoder decoder(mapping);
  DecodedRecord rec;
  ASSERT_TRUE(decoder.Decode(R"({"id":"sc-1","sensordatavalues":{"P2":"4.5","other":1}})", rec).ok);
  ASSERT_EQ(rec.metrics.size(), 1u);
  EXPECT_EQ(rec.metrics[0].name.view(), "pm25");
  EXPECT_EQ(rec.metrics[0].value.kind, JsonKind::kString);
  EXPECT_EQ(rec.metrics[0].value.text, "4.5");
}

TEST_F(IngestJsonDecoder, UnknownNumericFieldsBecomeMetricsOthersAreMetadata) {
  ASSERT_TRUE(Decode(R"({"device_id":"u","ts":1,"lat":0,"lon":0,"lux":1200,"status":"ok",)"
                     R"("flag":true,"_seq":5,"rssi":-80,"noise_db":"41.5","arr":[1]})")
                  .ok);
  ASSERT_EQ(rec_.metrics.size(), 2u);
  EXPECT_EQ(rec_.metrics[0].name.view(), "lux");
  EXPECT_EQ(rec_.metrics[0].metric, nullptr);
  EXPECT_EQ(rec_.metrics[1].name.view(), "noise_db");
}

TEST_F(IngestJsonDecoder, KnownMetricKeepsNonNumericValuesForValidation) {
  ASSERT_TRUE(Decode(R"({"pm25":"n/a","no2":null,"temperature":true,"humidity":""})").ok);
  ASSERT_EQ(rec_.metrics.size(), 4u);
  EXPECT_EQ(rec_.metrics[0].value.kind, JsonKind::kString);
  EXPECT_EQ(rec_.metrics[1].value.kind, JsonKind::kNull);
  EXPECT_EQ(rec_.metrics[2].value.kind, JsonKind::kBool);
  EXPECT_EQ(rec_.metrics[3].value.kind, JsonKind::kString);
}

TEST_F(IngestJsonDecoder, HugeNumbersAreInfiniteNotMalformed) {
  ASSERT_TRUE(
      Decode(R"({"pm25":1e999,"no2":-1e400,"pm10":1e-400,"x":123456789012345678901234567890})").ok);
  ASSERT_NE(Metric("pm25"), nullptr);
  EXPECT_TRUE(std::isinf(Metric("pm25")->value.number));
  EXPECT_GT(Metric("pm25")->value.number, 0);
  EXPECT_EQ(Metric("pm25")->value.text, "1e999");
  EXPECT_LT(Metric("no2")->value.number, 0);
  EXPECT_TRUE(std::isinf(Metric("no2")->value.number));
  EXPECT_EQ(Metric("pm10")->value.number, 0.0);
  EXPECT_NEAR(rec_.role(FieldRole::kX).number, 1.2345678901e29, 1e19);
}

TEST_F(IngestJsonDecoder, MalformedPayloads) {
  ExpectMalformed("");
  ExpectMalformed("   ");
  ExpectMalformed(R"({"device_id":"aq-1","sensor_ts":17145)");  // truncated
  ExpectMalformed(R"({"device_id":"aq-1","sensor_ts" 1714564800000})", "sensor_ts");
  ExpectMalformed(R"({"device_id":"aq-1","lat":NaN,"lon":1})", "lat");  // Python's NaN
  ExpectMalformed(R"({"a":1}{"b":2})", "after the JSON object");
  ExpectMalformed(R"({"a":1} x)");
  ExpectMalformed(R"({"a":01})", "invalid number");
  ExpectMalformed(R"({"a":tru})");
  ExpectMalformed(R"({"a":nul})");
  ExpectMalformed(R"({"a":1,})");
  ExpectMalformed("{\"a\":\"\\x\"}");
  ExpectMalformed(R"([1,2,3])", "found an array");
  ExpectMalformed(R"("just a string")", "found a string");
  ExpectMalformed("42", "found a number");
  ExpectMalformed("null");
  // Broken JSON inside a value nobody maps is still found.
  ExpectMalformed(R"({"device_id":"a","meta":{"x":[1,2,}}})");
  ExpectMalformed(R"({"device_id":"a","meta":[{"x":tru}]})");
}

TEST_F(IngestJsonDecoder, InvalidUtf8IsMalformed) {
  ExpectMalformed("{\"device_id\":\"a\xff\xfe\"}", "UTF-8");
  ExpectMalformed("{\"dev\xc3\":1}", "UTF-8");
  // Valid multi-byte UTF-8 is fine.
  EXPECT_TRUE(Decode("{\"device_id\":\"caf\xc3\xa9\",\"pm25\":1}").ok);
  EXPECT_EQ(rec_.role(FieldRole::kDeviceId).text, "caf\xc3\xa9");
}

TEST_F(IngestJsonDecoder, DeepNestingIsRejectedWithoutCrashing) {
  std::string deep =
      R"({"device_id":"a","meta":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
  ExpectMalformed(deep, "nested deeper");
  std::string deep_objects = R"({"device_id":"a","meta":)";
  for (int i = 0; i < 5000; ++i) deep_objects += R"({"k":)";
  deep_objects += "1";
  for (int i = 0; i < 5000; ++i) deep_objects += "}";
  deep_objects += "}";
  ExpectMalformed(deep_objects, "nested deeper");
  // Moderate nesting of unmapped content is accepted.
  std::string ok =
      R"({"device_id":"a","meta":)" + std::string(30, '[') + std::string(30, ']') + "}";
  EXPECT_TRUE(Decode(ok).ok);
}

TEST_F(IngestJsonDecoder, TooManyFieldsAndTooLarge) {
  std::string many = "{";
  for (int i = 0; i < 2000; ++i) many += (i ? "," : "") + ("\"m" + std::to_string(i) + "\":1");
  many += "}";
  DecodeStatus st = Decode(many);
  EXPECT_FALSE(st.ok);
  EXPECT_EQ(st.reason, QuarantineReason::kTooManyFields);
  std::string big(kMaxPayloadBytes + 1, ' ');
  st = Decode(big);
  EXPECT_FALSE(st.ok);
  EXPECT_EQ(st.reason, QuarantineReason::kPayloadTooLarge);
}

TEST_F(IngestJsonDecoder, EscapedKeysAndStrings) {
  ASSERT_TRUE(Decode(R"({"device\u005fid":"a\"b","pm\u0032\u0035":3})").ok);
  EXPECT_EQ(rec_.role(FieldRole::kDeviceId).text, "a\"b");
  ASSERT_NE(Metric("pm25"), nullptr);
}

TEST_F(IngestJsonDecoder, ReusesBuffersAcrossRecordsOfDifferentSizes) {
  std::string large = R"({"device_id":")" + std::string(200000, 'x') + R"(","pm25":1})";
  ASSERT_TRUE(Decode(large).ok);
  EXPECT_EQ(rec_.role(FieldRole::kDeviceId).text.size(), 200000u);
  ASSERT_TRUE(Decode(kSimulatorWide).ok);
  EXPECT_EQ(rec_.role(FieldRole::kDeviceId).text, "aq-0042");
  EXPECT_EQ(rec_.metrics.size(), 5u);
}

TEST(IngestParseNumber, TextForms) {
  double v = 0;
  EXPECT_TRUE(ParseNumber("12.5", v));
  EXPECT_EQ(v, 12.5);
  EXPECT_TRUE(ParseNumber(" +3 ", v));
  EXPECT_EQ(v, 3.0);
  EXPECT_TRUE(ParseNumber("-1e3", v));
  EXPECT_EQ(v, -1000.0);
  EXPECT_TRUE(ParseNumber("NaN", v));
  EXPECT_TRUE(std::isnan(v));
  EXPECT_TRUE(ParseNumber("inf", v));
  EXPECT_TRUE(std::isinf(v));
  EXPECT_TRUE(ParseNumber("1e999", v));
  EXPECT_TRUE(std::isinf(v));
  EXPECT_TRUE(ParseNumber("1e-999", v));
  EXPECT_EQ(v, 0.0);
  EXPECT_FALSE(ParseNumber("", v));
  EXPECT_FALSE(ParseNumber("12,5", v));
  EXPECT_FALSE(ParseNumber("abc", v));
  EXPECT_FALSE(ParseNumber("1.2.3", v));
}

}  // namespace
}  // namespace tributary
