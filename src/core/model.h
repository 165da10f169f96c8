// The event model: what flows through the pipeline.
//
// Data is in long format: one incoming message may carry several metrics and becomes
// several Readings, one per (device, metric, event time). Every input record ends in
// exactly one place, which the Ledger counts:
//   accepted    — a Reading that passed ingestion and was not late for its windows;
//   quarantined — a payload or reading that failed decoding or validation, kept with
//                 its raw bytes and a reason code;
//   late        — a Reading past the grace period of every window it belongs to,
//                 routed to the late sink with its lateness;
//   duplicate   — the same (device, metric, event time) seen again within the dedup
//                 horizon, counted and not forwarded.
// A "record" is one Reading once decoded, or one whole payload when it cannot be
// decoded into readings at all (broken JSON counts once, whatever it held).
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/intern.h"
#include "core/time.h"

namespace tributary {

/// Per-reading quality-control flags (a bitset; names are stable, sinks store them).
enum class QcFlag : uint32_t {
  kTimestampDrift = 1u << 0,        ///< |arrival − event time| above the drift threshold
  kLate = 1u << 1,                  ///< arrived past the grace period of a window
  kCalibrated = 1u << 2,            ///< a calibration curve was applied
  kUnitConverted = 1u << 3,         ///< the value was converted to the canonical unit
  kRangeSuspect = 1u << 4,          ///< inside ingest bounds but outside the typical range
  kCrsTransformed = 1u << 5,        ///< the position was reprojected to WGS84
  kNoZone = 1u << 6,                ///< no zone of a configured layer contains the position
  kLateArrival = 1u << 7,           ///< counted into the next open window (late policy)
  kPositionFromRegistry = 1u << 8,  ///< the position came from the device registry
  kSpike = 1u << 9,
  kFlatline = 1u << 10,
  kRateOfChange = 1u << 11,
  kBaselineExceeded = 1u << 12,
  kNeighborDisagreement = 1u << 13,
  kDriftCorrected = 1u << 14,
  kAnomaly = 1u << 15,
  kSimulatedFault = 1u << 16,  ///< injected on purpose by the simulator (for tests)
};

/// A set of QcFlags.
struct QcFlags {
  uint32_t bits = 0;
  void Set(QcFlag f) { bits |= static_cast<uint32_t>(f); }
  bool Has(QcFlag f) const { return (bits & static_cast<uint32_t>(f)) != 0; }
  bool empty() const { return bits == 0; }
  friend bool operator==(QcFlags a, QcFlags b) { return a.bits == b.bits; }
};

/// Render flags as "CALIBRATED|UNIT_CONVERTED" ("" when none).
std::string QcFlagsToString(QcFlags flags);
/// Render flags as a JSON array of names: ["CALIBRATED","UNIT_CONVERTED"].
std::string QcFlagsToJson(QcFlags flags);

/// Where a reading came from, kept through every stage to every sink.
struct Provenance {
  Symbol source;            ///< configured source name ("simulator", "mqtt-city")
  Symbol topic;             ///< MQTT/Kafka topic, or input file path
  int32_t partition = -1;   ///< Kafka partition, -1 when not applicable
  int64_t offset = -1;      ///< broker offset, or line number in a file (1-based)
  Symbol firmware;          ///< firmware version reported or from the registry
  Symbol calibration_date;  ///< ISO date of the calibration applied
  Symbol crs_source;        ///< original CRS ("EPSG:32633"); empty when WGS84
  double orig_x = NAN;      ///< original coordinates, before any reprojection
  double orig_y = NAN;
  /// The drift correction applied against a co-located reference (stream/qc/drift.h),
  /// "slope=0.912 offset=1.3 fit_end=2024-05-08T00:00:00Z ref=ref-01"; empty when none.
  Symbol drift_correction;
  /// Isolation-forest score of the reading (stream/qc/iforest.h); NaN when not scored.
  float anomaly_score = NAN;
};

/// Render provenance (plus qc flags) as the JSON object sinks store.
std::string ProvenanceToJson(const Provenance& p, Symbol device, QcFlags flags);

/// Zone layers a reading carries ids for (`zones.layers`).
inline constexpr size_t kMaxZoneLayers = 4;

/// One measurement of one metric by one device at one instant, normalised:
/// canonical metric and unit, WGS84 position, UTC event time.
struct Reading {
  TimeUs event_time = 0;    ///< sensor clock, UTC µs
  TimeUs arrival_time = 0;  ///< when tributary received it, UTC µs
  Symbol device;
  Symbol metric;       ///< canonical metric name ("pm25", "temperature", ...)
  double value = NAN;  ///< in the metric's canonical unit
  double lat = NAN;    ///< WGS84 degrees
  double lon = NAN;
  uint64_t h3 = 0;  ///< H3 cell after enrichment (0 = not computed)
  Symbol zone;      ///< zone id in the first zone layer after enrichment (empty = none)
  /// Zone ids in zone layers 2..kMaxZoneLayers, in configured order (empty = none).
  std::array<Symbol, kMaxZoneLayers - 1> extra_zones{};
  uint64_t s2 = 0;  ///< S2 cell id at zones.s2_level after enrichment (0 = not computed)
  QcFlags flags;
  /// Strongest normalised QC check of the reading (stream/qc/qc.h); ≥ 1 when a QC check
  /// flagged it, 0 when QC did not run.
  float qc_score = 0.0f;
  Provenance prov;
};

/// A record that failed decoding or validation, with the raw bytes and the reason.
struct QuarantineRecord {
  Symbol reason;       ///< stable reason code ("malformed_json", "lat_out_of_range")
  std::string detail;  ///< human-readable explanation naming the field and value
  std::string raw;     ///< the raw payload as received (bytes, possibly invalid UTF-8)
  TimeUs arrival_time = 0;
  Symbol device;  ///< when it could be read
  Symbol metric;  ///< when the failure concerns one metric of the payload
  Provenance prov;
};

/// A reading that arrived past the grace period of a window definition.
struct LateRecord {
  Reading reading;
  Symbol window;            ///< name of the window definition it missed
  DurationUs lateness = 0;  ///< how far past (window end + grace) the watermark already was
  TimeUs watermark = 0;     ///< operator watermark when it arrived
};

/// Window-level quality flags.
enum class WindowFlag : uint32_t {
  kSparse = 1u << 0,               ///< sample_count / expected < 0.7
  kRangeViolation = 1u << 1,       ///< p95 outside the metric's physical bounds
  kLatencyDegraded = 1u << 2,      ///< late fraction > 0.2
  kLowCoverage = 1u << 3,          ///< fewer than 2 active sensors
  kBelowMinSamples = 1u << 4,      ///< sample_count < min_samples
  kRevision = 1u << 5,             ///< re-emitted after a late reading within grace
  kGapBefore = 1u << 6,            ///< more than 2 windows missing before this one
  kCentroidJump = 1u << 7,         ///< centroid moved more than 0.5° since the last window
  kInsufficientCapture = 1u << 8,  ///< below the data-capture rule (e.g. 75 %): not valid
  kExceedance = 1u << 9,           ///< valid and its mean above the exceedance threshold
};

/// Render window flags as "SPARSE|LOW_COVERAGE".
std::string WindowFlagsToString(uint32_t flags);

/// The result of one closed (or revised) window for one (group, metric) key.
/// Aggregates that were not configured are NaN.
struct WindowResult {
  Symbol window;    ///< window definition name
  Symbol group_by;  ///< "device", "zone", "h3" or "all"
  Symbol group;     ///< the group's key (device id, zone id, H3 cell, "all")
  Symbol metric;
  TimeUs start = 0;    ///< inclusive
  TimeUs end = 0;      ///< exclusive
  uint64_t count = 0;  ///< sample_count
  double mean = NAN, min = NAN, max = NAN, std = NAN;
  double median = NAN, p95 = NAN, trimmed_mean = NAN;
  double first = NAN, last = NAN;
  double centroid_lat = NAN, centroid_lon = NAN;
  double nowcast = NAN;  ///< EPA NowCast concentration (truncated), 1 h windows of PM
  double aqi = NAN;      ///< US AQI of `nowcast`
  uint32_t distinct_sensors = 0;
  /// Resampled windows (`resample:`): share of the grid points filled by forward
  /// fill or interpolation, in [0, 1]; NaN when the window is not resampled.
  double interpolated_sample_fraction = NAN;
  /// Exceeding windows of the key in the current period up to this one; -1 when the
  /// definition counts no exceedances.
  int64_t exceedance_count = -1;
  uint64_t late_count = 0;                           ///< late_arrival_count
  std::vector<std::pair<double, double>> quantiles;  ///< extra (q, value) pairs
  Symbol aggregation_method;  ///< e.g. "mean", "nowcast", "trimmed_mean_10_90"
  uint32_t flags = 0;         ///< WindowFlag bits
  uint32_t revision = 0;      ///< 0 for the first emission, then 1, 2, ...
  TimeUs emitted_at = 0;      ///< processing time of emission
  /// Partition-owned state (docs/SCALING.md): the input partition whose readings made
  /// the result (the provenance topic and partition of the window stage of that
  /// partition); empty and -1 otherwise.
  Symbol source_topic;
  int32_t source_partition = -1;
};

/// What happened to an alert (alert/rules.h): it started firing, it is still firing and
/// its re-notify interval passed (or its AQI category changed), or it cleared.
enum class AlertState : uint8_t { kFiring, kRenotify, kResolved };

/// One alert event emitted by the alert operator. An alert's life is identified by
/// (rule, key, fired_at); every event of that life carries the same three.
struct AlertEvent {
  Symbol rule;      ///< rule name from the `alerts.rules` config
  Symbol kind;      ///< rule kind ("reading_threshold", "stale", ...)
  Symbol key;       ///< what the alert is about: device id, window group, zone
  Symbol metric;    ///< empty for rules without a metric (stale on any metric)
  Symbol severity;  ///< "info", "warning" or "critical"
  AlertState state = AlertState::kFiring;
  TimeUs fired_at = 0;        ///< event time at which this alert life started firing
  TimeUs event_time = 0;      ///< event time of the evaluation that produced this event
  double value = NAN;         ///< the value compared (reading, aggregate, rate, gap in s)
  double level = NAN;         ///< the level it was compared with (clear level when resolved)
  std::string message;        ///< one line for people ("pm25 at dev-1 is 41.2 > 35")
  TimeUs source_arrival = 0;  ///< arrival time of the input that triggered it (latency)
  TimeUs emitted_at = 0;      ///< processing time at which the operator emitted it
};

/// "firing", "renotify" or "resolved".
const char* AlertStateName(AlertState s);

/// Spatial structure of one metric's sensors in one closed window, computed by the
/// surface stage (spatial/surface.h) over all sensors (zone "all") and per zone of the
/// first zone layer: Moran's I with its weights and the fitted semivariogram.
struct SpatialStats {
  Symbol surface;  ///< the surfaces[] entry
  Symbol window;
  Symbol metric;
  TimeUs start = 0, end = 0;
  Symbol zone_layer;  ///< empty for the row over all sensors
  Symbol zone;        ///< "all", or the zone id
  uint32_t sensors = 0;
  Symbol weights;  ///< "knn:4" or "band:2000m"
  double morans_i = NAN, morans_expected = NAN, morans_z = NAN;
  Symbol variogram_model;  ///< "spherical"
  double nugget = NAN, sill = NAN, range_m = NAN, nugget_sill = NAN;
  Symbol method;  ///< the surface's interpolation ("idw", "nearest", "kriging")
  uint32_t revision = 0;
  TimeUs emitted_at = 0;
};

/// The unit of work between stages: everything a stage produced for one slice of
/// input. Stages consume what they own and pass the rest through unchanged.
/// Partition-owned state (docs/SCALING.md): what a process holds of one input
/// partition as of a checkpoint.
struct PartitionState {
  std::string key;      ///< "<topic>/<partition>"
  int64_t offset = -1;  ///< next offset to read; -1: none stored (the group's position)
  std::string state;    ///< the stages' state of the partition; empty: none stored
};

/// The watermark of one input partition's window stage (partition-owned state).
struct PartitionWatermark {
  Symbol topic;
  int32_t partition = -1;
  TimeUs watermark = kMinTime;
};

struct Batch {
  std::vector<Reading> readings;  ///< accepted readings (after the window stage)
  std::vector<QuarantineRecord> quarantine;
  std::vector<LateRecord> late;
  std::vector<WindowResult> windows;
  std::vector<AlertEvent> alerts;           ///< appended by the alert operator
  std::vector<SpatialStats> spatial_stats;  ///< appended by the surface stage
  uint64_t duplicates = 0;                  ///< counted at dedup, not forwarded
  TimeUs watermark = kMinTime;              ///< operator watermark after this batch
  uint64_t checkpoint_id = 0;               ///< non-zero: a checkpoint barrier follows
  /// The raw batch this batch was made from (RawBatch::source_index and ::checkpoint);
  /// -1 for batches an operator emitted on its own (idle timers, the final flush).
  int32_t source_index = -1;
  uint64_t source_checkpoint = 0;
  /// On a checkpoint barrier with partition-owned state: the state of every partition
  /// the process holds, for the sink that writes the changelog inside the checkpoint.
  std::shared_ptr<const std::vector<PartitionState>> partition_states;
  /// With partition-owned state: the watermark of every partition the window stage
  /// holds, after this batch (batch.watermark is their minimum). Stages after the
  /// window stage that keep state per partition judge each partition by its own.
  std::vector<PartitionWatermark> partition_watermarks;

