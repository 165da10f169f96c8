#include "ingest/json_decoder.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <charconv>
#include <cstring>
#include <limits>

namespace tributary {

namespace {

namespace od = simdjson::ondemand;

/// Deeper documents are rejected as malformed (skipped values are still validated, so
/// the walk recurses into them).
constexpr int kMaxJsonDepth = 64;
/// Room for the dotted paths of nested mapped fields of one record.
constexpr size_t kPathArenaBytes = 16 << 10;
/// Distinct field paths whose meaning is cached per decoder.
constexpr size_t kMaxKeyCache = 4096;
/// Distinct unknown metric names one decoder interns (the intern table is process-wide
/// and append-only, so hostile payloads with random keys must not grow it forever).
constexpr size_t kMaxUnknownMetricNames = 1024;
constexpr size_t kMaxMetricNameBytes = 64;
constexpr size_t kMaxUnitCache = 256;

std::string_view Trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
bool IsJsonNumber(std::string_view s) {
  size_t i = 0;
  auto digit = [&](size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '9'; };
  if (i < s.size() && s[i] == '-') ++i;
  if (!digit(i)) return false;
  if (s[i] == '0') {
    ++i;
  } else {
    while (digit(i)) ++i;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  return i == s.size();
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Quote a string for messages, escaping quotes and control bytes, at most 80 bytes.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  size_t n = std::min<size_t>(s.size(), 80);
  for (size_t i = 0; i < n; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      out += fmt::format("\\u{:04x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > n) out += "...";
  out += '"';
  return out;
}

// Offset of the first byte that breaks UTF-8 (for messages; simdjson only says whether).
size_t FirstInvalidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (n == 0 || i + n > s.size()) return i;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return i;
    }
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    bool overlong = (n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000);
    if (overlong || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n;
  }
  return s.size();
}

}  // namespace

std::string_view FieldRoleName(FieldRole role) {
  switch (role) {
    case FieldRole::kDeviceId:
      return "device id";
    case FieldRole::kTimestamp:
      return "timestamp";
    case FieldRole::kLat:
      return "latitude";
    case FieldRole::kLon:
      return "longitude";
    case FieldRole::kX:
      return "x";
    case FieldRole::kY:
      return "y";
    case FieldRole::kCrs:
      return "crs";
    case FieldRole::kMetricName:
      return "metric name";
    case FieldRole::kMetricValue:
      return "metric value";
    case FieldRole::kUnit:
      return "unit";
    case FieldRole::kFirmware:
      return "firmware";
    case FieldRole::kCsvError:
      return "csv error";
    case FieldRole::kCsvRaw:
      return "csv raw";
  }
  return "field";
}

std::string_view JsonKindName(JsonKind kind) {
  switch (kind) {
    case JsonKind::kAbsent:
      return "absent";
    case JsonKind::kNull:
      return "null";
    case JsonKind::kNumber:
      return "number";
    case JsonKind::kString:
      return "string";
    case JsonKind::kBool:
      return "boolean";
    case JsonKind::kObject:
      return "object";
    case JsonKind::kArray:
      return "array";
  }
  return "value";
}

std::string JsonScalar::Describe() const {
  switch (kind) {
    case JsonKind::kAbsent:
      return "(absent)";
    case JsonKind::kNull:
      return "null";
    case JsonKind::kNumber:
      return std::string(text.empty() ? fmt::format("{}", number) : text);
    case JsonKind::kString:
      return Quote(text);
    case JsonKind::kBool:
      return boolean ? "true" : "false";
    case JsonKind::kObject:
      return "an object";
    case JsonKind::kArray:
      return "an array";
  }
  return "";
}

void DecodedRecord::Clear() {
  roles.fill(JsonScalar{});
  metrics.clear();
  units.clear();
  field_count = 0;
  time_from_arrival = false;
}

bool ParseNumber(std::string_view text, double& out) {
  text = Trim(text);
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  if (text.empty()) return false;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out);
  if (ptr != end) return false;
  if (ec == std::errc::result_out_of_range) {
    // Overflow is infinite; underflow is zero.
    double mag = 0;
    size_t e = text.find_first_of("eE");
    bool negative_exponent =
        e != std::string_view::npos && e + 1 < text.size() && text[e + 1] == '-';
    if (!negative_exponent) mag = std::numeric_limits<double>::infinity();
    out = text.front() == '-' ? -mag : mag;
    return true;
  }
  return ec == std::errc();
}

FieldMapping FieldMapping::Defaults() {
  FieldMapping m;
  auto with_prefixes = [](std::initializer_list<const char*> names) {
    std::vector<std::string> out;
    for (const char* n : names) out.emplace_back(n);
    for (const char* prefix : {"location.", "position.", "coordinates.", "geo.", "gps."}) {
      for (const char* n : names) out.push_back(std::string(prefix) + n);
    }
    return out;
  };
  auto& r = m.roles;
  r[static_cast<size_t>(FieldRole::kDeviceId)] = {
      "device_id", "sensor_id", "id", "device", "deviceId", "sensorId", "node_id", "station_id"};
  r[static_cast<size_t>(FieldRole::kTimestamp)] = {"sensor_ts",  "timestamp", "ts",      "time",
                                                   "event_time", "datetime",  "date.utc"};
  r[static_cast<size_t>(FieldRole::kLat)] = with_prefixes({"lat", "latitude"});
  r[static_cast<size_t>(FieldRole::kLon)] = with_prefixes({"lon", "lng", "longitude"});
  r[static_cast<size_t>(FieldRole::kX)] = {"x", "easting"};
  r[static_cast<size_t>(FieldRole::kY)] = {"y", "northing"};
  r[static_cast<size_t>(FieldRole::kCrs)] = {"crs", "epsg", "srid"};
  r[static_cast<size_t>(FieldRole::kMetricName)] = {"metric", "metric_name", "parameter"};
  r[static_cast<size_t>(FieldRole::kMetricValue)] = {"metric_value", "value"};
  r[static_cast<size_t>(FieldRole::kUnit)] = {"unit", "units"};
  r[static_cast<size_t>(FieldRole::kFirmware)] = {"firmware", "fw", "fw_version",
                                                  "firmware_version"};
  // The file source's marker for CSV rows it could not split (io/sources/file_source.h).
  r[static_cast<size_t>(FieldRole::kCsvError)] = {"_csv_error"};
  r[static_cast<size_t>(FieldRole::kCsvRaw)] = {"_raw"};
  m.units_objects = {"units"};
  m.metric_containers = {"", "data", "payload", "readings", "measurements", "values"};
  // clang-format off
  m.metadata = {
      "battery_pct", "battery", "battery_v", "battery_voltage", "batt", "bat",
      "rssi", "snr", "lqi", "signal", "signal_strength", "gateway", "port", "fport",
      "seq", "seqno", "sequence", "counter", "fcnt", "frame_counter", "uptime", "uptime_s",
      "altitude", "alt", "elevation", "accuracy", "hdop", "sats", "satellites",
      "heading", "speed", "interval", "status", "model", "type", "name", "version",
      "qc", "quality"};
  // clang-format on
  return m;
}

struct JsonDecoder::Parser {
  od::parser parser;
};

JsonDecoder::JsonDecoder(FieldMapping mapping)
    : mapping_(std::move(mapping)),
      parser_(std::make_unique<Parser>()),
      path_arena_(std::make_unique<char[]>(kPathArenaBytes)) {
  // Every proper prefix of a mapped dotted path is an object to descend into.
  auto add_object_prefixes = [&](std::string_view path) {
    for (size_t dot = path.find('.'); dot != std::string_view::npos;
         dot = path.find('.', dot + 1)) {
      object_paths_.emplace(std::string(path.substr(0, dot)), false);
    }
  };
  for (size_t role = 0; role < kFieldRoleCount; ++role) {
    const auto& paths = mapping_.roles[role];
    for (size_t rank = 0; rank < paths.size() && rank < 0xff; ++rank) {
      role_paths_.emplace(paths[rank],
                          std::make_pair(static_cast<FieldRole>(role), static_cast<uint8_t>(rank)));
      add_object_prefixes(paths[rank]);
    }
  }
  for (const auto& [path, name] : mapping_.metric_fields) {
    explicit_metrics_.emplace(path, name);
    add_object_prefixes(path);
  }
  for (const std::string& c : mapping_.metric_containers) {
    containers_.emplace(c, true);
    if (!c.empty()) {
      object_paths_.emplace(c, false);
      add_object_prefixes(c);
    }
  }
  for (const std::string& u : mapping_.units_objects) {
    object_paths_[u] = true;
    add_object_prefixes(u);
  }
  for (const std::string& k : mapping_.metadata) metadata_.emplace(Lower(k), true);
}

JsonDecoder::~JsonDecoder() = default;

JsonDecoder::KeyInfo JsonDecoder::Classify(std::string_view prefix, std::string_view key,
                                           std::string_view path) const {
  KeyInfo info;
  if (auto it = role_paths_.find(path); it != role_paths_.end()) {
    info.kind = KeyKind::kRole;
    info.role = it->second.first;
    info.rank = it->second.second;
  }
  if (auto it = object_paths_.find(path); it != object_paths_.end()) {
    info.descend = true;
    info.units_object = it->second;
  }
  if (info.kind != KeyKind::kIgnore) return info;
  if (auto it = explicit_metrics_.find(path); it != explicit_metrics_.end()) {
    info.kind = KeyKind::kMetric;
    info.metric = FindMetric(it->second, &info.implied_unit);
    // A configured name is bounded by the config, so an unknown one is interned as is.
    info.name = info.metric != nullptr ? info.metric->symbol : Intern(it->second);
    info.name_tried = true;
    return info;
  }
  if (!containers_.contains(prefix) || key.empty() || key.front() == '_') return info;
  if (key.size() <= kMaxMetricNameBytes && metadata_.contains(Lower(key))) return info;
  info.kind = KeyKind::kMetric;
  info.metric = FindMetric(key, &info.implied_unit);
  if (info.metric != nullptr) {
    info.name = info.metric->symbol;
    info.name_tried = true;
  }
  return info;
}

JsonDecoder::KeyEntry* JsonDecoder::Resolve(std::string_view prefix, std::string_view key,
                                            std::string_view path, KeyInfo& scratch) {
  if (auto it = keys_.find(path); it != keys_.end()) return &*it;
  if (keys_.size() < kMaxKeyCache) {
    return &*keys_.emplace(std::string(path), Classify(prefix, key, path)).first;
  }
  scratch = Classify(prefix, key, path);
  scratch.name_tried = true;  // uncached: do not intern (the name would leak per record)
  return nullptr;
}

void JsonDecoder::NameUnknownMetric(std::string_view leaf, KeyInfo& info) {
  info.name_tried = true;
  if (leaf.size() > kMaxMetricNameBytes || unknown_names_ >= kMaxUnknownMetricNames) return;
  info.name = Intern(leaf);
  ++unknown_names_;
}

void JsonDecoder::ResolveMetricName(std::string_view name, MetricField& out) {
  out.path = name;
  out.leaf = name;
  auto it = long_names_.find(name);
  if (it == long_names_.end()) {
    KeyInfo info;
    info.kind = KeyKind::kMetric;
    info.metric = FindMetric(name, &info.implied_unit);
    if (info.metric != nullptr) {
      info.name = info.metric->symbol;
      info.name_tried = true;
    } else {
      NameUnknownMetric(name, info);
    }
    if (long_names_.size() >= kMaxKeyCache) {
      out.metric = info.metric;
      out.implied_unit = info.implied_unit;
      out.name = info.name;
      return;
    }
    it = long_names_.emplace(std::string(name), info).first;
  }
  out.metric = it->second.metric;
  out.implied_unit = it->second.implied_unit;
  out.name = it->second.name;
}

const UnitInfo* JsonDecoder::FindUnitCached(std::string_view spelling) {
  if (auto it = unit_cache_.find(spelling); it != unit_cache_.end()) return it->second;
  const UnitInfo* unit = FindUnit(spelling);
  if (unit_cache_.size() < kMaxUnitCache && spelling.size() <= kMaxUnitSpelling) {
    unit_cache_.emplace(std::string(spelling), unit);
  }
  return unit;
}

// The traversal of one document. Every failure sets `status` and returns false.
struct JsonDecoder::Walker {
  JsonDecoder& d;
  DecodedRecord& out;
  DecodeStatus& status;
  std::string_view last_path;  // for messages about structural errors
  od::document* doc = nullptr;
  std::string_view payload;  // the document's bytes (in the padded buffer)

