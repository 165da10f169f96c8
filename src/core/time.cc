#include "core/time.h"

#include <chrono>
#include <cmath>
#include <cstdio>

namespace tributary {
namespace {

bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

// Read exactly n digits at text[pos...]; advances pos.
bool ReadDigits(std::string_view text, size_t& pos, int n, int& out) {
  if (pos + n > text.size()) return false;
  int v = 0;
  for (int i = 0; i < n; ++i) {
    char c = text[pos + i];
    if (!IsDigit(c)) return false;
    v = v * 10 + (c - '0');
  }
  pos += n;
  out = v;
  return true;
}

Status BadTime(std::string_view text, const char* why) {
  std::string shown(text.substr(0, 64));
  return Status::Invalid("bad timestamp '" + shown + "': " + why);
}

bool LooksNumeric(std::string_view t) {
  if (t.empty()) return false;
  size_t i = (t[0] == '-' || t[0] == '+') ? 1 : 0;
  if (i >= t.size()) return false;
  bool digit = false;
  for (; i < t.size(); ++i) {
    if (IsDigit(t[i])) {
      digit = true;
    } else if (t[i] != '.' && t[i] != 'e' && t[i] != 'E' && t[i] != '-' && t[i] != '+') {
      return false;
    }
  }
  return digit;
}

}  // namespace

int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

namespace {
void CivilFromDays(int64_t z, int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
}

unsigned DaysInMonth(int64_t y, unsigned m) {
  static const unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return (m == 2 && leap) ? 29 : kDays[m - 1];
}
}  // namespace

Result<TimeUs> EpochToTime(double value, EpochUnit unit) {
  if (!std::isfinite(value)) return Status::Invalid("epoch timestamp is not a finite number");
  double mag = std::fabs(value);
  if (unit == EpochUnit::kAuto) {
    unit = mag < 1e11 ? EpochUnit::kSeconds : mag < 1e14 ? EpochUnit::kMillis : EpochUnit::kMicros;
  }
  double us = 0;
  switch (unit) {
    case EpochUnit::kSeconds:
      us = value * 1e6;
      break;
    case EpochUnit::kMillis:
      us = value * 1e3;
      break;
    case EpochUnit::kMicros:
    case EpochUnit::kAuto:
      us = value;
      break;
  }
  if (std::fabs(us) > 9.0e15 * 1e3) return Status::Invalid("epoch timestamp out of range");
  return static_cast<TimeUs>(std::llround(us));
}

Result<TimeUs> ParseTime(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  if (text.empty()) return BadTime(text, "empty");
  if (LooksNumeric(text) && text.find('-', 1) == std::string_view::npos) {
    char* end = nullptr;
    std::string s(text);
    double v = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size()) return BadTime(text, "not a number");
    return EpochToTime(v, EpochUnit::kAuto);
  }
  size_t pos = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!ReadDigits(text, pos, 4, year)) return BadTime(text, "expected a 4-digit year");
  if (pos >= text.size() || text[pos] != '-') return BadTime(text, "expected '-' after year");
  ++pos;
  if (!ReadDigits(text, pos, 2, month)) return BadTime(text, "expected a 2-digit month");
  if (pos >= text.size() || text[pos] != '-') return BadTime(text, "expected '-' after month");
  ++pos;
  if (!ReadDigits(text, pos, 2, day)) return BadTime(text, "expected a 2-digit day");
  if (month < 1 || month > 12) return BadTime(text, "month out of range");
  if (day < 1 || static_cast<unsigned>(day) > DaysInMonth(year, month)) {
    return BadTime(text, "day out of range");
  }
  int64_t frac_us = 0;
  int64_t offset_s = 0;
  if (pos < text.size()) {
    if (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' ') {
      return BadTime(text, "expected 'T' between date and time");
    }
    ++pos;
    if (!ReadDigits(text, pos, 2, hour)) return BadTime(text, "expected a 2-digit hour");
    if (pos >= text.size() || text[pos] != ':') return BadTime(text, "expected ':' after hour");
    ++pos;
    if (!ReadDigits(text, pos, 2, minute)) return BadTime(text, "expected 2-digit minutes");
    if (pos < text.size() && text[pos] == ':') {
      ++pos;
      if (!ReadDigits(text, pos, 2, second)) return BadTime(text, "expected 2-digit seconds");
      if (pos < text.size() && (text[pos] == '.' || text[pos] == ',')) {
        ++pos;
        int digits = 0;
        int64_t scale = 100000;
        while (pos < text.size() && IsDigit(text[pos])) {
          if (digits < 6) frac_us += (text[pos] - '0') * scale;
          scale /= 10;
          ++digits;
          ++pos;
        }
        if (digits == 0 || digits > 9) return BadTime(text, "bad fraction of a second");
      }
    }
    if (hour > 23 || minute > 59 || second > 60) return BadTime(text, "time of day out of range");
    if (pos < text.size()) {
      char c = text[pos];
      if (c == 'Z' || c == 'z') {
        ++pos;
      } else if (c == '+' || c == '-') {
        ++pos;
        int oh = 0, om = 0;
        if (!ReadDigits(text, pos, 2, oh)) return BadTime(text, "bad UTC offset hours");
        if (pos < text.size() && text[pos] == ':') ++pos;
        if (pos < text.size() && !ReadDigits(text, pos, 2, om)) {
          return BadTime(text, "bad UTC offset minutes");
        }
        if (oh > 23 || om > 59) return BadTime(text, "UTC offset out of range");
        offset_s = (oh * 3600 + om * 60) * (c == '+' ? 1 : -1);
      } else {
        return BadTime(text, "unexpected characters after the time");
      }
    }
    if (pos != text.size()) return BadTime(text, "unexpected trailing characters");
  }
  int64_t days = DaysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  int64_t secs = days * 86400 + hour * 3600 + minute * 60 + second - offset_s;
  return secs * kMicrosPerSecond + frac_us;
}

