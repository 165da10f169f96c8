#include "io/weather_etl.h"

#include <fmt/format.h>
#include <simdjson.h>

#include <charconv>
#include <fstream>

#include "io/sinks/pg_conn.h"

namespace tributary {

namespace {

constexpr size_t kMaxRejectionsShown = 20;

const WeatherField* Find(const std::vector<WeatherField>& fields,
                         std::initializer_list<const char*> paths) {
  for (const char* p : paths) {
    for (const WeatherField& f : fields) {
      if (f.path == p) return &f;
    }
  }
  return nullptr;
}

double NumberOf(const std::vector<WeatherField>& fields, std::initializer_list<const char*> paths,
                const char*& used) {
  for (const char* p : paths) {
    for (const WeatherField& f : fields) {
      if (f.path != p) continue;
      if (f.is_number) {
        used = p;
        return f.number;
      }
    }
  }
  used = nullptr;
  return NAN;
}

bool ParseDouble(std::string_view s, double& out) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

void Flatten(simdjson::dom::element e, const std::string& path, std::vector<WeatherField>& out) {
  using simdjson::dom::element_type;
  WeatherField f;
  f.path = path;
  switch (e.type()) {
    case element_type::OBJECT:
      for (auto [k, v] : e.get_object()) {
        Flatten(v, path.empty() ? std::string(k) : path + "." + std::string(k), out);
      }
      return;
    case element_type::ARRAY: {
      size_t i = 0;
      for (simdjson::dom::element v : e.get_array())
        Flatten(v, path + "." + std::to_string(i++), out);
      return;
    }
    case element_type::STRING:
      f.text = std::string(e.get_string().value());
      f.is_number = ParseDouble(f.text, f.number);
      break;
    case element_type::INT64:
      f.number = static_cast<double>(e.get_int64().value());
      f.is_number = true;
      break;
    case element_type::UINT64:
      f.number = static_cast<double>(e.get_uint64().value());
      f.is_number = true;
      break;
    case element_type::DOUBLE:
      f.number = e.get_double().value();
      f.is_number = true;
      break;
    case element_type::BOOL:
      f.text = e.get_bool().value() ? "true" : "false";
      break;
    case element_type::NULL_VALUE:
      return;
  }
  if (f.is_number) f.text = fmt::format("{}", f.number);
  out.push_back(std::move(f));
}

// RFC 4180 fields of one CSV line (quotes, doubled quotes; no newlines inside fields).
std::vector<std::string> SplitCsv(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        out.back().push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        out.back().push_back(c);
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else {
      out.back().push_back(c);
    }
  }
  return out;
}

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string SqlDouble(double v) {
  return std::isfinite(v) ? fmt::format("{}", v) : std::string("NULL");
}

std::string SqlTextOrNull(const std::string& s) {
  return s.empty() ? std::string("NULL") : PgQuoteLiteral(s);
}

// Batches rows into multi-row INSERT ... ON CONFLICT DO NOTHING statements.
class WeatherLoader {
 public:
  WeatherLoader(PgConnection& db, std::string table, size_t batch)
      : db_(db), table_(PgQuoteIdent(table)), batch_(batch) {}

  Status Add(const WeatherRow& r, WeatherEtlReport& report) {
    if (!values_.empty()) values_ += ",\n";
    values_ +=
        fmt::format("('{}', {}, {}, {}, {}, {}, {}, {}, {}, {}, {})", FormatTime(r.timestamp),
                    PgQuoteLiteral(r.city), PgQuoteLiteral(r.device_id), SqlDouble(r.temperature_c),
                    SqlDouble(r.humidity), SqlDouble(r.pressure), SqlDouble(r.wind_speed),
                    SqlTextOrNull(r.weather),
                    std::isfinite(r.temperature_c) ? (r.mod_high_temp ? "true" : "false") : "NULL",
                    std::isfinite(r.temperature_c) ? (r.low_temp ? "true" : "false") : "NULL",
                    SqlTextOrNull(r.temp_message));
    if (++pending_ >= batch_) return Flush(report);
    return Status::Ok();
  }

