#include "stream/memory_guard.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <chrono>
#include <thread>
#include <vector>

#include "core/byte_size.h"
#include "server/metrics.h"
#include "stream/window.h"

namespace tributary {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

PipelineConfig ConfigOf(const std::string& limits_yaml) {
  Result<PipelineConfig> c = ParsePipelineConfig(
      "sources:\n  - name: s\n    type: simulator\n" + limits_yaml, "test.yaml");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : PipelineConfig{};
}

TEST(ByteSizeTest, UnitsAndErrors) {
  EXPECT_EQ(ParseByteSizeText("512MiB").value_or(0), 512 * kMiB);
  EXPECT_EQ(ParseByteSizeText("2GiB").value_or(0), 2048 * kMiB);
  EXPECT_EQ(ParseByteSizeText("1.5GB").value_or(0), 1'500'000'000u);
  EXPECT_EQ(ParseByteSizeText(" 64 KiB ").value_or(0), 65536u);
  EXPECT_EQ(ParseByteSizeText("1048576").value_or(0), 1048576u);
  EXPECT_EQ(ParseByteSizeText("10mb").value_or(0), 10'000'000u);
  Result<uint64_t> bad = ParseByteSizeText("12 parsecs");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("parsecs"), std::string::npos);
  EXPECT_FALSE(ParseByteSizeText("MiB").ok());
  EXPECT_FALSE(ParseByteSizeText("1.2.3MiB").ok());
}

TEST(MemoryLimitOptionsTest, SizesSharesAutoAndOff) {
  Result<MemoryLimitOptions> o = ParseMemoryLimitOptions(
      ConfigOf("processing:\n  memory_limit: 512MiB\n  memory_pause: 0.7\n"));
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->limit_bytes, 512 * kMiB);
  EXPECT_DOUBLE_EQ(o->pause_level, 0.7);
  EXPECT_DOUBLE_EQ(o->shed_level, 0.9);
  EXPECT_EQ(o->sample_interval, 100 * kMicrosPerMilli);

  o = ParseMemoryLimitOptions(ConfigOf("processing:\n  memory_limit: 'off'\n"));
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->limit_bytes, 0u);

  // The default: derived from the machine (or its cgroup), below what it allows.
  std::string what;
  const uint64_t machine = MachineMemoryBytes(&what);
  ASSERT_GT(machine, 0u) << "neither a cgroup limit nor /proc/meminfo is readable";
  o = ParseMemoryLimitOptions(ConfigOf(""));
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_GT(o->limit_bytes, 0u);
  EXPECT_LE(o->limit_bytes, machine / 10 * 8 + 1);
  EXPECT_NE(o->origin.find("auto"), std::string::npos) << o->origin;

  o = ParseMemoryLimitOptions(ConfigOf("processing:\n  memory_limit: 25%\n"));
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_NEAR(static_cast<double>(o->limit_bytes), static_cast<double>(machine) / 4, 2.0);
}

