// The JSON decoder: one JSON object per raw record, read into a DecodedRecord.
//
// Two shapes are understood (seed 000 shows the wide one, seed 001 the long one):
//   wide — device id, timestamp, position and one numeric field per metric:
//          {"device_id":"aq-0042","sensor_ts":1714564800000,"lat":52.51,"lon":13.39,
//           "pm25":12.3,"no2":18.0,"battery_pct":88,"firmware":"2.1.0",
//           "units":{"pm25":"ug/m3"}}
//   long — one metric per record, named by a field:
//          {"timestamp":"2024-05-01T12:00:00Z","sensor_id":"s1","metric":"pm25",
//           "metric_value":12.3,"unit":"ug_m3","latitude":52.5,"longitude":13.4}
// A record is long when it has a metric-name field, wide otherwise.
//
// Which field plays which role is data (FieldMapping): each role lists accepted paths in
// priority order; nested objects are addressed with dotted paths ("location.lat",
// "payload.pm25"). The decoder only descends into objects some mapped path goes
// through, so unmapped nested content costs a validation pass and nothing else.
// In the wide shape a field is a metric candidate when it sits in a metric container
// (the top level by default), is no role, is not a known metadata key (battery_pct,
// rssi, ...) and does not start with '_': known metric names resolve through the metric
// table, any other numeric field becomes a reading of a metric by that name (checked
// for finiteness only). Non-numeric unknown fields are metadata.
//
// Parsing uses simdjson On Demand with one parser reused across records; each payload
// is copied into a reusable buffer with SIMDJSON_PADDING. On the simulator's wide payload
// (11 fields, bench/ingest_bench.cc) visiting every field costs ~150 ns per record with
// On Demand against ~280 ns with the DOM parser, whose tape construction dominates for
// small documents. (Stage 1 is dispatched at run time to the best SIMD kernel; the On
// Demand stage 2 is inlined and uses the portable kernel unless the build targets a
// newer x86-64 level.)
// Every value is visited (skipped values are still validated), so broken JSON anywhere
// in the payload is reported, and trailing content after the object is an error.
//
// Strings in a DecodedRecord point into the decoder's buffers: they are valid until the
// next Decode call. Not thread-safe: one decoder per ingestion worker and source.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/intern.h"
#include "ingest/metrics.h"
#include "ingest/units.h"
#include "ingest/validate.h"

namespace tributary {

/// A fast hash for short strings (field names, ids, units) in per-stage caches; not
/// for untrusted keys in tables whose growth is unbounded (no seed).
struct ShortStringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ s.size();
    const char* p = s.data();
    size_t n = s.size();
    while (n >= 8) {
      uint64_t w;
      std::memcpy(&w, p, 8);
      h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
      h ^= h >> 29;
      p += 8;
      n -= 8;
    }
    if (n > 0) {
      uint64_t w = 0;
      std::memcpy(&w, p, n);
      h = (h ^ w) * 0x94d049bb133111ebULL;
    }
    return static_cast<size_t>(h ^ (h >> 32));
  }
};

/// What a payload field can stand for (besides a metric).
enum class FieldRole : uint8_t {
  kDeviceId = 0,
  kTimestamp,
  kLat,
  kLon,
  kX,
  kY,
  kCrs,
  kMetricName,   ///< long shape: the metric's name
  kMetricValue,  ///< long shape: its value
  kUnit,         ///< one unit for the record's metrics
  kFirmware,
  kCsvError,  ///< set by the file source on CSV rows it could not split
  kCsvRaw,    ///< the text of such a row
};
inline constexpr size_t kFieldRoleCount = 13;

/// Name a role for messages ("device id").
std::string_view FieldRoleName(FieldRole role);

/// How payload fields map to roles; paths are dotted for nested objects.
struct FieldMapping {
  /// Accepted paths per role, in priority order (the first present wins).
  std::array<std::vector<std::string>, kFieldRoleCount> roles;
  /// Objects of metric name → unit string ("units").
  std::vector<std::string> units_objects;
  /// Objects whose fields are metric candidates; "" is the top level.
  std::vector<std::string> metric_containers;
  /// Explicit path → metric name, e.g. {"payload.SDS_P2", "pm25"}.
  std::vector<std::pair<std::string, std::string>> metric_fields;
  /// Field names (leaf, case-insensitive) that are never metrics.
  std::vector<std::string> metadata;
  /// Units configured for payloads that send none: payload path or metric name → unit
  /// text. A unit in the payload itself takes precedence.
  std::vector<std::pair<std::string, std::string>> fixed_units;

  /// The built-in mapping: common aliases of every role (device_id|sensor_id|id|device,
  /// sensor_ts|timestamp|ts|time, lat|latitude, lon|lng|longitude (also under location.,
  /// position., coordinates., geo., gps.), x|easting, y|northing, crs|epsg|srid,
  /// metric|metric_name|parameter, metric_value|value, unit|units, firmware|fw), metrics
  /// at the top level and in data/payload/readings/measurements/values, and the usual
  /// device metadata keys (battery_pct, rssi, snr, seq, altitude, ...).
  static FieldMapping Defaults();
};

/// JSON value kinds as the decoder reports them.
enum class JsonKind : uint8_t { kAbsent = 0, kNull, kNumber, kString, kBool, kObject, kArray };

/// Name a kind for messages ("string").
std::string_view JsonKindName(JsonKind kind);

