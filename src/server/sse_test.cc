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

}  // namespace
}  // namespace tributary
