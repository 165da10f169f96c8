#include "ingest/dedup.h"

#include <algorithm>

#include "stream/checkpoint.h"

namespace tributary {

namespace {

constexpr size_t kInitialSlots = 1024;

uint64_t Mix(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

Deduplicator::Deduplicator(DurationUs horizon)
    : horizon_(std::max<DurationUs>(horizon, 0)),
      bucket_width_(std::max<DurationUs>((horizon_ + kBuckets - 1) / kBuckets, 1)) {
  if (horizon_ > 0) {
    slots_.assign(kInitialSlots, 0);
    mask_ = kInitialSlots - 1;
    // The live buckets span BucketOf(cutoff)..BucketOf(max): at most kBuckets + 1.
    ring_.resize(kBuckets + 2);
  }
}

uint64_t Deduplicator::Fingerprint(Symbol device, Symbol metric, TimeUs event_time) {
  uint64_t ids = (static_cast<uint64_t>(device.id) << 32) | metric.id;
  uint64_t h = Mix(ids ^ Mix(static_cast<uint64_t>(event_time)));
  return h == 0 ? 1 : h;
}

uint64_t Deduplicator::TextFingerprint(std::string_view device, std::string_view metric,
                                       TimeUs event_time) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a over device, a separator, metric
  auto add = [&h](std::string_view s) {
    for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 0x100000001b3ULL;
  };
  add(device);
  h = (h ^ 0xffu) * 0x100000001b3ULL;
  add(metric);
  h = Mix(Mix(h) ^ Mix(static_cast<uint64_t>(event_time)));
  return h == 0 ? 1 : h;
}

bool Deduplicator::IsDuplicate(Symbol device, Symbol metric, TimeUs event_time) {
  if (horizon_ == 0) return false;
  if (max_time_ == kMinTime || event_time > max_time_) AdvanceTo(event_time);
  if (event_time < max_time_ - horizon_) return false;
  uint64_t fp = portable_ ? TextFingerprint(device.view(), metric.view(), event_time)
                          : Fingerprint(device, metric, event_time);
  if (!Insert(fp)) return true;
  auto r = static_cast<int64_t>(ring_.size());
  ring_[static_cast<size_t>(((BucketOf(event_time) % r) + r) % r)].push_back(fp);
  return false;
}

void Deduplicator::AdvanceTo(TimeUs max_time) {
  int64_t new_oldest = BucketOf(max_time - horizon_);
  auto r = static_cast<int64_t>(ring_.size());
  if (max_time_ != kMinTime) {
    if (new_oldest - oldest_bucket_ >= r) {
      // Everything remembered fell behind the cutoff at once.
      std::fill(slots_.begin(), slots_.end(), 0);
      count_ = 0;
      for (auto& bucket : ring_) bucket.clear();
    } else {
      for (int64_t b = oldest_bucket_; b < new_oldest; ++b) {
        auto& bucket = ring_[static_cast<size_t>(((b % r) + r) % r)];
        for (uint64_t fp : bucket) Erase(fp);
        bucket.clear();
      }
    }
  }
  oldest_bucket_ = std::max(oldest_bucket_, new_oldest);
  if (max_time_ == kMinTime) oldest_bucket_ = new_oldest;
  max_time_ = max_time;
}

bool Deduplicator::Insert(uint64_t fp) {
  if ((count_ + 1) * 2 > slots_.size()) Grow();
  size_t i = fp & mask_;
  while (slots_[i] != 0) {
    if (slots_[i] == fp) return false;
    i = (i + 1) & mask_;
  }
  slots_[i] = fp;
  ++count_;
  return true;
}

void Deduplicator::Erase(uint64_t fp) {
  size_t i = fp & mask_;
  while (slots_[i] != fp) {
    if (slots_[i] == 0) return;
    i = (i + 1) & mask_;
  }
  // Backward-shift deletion: pull later members of the probe run into the hole when
  // their home slot does not lie cyclically in (hole, position].
  size_t j = i;
  while (true) {
    j = (j + 1) & mask_;
    if (slots_[j] == 0) break;
    size_t home = slots_[j] & mask_;
    bool stays = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
    if (!stays) {
      slots_[i] = slots_[j];
      i = j;
    }
  }
  slots_[i] = 0;
  --count_;
}

void Deduplicator::Grow() {
  std::vector<uint64_t> old;
  old.swap(slots_);
  slots_.assign(old.size() * 2, 0);
  mask_ = slots_.size() - 1;
  for (uint64_t fp : old) {
    if (fp == 0) continue;
    size_t i = fp & mask_;
    while (slots_[i] != 0) i = (i + 1) & mask_;
    slots_[i] = fp;
  }
}

// The remembered keys are the ring's fingerprints; the hash set is rebuilt from them.
void Deduplicator::Snapshot(CheckpointWriter& out) const {
  out.Section("dedup");
  out.I64(horizon_);
  out.I64(max_time_);
  out.I64(oldest_bucket_);
  out.U64(ring_.size());
  for (const auto& bucket : ring_) {
    out.U64(bucket.size());
    for (uint64_t fp : bucket) out.U64(fp);
  }
}

Status Deduplicator::Restore(CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("dedup"));
  const DurationUs horizon = in.I64();
  if (in.ok() && horizon != horizon_) {
    return Status::Invalid("checkpoint: dedup_horizon was " + FormatDuration(horizon) +
                           " when the checkpoint was taken, " + FormatDuration(horizon_) + " now");
  }
  max_time_ = in.I64();
  oldest_bucket_ = in.I64();
  const uint64_t buckets = in.Count();
  if (in.ok() && buckets != ring_.size()) return Status::Corrupt("checkpoint: dedup ring size");
  if (horizon_ > 0) {
    slots_.assign(kInitialSlots, 0);
    mask_ = kInitialSlots - 1;
  }
  count_ = 0;
  for (auto& bucket : ring_) {
    bucket.resize(in.Count());
    for (uint64_t& fp : bucket) {
      fp = in.U64();
      if (fp != 0) Insert(fp);
    }
  }
  return in.status();
}

}  // namespace tributary
