// Quarantine reason codes and the validation rules of ingestion.
//
// A reason code is a stable lower-case word: sinks store it, the ledger counts by it,
// and users filter on it. Record-level rules (device id, timestamp, position) reject a
// whole payload as one record; value-level rules (unit, finiteness, bounds) reject one
// reading of a payload and let the others through.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/intern.h"
#include "core/time.h"
#include "ingest/metrics.h"

namespace tributary {

/// Why a record was quarantined.
enum class QuarantineReason : uint8_t {
  kMalformedJson = 0,     ///< not JSON, not valid UTF-8, or not a JSON object
  kMalformedCsv,          ///< a CSV row the file source could not split (`_csv_error`)
  kPayloadTooLarge,       ///< bigger than kMaxPayloadBytes
  kTooManyFields,         ///< more than kMaxFieldsPerRecord fields
  kMissingField,          ///< no device id, timestamp, position or metric value
  kInvalidDeviceId,       ///< device id not a string or integer, or too long
  kBadTimestamp,          ///< timestamp present but unparseable
  kFutureTimestamp,       ///< event time ahead of arrival by more than max_future
  kNanCoordinate,         ///< a coordinate that is NaN, infinite or not a number
  kCoordinateOutOfRange,  ///< |lat| > 90 or |lon| > 180
  kUnknownCrs,            ///< a CRS that is not a known EPSG code
  kCrsTransformFailed,    ///< reprojection to WGS84 failed or gave no valid position
  kNoReadings,            ///< a valid payload that carries no metric value at all
  kUnknownUnit,           ///< a unit that is unknown or not a unit of the metric
  kUnknownMetric,         ///< too many distinct unknown metric names, or a name too long
  kNonNumericValue,       ///< a metric value that is not a number
  kNonFiniteValue,        ///< NaN, infinity, or a number too large for a double
  kOutOfBounds,           ///< outside the metric's physical bounds
  kUnknownDevice,         ///< not in the device registry (unknown_devices: quarantine)
};
inline constexpr size_t kQuarantineReasonCount = 19;

/// The stable code of a reason ("malformed_json").
std::string_view QuarantineReasonName(QuarantineReason reason);
/// The interned code of a reason.
Symbol QuarantineReasonSymbol(QuarantineReason reason);

/// Payloads above this size are quarantined unread (payload_too_large).
inline constexpr size_t kMaxPayloadBytes = 1 << 20;
/// Quarantine records keep at most this much of an oversized payload.
inline constexpr size_t kMaxQuarantinedRawBytes = 64 << 10;
/// Payloads with more fields (counted through nested mapped objects) are quarantined.
inline constexpr size_t kMaxFieldsPerRecord = 1024;
/// Device ids longer than this are rejected (invalid_device_id).
inline constexpr size_t kMaxDeviceIdBytes = 128;

/// The outcome of a check: ok, or a reason and a detail naming the field and value.
struct Verdict {
  bool ok = true;
  QuarantineReason reason = QuarantineReason::kMalformedJson;
  std::string detail;

  static Verdict Pass() { return {}; }
  static Verdict Fail(QuarantineReason r, std::string d) { return {false, r, std::move(d)}; }
};

/// Check a WGS84 position. `lat_name`/`lon_name` are the payload's field names.
Verdict CheckPosition(double lat, double lon, std::string_view lat_name, std::string_view lon_name);

/// Check an event time against its arrival: future_timestamp when it is ahead by more
/// than `max_future`.
Verdict CheckEventTime(TimeUs event_time, TimeUs arrival_time, DurationUs max_future);

/// True when |arrival − event| exceeds `drift_threshold` (flag TIMESTAMP_DRIFT).
inline bool HasTimestampDrift(TimeUs event_time, TimeUs arrival_time, DurationUs drift_threshold) {
  DurationUs d = arrival_time - event_time;
  return (d < 0 ? -d : d) > drift_threshold;
}

/// True when `crs` names WGS84 geographic coordinates ("EPSG:4326", "WGS84", "4326",
/// "urn:ogc:def:crs:OGC:1.3:CRS84", case-insensitive; empty counts as WGS84).
bool IsWgs84(std::string_view crs);

/// Check a value already in the metric's canonical unit against its physical bounds.
/// `field` is the payload's field name; `unit_text` the unit as sent ("" when none).
Verdict CheckBounds(const MetricInfo& metric, double canonical_value, double raw_value,
                    std::string_view field, std::string_view unit_text);

}  // namespace tributary
