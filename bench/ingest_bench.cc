// Ingestion throughput: decode + normalise + validate (+ dedup) of the simulator's wide
// payload, in readings per second on one core. Also the raw simdjson baselines (On
// Demand vs DOM over the same payloads) that chose the decoder's parser.
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <simdjson.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "core/run_context.h"
#include "ingest/ingest.h"
#include "ingest/json_decoder.h"
#include "io/sources/simulator.h"

namespace tributary {
namespace {

constexpr TimeUs kStart = 1714564800000000;  // 2024-05-01T12:00:00Z
constexpr size_t kBatchRecords = 1024;
constexpr int kDevices = 200;

// One simulator wide payload (src/io/sources/simulator.h): 5 metrics, metadata, and
// for every tenth device a units object converting pm25 from mg/m³. With `projected`,
// every fifth device (device % 5 == 2) sends UTM 33N x/y with "crs":"EPSG:32633", as the
// simulator's projected devices do.
std::string WidePayload(int device, TimeUs t, bool projected = false) {
  std::string units = device % 10 == 0 ? R"(,"units":{"pm25":"mg/m3"})" : "";
  double pm25 = device % 10 == 0 ? 0.0123 : 12.3 + device % 7;
  double lat = 52.4 + device * 0.001, lon = 13.3 + device * 0.0007;
  std::string position = fmt::format(R"("lat":{:.6f},"lon":{:.6f})", lat, lon);
  if (projected && device % 5 == 2) {
    double x = 0, y = 0;
    LatLonToUtm(lat, lon, 33, false, x, y);
    position = fmt::format(R"("x":{:.2f},"y":{:.2f},"crs":"EPSG:32633")", x, y);
  }
  return fmt::format(
      R"({{"device_id":"aq-{:04d}","sensor_ts":{},{},"pm25":{},)"
      R"("pm10":{:.1f},"no2":{:.1f},"temperature":{:.2f},"humidity":{:.1f},"battery_pct":{},)"
      R"("firmware":"aq-2.1.0"{}}})",
      device, t / 1000, position, pm25, 20.1 + device % 5, 18.0 + device % 3, 14.21 + device % 4,
      61.0 - device % 6, 50 + device % 50, units);
}

// `records` payloads starting at `t0`, devices round-robin, one minute apart per device.
RawBatch MakeBatch(TimeUs t0, size_t records, bool projected = false) {
  RawBatch batch;
  Symbol topic = Intern("sim/air_quality");
  for (size_t i = 0; i < records; ++i) {
    int device = static_cast<int>(i % kDevices) + 1;
    TimeUs t = t0 + static_cast<TimeUs>(i / kDevices) * kMicrosPerMinute + device * 1000;
    batch.Add(WidePayload(device, t, projected), t + 2 * kMicrosPerSecond, topic,
              static_cast<int64_t>(i), 0);
  }
  return batch;
}

struct Harness {
  explicit Harness(DurationUs dedup_horizon) {
    config.processing.dedup_horizon = dedup_horizon;
    config.processing.drift_threshold = 5 * kMicrosPerMinute;
    config.processing.max_future = 5 * kMicrosPerMinute;
    config.sources.push_back(SourceEntry{"simulator", "simulator", {}});
    Open();
  }
  // A stage built from pipeline YAML (e.g. with a `processing.registry`).
  explicit Harness(const std::string& yaml) {
    auto parsed = ParsePipelineConfig(yaml, "bench.yaml");
    if (!parsed.ok()) std::abort();
    config = std::move(parsed).value();
    config.processing.dedup_horizon = 0;
    Open();
  }
  void Open() {
    auto made = IngestStage::Make(config);
    if (!made.ok()) {
      std::fprintf(stderr, "%s\n", made.status().ToString().c_str());
      std::abort();
    }
    stage = std::move(made).value();
    ctx.config = &config;
    ctx.ledger = &ledger;
    if (!stage->Open(ctx).ok()) std::abort();
  }
  PipelineConfig config;
  Ledger ledger;
  RunContext ctx;
  std::unique_ptr<IngestStage> stage;
};

// Decode + normalise + validate, dedup off: the same batch can be replayed.
void BM_IngestWide(benchmark::State& state) {
  Harness h(0);
  RawBatch batch = MakeBatch(kStart, kBatchRecords);
  uint64_t readings = 0;
  for (auto _ : state) {
    Batch out;
    if (!h.stage->Process(batch, out).ok()) std::abort();
    readings += out.readings.size();
    benchmark::DoNotOptimize(out.readings.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(readings));
  state.counters["bytes/reading"] =
      static_cast<double>(batch.data.size()) / (static_cast<double>(readings) / state.iterations());
}
BENCHMARK(BM_IngestWide)->Unit(benchmark::kMicrosecond);

// As BM_IngestWide with 20 % of the records in UTM 33N (a PROJ transform each) and 10 %
// with pm25 in mg/m³ (a unit conversion).
void BM_IngestWideMixed(benchmark::State& state) {
  Harness h(0);
  RawBatch batch = MakeBatch(kStart, kBatchRecords, true);
  uint64_t readings = 0, transformed = 0;
  for (auto _ : state) {
    Batch out;
    if (!h.stage->Process(batch, out).ok()) std::abort();
    if (!out.quarantine.empty()) std::abort();
    readings += out.readings.size();
    for (const Reading& r : out.readings) transformed += r.flags.Has(QcFlag::kCrsTransformed);
    benchmark::DoNotOptimize(out.readings.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(readings));
  state.counters["transformed_share"] =
      static_cast<double>(transformed) / static_cast<double>(readings);
}
BENCHMARK(BM_IngestWideMixed)->Unit(benchmark::kMicrosecond);

// As BM_IngestWideMixed with a device registry: every device matches a pattern entry
// with a pm25 calibration (so every pm25 reading is calibrated), and 20 devices have
// exact entries with firmware and an alias. Registry lookups are cached per device, so
// this should cost little more than BM_IngestWideMixed.
void BM_IngestWideMixedWithRegistry(benchmark::State& state) {
  char dir[] = "/tmp/tributary-bench-XXXXXX";
  if (mkdtemp(dir) == nullptr) std::abort();
  std::string path = std::string(dir) + "/devices.yaml";
  {
    std::ofstream out(path);
    out << "devices:\n  \"aq-*\":\n    model: SDS011\n    interval: 60s\n"
           "    calibration: {pm25: {m: 0.52, b: 1.8, date: 2024-03-01}}\n";
    for (int d = 1; d <= 20; ++d) {
      out << fmt::format("  aq-{:04d}: {{firmware: fw-{}, aliases: {{pm_25: pm25}}}}\n", d * 10, d);
    }
  }
  Harness h(
      fmt::format("processing:\n  registry: {}\n  unknown_devices: quarantine\n"
                  "sources:\n  - name: simulator\n    type: simulator\n",
                  path));
  RawBatch batch = MakeBatch(kStart, kBatchRecords, true);
  uint64_t readings = 0, calibrated = 0;
  for (auto _ : state) {
    Batch out;
    if (!h.stage->Process(batch, out).ok()) std::abort();
    if (!out.quarantine.empty()) std::abort();
    readings += out.readings.size();
    for (const Reading& r : out.readings) calibrated += r.flags.Has(QcFlag::kCalibrated);
    benchmark::DoNotOptimize(out.readings.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(readings));
  state.counters["calibrated_share"] =
      static_cast<double>(calibrated) / static_cast<double>(readings);
  std::remove(path.c_str());
  rmdir(dir);
}
BENCHMARK(BM_IngestWideMixedWithRegistry)->Unit(benchmark::kMicrosecond);

// The whole stage with a one-hour dedup horizon; every batch brings new event times.
void BM_IngestWideWithDedup(benchmark::State& state) {
  Harness h(kMicrosPerHour);
  constexpr size_t kPrepared = 64;
  std::vector<RawBatch> batches;
  TimeUs per_batch = static_cast<TimeUs>(kBatchRecords / kDevices + 1) * kMicrosPerMinute;
  for (size_t i = 0; i < kPrepared; ++i) {
    batches.push_back(MakeBatch(kStart + static_cast<TimeUs>(i) * per_batch, kBatchRecords));
  }
  uint64_t readings = 0;
  size_t next = 0;
  TimeUs shift = 0;
  for (auto _ : state) {
    if (next == kPrepared) {
      // Out of fresh batches: rebuild them later in event time (not timed).
      state.PauseTiming();
      shift += static_cast<TimeUs>(kPrepared) * per_batch;
      for (size_t i = 0; i < kPrepared; ++i) {
        batches[i] = MakeBatch(kStart + shift + static_cast<TimeUs>(i) * per_batch, kBatchRecords);
      }
      next = 0;
      state.ResumeTiming();
    }
    Batch out;
    if (!h.stage->Process(batches[next++], out).ok()) std::abort();
    readings += out.readings.size();
    benchmark::DoNotOptimize(out.readings.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(readings));
  state.counters["dedup_keys"] = static_cast<double>(h.stage->dedup().size());
}
BENCHMARK(BM_IngestWideWithDedup)->Unit(benchmark::kMicrosecond);

// The decoder alone (records per second).
void BM_JsonDecodeWide(benchmark::State& state) {
  RawBatch batch = MakeBatch(kStart, kBatchRecords);
  JsonDecoder decoder;
  DecodedRecord rec;
  for (auto _ : state) {
    for (const RawRecord& r : batch.records) {
      DecodeStatus st = decoder.Decode(batch.Payload(r), rec);
      benchmark::DoNotOptimize(st.ok);
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch.records.size()));
}
BENCHMARK(BM_JsonDecodeWide)->Unit(benchmark::kMicrosecond);

// Baseline: simdjson On Demand visiting every field (what the decoder builds on).
void BM_SimdjsonOnDemandVisit(benchmark::State& state) {
  RawBatch batch = MakeBatch(kStart, kBatchRecords);
  simdjson::ondemand::parser parser;
  std::string buf(4096, '\0');
  double sum = 0;
  for (auto _ : state) {
    for (const RawRecord& r : batch.records) {
      std::string_view p = batch.Payload(r);
      std::memcpy(buf.data(), p.data(), p.size());
      simdjson::ondemand::document doc;
      if (parser.iterate(buf.data(), p.size(), buf.size()).get(doc)) std::abort();
      simdjson::ondemand::object obj;
      if (doc.get_object().get(obj)) std::abort();
      for (auto field_result : obj) {
        simdjson::ondemand::field field;
        if (std::move(field_result).get(field)) std::abort();
        std::string_view key;
        if (field.unescaped_key().get(key)) std::abort();
        simdjson::ondemand::value v = field.value();
        simdjson::ondemand::json_type t;
        if (v.type().get(t)) std::abort();
        if (t == simdjson::ondemand::json_type::number) {
          double d = 0;
          if (v.get_double().get(d)) std::abort();
          sum += d;
        } else if (t == simdjson::ondemand::json_type::string) {
          std::string_view s;
          if (v.get_string().get(s)) std::abort();
          sum += static_cast<double>(s.size());
        }
      }
    }
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch.records.size()));
  state.SetLabel(SIMDJSON_STRINGIFY(SIMDJSON_BUILTIN_IMPLEMENTATION));
}
BENCHMARK(BM_SimdjsonOnDemandVisit)->Unit(benchmark::kMicrosecond);

// Baseline: the DOM parser over the same payloads (runtime-dispatched kernel).
void BM_SimdjsonDomVisit(benchmark::State& state) {
  RawBatch batch = MakeBatch(kStart, kBatchRecords);
  simdjson::dom::parser parser;
  std::string buf(4096, '\0');
  double sum = 0;
  for (auto _ : state) {
    for (const RawRecord& r : batch.records) {
      std::string_view p = batch.Payload(r);
      std::memcpy(buf.data(), p.data(), p.size());
      simdjson::dom::element doc;
      if (parser.parse(buf.data(), p.size(), false).get(doc)) std::abort();
      simdjson::dom::object obj;
      if (doc.get_object().get(obj)) std::abort();
      for (auto [key, v] : obj) {
        sum += static_cast<double>(key.size());
        switch (v.type()) {
          case simdjson::dom::element_type::DOUBLE:
            sum += v.get_double().value_unsafe();
            break;
          case simdjson::dom::element_type::INT64:
            sum += static_cast<double>(v.get_int64().value_unsafe());
            break;
          case simdjson::dom::element_type::STRING:
            sum += static_cast<double>(v.get_string().value_unsafe().size());
            break;
          default:
            break;
        }
      }
    }
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch.records.size()));
  state.SetLabel(simdjson::get_active_implementation()->name());
}
BENCHMARK(BM_SimdjsonDomVisit)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace tributary

BENCHMARK_MAIN();