  bool Fail(QuarantineReason reason, std::string detail) {
    status.ok = false;
    status.reason = reason;
    status.detail = std::move(detail);
    return false;
  }

  bool JsonError(simdjson::error_code error, std::string_view path) {
    std::string_view message = simdjson::error_message(error);
    if (!message.empty() && message.back() == '.') message.remove_suffix(1);
    std::string detail(message);
    if (!path.empty()) {
      detail += fmt::format(" (at field {})", Quote(path));
    } else if (!last_path.empty()) {
      detail += fmt::format(" (after field {})", Quote(last_path));
    }
    if (error == simdjson::UTF8_ERROR) {
      detail += fmt::format(" at byte {}", FirstInvalidUtf8(payload));
    } else if (error == simdjson::INCOMPLETE_ARRAY_OR_OBJECT) {
      detail += fmt::format(": the payload ({} bytes) looks truncated", payload.size());
    } else {
      // Show the bytes around the parser's position when it still has one.
      const char* at = nullptr;
      if (doc != nullptr && doc->current_location().get(at) == simdjson::SUCCESS &&
          at >= payload.data() && at <= payload.data() + payload.size()) {
        auto offset = static_cast<size_t>(at - payload.data());
        size_t from = offset > 24 ? offset - 24 : 0;
        detail += fmt::format(" at byte {} near {}", offset,
                              Quote(payload.substr(from, offset - from + 16)));
        std::string_view rest = payload.substr(offset);
        if (rest.starts_with("NaN") || rest.starts_with("Infinity") ||
            rest.starts_with("-Infinity")) {
          detail += "; NaN and Infinity are not valid JSON";
        }
      }
    }
    return Fail(QuarantineReason::kMalformedJson, std::move(detail));
  }