/// One decoded value and the field it came from.
struct JsonScalar {
  JsonKind kind = JsonKind::kAbsent;
  bool boolean = false;
  double number = NAN;    ///< kNumber; ±infinity when the literal overflows a double
  std::string_view text;  ///< kString: unescaped contents; kNumber: the literal as sent
  std::string_view path;  ///< field path ("lat", "location.lat")
  uint8_t rank = 0xff;    ///< priority of the alias that set it (lower wins)

  bool present() const { return kind != JsonKind::kAbsent; }
  /// The value as JSON-ish text for messages: 12.5, "abc", null, an object.
  std::string Describe() const;
};

/// A metric candidate of a wide record.
struct MetricField {
  std::string_view path;                   ///< field path as sent ("pm2_5")
  std::string_view leaf;                   ///< last path segment
  const MetricInfo* metric = nullptr;      ///< nullptr: not a canonical metric
  const UnitInfo* implied_unit = nullptr;  ///< unit implied by the alias ("temp_f")
  Symbol name;  ///< canonical name, or the interned unknown name (empty: not interned)
  JsonScalar value;
};

/// A unit given in a units object: metric key → unit text.
struct UnitEntry {
  std::string_view key;
  std::string_view unit;
};

/// Everything the decoder read from one payload.
struct DecodedRecord {
  std::array<JsonScalar, kFieldRoleCount> roles;
  std::vector<MetricField> metrics;
  std::vector<UnitEntry> units;
  size_t field_count = 0;
  /// The format has no event time of its own: without a timestamp the arrival time is
  /// the event time (sensor.community pushes).
  bool time_from_arrival = false;

  const JsonScalar& role(FieldRole r) const { return roles[static_cast<size_t>(r)]; }
  bool long_shape() const { return role(FieldRole::kMetricName).present(); }
  void Clear();
};

/// Result of decoding one payload: ok, or why the whole payload is quarantined.
struct DecodeStatus {
  bool ok = true;
  QuarantineReason reason = QuarantineReason::kMalformedJson;
  std::string detail;
};

class JsonDecoder {
 public:
  explicit JsonDecoder(FieldMapping mapping = FieldMapping::Defaults());
  ~JsonDecoder();
  JsonDecoder(const JsonDecoder&) = delete;
  JsonDecoder& operator=(const JsonDecoder&) = delete;

  /// Decode `payload` into `out` (cleared first).
  DecodeStatus Decode(std::string_view payload, DecodedRecord& out);

  /// Look a unit spelling up through a small per-decoder cache.
  const UnitInfo* FindUnitCached(std::string_view spelling);
  /// Resolve a metric name (long shape) through the same rules as a wide field name.
  void ResolveMetricName(std::string_view name, MetricField& out);

  const FieldMapping& mapping() const { return mapping_; }

 private:
  enum class KeyKind : uint8_t { kIgnore, kRole, kMetric };
  // What one field path means; computed once per distinct path and cached.
  struct KeyInfo {
    KeyKind kind = KeyKind::kIgnore;
    FieldRole role = FieldRole::kDeviceId;
    uint8_t rank = 0xff;
    bool descend = false;       // an object some mapped path goes through
    bool units_object = false;  // an object of metric → unit
    const MetricInfo* metric = nullptr;
    const UnitInfo* implied_unit = nullptr;
    Symbol name;              // canonical or interned unknown name
    bool name_tried = false;  // interning of an unknown name was attempted
    // The field that followed this one last time: payloads of one device type repeat
    // their key order, so one string compare usually replaces a hash lookup.
    std::pair<const std::string, KeyInfo>* next = nullptr;
  };
  using StringHash = ShortStringHash;
  using KeyMap = std::unordered_map<std::string, KeyInfo, StringHash, std::equal_to<>>;
  using KeyEntry = KeyMap::value_type;

  KeyInfo Classify(std::string_view prefix, std::string_view key, std::string_view path) const;
  // The cache entry of `path`, or nullptr with `scratch` filled in when the cache is full.
  KeyEntry* Resolve(std::string_view prefix, std::string_view key, std::string_view path,
                    KeyInfo& scratch);
  void NameUnknownMetric(std::string_view leaf, KeyInfo& info);

  struct Walker;  // the simdjson traversal (json_decoder.cc)
  struct Parser;  // the simdjson parser, kept out of this header
  friend struct Walker;

  FieldMapping mapping_;
  std::unique_ptr<Parser> parser_;
  std::unique_ptr<char[]> buffer_;  // payload copy + SIMDJSON_PADDING
  size_t buffer_capacity_ = 0;
  std::unique_ptr<char[]> path_arena_;  // joined nested paths of the current record
  size_t path_used_ = 0;

  std::unordered_map<std::string, std::pair<FieldRole, uint8_t>, StringHash, std::equal_to<>>
      role_paths_;
  std::unordered_map<std::string, std::string, StringHash, std::equal_to<>> explicit_metrics_;
  // Objects to descend into; the value tells whether it is a units object.
  std::unordered_map<std::string, bool, StringHash, std::equal_to<>> object_paths_;
  std::unordered_map<std::string, bool, StringHash, std::equal_to<>> containers_;
  std::unordered_map<std::string, bool, StringHash, std::equal_to<>> metadata_;
  KeyMap keys_;
  KeyEntry* first_key_ = nullptr;  // first top-level field of the last record
  KeyMap long_names_;              // long-shape metric names
  size_t unknown_names_ = 0;
  std::unordered_map<std::string, const UnitInfo*, StringHash, std::equal_to<>> unit_cache_;
};

/// Parse a number from text (CSV cells, numeric strings): surrounding whitespace and a
/// leading '+' allowed; "nan"/"inf" give non-finite values. False when not a number.
bool ParseNumber(std::string_view text, double& out);

}  // namespace tributary
