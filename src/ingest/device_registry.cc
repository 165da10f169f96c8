#include "ingest/device_registry.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "ingest/crs.h"
#include "ingest/validate.h"

namespace tributary {

namespace {

constexpr size_t kMaxKeyBytes = 128;  // as long as a device id may be

// An error at a nested node: "devices.yaml:3:5: devices.aq-1.units.pm25: message".
Status NodeError(const std::string& file, std::string_view path, const YAML::Node& node,
                 std::string_view message) {
  int line = 0, column = 0;
  if (node.IsDefined() && !node.Mark().is_null()) {
    line = node.Mark().line + 1;
    column = node.Mark().column + 1;
  }
  return Status::Invalid(fmt::format("{}:{}:{}: {}: {}", file, line, column, path, message));
}

bool IsPattern(std::string_view key) {
  return key.find_first_of("*?[") != std::string_view::npos;
}

size_t LiteralChars(std::string_view key) {
  size_t n = 0;
  bool in_set = false;
  for (char c : key) {
    if (in_set) {
      if (c == ']') in_set = false;
    } else if (c == '[') {
      in_set = true;
    } else if (c != '*' && c != '?') {
      ++n;
    }
  }
  return n;
}

bool ValidDate(std::string_view d) {
  // YYYY-MM-DD, optionally followed by a time ("2024-03-01T10:00Z").
  if (d.size() < 10 || d.size() > 40) return false;
  for (size_t i = 0; i < 10; ++i) {
    bool dash = i == 4 || i == 7;
    if (dash ? d[i] != '-' : (d[i] < '0' || d[i] > '9')) return false;
  }
  int month = (d[5] - '0') * 10 + (d[6] - '0');
  int day = (d[8] - '0') * 10 + (d[9] - '0');
  return month >= 1 && month <= 12 && day >= 1 && day <= 31;
}

// A name → string mapping (aliases, units) of an entry.
Result<std::vector<std::pair<std::string, std::string>>> ReadStringMap(const OptionReader& entry,
                                                                       std::string_view key) {
  std::vector<std::pair<std::string, std::string>> out;
  YAML::Node node = entry.Node(key);
  if (!node.IsDefined() || node.IsNull()) return out;
  if (!node.IsMap()) return entry.Error(key, "expected a mapping of names to strings");
  for (auto it = node.begin(); it != node.end(); ++it) {
    std::string name = it->first.Scalar();
    std::string path = fmt::format("{}.{}.{}", entry.path(), key, name);
    if (name.empty()) return NodeError(entry.file(), path, it->first, "empty name");
    if (!it->second.IsScalar() || it->second.Scalar().empty()) {
      return NodeError(entry.file(), path, it->second, "expected a single non-empty string");
    }
    out.emplace_back(std::move(name), it->second.Scalar());
  }
  return out;
}

Status ReadPosition(const OptionReader& entry, DeviceEntry& e) {
  YAML::Node node = entry.Node("position");
  if (!node.IsDefined() || node.IsNull()) return Status::Ok();
  if (!node.IsMap())
    return entry.Error("position", "expected {lat: .., lon: ..} or {x: .., y: ..}");
  auto number = [&](const char* key, double& out) -> Result<bool> {
    YAML::Node v = node[key];
    if (!v.IsDefined() || v.IsNull()) return false;
    std::string path = fmt::format("{}.position.{}", entry.path(), key);
    if (!v.IsScalar()) return NodeError(entry.file(), path, v, "expected a number");
    try {
      out = v.as<double>();
    } catch (const YAML::Exception&) {
      return NodeError(entry.file(), path, v, fmt::format("\"{}\" is not a number", v.Scalar()));
    }
    if (!std::isfinite(out)) return NodeError(entry.file(), path, v, "not a finite number");
    return true;
  };
  for (auto it = node.begin(); it != node.end(); ++it) {
    std::string k = it->first.Scalar();
    if (k != "lat" && k != "lon" && k != "x" && k != "y") {
      return NodeError(entry.file(), fmt::format("{}.position.{}", entry.path(), k), it->first,
                       "unknown key (expected lat and lon, or x and y)");
    }
  }
  double lat = 0, lon = 0, x = 0, y = 0;
  TRIB_ASSIGN_OR_RETURN(bool has_lat, number("lat", lat));
  TRIB_ASSIGN_OR_RETURN(bool has_lon, number("lon", lon));
  TRIB_ASSIGN_OR_RETURN(bool has_x, number("x", x));
  TRIB_ASSIGN_OR_RETURN(bool has_y, number("y", y));
  if (has_lat && has_lon && !has_x && !has_y) {
    Verdict v = CheckPosition(lat, lon, "lat", "lon");
    if (!v.ok) return entry.Error("position", v.detail);
    e.lat = lat;
    e.lon = lon;
  } else if (has_x && has_y && !has_lat && !has_lon) {
    if (e.crs.empty()) return entry.Error("position", "x/y need the entry's `crs`");
    e.position_xy = true;
    e.lat = y;
    e.lon = x;
  } else {
    return entry.Error("position", "expected both lat and lon, or both x and y");
  }
  e.has_position = true;
  return Status::Ok();
}

Status ReadCalibrations(const OptionReader& entry, DeviceEntry& e) {
  YAML::Node node = entry.Node("calibration");
  if (!node.IsDefined() || node.IsNull()) return Status::Ok();
  if (!node.IsMap()) return entry.Error("calibration", "expected a mapping of metric to curve");
  for (auto it = node.begin(); it != node.end(); ++it) {
    std::string name = it->first.Scalar();
    std::string path = fmt::format("{}.calibration.{}", entry.path(), name);
    const MetricInfo* metric = FindMetric(name);
    char buf[80];
    if (metric == nullptr &&
        (name.size() > 64 || NormalizeMetricName(name, buf, sizeof(buf)) == 0)) {
      return NodeError(entry.file(), path, it->first, "not a usable metric name");
    }
    OptionReader curve(it->second, entry.file(), path, {&DeviceCalibrationSpec()});
    if (!it->second.IsMap()) {
      return NodeError(entry.file(), path, it->second, "expected {m: .., b: .., c: .., date: ..}");
    }
    TRIB_RETURN_IF_ERROR(curve.CheckKeys());
    Calibration cal;
    cal.metric = metric != nullptr ? metric->symbol : Intern(name);
    TRIB_ASSIGN_OR_RETURN(cal.m, curve.GetDouble("m"));
    TRIB_ASSIGN_OR_RETURN(cal.b, curve.GetDouble("b"));
    TRIB_ASSIGN_OR_RETURN(cal.c, curve.GetDouble("c"));
    if (!std::isfinite(cal.m) || !std::isfinite(cal.b) || !std::isfinite(cal.c)) {
      return curve.Error("", "coefficients must be finite numbers");
    }
    if (curve.Has("date")) {
      TRIB_ASSIGN_OR_RETURN(std::string date, curve.GetString("date"));
      if (!ValidDate(date)) {
        return curve.Error("date", fmt::format("\"{}\" is not an ISO date (2024-03-01)", date));
      }
      cal.date = Intern(date);
    }
    if (e.CalibrationFor(cal.metric) != nullptr) {
      return NodeError(entry.file(), path, it->first,
                       fmt::format("a second calibration of {}", cal.metric.view()));
    }
    e.calibrations.push_back(cal);
  }
  return Status::Ok();
}

// Whether PROJ knows `crs` ("" when it does, else the reason). Answers are remembered
// process-wide, so reloading a registry does not build PROJ transformers again.
std::string CheckCrs(const std::string& crs) {
  static std::mutex mu;
  static std::unordered_map<std::string, std::string> known;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = known.find(crs); it != known.end()) return it->second;
  }
  CrsTransformer probe;
  LonLat ignored;
  Verdict v = probe.ToWgs84(crs, 0, 0, ignored);
  std::string error = !v.ok && v.reason == QuarantineReason::kUnknownCrs ? v.detail : "";
  std::lock_guard<std::mutex> lock(mu);
  if (known.size() < 1024) known.emplace(crs, error);
  return error;
}

