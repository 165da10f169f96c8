#include "core/queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace tributary {
namespace {

TEST(BoundedQueueTest, FullQueueBlocksProducerUntilConsumerTakes) {
  BoundedQueue<int> q(2);
  ASSERT_TRUE(q.Push(1));
  ASSERT_TRUE(q.Push(2));
  std::atomic<bool> pushed{false};
  std::thread producer([&] {
    q.Push(3);  // must block: the queue is full
    pushed = true;
  });
  // Wait until the producer is provably waiting for room.
  while (q.full_waits() == 0) std::this_thread::yield();
  EXPECT_FALSE(pushed.load());
  EXPECT_EQ(q.size(), 2u);
  EXPECT_EQ(*q.Pop(), 1);
  producer.join();
  EXPECT_TRUE(pushed.load());
  EXPECT_EQ(*q.Pop(), 2);
  EXPECT_EQ(*q.Pop(), 3);
}

TEST(BoundedQueueTest, NothingIsLostUnderConcurrency) {
  BoundedQueue<int> q(4);
  constexpr int kProducers = 4, kPerProducer = 5000;
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) ASSERT_TRUE(q.Push(p * kPerProducer + i));
    });
  }
  std::vector<int> seen(kProducers * kPerProducer, 0);
  std::thread consumer([&] {
    while (auto v = q.Pop()) ++seen[*v];
  });
  for (auto& t : producers) t.join();
  q.Close();
  consumer.join();
  for (int count : seen) ASSERT_EQ(count, 1);
  EXPECT_GT(q.full_waits(), 0u);  // the bound was actually hit
}

TEST(BoundedQueueTest, CloseDrainsThenEnds) {
  BoundedQueue<int> q(8);
  q.Push(1);
  q.Push(2);
  q.Close();
  int x = 3;
  EXPECT_FALSE(q.Push(x));
  EXPECT_EQ(x, 3);  // a refused item stays with the caller
  EXPECT_EQ(*q.Pop(), 1);
  EXPECT_FALSE(q.closed());
  EXPECT_EQ(*q.Pop(), 2);
  EXPECT_FALSE(q.Pop().has_value());
  EXPECT_TRUE(q.closed());
}

TEST(BoundedQueueTest, PopForTimesOut) {
  BoundedQueue<int> q(1);
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(q.PopFor(std::chrono::milliseconds(20)).has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(20));
  EXPECT_FALSE(q.closed());
}

}  // namespace
}  // namespace tributary