  Status Flush(WeatherEtlReport& report) {
    if (pending_ == 0) return Status::Ok();
    std::string sql = "INSERT INTO " + table_ +
                      " (timestamp, city, device_id, temperature_c, humidity, pressure, "
                      "wind_speed, weather, mod_high_temp, low_temp, temp_message) VALUES\n" +
                      values_ + "\nON CONFLICT (timestamp, city, device_id) DO NOTHING";
    TRIB_ASSIGN_OR_RETURN(PgResult res, db_.Query(sql));
    uint64_t inserted = res.Affected();
    report.loaded += inserted;
    report.already_present += pending_ - inserted;
    values_.clear();
    pending_ = 0;
    return Status::Ok();
  }

 private:
  PgConnection& db_;
  std::string table_;
  size_t batch_;
  std::string values_;
  size_t pending_ = 0;
};

}  // namespace

void DeriveWeatherFlags(WeatherRow& row) {
  double t = row.temperature_c;
  if (!std::isfinite(t)) {
    row.mod_high_temp = row.low_temp = false;
    row.temp_message.clear();
    return;
  }
  row.mod_high_temp = t > 23;
  row.low_temp = t < 10;
  if (t >= 30) {
    row.temp_message = "Hot: stay hydrated and avoid the midday sun.";
  } else if (row.mod_high_temp) {
    row.temp_message = "Warm: light clothes will do.";
  } else if (t <= 0) {
    row.temp_message = "Freezing: dress warmly and watch for ice.";
  } else if (row.low_temp) {
    row.temp_message = "Cool: take a jacket.";
  } else {
    row.temp_message = "Mild: pleasant temperatures.";
  }
}

WeatherRecordOutcome MapWeatherRecord(const std::vector<WeatherField>& fields,
                                      const std::string& default_city, WeatherRow& row,
                                      std::string& reason) {
  row = WeatherRow{};
  const WeatherField* ts = Find(fields, {"timestamp", "sensor_ts", "dt", "time", "ts", "datetime"});
  if (ts == nullptr) {
    reason = "no timestamp (timestamp, sensor_ts or dt)";
    return WeatherRecordOutcome::kRejected;
  }
  if (ts->is_number) {
    double v = ts->number;
    if (!std::isfinite(v) || v < 0 || v > 1e15) {
      reason = "timestamp out of range: " + ts->text;
      return WeatherRecordOutcome::kRejected;
    }
    row.timestamp = v > 1e11 ? static_cast<TimeUs>(std::llround(v * kMicrosPerMilli))
                             : static_cast<TimeUs>(std::llround(v * kMicrosPerSecond));
  } else {
    Result<TimeUs> t = ParseTime(ts->text);
    if (!t.ok()) {
      reason = "bad timestamp '" + ts->text + "': " + t.status().message();
      return WeatherRecordOutcome::kRejected;
    }
    row.timestamp = *t;
  }
  const char* used = nullptr;
  row.temperature_c = NumberOf(fields, {"temperature_c", "temperature", "temp", "main.temp"}, used);
  if (used != nullptr && std::string_view(used) == "main.temp" && row.temperature_c > 150) {
    row.temperature_c -= 273.15;  // OWM's default (standard) units are kelvin
  }
  row.humidity = NumberOf(fields, {"humidity", "main.humidity"}, used);
  row.pressure = NumberOf(fields, {"pressure", "main.pressure"}, used);
  row.wind_speed = NumberOf(fields, {"wind_speed", "wind.speed"}, used);
  if (std::isnan(row.temperature_c) && std::isnan(row.humidity) && std::isnan(row.pressure) &&
      std::isnan(row.wind_speed)) {
    reason = "no temperature, humidity, pressure or wind speed";
    return WeatherRecordOutcome::kNotWeather;
  }
  for (double v : {row.temperature_c, row.humidity, row.pressure, row.wind_speed}) {
    if (std::isinf(v)) {
      reason = "a value is not finite";
      return WeatherRecordOutcome::kRejected;
    }
  }
  const WeatherField* city = Find(fields, {"city", "name", "city_name"});
  row.city = city != nullptr && !city->text.empty() ? city->text : default_city;
  if (row.city.empty()) {
    reason = "no city in the record (city or name) and no --city given";
    return WeatherRecordOutcome::kRejected;
  }
  const WeatherField* dev = Find(fields, {"device_id", "sensor_id", "station_id", "id"});
  if (dev != nullptr) row.device_id = dev->text;
  const WeatherField* weather =
      Find(fields, {"weather", "weather.0.description", "weather.0.main", "description"});
  if (weather != nullptr && !weather->is_number) {
    row.weather = weather->text;
  } else {
    double rain = NumberOf(fields, {"rainfall", "rain", "rain.1h", "precipitation"}, used);
    if (rain > 0) row.weather = "rain";
  }
  DeriveWeatherFlags(row);
  return WeatherRecordOutcome::kRow;
}

