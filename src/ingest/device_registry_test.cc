#include "ingest/device_registry.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/run_context.h"
#include "ingest/ingest.h"
#include "ingest/replay_quarantine.h"
#include "io/sinks/sqlite_sink.h"
#include "io/sinks/sqlite_util.h"
#include "test_util.h"

namespace tributary {
namespace {

constexpr TimeUs kEvent = 1714564800000000;                 // 2024-05-01T12:00:00Z
constexpr TimeUs kArrival = kEvent + 2 * kMicrosPerSecond;  // two seconds of latency

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// Give the file a modification time that differs from any earlier one, whatever the
// file system's timestamp granularity.
void Touch(const std::string& path, int step) {
  auto t = std::filesystem::file_time_type::clock::now() + std::chrono::seconds(10 * step);
  std::filesystem::last_write_time(path, t);
}

std::shared_ptr<const RegistrySnapshot> Parse(const std::string& text) {
  auto r = RegistrySnapshot::Parse(text, "devices.yaml");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : nullptr;
}

std::string ParseError(const std::string& text) {
  auto r = RegistrySnapshot::Parse(text, "devices.yaml");
  EXPECT_FALSE(r.ok()) << text;
  return r.ok() ? "" : r.status().message();
}

TEST(IngestRegistryGlob, Patterns) {
  EXPECT_TRUE(GlobMatch("aq-*", "aq-0042"));
  EXPECT_TRUE(GlobMatch("aq-*", "aq-"));
  EXPECT_FALSE(GlobMatch("aq-*", "xaq-1"));
  EXPECT_TRUE(GlobMatch("*-0042", "aq-0042"));
  EXPECT_TRUE(GlobMatch("aq-00??", "aq-0042"));
  EXPECT_FALSE(GlobMatch("aq-00??", "aq-004"));
  EXPECT_TRUE(GlobMatch("aq-[0-4]*", "aq-3x"));
  EXPECT_FALSE(GlobMatch("aq-[0-4]*", "aq-7x"));
  EXPECT_TRUE(GlobMatch("aq-[!0-4]*", "aq-7x"));
  EXPECT_TRUE(GlobMatch("a*b*c", "a-x-b-y-c"));
  EXPECT_FALSE(GlobMatch("a*b*c", "a-x-b-y-d"));
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_FALSE(GlobMatch("exact", "exact2"));
}

TEST(IngestRegistryParse, EveryEntryField) {
  auto snap = Parse(R"(devices:
  aq-0042:
    model: SDS011
    firmware: 2.1.0
    interval: 60s
    crs: EPSG:27700
    position: {x: 530000, y: 180000}
    aliases: {p_25: pm25, t_f: temp_f}
    units: {pm10: mg/m3}
    calibration:
      pm25: {m: 0.5, b: 1.0, c: 0.01, date: 2024-03-01}
)");
  ASSERT_NE(snap, nullptr);
  const DeviceEntry* e = snap->Find("aq-0042");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->model, "SDS011");
  EXPECT_EQ(e->firmware.view(), "2.1.0");
  EXPECT_EQ(e->interval, kMicrosPerMinute);
  EXPECT_EQ(e->crs, "EPSG:27700");
  EXPECT_TRUE(e->has_position);
  EXPECT_TRUE(e->position_xy);
  EXPECT_EQ(e->lon, 530000);
  EXPECT_EQ(e->lat, 180000);
  const FieldAlias* a = e->AliasFor("p_25", "p_25");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->name.view(), "pm25");
  a = e->AliasFor("data.t_f", "t_f");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->name.view(), "temperature");
  EXPECT_EQ(a->implied_unit, FindUnit("degF"));
  EXPECT_EQ(e->UnitFor("pm10", "pm10", FindMetric("pm10")), "mg/m3");
  EXPECT_EQ(e->UnitFor("PM10", "PM10", FindMetric("pm10")), "mg/m3");  // by metric
  const Calibration* c = e->CalibrationFor(Intern("pm25"));
  ASSERT_NE(c, nullptr);
  EXPECT_DOUBLE_EQ(c->Apply(10.0), 0.01 * 100 + 0.5 * 10 + 1.0);
  EXPECT_EQ(c->date.view(), "2024-03-01");
  EXPECT_EQ(snap->Find("aq-0043"), nullptr);
}

