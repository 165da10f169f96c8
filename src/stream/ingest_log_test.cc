#include "stream/ingest_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "core/intern.h"
#include "test_util.h"

namespace tributary {
namespace {

IngestLogOptions Options(const std::string& dir, int64_t segment_bytes = 1 << 20) {
  IngestLogOptions o;
  o.dir = dir;
  o.fsync = IngestLogFsync::kEveryMessage;
  o.segment_bytes = segment_bytes;
  o.keep = 1;
  return o;
}

std::vector<std::string> Payloads(const RawBatch& b) {
  std::vector<std::string> out;
  for (const RawRecord& r : b.records) out.emplace_back(b.Payload(r));
  return out;
}

Status AppendOne(IngestLog& log, const std::string& payload, TimeUs arrival = 7) {
  Result<int64_t> r = log.Append({IngestLogEntry{"city/a/up", payload, arrival}});
  return r.status();
}

TEST(IngestLogTest, ReadsBackWhatWasAppendedWithTopicArrivalAndSequence) {
  testing::TempDir dir;
  IngestLog log;
  ASSERT_TRUE(log.Open(Options(dir.File("log"))).ok());
  ASSERT_TRUE(AppendOne(log, "one", 100).ok());
  Result<int64_t> first = log.Append(
      {IngestLogEntry{"city/b/up", "two", 200}, IngestLogEntry{"", std::string(70000, 'x'), 300}});
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first, 2);
  EXPECT_EQ(log.backlog(), 3u);
  RawBatch b;
  ASSERT_TRUE(log.Read(b, 10, 0).ok());
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(Payloads(b)[0], "one");
  EXPECT_EQ(Payloads(b)[2].size(), 70000u);
  EXPECT_EQ(b.records[1].arrival_time, 200);
  EXPECT_EQ(b.records[1].topic.view(), "city/b/up");
  EXPECT_EQ(b.records[0].offset, 1);
  EXPECT_EQ(b.records[2].offset, 3);
  EXPECT_NE(b.checkpoint, 0u);
  EXPECT_FALSE(b.position.empty());
  EXPECT_EQ(log.backlog(), 0u);
}

TEST(IngestLogTest, AReopenedLogResumesAtAPositionAndReplaysTheRestOnce) {
  testing::TempDir dir;
  std::string position;
  {
    IngestLog log;
    ASSERT_TRUE(log.Open(Options(dir.File("log"))).ok());
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(AppendOne(log, "m" + std::to_string(i)).ok());
    RawBatch b;
    ASSERT_TRUE(log.Read(b, 2, 0).ok());
    ASSERT_EQ(Payloads(b), (std::vector<std::string>{"m0", "m1"}));
    position = b.position;
    RawBatch rest;
    ASSERT_TRUE(log.Read(rest, 10, 0).ok());
    EXPECT_EQ(rest.size(), 3u);
  }
  IngestLog log;
  ASSERT_TRUE(log.Open(Options(dir.File("log"))).ok());
  // Without a position everything in the log is read again.
  EXPECT_EQ(log.backlog(), 5u);
  ASSERT_TRUE(log.Seek(position).ok());
  EXPECT_EQ(log.backlog(), 3u);
  ASSERT_TRUE(AppendOne(log, "m5").ok());
  RawBatch b;
  ASSERT_TRUE(log.Read(b, 10, 0).ok());
  EXPECT_EQ(Payloads(b), (std::vector<std::string>{"m2", "m3", "m4", "m5"}));
  EXPECT_EQ(b.records.back().offset, 6);
  EXPECT_FALSE(log.Seek("ingest-log:99:0:1").ok());
  EXPECT_FALSE(log.Seek("garbage").ok());
}

TEST(IngestLogTest, ATornLastFrameIsCutAtOpen) {
  testing::TempDir dir;
  {
    IngestLog log;
    ASSERT_TRUE(log.Open(Options(dir.File("log"))).ok());
    ASSERT_TRUE(AppendOne(log, "whole").ok());
    ASSERT_TRUE(AppendOne(log, "torn-by-a-crash").ok());
  }
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir.File("log"))) {
    files.push_back(e.path().string());
  }
  ASSERT_EQ(files.size(), 1u);
  const auto size = std::filesystem::file_size(files[0]);
  ASSERT_EQ(::truncate(files[0].c_str(), static_cast<off_t>(size - 3)), 0);
  IngestLog log;
  ASSERT_TRUE(log.Open(Options(dir.File("log"))).ok());
  EXPECT_EQ(log.next_sequence(), 2);
  ASSERT_TRUE(AppendOne(log, "after").ok());
  RawBatch b;
  ASSERT_TRUE(log.Read(b, 10, 0).ok());
  EXPECT_EQ(Payloads(b), (std::vector<std::string>{"whole", "after"}));
  EXPECT_EQ(b.records[1].offset, 2);
}

TEST(IngestLogTest, SegmentsRollOverAndAreRemovedOnceACommitCoversThem) {
  testing::TempDir dir;
  IngestLog log;
  ASSERT_TRUE(log.Open(Options(dir.File("log"), 4096)).ok());
  const std::string payload(1000, 'p');
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(AppendOne(log, payload).ok());
  const size_t segments = log.Segments().size();
  EXPECT_GE(segments, 5u);
  RawBatch first;
  ASSERT_TRUE(log.Read(first, 3, 0).ok());
  log.OnCommitted(first.checkpoint);
  EXPECT_EQ(log.Segments().size(), segments) << "the first segment is still being read";
  RawBatch rest;
  ASSERT_TRUE(log.Read(rest, 100, 0).ok());
  EXPECT_EQ(rest.size(), 17u);
  // Nothing is removed before its commit.
  EXPECT_EQ(log.Segments().size(), segments);
  log.OnCommitted(rest.checkpoint);
  EXPECT_EQ(log.Segments().size(), 1u) << "only the segment being appended to stays";
  // The position of the last commit still resumes in a new log object.
  log.Close();
  IngestLog again;
  ASSERT_TRUE(again.Open(Options(dir.File("log"), 4096)).ok());
  ASSERT_TRUE(again.Seek(rest.position).ok());
  EXPECT_EQ(again.backlog(), 0u);
  ASSERT_TRUE(AppendOne(again, "next").ok());
  RawBatch b;
  ASSERT_TRUE(again.Read(b, 10, 0).ok());
  EXPECT_EQ(Payloads(b), (std::vector<std::string>{"next"}));
  EXPECT_EQ(b.records[0].offset, 21);
}

TEST(IngestLogTest, ReadWaitsForAnAppendFromAnotherThread) {
  testing::TempDir dir;
  IngestLog log;
  IngestLogOptions o = Options(dir.File("log"));
  o.fsync = IngestLogFsync::kInterval;
  o.fsync_interval = 5 * kMicrosPerMilli;
  ASSERT_TRUE(log.Open(o).ok());
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_TRUE(AppendOne(log, "late").ok());
  });
  RawBatch b;
  ASSERT_TRUE(log.Read(b, 10, 5 * kMicrosPerSecond).ok());
  writer.join();
  EXPECT_EQ(Payloads(b), (std::vector<std::string>{"late"}));
}

}  // namespace
}  // namespace tributary
