#include "stream/watermark.h"

#include <algorithm>

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

}  // namespace tributary
