#include "stream/partitioned_window.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/pipeline_config.h"
#include "ingest/dedup.h"
#include "io/sinks/mqtt_sink.h"
#include "stream/checkpoint.h"

namespace tributary {
namespace {

constexpr const char* kYaml =
    "processing:\n  grace: 1m\n  idle_timeout: 24h\n"
    "windows:\n"
    "  - name: dev\n    size: 5m\n    aggregates: [mean, max, median]\n"
    "  - name: slide\n    type: sliding\n    size: 10m\n    step: 5m\n    aggregates: [mean]\n"
    "  - name: sess\n    type: session\n    gap: 2m\n    aggregates: [mean]\n";

struct Harness {
  Harness() {
    Result<PipelineConfig> c = ParsePipelineConfig(kYaml, "test.yaml");
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    config = std::move(*c);
    auto defs = ParseWindowDefinitions(config);
    EXPECT_TRUE(defs.ok());
    auto shared = std::make_shared<const std::vector<WindowDefinition>>(std::move(*defs));
    op = std::make_unique<PartitionedWindowOperator>([shared, processing = config.processing] {
      return std::make_unique<WindowOperator>(*shared, processing, [] { return TimeUs{0}; });
    });
    ctx.config = &config;
    ctx.ledger = &ledger;
    EXPECT_TRUE(op->Open(ctx).ok());
  }
  // Window rows as text (the clock is fixed, so emitted_at is the same everywhere).
  void Collect(Batch& b) {
    for (const WindowResult& w : b.windows) rows.push_back(MqttWindowJson(w));
  }
  void Run(std::vector<Reading> readings) {
    Batch b;
    b.readings = std::move(readings);
    ASSERT_TRUE(op->Process(b).ok());
    Collect(b);
  }
  void Finish() {
    Batch b;
    ASSERT_TRUE(op->Finish(b).ok());
    Collect(b);
  }

