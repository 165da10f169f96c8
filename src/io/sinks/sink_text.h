// Text forms of column values that several sinks write the same way.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/json_writer.h"
#include "core/model.h"

namespace tributary {

/// QC flag names for a bitset, remembered for the last bitset seen (flags repeat from
/// row to row, so formatting them per row would cost for nothing).
class SinkFlagsText {
 public:
  /// The names of `bits`: reading flags, or window flags when `window_flags`.
  const std::string& Format(uint32_t bits, bool window_flags) {
    if (!valid_ || bits != bits_ || window_flags != window_) {
      text_ = window_flags ? WindowFlagsToString(bits) : QcFlagsToString(QcFlags{bits});
      bits_ = bits;
      window_ = window_flags;
      valid_ = true;
    }
    return text_;
  }

 private:
  bool valid_ = false;
  bool window_ = false;
  uint32_t bits_ = 0;
  std::string text_;
};

/// An H3 cell as lowercase hex without leading zeros (as h3-js writes it), in `buf`;
/// empty for 0 (no cell), which the sinks store as NULL.
inline std::string_view SinkH3Hex(uint64_t cell, char (&buf)[24]) {
  if (cell == 0) return {};
  auto res = std::to_chars(buf, buf + sizeof buf, cell, 16);
  return std::string_view(buf, static_cast<size_t>(res.ptr - buf));
}

/// Extra quantiles as a JSON object keyed by the quantile, into `out`:
/// {"0.9":41.2,"0.99":77.5}.
inline void SinkQuantilesJson(const std::vector<std::pair<double, double>>& quantiles,
                              std::string& out) {
  out.clear();
  out.push_back('{');
  std::string key;
  for (size_t i = 0; i < quantiles.size(); ++i) {
    if (i > 0) out.push_back(',');
    key.clear();
    AppendJsonNumber(key, quantiles[i].first);
    AppendJsonString(out, key);
    out.push_back(':');
    AppendJsonNumber(out, quantiles[i].second);
  }
  out.push_back('}');
}

}  // namespace tributary
