// The built-in simulator: a deterministic synthetic sensor network.
//
// A city-sized network of fixed devices (air-quality nodes, weather stations, river
// gauges, soil arrays) reports every `interval` of simulated time with jitter. Values
// follow a shared environment: seasonal and diurnal cycles (temperature peaks mid-
// afternoon, PM and NO2 peak at the rush hours, less at weekends), smooth spatial
// fields plus per-device bias and sensor noise, synoptic pressure and wind, rain events
// that wet the soil and raise the rivers, and moving pollution plumes (Gaussian blobs
// drifting with the wind). Devices misbehave the way real ones do: some clocks drift by
// 5-30 s a day and a couple run minutes ahead; devices go quiet for minutes and then
// send everything they buffered at once with the original event times (late data);
// messages are re-sent (duplicates); one vendor reports PM2.5 in mg/m³; some devices
// send projected UTM coordinates; and a share of payloads is malformed.
//
// Determinism: the byte stream is a pure function of the options. With a fixed `start`
// (not `now`) two runs produce identical payloads, arrival times and order, whatever
// the speed or the polling pattern. All randomness comes from a seeded xoshiro256**
// generator per device; nothing reads the wall clock except `start: now`.
//
// Time bases: every time here is *simulated* UTC µs. Each device samples at its own
// true (simulated) time; `sensor_ts` in the payload is that time read from the device's
// possibly wrong clock; the arrival time is when the message reaches tributary in
// simulated time: sample time + 0.08–1.5 s of network latency, or, for readings
// buffered during an outage, the device's first sample after the outage (within one
// interval of its end), the burst 2 ms apart. Messages come out of Simulator::Next in
// arrival order (ties broken by creation order).
//
// ---------------------------------------------------------------------------------
// Payload schema (stable; the JSON decoder relies on it)
//
// One JSON object per message, no whitespace, keys in this order:
//
//   {"device_id":"aq-0042","sensor_ts":1714564800000,"lat":52.510123,"lon":13.391234,
//    "pm25":12.3,"pm10":20.1,"no2":18.0,"temperature":14.21,"humidity":61.0,
//    "battery_pct":88,"firmware":"aq-2.1.0"}
//
//   device_id    string. "<prefix>-<n>", n zero-padded to at least 4 digits, 1-based per
//                type: "aq-" air_quality, "ws-" weather, "rg-" river, "sm-" soil.
//   sensor_ts    integer, epoch milliseconds UTC from the device clock (may be drifted
//                or ahead of the true time).
//   lat, lon     numbers, WGS84 degrees, 6 decimals. For "projected" devices both are
//                absent and replaced by
//   x, y, crs    x = UTM easting (m), y = UTM northing (m), 2 decimals, and
//                crs = "EPSG:326zz" (UTM zone zz north; "EPSG:327zz" south) where zz is
//                the UTM zone of `center_lon` (EPSG:32633 for Berlin). Computed with the
//                Krüger transverse-Mercator series on WGS84 (sub-millimetre), so a PROJ
//                transform to EPSG:4326 recovers the device position.
//   <metric>     number, one key per metric the device type measures, in this order:
//                  air_quality: pm25, pm10, no2, temperature, humidity
//                  weather:     temperature, humidity, pressure, wind_speed
//                  river:       stage, flow
//                  soil:        soil_moisture, temperature
//                Canonical units unless `units` says otherwise: pm25/pm10 µg/m³, no2 ppb,
//                temperature °C, humidity % RH, pressure hPa, wind_speed m/s,
//                soil_moisture % volumetric water content, stage m, flow m³/s.
//   battery_pct  integer 0..100, metadata (not a metric); absent for weather stations.
//   firmware     string, metadata (kept in provenance).
//   units        optional object metric → unit string, last key when present. Sent by:
//                  weather stations: {"temperature":"degC","pressure":"hPa",
//                                     "wind_speed":"m/s"}
//                  river gauges:     {"stage":"m","flow":"m3/s"}
//                  mg/m³ vendor:     {"pm25":"mg/m3"} and pm25 = µg/m³ value / 1000
//                                    (4 decimals); firmware "pm-vx-1.4.2"
//                  unknown_unit fault: the first metric's unit is "furlongs".
//                A metric absent from `units` is in its canonical unit.
//
// Every key not listed above is a metric; the simulator emits only the canonical metric
// names. Malformed payloads (see MalformedKind) break this schema on purpose.
// ---------------------------------------------------------------------------------
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/intern.h"
#include "core/time.h"
#include "io/connector.h"

