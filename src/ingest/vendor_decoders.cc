#include "ingest/vendor_decoders.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <unordered_set>

namespace tributary {

namespace dom = simdjson::dom;

namespace {

/// Nested objects of a decoded payload read as metrics up to this depth.
constexpr int kMaxMetricDepth = 4;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string_view TypeName(dom::element_type type) {
  switch (type) {
    case dom::element_type::ARRAY:
      return "an array";
    case dom::element_type::OBJECT:
      return "an object";
    case dom::element_type::STRING:
      return "a string";
    case dom::element_type::BOOL:
      return "a boolean";
    case dom::element_type::NULL_VALUE:
      return "null";
    default:
      return "a number";
  }
}

bool Get(dom::element e, std::string_view key, dom::element& out) {
  dom::object object;
  if (e.get_object().get(object) != simdjson::SUCCESS) return false;
  return object.at_key(key).get(out) == simdjson::SUCCESS;
}

bool GetPath(dom::element e, std::initializer_list<std::string_view> keys, dom::element& out) {
  for (std::string_view k : keys) {
    if (!Get(e, k, e)) return false;
  }
  out = e;
  return true;
}

bool IsNumeric(const JsonScalar& s) {
  double ignored = 0;
  return s.kind == JsonKind::kNumber ||
         (s.kind == JsonKind::kString && ParseNumber(s.text, ignored));
}

// Keys of a decoded payload that are never metrics (positions, times, device metadata).
bool IsMetadataKey(std::string_view key) {
  static const std::unordered_set<std::string> keys = [] {
    std::unordered_set<std::string> k;
    for (const std::string& m : FieldMapping::Defaults().metadata) k.insert(Lower(m));
    for (const char* m : {"lat", "latitude", "lon", "lng", "longitude", "time", "timestamp", "ts",
                          "device_id", "id", "unit", "units"}) {
      k.insert(m);
    }
    return k;
  }();
  return !key.empty() && (key.front() == '_' || (key.size() <= 64 && keys.contains(Lower(key))));
}

}  // namespace

struct VendorDecoder::Dom {
  dom::parser parser;
  dom::element root;
  std::deque<std::string> texts;  // strings built for the current record

  std::string_view Keep(std::string s) {
    texts.push_back(std::move(s));
    return texts.back();
  }

  JsonScalar Scalar(dom::element e, std::string_view path) {
    JsonScalar s;
    s.path = path;
    switch (e.type()) {
      case dom::element_type::STRING:
        s.kind = JsonKind::kString;
        s.text = e.get_string().value_unsafe();
        break;
      case dom::element_type::INT64:
      case dom::element_type::UINT64:
      case dom::element_type::DOUBLE:
        s.kind = JsonKind::kNumber;
        s.number = e.get_double().value_unsafe();
        break;
      case dom::element_type::BOOL:
        s.kind = JsonKind::kBool;
        s.boolean = e.get_bool().value_unsafe();
        break;
      case dom::element_type::NULL_VALUE:
        s.kind = JsonKind::kNull;
        break;
      case dom::element_type::OBJECT:
        s.kind = JsonKind::kObject;
        break;
      case dom::element_type::ARRAY:
        s.kind = JsonKind::kArray;
        break;
    }
    return s;
  }