TEST(IngestRegistryParse, ExactWinsThenMostSpecificPattern) {
  auto snap = Parse(R"(devices:
  "*": {model: any}
  "aq-*": {model: aq}
  "aq-00*": {model: aq00}
  "aq-0?42": {model: tie-first}
  "aq-00?2": {model: tie-second}
  aq-0042: {model: exact}
  weird:
)");
  ASSERT_NE(snap, nullptr);
  EXPECT_EQ(snap->Find("aq-0042")->model, "exact");
  EXPECT_EQ(snap->Find("aq-0142")->model, "tie-first");  // 6 literal chars, written first
  EXPECT_EQ(snap->Find("aq-0032")->model, "tie-second");
  EXPECT_EQ(snap->Find("aq-0077")->model, "aq00");
  EXPECT_EQ(snap->Find("aq-9")->model, "aq");
  EXPECT_EQ(snap->Find("soil-1")->model, "any");
  ASSERT_NE(snap->Find("weird"), nullptr);  // an entry with nothing but its id
  EXPECT_EQ(snap->size(), 7u);
}

TEST(IngestRegistryParse, JsonFilesAndNumericIds) {
  auto snap = Parse(R"({"devices": {"12345": {"model": "x", "interval": "5m"},
                        "s[0-9]?": {"calibration": {"no2": {"m": 0.9, "b": -1.5}}}}})");
  ASSERT_NE(snap, nullptr);
  ASSERT_NE(snap->Find("12345"), nullptr);
  EXPECT_EQ(snap->Find("12345")->interval, 5 * kMicrosPerMinute);
  const DeviceEntry* e = snap->Find("s7x");
  ASSERT_NE(e, nullptr);
  EXPECT_DOUBLE_EQ(e->CalibrationFor(Intern("no2"))->Apply(10.0), 7.5);
  EXPECT_EQ(snap->Find("sx7"), nullptr);
  // An empty file is an empty registry.
  ASSERT_NE(Parse(""), nullptr);
  EXPECT_EQ(Parse("")->size(), 0u);
}

TEST(IngestRegistryParse, ErrorsNameTheLineAndKey) {
  std::string e = ParseError("devices:\n  aq-1:\n    modle: x\n");
  EXPECT_NE(e.find("devices.yaml:3"), std::string::npos) << e;
  EXPECT_NE(e.find("modle"), std::string::npos) << e;
  e = ParseError("devices:\n  aq-1:\n    units: {pm25: furlongs}\n");
  EXPECT_NE(e.find("devices.yaml:3"), std::string::npos) << e;
  EXPECT_NE(e.find("devices.aq-1.units.pm25"), std::string::npos) << e;
  EXPECT_NE(e.find("furlongs"), std::string::npos) << e;
  e = ParseError("devices:\n  aq-1:\n    interval: soon\n");
  EXPECT_NE(e.find("interval"), std::string::npos) << e;
  e = ParseError("devices:\n  aq-1:\n    crs: EPSG:999999\n");
  EXPECT_NE(e.find("crs"), std::string::npos) << e;
  e = ParseError("devices:\n  aq-1:\n    position: {lat: 95, lon: 1}\n");
  EXPECT_NE(e.find("position"), std::string::npos) << e;
  e = ParseError("devices:\n  aq-1:\n    position: {x: 1, y: 2}\n");
  EXPECT_NE(e.find("crs"), std::string::npos) << e;
  e = ParseError("devices:\n  aq-1:\n    calibration: {pm25: {m: x}}\n");
  EXPECT_NE(e.find("calibration.pm25"), std::string::npos) << e;
  e = ParseError("devices:\n  aq-1:\n    calibration: {pm25: {m: 1, date: March}}\n");
  EXPECT_NE(e.find("date"), std::string::npos) << e;
  e = ParseError("devices:\n  aq-1: {}\n  aq-1: {}\n");
  EXPECT_FALSE(e.empty());
  e = ParseError("device:\n  aq-1: {}\n");
  EXPECT_NE(e.find("devices.yaml:1"), std::string::npos) << e;
  e = ParseError("devices: [1, 2\n");
  EXPECT_NE(e.find("devices.yaml"), std::string::npos) << e;
  e = ParseError("devices:\n  aq-1:\n    model: [a\n");
  EXPECT_NE(e.find("devices.yaml"), std::string::npos) << e;
}