std::string FormatTime(TimeUs t) {
  int64_t secs = FloorDiv(t, kMicrosPerSecond);
  int64_t frac = t - secs * kMicrosPerSecond;
  int64_t days = FloorDiv(secs, 86400);
  int64_t sod = secs - days * 86400;
  int64_t y = 0;
  unsigned m = 0, d = 0;
  CivilFromDays(days, y, m, d);
  char buf[96];
  if (y < 0 || y > 9999) {
    if (frac == 0) {
      std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02lld:%02lld:%02lldZ",
                    static_cast<long long>(y), m, d, static_cast<long long>(sod / 3600),
                    static_cast<long long>(sod / 60 % 60), static_cast<long long>(sod % 60));
    } else {
      std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02lld:%02lld:%02lld.%06lldZ",
                    static_cast<long long>(y), m, d, static_cast<long long>(sod / 3600),
                    static_cast<long long>(sod / 60 % 60), static_cast<long long>(sod % 60),
                    static_cast<long long>(frac));
    }
    return buf;
  }
  // Years 0000-9999 (every time a sensor sends) are written digit by digit: this runs for
  // every time field of every JSON row, and snprintf was a few percent of a Kafka run.
  auto put = [](char* p, int64_t v, int width) {
    for (int i = width - 1; i >= 0; --i) {
      p[i] = static_cast<char>('0' + v % 10);
      v /= 10;
    }
  };
  put(buf, y, 4);
  buf[4] = '-';
  put(buf + 5, m, 2);
  buf[7] = '-';
  put(buf + 8, d, 2);
  buf[10] = 'T';
  put(buf + 11, sod / 3600, 2);
  buf[13] = ':';
  put(buf + 14, sod / 60 % 60, 2);
  buf[16] = ':';
  put(buf + 17, sod % 60, 2);
  size_t n = 19;
  if (frac != 0) {
    buf[n++] = '.';
    put(buf + n, frac, 6);
    n += 6;
  }
  buf[n++] = 'Z';
  return std::string(buf, n);
}

Result<DurationUs> ParseDuration(std::string_view text) {
  std::string_view orig = text;
  auto bad = [&](const char* why) {
    return Status::Invalid("bad duration '" + std::string(orig.substr(0, 64)) + "': " + why +
                           " (use e.g. 500ms, 30s, 5m, 1h, 1d)");
  };
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
  if (text.empty()) return bad("empty");
  if (text[0] == '-') return bad("negative");
  DurationUs total = 0;
  bool any = false;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t start = pos;
    while (pos < text.size() && (IsDigit(text[pos]) || text[pos] == '.')) ++pos;
    if (pos == start) return bad("expected a number");
    double num = std::strtod(std::string(text.substr(start, pos - start)).c_str(), nullptr);
    size_t ustart = pos;
    while (pos < text.size() && !IsDigit(text[pos]) && text[pos] != '.') ++pos;
    std::string_view unit = text.substr(ustart, pos - ustart);
    double scale = 0;
    if (unit.empty()) {
      if (any || pos != text.size()) return bad("missing unit");
      scale = kMicrosPerSecond;
    } else if (unit == "us" || unit == "µs") {
      scale = 1;
    } else if (unit == "ms") {
      scale = kMicrosPerMilli;
    } else if (unit == "s" || unit == "sec") {
      scale = kMicrosPerSecond;
    } else if (unit == "m" || unit == "min") {
      scale = kMicrosPerMinute;
    } else if (unit == "h") {
      scale = kMicrosPerHour;
    } else if (unit == "d") {
      scale = kMicrosPerDay;
    } else {
      return bad("unknown unit");
    }
    double us = num * scale;
    if (us > 1e17) return bad("too large");
    total += static_cast<DurationUs>(std::llround(us));
    any = true;
  }
  return total;
}

std::string FormatDuration(DurationUs d) {
  if (d == 0) return "0s";
  std::string out;
  if (d < 0) {
    out = "-";
    d = -d;
  }
  struct Unit {
    DurationUs us;
    const char* name;
  };
  static const Unit kUnits[] = {{kMicrosPerDay, "d"},    {kMicrosPerHour, "h"},
                                {kMicrosPerMinute, "m"}, {kMicrosPerSecond, "s"},
                                {kMicrosPerMilli, "ms"}, {1, "us"}};
  for (const Unit& u : kUnits) {
    if (d >= u.us) {
      out += std::to_string(d / u.us) + u.name;
      d %= u.us;
    }
  }
  return out;
}

TimeUs NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace tributary