  // A scalar usable as an identifier: integers get their decimal text.
  JsonScalar Id(dom::element e, std::string_view path) {
    JsonScalar s = Scalar(e, path);
    if (e.type() == dom::element_type::INT64) {
      s.text = Keep(fmt::format("{}", e.get_int64().value_unsafe()));
    } else if (e.type() == dom::element_type::UINT64) {
      s.text = Keep(fmt::format("{}", e.get_uint64().value_unsafe()));
    }
    return s;
  }
};

namespace {

bool Fail(DecodeStatus& status, QuarantineReason reason, std::string detail) {
  status.ok = false;
  status.reason = reason;
  status.detail = std::move(detail);
  return false;
}

void SetRole(DecodedRecord& out, FieldRole role, const JsonScalar& s) {
  JsonScalar& slot = out.roles[static_cast<size_t>(role)];
  if (!slot.present() || slot.kind == JsonKind::kNull) slot = s;
}

bool HasPosition(const DecodedRecord& out) {
  return out.role(FieldRole::kLat).present() && out.role(FieldRole::kLon).present();
}

}  // namespace

VendorDecoder::VendorDecoder(JsonDecoder& names) : names_(names), dom_(std::make_unique<Dom>()) {}

VendorDecoder::~VendorDecoder() = default;

DecodeStatus VendorDecoder::Decode(std::string_view payload, DecodedRecord& out) {
  out.Clear();
  dom_->texts.clear();
  DecodeStatus status;
  if (payload.size() > kMaxPayloadBytes) {
    Fail(status, QuarantineReason::kPayloadTooLarge,
         fmt::format("payload of {} bytes exceeds the limit of {} bytes", payload.size(),
                     kMaxPayloadBytes));
    return status;
  }
  if (payload.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    Fail(status, QuarantineReason::kMalformedJson, "empty payload");
    return status;
  }
  if (auto e = dom_->parser.parse(payload.data(), payload.size()).get(dom_->root)) {
    std::string_view message = simdjson::error_message(e);
    if (!message.empty() && message.back() == '.') message.remove_suffix(1);
    Fail(status, QuarantineReason::kMalformedJson, std::string(message));
    return status;
  }
  if (dom_->root.type() != dom::element_type::OBJECT) {
    Fail(status, QuarantineReason::kMalformedJson,
         fmt::format("expected a JSON object, found {}", TypeName(dom_->root.type())));
    return status;
  }
  DecodeRoot(*dom_, out, status);
  return status;
}

namespace {

// Shared by the decoders of decoded LoRaWAN payloads (ttn_v3, chirpstack_v4).
class DecodedPayloadReader {
 public:
  DecodedPayloadReader(VendorDecoder::Dom& dom, JsonDecoder& names, DecodedRecord& out,
                       DecodeStatus& status)
      : dom_(dom), names_(names), out_(out), status_(status) {}

  // Read every metric of `object` (path prefix `prefix`) and a device position in it.
  bool Read(dom::element object, std::string_view prefix, int depth) {
    dom::object fields;
    if (object.get_object().get(fields) != simdjson::SUCCESS) return true;
    dom::element lat, lon;
    bool has_lat = false, has_lon = false;
    for (dom::key_value_pair kv : fields) {
      if (++out_.field_count > kMaxFieldsPerRecord) {
        return Fail(status_, QuarantineReason::kTooManyFields,
                    fmt::format("more than {} fields", kMaxFieldsPerRecord));
      }
      std::string_view key = kv.key;
      std::string lower = key.size() <= 16 ? Lower(key) : std::string();
      if (lower == "lat" || lower == "latitude") {
        lat = kv.value;
        has_lat = true;
        continue;
      }
      if (lower == "lon" || lower == "lng" || lower == "longitude") {
        lon = kv.value;
        has_lon = true;
        continue;
      }
      if (IsMetadataKey(key)) continue;
      std::string_view path =
          dom_.Keep(prefix.empty() ? std::string(key) : fmt::format("{}.{}", prefix, key));
      if (kv.value.type() == dom::element_type::OBJECT) {
        if (depth < kMaxMetricDepth && !Read(kv.value, path, depth + 1)) return false;
        continue;
      }
      JsonScalar s = dom_.Scalar(kv.value, path);
      if (!IsNumeric(s)) continue;  // text fields are metadata
      MetricField& m = out_.metrics.emplace_back();
      names_.ResolveMetricName(key, m);
      m.path = path;
      m.leaf = key;
      m.value = s;
    }
    if (has_lat && has_lon && !HasPosition(out_)) {
      SetRole(out_, FieldRole::kLat,
              dom_.Scalar(lat, dom_.Keep(fmt::format("{}.latitude", prefix))));
      SetRole(out_, FieldRole::kLon,
              dom_.Scalar(lon, dom_.Keep(fmt::format("{}.longitude", prefix))));
    }
    return true;
  }