  bool TooDeep() {
    return Fail(QuarantineReason::kMalformedJson,
                fmt::format("JSON nested deeper than {} levels", kMaxJsonDepth));
  }

  bool CountField() {
    if (++out.field_count <= kMaxFieldsPerRecord) return true;
    return Fail(QuarantineReason::kTooManyFields,
                fmt::format("more than {} fields", kMaxFieldsPerRecord));
  }

  // Join "prefix.key" in the decoder's path arena (stable until the next Decode).
  bool JoinPath(std::string_view prefix, std::string_view key, std::string_view& path) {
    size_t need = prefix.size() + 1 + key.size();
    if (d.path_used_ + need > kPathArenaBytes) {
      return Fail(QuarantineReason::kTooManyFields,
                  fmt::format("nested field paths longer than {} bytes in total", kPathArenaBytes));
    }
    char* p = d.path_arena_.get() + d.path_used_;
    std::memcpy(p, prefix.data(), prefix.size());
    p[prefix.size()] = '.';
    std::memcpy(p + prefix.size() + 1, key.data(), key.size());
    d.path_used_ += need;
    path = std::string_view(p, need);
    return true;
  }

  bool ReadNumber(od::value& value, std::string_view path, JsonScalar& s) {
    std::string_view raw = value.raw_json_token();
    while (!raw.empty() && static_cast<unsigned char>(raw.back()) <= ' ') raw.remove_suffix(1);
    double x = 0;
    simdjson::error_code e = value.get_double().get(x);
    if (e != simdjson::SUCCESS) {
      // simdjson reports a literal that overflows a double like a malformed one; the
      // first is valid JSON (a non-finite value), the second is not.
      if (e != simdjson::NUMBER_ERROR || !IsJsonNumber(raw)) {
        return Fail(QuarantineReason::kMalformedJson,
                    fmt::format("invalid number {} at field {}", Quote(raw), Quote(path)));
      }
      x = std::numeric_limits<double>::infinity();
      if (raw.front() == '-') x = -x;
    }
    s.kind = JsonKind::kNumber;
    s.number = x;
    s.text = raw;
    return true;
  }