Result<DeviceEntry> ReadEntry(const std::string& file, const YAML::Node& key_node,
                              const YAML::Node& value) {
  DeviceEntry e;
  e.key = key_node.Scalar();
  std::string path = "devices." + e.key;
  if (e.key.empty() || e.key.size() > kMaxKeyBytes) {
    return NodeError(file, path, key_node,
                     fmt::format("a device id or pattern of 1 to {} bytes", kMaxKeyBytes));
  }
  e.pattern = IsPattern(e.key);
  e.literal_chars = LiteralChars(e.key);
  e.line = key_node.Mark().is_null() ? 0 : key_node.Mark().line + 1;
  if (value.IsNull()) return e;  // a known device with nothing more to say
  if (!value.IsMap()) return NodeError(file, path, value, "expected a mapping of entry keys");
  OptionReader entry(value, file, path, {&DeviceRegistryEntrySpec()});
  TRIB_RETURN_IF_ERROR(entry.CheckKeys());
  TRIB_ASSIGN_OR_RETURN(e.model, entry.GetString("model"));
  TRIB_ASSIGN_OR_RETURN(std::string firmware, entry.GetString("firmware"));
  if (firmware.size() > 64) return entry.Error("firmware", "longer than 64 bytes");
  if (!firmware.empty()) e.firmware = Intern(firmware);
  TRIB_ASSIGN_OR_RETURN(e.interval, entry.GetDuration("interval"));
  TRIB_ASSIGN_OR_RETURN(e.reference, entry.GetString("reference"));
  if (e.reference.size() > 256) return entry.Error("reference", "longer than 256 bytes");
  TRIB_ASSIGN_OR_RETURN(e.crs, entry.GetString("crs"));
  if (IsWgs84(e.crs)) {
    e.crs.clear();
  } else {
    int code = 0;
    if (!ParseEpsgCode(e.crs, code)) {
      return entry.Error("crs", fmt::format("\"{}\" is not an EPSG code (EPSG:27700)", e.crs));
    }
    if (std::string error = CheckCrs(e.crs); !error.empty()) return entry.Error("crs", error);
  }
  TRIB_RETURN_IF_ERROR(ReadPosition(entry, e));
  TRIB_ASSIGN_OR_RETURN(auto aliases, ReadStringMap(entry, "aliases"));
  for (auto& [field, target] : aliases) {
    FieldAlias a;
    a.metric = FindMetric(target, &a.implied_unit);
    char buf[80];
    if (a.metric == nullptr &&
        (target.size() > 64 || NormalizeMetricName(target, buf, sizeof(buf)) == 0)) {
      return NodeError(file, fmt::format("{}.aliases.{}", path, field),
                       entry.Node("aliases")[field],
                       fmt::format("\"{}\" is not a usable metric name", target));
    }
    a.name = a.metric != nullptr ? a.metric->symbol : Intern(target);
    a.field = std::move(field);
    a.target = std::move(target);
    e.aliases.push_back(std::move(a));
  }
  TRIB_ASSIGN_OR_RETURN(e.units, ReadStringMap(entry, "units"));
  for (const auto& [field, unit] : e.units) {
    if (FindUnit(unit) == nullptr) {
      return NodeError(file, fmt::format("{}.units.{}", path, field), entry.Node("units")[field],
                       fmt::format("unknown unit \"{}\"", unit));
    }
    e.unit_metrics.push_back(FindMetric(field));
  }
  TRIB_RETURN_IF_ERROR(ReadCalibrations(entry, e));
  return e;
}