 private:
  VendorDecoder::Dom& dom_;
  JsonDecoder& names_;
  DecodedRecord& out_;
  DecodeStatus& status_;
};

// Set the position from an object with latitude/longitude when none is set yet.
void PositionFrom(VendorDecoder::Dom& dom, dom::element location, std::string_view path,
                  DecodedRecord& out) {
  if (HasPosition(out)) return;
  dom::element lat, lon;
  if (!Get(location, "latitude", lat) || !Get(location, "longitude", lon)) return;
  out.roles[static_cast<size_t>(FieldRole::kLat)] =
      dom.Scalar(lat, dom.Keep(fmt::format("{}.latitude", path)));
  out.roles[static_cast<size_t>(FieldRole::kLon)] =
      dom.Scalar(lon, dom.Keep(fmt::format("{}.longitude", path)));
}

// The first element of `array` whose `key` is present, with its index.
bool FirstWith(dom::element array, std::string_view key, dom::element& out, size_t& index) {
  dom::array items;
  if (array.get_array().get(items) != simdjson::SUCCESS) return false;
  index = 0;
  for (dom::element item : items) {
    if (Get(item, key, out) && out.type() != dom::element_type::NULL_VALUE) return true;
    ++index;
  }
  return false;
}

class SensorCommunityDecoder final : public VendorDecoder {
 public:
  explicit SensorCommunityDecoder(JsonDecoder& names)
      : VendorDecoder(names), pascal_(FindUnit("Pa")) {}

 private:
  bool DecodeRoot(Dom& dom, DecodedRecord& out, DecodeStatus& status) override {
    out.time_from_arrival = true;
    dom::element e;
    if (Get(dom.root, "esp8266id", e)) {
      SetRole(out, FieldRole::kDeviceId, dom.Id(e, "esp8266id"));
    } else if (GetPath(dom.root, {"sensor", "id"}, e)) {
      SetRole(out, FieldRole::kDeviceId, dom.Id(e, "sensor.id"));
    }
    if (Get(dom.root, "software_version", e)) {
      SetRole(out, FieldRole::kFirmware, dom.Scalar(e, "software_version"));
    }
    if (Get(dom.root, "timestamp", e))
      SetRole(out, FieldRole::kTimestamp, dom.Scalar(e, "timestamp"));
    dom::element values;
    dom::array items;
    if (!Get(dom.root, "sensordatavalues", values) ||
        values.get_array().get(items) != simdjson::SUCCESS) {
      return Fail(status, QuarantineReason::kMissingField, "no sensordatavalues array");
    }
    size_t index = 0;
    for (dom::element item : items) {
      if (++out.field_count > kMaxFieldsPerRecord) {
        return Fail(status, QuarantineReason::kTooManyFields,
                    fmt::format("more than {} sensordatavalues", kMaxFieldsPerRecord));
      }
      dom::element type_element, value;
      std::string_view type;
      if (!Get(item, "value_type", type_element) ||
          type_element.get_string().get(type) != simdjson::SUCCESS || type.empty()) {
        return Fail(status, QuarantineReason::kMissingField,
                    fmt::format("sensordatavalues[{}] has no value_type string", index));
      }
      ++index;
      if (!Get(item, "value", value)) continue;  // no value: a dropout
      JsonScalar s = dom.Scalar(value, type);
      if (type == "GPS_lat") {
        SetRole(out, FieldRole::kLat, s);
        continue;
      }
      if (type == "GPS_lon") {
        SetRole(out, FieldRole::kLon, s);
        continue;
      }
      // "SDS_P2" → "P2", "BME280_temperature" → "temperature"; "noise_LAeq" stays.
      std::string_view quantity = type;
      if (size_t u = type.find('_'); u != std::string_view::npos && u > 0) {
        std::string_view prefix = type.substr(0, u);
        bool sensor = std::all_of(prefix.begin(), prefix.end(), [](char c) {
          return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        });
        if (sensor) quantity = type.substr(u + 1);
      }
      if (quantity.starts_with("GPS") || type.starts_with("GPS_") || quantity == "samples" ||
          quantity == "min_micro" || quantity == "max_micro" || quantity == "signal" ||
          quantity == "interval" || quantity == "pressure_at_sealevel") {
        continue;
      }
      std::string_view name = quantity == "P0"   ? std::string_view("pm1")
                              : quantity == "P1" ? std::string_view("pm10")
                              : quantity == "P2" ? std::string_view("pm25")
                                                 : quantity;
      if (!IsNumeric(s) && s.kind != JsonKind::kNull && s.kind != JsonKind::kString) continue;
      MetricField& m = out.metrics.emplace_back();
      names_.ResolveMetricName(name, m);
      m.path = type;
      m.leaf = type;
      m.value = s;
      if (quantity == "pressure") m.implied_unit = pascal_;  // the firmware sends Pa
    }
    dom::element location;
    if (Get(dom.root, "location", location)) PositionFrom(dom, location, "location", out);
    return true;
  }

