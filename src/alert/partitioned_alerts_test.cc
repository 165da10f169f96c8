// Alert and QC state per input partition (docs/SCALING.md): the chain QC → window →
// patterns → alerts as the runtime builds it with a kafka sink's state_topic.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "alert/alert_operator.h"
#include "alert/patterns.h"
#include "core/pipeline_config.h"
#include "stream/checkpoint.h"
#include "stream/partitioned_operator.h"
#include "stream/partitioned_window.h"
#include "stream/qc/qc.h"
#include "stream/runtime.h"

namespace tributary {
namespace {

constexpr const char* kYaml =
    "processing:\n  grace: 1m\n  idle_timeout: 24h\n"
    "windows:\n"
    "  - name: dev\n    size: 5m\n    aggregates: [mean, max]\n"
    "qc:\n  enabled: true\n"
    "alerts:\n  rules:\n"
    "    - {name: pm_high, kind: reading_threshold, metric: pm25, level: 45, clear: 20}\n"
    "    - {name: dev_mean, kind: window_threshold, window: dev, metric: pm25, level: 24, "
    "clear: 20}\n"
    "    - {name: quiet, kind: stale, expected_interval: 20s, stale_factor: 3}\n"
    "    - {name: jump, kind: rate_of_change, metric: temperature, level: 30, per: 1m}\n"
    "  patterns:\n"
    "    - {name: spread, kind: sequence, count: 3, within: 2m, radius_m: 1000, hold: 2m, "
    "conditions: [{metric: pm25, trend: above, level: 40}]}\n";

struct Chain {
  Chain() {
    Result<PipelineConfig> c = ParsePipelineConfig(kYaml, "test.yaml");
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    config = std::move(*c);
    Result<QcOptions> qc_options = ParseQcOptions(config);
    EXPECT_TRUE(qc_options.ok()) << qc_options.status().ToString();
    auto options = std::make_shared<const QcOptions>(std::move(*qc_options));
    qc = std::make_unique<PartitionedOperator>("qc", [options]() -> std::unique_ptr<Operator> {
      return std::make_unique<QcOperator>(*options);
    });
    auto defs = ParseWindowDefinitions(config);
    EXPECT_TRUE(defs.ok());
    auto shared = std::make_shared<const std::vector<WindowDefinition>>(std::move(*defs));
    window = std::make_unique<PartitionedWindowOperator>([shared, processing = config.processing] {
      return std::make_unique<WindowOperator>(*shared, processing, [] { return TimeUs{0}; });
    });
    Result<std::vector<PatternRule>> rules = ParsePatternRules(config);
    EXPECT_TRUE(rules.ok() && !rules->empty()) << rules.status().ToString();
    auto pattern_rules = std::make_shared<const std::vector<PatternRule>>(std::move(*rules));
    patterns = std::make_unique<PartitionedOperator>(
        "patterns", [pattern_rules]() -> std::unique_ptr<Operator> {
          return std::make_unique<PatternOperator>(*pattern_rules);
        });
    Result<std::unique_ptr<AlertOperator>> a = AlertOperator::Make(config);
    EXPECT_TRUE(a.ok() && *a != nullptr) << a.status().ToString();
    alerts = std::move(*a);
    alerts->EnablePartitionState();
    ctx.config = &config;
    ctx.ledger = &ledger;
    for (Operator* op : ops()) EXPECT_TRUE(op->Open(ctx).ok());
  }
  std::vector<Operator*> ops() { return {qc.get(), window.get(), patterns.get(), alerts.get()}; }
  // Alerts and QC verdicts as text (emitted_at is the wall clock: left out).
  void Collect(Batch& b) {
    for (const AlertEvent& e : b.alerts) {
      got.push_back(AlertId(e) + " " + AlertStateName(e.state) + " " +
                    std::to_string(e.event_time) + " " + std::to_string(e.value));
    }
    for (const Reading& r : b.readings) {
      if (r.flags.empty()) continue;
      flagged.push_back(std::string(r.device.view()) + " " + std::string(r.metric.view()) + " " +
                        std::to_string(r.event_time) + " " + QcFlagsToString(r.flags));
    }
  }
  void Run(std::vector<Reading> readings) {
    Batch b;
    b.readings = std::move(readings);
    for (Operator* op : ops()) ASSERT_TRUE(op->Process(b).ok()) << op->name();
    Collect(b);
  }
  // A partition's state as the changelog holds it: the symbol table, then every stage.
  std::string SnapshotPartition(const std::string& key) {
    CheckpointWriter w;
    SnapshotSymbols(w);
    for (Operator* op : ops()) EXPECT_TRUE(op->SnapshotPartition(key, w).ok());
    return w.Take();
  }
  void RestorePartition(const std::string& key, const std::string& blob) {
    CheckpointReader in(blob);
    Result<std::vector<uint32_t>> map = ReadSymbolMap(in);
    ASSERT_TRUE(map.ok()) << map.status().ToString();
    in.SetSymbolMap(&*map);
    for (Operator* op : ops()) ASSERT_TRUE(op->RestorePartition(key, in).ok()) << op->name();
    EXPECT_TRUE(in.ok() && in.at_end());
  }
  void Drop(const std::string& key) {
    for (Operator* op : ops()) op->DropPartition(key);
  }

