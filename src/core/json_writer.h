// A small streaming JSON writer for ledger files, provenance columns, API bodies.
// Output is always valid UTF-8 JSON: invalid UTF-8 in strings becomes U+FFFD, and
// NaN/Inf numbers become null.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tributary {

/// Append `s` to `out` as a quoted, escaped JSON string.
void AppendJsonString(std::string& out, std::string_view s);
/// Append a double in shortest round-trip form, or null when not finite.
void AppendJsonNumber(std::string& out, double v);

class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view key);
  JsonWriter& String(std::string_view v);
  JsonWriter& Number(double v);
  JsonWriter& Int(int64_t v);
  JsonWriter& UInt(uint64_t v);
  JsonWriter& Bool(bool v);
  JsonWriter& Null();
  /// Insert already-serialised JSON as a value.
  JsonWriter& Raw(std::string_view json);

  const std::string& str() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  void BeforeValue();
  std::string out_;
  std::vector<bool> first_;  // per open container: no element written yet
  bool after_key_ = false;
};

}  // namespace tributary
