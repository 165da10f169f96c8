// Time in tributary: UTC microseconds since the Unix epoch, everywhere.
//
// Sensors report in many shapes (ISO-8601 with or without an offset, epoch seconds,
// milliseconds or microseconds); everything becomes a TimeUs on entry. Durations are
// microseconds too. 64-bit microseconds cover ±292,000 years, so no overflow checks
// are needed for any sensor clock, however wrong.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace tributary {

/// UTC microseconds since 1970-01-01T00:00:00Z.
using TimeUs = int64_t;
/// A span of time in microseconds.
using DurationUs = int64_t;

inline constexpr DurationUs kMicrosPerMilli = 1000;
inline constexpr DurationUs kMicrosPerSecond = 1000 * kMicrosPerMilli;
inline constexpr DurationUs kMicrosPerMinute = 60 * kMicrosPerSecond;
inline constexpr DurationUs kMicrosPerHour = 60 * kMicrosPerMinute;
inline constexpr DurationUs kMicrosPerDay = 24 * kMicrosPerHour;
/// Sentinel for "no time yet" (e.g. a watermark before any event).
inline constexpr TimeUs kMinTime = INT64_MIN / 2;
inline constexpr TimeUs kMaxTime = INT64_MAX / 2;

/// How a bare number is read as a timestamp.
enum class EpochUnit { kAuto, kSeconds, kMillis, kMicros };

/// Read an epoch number; kAuto picks the unit by magnitude (s < 1e11 ≤ ms < 1e14 ≤ µs).
Result<TimeUs> EpochToTime(double value, EpochUnit unit = EpochUnit::kAuto);

/// Parse ISO-8601 / RFC 3339: "2024-05-01T12:00:00Z", "...+02:00", "...-0530", with a
/// fraction of up to 9 digits, 'T' or ' ' between date and time. A timestamp without
/// an offset is taken as UTC. Also accepts a bare epoch number (auto unit).
Result<TimeUs> ParseTime(std::string_view text);

/// Format as "2024-05-01T12:00:00.123456Z" (fraction omitted when zero).
std::string FormatTime(TimeUs t);

/// Parse a duration: "250ms", "30s", "5m", "1h", "2d", "1h30m", or a bare number of
/// seconds. Negative durations are rejected.
Result<DurationUs> ParseDuration(std::string_view text);

/// Format a duration compactly: "1h30m", "250ms", "0s".
std::string FormatDuration(DurationUs d);

/// Days since the epoch for a civil date (proleptic Gregorian).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d);

/// Wall-clock now, UTC.
TimeUs NowUs();

/// Floor division that rounds toward negative infinity (window arithmetic).
constexpr int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

}  // namespace tributary