  PipelineConfig config;
  Ledger ledger;
  RunContext ctx;
  std::unique_ptr<PartitionedOperator> qc;
  std::unique_ptr<PartitionedWindowOperator> window;
  std::unique_ptr<PartitionedOperator> patterns;
  std::unique_ptr<AlertOperator> alerts;
  std::vector<std::string> got;
  std::vector<std::string> flagged;
};

// Readings of partition p, one every 20 s of event time: three pm25 sensors close
// together and one temperature sensor. In partition 1, dev0 is silent for 5 minutes in
// the middle (stale) and reports a spike (QC) before; temperature jumps once.
std::vector<Reading> Slice(int partition, int from, int to) {
  std::vector<Reading> out;
  for (int i = from; i < to; ++i) {
    for (int d = 0; d < 4; ++d) {
      if (partition == 1 && d == 0 && i >= 40 && i < 55) continue;
      Reading r;
      r.event_time = (1'714'521'600LL + 20LL * i) * kMicrosPerSecond;
      r.arrival_time = r.event_time;
      r.device = Intern("p" + std::to_string(partition) + "-dev" + std::to_string(d));
      r.lat = 48.0 + partition + d * 0.001;
      r.lon = 11.0;
      if (d < 3) {
        r.metric = Intern("pm25");
        r.value = std::fmod(i * 7.3 + partition + d, 50.0);
        if (partition == 1 && d == 0 && i == 30) r.value = 400;
      } else {
        r.metric = Intern("temperature");
        r.value = 10 + (i % 5) + (partition == 1 && i == 70 ? 25 : 0);
      }
      r.prov.source = Intern("bus");
      r.prov.topic = Intern("sensors");
      r.prov.partition = partition;
      out.push_back(r);
    }
  }
  return out;
}

std::vector<Reading> Both(int from, int to) {
  std::vector<Reading> a = Slice(0, from, to);
  std::vector<Reading> b = Slice(1, from, to);
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// A partition's state moved to another chain in the middle of the stream (while its
// alerts fire and its sensor is stale): both chains together give the alerts and QC
// flags of one chain that kept it, with the same alert ids.
TEST(PartitionedAlertsTest, MovedPartitionGivesTheAlertsItWouldHaveGivenInPlace) {
  Chain whole;
  for (int at = 0; at < 120; at += 10) whole.Run(Both(at, at + 10));
  const std::vector<std::string> expected = Sorted(whole.got);
  ASSERT_GT(expected.size(), 20u);
  auto count = [&](const std::string& what) {
    return std::count_if(expected.begin(), expected.end(),
                         [&](const std::string& s) { return s.find(what) != std::string::npos; });
  };
  EXPECT_GT(count("pm_high|"), 0);
  EXPECT_GT(count("dev_mean|"), 0);
  EXPECT_EQ(count("quiet|p1-dev0|"), 2);  // firing and resolved
  EXPECT_EQ(count("quiet|p0-"), 0);
  EXPECT_EQ(count("jump|p1-dev3|"), 2);
  EXPECT_GT(count("spread|"), 0);  // pattern matches within each partition
  EXPECT_FALSE(whole.flagged.empty());

  for (int split : {30, 50}) {  // before the spike and stale; in the middle of the stale
    Chain first;
    Chain second;
    for (int at = 0; at < split; at += 10) first.Run(Both(at, at + 10));
    EXPECT_EQ(first.alerts->Partitions(), (std::vector<std::string>{"sensors/0", "sensors/1"}));
    EXPECT_EQ(first.qc->Partitions(), (std::vector<std::string>{"sensors/0", "sensors/1"}));
    EXPECT_EQ(first.patterns->Partitions(), (std::vector<std::string>{"sensors/0", "sensors/1"}));
    const std::string blob = first.SnapshotPartition("sensors/1");
    first.Drop("sensors/1");
    EXPECT_EQ(first.alerts->Partitions(), (std::vector<std::string>{"sensors/0"}));
    EXPECT_EQ(first.qc->Partitions(), (std::vector<std::string>{"sensors/0"}));
    EXPECT_EQ(first.patterns->Partitions(), (std::vector<std::string>{"sensors/0"}));
    second.RestorePartition("sensors/1", blob);
    for (int at = split; at < 120; at += 10) {
      first.Run(Slice(0, at, at + 10));
      second.Run(Slice(1, at, at + 10));
    }
    std::vector<std::string> moved = first.got;
    moved.insert(moved.end(), second.got.begin(), second.got.end());
    EXPECT_EQ(Sorted(moved), expected) << "moved at " << split;
    std::vector<std::string> flags = first.flagged;
    flags.insert(flags.end(), second.flagged.begin(), second.flagged.end());
    EXPECT_EQ(Sorted(flags), Sorted(whole.flagged)) << "moved at " << split;
  }
}

// A partition's sensors are judged stale by their own partition's watermark: a lagging
// partition neither hides a silent sensor of another nor is judged by the one ahead.
TEST(PartitionedAlertsTest, StaleSensorsAreJudgedByTheirPartitionsWatermark) {
  Chain c;
  std::vector<Reading> p0 = Slice(0, 0, 60);
  // dev1 of partition 0 stops after 20 readings.
  p0.erase(std::remove_if(p0.begin(), p0.end(),
                          [](const Reading& r) {
                            return r.device.view() == "p0-dev1" &&
                                   r.event_time >= (1'714'521'600LL + 20LL * 20) * kMicrosPerSecond;
                          }),
           p0.end());
  c.Run(Slice(1, 0, 5));  // partition 1 lags far behind
  c.Run(p0);
  std::vector<std::string> stale;
  for (const std::string& s : c.got) {
    if (s.rfind("quiet|", 0) == 0) stale.push_back(s);
  }
  ASSERT_EQ(stale.size(), 1u) << ::testing::PrintToString(c.got);
  // Fired when it became stale: its last reading (the 20th) + 3 × 20 s.
  const std::string id =
      "quiet|p0-dev1|" + std::to_string((1'714'521'600LL + 20LL * 19 + 60) * kMicrosPerSecond);
  // "id state event_time value": the event time and the gap are those of the watermark
  // that noticed it.
  auto id_state = [](const std::string& s) { return s.substr(0, s.find(' ', s.find(' ') + 1)); };
  EXPECT_EQ(id_state(stale[0]), id + " firing") << stale[0];
  // The minimum watermark (that of partition 1) would not have judged it.
  EXPECT_LT(c.window->watermark(), (1'714'521'600LL + 20LL * 20) * kMicrosPerSecond);
  // Batched otherwise, the partition's watermark passes the limit at another time; the
  // alert keeps its id.
  for (size_t step : {1u, 7u, 23u}) {
    Chain d;
    d.Run(Slice(1, 0, 5));
    for (size_t at = 0; at < p0.size(); at += step) {
      d.Run(std::vector<Reading>(p0.begin() + static_cast<long>(at),
                                 p0.begin() + static_cast<long>(std::min(p0.size(), at + step))));
    }
    std::vector<std::string> again;
    for (const std::string& s : d.got) {
      if (s.rfind("quiet|", 0) == 0) again.push_back(id_state(s));
    }
    EXPECT_EQ(again, std::vector<std::string>{id + " firing"}) << "batches of " << step;
  }
}

// A dropped partition's alerts are forgotten, not resolved: a firing alert fires anew
// (with a new id) once the partition comes back without its state.
TEST(PartitionedAlertsTest, DropForgetsTheAlertsOfThePartition) {
  Chain c;
  auto pm = [](int partition, int i, double v) {
    Reading r;
    r.event_time = (1'714'521'600LL + 20LL * i) * kMicrosPerSecond;
    r.arrival_time = r.event_time;
    r.device = Intern("p" + std::to_string(partition) + "-only");
    r.metric = Intern("pm25");
    r.value = v;
    r.lat = 48.0;
    r.lon = 11.0;
    r.prov.topic = Intern("sensors");
    r.prov.partition = partition;
    return r;
  };
  c.Run({pm(0, 0, 50), pm(1, 0, 50)});
  ASSERT_EQ(c.got.size(), 2u);
  c.Drop("sensors/1");
  c.Drop("nosuch/3");
  c.Drop("not a key");
  EXPECT_EQ(c.alerts->Partitions(), (std::vector<std::string>{"sensors/0"}));
  EXPECT_EQ(c.alerts->partition("sensors/1"), nullptr);
  c.Run({pm(0, 1, 55), pm(1, 1, 55)});
  ASSERT_EQ(c.got.size(), 3u);  // partition 0 still firing: nothing; partition 1 anew
  EXPECT_EQ(c.got[2].rfind("pm_high|p1-only|" + std::to_string(pm(1, 1, 0).event_time), 0), 0u)
      << c.got[2];
  // A partition without state snapshots as such and restores to none.
  CheckpointWriter w;
  ASSERT_TRUE(c.alerts->SnapshotPartition("sensors/7", w).ok());
  CheckpointReader in(w.bytes());
  ASSERT_TRUE(c.alerts->RestorePartition("sensors/7", in).ok());
  EXPECT_EQ(c.alerts->partition("sensors/7"), nullptr);
  EXPECT_FALSE(c.alerts->RestorePartition("sensors", in).ok());
}

// With a state changelog, a pipeline with QC, alert and pattern rules builds; one with
// a stage that keeps no state per partition yet refuses to start, naming it.
TEST(PartitionedAlertsTest, StateTopicTakesQcAndAlertsAndNamesAStageThatCannot) {
  const std::string base =
      "sources:\n  - {name: bus, type: kafka, brokers: '127.0.0.1:1', topics: [t], "
      "group_id: g}\n"
      "sinks:\n  - {name: out, type: kafka, brokers: '127.0.0.1:1', breaker: false, "
      "transactional_id: w-1, state_topic: st}\n"
      "checkpoint:\n  enabled: true\n"
      "windows:\n  - {name: dev, size: 5m}\n"
      "qc:\n  enabled: true\n"
      "alerts:\n  rules:\n"
      "    - {name: pm_high, kind: reading_threshold, metric: pm25, level: 45}\n"
      "  patterns:\n"
      "    - {name: spread, kind: sequence, count: 2, "
      "conditions: [{metric: pm25, trend: above, level: 40}]}\n";
  Result<PipelineConfig> ok = ParsePipelineConfig(base, "ok.yaml");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  Result<std::unique_ptr<Pipeline>> built = Pipeline::Build(*ok);
  EXPECT_TRUE(built.ok()) << built.status().ToString();

  Result<PipelineConfig> anomaly = ParsePipelineConfig(
      base + "anomaly:\n  iforest:\n    enabled: true\n    metrics: [pm25, temperature]\n",
      "no.yaml");
  ASSERT_TRUE(anomaly.ok()) << anomaly.status().ToString();
  Result<std::unique_ptr<Pipeline>> refused = Pipeline::Build(*anomaly);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().ToString().find("operator anomaly cannot keep its state per "
                                             "partition"),
            std::string::npos)
      << refused.status().ToString();
}

}  // namespace
}  // namespace tributary