TEST(IngestRegistryParse, TheExampleRegistryIsValid) {
  auto snap = RegistrySnapshot::Load(TRIBUTARY_SOURCE_DIR "/examples/registry/devices.yaml");
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_EQ((*snap)->Find("aq-0042")->firmware.view(), "aq-2.1.0");
  EXPECT_EQ((*snap)->Find("aq-0007")->model, "SDS011");
  EXPECT_EQ((*snap)->Find("legacy-07")->AliasFor("p_25", "p_25")->name.view(), "pm25");
  EXPECT_TRUE((*snap)->Find("gauge-spree-01")->position_xy);
  EXPECT_EQ((*snap)->Find("gauge-havel-02")->crs, "EPSG:32633");
  EXPECT_EQ((*snap)->Find("soil-1"), nullptr);
}

TEST(IngestRegistryReload, PicksUpAChangeAndKeepsTheOldOneWhenBroken) {
  testing::TempDir dir;
  std::string path = dir.File("devices.yaml");
  WriteFile(path, "devices:\n  aq-1: {interval: 60s}\n");
  auto opened = DeviceRegistry::Open(path, 0);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  DeviceRegistry& r = **opened;
  EXPECT_EQ(r.ExpectedInterval("aq-1"), kMicrosPerMinute);
  EXPECT_EQ(r.ExpectedInterval("aq-2"), 0);
  EXPECT_FALSE(r.Poll());  // unchanged
  uint64_t g = r.generation();

  WriteFile(path, "devices:\n  aq-1: {interval: 5m}\n  aq-2: {interval: 10s}\n");
  Touch(path, 1);
  EXPECT_TRUE(r.Poll());
  EXPECT_GT(r.generation(), g);
  EXPECT_EQ(r.ExpectedInterval("aq-1"), 5 * kMicrosPerMinute);
  EXPECT_EQ(r.ExpectedInterval("aq-2"), 10 * kMicrosPerSecond);

  // A broken file: the previous registry stays, and the error names the line.
  std::shared_ptr<const RegistrySnapshot> before = r.Snapshot();
  WriteFile(path, "devices:\n  aq-1: {interval: 5m}\n  aq-2: {intervall: 10s}\n");
  Touch(path, 2);
  g = r.generation();
  EXPECT_FALSE(r.Poll());
  EXPECT_EQ(r.generation(), g);
  EXPECT_EQ(r.Snapshot(), before);
  EXPECT_EQ(r.ExpectedInterval("aq-2"), 10 * kMicrosPerSecond);
  Status st = r.Reload();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("devices.yaml:3"), std::string::npos) << st.ToString();
  EXPECT_FALSE(r.Poll());  // the same broken file is not re-read

  // A missing file keeps the registry too; fixing the file reloads it.
  std::filesystem::remove(path);
  EXPECT_FALSE(r.Poll());
  EXPECT_EQ(r.ExpectedInterval("aq-2"), 10 * kMicrosPerSecond);
  WriteFile(path, "devices:\n  aq-3: {interval: 1h}\n");
  Touch(path, 3);
  EXPECT_TRUE(r.Poll());
  EXPECT_EQ(r.ExpectedInterval("aq-3"), kMicrosPerHour);
  EXPECT_EQ(r.ExpectedInterval("aq-2"), 0);

  EXPECT_FALSE(DeviceRegistry::Open(dir.File("none.yaml"), 0).ok());
}

