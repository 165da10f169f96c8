// QC checks against the simulator's sensor network: faults are injected into simulated
// readings (decoded by the real ingestion stage), marked SIMULATED_FAULT, and the test
// prints and bounds the detection and false-positive rates of each check.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <set>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "ingest/ingest.h"
#include "io/sources/simulator.h"
#include "stream/checkpoint.h"
#include "stream/qc/qc.h"

namespace tributary {
namespace {

constexpr uint32_t kQcCheckFlags = static_cast<uint32_t>(QcFlag::kSpike) |
                                   static_cast<uint32_t>(QcFlag::kFlatline) |
                                   static_cast<uint32_t>(QcFlag::kRateOfChange) |
                                   static_cast<uint32_t>(QcFlag::kBaselineExceeded) |
                                   static_cast<uint32_t>(QcFlag::kNeighborDisagreement);

// Simulated readings in arrival order, batched as a source would hand them on.
std::vector<Batch> SimulatedReadings(SimulatorOptions sim, size_t batch_size = 500) {
  sim.malformed_rate = 0;
  sim.duplicate_rate = 0;
  sim.as_fast_as_possible = true;
  Result<PipelineConfig> config =
      ParsePipelineConfig("sources:\n  - name: sim\n    type: simulator\n", "<qc test>");
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  auto ingest = IngestStage::Make(*config);
  EXPECT_TRUE(ingest.ok()) << ingest.status().ToString();
  Ledger ledger;
  RunContext ctx;
  ctx.config = &*config;
  ctx.ledger = &ledger;
  EXPECT_TRUE((*ingest)->Open(ctx).ok());
  Simulator simulator(sim);
  std::vector<Batch> out;
  RawBatch raw;
  SimMessage msg;
  Symbol topic = Intern("sim");
  auto flush = [&] {
    Batch b;
    EXPECT_TRUE((*ingest)->Process(raw, b).ok());
    if (!b.readings.empty()) out.push_back(std::move(b));
    raw.Clear();
  };
  while (simulator.Next(msg)) {
    raw.Add(msg.payload, msg.arrival_time, topic, static_cast<int64_t>(msg.sequence), 0);
    if (raw.size() >= batch_size) flush();
  }
  if (!raw.empty()) flush();
  return out;
}

struct Rates {
  size_t faults = 0, detected = 0, clean = 0, false_pos = 0;
  double detection() const { return faults ? double(detected) / double(faults) : 0.0; }
  double fp() const { return clean ? double(false_pos) / double(clean) : 0.0; }
  void Print(const char* what) const {
    std::printf("%s: %zu injected, detection %.4f; false positives %.5f of %zu clean\n", what,
                faults, detection(), fp(), clean);
  }
};

// Spikes, stuck values and rate jumps in one day of a 200-sensor network.
TEST(QcSimulatorTest, SpikesFlatlinesAndRateJumps) {
  SimulatorOptions sim;
  sim.devices = 200;
  sim.duration = 24 * kMicrosPerHour;
  std::vector<Batch> batches = SimulatedReadings(sim);
  std::mt19937 rng(14);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  // Spikes and jumps scaled to the metric: several times its natural variation.
  const std::map<std::string, double> spike_size = {{"temperature", 6.0},
                                                    {"humidity", 30.0},
                                                    {"pm25", 120.0},
                                                    {"pm10", 180.0},
                                                    {"pressure", 12.0}};
  // One metric of a few sensors gets stuck for 40 readings from its 300th on.
  std::map<uint64_t, int> seen;
  std::set<std::string> stuck_devices = {"aq-0003", "aq-0010", "ws-0002", "aq-0020"};
  std::map<std::string, double> stuck_value;
  Rates spike, flat, clean_all;
  QcOptions options = DefaultQcOptions();
  // Baselines and neighbours are judged by their own tests; this one keeps them apart.
  options.defaults.checks &=
      ~(static_cast<uint32_t>(QcCheck::kBaseline) | static_cast<uint32_t>(QcCheck::kNeighbors));
  for (auto& [m, l] : options.per_metric) l.checks &= options.defaults.checks;
  QcOperator op(options);
  for (Batch& b : batches) {
    std::vector<int> kind(b.readings.size(), 0);  // 1 spike, 2 stuck
    for (size_t i = 0; i < b.readings.size(); ++i) {
      Reading& r = b.readings[i];
      int n = seen[(uint64_t(r.device.id) << 32) | r.metric.id]++;
      std::string dev(r.device.view()), metric(r.metric.view());
      if (stuck_devices.count(dev) && metric == "temperature" && n >= 300 && n < 340) {
        auto [it, fresh] = stuck_value.try_emplace(dev, r.value);
        r.value = it->second;
        kind[i] = 2;
        continue;
      }
      auto size = spike_size.find(metric);
      if (size != spike_size.end() && n > 40 && u(rng) < 0.005) {
        double s = size->second * (1.0 + u(rng));
        r.value += (metric == "pm25" || metric == "pm10" || u(rng) < 0.5) ? s : -s;
        kind[i] = 1;
      }
    }
    ASSERT_TRUE(op.Process(b).ok());
    for (size_t i = 0; i < b.readings.size(); ++i) {
      const Reading& r = b.readings[i];
      if (kind[i] == 1) {
        ++spike.faults;
        spike.detected += r.flags.Has(QcFlag::kSpike);
        EXPECT_GE(r.qc_score, r.flags.Has(QcFlag::kSpike) ? 1.0f : 0.0f);
      } else if (kind[i] == 2) {
        // The first flatline_count − 1 readings of a run are not yet a flatline.
        ++flat.faults;
        flat.detected += r.flags.Has(QcFlag::kFlatline);
      } else {
        ++clean_all.clean;
        clean_all.false_pos += (r.flags.bits & kQcCheckFlags) != 0;
        ++flat.clean;
        flat.false_pos += r.flags.Has(QcFlag::kFlatline);
        ++spike.clean;
        spike.false_pos += r.flags.Has(QcFlag::kSpike);
      }
    }
  }
  spike.Print("spike (simulator)");
  flat.Print("flatline (simulator, runs of 40; the first 9 of each run are not yet flat)");
  clean_all.Print("any of spike/flatline/rate on clean readings");
  ASSERT_GT(spike.faults, 300u);
  EXPECT_GE(spike.detection(), 0.85);
  EXPECT_LE(spike.fp(), 0.01);
  ASSERT_EQ(flat.faults, 4u * 40u);
  // 31 of each run of 40 are at or past the 10th identical reading.
  EXPECT_EQ(flat.detected, 4u * 31u);
  EXPECT_LE(flat.fp(), 0.001);
  EXPECT_LE(clean_all.fp(), 0.02);
}

// Rate of change: a jump in a gauge's level beyond 0.5 m/min is flagged; the river's own
// rise after rain is not.
TEST(QcSimulatorTest, RateJumpsOfRiverStage) {
  SimulatorOptions sim;
  sim.devices = 200;
  sim.duration = 12 * kMicrosPerHour;
  std::vector<Batch> batches = SimulatedReadings(sim);
  QcOperator op(DefaultQcOptions());
  Rates rate;
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::map<uint32_t, int> seen;
  for (Batch& b : batches) {
    std::vector<bool> fault(b.readings.size(), false);
    for (size_t i = 0; i < b.readings.size(); ++i) {
      Reading& r = b.readings[i];
      if (r.metric.view() != "stage") continue;
      if (seen[r.device.id]++ > 10 && u(rng) < 0.02) {
        r.value += 1.5 + u(rng);  // > 0.5 m/min at one reading a minute
        fault[i] = true;
      }
    }
    ASSERT_TRUE(op.Process(b).ok());
    for (size_t i = 0; i < b.readings.size(); ++i) {
      const Reading& r = b.readings[i];
      if (r.metric.view() != "stage") continue;
      if (fault[i]) {
        ++rate.faults;
        rate.detected += r.flags.Has(QcFlag::kRateOfChange);
      } else {
        ++rate.clean;
        // The reading after a jump falls back by as much: that one is flagged too.
        bool after_fault = i > 0 && fault[i - 1];
        rate.false_pos += r.flags.Has(QcFlag::kRateOfChange) && !after_fault;
      }
    }
  }
  rate.Print("rate of change (river stage)");
  ASSERT_GT(rate.faults, 50u);
  EXPECT_GE(rate.detection(), 0.95);
  EXPECT_LE(rate.fp(), 0.05);
}

// Baselines: twelve days of a small network; from day 9 on, a share of PM2.5 and NO2
// readings is raised far above anything seen at that hour. (Weather metrics have no
// baseline by default: see DefaultQcOptions.)
TEST(QcSimulatorTest, BaselineExceedances) {
  SimulatorOptions sim;
  sim.devices = 20;
  sim.duration = 12 * kMicrosPerDay;
  std::vector<Batch> batches = SimulatedReadings(sim, 2000);
  QcOperator op(DefaultQcOptions());
  std::mt19937 rng(9);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const TimeUs judged_from = sim.start + 8 * kMicrosPerDay;
  Rates base;
  std::map<std::string, Rates> by_metric;
  const Symbol zones[] = {Intern("zone-a"), Intern("zone-b"), Intern("zone-c")};
  for (Batch& b : batches) {
    std::vector<bool> fault(b.readings.size(), false);
    for (size_t i = 0; i < b.readings.size(); ++i) {
      Reading& r = b.readings[i];
      r.zone = zones[r.device.id % 3];  // three zones of the network, for zone baselines
      if (r.event_time < judged_from || u(rng) >= 0.01) continue;
      if (r.metric.view() == "no2") {
        r.value = r.value * 3.0 + 60.0;
      } else if (r.metric.view() == "pm25") {
        r.value = r.value * 3.0 + 60.0;
      } else {
        continue;
      }
      fault[i] = true;
    }
    ASSERT_TRUE(op.Process(b).ok());
    for (size_t i = 0; i < b.readings.size(); ++i) {
      const Reading& r = b.readings[i];
      if (r.event_time < judged_from) continue;
      if (r.metric.view() != "no2" && r.metric.view() != "pm25") continue;
      if (fault[i]) {
        ++base.faults;
        base.detected += r.flags.Has(QcFlag::kBaselineExceeded);
        if (r.flags.Has(QcFlag::kBaselineExceeded)) {
          EXPECT_GE(r.qc_score, 1.0f);
        }
      } else {
        ++base.clean;
        base.false_pos += r.flags.Has(QcFlag::kBaselineExceeded);
        Rates& m = by_metric[std::string(r.metric.view())];
        ++m.clean;
        m.false_pos += r.flags.Has(QcFlag::kBaselineExceeded);
      }
    }
  }
  for (auto& [m, rates] : by_metric) rates.Print(("baseline " + m).c_str());
  base.Print("baseline p99 of the trailing 30 days by hour (sensor and zone)");
  EXPECT_GE(op.zone_keys(), 6u);  // 3 zones × (pm25, no2, and the other baseline metrics)
  ASSERT_GT(base.faults, 100u);
  EXPECT_GE(base.detection(), 0.9);
  // The p99 flags about 1 % of sound readings by definition; plumes and rush hours that
  // come on other days than before add some.
  EXPECT_LE(base.fp(), 0.05);
  EXPECT_GE(base.fp(), 0.001);  // the check judges at all
}

// Neighbours: a dense network; a few sensors read far off their neighbours (a faulty
// sensor or a wrong calibration) for half a day.
TEST(QcSimulatorTest, NeighborDisagreement) {
  SimulatorOptions sim;
  sim.devices = 400;
  sim.extent_km = 10.0;
  sim.duration = 12 * kMicrosPerHour;
  std::vector<Batch> batches = SimulatedReadings(sim);
  QcOperator op(DefaultQcOptions());
  const std::set<std::string> faulty = {"aq-0005", "aq-0017", "aq-0042", "aq-0101", "ws-0007"};
  const TimeUs from = sim.start + 6 * kMicrosPerHour;
  Rates nb;
  size_t judged_clean = 0;
  for (Batch& b : batches) {
    std::vector<bool> fault(b.readings.size(), false);
    for (size_t i = 0; i < b.readings.size(); ++i) {
      Reading& r = b.readings[i];
      if (r.event_time < from || r.metric.view() != "temperature") continue;
      if (!faulty.count(std::string(r.device.view()))) continue;
      r.value += 10.0;
      fault[i] = true;
    }
    ASSERT_TRUE(op.Process(b).ok());
    for (size_t i = 0; i < b.readings.size(); ++i) {
      const Reading& r = b.readings[i];
      if (r.event_time < from || r.metric.view() != "temperature") continue;
      if (fault[i]) {
        ++nb.faults;
        nb.detected += r.flags.Has(QcFlag::kNeighborDisagreement);
      } else {
        ++nb.clean;
        nb.false_pos += r.flags.Has(QcFlag::kNeighborDisagreement);
        judged_clean += r.qc_score > 0;
      }
    }
  }
  nb.Print("neighbour disagreement (temperature +10 °C on 5 of 400 sensors, 2 km)");
  ASSERT_GT(nb.faults, 1000u);
  EXPECT_GE(nb.detection(), 0.9);
  EXPECT_LE(nb.fp(), 0.01);
  EXPECT_GT(judged_clean, nb.clean / 2);  // most sensors had enough neighbours
}

// A checkpoint in the middle gives the same flags and scores as an uninterrupted run.
TEST(QcSimulatorTest, SnapshotRestoreContinuesIdentically) {
  SimulatorOptions sim;
  sim.devices = 120;
  sim.extent_km = 8.0;
  sim.interval = 5 * kMicrosPerMinute;
  sim.jitter = 10 * kMicrosPerSecond;
  sim.duration = 9 * kMicrosPerDay;
  std::vector<Batch> batches = SimulatedReadings(sim, 2000);
  QcOptions options = DefaultQcOptions();
  options.baseline_min_days = 2;
  QcOperator a(options);
  size_t half = batches.size() / 2;
  for (size_t i = 0; i < half; ++i) ASSERT_TRUE(a.Process(batches[i]).ok());
  CheckpointWriter w;
  ASSERT_TRUE(a.Snapshot(w).ok());
  QcOperator b(options);
  CheckpointReader in(w.bytes());
  ASSERT_TRUE(b.Restore(in).ok()) << in.status().ToString();
  EXPECT_TRUE(in.at_end());
  EXPECT_EQ(b.sensor_keys(), a.sensor_keys());
  EXPECT_EQ(b.zone_keys(), a.zone_keys());
  size_t flagged = 0, compared = 0;
  for (size_t i = half; i < batches.size(); ++i) {
    Batch copy = batches[i];
    ASSERT_TRUE(a.Process(batches[i]).ok());
    ASSERT_TRUE(b.Process(copy).ok());
    for (size_t k = 0; k < copy.readings.size(); ++k) {
      ASSERT_EQ(copy.readings[k].flags.bits, batches[i].readings[k].flags.bits) << i << " " << k;
      ASSERT_EQ(copy.readings[k].qc_score, batches[i].readings[k].qc_score);
      flagged += copy.readings[k].qc_score >= 1.0f;
      ++compared;
    }
  }
  std::printf("checkpoint: %zu readings compared after restore, %zu flagged\n", compared, flagged);
  EXPECT_GT(flagged, 0u);
}

TEST(QcConfigTest, RulesOverrideByMetricAndDeviceType) {
  Result<PipelineConfig> c = ParsePipelineConfig(R"(sources:
  - name: sim
    type: simulator
qc:
  spike_z: 5
  neighbor_radius: 1500
  rules:
    - metric: temperature
      devices: "ws-*"
      spike_z: 8
      checks: [spike, rate]
    - metric: pm25
      max_rate_per_min: 100
)",
                                                 "<qc>");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  Result<QcOptions> o = ParseQcOptions(*c);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_TRUE(o->enabled);
  EXPECT_DOUBLE_EQ(o->neighbor_radius_m, 1500.0);
  QcMetricLimits ws = o->Resolve("temperature", "ws-0001", "");
  EXPECT_DOUBLE_EQ(ws.spike_z, 8.0);
  EXPECT_TRUE(ws.Has(QcCheck::kSpike));
  EXPECT_FALSE(ws.Has(QcCheck::kNeighbors));
  EXPECT_DOUBLE_EQ(ws.max_rate_per_min, 3.0);  // built-in limit kept
  QcMetricLimits aq = o->Resolve("temperature", "aq-0001", "");
  EXPECT_DOUBLE_EQ(aq.spike_z, 5.0);
  EXPECT_TRUE(aq.Has(QcCheck::kNeighbors));
  EXPECT_DOUBLE_EQ(o->Resolve("pm25", "aq-0001", "").max_rate_per_min, 100.0);
  EXPECT_FALSE(o->Resolve("stage", "rg-0001", "").Has(QcCheck::kNeighbors));

  Result<PipelineConfig> bad = ParsePipelineConfig(
      "sources:\n  - name: sim\n    type: simulator\nqc:\n  checks: [spike, sparkle]\n", "<qc>");
  ASSERT_TRUE(bad.ok());
  Result<QcOptions> err = ParseQcOptions(*bad);
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.status().ToString().find("sparkle"), std::string::npos);
  Result<PipelineConfig> off = ParsePipelineConfig(
      "sources:\n  - name: sim\n    type: simulator\nqc:\n  enabled: false\n", "<qc>");
  ASSERT_TRUE(off.ok());
  auto none = MakeQcOperator(*off);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, nullptr);
}

}  // namespace
}  // namespace tributary