namespace tributary {

class Registry;

/// Kinds of simulated devices.
enum class DeviceType : uint8_t { kAirQuality = 0, kWeather, kRiver, kSoil };
inline constexpr size_t kDeviceTypeCount = 4;

/// Name a device type as used in topics: "air_quality", "weather", "river", "soil".
std::string_view DeviceTypeName(DeviceType type);
/// The device id prefix: "aq", "ws", "rg", "sm".
std::string_view DeviceTypePrefix(DeviceType type);
/// The canonical metrics a device type reports, in payload order.
const std::vector<std::string_view>& DeviceTypeMetrics(DeviceType type);

/// Ways a payload is broken on purpose (`malformed_rate`).
enum class MalformedKind : uint8_t {
  kTruncatedJson = 0,  ///< a valid payload cut short: not JSON
  kInvalidJson,        ///< the ':' after "sensor_ts" is missing: not JSON
  kNanCoordinate,      ///< `"lat":NaN` (or `"x":NaN`) as Python's json.dumps writes it: not JSON
  kLatOutOfRange,      ///< valid JSON with `"lat":123.4` (lat/lon devices only)
  kUnknownUnit,        ///< valid JSON; the first metric's unit is "furlongs"
};
inline constexpr size_t kMalformedKindCount = 5;

/// Name a malformed kind: "truncated_json", "invalid_json", "nan_coordinate",
/// "lat_out_of_range", "unknown_unit".
std::string_view MalformedKindName(MalformedKind kind);

/// How a message came to be emitted.
enum class SimMessageKind : uint8_t {
  kLive,       ///< sent right after sampling (network latency only)
  kBurst,      ///< buffered during an outage, sent at its end with the original event time
  kDuplicate,  ///< an exact re-send of an earlier live message, a little later
  kMalformed,  ///< a live message broken on purpose
};

/// Everything that configures the simulator; the defaults need no config file.
struct SimulatorOptions {
  uint64_t seed = 42;
  int64_t devices = 200;
  double center_lat = 52.52;  ///< WGS84 degrees
  double center_lon = 13.40;
  double extent_km = 20.0;  ///< side of the square area
  /// Relative shares of device types (normalised by their sum).
  std::array<double, kDeviceTypeCount> type_share = {0.5, 0.15, 0.10, 0.25};
  DurationUs interval = 60 * kMicrosPerSecond;
  /// Per-type reporting interval; 0 uses `interval`.
  std::array<DurationUs, kDeviceTypeCount> type_interval = {0, 0, 0, 0};
  DurationUs jitter = 2 * kMicrosPerSecond;  ///< sample time = nominal ± uniform(jitter)
  /// Simulated start, UTC µs (2024-05-01T00:00:00Z; the config default is `now`).
  TimeUs start = 1714521600LL * kMicrosPerSecond;
  double speed = 1.0;                ///< simulated seconds per wall second
  bool as_fast_as_possible = false;  ///< no waiting at all (also speed 0)
  double rate = 0.0;                 ///< messages per wall second; 0 follows the clock
  DurationUs duration = 0;           ///< simulated time to run; 0 = unbounded
  double malformed_rate = 0.01;      ///< share of live messages broken on purpose
  double duplicate_rate = 0.005;     ///< share of live messages sent twice
  double outages_per_day = 0.5;      ///< expected outages per device per day
  DurationUs outage_min = 5 * kMicrosPerMinute;
  DurationUs outage_max = 40 * kMicrosPerMinute;
  double drifting_clock_share = 0.03;  ///< share of devices whose clock drifts
  // 30 s a day at most, the worst the field reports for crystal clocks without NTP.
  DurationUs max_drift_per_hour = 1250 * kMicrosPerMilli;
  int64_t clock_ahead_devices = 2;  ///< devices whose clock is minutes ahead
  double mg_m3_share = 0.10;        ///< share of air-quality nodes sending mg/m³
  double projected_share = 0.05;    ///< share of devices sending UTM x/y
  bool plumes = true;               ///< moving pollution plumes

