// The live state behind the HTTP API: what the pipeline delivered recently.
//
// LiveState observes the pipeline (PipelineObserver::OnBatch, on the sink thread) and
// keeps, each bounded:
//   - the latest reading per (device, metric), with position, event and arrival time;
//   - the most recent window results (revisions included, oldest dropped first);
//   - the most recent quarantine records (reason and detail, without raw bytes);
//   - the latest event of the most recent alert lives (firing or resolved);
// and publishes `window`, `quarantine`, `alert` and `reading_summary` events to an
// EventLog, plus one `summary` event per `summary_interval`: the readings coalesced over
// the interval (counts, events/s, watermark) and every sensor that reported or was
// quarantined in it with its position, status and latest value per metric. A dashboard
// of thousands of sensors follows the `summary` events instead of every reading.
// OnBatch copies under one mutex and never waits on readers for long; readers (HTTP
// worker threads) copy out under the same mutex and render outside it.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/json_writer.h"
#include "core/model.h"
#include "stream/runtime.h"

namespace tributary {

class EventLog;

struct LiveStateOptions {
  size_t max_windows = 10000;                            ///< window results kept
  size_t max_quarantine = 1000;                          ///< quarantine records kept
  size_t max_alerts = 1000;                              ///< alert lives kept
  DurationUs expected_interval = 60 * kMicrosPerSecond;  ///< a sensor's reporting interval
  DurationUs summary_interval = kMicrosPerSecond;        ///< processing time between summaries
};

/// stale: nothing from the device (accepted or quarantined) observed for 3 × expected
/// interval of processing time; quarantining: its latest message was quarantined (wholly
/// or in part: the newest quarantine record is not older than its newest accepted
/// reading, compared in the source's own arrival times); ok otherwise.
enum class SensorStatus { kOk, kStale, kQuarantining };
const char* SensorStatusName(SensorStatus s);

/// The latest value of one metric of one sensor.
struct MetricLatest {
  Symbol metric;
  double value = NAN;
  TimeUs event_time = 0;    ///< UTC µs, sensor clock
  TimeUs arrival_time = 0;  ///< UTC µs, processing time
  float qc_score = 0.0f;    ///< Reading::qc_score of the latest value
  QcFlags qc_flags;         ///< flags of the latest value
};

/// One sensor as the API shows it.
struct SensorView {
  Symbol device;
  double lat = NAN;  ///< WGS84 degrees of the latest reading
  double lon = NAN;
  TimeUs last_event_time = 0;
  TimeUs last_arrival_time = 0;
  uint64_t readings = 0;     ///< accepted readings seen since start
  uint64_t quarantined = 0;  ///< quarantine records naming this device since start
  uint64_t qc_flagged = 0;   ///< accepted readings with a QC score ≥ 1 since start
  SensorStatus status = SensorStatus::kOk;
  std::vector<MetricLatest> metrics;  ///< sorted by metric name
};

/// A quarantine record without its raw bytes.
struct QuarantineView {
  Symbol reason;
  std::string detail;
  TimeUs arrival_time = 0;
  Symbol device;
  Symbol metric;
  Symbol source;
};

/// Filter of window results; empty strings match everything. A result matches the time
/// range when from <= start < to.
struct WindowQuery {
  std::string window;
  std::string group;
  std::string metric;
  TimeUs from = kMinTime;
  TimeUs to = kMaxTime;
  size_t limit = 1000;  ///< newest results first, at most this many
};

/// Running totals over every batch observed.
struct LiveTotals {
  uint64_t batches = 0;
  uint64_t readings = 0;
  uint64_t quarantined = 0;
  uint64_t late = 0;
  uint64_t windows = 0;
  uint64_t duplicates = 0;
  TimeUs watermark = kMinTime;  ///< operator watermark of the last batch
};

class LiveState : public PipelineObserver {
 public:
  /// `events` (not owned, may be null) receives the live events.
  LiveState(LiveStateOptions options, EventLog* events);

  void OnBatch(const Batch& batch) override;

  /// Every sensor seen, sorted by device id, with its status at processing time `now`.
  std::vector<SensorView> Sensors(TimeUs now) const;
  /// Window results matching `query`, newest first.
  std::vector<WindowResult> Windows(const WindowQuery& query) const;
  /// The newest `limit` quarantine records, newest first.
  std::vector<QuarantineView> Quarantine(size_t limit) const;
  LiveTotals Totals() const;
  /// Alerts: the latest event of each alert life, newest first; with `firing_only`
  /// only those not resolved. At most `limit`.
  std::vector<AlertEvent> Alerts(bool firing_only, size_t limit) const;
  /// Accepted readings per second of processing time over the last ten seconds.
  double ReadingsPerSecond(TimeUs now) const;

 private:
  struct Sensor {
    Symbol device;
    double lat = NAN, lon = NAN;
    TimeUs last_event_time = 0;
    TimeUs last_arrival_time = 0;
    TimeUs last_quarantine_time = kMinTime;
    TimeUs last_seen = 0;  ///< processing time (wall clock) of the last batch naming it
    uint64_t readings = 0;
    uint64_t quarantined = 0;
    uint64_t qc_flagged = 0;
    std::unordered_map<uint32_t, MetricLatest> metrics;  ///< by metric symbol id
  };
  Sensor& SensorOf(Symbol device);
  SensorView ViewOf(const Sensor& s, TimeUs now) const;
  /// Render the `summary` event of the interval ending `now` and reset it (under mu_).
  std::string TakeSummaryLocked(TimeUs now);

  /// The interval being coalesced into the next `summary` event.
  struct SummaryInterval {
    TimeUs from = 0;  ///< processing time of its first batch (0: no batch yet)
    uint64_t readings = 0, quarantined = 0, late = 0, duplicates = 0, windows = 0, alerts = 0;
    std::vector<uint32_t> changed;  ///< device symbol ids, in first-change order
    std::unordered_set<uint32_t> seen;
  };

  const LiveStateOptions options_;
  EventLog* const events_;
  mutable std::mutex mu_;
  std::unordered_map<uint32_t, Sensor> sensors_;  ///< by device symbol id
  std::deque<WindowResult> windows_;
  std::deque<QuarantineView> quarantine_;
  std::deque<AlertEvent> alerts_;  ///< latest event per alert life, oldest first
  std::deque<std::pair<TimeUs, uint64_t>> rate_samples_;  ///< (arrival µs, readings)
  LiveTotals totals_;
  SummaryInterval summary_;
};

/// Write one sensor as a JSON object, the element of /api/sensors: device, lat, lon,
/// status, last_event_time, last_arrival_time, readings, quarantined and metrics
/// {metric: {value, event_time}}. `compact` (the element of `summary` events) writes
/// device, lat, lon, status, last_arrival_time and values {metric: value} only.
void WriteSensorJson(JsonWriter& w, const SensorView& s, bool compact = false);

/// Write one window result as a JSON object (NaN aggregates as null, times ISO-8601).
void WriteWindowJson(JsonWriter& w, const WindowResult& r);
/// Write one quarantine record as a JSON object.
void WriteQuarantineJson(JsonWriter& w, const QuarantineView& q);

}  // namespace tributary