// Match `p` against `t` (both fully); * any run, ? one byte, [abc] / [a-z] / [!a] a set.
bool GlobAt(std::string_view p, std::string_view t) {
  size_t pi = 0, ti = 0;
  size_t star_p = std::string_view::npos, star_t = 0;
  while (ti < t.size()) {
    if (pi < p.size()) {
      char c = p[pi];
      if (c == '*') {
        star_p = pi++;
        star_t = ti;
        continue;
      }
      if (c == '?') {
        ++pi;
        ++ti;
        continue;
      }
      if (c == '[') {
        size_t close = p.find(']', pi + 2);
        if (close != std::string_view::npos) {
          bool negate = p[pi + 1] == '!' || p[pi + 1] == '^';
          size_t s = pi + (negate ? 2 : 1);
          bool hit = false;
          for (size_t k = s; k < close; ++k) {
            if (k + 2 < close && p[k + 1] == '-') {
              hit = hit || (t[ti] >= p[k] && t[ti] <= p[k + 2]);
              k += 2;
            } else {
              hit = hit || t[ti] == p[k];
            }
          }
          if (hit != negate) {
            pi = close + 1;
            ++ti;
            continue;
          }
        } else if (t[ti] == '[') {  // an unclosed '[' is a literal
          ++pi;
          ++ti;
          continue;
        }
      } else if (c == t[ti]) {
        ++pi;
        ++ti;
        continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    pi = star_p + 1;
    ti = ++star_t;
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

}  // namespace

bool GlobMatch(std::string_view pattern, std::string_view text) {
  return GlobAt(pattern, text);
}

const FieldAlias* DeviceEntry::AliasFor(std::string_view path, std::string_view leaf) const {
  for (const FieldAlias& a : aliases) {
    if (a.field == path) return &a;
  }
  for (const FieldAlias& a : aliases) {
    if (a.field == leaf) return &a;
  }
  return nullptr;
}

std::string_view DeviceEntry::UnitFor(std::string_view path, std::string_view leaf,
                                      const MetricInfo* metric) const {
  for (const auto& [name, unit] : units) {
    if (name == path || name == leaf) return unit;
  }
  if (metric != nullptr) {
    for (size_t i = 0; i < units.size(); ++i) {
      if (unit_metrics[i] == metric) return units[i].second;
    }
  }
  return {};
}

const Calibration* DeviceEntry::CalibrationFor(Symbol metric) const {
  for (const Calibration& c : calibrations) {
    if (c.metric == metric) return &c;
  }
  return nullptr;
}

const SectionSpec& DeviceRegistryEntrySpec() {
  static const SectionSpec spec{
      "registry devices.<id or pattern>",
      "One entry of the device registry file (`processing.registry`), under `devices:` keyed "
      "by an exact device id or a glob pattern (`*` any run, `?` one character, `[a-z]` a "
      "set). An exact id wins over patterns; among patterns the one with the most literal "
      "characters wins, ties go to the first written. Only that entry applies (entries do not "
      "merge). All keys are optional.",
      {
          {"model", OptionType::kString, "", "Device model, for people and lookups."},
          {"firmware", OptionType::kString, "",
           "Firmware version recorded in provenance when the payload reports none."},
          {"interval", OptionType::kDuration, "0s",
           "Expected reporting interval (0: unknown); the window stage's SPARSE rule can "
           "compare sample counts with it."},
          {"crs", OptionType::kString, "",
           "CRS (EPSG code) of the device's x/y coordinates and of an x/y `position`, used "
           "when the payload names none (before the source's `crs`)."},
          {"position", OptionType::kAny, "",
           "Fixed position of a station that sends none: `{lat: 52.51, lon: 13.39}` (WGS84) "
           "or `{x: 530000, y: 180000}` in `crs`. Readings get POSITION_FROM_REGISTRY; a "
           "position in the payload wins."},
          {"aliases", OptionType::kAny, "",
           "Payload field name (path or last segment) or long-shape metric name → metric, "
           "e.g. `{p_25: pm25, t_int: temperature}`."},
          {"units", OptionType::kAny, "",
           "Field or metric name → unit it is sent in, when the payload carries none "
           "(`{pm25: mg/m3}`); a unit in the payload wins, these win over the source's "
           "`mapping.units`."},
          {"calibration", OptionType::kAny, "",
           "Metric → curve `{m: 0.52, b: 1.1, c: 0, date: 2024-03-01}`: y = c·x² + m·x + b "
           "applied to the value in the metric's canonical unit before the bounds check; "
           "readings get CALIBRATED and the date goes to provenance (calibration_date)."},
          {"reference", OptionType::kString, "",
           "Id of the reference station co-located with this (low-cost) sensor. With "
           "`anomaly.drift` enabled, the sensor's hourly means are fitted against the "
           "reference's to detect calibration drift."},
      }};
  return spec;
}

const SectionSpec& DeviceCalibrationSpec() {
  static const SectionSpec spec{
      "registry devices.<id>.calibration.<metric>",
      "A calibration curve y = c·x² + m·x + b in the metric's canonical unit.",
      {
          {"m", OptionType::kDouble, "1", "Slope."},
          {"b", OptionType::kDouble, "0", "Offset, in the canonical unit."},
          {"c", OptionType::kDouble, "0", "Quadratic coefficient."},
          {"date", OptionType::kString, "", "ISO date of the calibration (2024-03-01)."},
      }};
  return spec;
}

Result<std::shared_ptr<const RegistrySnapshot>> RegistrySnapshot::Parse(std::string_view text,
                                                                        const std::string& file) {
  TRIB_ASSIGN_OR_RETURN(YAML::Node root, LoadYamlText(text, file));
  auto snap = std::make_shared<RegistrySnapshot>();
  if (!root.IsDefined() || root.IsNull()) return std::shared_ptr<const RegistrySnapshot>(snap);
  if (!root.IsMap()) return NodeError(file, "(top level)", root, "expected a mapping with devices");
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it->first.Scalar() != "devices") {
      return NodeError(file, it->first.Scalar(), it->first, "unknown key (expected devices)");
    }
  }
  YAML::Node devices = root["devices"];
  if (!devices.IsDefined() || devices.IsNull()) {
    return std::shared_ptr<const RegistrySnapshot>(snap);
  }
  if (!devices.IsMap()) {
    return NodeError(file, "devices", devices,
                     "expected a mapping of device id or pattern to entry");
  }
  for (auto it = devices.begin(); it != devices.end(); ++it) {
    TRIB_ASSIGN_OR_RETURN(DeviceEntry e, ReadEntry(file, it->first, it->second));
    if (!e.pattern && snap->exact_.contains(e.key)) {
      return NodeError(file, "devices." + e.key, it->first, "a second entry for this id");
    }
    for (const DeviceEntry& other : snap->entries_) {
      if (other.pattern && e.pattern && other.key == e.key) {
        return NodeError(file, "devices." + e.key, it->first, "a second entry for this pattern");
      }
    }
    size_t index = snap->entries_.size();
    if (e.pattern) {
      snap->patterns_.push_back(index);
    } else {
      snap->exact_.emplace(e.key, index);
    }
    snap->entries_.push_back(std::move(e));
  }
  std::stable_sort(snap->patterns_.begin(), snap->patterns_.end(), [&](size_t a, size_t b) {
    return snap->entries_[a].literal_chars > snap->entries_[b].literal_chars;
  });
  return std::shared_ptr<const RegistrySnapshot>(snap);
}

Result<std::shared_ptr<const RegistrySnapshot>> RegistrySnapshot::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound("cannot read device registry " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return Parse(ss.str(), path);
}

const DeviceEntry* RegistrySnapshot::Find(std::string_view device) const {
  if (auto it = exact_.find(std::string(device)); it != exact_.end()) return &entries_[it->second];
  for (size_t i : patterns_) {
    if (GlobMatch(entries_[i].key, device)) return &entries_[i];
  }
  return nullptr;
}

DeviceRegistry::DeviceRegistry(std::string path, DurationUs poll_interval)
    : path_(std::move(path)),
      poll_interval_(std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::microseconds(poll_interval))) {}

