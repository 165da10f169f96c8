// Event-time watermarks.
//
// A watermark W is the claim "readings with event time < W are complete": a window
// [start, end) is final once W >= end. Each source partition (a Kafka partition, an
// MQTT source, the simulator) has its own watermark, the largest event time it has
// delivered minus the allowed out-of-orderness. The operator watermark is the
// minimum over the partitions that are active, so a slow partition holds everything
// back — until it has been silent for longer than the idle timeout, after which it
// stops counting; it rejoins as soon as it delivers again (its readings may then be
// late). The operator watermark never goes backwards.
//
// Two clocks:
//  - event time (sensor clocks) drives the watermark itself;
//  - processing time decides idleness. It is the largest arrival time seen over all
//    partitions (arrival times come from the source: the wall clock, or the
//    simulator's clock), so a replay or a simulated run is deterministic. The caller
//    may push processing time further while no input arrives (Advance(now) with a
//    later `now`, see WindowOperator::OnIdle); processing time never goes backwards.
//
// When every partition is idle, nothing holds the watermark back and no reading
// says how far event time got: it then follows processing time from the last
// reading seen, i.e. W = (max event time − out_of_orderness) + (now − max arrival
// time). In a live deployment this closes the last windows once the network has
// been quiet for the idle timeout; within a stream that keeps arriving it never
// applies, since the partition that just delivered is active.
//
// An idle timeout of 0 disables idleness: every partition always counts.
//
// Fast clocks. A partition's event time is not simply the largest one seen: a device
// whose clock runs minutes ahead would carry it along and close every other device's
// windows early (each later reading then revises them). With `clock_outliers` K > 0 the
// tracker keeps, per partition, the 2K + 1 devices whose latest event times are the
// largest (a device's latest event time only grows, so these are kept exactly, with a
// few comparisons per reading). Of those, the ones still reporting count: silent for no
// longer than the idle timeout (processing time), and within kClockOutlierHorizon of the
// fastest of them (event time). When n count, the partition's event time is that of the
// (s + 1)-th, s = clamp(n − K − 1, 0, K): the s fastest devices are passed over as long
// as K + 1 others agree. A partition with many devices thus ignores its K fastest clocks
// and lags its true front by about K reporting intervals divided by the number of
// devices; one with K + 1 devices or fewer keeps its largest event time. Devices that
// stop reporting fall behind the others and drop out of the 2K + 1, or stop counting
// after the idle timeout (a replay without arrival times: after the horizon).
// A clock ahead by more than the horizon, or more than K fast clocks, still drags the
// partition (live, `max_future` quarantines such readings first).
// Not thread-safe; owned by one operator.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/model.h"
#include "core/status.h"
#include "core/time.h"

namespace tributary {

/// Identifies one source partition: (source symbol, partition number).
using PartitionKey = uint64_t;

/// The partition a reading came from (prov.source + prov.partition).
inline PartitionKey PartitionOf(const Reading& r) {
  return (static_cast<uint64_t>(r.prov.source.id) << 32) | static_cast<uint32_t>(r.prov.partition);
}

/// Tracks per-partition progress and derives the operator watermark.
class CheckpointWriter;
class CheckpointReader;

class WatermarkTracker {
 public:
  /// How far behind the fastest device of a partition another device may be and still
  /// count as reporting with it (see "Fast clocks").
  static constexpr DurationUs kClockOutlierHorizon = 3600 * kMicrosPerSecond;
  /// Largest `clock_outliers` (more are taken as this).
  static constexpr size_t kMaxClockOutliers = 16;

  WatermarkTracker(DurationUs out_of_orderness, DurationUs idle_timeout, size_t clock_outliers = 0);

  /// Record one reading of `partition` from `device` (a symbol id). Does not move the
  /// watermark (Advance does).
  void Observe(PartitionKey partition, TimeUs event_time, TimeUs arrival_time, uint32_t device = 0);
  /// Recompute the watermark at processing time `now` (clamped to never go back) and
  /// return it. Partitions observed since the last Advance are active whatever `now`.
  TimeUs Advance(TimeUs now);

  /// The operator watermark (kMinTime before any reading).
  TimeUs watermark() const { return watermark_; }
  /// Largest arrival time observed (kMinTime before any reading).
  TimeUs max_arrival() const { return max_arrival_; }
  /// Current processing time: max arrival, or later when pushed by Advance.
  TimeUs processing_now() const { return processing_now_; }
  size_t partitions() const { return partitions_.size(); }
  /// Partitions that held the watermark at the last Advance.
  size_t active_partitions() const;
  /// The watermark of one partition (its event time, see "Fast clocks", −
  /// out_of_orderness); kMinTime if unknown.
  TimeUs PartitionWatermark(PartitionKey partition) const;

  /// Checkpoints: every partition and the clocks (stream/checkpoint.h).
  void Snapshot(CheckpointWriter& out) const;
  Status Restore(CheckpointReader& in);

 private:
  struct Leader {
    uint32_t device = 0;
    TimeUs event_time = kMinTime;    ///< the device's latest event time
    TimeUs last_arrival = kMinTime;  ///< when it last reported
  };
  static constexpr size_t kMaxLeaders = 2 * kMaxClockOutliers + 1;
  struct Partition {
    PartitionKey key = 0;
    TimeUs max_event = kMinTime;
    /// The devices with the largest latest event times, largest first (at most
    /// 2·clock_outliers + 1; empty when clock_outliers is 0).
    std::vector<Leader> leaders;
    TimeUs last_arrival = kMinTime;
    bool fresh = false;  // observed since the last Advance
    bool idle = false;   // as of the last Advance
  };
  Partition& Get(PartitionKey key);
  void UpdateLeaders(Partition& p, uint32_t device, TimeUs event_time, TimeUs arrival_time) const;
  /// The partition's event time with its fastest clocks passed over.
  TimeUs EventFront(const Partition& p) const;

  DurationUs out_of_orderness_;
  DurationUs idle_timeout_;
  size_t clock_outliers_;
  TimeUs watermark_ = kMinTime;
  TimeUs max_arrival_ = kMinTime;
  TimeUs processing_now_ = kMinTime;
  std::vector<Partition> partitions_;
  std::unordered_map<PartitionKey, size_t> index_;
  size_t last_ = 0;  // index of the last partition looked up (readings come in runs)
};

}  // namespace tributary