TEST(IngestRegistryReload, PollIsRateLimited) {
  testing::TempDir dir;
  std::string path = dir.File("devices.yaml");
  WriteFile(path, "devices:\n  aq-1: {model: a}\n");
  auto opened = DeviceRegistry::Open(path, kMicrosPerHour);
  ASSERT_TRUE(opened.ok());
  WriteFile(path, "devices:\n  aq-1: {model: b}\n");
  Touch(path, 1);
  EXPECT_FALSE((*opened)->Poll());  // within the hour: not even looked at
  EXPECT_EQ((*opened)->Snapshot()->Find("aq-1")->model, "a");
  EXPECT_TRUE((*opened)->Reload().ok());
  EXPECT_EQ((*opened)->Snapshot()->Find("aq-1")->model, "b");
}

// The ingest stage with a registry file, built from pipeline YAML like a user's.
class IngestRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override { registry_ = dir_.File("devices.yaml"); }

  void Build(const std::string& registry_text, const std::string& processing_extra = "",
             const std::string& source_extra = "") {
    WriteFile(registry_, registry_text);
    std::string yaml = fmt::format(
        "processing:\n  registry: devices.yaml\n  registry_poll: 100ms\n{}"
        "sources:\n  - name: s\n    type: simulator\n{}",
        processing_extra, source_extra);
    WriteFile(dir_.File("pipeline.yaml"), yaml);
    auto c = LoadPipelineConfig(dir_.File("pipeline.yaml"));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    config_ = *c;
    auto made = IngestStage::Make(config_);
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    stage_ = std::move(made).value();
    ledger_ = std::make_unique<Ledger>();
    ctx_ = RunContext{};
    ctx_.config = &config_;
    ctx_.ledger = ledger_.get();
    ASSERT_TRUE(stage_->Open(ctx_).ok());
  }

  Batch Run(const std::vector<std::string>& payloads) {
    RawBatch raw;
    for (const std::string& p : payloads) raw.Add(p, kArrival, Intern("t"), offset_++, -1);
    LedgerSnapshot before = ledger_->Snapshot();
    Batch out;
    Status st = stage_->Process(raw, out);
    EXPECT_TRUE(st.ok()) << st.ToString();
    LedgerSnapshot after = ledger_->Snapshot();
    EXPECT_EQ(after.input - before.input, out.readings.size() +
                                              (after.quarantined - before.quarantined) +
                                              (after.duplicate - before.duplicate));
    EXPECT_EQ(after.quarantined - before.quarantined, out.quarantine.size());
    return out;
  }

  static const Reading* Find(const Batch& b, std::string_view metric) {
    for (const Reading& r : b.readings) {
      if (r.metric.view() == metric) return &r;
    }
    return nullptr;
  }

  testing::TempDir dir_;
  std::string registry_;
  PipelineConfig config_;
  std::unique_ptr<IngestStage> stage_;
  std::unique_ptr<Ledger> ledger_;
  RunContext ctx_;
  int64_t offset_ = 1;
};

// A wide payload; `seconds` after kEvent (a later time is no duplicate of an earlier one).
std::string Payload(std::string_view device, std::string_view fields,
                    std::string_view position = R"("lat":52.5,"lon":13.4,)", int seconds = 0) {
  return fmt::format(R"({{"device_id":"{}","sensor_ts":{},{}{}}})", device,
                     kEvent / 1000 + seconds * 1000, position, fields);
}