  /// True when the source should never wait (as_fast_as_possible or speed 0).
  bool NoWaiting() const { return as_fast_as_possible || speed <= 0.0; }
  /// The interval of one device type (its own or the common one).
  DurationUs IntervalOf(DeviceType t) const {
    DurationUs v = type_interval[static_cast<size_t>(t)];
    return v > 0 ? v : interval;
  }
};

/// The option table of `sources[] (type: simulator)`.
const SectionSpec& SimulatorSectionSpec();

/// Read and validate simulator options; errors name the key. `start: now` reads the
/// wall clock, floored to the minute.
Result<SimulatorOptions> ParseSimulatorOptions(const OptionReader& reader);

/// Check ranges and cross-field rules (e.g. jitter below half the interval).
Status ValidateSimulatorOptions(const SimulatorOptions& options);

/// A fixed simulated device, as laid out from the seed.
struct SimDevice {
  DeviceType type = DeviceType::kAirQuality;
  uint32_t type_index = 0;      ///< 1-based number within its type (the id suffix)
  std::string id;               ///< "aq-0042"
  double lat = 0, lon = 0;      ///< true WGS84 position
  double x_km = 0, y_km = 0;    ///< offset from the centre (east, north), km
  double utm_x = 0, utm_y = 0;  ///< UTM easting/northing of the position, m
  bool projected = false;       ///< sends x/y/crs instead of lat/lon
  bool mg_m3 = false;           ///< sends pm25 in mg/m³
  double drift_per_hour_s = 0;  ///< clock drift, seconds gained per simulated hour
  DurationUs clock_ahead = 0;   ///< constant clock offset (minutes ahead)
  DurationUs interval = 0;
  std::string firmware;

  /// Clock offset (device clock − true time) at simulated time `t`.
  DurationUs ClockOffset(TimeUs t, TimeUs start) const;
};

/// Ground truth of what the simulator emitted (only messages actually returned by
/// Next count). Well-formed = live + burst + duplicate.
struct SimulatorStats {
  uint64_t messages = 0;            ///< every payload returned by Next
  uint64_t live_messages = 0;       ///< well-formed, sent on time
  uint64_t burst_messages = 0;      ///< well-formed, buffered in an outage, sent in a burst
  uint64_t duplicate_messages = 0;  ///< exact re-sends of an earlier live message
  uint64_t malformed_messages = 0;  ///< sum of malformed_by_kind
  std::array<uint64_t, kMalformedKindCount> malformed_by_kind{};
  /// Metric fields the malformed messages of each kind carried before breaking.
  std::array<uint64_t, kMalformedKindCount> malformed_metric_values{};
  uint64_t metric_values = 0;            ///< metric fields in well-formed messages
  uint64_t mg_m3_messages = 0;           ///< well-formed messages with pm25 in mg/m³
  uint64_t projected_messages = 0;       ///< well-formed messages with x/y/crs
  uint64_t clock_ahead_messages = 0;     ///< well-formed messages from clock-ahead devices
  uint64_t drifting_clock_messages = 0;  ///< well-formed messages from drifting devices
  uint64_t outages = 0;                  ///< outages that ended with a burst
  std::array<uint64_t, kDeviceTypeCount> messages_by_type{};  ///< all kinds
  DurationUs max_burst_delay = 0;  ///< largest (arrival − true sample time) of a burst message
};

/// One emitted message.
struct SimMessage {
  std::string payload;
  TimeUs arrival_time = 0;  ///< simulated arrival, UTC µs
  TimeUs sample_time = 0;   ///< true (simulated) time of the sample, UTC µs
  TimeUs sensor_time = 0;   ///< sensor_ts as written (device clock), UTC µs
  uint32_t device = 0;      ///< index into Simulator::devices()
  uint64_t sequence = 0;    ///< 0-based position in the output stream
  SimMessageKind kind = SimMessageKind::kLive;
  MalformedKind malformed = MalformedKind::kTruncatedJson;  ///< when kind is kMalformed
};

/// xoshiro256** seeded through splitmix64: fast and identical on every platform.
class SimRng {
 public:
  explicit SimRng(uint64_t seed = 0);
  uint64_t NextU64();
  /// Uniform in [0, 1).
  double Uniform() { return static_cast<double>(NextU64() >> 11) * 0x1.0p-53; }
  /// Uniform in [lo, hi).
  double Uniform(double lo, double hi) { return lo + (hi - lo) * Uniform(); }
  /// Standard normal (Box–Muller).
  double Normal();
  /// True with probability p.
  bool Chance(double p) { return Uniform() < p; }

 private:
  uint64_t s_[4];
};

/// Generate the message stream. Not thread-safe; one instance per thread.
class Simulator {
 public:
  explicit Simulator(SimulatorOptions options);
  ~Simulator();
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  /// Produce the next message in arrival order; false when `duration` is exhausted.
  bool Next(SimMessage& out);
  /// Arrival time of the message Next would return, or kMaxTime when finished.
  TimeUs PeekArrival();
  /// End of simulated time (start + duration), or kMaxTime when unbounded.
  TimeUs end_time() const { return end_time_; }

  const SimulatorOptions& options() const { return options_; }
  const std::vector<SimDevice>& devices() const { return devices_; }
  const SimulatorStats& stats() const { return stats_; }
  /// The CRS projected devices report ("EPSG:32633").
  const std::string& projected_crs() const { return crs_; }

