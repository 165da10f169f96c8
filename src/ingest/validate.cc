#include "ingest/validate.h"

#include <fmt/format.h>

#include <array>
#include <cmath>

namespace tributary {

std::string_view QuarantineReasonName(QuarantineReason reason) {
  switch (reason) {
    case QuarantineReason::kMalformedJson:
      return "malformed_json";
    case QuarantineReason::kMalformedCsv:
      return "malformed_csv";
    case QuarantineReason::kPayloadTooLarge:
      return "payload_too_large";
    case QuarantineReason::kTooManyFields:
      return "too_many_fields";
    case QuarantineReason::kMissingField:
      return "missing_field";
    case QuarantineReason::kInvalidDeviceId:
      return "invalid_device_id";
    case QuarantineReason::kBadTimestamp:
      return "bad_timestamp";
    case QuarantineReason::kFutureTimestamp:
      return "future_timestamp";
    case QuarantineReason::kNanCoordinate:
      return "nan_coordinate";
    case QuarantineReason::kCoordinateOutOfRange:
      return "coordinate_out_of_range";
    case QuarantineReason::kUnknownCrs:
      return "unknown_crs";
    case QuarantineReason::kCrsTransformFailed:
      return "crs_transform_failed";
    case QuarantineReason::kNoReadings:
      return "no_readings";
    case QuarantineReason::kUnknownUnit:
      return "unknown_unit";
    case QuarantineReason::kUnknownMetric:
      return "unknown_metric";
    case QuarantineReason::kNonNumericValue:
      return "non_numeric_value";
    case QuarantineReason::kNonFiniteValue:
      return "non_finite_value";
    case QuarantineReason::kOutOfBounds:
      return "out_of_bounds";
    case QuarantineReason::kUnknownDevice:
      return "unknown_device";
  }
  return "unknown";
}

Symbol QuarantineReasonSymbol(QuarantineReason reason) {
  static const std::array<Symbol, kQuarantineReasonCount> symbols = [] {
    std::array<Symbol, kQuarantineReasonCount> s{};
    for (size_t i = 0; i < kQuarantineReasonCount; ++i) {
      s[i] = Intern(QuarantineReasonName(static_cast<QuarantineReason>(i)));
    }
    return s;
  }();
  return symbols[static_cast<size_t>(reason)];
}

Verdict CheckPosition(double lat, double lon, std::string_view lat_name,
                      std::string_view lon_name) {
  if (!std::isfinite(lat)) {
    return Verdict::Fail(QuarantineReason::kNanCoordinate,
                         fmt::format("{} = {} is not a finite number", lat_name, lat));
  }
  if (!std::isfinite(lon)) {
    return Verdict::Fail(QuarantineReason::kNanCoordinate,
                         fmt::format("{} = {} is not a finite number", lon_name, lon));
  }
  if (lat < -90.0 || lat > 90.0) {
    return Verdict::Fail(QuarantineReason::kCoordinateOutOfRange,
                         fmt::format("{} = {} is outside [-90, 90]", lat_name, lat));
  }
  if (lon < -180.0 || lon > 180.0) {
    return Verdict::Fail(QuarantineReason::kCoordinateOutOfRange,
                         fmt::format("{} = {} is outside [-180, 180]", lon_name, lon));
  }
  return Verdict::Pass();
}

Verdict CheckEventTime(TimeUs event_time, TimeUs arrival_time, DurationUs max_future) {
  if (event_time - arrival_time > max_future) {
    return Verdict::Fail(
        QuarantineReason::kFutureTimestamp,
        fmt::format("event time {} is {} ahead of arrival {} (max_future {})",
                    FormatTime(event_time), FormatDuration(event_time - arrival_time),
                    FormatTime(arrival_time), FormatDuration(max_future)));
  }
  return Verdict::Pass();
}

bool IsWgs84(std::string_view crs) {
  while (!crs.empty() && crs.front() == ' ') crs.remove_prefix(1);
  while (!crs.empty() && crs.back() == ' ') crs.remove_suffix(1);
  if (crs.empty()) return true;
  char buf[40];
  if (crs.size() >= sizeof(buf)) return false;
  size_t n = 0;
  for (char ch : crs) {
    auto c = static_cast<unsigned char>(ch);
    if (c == ' ' || c == '-' || c == '_') continue;
    buf[n++] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : static_cast<char>(c);
  }
  std::string_view s(buf, n);
  return s == "epsg:4326" || s == "4326" || s == "wgs84" || s == "epsg::4326" ||
         s == "urn:ogc:def:crs:epsg::4326" || s == "urn:ogc:def:crs:ogc:1.3:crs84" ||
         s == "crs84" || s == "ogc:crs84";
}

Verdict CheckBounds(const MetricInfo& metric, double canonical_value, double raw_value,
                    std::string_view field, std::string_view unit_text) {
  if (canonical_value >= metric.min && canonical_value <= metric.max) return Verdict::Pass();
  std::string as_sent = unit_text.empty() ? fmt::format("{} = {}", field, raw_value)
                                          : fmt::format("{} = {} {} ({} {})", field, raw_value,
                                                        unit_text, canonical_value, metric.unit);
  return Verdict::Fail(QuarantineReason::kOutOfBounds,
                       fmt::format("{} is outside the physical bounds of {} [{}, {}] {}", as_sent,
                                   metric.name, metric.min, metric.max, metric.unit));
}

}  // namespace tributary