TEST_F(IngestRegistryTest, EntryFieldsAreApplied) {
  Build(R"(devices:
  aq-0042:
    model: SDS011
    firmware: 2.1.0
    interval: 60s
    aliases: {p_25: pm25, tmp_f: temp_f, leaf_w: leaf_wetness}
    units: {pm10: mg/m3}
    calibration:
      pm25: {m: 0.5, b: 1.0, date: 2024-03-01}
      humidity: {m: 1.0, b: 0.0, c: 0.01}
)");
  Batch out =
      Run({Payload("aq-0042", R"("p_25":20,"pm10":0.03,"tmp_f":50,"humidity":50,"leaf_w":3,)"
                              R"("no2":20)")});
  ASSERT_TRUE(out.quarantine.empty()) << out.quarantine[0].detail;
  ASSERT_EQ(out.readings.size(), 6u);
  const Reading* pm25 = Find(out, "pm25");  // alias, then calibration 0.5·20 + 1
  ASSERT_NE(pm25, nullptr);
  EXPECT_DOUBLE_EQ(pm25->value, 11.0);
  EXPECT_TRUE(pm25->flags.Has(QcFlag::kCalibrated));
  EXPECT_FALSE(pm25->flags.Has(QcFlag::kUnitConverted));
  EXPECT_EQ(pm25->prov.calibration_date.view(), "2024-03-01");
  EXPECT_EQ(pm25->prov.firmware.view(), "2.1.0");  // the payload reports none
  const Reading* pm10 = Find(out, "pm10");         // unit from the registry
  ASSERT_NE(pm10, nullptr);
  EXPECT_DOUBLE_EQ(pm10->value, 30.0);
  EXPECT_TRUE(pm10->flags.Has(QcFlag::kUnitConverted));
  EXPECT_FALSE(pm10->flags.Has(QcFlag::kCalibrated));
  EXPECT_TRUE(pm10->prov.calibration_date.empty());
  const Reading* t = Find(out, "temperature");  // alias to an alias implying °F
  ASSERT_NE(t, nullptr);
  EXPECT_NEAR(t->value, 10.0, 1e-9);
  EXPECT_TRUE(t->flags.Has(QcFlag::kUnitConverted));
  const Reading* h = Find(out, "humidity");  // quadratic term: 0.01·2500 + 50
  ASSERT_NE(h, nullptr);
  EXPECT_DOUBLE_EQ(h->value, 75.0);
  EXPECT_TRUE(h->flags.Has(QcFlag::kCalibrated));
  EXPECT_TRUE(h->prov.calibration_date.empty());
  ASSERT_NE(Find(out, "leaf_wetness"), nullptr);  // alias to a new metric name
  ASSERT_NE(Find(out, "no2"), nullptr);
  EXPECT_TRUE(ProvenanceToJson(pm25->prov, pm25->device, pm25->flags).find("2024-03-01") !=
              std::string::npos);
  EXPECT_EQ(stage_->registry()->ExpectedInterval("aq-0042"), kMicrosPerMinute);

  // Firmware and units the payload sends win over the registry's.
  out = Run({Payload("aq-0042", R"("pm10":30,"firmware":"3.0","units":{"pm10":"ug/m3"})",
                     R"("lat":52.5,"lon":13.4,)", 60)});
  ASSERT_EQ(out.readings.size(), 1u);
  EXPECT_DOUBLE_EQ(out.readings[0].value, 30.0);
  EXPECT_FALSE(out.readings[0].flags.Has(QcFlag::kUnitConverted));
  EXPECT_EQ(out.readings[0].prov.firmware.view(), "3.0");

  // Another device gets none of it.
  out = Run({Payload("aq-0043", R"("p_25":20,"pm25":20)")});
  ASSERT_EQ(out.readings.size(), 2u);
  EXPECT_DOUBLE_EQ(Find(out, "pm25")->value, 20.0);
  EXPECT_FALSE(Find(out, "pm25")->flags.Has(QcFlag::kCalibrated));
  EXPECT_NE(Find(out, "p_25"), nullptr);
}

