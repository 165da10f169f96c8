#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "sink_test_records.h"
#include "stream/checkpoint.h"
#include "test_util.h"

namespace tributary {
namespace {

TEST(EpochLogTest, ReadsBackEveryBatchWithRecordsInOrder) {
  testing::TempDir dir;
  EpochLog log;
  ASSERT_TRUE(log.Begin(dir.path(), 7).ok());
  Batch first;
  for (int i = 0; i < 30; ++i) {
    Reading r = testing::FullReading();
    r.event_time += i;
    r.extra_zones[0] = Intern("district-" + std::to_string(i % 3));
    r.s2 = 0x47a1cbd595522b39ULL;
    first.readings.push_back(r);
  }
  Batch only_a_barrier;  // no records: not written
  only_a_barrier.checkpoint_id = 7;
  Batch second;
  second.windows.push_back(testing::FullWindowResult());
  QuarantineRecord q;
  q.reason = Intern("malformed_json");
  q.raw = "{";
  second.quarantine.push_back(q);
  for (const Batch* b : {&first, &only_a_barrier, &second}) ASSERT_TRUE(log.Append(*b).ok());
  ASSERT_TRUE(log.Sync().ok());
  EXPECT_GT(log.written(), 0u);

  Result<std::vector<Batch>> back = EpochLog::ReadAll(EpochLog::PathFor(dir.path(), 7));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->size(), 2u);
  ASSERT_EQ((*back)[0].readings.size(), 30u);
  for (size_t i = 0; i < 30; ++i) {
    const Reading& r = (*back)[0].readings[i];
    EXPECT_EQ(r.event_time, first.readings[i].event_time);
    EXPECT_EQ(r.device, first.readings[i].device);
    EXPECT_EQ(r.extra_zones, first.readings[i].extra_zones);
    EXPECT_EQ(r.s2, first.readings[i].s2);
    EXPECT_EQ(r.prov.orig_x, first.readings[i].prov.orig_x);
  }
  ASSERT_EQ((*back)[1].windows.size(), 1u);
  EXPECT_EQ((*back)[1].windows[0].group, second.windows[0].group);
  EXPECT_EQ((*back)[1].windows[0].quantiles, second.windows[0].quantiles);
  ASSERT_EQ((*back)[1].quarantine.size(), 1u);
  EXPECT_EQ((*back)[1].quarantine[0].raw, "{");

  log.Remove();
  EXPECT_FALSE(std::filesystem::exists(EpochLog::PathFor(dir.path(), 7)));
}

TEST(EpochLogTest, ATruncatedLogIsCorrupt) {
  testing::TempDir dir;
  EpochLog log;
  ASSERT_TRUE(log.Begin(dir.path(), 3).ok());
  Batch b;
  b.readings.push_back(testing::FullReading());
  b.readings.push_back(testing::BareReading("n2", "no2", testing::kSinkT0, 3.5));
  ASSERT_TRUE(log.Append(b).ok());
  ASSERT_TRUE(log.Sync().ok());
  const std::string path = EpochLog::PathFor(dir.path(), 3);
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 3);
  Result<std::vector<Batch>> back = EpochLog::ReadAll(path);
  ASSERT_FALSE(back.ok());
  EXPECT_EQ(back.status().code(), StatusCode::kCorrupt);
}

TEST(CheckpointCodecTest, BulkDoublesAreTheBytesOfSingleOnes) {
  const std::vector<double> values = {1.5, -0.0, NAN, 1e300, -7.25};
  CheckpointWriter one;
  for (double v : values) one.F64(v);
  CheckpointWriter bulk;
  bulk.F64s(values.data(), values.size());
  EXPECT_EQ(one.bytes(), bulk.bytes());
  std::vector<double> back(values.size());
  CheckpointReader in(bulk.bytes());
  in.F64s(back.data(), back.size());
  ASSERT_TRUE(in.ok());
  EXPECT_TRUE(in.at_end());
  EXPECT_EQ(std::memcmp(back.data(), values.data(), values.size() * sizeof(double)), 0);
  // Truncated: failed, zeros, no read past the end.
  CheckpointReader cut(std::string_view(bulk.bytes()).substr(0, 4 * sizeof(double) + 3));
  cut.F64s(back.data(), back.size());
  EXPECT_FALSE(cut.ok());
  EXPECT_EQ(back[0], 0.0);
}

}  // namespace
}  // namespace tributary
