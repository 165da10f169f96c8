// Duplicate detection by (device, metric, event time) within a horizon of event time.
//
// Devices and gateways re-send messages (retries, store-and-forward replays); the same
// (device, metric, event time) seen again is a duplicate whatever its value. Keys are
// remembered while their event time is within `horizon` of the largest event time seen
// so far (the cutoff is max_event_time − horizon, and it only moves forward):
//   - a key at or after the cutoff is checked exactly: duplicate iff seen before;
//   - a key before the cutoff is neither checked nor remembered (it is far behind the
//     stream; the window stage decides whether it is late).
// Memory is bounded by the number of keys inside the horizon: keys are 64-bit
// fingerprints in an open-addressing hash set, and a ring of time buckets (each 1/64
// of the horizon) lists them for eviction once their bucket falls behind the cutoff.
// Two distinct keys collide with probability ~n²/2⁶⁵ (n keys in the horizon: about
// 3·10⁻⁷ for 3.6 M keys), in which case the second is taken for a duplicate.
// Not thread-safe: one instance per ingestion worker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "core/intern.h"
#include "core/status.h"
#include "core/time.h"

namespace tributary {

class CheckpointWriter;
class CheckpointReader;

class Deduplicator {
 public:
  /// `horizon` 0 disables deduplication (every reading is new).
  explicit Deduplicator(DurationUs horizon = 0);

  /// True when (device, metric, event_time) was already seen within the horizon;
  /// otherwise remembers it (when inside the horizon) and returns false.
  bool IsDuplicate(Symbol device, Symbol metric, TimeUs event_time);

  /// Number of keys currently remembered.
  size_t size() const { return count_; }
  /// Oldest event time still checked (max event time − horizon).
  TimeUs cutoff() const { return max_time_ == kMinTime ? kMinTime : max_time_ - horizon_; }
  DurationUs horizon() const { return horizon_; }

  /// Fingerprint of a key (never 0).
  static uint64_t Fingerprint(Symbol device, Symbol metric, TimeUs event_time);
  /// Fingerprint of a key from the text of device and metric (never 0): the same in
  /// every process, whatever ids the strings were interned under.
  static uint64_t TextFingerprint(std::string_view device, std::string_view metric,
                                  TimeUs event_time);
  /// Fingerprint keys by their text (TextFingerprint), so another process can restore
  /// this horizon (partition-owned state, docs/SCALING.md). Set before the first key.
  void SetPortable(bool portable) { portable_ = portable; }

  /// Checkpoints: write / replace the remembered keys and the horizon's position.
  void Snapshot(CheckpointWriter& out) const;
  Status Restore(CheckpointReader& in);

 private:
  static constexpr size_t kBuckets = 64;

  bool Insert(uint64_t fp);  // false when already present
  void Erase(uint64_t fp);
  void Grow();
  void AdvanceTo(TimeUs max_time);
  int64_t BucketOf(TimeUs t) const { return FloorDiv(t, bucket_width_); }

  DurationUs horizon_;
  DurationUs bucket_width_;
  bool portable_ = false;
  TimeUs max_time_ = kMinTime;
  // Open addressing with linear probing; 0 marks an empty slot.
  std::vector<uint64_t> slots_;
  size_t mask_ = 0;
  size_t count_ = 0;
  // Ring of buckets: ring_[b mod size] holds the fingerprints of bucket b, for the
  // buckets from BucketOf(cutoff) to BucketOf(max_time_).
  std::vector<std::vector<uint64_t>> ring_;
  int64_t oldest_bucket_ = 0;  // first bucket that may hold keys
};

}  // namespace tributary