TEST(MemoryLimitOptionsTest, ErrorsNameTheKey) {
  auto error = [](const std::string& yaml) {
    Result<MemoryLimitOptions> o = ParseMemoryLimitOptions(ConfigOf(yaml));
    EXPECT_FALSE(o.ok()) << yaml;
    return o.ok() ? std::string() : o.status().message();
  };
  std::string e = error("processing:\n  memory_limit: 8MiB\n");
  EXPECT_NE(e.find("processing.memory_limit"), std::string::npos) << e;
  EXPECT_NE(e.find("32MiB"), std::string::npos) << e;
  e = error("processing:\n  memory_limit: lots\n");
  EXPECT_NE(e.find("processing.memory_limit"), std::string::npos) << e;
  e = error("processing:\n  memory_limit: 120%\n");
  EXPECT_NE(e.find("processing.memory_limit"), std::string::npos) << e;
  e = error("processing:\n  memory_pause: 0.8\n  memory_shed: 0.8\n");
  EXPECT_NE(e.find("processing.memory_shed"), std::string::npos) << e;
  // Unknown keys are refused when the pipeline is parsed.
  Result<PipelineConfig> c = ParsePipelineConfig(
      "sources:\n  - name: s\n    type: simulator\nprocessing:\n  memroy_limit: 1GiB\n",
      "test.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("memroy"), std::string::npos) << c.status().message();
}

TEST(MemoryGuardTest, PausesAtTheThresholdResumesWithHysteresisOrWhenDrained) {
  MemoryLimitOptions o;
  o.limit_bytes = 100 * kMiB;
  MemoryGuard guard(o, [] { return 0; });
  std::vector<bool> calls;
  guard.Start([&](bool p) { calls.push_back(p); }, [] { return false; }, "");
  guard.Stop();  // the test drives Sample itself
  calls.clear();

  guard.Sample(70 * kMiB, false);
  EXPECT_FALSE(guard.Status().paused);
  guard.Sample(76 * kMiB, false);
  EXPECT_TRUE(guard.Status().paused);
  guard.Sample(72 * kMiB, false);  // within the hysteresis band
  EXPECT_TRUE(guard.Status().paused);
  guard.Sample(69 * kMiB, false);
  EXPECT_FALSE(guard.Status().paused);
  guard.Sample(80 * kMiB, false);
  EXPECT_TRUE(guard.Status().paused);
  guard.Sample(80 * kMiB, true);  // the queues are empty: waiting frees nothing more
  EXPECT_FALSE(guard.Status().paused);
  EXPECT_EQ(calls, (std::vector<bool>{true, false, true, false}));
  EXPECT_EQ(guard.Status().pauses, 2u);

  EXPECT_FALSE(guard.shedding().load());
  guard.Sample(91 * kMiB, false);
  EXPECT_TRUE(guard.shedding().load());
  EXPECT_TRUE(guard.Status().paused);
  guard.Sample(87 * kMiB, false);
  EXPECT_TRUE(guard.shedding().load());
  guard.Sample(84 * kMiB, false);
  EXPECT_FALSE(guard.shedding().load());
  EXPECT_EQ(guard.Status().peak_rss_bytes, 91 * kMiB);
  EXPECT_NEAR(guard.Status().level, 0.84, 1e-9);
}

TEST(MemoryGuardTest, MonitorThreadSamplesPublishesAndResumesOnStop) {
  MemoryLimitOptions o;
  o.limit_bytes = 100 * kMiB;
  o.sample_interval = 5 * kMicrosPerMilli;
  std::atomic<uint64_t> rss{10 * kMiB};
  MemoryGuard guard(o, [&] { return rss.load(); });
  std::mutex mu;
  std::vector<bool> calls;
  guard.Start(
      [&](bool p) {
        std::lock_guard lock(mu);
        calls.push_back(p);
      },
      [] { return false; }, "{pipeline=\"guard-test\"}");
  rss = 95 * kMiB;
  for (int i = 0; i < 400 && !guard.shedding().load(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(guard.shedding().load());
  EXPECT_TRUE(guard.Status().paused);
  std::string metrics = RenderPrometheus(MetricsInput{});
  EXPECT_NE(metrics.find("tributary_memory_shedding{pipeline=\"guard-test\"} 1"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("tributary_memory_limit_bytes{pipeline=\"guard-test\"} 104857600"),
            std::string::npos);
  guard.Stop();
  EXPECT_FALSE(guard.shedding().load());
  std::lock_guard lock(mu);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_TRUE(calls[0]);
  EXPECT_FALSE(calls[1]) << "Stop resumes paused sources";
  ClearConnectorGauges("pipeline=\"guard-test\"");
}

TEST(MemoryGuardTest, ReadsThisProcessRss) {
  const uint64_t before = ReadProcessRssBytes();
  EXPECT_GT(before, 1 * kMiB);
  // Touch 64 MiB: the resident set grows by about that much.
  std::vector<char> block(64 * kMiB);
  for (size_t i = 0; i < block.size(); i += 4096) block[i] = static_cast<char>(i);
  const uint64_t after = ReadProcessRssBytes();
  EXPECT_GE(after, before + 48 * kMiB) << before << " -> " << after;
  EXPECT_EQ(block[4096], static_cast<char>(4096));
}

// The window stage while the guard sheds: new keys are quarantined, known keys go on.
TEST(MemoryShedTest, NewWindowKeysAreQuarantinedKnownKeysContinue) {
  Result<PipelineConfig> c = ParsePipelineConfig(
      "sources:\n  - name: s\n    type: simulator\n"
      "windows:\n  - name: dev_1m\n    type: tumbling\n    size: 1m\n    group_by: device\n"
      "  - name: pm_5m\n    type: tumbling\n    size: 5m\n    group_by: all\n"
      "    metrics: [pm25]\n",
      "test.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  PipelineConfig config = std::move(c).value();
  Result<std::unique_ptr<WindowOperator>> made = MakeWindowOperator(config, [] { return 0; });
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  std::unique_ptr<WindowOperator> op = std::move(made).value();
  Ledger ledger;
  std::atomic<bool> shed{false};
  RunContext ctx;
  ctx.config = &config;
  ctx.ledger = &ledger;
  op->SetMemoryShed(&shed);
  ASSERT_TRUE(op->Open(ctx).ok());
  const TimeUs t0 = 1'714'564'800'000'000;
  auto reading = [&](std::string_view device, std::string_view metric, int minute) {
    Reading r;
    r.event_time = t0 + minute * kMicrosPerMinute;
    r.arrival_time = r.event_time + kMicrosPerSecond;
    r.device = Intern(device);
    r.metric = Intern(metric);
    r.value = 10 + minute;
    r.lat = 52.5;
    r.lon = 13.4;
    r.prov.source = Intern("s");
    return r;
  };
  auto run = [&](std::vector<Reading> rs) {
    Batch b;
    b.readings = std::move(rs);
    ledger.AddInput(b.readings.size());
    EXPECT_TRUE(op->Process(b).ok());
    return b;
  };
  Batch b = run({reading("a", "pm25", 0), reading("b", "temperature", 0)});
  EXPECT_EQ(b.readings.size(), 2u);

  shed = true;
  // a/pm25 is known to both definitions (also in a later window); c is new to dev_1m;
  // b/pm25 is known to pm_5m (group all) but new to dev_1m; b/temperature is known.
  b = run({reading("a", "pm25", 2), reading("c", "pm25", 2), reading("b", "pm25", 2),
           reading("b", "temperature", 3)});
  ASSERT_EQ(b.readings.size(), 2u);
  EXPECT_EQ(b.readings[0].device.view(), "a");
  EXPECT_EQ(b.readings[1].device.view(), "b");
  EXPECT_EQ(b.readings[1].metric.view(), "temperature");
  ASSERT_EQ(b.quarantine.size(), 2u);
  for (const QuarantineRecord& q : b.quarantine) {
    EXPECT_EQ(q.reason.view(), "memory_shed");
    EXPECT_NE(q.detail.find("dev_1m"), std::string::npos) << q.detail;
    EXPECT_EQ(q.metric.view(), "pm25");
  }
  EXPECT_EQ(b.quarantine[0].device.view(), "c");
  // The raw record is the reading in the long JSON shape.
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_FALSE(parser.parse(b.quarantine[0].raw).get(doc)) << b.quarantine[0].raw;
  EXPECT_EQ(std::string_view(doc["device_id"].get_string().value_unsafe()), "c");
  EXPECT_EQ(std::string_view(doc["metric"].get_string().value_unsafe()), "pm25");
  EXPECT_DOUBLE_EQ(doc["value"].get_double().value_unsafe(), 12.0);
  EXPECT_EQ(op->Stats().shed, 2u);

  shed = false;
  b = run({reading("c", "pm25", 4)});
  EXPECT_EQ(b.readings.size(), 1u);
  EXPECT_TRUE(b.quarantine.empty());
  Batch rest;
  ASSERT_TRUE(op->Finish(rest).ok());
  LedgerSnapshot s = ledger.Snapshot();
  EXPECT_EQ(s.quarantine_reasons["memory_shed"], 2u);
  EXPECT_EQ(s.accepted, 5u);
  EXPECT_TRUE(s.balanced()) << s.ToText();
}

}  // namespace
}  // namespace tributary