  bool empty() const {
    return readings.empty() && quarantine.empty() && late.empty() && windows.empty() &&
           alerts.empty() && spatial_stats.empty() && duplicates == 0 && checkpoint_id == 0;
  }
};

/// One raw message as a source received it; its bytes live in RawBatch::data.
struct RawRecord {
  uint32_t begin = 0;  ///< byte offset into RawBatch::data
  uint32_t size = 0;
  TimeUs arrival_time = 0;
  Symbol topic;  ///< topic or file path
  int32_t partition = -1;
  int64_t offset = -1;  ///< broker offset or 1-based line number
};

/// A batch of raw messages from one source, bytes stored contiguously.
struct RawBatch {
  uint16_t source_index = 0;  ///< index of the source in the pipeline
  std::string data;
  std::vector<RawRecord> records;
  bool end_of_stream = false;  ///< the source has nothing more (bounded input)
  /// Set by the source (0 = none), handed back through Source::OnCommitted once
  /// every sink committed what this batch produced.
  uint64_t checkpoint = 0;
  /// With checkpoints on: where the source stands after this batch, for
  /// Source::RestorePosition (opaque to everyone else).
  std::string position;
  /// Partitions just assigned to this process, with their stored state, to restore
  /// before any record of this batch (partition-owned state, docs/SCALING.md).
  std::vector<PartitionState> restores;

  void Add(std::string_view payload, TimeUs arrival, Symbol topic = {}, int64_t offset = -1,
           int32_t partition = -1) {
    RawRecord r;
    r.begin = static_cast<uint32_t>(data.size());
    r.size = static_cast<uint32_t>(payload.size());
    r.arrival_time = arrival;
    r.topic = topic;
    r.partition = partition;
    r.offset = offset;
    data.append(payload);
    records.push_back(r);
  }
  std::string_view Payload(const RawRecord& r) const {
    return std::string_view(data).substr(r.begin, r.size);
  }
  size_t size() const { return records.size(); }
  bool empty() const { return records.empty(); }
  void Clear() {
    data.clear();
    records.clear();
    end_of_stream = false;
    checkpoint = 0;
    restores.clear();
  }
};

}  // namespace tributary