Result<std::shared_ptr<DeviceRegistry>> DeviceRegistry::Open(std::string path,
                                                             DurationUs poll_interval) {
  std::shared_ptr<DeviceRegistry> r(new DeviceRegistry(std::move(path), poll_interval));
  r->stamp_ = r->Stamp();
  TRIB_ASSIGN_OR_RETURN(r->snapshot_, RegistrySnapshot::Load(r->path_));
  r->generation_ = 1;
  r->last_poll_ = std::chrono::steady_clock::now();
  return r;
}

std::shared_ptr<const RegistrySnapshot> DeviceRegistry::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_;
}

uint64_t DeviceRegistry::generation() const {
  std::lock_guard<std::mutex> lock(mu_);
  return generation_;
}

DurationUs DeviceRegistry::ExpectedInterval(std::string_view device) const {
  const DeviceEntry* e = nullptr;
  std::shared_ptr<const RegistrySnapshot> snap = Snapshot();
  e = snap->Find(device);
  return e != nullptr ? e->interval : 0;
}

DeviceRegistry::FileStamp DeviceRegistry::Stamp() const {
  FileStamp s;
  std::error_code ec;
  s.mtime = std::filesystem::last_write_time(path_, ec);
  if (ec) return s;
  s.size = std::filesystem::file_size(path_, ec);
  if (ec) return s;
  s.exists = true;
  return s;
}

