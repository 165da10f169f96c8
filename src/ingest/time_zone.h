// IANA time zones for naive local timestamps, read from the system's TZif files.
//
// Some devices send wall-clock time without an offset ("2024-03-31 02:30:00"); a
// source's `time_zone` option says where that wall clock hangs. libstdc++ 12 has no
// std::chrono::tzdb, and the POSIX route (setenv("TZ") + mktime) changes process-wide
// state that other threads read without a lock, so zones are read here from
// /usr/share/zoneinfo (or $TZDIR): a TZif file (RFC 8536) gives the UTC offset after
// every transition, and its footer (a POSIX TZ rule such as "CET-1CEST,M3.5.0,M10.5.0/3")
// the offsets after the last one. Files are loaded once per name and shared read-only.
//
// Local → UTC uses one rule for both irregular cases: the offset in effect BEFORE the
// transition applies. For an ambiguous wall time (a fall-back hour that happens twice,
// Europe/Berlin 2024-10-27 02:30) that is the first occurrence (02:30 CEST = 00:30Z);
// for a wall time that does not exist (a spring-forward gap, Europe/Berlin 2024-03-31
// 02:30) the time moves forward by the gap (02:30 CET = 01:30Z = 03:30 CEST). This is
// what Python's fold=0 and java.time's ZonedDateTime.of do.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/time.h"

namespace tributary {

class TimeZone {
 public:
  /// Load an IANA zone ("Europe/Berlin", "UTC"); cached process-wide, thread-safe.
  static Result<std::shared_ptr<const TimeZone>> Load(std::string_view name);
  /// Parse TZif bytes; `name` is used in messages.
  static Result<std::shared_ptr<const TimeZone>> FromTzif(std::string_view name,
                                                          std::string_view bytes);

  /// The UTC offset in seconds (local = UTC + offset) at a UTC instant in seconds.
  int32_t OffsetAt(int64_t utc_seconds) const;
  /// The UTC instant of a wall-clock time given as µs since 1970-01-01 local time.
  TimeUs LocalToUtc(TimeUs local) const;

  const std::string& name() const { return name_; }

 private:
  // The POSIX TZ footer rule "STDoff[DST[off][,start[/time],end[/time]]]" with Mm.w.d dates.
  struct DateRule {
    int month = 0;        // 1..12
    int week = 0;         // 1..5 (5 = last)
    int weekday = 0;      // 0 = Sunday
    int32_t time = 7200;  // seconds after local midnight
  };
  struct PosixRule {
    bool valid = false;
    bool has_dst = false;
    int32_t std_offset = 0;  // seconds east of UTC
    int32_t dst_offset = 0;
    DateRule start;
    DateRule end;
  };
  static bool ParsePosixRule(std::string_view text, PosixRule& rule);
  static int64_t RuleInstant(const DateRule& rule, int64_t year, int32_t offset);
  int32_t RuleOffsetAt(int64_t utc_seconds) const;

  std::string name_;
  std::vector<int64_t> transitions_;  // UTC seconds, ascending
  std::vector<int32_t> offsets_;      // offset in effect from transitions_[i]
  int32_t initial_offset_ = 0;        // before the first transition
  PosixRule rule_;                    // after the last transition
};

/// True when an ISO-8601 timestamp text carries a UTC offset ('Z', "+02:00", "-0530").
bool HasUtcOffset(std::string_view timestamp);

}  // namespace tributary
