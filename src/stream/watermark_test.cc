#include "stream/watermark.h"

#include <gtest/gtest.h>

#include "stream/checkpoint.h"

namespace tributary {
namespace {

constexpr TimeUs S = kMicrosPerSecond;

TEST(WatermarkTest, StartsAtMinAndNeverGoesBack) {
  WatermarkTracker w(5 * S, 60 * S);
  EXPECT_EQ(w.watermark(), kMinTime);
  EXPECT_EQ(w.Advance(0), kMinTime);
  w.Observe(1, 100 * S, 100 * S);
  EXPECT_EQ(w.Advance(0), 95 * S);
  w.Observe(1, 50 * S, 101 * S);  // out of order: no effect
  EXPECT_EQ(w.Advance(0), 95 * S);
  EXPECT_EQ(w.PartitionWatermark(1), 95 * S);
  EXPECT_EQ(w.PartitionWatermark(2), kMinTime);
  EXPECT_EQ(w.max_arrival(), 101 * S);
}

TEST(WatermarkTest, MinimumOverPartitions) {
  WatermarkTracker w(0, 60 * S);
  w.Observe(1, 100 * S, 10 * S);
  w.Observe(2, 40 * S, 10 * S);
  EXPECT_EQ(w.Advance(0), 40 * S);
  EXPECT_EQ(w.partitions(), 2u);
  EXPECT_EQ(w.active_partitions(), 2u);
  w.Observe(2, 70 * S, 11 * S);
  EXPECT_EQ(w.Advance(0), 70 * S);
  // A new partition behind the others holds further progress but cannot pull back.
  w.Observe(3, 10 * S, 12 * S);
  w.Observe(1, 200 * S, 12 * S);
  w.Observe(2, 200 * S, 12 * S);
  EXPECT_EQ(w.Advance(0), 70 * S);
  w.Observe(3, 150 * S, 13 * S);
  EXPECT_EQ(w.Advance(0), 150 * S);
}

TEST(WatermarkTest, IdlePartitionStopsHoldingAndRejoins) {
  WatermarkTracker w(0, 30 * S);
  w.Observe(1, 10 * S, 10 * S);
  w.Observe(2, 10 * S, 10 * S);
  EXPECT_EQ(w.Advance(w.max_arrival()), 10 * S);
  // Partition 2 silent: 30 s after its last arrival it still holds (not "longer than").
  w.Observe(1, 50 * S, 40 * S);
  EXPECT_EQ(w.Advance(w.max_arrival()), 10 * S);
  w.Observe(1, 60 * S, 41 * S);
  EXPECT_EQ(w.Advance(w.max_arrival()), 60 * S);
  EXPECT_EQ(w.active_partitions(), 1u);
  // It rejoins with old data: active again, holds progress, the watermark stays.
  w.Observe(2, 20 * S, 42 * S);
  EXPECT_EQ(w.Advance(w.max_arrival()), 60 * S);
  EXPECT_EQ(w.active_partitions(), 2u);
  w.Observe(1, 90 * S, 43 * S);
  EXPECT_EQ(w.Advance(w.max_arrival()), 60 * S);  // held by partition 2 at 20 s
  w.Observe(2, 80 * S, 44 * S);
  EXPECT_EQ(w.Advance(w.max_arrival()), 80 * S);
}

TEST(WatermarkTest, ObservedPartitionIsActiveEvenWithAnOldArrivalTime) {
  WatermarkTracker w(0, 30 * S);
  w.Observe(1, 100 * S, 100 * S);
  w.Observe(2, 50 * S, 10 * S);  // its clock is behind; it just delivered
  EXPECT_EQ(w.Advance(w.max_arrival()), 50 * S);
  EXPECT_EQ(w.active_partitions(), 2u);
  EXPECT_EQ(w.Advance(w.max_arrival()), 100 * S);  // silent since 10 s: idle now
}

TEST(WatermarkTest, AllIdleFollowsProcessingTime) {
  WatermarkTracker w(5 * S, 30 * S);
  w.Observe(1, 100 * S, 1000 * S);
  w.Observe(2, 90 * S, 1000 * S);
  EXPECT_EQ(w.Advance(w.max_arrival()), 85 * S);
  EXPECT_EQ(w.Advance(1030 * S), 85 * S);  // not longer than the timeout yet
  // 40 s of quiet: every partition idle; event time follows processing time from the
  // last reading seen: 100 − 5 + 40.
  EXPECT_EQ(w.Advance(1040 * S), 135 * S);
  EXPECT_EQ(w.active_partitions(), 0u);
  EXPECT_EQ(w.processing_now(), 1040 * S);
  EXPECT_EQ(w.Advance(1000 * S), 135 * S);  // processing time does not go back
  // Data again: the partition rejoins; the watermark does not go back.
  w.Observe(2, 120 * S, 1041 * S);
  EXPECT_EQ(w.Advance(w.max_arrival()), 135 * S);
  w.Observe(2, 200 * S, 1042 * S);
  EXPECT_EQ(w.Advance(w.max_arrival()), 195 * S);  // partition 1 is still idle
}

TEST(WatermarkTest, ZeroIdleTimeoutDisablesIdleness) {
  WatermarkTracker w(0, 0);
  w.Observe(1, 10 * S, 0);
  w.Observe(2, 100 * S, 0);
  EXPECT_EQ(w.Advance(1000000 * S), 10 * S);
  EXPECT_EQ(w.active_partitions(), 2u);
}

// Devices 1..n of partition 1 report at `t`; device 100 runs `lead` ahead.
void ReportAll(WatermarkTracker& w, uint32_t devices, TimeUs t, TimeUs lead = 0) {
  for (uint32_t d = 1; d <= devices; ++d) w.Observe(1, t, t, d);
  if (lead != 0) w.Observe(1, t + lead, t, 100);
}

TEST(WatermarkTest, AFastClockDoesNotCarryAPartitionOfManyDevices) {
  WatermarkTracker plain(0, 60 * S);
  WatermarkTracker robust(0, 60 * S, /*clock_outliers=*/3);
  for (WatermarkTracker* w : {&plain, &robust}) ReportAll(*w, 10, 100 * S, 8 * 60 * S);
  EXPECT_EQ(plain.Advance(0), 580 * S);
  EXPECT_EQ(robust.Advance(0), 100 * S);
  EXPECT_EQ(robust.PartitionWatermark(1), 100 * S);
  // The others move on; the front follows them, not the fast clock.
  ReportAll(robust, 10, 160 * S);
  EXPECT_EQ(robust.Advance(0), 160 * S);
  // Up to three fast clocks are passed over; a fourth carries the partition to the
  // slowest of the four.
  for (uint32_t d = 101; d <= 102; ++d) robust.Observe(1, 900 * S + d * S, 160 * S, d);
  EXPECT_EQ(robust.Advance(0), 160 * S);
  robust.Observe(1, 800 * S, 160 * S, 103);
  EXPECT_EQ(robust.Advance(0), 580 * S);
}

TEST(WatermarkTest, APartitionOfFewDevicesFollowsItsLargestEventTime) {
  WatermarkTracker four(0, 60 * S, 3);
  ReportAll(four, 3, 100 * S, 4 * 60 * S);  // three others do not outvote one
  EXPECT_EQ(four.Advance(0), 340 * S);
  // With a fifth device one clock is passed over: four agree below it.
  WatermarkTracker five(0, 60 * S, 3);
  ReportAll(five, 4, 100 * S, 4 * 60 * S);
  EXPECT_EQ(five.Advance(0), 100 * S);
}

TEST(WatermarkTest, DevicesThatStopReportingDoNotHoldAPartition) {
  WatermarkTracker w(0, 0, 3);
  ReportAll(w, 7, 100 * S);
  EXPECT_EQ(w.Advance(0), 100 * S);
  // Devices 1..6 go silent; device 7 keeps reporting. Within the hour the silent ones
  // still count and hold the partition at their last event time ...
  w.Observe(1, 1800 * S, 1800 * S, 7);
  EXPECT_EQ(w.Advance(0), 100 * S);
  // ... and once they are more than an hour behind, device 7 alone is the partition.
  w.Observe(1, 3701 * S, 3701 * S, 7);
  EXPECT_EQ(w.Advance(0), 3701 * S);
  // Devices that report again count again: a fast device 7 would now be passed over.
  ReportAll(w, 6, 4000 * S);
  EXPECT_EQ(w.Advance(0), 4000 * S);
  w.Observe(1, 4300 * S, 4000 * S, 7);
  EXPECT_EQ(w.Advance(0), 4000 * S);
}

TEST(WatermarkTest, DevicesSilentForTheIdleTimeoutStopCounting) {
  WatermarkTracker w(0, 60 * S, 3);
  ReportAll(w, 7, 100 * S);
  w.Observe(1, 150 * S, 150 * S, 7);
  EXPECT_EQ(w.Advance(150 * S), 100 * S);  // the others were heard 50 s ago
  EXPECT_EQ(w.Advance(161 * S), 150 * S);  // 61 s: device 7 alone reports
}

TEST(WatermarkTest, CheckpointKeepsTheFastestDevices) {
  WatermarkTracker w(0, 60 * S, 3);
  ReportAll(w, 10, 100 * S, 8 * 60 * S);
  EXPECT_EQ(w.Advance(0), 100 * S);
  CheckpointWriter out;
  w.Snapshot(out);
  WatermarkTracker back(0, 60 * S, 3);
  CheckpointReader in(out.bytes());
  ASSERT_TRUE(back.Restore(in).ok());
  // The fast device is still known: a report of the others does not jump to it.
  ReportAll(back, 10, 110 * S);
  EXPECT_EQ(back.Advance(0), 110 * S);
  EXPECT_EQ(back.PartitionWatermark(1), 110 * S);
  // Restored without outliers: the largest event time.
  WatermarkTracker plain(0, 60 * S);
  CheckpointReader again(out.bytes());
  ASSERT_TRUE(plain.Restore(again).ok());
  EXPECT_EQ(plain.Advance(0), 580 * S);
}

TEST(WatermarkTest, PartitionKeyCombinesSourceAndPartition) {
  Reading a, b, c;
  a.prov.source = Intern("kafka-a");
  a.prov.partition = 0;
  b.prov.source = Intern("kafka-a");
  b.prov.partition = 1;
  c.prov.source = Intern("kafka-b");
  c.prov.partition = 0;
  EXPECT_NE(PartitionOf(a), PartitionOf(b));
  EXPECT_NE(PartitionOf(a), PartitionOf(c));
  Reading d = a;
  d.prov.partition = -1;
  EXPECT_NE(PartitionOf(a), PartitionOf(d));
}

}  // namespace
}  // namespace tributary