  // Read a scalar (or validate and skip an object/array) into `s`.
  bool ReadValue(od::value& value, od::json_type type, std::string_view path, int depth,
                 JsonScalar& s) {
    s.path = path;
    switch (type) {
      case od::json_type::number:
        return ReadNumber(value, path, s);
      case od::json_type::string: {
        std::string_view text;
        if (auto e = value.get_string().get(text)) return JsonError(e, path);
        s.kind = JsonKind::kString;
        s.text = text;
        return true;
      }
      case od::json_type::boolean: {
        bool b = false;
        if (auto e = value.get_bool().get(b)) return JsonError(e, path);
        s.kind = JsonKind::kBool;
        s.boolean = b;
        return true;
      }
      case od::json_type::null: {
        bool is_null = false;
        if (auto e = value.is_null().get(is_null)) return JsonError(e, path);
        if (!is_null) return JsonError(simdjson::N_ATOM_ERROR, path);
        s.kind = JsonKind::kNull;
        return true;
      }
      case od::json_type::object:
        s.kind = JsonKind::kObject;
        return SkipValidated(value, depth, path);
      case od::json_type::array:
        s.kind = JsonKind::kArray;
        return SkipValidated(value, depth, path);
    }
    return JsonError(simdjson::TAPE_ERROR, path);
  }

