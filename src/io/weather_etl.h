// The seed paper's batch ETL: historical readings into PostgreSQL's `weather_readings`.
//
// Input: NDJSON (one JSON object a line) or CSV with a header line, in three shapes:
//   - `tributary simulate` output: {"device_id","sensor_ts" (ms),"lat","lon",
//     "temperature","humidity","pressure","wind_speed","rainfall",...};
//   - the OpenWeatherMap current-weather shape: {"dt" (s),"name" (the city),"id",
//     "main":{"temp","humidity","pressure"},"wind":{"speed"},"weather":[{"description"}]};
//     OWM answers in kelvin unless asked for metric units, so a `main.temp` above 150 is
//     read as kelvin;
//   - the seed's flat rows: timestamp, city, temperature_c (or temperature), humidity,
//     pressure, wind_speed, weather.
// Timestamps are ISO-8601 or epoch numbers (seconds, or milliseconds when above 1e11).
// The city is the record's `city` (or OWM `name`), else `--city`.
//
// Transformation (the seed's Pandas step): mod_high_temp = temperature_c > 23 °C,
// low_temp = temperature_c < 10 °C (this project's choice; the seed gives no number),
// temp_message a sentence for reports; `weather` is the record's text, else "rain" when
// it reports rainfall > 0, else NULL.
//
// Table (created when missing):
//   weather_readings(timestamp TIMESTAMP (UTC), city TEXT, device_id TEXT ('' when
//   none), temperature_c, humidity, pressure, wind_speed DOUBLE PRECISION,
//   weather TEXT, mod_high_temp BOOLEAN, low_temp BOOLEAN, temp_message TEXT,
//   loaded_at TIMESTAMPTZ, UNIQUE (timestamp, city, device_id))
// Rows go in with INSERT ... ON CONFLICT DO NOTHING, so a re-run over the same files
// adds nothing: idempotent.
//
// Accounting: every input record ends loaded, already present (the key was in the
// table, or earlier in the input), not a weather reading (no temperature, humidity,
// pressure or wind speed: e.g. a river gauge), or rejected with its file, line and
// reason. records = loaded + already_present + not_weather + rejected.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/time.h"

namespace tributary {

struct WeatherRow {
  TimeUs timestamp = 0;
  std::string city;
  std::string device_id;
  double temperature_c = NAN, humidity = NAN, pressure = NAN, wind_speed = NAN;
  std::string weather;  ///< empty: NULL
  bool mod_high_temp = false;
  bool low_temp = false;
  std::string temp_message;  ///< empty: NULL (no temperature)
};

/// Outcome of one input record.
enum class WeatherRecordOutcome { kRow, kNotWeather, kRejected };

/// Map one record's fields (dotted paths → text or number) to a row. `reason` says why
/// when it is not a row.
struct WeatherField {
  std::string path;
  std::string text;
  double number = NAN;
  bool is_number = false;
};
WeatherRecordOutcome MapWeatherRecord(const std::vector<WeatherField>& fields,
                                      const std::string& default_city, WeatherRow& row,
                                      std::string& reason);
/// Fill the derived columns from temperature_c (mod_high_temp, low_temp, temp_message).
void DeriveWeatherFlags(WeatherRow& row);

struct WeatherEtlOptions {
  std::vector<std::string> inputs;  ///< files (.ndjson/.jsonl/.json or .csv)
  std::string conninfo;             ///< libpq; empty: the PG* environment variables
  std::string table = "weather_readings";
  std::string city;  ///< for records without one
  size_t batch_rows = 1000;
};

struct WeatherEtlReport {
  uint64_t records = 0;
  uint64_t loaded = 0;
  uint64_t already_present = 0;
  uint64_t not_weather = 0;
  uint64_t rejected = 0;
  std::vector<std::string> rejections;  ///< "file:line: reason", the first 20
  std::string ToText() const;
};

/// Read every input and load it; an unreadable file or a database error fails the run
/// (rows committed before stay: the re-run is idempotent).
Result<WeatherEtlReport> RunWeatherEtl(const WeatherEtlOptions& options);

}  // namespace tributary
