#include "ingest/metrics.h"

#include <string>
#include <unordered_map>
#include <vector>

namespace tributary {

namespace {

// Molar volume of an ideal gas at 25 °C and 1013.25 hPa, L/mol (the EPA/WHO reference).
constexpr double kMolarVolume = 24.45;

std::vector<MetricInfo> BuildMetrics() {
  // Bounds: see metrics.h for the seed numbers; the others are cited here.
  std::vector<MetricInfo> m = {
      {"pm1", "ug/m3", 0, 1000, 0, false, "PM1 mass concentration (as PM2.5)"},
      {"pm25", "ug/m3", 0, 1000, 0, false,
       "PM2.5 mass concentration (seed 000 plausibility range 0-1000)"},
      // Dust storms push PM10 well past 1000 µg/m³ (hourly values of 2000+ are reported
      // in desert-dust events); low-cost optical sensors saturate near 1000-2000.
      {"pm10", "ug/m3", 0, 2000, 0, false, "PM10 mass concentration"},
      // Gases in ppb: the top of the US AQI scale (2049 ppb NO2, 604 ppb O3, 1004 ppb
      // SO2, 50.4 ppm CO) with headroom (about 4000, 2000, 3000 ug/m3 and 200 mg/m3).
      {"no2", "ppb", 0, 2500, 46.0055, false, "nitrogen dioxide"},
      {"o3", "ppb", 0, 1000, 47.9982, false, "ozone"},
      {"so2", "ppb", 0, 1200, 64.066, false, "sulphur dioxide"},
      {"co", "ppb", 0, 175000, 28.010, false, "carbon monoxide"},
      // Outdoor ~420 ppm, crowded rooms 5000+, NDIR sensors read up to 40000-50000 ppm.
      {"co2", "ppm", 0, 50000, 44.0095, false, "carbon dioxide"},
      {"temperature", "degC", -50, 60, 0, false, "air temperature (seed 001: -50..60)"},
      {"humidity", "%", 0, 100, 0, false, "relative humidity"},
      // Station pressure: ~540 hPa at 5000 m elevation; sea-level record 870-1084 hPa.
      {"pressure", "hPa", 500, 1100, 0, false, "atmospheric pressure"},
      // The strongest measured gust is 113 m/s (Barrow Island, 1996).
      {"wind_speed", "m/s", 0, 120, 0, false, "wind speed"},
      {"wind_direction", "deg", 0, 360, 0, false, "wind direction (from, clockwise from north)"},
      // Per report; the 24-hour world record is 1825 mm.
      {"rainfall", "mm", 0, 2000, 0, false, "precipitation amount since the last report"},
      {"soil_moisture", "%", 0, 100, 0, false, "volumetric water content (seed 001: 0..100)"},
      // Gauge height above the gauge datum; the datum may sit above low water.
      {"stage", "m", -10, 100, 0, false, "river or lake stage"},
      {"flow", "m3/s", 0, 1e6, 0, false, "discharge (seed 001: 0..1e6)"},
      {"water_temperature", "degC", -5, 50, 0, false, "water temperature"},
      {"dissolved_oxygen", "mg/L", 0, 20, 0, true, "dissolved oxygen (seed 001: 0..20)"},
      // Seawater is ~50000-55000 µS/cm.
      {"conductivity", "uS/cm", 0, 100000, 0, false, "electrical conductivity"},
      // The range of common nephelometric turbidity probes.
      {"turbidity", "NTU", 0, 4000, 0, false, "turbidity"},
      {"ph", "pH", 0, 14, 0, false, "pH"},
  };
  for (MetricInfo& info : m) {
    info.symbol = Intern(info.name);
    info.unit_info = FindUnit(info.unit);
  }
  return m;
}

const std::vector<MetricInfo>& Metrics() {
  static const std::vector<MetricInfo>* metrics = new std::vector<MetricInfo>(BuildMetrics());
  return *metrics;
}

struct Alias {
  std::string_view alias;
  std::string_view metric;
  std::string_view implied_unit;  // "" when none
};

// Aliases are matched after NormalizeMetricName, so "PM2.5", "pm2_5" and "pm-2.5" need
// one entry ("pm25"). Canonical names match themselves.
const std::vector<Alias>& Aliases() {
  static const std::vector<Alias> aliases = {
      {"pm1.0", "pm1", ""},
      {"pm2.5", "pm25", ""},
      {"pm10.0", "pm10", ""},
      {"sdsp2", "pm25", ""},  // sensor.community SDS011: P2 is PM2.5
      {"p2", "pm25", ""},
      {"pm25ugm3", "pm25", "ug/m3"},
      {"sdsp1", "pm10", ""},  // sensor.community SDS011: P1 is PM10
      {"p1", "pm10", ""},
      {"nitrogendioxide", "no2", ""},
      {"ozone", "o3", ""},
      {"sulphurdioxide", "so2", ""},
      {"sulfurdioxide", "so2", ""},
      {"carbonmonoxide", "co", ""},
      {"carbondioxide", "co2", ""},
      {"temp", "temperature", ""},
      {"airtemperature", "temperature", ""},
      {"airtemp", "temperature", ""},
      {"temperaturec", "temperature", "degC"},
      {"tempc", "temperature", "degC"},
      {"temperaturef", "temperature", "degF"},
      {"tempf", "temperature", "degF"},
      {"temperaturek", "temperature", "K"},
      {"rh", "humidity", ""},
      {"relativehumidity", "humidity", ""},
      {"hum", "humidity", ""},
      {"press", "pressure", ""},
      {"baro", "pressure", ""},
      {"airpressure", "pressure", ""},
      {"barometricpressure", "pressure", ""},
      {"pressurehpa", "pressure", "hPa"},
      {"pressurepa", "pressure", "Pa"},
      {"windspeed", "wind_speed", ""},
      {"wspd", "wind_speed", ""},
      {"windspeedkmh", "wind_speed", "km/h"},
      {"windspeedmph", "wind_speed", "mph"},
      {"winddirection", "wind_direction", ""},
      {"winddir", "wind_direction", ""},
      {"wdir", "wind_direction", ""},
      {"rain", "rainfall", ""},
      {"precipitation", "rainfall", ""},
      {"precip", "rainfall", ""},
      {"soil", "soil_moisture", ""},  // seed 001 names it "soil"
      {"soilmoisture", "soil_moisture", ""},
      {"vwc", "soil_moisture", ""},
      {"waterlevel", "stage", ""},
      {"gaugeheight", "stage", ""},
      {"level", "stage", ""},
      {"discharge", "flow", ""},
      {"streamflow", "flow", ""},
      {"watertemperature", "water_temperature", ""},
      {"watertemp", "water_temperature", ""},
      {"do", "dissolved_oxygen", ""},  // seed 001 names it "do"
      {"dissolvedoxygen", "dissolved_oxygen", ""},
      {"ec", "conductivity", ""},
      {"specificconductance", "conductivity", ""},
      {"turb", "turbidity", ""},
  };
  return aliases;
}

struct IndexEntry {
  const MetricInfo* metric;
  const UnitInfo* implied;
};

const std::unordered_map<std::string, IndexEntry>& NameIndex() {
  static const auto* index = [] {
    auto* idx = new std::unordered_map<std::string, IndexEntry>();
    auto find_canonical = [](std::string_view name) -> const MetricInfo* {
      for (const MetricInfo& m : Metrics()) {
        if (m.name == name) return &m;
      }
      return nullptr;
    };
    char buf[64];
    for (const MetricInfo& m : Metrics()) {
      size_t n = NormalizeMetricName(m.name, buf, sizeof(buf));
      idx->emplace(std::string(buf, n), IndexEntry{&m, nullptr});
    }
    for (const Alias& a : Aliases()) {
      size_t n = NormalizeMetricName(a.alias, buf, sizeof(buf));
      const UnitInfo* implied = a.implied_unit.empty() ? nullptr : FindUnit(a.implied_unit);
      idx->emplace(std::string(buf, n), IndexEntry{find_canonical(a.metric), implied});
    }
    return idx;
  }();
  return *index;
}

}  // namespace

std::span<const MetricInfo> AllMetrics() {
  return Metrics();
}

size_t NormalizeMetricName(std::string_view name, char* out, size_t cap) {
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  size_t n = 0;
  for (size_t i = 0; i < name.size(); ++i) {
    auto c = static_cast<unsigned char>(name[i]);
    char put = 0;
    if (c == '.' || c == '_' || c == '-' || c == ' ' || c == '\t') {
      // Between digits a separator is a decimal point: "pm1_0" is PM1.0, not PM10.
      bool decimal = n > 0 && is_digit(out[n - 1]) && i + 1 < name.size() && is_digit(name[i + 1]);
      if (!decimal) continue;
      put = '.';
    } else {
      put = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : static_cast<char>(c);
    }
    if (n == cap) return 0;
    out[n++] = put;
  }
  return n;
}

const MetricInfo* FindMetric(std::string_view name, const UnitInfo** implied) {
  if (implied != nullptr) *implied = nullptr;
  char buf[64];
  size_t n = NormalizeMetricName(name, buf, sizeof(buf));
  if (n == 0) return nullptr;
  const auto& index = NameIndex();
  auto it = index.find(std::string(buf, n));
  if (it == index.end()) return nullptr;
  if (implied != nullptr) *implied = it->second.implied;
  return it->second.metric;
}

const MetricInfo* MetricBySymbol(Symbol name) {
  for (const MetricInfo& m : Metrics()) {
    if (m.symbol == name) return &m;
  }
  return nullptr;
}

MetricConversion GasMassConversion(const MetricInfo& metric) {
  MetricConversion out;
  if (metric.molar_mass <= 0 || metric.unit_info == nullptr || metric.unit != "ppb") return out;
  // µg/m³ = ppb × M / 24.45; CO is reported in mg/m³ (EU directive 2008/50/EC).
  out.known = true;
  out.conversion.scale = metric.molar_mass / kMolarVolume;
  if (metric.name == "co") out.conversion.scale /= 1000.0;
  return out;
}

std::string_view GasMassUnit(const MetricInfo& metric) {
  if (!GasMassConversion(metric).known) return {};
  return metric.name == "co" ? "mg/m3" : "ug/m3";
}

MetricConversion ConversionTo(const MetricInfo& metric, const UnitInfo* unit) {
  MetricConversion out;
  const UnitInfo* canonical = metric.unit_info;
  if (unit == nullptr || canonical == nullptr) return out;
  if (unit->dimension == canonical->dimension) {
    out.known = true;
    out.conversion = ConversionBetween(*unit, *canonical);
    return out;
  }
  // Through the bases: mixing ratio (ppb) ↔ mass concentration (µg/m³).
  double base_factor = 0;  // canonical base = input base × base_factor
  if (metric.molar_mass > 0) {
    if (unit->dimension == Dimension::kMixingRatio &&
        canonical->dimension == Dimension::kMassConcentration) {
      base_factor = metric.molar_mass / kMolarVolume;
    } else if (unit->dimension == Dimension::kMassConcentration &&
               canonical->dimension == Dimension::kMixingRatio) {
      base_factor = kMolarVolume / metric.molar_mass;
    }
  }
  if (metric.ppm_by_mass && unit->dimension == Dimension::kMixingRatio &&
      canonical->dimension == Dimension::kMassConcentration) {
    // 1 ppm by mass in water = 1 mg/L = 1e6 µg/m³, so one ppb (the base) is 1000 µg/m³.
    base_factor = 1000.0;
  }
  if (base_factor == 0) return out;
  out.known = true;
  out.conversion.scale = unit->scale * base_factor / canonical->scale;
  out.conversion.offset = 0;
  return out;
}

}  // namespace tributary
