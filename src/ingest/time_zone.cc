#include "ingest/time_zone.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>

namespace tributary {

namespace {

/// TZif files are a few kB; anything much larger is not one.
constexpr size_t kMaxTzifBytes = 1 << 20;

uint32_t Be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

int64_t Be64(const unsigned char* p) {
  return static_cast<int64_t>((uint64_t{Be32(p)} << 32) | Be32(p + 4));
}

bool ValidZoneName(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '/' ||
      name.find("..") != std::string_view::npos) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '/' ||
           c == '_' || c == '-' || c == '+';
  });
}

// Reads "[+-]hh[:mm[:ss]]" as seconds.
bool ParseHms(std::string_view& s, int32_t& out) {
  int sign = 1;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    if (s.front() == '-') sign = -1;
    s.remove_prefix(1);
  }
  int32_t parts[3] = {0, 0, 0};
  for (int i = 0; i < 3; ++i) {
    if (i > 0) {
      if (s.empty() || s.front() != ':') break;
      s.remove_prefix(1);
    }
    int digits = 0;
    int32_t v = 0;
    while (!s.empty() && s.front() >= '0' && s.front() <= '9' && digits < 3) {
      v = v * 10 + (s.front() - '0');
      s.remove_prefix(1);
      ++digits;
    }
    if (digits == 0) return false;
    parts[i] = v;
  }
  out = sign * (parts[0] * 3600 + parts[1] * 60 + parts[2]);
  return true;
}

// Skips a zone abbreviation: letters, or "<...>".
bool SkipAbbreviation(std::string_view& s) {
  if (!s.empty() && s.front() == '<') {
    size_t end = s.find('>');
    if (end == std::string_view::npos) return false;
    s.remove_prefix(end + 1);
    return true;
  }
  size_t n = 0;
  while (n < s.size() && ((s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= 'a' && s[n] <= 'z'))) ++n;
  if (n < 3) return false;
  s.remove_prefix(n);
  return true;
}

bool ParseInt(std::string_view& s, int& out) {
  int digits = 0;
  out = 0;
  while (!s.empty() && s.front() >= '0' && s.front() <= '9' && digits < 3) {
    out = out * 10 + (s.front() - '0');
    s.remove_prefix(1);
    ++digits;
  }
  return digits > 0;
}

unsigned DaysInMonth(int64_t year, int month) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return month == 2 && leap ? 29 : kDays[month - 1];
}

// The proleptic Gregorian year of a day count since the epoch.
int64_t YearOfDays(int64_t days) {
  int64_t z = days + 719468;
  int64_t era = FloorDiv(z, 146097);
  int64_t doe = z - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int64_t year = yoe + era * 400;
  return mp >= 10 ? year + 1 : year;
}

}  // namespace

bool HasUtcOffset(std::string_view text) {
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  // Only calendar dates can be naive; epoch numbers are UTC by definition.
  if (text.size() < 10 || text[4] != '-') return true;
  if (text.size() <= 11) return false;
  return text.substr(11).find_first_of("Zz+-") != std::string_view::npos;
}

bool TimeZone::ParsePosixRule(std::string_view s, PosixRule& rule) {
  rule = PosixRule{};
  int32_t std_off = 0;
  if (!SkipAbbreviation(s) || !ParseHms(s, std_off)) return false;
  rule.std_offset = -std_off;  // POSIX offsets count west of Greenwich
  if (s.empty()) {
    rule.valid = true;
    return true;
  }
  if (!SkipAbbreviation(s)) return false;
  rule.has_dst = true;
  rule.dst_offset = rule.std_offset + 3600;
  if (!s.empty() && s.front() != ',') {
    int32_t dst_off = 0;
    if (!ParseHms(s, dst_off)) return false;
    rule.dst_offset = -dst_off;
  }
  for (DateRule* d : {&rule.start, &rule.end}) {
    // Only the Mm.w.d form is read (every current zone uses it).
    if (s.size() < 2 || s[0] != ',' || s[1] != 'M') return false;
    s.remove_prefix(2);
    if (!ParseInt(s, d->month) || s.empty() || s.front() != '.') return false;
    s.remove_prefix(1);
    if (!ParseInt(s, d->week) || s.empty() || s.front() != '.') return false;
    s.remove_prefix(1);
    if (!ParseInt(s, d->weekday)) return false;
    if (d->month < 1 || d->month > 12 || d->week < 1 || d->week > 5 || d->weekday > 6) {
      return false;
    }
    d->time = 7200;
    if (!s.empty() && s.front() == '/' && (s.remove_prefix(1), !ParseHms(s, d->time))) {
      return false;
    }
  }
  rule.valid = s.empty();
  return rule.valid;
}

int64_t TimeZone::RuleInstant(const DateRule& rule, int64_t year, int32_t offset) {
  int64_t first = DaysFromCivil(year, static_cast<unsigned>(rule.month), 1);
  int64_t weekday = ((first + 4) % 7 + 7) % 7;  // 1970-01-01 was a Thursday
  int64_t day = 1 + (rule.weekday - weekday + 7) % 7 + (rule.week - 1) * 7;
  while (day > DaysInMonth(year, rule.month)) day -= 7;
  return (first + day - 1) * 86400 + rule.time - offset;
}

