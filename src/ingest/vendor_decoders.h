// Decoders of vendor payload formats into the DecodedRecord the ingestion stage checks.
//
//   sensor_community — luftdaten firmware push {"esp8266id", "software_version",
//       "sensordatavalues": [{"value_type": "SDS_P2", "value": "4.57"}, ...]} or the
//       data.sensor.community API row (adds "timestamp", "location", "sensor").
//       value_type: [SENSOR_]P0 → pm1, P1 → pm10, P2 → pm25, temperature, humidity,
//       pressure (sent in Pa, converted to hPa), GPS_lat/GPS_lon → position; samples,
//       min_micro, max_micro, signal, interval, GPS_* else are metadata; other names
//       resolve through the metric table (unknown numeric ones become new metrics, as
//       in the wide json shape). Device id: esp8266id, else sensor.id. Without a
//       timestamp the arrival time is the event time.
//   ttn_v3 — The Things Stack v3 uplink: end_device_ids.device_id; metrics from
//       uplink_message.decoded_payload; time from the first rx_metadata[].time (gateway,
//       GPS-synchronised), else uplink_message.received_at, else received_at; position
//       from decoded_payload latitude/longitude (the device's GPS), else
//       uplink_message.locations.user (registry), else the first rx_metadata[].location
//       (the gateway's); firmware from uplink_message.version_ids.firmware_version.
//   chirpstack_v4 — ChirpStack v4 uplink event: deviceInfo.devEui, else
//       deviceInfo.deviceName; metrics from object; time, else rxInfo[].gwTime;
//       position from object latitude/longitude, else the first rxInfo[].location.
//   owm — OpenWeatherMap current weather: device "owm-<id>" (else "owm-<name>"),
//       coord.lat/lon, dt (epoch s), main.temp (K, °C or °F by the `owm_units` option),
//       main.humidity (%), main.pressure (hPa), wind.speed (m/s, mph when imperial),
//       wind.deg, rain.1h (mm). An error document ({"cod": "404", "message": ...}) is
//       quarantined as missing_field with OpenWeatherMap's message.
//
// Metrics in decoded payloads (ttn_v3, chirpstack_v4) follow the wide json rules: a
// numeric field is a metric unless it is a position, a time or a known metadata key
// (battery, rssi, ...); nested objects are read with dotted paths.
//
// Parsing uses simdjson's DOM parser (these payloads nest arrays, which the field
// mapping of the json format does not address); strings in the record point into the
// decoder and stay valid until its next Decode. Not thread-safe: one per source/worker.
#pragma once

#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "ingest/json_decoder.h"
#include "ingest/source_options.h"

namespace tributary {

class VendorDecoder {
 public:
  /// A decoder of `format` (not kJson). Metric names resolve through `names`, which
  /// must outlive the decoder.
  static std::unique_ptr<VendorDecoder> Make(PayloadFormat format, OwmUnits owm_units,
                                             JsonDecoder& names);
  /// The paths a format reads per role, for messages ("missing device id (...)").
  static FieldMapping MessageMapping(PayloadFormat format);

  virtual ~VendorDecoder();
  VendorDecoder(const VendorDecoder&) = delete;
  VendorDecoder& operator=(const VendorDecoder&) = delete;

  /// Decode `payload` into `out` (cleared first).
  DecodeStatus Decode(std::string_view payload, DecodedRecord& out);

  struct Dom;  ///< the simdjson DOM parser and helpers (vendor_decoders.cc)

 protected:
  explicit VendorDecoder(JsonDecoder& names);

  // Read the parsed document's root object into `out`; false with `status` set on failure.
  virtual bool DecodeRoot(Dom& dom, DecodedRecord& out, DecodeStatus& status) = 0;

  JsonDecoder& names_;
  std::unique_ptr<Dom> dom_;
};

}  // namespace tributary