  // Visit a value nobody maps so that broken JSON inside it is still reported.
  bool SkipValidated(od::value& value, int depth, std::string_view path) {
    if (depth > kMaxJsonDepth) return TooDeep();
    od::json_type type;
    if (auto e = value.type().get(type)) return JsonError(e, path);
    switch (type) {
      case od::json_type::object: {
        od::object object;
        if (auto e = value.get_object().get(object)) return JsonError(e, path);
        for (auto field_result : object) {
          od::field field;
          if (auto e = std::move(field_result).get(field)) return JsonError(e, path);
          std::string_view key;
          if (auto e = field.unescaped_key().get(key)) return JsonError(e, path);
          if (!SkipValidated(field.value(), depth + 1, path)) return false;
        }
        return true;
      }
      case od::json_type::array: {
        od::array array;
        if (auto e = value.get_array().get(array)) return JsonError(e, path);
        for (auto element_result : array) {
          od::value element;
          if (auto e = std::move(element_result).get(element)) return JsonError(e, path);
          if (!SkipValidated(element, depth + 1, path)) return false;
        }
        return true;
      }
      default: {
        JsonScalar ignored;
        return ReadValue(value, type, path, depth, ignored);
      }
    }
  }

  void Apply(KeyInfo& info, std::string_view key, const JsonScalar& s) {
    if (info.kind == KeyKind::kRole) {
      JsonScalar& slot = out.roles[static_cast<size_t>(info.role)];
      if (info.rank < slot.rank) {
        slot = s;
        slot.rank = info.rank;
      }
      return;
    }
    if (info.kind != KeyKind::kMetric) return;
    if (info.metric == nullptr) {
      // Unknown names are metrics only when numeric; anything else is metadata.
      double ignored = 0;
      bool numeric = s.kind == JsonKind::kNumber ||
                     (s.kind == JsonKind::kString && ParseNumber(s.text, ignored));
      if (!numeric) return;
      if (!info.name_tried) d.NameUnknownMetric(key, info);
    }
    MetricField& m = out.metrics.emplace_back();
    m.path = s.path;
    m.leaf = key;
    m.metric = info.metric;
    m.implied_unit = info.implied_unit;
    m.name = info.name;
    m.value = s;
  }

  bool WalkUnits(od::object object, int depth, std::string_view path) {
    for (auto field_result : object) {
      od::field field;
      if (auto e = std::move(field_result).get(field)) return JsonError(e, path);
      std::string_view key;
      if (auto e = field.unescaped_key().get(key)) return JsonError(e, path);
      if (!CountField()) return false;
      od::value value = field.value();
      od::json_type type;
      if (auto e = value.type().get(type)) return JsonError(e, path);
      JsonScalar s;
      if (!ReadValue(value, type, path, depth + 1, s)) return false;
      if (s.kind == JsonKind::kString) out.units.push_back(UnitEntry{key, s.text});
    }
    return true;
  }

