#include "ingest/dedup.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <tuple>

namespace tributary {
namespace {

constexpr TimeUs kT0 = 1714564800000000;  // 2024-05-01T12:00:00Z

class IngestDedup : public ::testing::Test {
 protected:
  Symbol dev_a_ = Intern("dedup-dev-a");
  Symbol dev_b_ = Intern("dedup-dev-b");
  Symbol pm25_ = Intern("pm25");
  Symbol no2_ = Intern("no2");
};

TEST_F(IngestDedup, SameKeyIsADuplicateDifferentKeysAreNot) {
  Deduplicator d(kMicrosPerHour);
  EXPECT_FALSE(d.IsDuplicate(dev_a_, pm25_, kT0));
  EXPECT_TRUE(d.IsDuplicate(dev_a_, pm25_, kT0));
  EXPECT_TRUE(d.IsDuplicate(dev_a_, pm25_, kT0));
  EXPECT_FALSE(d.IsDuplicate(dev_b_, pm25_, kT0));
  EXPECT_FALSE(d.IsDuplicate(dev_a_, no2_, kT0));
  EXPECT_FALSE(d.IsDuplicate(dev_a_, pm25_, kT0 + 1));
  EXPECT_EQ(d.size(), 4u);
}

TEST_F(IngestDedup, WithinHorizonIsDetectedEvenOutOfOrder) {
  Deduplicator d(kMicrosPerHour);
  EXPECT_FALSE(d.IsDuplicate(dev_a_, pm25_, kT0));
  EXPECT_FALSE(d.IsDuplicate(dev_a_, pm25_, kT0 + 59 * kMicrosPerMinute));
  // kT0 is exactly at the cutoff (max − horizon = kT0 − 1 min): still remembered.
  EXPECT_FALSE(d.IsDuplicate(dev_a_, pm25_, kT0 - kMicrosPerMinute));
  EXPECT_TRUE(d.IsDuplicate(dev_a_, pm25_, kT0));
  EXPECT_TRUE(d.IsDuplicate(dev_a_, pm25_, kT0 - kMicrosPerMinute));
}

TEST_F(IngestDedup, OutsideHorizonIsNeitherCheckedNorRemembered) {
  Deduplicator d(kMicrosPerHour);
  EXPECT_FALSE(d.IsDuplicate(dev_a_, pm25_, kT0));
  EXPECT_FALSE(d.IsDuplicate(dev_a_, pm25_, kT0 + 2 * kMicrosPerHour));
  EXPECT_EQ(d.cutoff(), kT0 + kMicrosPerHour);
  // The first key is behind the cutoff now: a re-send is not flagged and not stored.
  EXPECT_FALSE(d.IsDuplicate(dev_a_, pm25_, kT0));
  EXPECT_FALSE(d.IsDuplicate(dev_a_, pm25_, kT0));
  // Exactly at the cutoff it is checked.
  EXPECT_FALSE(d.IsDuplicate(dev_b_, pm25_, kT0 + kMicrosPerHour));
  EXPECT_TRUE(d.IsDuplicate(dev_b_, pm25_, kT0 + kMicrosPerHour));
}

TEST_F(IngestDedup, EvictionBoundsMemory) {
  Deduplicator d(10 * kMicrosPerMinute);
  // One key per second for two hours: at most ~10 minutes (+ one bucket) stay.
  for (int64_t s = 0; s < 7200; ++s) {
    EXPECT_FALSE(d.IsDuplicate(dev_a_, pm25_, kT0 + s * kMicrosPerSecond));
  }
  size_t horizon_keys = 600;
  size_t bucket_keys = 600 / 64 + 1;
  EXPECT_GE(d.size(), horizon_keys);
  EXPECT_LE(d.size(), horizon_keys + bucket_keys + 1);
}

TEST_F(IngestDedup, JumpFarAheadForgetsEverything) {
  Deduplicator d(kMicrosPerMinute);
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(d.IsDuplicate(dev_a_, pm25_, kT0 + i));
  EXPECT_EQ(d.size(), 100u);
  EXPECT_FALSE(d.IsDuplicate(dev_a_, pm25_, kT0 + kMicrosPerDay));
  EXPECT_EQ(d.size(), 1u);
}

TEST_F(IngestDedup, ZeroHorizonDisables) {
  Deduplicator d(0);
  EXPECT_FALSE(d.IsDuplicate(dev_a_, pm25_, kT0));
  EXPECT_FALSE(d.IsDuplicate(dev_a_, pm25_, kT0));
  EXPECT_EQ(d.size(), 0u);
}

TEST_F(IngestDedup, FingerprintIsNeverZeroAndDependsOnEveryPart) {
  uint64_t f = Deduplicator::Fingerprint(dev_a_, pm25_, kT0);
  EXPECT_NE(f, 0u);
  EXPECT_NE(f, Deduplicator::Fingerprint(dev_b_, pm25_, kT0));
  EXPECT_NE(f, Deduplicator::Fingerprint(dev_a_, no2_, kT0));
  EXPECT_NE(f, Deduplicator::Fingerprint(dev_a_, pm25_, kT0 + 1));
  EXPECT_NE(Deduplicator::Fingerprint(Symbol{}, Symbol{}, 0), 0u);
}

// Randomised comparison against an exact model (std::map of key → event time), with
// out-of-order times, many keys (table growth) and continuous eviction.
TEST_F(IngestDedup, MatchesAnExactModel) {
  const DurationUs horizon = 5 * kMicrosPerMinute;
  Deduplicator d(horizon);
  std::set<std::tuple<uint32_t, uint32_t, TimeUs>> seen;
  TimeUs max_time = kMinTime;
  std::mt19937_64 rng(7);
  TimeUs clock = kT0;
  std::vector<Symbol> devices;
  for (int i = 0; i < 50; ++i) devices.push_back(Intern("dedup-model-" + std::to_string(i)));
  for (int i = 0; i < 200000; ++i) {
    clock += static_cast<TimeUs>(rng() % 3000);  // ~1.5 ms per event
    // Mostly near the clock; sometimes far back (late), sometimes exact repeats.
    TimeUs t = clock - static_cast<TimeUs>(rng() % (2 * kMicrosPerSecond));
    if (rng() % 50 == 0) t = clock - static_cast<TimeUs>(rng() % (10 * kMicrosPerMinute));
    t -= t % 1000;  // millisecond timestamps make repeats likely
    Symbol dev = devices[rng() % devices.size()];
    Symbol metric = (rng() % 2) != 0 ? pm25_ : no2_;
    max_time = std::max(max_time, t);
    bool expected = false;
    if (t >= max_time - horizon) {
      expected = !seen.insert({dev.id, metric.id, t}).second;
    }
    ASSERT_EQ(d.IsDuplicate(dev, metric, t), expected) << "event " << i;
    // Forget model keys behind the cutoff (they would not be checked anyway).
    if (i % 1000 == 0) {
      for (auto it = seen.begin(); it != seen.end();) {
        it = std::get<2>(*it) < max_time - horizon ? seen.erase(it) : std::next(it);
      }
    }
  }
  EXPECT_GT(d.size(), 0u);
}

}  // namespace
}  // namespace tributary