  const UnitInfo* pascal_;
};

class TtnV3Decoder final : public VendorDecoder {
 public:
  explicit TtnV3Decoder(JsonDecoder& names) : VendorDecoder(names) {}

 private:
  bool DecodeRoot(Dom& dom, DecodedRecord& out, DecodeStatus& status) override {
    dom::element e;
    if (GetPath(dom.root, {"end_device_ids", "device_id"}, e)) {
      SetRole(out, FieldRole::kDeviceId, dom.Id(e, "end_device_ids.device_id"));
    }
    dom::element uplink;
    if (!Get(dom.root, "uplink_message", uplink) || uplink.type() != dom::element_type::OBJECT) {
      return Fail(status, QuarantineReason::kMissingField,
                  "not an uplink message (no uplink_message object)");
    }
    dom::element decoded;
    if (Get(uplink, "decoded_payload", decoded)) {
      DecodedPayloadReader reader(dom, names_, out, status);
      if (!reader.Read(decoded, "uplink_message.decoded_payload", 1)) return false;
    }
    dom::element rx;
    bool has_rx = Get(uplink, "rx_metadata", rx);
    size_t i = 0;
    if (has_rx && FirstWith(rx, "time", e, i)) {
      SetRole(out, FieldRole::kTimestamp,
              dom.Scalar(e, dom.Keep(fmt::format("uplink_message.rx_metadata[{}].time", i))));
    } else if (Get(uplink, "received_at", e)) {
      SetRole(out, FieldRole::kTimestamp, dom.Scalar(e, "uplink_message.received_at"));
    } else if (Get(dom.root, "received_at", e)) {
      SetRole(out, FieldRole::kTimestamp, dom.Scalar(e, "received_at"));
    }
    dom::element locations;
    if (Get(uplink, "locations", locations)) {
      if (Get(locations, "user", e)) PositionFrom(dom, e, "uplink_message.locations.user", out);
      dom::object others;
      if (!HasPosition(out) && locations.get_object().get(others) == simdjson::SUCCESS) {
        for (dom::key_value_pair kv : others) {
          PositionFrom(dom, kv.value, dom.Keep(fmt::format("uplink_message.locations.{}", kv.key)),
                       out);
        }
      }
    }
    if (has_rx && !HasPosition(out) && FirstWith(rx, "location", e, i)) {
      PositionFrom(dom, e, dom.Keep(fmt::format("uplink_message.rx_metadata[{}].location", i)),
                   out);
    }
    if (GetPath(uplink, {"version_ids", "firmware_version"}, e)) {
      SetRole(out, FieldRole::kFirmware,
              dom.Scalar(e, "uplink_message.version_ids.firmware_version"));
    }
    return true;
  }
};

class ChirpstackV4Decoder final : public VendorDecoder {
 public:
  explicit ChirpstackV4Decoder(JsonDecoder& names) : VendorDecoder(names) {}

