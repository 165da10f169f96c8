#include "core/byte_size.h"

#include <cctype>
#include <cmath>
#include <stdexcept>
#include <string>

namespace tributary {

namespace {

std::string TrimSpaces(std::string_view s) {
  size_t b = 0;
  size_t e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

}  // namespace

Result<uint64_t> ParseByteSizeText(std::string_view text) {
  std::string s = TrimSpaces(text);
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0) return Status::Invalid("'" + s + "' is not a size (e.g. 512MiB, 2GiB, 1.5GB)");
  double number = 0;
  try {
    size_t used = 0;
    number = std::stod(s.substr(0, i), &used);
    if (used != i) throw std::invalid_argument("number");
  } catch (const std::exception&) {
    return Status::Invalid("'" + s + "' is not a size (e.g. 512MiB, 2GiB, 1.5GB)");
  }
  std::string unit = TrimSpaces(std::string_view(s).substr(i));
  std::string lower;
  for (char c : unit) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double mult = 0;
  if (lower.empty() || lower == "b") {
    mult = 1;
  } else if (lower == "kib" || lower == "ki") {
    mult = 1024.0;
  } else if (lower == "mib" || lower == "mi") {
    mult = 1024.0 * 1024;
  } else if (lower == "gib" || lower == "gi") {
    mult = 1024.0 * 1024 * 1024;
  } else if (lower == "tib" || lower == "ti") {
    mult = 1024.0 * 1024 * 1024 * 1024;
  } else if (lower == "kb" || lower == "k") {
    mult = 1e3;
  } else if (lower == "mb" || lower == "m") {
    mult = 1e6;
  } else if (lower == "gb" || lower == "g") {
    mult = 1e9;
  } else if (lower == "tb" || lower == "t") {
    mult = 1e12;
  } else {
    return Status::Invalid("unknown size unit '" + unit + "' in '" + s +
                           "' (use B, KiB, MiB, GiB, TiB, kB, MB, GB or TB)");
  }
  double bytes = number * mult;
  if (!std::isfinite(bytes) || bytes >= 1.8e19) return Status::Invalid("'" + s + "' is too large");
  return static_cast<uint64_t>(std::llround(bytes));
}

}  // namespace tributary