  PipelineConfig config;
  Ledger ledger;
  RunContext ctx;
  std::unique_ptr<PartitionedWindowOperator> op;
  std::vector<std::string> rows;
};

// Readings of partition p: two devices each, one every 20 s of event time; partition 1
// has a 5-minute gap (a session boundary) in the middle.
std::vector<Reading> Slice(int partition, int from, int to) {
  std::vector<Reading> out;
  for (int i = from; i < to; ++i) {
    for (int d = 0; d < 2; ++d) {
      if (partition == 1 && i >= 40 && i < 55) continue;
      Reading r;
      r.event_time = (1'714'521'600LL + 20LL * i) * kMicrosPerSecond;
      r.arrival_time = r.event_time;
      r.device = Intern("p" + std::to_string(partition) + "-dev" + std::to_string(d));
      r.metric = Intern(d == 0 ? "pm25" : "temperature");
      r.value = std::fmod(i * 7.3 + partition, 50.0);
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

// A partition's state moved to another operator in the middle of the stream: the rows
// of both operators together are those of one operator that kept it.
TEST(PartitionedWindowTest, MovedPartitionGivesTheRowsItWouldHaveGivenInPlace) {
  Harness whole;
  for (int at = 0; at < 120; at += 10) whole.Run(Both(at, at + 10));
  whole.Finish();

  Harness first;
  Harness second;
  for (int at = 0; at < 60; at += 10) first.Run(Both(at, at + 10));
  EXPECT_EQ(first.op->Partitions(), (std::vector<std::string>{"sensors/0", "sensors/1"}));
  // Snapshot partition 1 with the symbol table, as the changelog holds it, drop it here
  // and restore it in the other operator.
  CheckpointWriter w;
  SnapshotSymbols(w);
  ASSERT_TRUE(first.op->SnapshotPartition("sensors/1", w).ok());
  first.op->DropPartition("sensors/1");
  EXPECT_EQ(first.op->Partitions(), (std::vector<std::string>{"sensors/0"}));
  const std::string blob = w.Take();
  CheckpointReader in(blob);
  Result<std::vector<uint32_t>> map = ReadSymbolMap(in);
  ASSERT_TRUE(map.ok()) << map.status().ToString();
  in.SetSymbolMap(&*map);
  ASSERT_TRUE(second.op->RestorePartition("sensors/1", in).ok());
  EXPECT_TRUE(in.ok() && in.at_end());
  for (int at = 60; at < 120; at += 10) {
    first.Run(Slice(0, at, at + 10));
    second.Run(Slice(1, at, at + 10));
  }
  first.Finish();
  second.Finish();

  std::vector<std::string> moved = first.rows;
  moved.insert(moved.end(), second.rows.begin(), second.rows.end());
  std::sort(moved.begin(), moved.end());
  std::vector<std::string> expected = whole.rows;
  std::sort(expected.begin(), expected.end());
  EXPECT_GT(expected.size(), 50u);
  EXPECT_EQ(moved, expected);
  EXPECT_EQ(first.ledger.Snapshot().accepted + second.ledger.Snapshot().accepted,
            whole.ledger.Snapshot().accepted);
}

// Each partition's windows close on its own event time: a partition that lags does not
// hold back the others (the plain window stage takes the minimum over partitions).
TEST(PartitionedWindowTest, EachPartitionClosesItsWindowsOnItsOwnWatermark) {
  Harness h;
  h.Run(Slice(0, 0, 60));  // 20 minutes of partition 0
  h.Run(Slice(1, 0, 5));   // partition 1 starts, still in its first window
  const size_t rows = h.rows.size();
  EXPECT_GT(rows, 0u);
  for (const std::string& row : h.rows) EXPECT_NE(row.find("p0-dev"), std::string::npos) << row;
  const WindowOperator* p1 = h.op->partition("sensors/1");
  ASSERT_NE(p1, nullptr);
  EXPECT_LT(p1->watermark(), h.op->partition("sensors/0")->watermark());
  EXPECT_EQ(h.op->watermark(), p1->watermark());
}

// Dropping a partition forgets its state without emitting it; restoring a partition
// that had no state leaves it without any.
TEST(PartitionedWindowTest, DropForgetsWithoutEmitting) {
  Harness h;
  h.Run(Both(0, 5));
  h.op->DropPartition("sensors/1");
  h.op->DropPartition("nosuch/3");
  h.op->DropPartition("not a key");
  Batch out;
  ASSERT_TRUE(h.op->Finish(out).ok());
  ASSERT_FALSE(out.windows.empty());
  for (const WindowResult& w : out.windows) {
    EXPECT_EQ(w.group.view().substr(0, 2), "p0") << w.group.view();
  }
  CheckpointWriter w;
  ASSERT_TRUE(h.op->SnapshotPartition("sensors/7", w).ok());
  CheckpointReader in(w.bytes());
  ASSERT_TRUE(h.op->RestorePartition("sensors/7", in).ok());
  EXPECT_EQ(h.op->partition("sensors/7"), nullptr);
  EXPECT_FALSE(h.op->RestorePartition("sensors", in).ok());
}

TEST(PartitionStateKeyTest, RoundTrip) {
  EXPECT_EQ(PartitionStateKey(Intern("a/b"), 12), "a/b/12");
  std::string_view topic;
  int32_t p = 0;
  ASSERT_TRUE(ParsePartitionStateKey("a/b/12", topic, p));
  EXPECT_EQ(topic, "a/b");
  EXPECT_EQ(p, 12);
  EXPECT_FALSE(ParsePartitionStateKey("a/b/", topic, p));
  EXPECT_FALSE(ParsePartitionStateKey("/3", topic, p));
  EXPECT_FALSE(ParsePartitionStateKey("abc", topic, p));
  EXPECT_FALSE(ParsePartitionStateKey("a/1x", topic, p));
}

// Symbol ids of another process go through the reader's map.
TEST(PartitionStateKeyTest, ReaderMapsSymbolIds) {
  std::vector<uint32_t> map = {0, Intern("zeta").id, Intern("alpha").id};
  CheckpointWriter w;
  w.U64(2);
  w.U64(1);
  w.U64(7);
  CheckpointReader in(w.bytes());
  in.SetSymbolMap(&map);
  EXPECT_EQ(in.Sym(), Intern("alpha"));
  EXPECT_EQ(in.Sym(), Intern("zeta"));
  (void)in.Sym();
  EXPECT_FALSE(in.ok());  // 7 is outside the table
}

// A portable dedup horizon does not depend on symbol ids.
TEST(PartitionStateKeyTest, TextFingerprintFollowsTheText) {
  EXPECT_EQ(Deduplicator::TextFingerprint("dev", "pm25", 5),
            Deduplicator::TextFingerprint("dev", "pm25", 5));
  EXPECT_NE(Deduplicator::TextFingerprint("dev", "pm25", 5),
            Deduplicator::TextFingerprint("dev", "pm25", 6));
  EXPECT_NE(Deduplicator::TextFingerprint("devp", "m25", 5),
            Deduplicator::TextFingerprint("dev", "pm25", 5));
  Deduplicator d(kMicrosPerMinute);
  d.SetPortable(true);
  EXPECT_FALSE(d.IsDuplicate(Intern("x"), Intern("pm25"), 10));
  EXPECT_TRUE(d.IsDuplicate(Intern("x"), Intern("pm25"), 10));
  CheckpointWriter w;
  d.Snapshot(w);
  Deduplicator e(kMicrosPerMinute);
  e.SetPortable(true);
  CheckpointReader in(w.bytes());
  ASSERT_TRUE(e.Restore(in).ok());
  EXPECT_TRUE(e.IsDuplicate(Intern("x"), Intern("pm25"), 10));
}

}  // namespace
}  // namespace tributary