std::string WeatherEtlReport::ToText() const {
  std::string out = fmt::format(
      "etl: {} records: {} loaded, {} already present, {} not weather readings, {} rejected\n",
      records, loaded, already_present, not_weather, rejected);
  for (const std::string& r : rejections) out += "  rejected " + r + "\n";
  if (rejected > rejections.size()) {
    out += fmt::format("  ... and {} more rejected\n", rejected - rejections.size());
  }
  return out;
}

Result<WeatherEtlReport> RunWeatherEtl(const WeatherEtlOptions& o) {
  if (o.inputs.empty()) return Status::Invalid("etl: no input files");
  PgConnection db;
  TRIB_RETURN_IF_ERROR(db.Connect(o.conninfo, "tributary-etl", 10));
  std::string table = PgQuoteIdent(o.table);
  TRIB_RETURN_IF_ERROR(db.Exec("CREATE TABLE IF NOT EXISTS " + table + R"( (
  timestamp TIMESTAMP NOT NULL,
  city TEXT NOT NULL,
  device_id TEXT NOT NULL DEFAULT '',
  temperature_c DOUBLE PRECISION,
  humidity DOUBLE PRECISION,
  pressure DOUBLE PRECISION,
  wind_speed DOUBLE PRECISION,
  weather TEXT,
  mod_high_temp BOOLEAN,
  low_temp BOOLEAN,
  temp_message TEXT,
  loaded_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  UNIQUE (timestamp, city, device_id)
))"));
  WeatherEtlReport report;
  WeatherLoader loader(db, o.table, std::max<size_t>(1, o.batch_rows));
  simdjson::dom::parser parser;
  for (const std::string& path : o.inputs) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status::NotFound("etl: cannot read " + path);
    bool csv = EndsWith(Lower(path), ".csv");
    std::vector<std::string> header;
    std::string line;
    uint64_t line_no = 0;
    std::vector<WeatherField> fields;
    while (std::getline(in, line)) {
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      if (csv && header.empty()) {
        for (std::string& h : SplitCsv(line)) header.push_back(Lower(h));
        continue;
      }
      ++report.records;
      fields.clear();
      std::string reason;
      if (csv) {
        std::vector<std::string> cells = SplitCsv(line);
        if (cells.size() != header.size()) {
          reason = fmt::format("{} fields, the header has {}", cells.size(), header.size());
        }
        for (size_t i = 0; i < cells.size() && i < header.size() && reason.empty(); ++i) {
          if (cells[i].empty()) continue;
          WeatherField f;
          f.path = header[i];
          f.text = cells[i];
          f.is_number = ParseDouble(cells[i], f.number);
          fields.push_back(std::move(f));
        }
      } else {
        simdjson::dom::element doc;
        auto err = parser.parse(line).get(doc);
        if (err) {
          reason = std::string("not JSON: ") + simdjson::error_message(err);
        } else if (!doc.is_object()) {
          reason = "not a JSON object";
        } else {
          Flatten(doc, "", fields);
        }
      }
      WeatherRow row;
      WeatherRecordOutcome outcome = WeatherRecordOutcome::kRejected;
      if (reason.empty()) outcome = MapWeatherRecord(fields, o.city, row, reason);
      switch (outcome) {
        case WeatherRecordOutcome::kRow:
          TRIB_RETURN_IF_ERROR(loader.Add(row, report).WithContext("etl " + path));
          break;
        case WeatherRecordOutcome::kNotWeather:
          ++report.not_weather;
          break;
        case WeatherRecordOutcome::kRejected:
          ++report.rejected;
          if (report.rejections.size() < kMaxRejectionsShown) {
            report.rejections.push_back(fmt::format("{}:{}: {}", path, line_no, reason));
          }
          break;
      }
    }
    if (in.bad()) return Status::Io("etl: read error in " + path);
  }
  TRIB_RETURN_IF_ERROR(loader.Flush(report).WithContext("etl"));
  return report;
}

}  // namespace tributary