int32_t TimeZone::RuleOffsetAt(int64_t utc) const {
  if (!rule_.has_dst) return rule_.std_offset;
  int64_t year = YearOfDays(FloorDiv(utc + rule_.std_offset, 86400));
  // DST starts at a standard-time wall clock and ends at a daylight one.
  int64_t start = RuleInstant(rule_.start, year, rule_.std_offset);
  int64_t end = RuleInstant(rule_.end, year, rule_.dst_offset);
  bool dst = start < end ? (utc >= start && utc < end) : !(utc >= end && utc < start);
  return dst ? rule_.dst_offset : rule_.std_offset;
}

int32_t TimeZone::OffsetAt(int64_t utc) const {
  if (transitions_.empty() || utc < transitions_.front()) {
    return transitions_.empty() && rule_.valid ? RuleOffsetAt(utc) : initial_offset_;
  }
  if (utc >= transitions_.back() && rule_.valid) return RuleOffsetAt(utc);
  auto it = std::upper_bound(transitions_.begin(), transitions_.end(), utc);
  return offsets_[static_cast<size_t>(it - transitions_.begin()) - 1];
}

TimeUs TimeZone::LocalToUtc(TimeUs local) const {
  int64_t s = FloorDiv(local, kMicrosPerSecond);
  // The offsets a day before and after; transitions are never closer than that.
  int32_t before = OffsetAt(s - 86400);
  int32_t after = OffsetAt(s + 86400);
  int32_t offset = before;
  if (OffsetAt(s - before) != before && OffsetAt(s - after) == after) offset = after;
  return local - int64_t{offset} * kMicrosPerSecond;
}

Result<std::shared_ptr<const TimeZone>> TimeZone::FromTzif(std::string_view name,
                                                           std::string_view bytes) {
  auto bad = [&](std::string_view why) {
    return Status::Invalid(fmt::format("time zone {}: not a valid TZif file ({})", name, why));
  };
  auto data = reinterpret_cast<const unsigned char*>(bytes.data());
  size_t size = bytes.size();
  if (size < 44 || bytes.substr(0, 4) != "TZif") return bad("no TZif header");
  char version = bytes[4];
  size_t pos = 0;
  auto counts = [&](size_t at, uint32_t c[6]) {
    for (int i = 0; i < 6; ++i) c[i] = Be32(data + at + 20 + 4 * i);
  };
  uint32_t c[6];  // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
  counts(0, c);
  size_t time_size = 4;
  auto block_size = [&](size_t ts) {
    return size_t{c[3]} * ts + c[3] + size_t{c[4]} * 6 + c[5] + size_t{c[2]} * (ts + 4) + c[1] +
           c[0];
  };
  pos = 44;
  if (version >= '2') {
    pos += block_size(4);
    if (pos + 44 > size || bytes.substr(pos, 4) != "TZif") return bad("no second header");
    counts(pos, c);
    pos += 44;
    time_size = 8;
  }
  if (c[4] == 0 || c[4] > 256 || c[3] > 100000) return bad("implausible counts");
  if (pos + block_size(time_size) > size) return bad("truncated");
  auto zone = std::make_shared<TimeZone>();
  zone->name_ = std::string(name);
  const unsigned char* times = data + pos;
  const unsigned char* indices = times + size_t{c[3]} * time_size;
  const unsigned char* types = indices + c[3];
  auto type_offset = [&](size_t i) { return static_cast<int32_t>(Be32(types + 6 * i)); };
  for (size_t i = 0; i < c[3]; ++i) {
    int64_t t = time_size == 8 ? Be64(times + 8 * i) : static_cast<int32_t>(Be32(times + 4 * i));
    if (indices[i] >= c[4]) return bad("transition type out of range");
    if (!zone->transitions_.empty() && t <= zone->transitions_.back()) {
      return bad("transitions not ascending");
    }
    zone->transitions_.push_back(t);
    zone->offsets_.push_back(type_offset(indices[i]));
  }
  zone->initial_offset_ = type_offset(0);
  size_t footer = pos + block_size(time_size);
  if (version >= '2' && footer < size && bytes[footer] == '\n') {
    std::string_view rest = bytes.substr(footer + 1);
    size_t nl = rest.find('\n');
    if (nl != std::string_view::npos && nl > 0) {
      // A footer this parser cannot read leaves the last transition's offset in force.
      ParsePosixRule(rest.substr(0, nl), zone->rule_);
    }
  }
  return std::shared_ptr<const TimeZone>(std::move(zone));
}

Result<std::shared_ptr<const TimeZone>> TimeZone::Load(std::string_view name) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const TimeZone>, std::less<>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = cache.find(name); it != cache.end()) return it->second;
  if (!ValidZoneName(name)) {
    return Status::Invalid(fmt::format("\"{}\" is not an IANA time zone name", name));
  }
  const char* dir = std::getenv("TZDIR");
  std::string path =
      fmt::format("{}/{}", dir != nullptr && *dir != '\0' ? dir : "/usr/share/zoneinfo", name);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::NotFound(
        fmt::format("unknown time zone \"{}\" (no file {}; is tzdata installed?)", name, path));
  }
  std::string bytes(kMaxTzifBytes + 1, '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  bytes.resize(static_cast<size_t>(in.gcount()));
  if (bytes.size() > kMaxTzifBytes) return Status::Invalid(fmt::format("{} is too large", path));
  TRIB_ASSIGN_OR_RETURN(auto zone, FromTzif(name, bytes));
  cache.emplace(std::string(name), zone);
  return zone;
}

}  // namespace tributary
