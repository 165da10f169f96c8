#include "stream/partition_monitor.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/metrics.h"
#include "spatial/h3.h"

namespace tributary {
namespace {

constexpr TimeUs kT0 = 1'714'564'800'000'000;

SourceEntry Source(std::string name, std::string type) {
  SourceEntry e;
  e.name = std::move(name);
  e.type = std::move(type);
  return e;
}

// Distinct places far enough apart to fall into distinct H3 res-5 cells.
struct Place {
  double lat, lon;
};
const std::vector<Place>& Places() {
  static const std::vector<Place> p = {
      {52.52, 13.40}, {48.14, 11.58}, {50.94, 6.96}, {53.55, 9.99}, {51.34, 12.37}};
  return p;
}

Reading At(const Place& p, int device, TimeUs t, int32_t partition = -1,
           std::string_view topic = "") {
  Reading r;
  r.event_time = t;
  r.arrival_time = t;
  r.device = Intern("dev-" + std::to_string(device));
  r.metric = Intern("pm25");
  r.value = 5;
  r.lat = p.lat;
  r.lon = p.lon;
  r.prov.partition = partition;
  r.prov.topic = Intern(topic);
  return r;
}

TEST(PartitionMonitorTest, SuggestedResolutionSplitsTheExcessIntoSevenPerStep) {
  EXPECT_EQ(SuggestedResolution(1.0), 5);
  EXPECT_EQ(SuggestedResolution(3.5), 6);
  EXPECT_EQ(SuggestedResolution(7.0), 6);
  EXPECT_EQ(SuggestedResolution(7.5), 7);
  EXPECT_EQ(SuggestedResolution(49.0), 7);
  EXPECT_EQ(SuggestedResolution(50.0), 8);
  EXPECT_EQ(SuggestedResolution(1e30), 15);
}

TEST(PartitionMonitorTest, ASkewedCellIsReportedHotWithItsCell) {
  HotPartitionOptions o;
  o.interval = 10 * kMicrosPerSecond;
  o.min_records = 50;
  PartitionMonitor monitor(o, {Source("city", "mqtt")}, "pipeline=\"pm-test\"");
  // 10 s of input: cells 1..4 send 20 readings/s each, cell 0 sends 200/s (10x).
  for (int s = 0; s < 10; ++s) {
    std::vector<Reading> batch;
    const TimeUs t = kT0 + s * kMicrosPerSecond;
    for (int k = 0; k < 200; ++k) batch.push_back(At(Places()[0], k % 7, t));
    for (int c = 1; c < 5; ++c) {
      for (int k = 0; k < 20; ++k) batch.push_back(At(Places()[c], 100 * c + k % 3, t));
    }
    monitor.Observe(batch, 0, t);
  }
  EXPECT_EQ(monitor.Report().closed_at, kMinTime) << "the interval is not over yet";
  monitor.Tick(kT0 + 10 * kMicrosPerSecond);
  PartitionReport r = monitor.Report();
  EXPECT_EQ(r.active, 5u);
  EXPECT_NEAR(r.median_rate, 20.0, 1e-9);
  std::vector<const PartitionRate*> hot = r.Hot();
  ASSERT_EQ(hot.size(), 1u);
  const std::string cell = h3::CellToString(h3::LatLngToCell(Places()[0].lat, Places()[0].lon, 5));
  EXPECT_EQ(hot[0]->partition, "city/h3:" + cell);
  EXPECT_NEAR(hot[0]->rate, 200.0, 1e-9);
  EXPECT_EQ(hot[0]->records, 2000u);
  ASSERT_EQ(hot[0]->h3_cells.size(), 1u);
  EXPECT_EQ(hot[0]->h3_cells[0], cell);
  // 10x the median: one step (7 children) is not enough, two (49) are.
  EXPECT_EQ(hot[0]->suggested_resolution, 7);
  for (const PartitionRate& p : r.partitions) {
    if (!p.hot) {
      EXPECT_EQ(p.suggested_resolution, 0) << p.partition;
    }
  }
  // Lag: processing time at the close − newest event time (9 s).
  EXPECT_NEAR(hot[0]->lag_seconds, 1.0, 1e-9);
  EXPECT_EQ(r.partitions.front().partition, hot[0]->partition) << "highest rate first";

  std::string metrics = RenderPrometheus(MetricsInput{});
  EXPECT_NE(metrics.find("tributary_partition_hot{pipeline=\"pm-test\",partition=\"city/h3:" +
                         cell + "\",hot_cells=\"" + cell + "\"} 1"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("tributary_hot_partitions{pipeline=\"pm-test\"} 1"), std::string::npos);
  EXPECT_NE(metrics.find("tributary_partition_rate{pipeline=\"pm-test\",partition=\"city/h3:" +
                         cell + "\"} 200"),
            std::string::npos);

  // Even input in the next interval: nothing is hot, the hot gauge goes away.
  for (int s = 10; s < 20; ++s) {
    std::vector<Reading> batch;
    const TimeUs t = kT0 + s * kMicrosPerSecond;
    for (int c = 0; c < 5; ++c) {
      for (int k = 0; k < 20; ++k) batch.push_back(At(Places()[c], 100 * c + k % 3, t));
    }
    monitor.Observe(batch, 0, t);
  }
  monitor.Tick(kT0 + 20 * kMicrosPerSecond);
  EXPECT_TRUE(monitor.Report().Hot().empty());
  metrics = RenderPrometheus(MetricsInput{});
  EXPECT_EQ(metrics.find("tributary_partition_hot{pipeline=\"pm-test\""), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("tributary_hot_partitions{pipeline=\"pm-test\"} 0"), std::string::npos);
  monitor.ClearGauges();
  EXPECT_EQ(RenderPrometheus(MetricsInput{}).find("pipeline=\"pm-test\""), std::string::npos);
}

TEST(PartitionMonitorTest, KafkaPartitionsAreTheirOwnAndListTheirCells) {
  HotPartitionOptions o;
  o.interval = kMicrosPerSecond;
  o.min_records = 10;
  PartitionMonitor monitor(o, {Source("file-in", "file"), Source("bus", "kafka")}, "");
  std::vector<Reading> batch;
  // Partition 2 carries three cells and 5x the readings of partitions 0, 1, 3.
  for (int p = 0; p < 4; ++p) {
    const int n = p == 2 ? 150 : 30;
    for (int k = 0; k < n; ++k) {
      const Place& place = Places()[p == 2 ? (k < 100 ? 1 : (k < 140 ? 2 : 3)) : 4];
      batch.push_back(At(place, 10 * p + k % 5, kT0, p, "readings"));
    }
  }
  monitor.Observe(batch, 1, kT0);
  monitor.Tick(kT0 + kMicrosPerSecond);
  PartitionReport r = monitor.Report();
  EXPECT_EQ(r.active, 4u);
  std::vector<const PartitionRate*> hot = r.Hot();
  ASSERT_EQ(hot.size(), 1u);
  EXPECT_EQ(hot[0]->partition, "bus/readings/2");
  std::vector<std::string> cells;
  for (int i : {1, 2, 3}) {
    cells.push_back(h3::CellToString(h3::LatLngToCell(Places()[i].lat, Places()[i].lon, 5)));
  }
  EXPECT_EQ(hot[0]->h3_cells, cells) << "most readings first";
}

TEST(PartitionMonitorTest, FewPartitionsOrFewRecordsAreNeverHot) {
  HotPartitionOptions o;
  o.interval = kMicrosPerSecond;
  o.min_records = 100;
  PartitionMonitor monitor(o, {Source("city", "mqtt")}, "");
  std::vector<Reading> batch;
  // Two partitions: no median to speak of.
  for (int k = 0; k < 500; ++k) batch.push_back(At(Places()[0], k % 3, kT0));
  for (int k = 0; k < 5; ++k) batch.push_back(At(Places()[1], 10, kT0));
  monitor.Observe(batch, 0, kT0);
  monitor.Tick(kT0 + kMicrosPerSecond);
  EXPECT_TRUE(monitor.Report().Hot().empty());
  // Four partitions, the skewed one under min_records.
  batch.clear();
  for (int k = 0; k < 90; ++k) batch.push_back(At(Places()[0], k % 3, kT0));
  for (int c = 1; c < 4; ++c) batch.push_back(At(Places()[c], 10 + c, kT0));
  monitor.Observe(batch, 0, kT0 + kMicrosPerSecond);
  monitor.Tick(kT0 + 2 * kMicrosPerSecond);
  EXPECT_EQ(monitor.Report().active, 4u);
  EXPECT_TRUE(monitor.Report().Hot().empty());
}

}  // namespace
}  // namespace tributary
