// Text forms of column values that several sinks write the same way.
#pragma once

#include <charconv>
#include <cmath>
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

/// ProvenanceToJson (core/model.h), byte for byte, into a buffer reused from row to row:
/// no JsonWriter and no temporary strings per row, and the qc_flags array remembered for
/// the last bitset seen.
class SinkProvenanceJson {
 public:
  const std::string& Format(const Provenance& p, Symbol device, QcFlags flags) {
    if (!flags_valid_ || flags.bits != flag_bits_) {
      flags_json_ = QcFlagsToJson(flags);
      flag_bits_ = flags.bits;
      flags_valid_ = true;
    }
    text_.clear();
    text_ += "{\"device_id\":";
    AppendJsonString(text_, device.view());
    if (p.firmware) Text("firmware_version", p.firmware);
    if (p.calibration_date) Text("calibration_date", p.calibration_date);
    if (p.crs_source) {
      Text("crs_source", p.crs_source);
      Key("original_x");
      AppendJsonNumber(text_, p.orig_x);
      Key("original_y");
      AppendJsonNumber(text_, p.orig_y);
    }
    if (p.source) Text("source", p.source);
    if (p.topic) Text("topic", p.topic);
    if (p.partition >= 0) Int("partition", p.partition);
    if (p.offset >= 0) Int("offset", p.offset);
    if (p.drift_correction) Text("drift_correction", p.drift_correction);
    if (!std::isnan(p.anomaly_score)) {
      Key("anomaly_score");
      AppendJsonNumber(text_, std::round(static_cast<double>(p.anomaly_score) * 1e4) / 1e4);
    }
    Key("qc_flags");
    text_ += flags_json_;
    text_.push_back('}');
    return text_;
  }

 private:
  // Keys are plain ASCII: no escaping needed.
  void Key(std::string_view key) {
    text_ += ",\"";
    text_ += key;
    text_ += "\":";
  }
  void Text(std::string_view key, Symbol value) {
    Key(key);
    AppendJsonString(text_, value.view());
  }
  void Int(std::string_view key, int64_t v) {
    Key(key);
    char buf[24];
    auto res = std::to_chars(buf, buf + sizeof buf, v);
    text_.append(buf, res.ptr);
  }

  std::string text_;
  std::string flags_json_;
  uint32_t flag_bits_ = 0;
  bool flags_valid_ = false;
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
