#include "io/sinks/batch_codec.h"

#include <gtest/gtest.h>

#include <cmath>

#include "sink_test_records.h"

namespace tributary {
namespace {

TEST(BatchCodecTest, RoundTripsEveryRecordField) {
  Batch b;
  b.readings.push_back(testing::FullReading());
  b.readings.push_back(testing::BareReading("n2", "no2", testing::kSinkT0, 3.5));
  WindowResult w;
  w.window = Intern("w");
  w.group_by = Intern("zone");
  w.group = Intern("z1");
  w.metric = Intern("pm25");
  w.start = 10;
  w.end = 20;
  w.count = 7;
  w.mean = 1.5;
  w.quantiles = {{0.9, 2.5}};
  w.flags = 3;
  w.revision = 2;
  w.emitted_at = 30;
  b.windows.push_back(w);
  QuarantineRecord q;
  q.reason = Intern("malformed_json");
  q.detail = "byte 3";
  q.raw = std::string("a\0b", 3);
  q.arrival_time = 99;
  b.quarantine.push_back(q);
  LateRecord l;
  l.reading = testing::FullReading();
  l.window = Intern("w");
  l.lateness = 5;
  l.watermark = 6;
  b.late.push_back(l);

  std::string bytes;
  EncodeBatchRecords(b, bytes);
  Result<Batch> back = DecodeBatchRecords(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ASSERT_EQ(back->readings.size(), 2u);
  const Reading& r = back->readings[0];
  const Reading& want = b.readings[0];
  EXPECT_EQ(r.device, want.device);
  EXPECT_EQ(r.event_time, want.event_time);
  EXPECT_EQ(r.value, want.value);
  EXPECT_EQ(r.h3, want.h3);
  EXPECT_EQ(r.flags, want.flags);
  EXPECT_EQ(r.prov.firmware, want.prov.firmware);
  EXPECT_EQ(r.prov.offset, want.prov.offset);
  EXPECT_EQ(r.prov.orig_y, want.prov.orig_y);
  EXPECT_TRUE(std::isnan(back->readings[1].lat));
  ASSERT_EQ(back->windows.size(), 1u);
  EXPECT_EQ(back->windows[0].group, w.group);
  EXPECT_EQ(back->windows[0].quantiles, w.quantiles);
  EXPECT_EQ(back->windows[0].revision, 2u);
  EXPECT_TRUE(std::isnan(back->windows[0].median));
  ASSERT_EQ(back->quarantine.size(), 1u);
  EXPECT_EQ(back->quarantine[0].raw, q.raw);
  ASSERT_EQ(back->late.size(), 1u);
  EXPECT_EQ(back->late[0].lateness, 5);
  EXPECT_EQ(back->late[0].reading.zone, want.zone);
}

TEST(BatchCodecTest, RejectsTruncatedBytes) {
  Batch b;
  b.readings.push_back(testing::FullReading());
  std::string bytes;
  EncodeBatchRecords(b, bytes);
  for (size_t n : {size_t{0}, size_t{1}, bytes.size() / 2, bytes.size() - 1}) {
    Result<Batch> r = DecodeBatchRecords(std::string_view(bytes).substr(0, n));
    EXPECT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.status().code(), StatusCode::kCorrupt);
  }
}

}  // namespace
}  // namespace tributary