TEST_F(IngestRegistryTest, CalibratedValueIsBoundsChecked) {
  Build("devices:\n  aq-1:\n    calibration:\n      pm25: {m: 100}\n");
  Batch out = Run({Payload("aq-1", R"("pm25":20,"pm10":20)")});
  ASSERT_EQ(out.quarantine.size(), 1u);
  EXPECT_EQ(out.quarantine[0].reason.view(), "out_of_bounds");
  EXPECT_NE(out.quarantine[0].detail.find("after calibration"), std::string::npos)
      << out.quarantine[0].detail;
  EXPECT_EQ(out.readings.size(), 1u);
}

TEST_F(IngestRegistryTest, FixedPositionsAndDefaultCrs) {
  Build(R"(devices:
  gauge-1:
    position: {lat: 51.5, lon: -0.12}
  gauge-2:
    crs: EPSG:27700
    position: {x: 530000, y: 180000}
  bng-*:
    crs: EPSG:27700
)");
  // No position in the payload: the registry's, flagged.
  Batch out = Run({Payload("gauge-1", R"("stage":1.2)", "")});
  ASSERT_EQ(out.readings.size(), 1u) << (out.quarantine.empty() ? "" : out.quarantine[0].detail);
  EXPECT_DOUBLE_EQ(out.readings[0].lat, 51.5);
  EXPECT_DOUBLE_EQ(out.readings[0].lon, -0.12);
  EXPECT_TRUE(out.readings[0].flags.Has(QcFlag::kPositionFromRegistry));
  EXPECT_FALSE(out.readings[0].flags.Has(QcFlag::kCrsTransformed));
  // A position in the payload wins.
  out = Run({Payload("gauge-1", R"("stage":1.3)", R"("lat":51.6,"lon":-0.1,)", 60)});
  ASSERT_EQ(out.readings.size(), 1u);
  EXPECT_DOUBLE_EQ(out.readings[0].lat, 51.6);
  EXPECT_FALSE(out.readings[0].flags.Has(QcFlag::kPositionFromRegistry));
  // A fixed position in British National Grid: reprojected, originals in provenance.
  // 530000 E, 180000 N is near Westminster (about 51.508 N, 0.126 W).
  out = Run({Payload("gauge-2", R"("stage":1.4)", "")});
  ASSERT_EQ(out.readings.size(), 1u) << (out.quarantine.empty() ? "" : out.quarantine[0].detail);
  const Reading& r = out.readings[0];
  EXPECT_NEAR(r.lat, 51.508, 0.01);
  EXPECT_NEAR(r.lon, -0.126, 0.01);
  EXPECT_TRUE(r.flags.Has(QcFlag::kPositionFromRegistry));
  EXPECT_TRUE(r.flags.Has(QcFlag::kCrsTransformed));
  EXPECT_EQ(r.prov.crs_source.view(), "EPSG:27700");
  EXPECT_DOUBLE_EQ(r.prov.orig_x, 530000);
  // x/y without a crs in the payload or the source: the device's default CRS.
  out = Run({Payload("bng-7", R"("stage":1.5)", R"("x":530000,"y":180000,)")});
  ASSERT_EQ(out.readings.size(), 1u) << (out.quarantine.empty() ? "" : out.quarantine[0].detail);
  EXPECT_NEAR(out.readings[0].lat, 51.508, 0.01);
  EXPECT_FALSE(out.readings[0].flags.Has(QcFlag::kPositionFromRegistry));
  // A device with neither: still missing_field.
  out = Run({Payload("other", R"("stage":1.6)", "")});
  ASSERT_EQ(out.quarantine.size(), 1u);
  EXPECT_EQ(out.quarantine[0].reason.view(), "missing_field");
}