  bool WalkObject(od::object object, std::string_view prefix, int depth) {
    if (depth > kMaxJsonDepth) return TooDeep();
    KeyEntry* previous = nullptr;
    for (auto field_result : object) {
      od::field field;
      if (auto e = std::move(field_result).get(field)) return JsonError(e, {});
      std::string_view key;
      if (auto e = field.unescaped_key().get(key)) return JsonError(e, {});
      if (!CountField()) return false;
      std::string_view path = key;
      if (!prefix.empty() && !JoinPath(prefix, key, path)) return false;
      last_path = path;
      // Follow the hint chain first (see KeyInfo::next), else look the path up.
      KeyEntry* hint = previous != nullptr ? previous->second.next
                       : depth == 1        ? d.first_key_
                                           : nullptr;
      KeyEntry* entry = nullptr;
      KeyInfo scratch;
      if (hint != nullptr && std::string_view(hint->first) == path) {
        entry = hint;
      } else {
        entry = d.Resolve(prefix, key, path, scratch);
        if (entry != nullptr) {
          if (previous != nullptr) {
            previous->second.next = entry;
          } else if (depth == 1) {
            d.first_key_ = entry;
          }
        }
      }
      KeyInfo* info = entry != nullptr ? &entry->second : &scratch;
      previous = entry;
      od::value value = field.value();
      od::json_type type;
      if (auto e = value.type().get(type)) return JsonError(e, path);
      if (type == od::json_type::object && info->descend) {
        if (depth + 1 > kMaxJsonDepth) return TooDeep();
        od::object child;
        if (auto e = value.get_object().get(child)) return JsonError(e, path);
        bool ok = info->units_object ? WalkUnits(child, depth + 1, path)
                                     : WalkObject(child, path, depth + 1);
        if (!ok) return false;
        last_path = path;
        continue;
      }
      JsonScalar s;
      if (!ReadValue(value, type, path, depth + 1, s)) return false;
      Apply(*info, key, s);
    }
    return true;
  }
};

DecodeStatus JsonDecoder::Decode(std::string_view payload, DecodedRecord& out) {
  out.Clear();
  path_used_ = 0;
  DecodeStatus status;
  Walker walker{*this, out, status, {}};
  if (payload.size() > kMaxPayloadBytes) {
    walker.Fail(QuarantineReason::kPayloadTooLarge,
                fmt::format("payload of {} bytes exceeds the limit of {} bytes", payload.size(),
                            kMaxPayloadBytes));
    return status;
  }
  if (Trim(payload).empty()) {
    walker.Fail(QuarantineReason::kMalformedJson, "empty payload");
    return status;
  }
  size_t need = payload.size() + simdjson::SIMDJSON_PADDING;
  if (need > buffer_capacity_) {
    size_t cap = std::max<size_t>(need, std::max<size_t>(buffer_capacity_ * 2, 4096));
    buffer_ = std::make_unique<char[]>(cap);
    buffer_capacity_ = cap;
  }
  std::memcpy(buffer_.get(), payload.data(), payload.size());
  std::memset(buffer_.get() + payload.size(), 0, simdjson::SIMDJSON_PADDING);

  walker.payload = std::string_view(buffer_.get(), payload.size());
  od::document doc;
  if (auto e = parser_->parser.iterate(buffer_.get(), payload.size(), buffer_capacity_).get(doc)) {
    walker.JsonError(e, {});
    return status;
  }
  walker.doc = &doc;
  od::object object;
  if (auto e = doc.get_object().get(object)) {
    if (e == simdjson::INCORRECT_TYPE) {
      od::json_type type;
      std::string_view found = "another value";
      if (doc.type().get(type) == simdjson::SUCCESS) {
        found = type == od::json_type::array    ? "an array"
                : type == od::json_type::string ? "a string"
                : type == od::json_type::number ? "a number"
                : type == od::json_type::null   ? "null"
                                                : "a boolean";
      }
      walker.Fail(QuarantineReason::kMalformedJson,
                  fmt::format("expected a JSON object, found {}", found));
    } else {
      walker.JsonError(e, {});
    }
    return status;
  }
  if (!walker.WalkObject(object, {}, 1)) return status;
  const char* trailing = nullptr;
  if (doc.current_location().get(trailing) == simdjson::SUCCESS) {
    walker.Fail(QuarantineReason::kMalformedJson,
                fmt::format("unexpected content after the JSON object at byte {}",
                            trailing - buffer_.get()));
  }
  return status;
}

}  // namespace tributary
