#include "server/sse.h"

#include <gtest/gtest.h>

#include <thread>

namespace tributary {
namespace {

TEST(EventLog, ReadAfterResumesAndDropsTheOldest) {
  EventLog log(3);
  for (int i = 0; i < 5; ++i) log.Publish("window", "{\"i\":" + std::to_string(i) + "}");
  EXPECT_EQ(log.last_id(), 5u);
  EXPECT_EQ(log.first_id(), 3u);
  std::vector<SseEvent> all = log.ReadAfter(0, 100, std::chrono::milliseconds(0));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].id, 3u);
  EXPECT_EQ(all[2].data, "{\"i\":4}");
  std::vector<SseEvent> rest = log.ReadAfter(3, 100, std::chrono::milliseconds(0));
  ASSERT_EQ(rest.size(), 2u);
  EXPECT_EQ(rest[0].id, 4u);
  EXPECT_TRUE(log.ReadAfter(5, 100, std::chrono::milliseconds(0)).empty());
}

TEST(EventLog, ReaderWakesOnPublishAndOnClose) {
  EventLog log(10);
  std::thread publisher([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    log.Publish("quarantine", "{}");
  });
  std::vector<SseEvent> got = log.ReadAfter(0, 10, std::chrono::seconds(5));
  publisher.join();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].type, "quarantine");
  log.Close();
  EXPECT_TRUE(log.ReadAfter(0, 10, std::chrono::seconds(5)).empty());
}

TEST(EventLog, FormatsTheEventStreamFields) {
  EXPECT_EQ(FormatSseEvent({7, "window", "{\"a\":1}"}),
            "id: 7\nevent: window\ndata: {\"a\":1}\n\n");
  EXPECT_EQ(FormatSseEvent({8, "x", "a\nb"}), "id: 8\nevent: x\ndata: a\ndata: b\n\n");
}

TEST(EventLog, ReadMatchingSkipsOtherEventsAndAdvancesPastThem) {
  EventLog log(100);
  log.Publish("window", "{}", "device", "d1");  // 1
  log.Publish("window", "{}", "zone", "z1");    // 2
  log.Publish("reading_summary", "{}");         // 3
  log.Publish("summary", "{}");                 // 4
  log.Publish("window", "{}", "device", "d2");  // 5
  SseFilter f;
  f.types = {"window", "summary"};
  f.group_bys = {"zone"};
  f.groups = {"d2"};
  SseFilteredRead r = log.ReadMatching(0, 100, std::chrono::milliseconds(0), f);
  std::vector<uint64_t> ids;
  for (const SseEvent& e : r.events) ids.push_back(e.id);
  EXPECT_EQ(ids, (std::vector<uint64_t>{2, 4, 5}));
  EXPECT_EQ(r.last_id, 5u);
  // Resuming after a matching id continues with the next one; nothing left: empty, and
  // the position stays.
  SseFilteredRead rest = log.ReadMatching(2, 100, std::chrono::milliseconds(0), f);
  ASSERT_EQ(rest.events.size(), 2u);
  EXPECT_EQ(rest.events[0].id, 4u);
  SseFilteredRead none = log.ReadMatching(5, 100, std::chrono::milliseconds(0), f);
  EXPECT_TRUE(none.events.empty());
  EXPECT_EQ(none.last_id, 5u);
  // Only non-matching events after `after`: the read moves past them.
  SseFilter summaries;
  summaries.types = {"summary"};
  SseFilteredRead skipped = log.ReadMatching(4, 100, std::chrono::milliseconds(0), summaries);
  EXPECT_TRUE(skipped.events.empty());
  EXPECT_EQ(skipped.last_id, 5u);
  // The empty filter passes everything, windows of every group included.
  EXPECT_EQ(log.ReadMatching(0, 100, std::chrono::milliseconds(0), SseFilter{}).events.size(), 5u);
}

TEST(EventLog, ReadMatchingHonoursTheLimit) {
  EventLog log(100);
  for (int i = 0; i < 10; ++i) log.Publish("summary", "{}");
  SseFilter f;
  f.types = {"summary"};
  SseFilteredRead r = log.ReadMatching(0, 3, std::chrono::milliseconds(0), f);
  ASSERT_EQ(r.events.size(), 3u);
  EXPECT_EQ(r.last_id, 3u);  // the next read starts at 4: nothing skipped unseen
}

}  // namespace
}  // namespace tributary