 private:
  bool DecodeRoot(Dom& dom, DecodedRecord& out, DecodeStatus& status) override {
    dom::element e;
    if (GetPath(dom.root, {"deviceInfo", "devEui"}, e)) {
      SetRole(out, FieldRole::kDeviceId, dom.Id(e, "deviceInfo.devEui"));
    } else if (GetPath(dom.root, {"deviceInfo", "deviceName"}, e)) {
      SetRole(out, FieldRole::kDeviceId, dom.Id(e, "deviceInfo.deviceName"));
    }
    dom::element object;
    if (Get(dom.root, "object", object)) {
      DecodedPayloadReader reader(dom, names_, out, status);
      if (!reader.Read(object, "object", 1)) return false;
    }
    dom::element rx;
    bool has_rx = Get(dom.root, "rxInfo", rx);
    size_t i = 0;
    if (Get(dom.root, "time", e)) {
      SetRole(out, FieldRole::kTimestamp, dom.Scalar(e, "time"));
    } else if (has_rx && FirstWith(rx, "gwTime", e, i)) {
      SetRole(out, FieldRole::kTimestamp,
              dom.Scalar(e, dom.Keep(fmt::format("rxInfo[{}].gwTime", i))));
    }
    if (has_rx && !HasPosition(out) && FirstWith(rx, "location", e, i)) {
      PositionFrom(dom, e, dom.Keep(fmt::format("rxInfo[{}].location", i)), out);
    }
    return true;
  }
};

class OwmDecoder final : public VendorDecoder {
 public:
  OwmDecoder(JsonDecoder& names, OwmUnits units) : VendorDecoder(names) {
    temperature_unit_ = FindUnit(units == OwmUnits::kStandard ? "K"
                                 : units == OwmUnits::kMetric ? "degC"
                                                              : "degF");
    speed_unit_ = FindUnit(units == OwmUnits::kImperial ? "mph" : "m/s");
  }

 private:
  bool DecodeRoot(Dom& dom, DecodedRecord& out, DecodeStatus& status) override {
    dom::element e;
    if (Get(dom.root, "cod", e)) {
      JsonScalar cod = dom.Id(e, "cod");
      if (cod.text != "200" && !(cod.kind == JsonKind::kNumber && cod.number == 200)) {
        dom::element message;
        std::string_view text;
        if (Get(dom.root, "message", message) &&
            message.get_string().get(text) != simdjson::SUCCESS) {
          text = {};
        }
        return Fail(status, QuarantineReason::kMissingField,
                    fmt::format("OpenWeatherMap error {}: {}", cod.Describe(),
                                text.empty() ? "(no message)" : text.substr(0, 200)));
      }
    }
    int64_t id = 0;
    std::string_view name;
    if (Get(dom.root, "id", e) && e.get_int64().get(id) == simdjson::SUCCESS && id != 0) {
      JsonScalar s;
      s.kind = JsonKind::kString;
      s.text = dom.Keep(fmt::format("owm-{}", id));
      s.path = "id";
      SetRole(out, FieldRole::kDeviceId, s);
    } else if (Get(dom.root, "name", e) && e.get_string().get(name) == simdjson::SUCCESS &&
               !name.empty()) {
      JsonScalar s;
      s.kind = JsonKind::kString;
      s.text = dom.Keep(fmt::format("owm-{}", name));
      s.path = "name";
      SetRole(out, FieldRole::kDeviceId, s);
    }
    if (Get(dom.root, "dt", e)) SetRole(out, FieldRole::kTimestamp, dom.Scalar(e, "dt"));
    dom::element coord;
    if (Get(dom.root, "coord", coord)) {
      if (Get(coord, "lat", e)) SetRole(out, FieldRole::kLat, dom.Scalar(e, "coord.lat"));
      if (Get(coord, "lon", e)) SetRole(out, FieldRole::kLon, dom.Scalar(e, "coord.lon"));
    }
    Metric(dom, out, {"main", "temp"}, "main.temp", "temperature", temperature_unit_);
    Metric(dom, out, {"main", "humidity"}, "main.humidity", "humidity", nullptr);
    Metric(dom, out, {"main", "pressure"}, "main.pressure", "pressure", FindUnit("hPa"));
    Metric(dom, out, {"wind", "speed"}, "wind.speed", "wind_speed", speed_unit_);
    Metric(dom, out, {"wind", "deg"}, "wind.deg", "wind_direction", nullptr);
    Metric(dom, out, {"rain", "1h"}, "rain.1h", "rainfall", FindUnit("mm"));
    return true;
  }

