#include "stream/watermark.h"

#include <algorithm>

#include "stream/checkpoint.h"

namespace tributary {

WatermarkTracker::WatermarkTracker(DurationUs out_of_orderness, DurationUs idle_timeout,
                                   size_t clock_outliers)
    : out_of_orderness_(out_of_orderness),
      idle_timeout_(idle_timeout),
      clock_outliers_(std::min(clock_outliers, kMaxClockOutliers)) {}

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

void WatermarkTracker::UpdateLeaders(Partition& p, uint32_t device, TimeUs event_time,
                                     TimeUs arrival_time) const {
  std::vector<Leader>& l = p.leaders;
  // The readings of one message share device and time: most calls end here.
  if (!l.empty() && l.front().device == device && l.front().event_time >= event_time) {
    l.front().last_arrival = std::max(l.front().last_arrival, arrival_time);
    return;
  }
  const size_t cap = 2 * clock_outliers_ + 1;
  if (l.size() == cap && event_time <= l.back().event_time) {
    // Not among the fastest; if it is kept already, it still reported.
    for (Leader& x : l) {
      if (x.device == device) x.last_arrival = std::max(x.last_arrival, arrival_time);
    }
    return;
  }
  size_t i = 0;
  while (i < l.size() && l[i].device != device) ++i;
  if (i < l.size()) {
    l[i].last_arrival = std::max(l[i].last_arrival, arrival_time);
    if (event_time <= l[i].event_time) return;
    l[i].event_time = event_time;
  } else if (l.size() < cap) {
    l.push_back({device, event_time, arrival_time});
  } else {
    l.back() = {device, event_time, arrival_time};  // the slowest of the kept drops out
    i = l.size() - 1;
  }
  for (; i > 0 && l[i - 1].event_time < l[i].event_time; --i) std::swap(l[i - 1], l[i]);
}

TimeUs WatermarkTracker::EventFront(const Partition& p) const {
  if (p.leaders.empty()) return p.max_event;
  // The kept devices still reporting: silent for no longer than the idle timeout (by
  // processing time), and within the horizon of the fastest of them (by event time).
  TimeUs current[kMaxLeaders];
  size_t n = 0;
  for (const Leader& l : p.leaders) {
    if (idle_timeout_ > 0 && processing_now_ - l.last_arrival > idle_timeout_) continue;
    if (n > 0 && l.event_time < current[0] - kClockOutlierHorizon) break;
    current[n++] = l.event_time;
  }
  if (n == 0) return p.max_event;
  const size_t k = clock_outliers_;
  const size_t skip = n > k + 1 ? std::min(k, n - k - 1) : 0;
  return current[skip];
}

void WatermarkTracker::Observe(PartitionKey partition, TimeUs event_time, TimeUs arrival_time,
                               uint32_t device) {
  Partition& p = Get(partition);
  p.max_event = std::max(p.max_event, event_time);
  if (clock_outliers_ > 0) UpdateLeaders(p, device, event_time, arrival_time);
  p.last_arrival = std::max(p.last_arrival, arrival_time);
  p.fresh = true;
  max_arrival_ = std::max(max_arrival_, arrival_time);
}

TimeUs WatermarkTracker::Advance(TimeUs now) {
  processing_now_ = std::max({processing_now_, now, max_arrival_});
  if (partitions_.empty()) return watermark_;
  TimeUs min_active = kMaxTime;
  TimeUs max_front = kMinTime;
  bool any_active = false;
  for (Partition& p : partitions_) {
    p.idle = idle_timeout_ > 0 && !p.fresh && processing_now_ - p.last_arrival > idle_timeout_;
    p.fresh = false;
    const TimeUs front = EventFront(p);
    max_front = std::max(max_front, front);
    if (!p.idle) {
      any_active = true;
      min_active = std::min(min_active, front - out_of_orderness_);
    }
  }
  TimeUs candidate =
      any_active ? min_active : max_front - out_of_orderness_ + (processing_now_ - max_arrival_);
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
  return EventFront(partitions_[it->second]) - out_of_orderness_;
}

void WatermarkTracker::Snapshot(CheckpointWriter& out) const {
  out.Section("watermark/2");
  out.I64(watermark_);
  out.I64(max_arrival_);
  out.I64(processing_now_);
  out.U64(partitions_.size());
  for (const Partition& p : partitions_) {
    out.U64(p.key);
    out.I64(p.max_event);
    out.I64(p.last_arrival);
    out.Bool(p.fresh);
    out.Bool(p.idle);
    out.U64(p.leaders.size());
    for (const Leader& l : p.leaders) {
      out.U64(l.device);
      out.I64(l.event_time);
      out.I64(l.last_arrival);
    }
  }
}

Status WatermarkTracker::Restore(CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("watermark/2"));
  watermark_ = in.I64();
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
    const size_t kept = in.Count();
    if (kept > kMaxLeaders) {
      return Status::Corrupt("watermark: " + std::to_string(kept) + " kept devices");
    }
    p.leaders.resize(kept);
    for (Leader& l : p.leaders) {
      l.device = in.SymId(in.U64());
      l.event_time = in.I64();
      l.last_arrival = in.I64();
    }
    // A config with fewer outliers keeps the fastest of them.
    p.leaders.resize(clock_outliers_ > 0 ? std::min(p.leaders.size(), 2 * clock_outliers_ + 1) : 0);
    index_[p.key] = i;
  }
  last_ = 0;
  return in.status();
}

}  // namespace tributary
