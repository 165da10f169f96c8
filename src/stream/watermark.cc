#include "stream/watermark.h"

#include <algorithm>

#include "stream/checkpoint.h"

namespace tributary {

WatermarkTracker::WatermarkTracker(DurationUs out_of_orderness, DurationUs idle_timeout)
    : out_of_orderness_(out_of_orderness), idle_timeout_(idle_timeout) {}

WatermarkTracker::Partition& WatermarkTracker::Get(PartitionKey key) {
  if (last_ < partitions_.size() && partitions_[last_].key == key) return partitions_[last_];
  auto [it, added] = index_.emplace(key, partitions_.size());
  if (added) {
    Partition p;
    p.key = key;
    partitions_.push_back(p);
  }
  last_ = it->second;
  return partitions_[last_];
}

void WatermarkTracker::Observe(PartitionKey partition, TimeUs event_time, TimeUs arrival_time) {
  Partition& p = Get(partition);
  p.max_event = std::max(p.max_event, event_time);
  p.last_arrival = std::max(p.last_arrival, arrival_time);
  p.fresh = true;
  max_event_ = std::max(max_event_, event_time);
  max_arrival_ = std::max(max_arrival_, arrival_time);
}

TimeUs WatermarkTracker::Advance(TimeUs now) {
  processing_now_ = std::max({processing_now_, now, max_arrival_});
  if (partitions_.empty()) return watermark_;
  TimeUs min_active = kMaxTime;
  bool any_active = false;
  for (Partition& p : partitions_) {
    p.idle = idle_timeout_ > 0 && !p.fresh && processing_now_ - p.last_arrival > idle_timeout_;
    p.fresh = false;
    if (!p.idle) {
      any_active = true;
      min_active = std::min(min_active, p.max_event - out_of_orderness_);
    }
  }
  TimeUs candidate =
      any_active ? min_active : max_event_ - out_of_orderness_ + (processing_now_ - max_arrival_);
  watermark_ = std::max(watermark_, candidate);
  return watermark_;
}

size_t WatermarkTracker::active_partitions() const {
  return static_cast<size_t>(std::count_if(partitions_.begin(), partitions_.end(),
                                           [](const Partition& p) { return !p.idle; }));
}

TimeUs WatermarkTracker::PartitionWatermark(PartitionKey partition) const {
  auto it = index_.find(partition);
  if (it == index_.end()) return kMinTime;
  return partitions_[it->second].max_event - out_of_orderness_;
}

void WatermarkTracker::Snapshot(CheckpointWriter& out) const {
  out.Section("watermark");
  out.I64(watermark_);
  out.I64(max_event_);
  out.I64(max_arrival_);
  out.I64(processing_now_);
  out.U64(partitions_.size());
  for (const Partition& p : partitions_) {
    out.U64(p.key);
    out.I64(p.max_event);
    out.I64(p.last_arrival);
    out.Bool(p.fresh);
    out.Bool(p.idle);
  }
}

Status WatermarkTracker::Restore(CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("watermark"));
  watermark_ = in.I64();
  max_event_ = in.I64();
  max_arrival_ = in.I64();
  processing_now_ = in.I64();
  partitions_.assign(in.Count(), Partition{});
  index_.clear();
  for (size_t i = 0; i < partitions_.size(); ++i) {
    Partition& p = partitions_[i];
    // (source symbol, partition): the source's id as this process knows it.
    const uint64_t key = in.U64();
    p.key = (static_cast<uint64_t>(in.SymId(key >> 32)) << 32) | (key & 0xffffffffu);
    p.max_event = in.I64();
    p.last_arrival = in.I64();
    p.fresh = in.Bool();
    p.idle = in.Bool();
    index_[p.key] = i;
  }
  last_ = 0;
  return in.status();
}

}  // namespace tributary