  void Metric(Dom& dom, DecodedRecord& out, std::initializer_list<std::string_view> keys,
              std::string_view path, std::string_view metric, const UnitInfo* unit) {
    dom::element e;
    if (!GetPath(dom.root, keys, e)) return;
    ++out.field_count;
    MetricField& m = out.metrics.emplace_back();
    names_.ResolveMetricName(metric, m);
    m.path = path;
    m.leaf = path.substr(path.find('.') + 1);
    m.value = dom.Scalar(e, path);
    if (unit != nullptr) m.implied_unit = unit;
  }

  const UnitInfo* temperature_unit_ = nullptr;
  const UnitInfo* speed_unit_ = nullptr;
};

}  // namespace

std::unique_ptr<VendorDecoder> VendorDecoder::Make(PayloadFormat format, OwmUnits owm_units,
                                                   JsonDecoder& names) {
  switch (format) {
    case PayloadFormat::kSensorCommunity:
      return std::make_unique<SensorCommunityDecoder>(names);
    case PayloadFormat::kTtnV3:
      return std::make_unique<TtnV3Decoder>(names);
    case PayloadFormat::kChirpstackV4:
      return std::make_unique<ChirpstackV4Decoder>(names);
    case PayloadFormat::kOwm:
      return std::make_unique<OwmDecoder>(names, owm_units);
    case PayloadFormat::kJson:
      break;
  }
  return nullptr;
}

FieldMapping VendorDecoder::MessageMapping(PayloadFormat format) {
  FieldMapping m;
  auto set = [&](FieldRole role, std::vector<std::string> paths) {
    m.roles[static_cast<size_t>(role)] = std::move(paths);
  };
  switch (format) {
    case PayloadFormat::kSensorCommunity:
      set(FieldRole::kDeviceId, {"esp8266id", "sensor.id"});
      set(FieldRole::kTimestamp, {"timestamp"});
      set(FieldRole::kLat, {"GPS_lat", "location.latitude"});
      set(FieldRole::kLon, {"GPS_lon", "location.longitude"});
      break;
    case PayloadFormat::kTtnV3:
      set(FieldRole::kDeviceId, {"end_device_ids.device_id"});
      set(FieldRole::kTimestamp,
          {"uplink_message.rx_metadata[].time", "uplink_message.received_at", "received_at"});
      set(FieldRole::kLat,
          {"uplink_message.decoded_payload.latitude", "uplink_message.locations.user.latitude",
           "uplink_message.rx_metadata[].location.latitude"});
      set(FieldRole::kLon,
          {"uplink_message.decoded_payload.longitude", "uplink_message.locations.user.longitude",
           "uplink_message.rx_metadata[].location.longitude"});
      break;
    case PayloadFormat::kChirpstackV4:
      set(FieldRole::kDeviceId, {"deviceInfo.devEui", "deviceInfo.deviceName"});
      set(FieldRole::kTimestamp, {"time", "rxInfo[].gwTime"});
      set(FieldRole::kLat, {"object.latitude", "rxInfo[].location.latitude"});
      set(FieldRole::kLon, {"object.longitude", "rxInfo[].location.longitude"});
      break;
    case PayloadFormat::kOwm:
      set(FieldRole::kDeviceId, {"id", "name"});
      set(FieldRole::kTimestamp, {"dt"});
      set(FieldRole::kLat, {"coord.lat"});
      set(FieldRole::kLon, {"coord.lon"});
      break;
    case PayloadFormat::kJson:
      return FieldMapping::Defaults();
  }
  m.metric_containers.clear();
  return m;
}

}  // namespace tributary