TEST_F(IngestRegistryTest, LongShapeUsesAliasesAndUnits) {
  Build("devices:\n  s-*:\n    aliases: {nox: no2}\n    units: {no2: ug/m3}\n");
  Batch out = Run({R"({"timestamp":"2024-05-01T12:00:00Z","sensor_id":"s-1","metric":"nox",)"
                   R"("metric_value":37.632,"latitude":52.5,"longitude":13.4})"});
  ASSERT_EQ(out.readings.size(), 1u) << (out.quarantine.empty() ? "" : out.quarantine[0].detail);
  EXPECT_EQ(out.readings[0].metric.view(), "no2");
  EXPECT_NEAR(out.readings[0].value, 20.0, 1e-3);  // ppb
  EXPECT_TRUE(out.readings[0].flags.Has(QcFlag::kUnitConverted));
}

TEST_F(IngestRegistryTest, UnknownDevicesAcceptedByDefault) {
  Build("devices:\n  aq-1: {model: a}\n");
  Batch out = Run({Payload("aq-1", R"("pm25":1)"), Payload("stranger", R"("pm25":2)")});
  EXPECT_EQ(out.readings.size(), 2u);
  EXPECT_TRUE(out.quarantine.empty());
}

TEST_F(IngestRegistryTest, UnknownDevicesQuarantined) {
  Build("devices:\n  aq-*: {model: a}\n", "  unknown_devices: quarantine\n");
  Batch out = Run({Payload("aq-1", R"("pm25":1,"pm10":2)"), Payload("stranger", R"("pm25":2)"),
                   Payload("stranger", R"("pm25":3,"pm10":4)")});
  EXPECT_EQ(out.readings.size(), 2u);
  ASSERT_EQ(out.quarantine.size(), 2u);
  EXPECT_EQ(out.quarantine[0].reason.view(), "unknown_device");
  EXPECT_EQ(out.quarantine[0].device.view(), "stranger");
  EXPECT_NE(out.quarantine[0].detail.find("stranger"), std::string::npos);
  EXPECT_NE(out.quarantine[0].detail.find("devices.yaml"), std::string::npos);
  LedgerSnapshot s = ledger_->Snapshot();
  EXPECT_EQ(s.input, 4u);  // 2 readings + 2 whole payloads
  EXPECT_EQ(s.quarantine_reasons["unknown_device"], 2u);
  EXPECT_EQ(s.quarantined, 2u);  // the 2 readings forwarded are accepted by the window stage
}

TEST_F(IngestRegistryTest, StageReloadsTheRegistryWhileRunning) {
  Build("devices:\n  aq-1:\n    calibration: {pm25: {m: 2}}\n");
  Batch out = Run({Payload("aq-1", R"("pm25":10)")});
  ASSERT_EQ(out.readings.size(), 1u);
  EXPECT_DOUBLE_EQ(out.readings[0].value, 20.0);
  // Change the curve; the stage's cached entry must not survive the reload.
  WriteFile(registry_, "devices:\n  aq-1:\n    calibration: {pm25: {m: 3}}\n");
  Touch(registry_, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));  // registry_poll: 100ms
  out = Run({fmt::format(R"({{"device_id":"aq-1","sensor_ts":{},"lat":1,"lon":1,"pm25":10}})",
                         kEvent / 1000 + 1000)});
  ASSERT_EQ(out.readings.size(), 1u);
  EXPECT_DOUBLE_EQ(out.readings[0].value, 30.0);
  // A broken file keeps the last good registry.
  WriteFile(registry_, "devices:\n  aq-1:\n    calibration: {pm25: {m: [}}\n");
  Touch(registry_, 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  out = Run({fmt::format(R"({{"device_id":"aq-1","sensor_ts":{},"lat":1,"lon":1,"pm25":10}})",
                         kEvent / 1000 + 2000)});
  ASSERT_EQ(out.readings.size(), 1u);
  EXPECT_DOUBLE_EQ(out.readings[0].value, 30.0);
}