 private:
  /// A message waiting for its arrival time.
  struct Pending {
    TimeUs arrival = 0;
    uint64_t order = 0;  // creation order: breaks ties deterministically
    TimeUs sample_time = 0;
    TimeUs sensor_time = 0;
    uint32_t device = 0;
    SimMessageKind kind = SimMessageKind::kLive;
    MalformedKind malformed = MalformedKind::kTruncatedJson;
    bool first_of_burst = false;
    std::string payload;
  };
  /// Heap order: the earliest arrival on top.
  struct PendingLater {
    bool operator()(const Pending& a, const Pending& b) const;
  };
  struct DeviceState {
    SimRng rng;
    TimeUs next_nominal = 0;      // next slot before jitter
    TimeUs next_sample = 0;       // next true sample time
    TimeUs outage_end = 0;        // > sample time while the device is quiet
    double bias = 0;              // per-device sensor bias (type-specific units)
    double exposure = 1;          // wind exposure / site factor
    double base = 0;              // site baseline (soil moisture %, river stage m)
    double battery = 100;         // %
    double battery_drain = 0;     // % per day
    std::vector<Pending> buffer;  // readings held during an outage
  };
  class Environment;

  void Layout();
  // Sample device `d` at its next sample time and queue what it sends.
  void Step(uint32_t d);
  // Make sure the next message (if any) sits at the top of pending_.
  void Advance();
  void Push(Pending p);
  std::string Format(uint32_t d, TimeUs sample_time, TimeUs sensor_time, bool unknown_unit);
  void Corrupt(uint32_t d, std::string& payload, MalformedKind kind);

  SimulatorOptions options_;
  TimeUs end_time_ = kMaxTime;
  std::string crs_;
  int utm_zone_ = 33;
  bool utm_south_ = false;
  std::vector<SimDevice> devices_;
  std::vector<DeviceState> state_;
  std::unique_ptr<Environment> env_;
  // Devices by next sample time (min-heap of (time, index)).
  std::priority_queue<std::pair<TimeUs, uint32_t>, std::vector<std::pair<TimeUs, uint32_t>>,
                      std::greater<>>
      schedule_;
  std::vector<Pending> pending_;  // min-heap by (arrival, order)
  uint64_t created_ = 0;
  uint64_t emitted_ = 0;
  SimulatorStats stats_;
};

/// Project WGS84 degrees to UTM (zone 1..60, north or south) with the Krüger series.
void LatLonToUtm(double lat, double lon, int zone, bool south, double& easting, double& northing);

/// The `simulator` source: a Simulator driven by a simulated clock.
///
/// The simulated clock runs at `speed` × the wall clock from `start` (set at Open);
/// records are handed on once the clock passes their arrival time. With `rate` > 0 the
/// source emits that many messages per wall second regardless of simulated time; with
/// `as_fast_as_possible` (or speed 0) it never waits. RawRecord: arrival_time = the
/// simulated arrival, topic = "sim/<device_type>/<device_id>", partition = 0, offset =
/// the 0-based message sequence number. Ends the stream after `duration`.
class SimulatorSource : public Source {
 public:
  explicit SimulatorSource(SimulatorOptions options);
  Status Open(RunContext& ctx) override;
  Status Poll(RawBatch& out, size_t max_records, DurationUs wait) override;
  void Stop() override { stop_.store(true, std::memory_order_relaxed); }
  /// Stop producing (true) until released; the simulated clock stands still meanwhile.
  void SetPaused(bool paused) override { paused_.store(paused, std::memory_order_relaxed); }
  bool SupportsCheckpoints() const override { return true; }
  bool ClockIsSimulated() const override { return sim_.options().NoWaiting(); }
  /// Regenerate and skip the messages handed on before the checkpoint (the stream is a
  /// pure function of the options); fails for a `start: now` simulation.
  Status RestorePosition(std::string_view position) override;

  /// A copy of the ground-truth counters (safe from any thread).
  SimulatorStats Stats() const;
  /// The devices as laid out (immutable after construction).
  const std::vector<SimDevice>& devices() const { return sim_.devices(); }

 private:
  Symbol TopicOf(uint32_t device);

  Simulator sim_;
  mutable std::mutex mu_;  // guards sim_ counters against Stats() from other threads
  std::atomic<bool> stop_{false};
  std::atomic<bool> paused_{false};
  TimeUs paused_since_ = 0;  // source thread: when the current pause began (0: none)
  const RunContext* ctx_ = nullptr;
  TimeUs wall_open_ = 0;
  uint64_t emitted_ = 0;
  std::vector<Symbol> topics_;
  SimMessage msg_;
};

/// Register the `simulator` source type.
void RegisterSimulatorSource(Registry& registry);

}  // namespace tributary