bool DeviceRegistry::Poll() {
  auto now = std::chrono::steady_clock::now();
  if (now - last_poll_ < poll_interval_) return false;
  last_poll_ = now;
  FileStamp s = Stamp();
  if (s == stamp_) return false;
  if (!s.exists) {
    // A file being replaced may be briefly absent; keep the registry and say so once.
    if (!(failed_stamp_ == s)) {
      spdlog::warn("device registry {} is gone; keeping the registry loaded before", path_);
      failed_stamp_ = s;
    }
    return false;
  }
  if (s == failed_stamp_) return false;  // the same broken file, already reported
  uint64_t before = generation();
  Status st = Reload();
  (void)st;  // Reload logged it
  return generation() != before;
}

Status DeviceRegistry::Reload() {
  FileStamp s = Stamp();
  Result<std::shared_ptr<const RegistrySnapshot>> loaded = RegistrySnapshot::Load(path_);
  if (!loaded.ok()) {
    failed_stamp_ = s;
    spdlog::error("device registry not reloaded, keeping the previous one: {}",
                  loaded.status().message());
    return loaded.status();
  }
  stamp_ = s;
  failed_stamp_ = FileStamp{};
  size_t entries = (*loaded)->size();
  {
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_ = std::move(loaded).value();
    ++generation_;
  }
  spdlog::info("device registry {} reloaded ({} entries)", path_, entries);
  return Status::Ok();
}

}  // namespace tributary