TEST_F(IngestRegistryTest, GasUnitOnRequest) {
  Build("devices: {}\n", "  gas_unit: ug/m3\n");
  Batch out = Run({Payload("aq-1", R"("no2":20,"o3":50,"pm25":5)")});
  ASSERT_EQ(out.readings.size(), 3u);
  EXPECT_NEAR(Find(out, "no2")->value, 37.632, 1e-3);
  EXPECT_TRUE(Find(out, "no2")->flags.Has(QcFlag::kUnitConverted));
  EXPECT_NEAR(Find(out, "o3")->value, 98.156, 1e-3);
  EXPECT_DOUBLE_EQ(Find(out, "pm25")->value, 5.0);
  EXPECT_FALSE(Find(out, "pm25")->flags.Has(QcFlag::kUnitConverted));
}

TEST(IngestRegistryConfig, OptionErrorsAreLocated) {
  testing::TempDir dir;
  auto make = [&](const std::string& processing) {
    WriteFile(dir.File("pipeline.yaml"),
              "processing:\n" + processing + "sources:\n  - name: s\n    type: simulator\n");
    auto c = LoadPipelineConfig(dir.File("pipeline.yaml"));
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return IngestStage::Make(*c).status();
  };
  Status st = make("  unknown_devices: quarantine\n");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("pipeline.yaml:2"), std::string::npos) << st.ToString();
  st = make("  registry: missing.yaml\n");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("missing.yaml"), std::string::npos) << st.ToString();
  WriteFile(dir.File("bad.yaml"), "devices:\n  a: {modle: 1}\n");
  st = make("  registry: bad.yaml\n");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("bad.yaml:2"), std::string::npos) << st.ToString();
}

TEST_F(IngestRegistryTest, ReplayRecoversUnknownDevicesAfterTheRegistryIsFixed) {
  Build("devices:\n  aq-1: {}\n", "  unknown_devices: quarantine\n");
  Batch out = Run({Payload("aq-1", R"("pm25":1)"), Payload("aq-2", R"("pm25":2,"pm10":3)")});
  ASSERT_EQ(out.quarantine.size(), 1u);
  std::string store = dir_.File("tributary.gpkg");
  SqliteSinkOptions options;
  options.path = store;
  std::unique_ptr<Sink> sink = MakeSqliteSink(options);
  ASSERT_TRUE(sink->Open(ctx_).ok());
  ASSERT_TRUE(sink->Write(out).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();
  LedgerSnapshot snapshot = ledger_->Snapshot();
  snapshot.accepted += out.readings.size();  // what the window stage would have counted
  ASSERT_TRUE(snapshot.balanced());

  // Replay with the registry unchanged: nothing moves.
  auto report = ReplayQuarantine(config_, store, &snapshot);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->recovered, 0u);
  EXPECT_EQ(report->still_quarantined, 1u);

  // The operator adds the device; the replay moves its record to the readings.
  WriteFile(registry_, "devices:\n  aq-*: {firmware: 1.0}\n");
  report = ReplayQuarantine(config_, store, &snapshot);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->recovered, 1u);
  EXPECT_EQ(report->readings, 2u);
  EXPECT_EQ(report->recovered_by_reason["unknown_device"], 1u);
  EXPECT_TRUE(snapshot.balanced());
  EXPECT_EQ(snapshot.quarantined, 0u);
  EXPECT_EQ(snapshot.accepted, 3u);
  SqliteDb db;
  ASSERT_TRUE(db.Open(store, true).ok());
  EXPECT_EQ(*db.QueryInt("SELECT count(*) FROM quarantine"), 0);
  EXPECT_EQ(*db.QueryInt("SELECT count(*) FROM readings WHERE device_id = 'aq-2'"), 2);
}

}  // namespace
}  // namespace tributary
