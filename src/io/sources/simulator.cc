#include "io/sources/simulator.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <thread>

#include "core/pipeline_config.h"
#include "core/registry.h"
#include "stream/checkpoint.h"

namespace tributary {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kDegToRad = kPi / 180.0;
constexpr double kEarthRadiusKm = 6371.0088;
constexpr double kMicrosPerHourD = static_cast<double>(kMicrosPerHour);
constexpr double kMicrosPerDayD = static_cast<double>(kMicrosPerDay);

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// A stateless hash of (seed, a, b) to a uniform double in [0, 1).
double HashUniform(uint64_t seed, uint64_t a, uint64_t b) {
  uint64_t s = seed ^ (a * 0xd1b54a32d192ed03ULL) ^ (b * 0x8cb92ba72f3d8dd7ULL);
  SplitMix64(s);
  return static_cast<double>(SplitMix64(s) >> 11) * 0x1.0p-53;
}

double Clamp(double v, double lo, double hi) {
  return std::min(hi, std::max(lo, v));
}

void AppendInt(std::string& out, int64_t v) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, res.ptr);
}

// Fixed-point decimal with `decimals` digits; never writes "-0.0".
void AppendFixed(std::string& out, double v, int decimals) {
  double scale = std::pow(10.0, decimals);
  v = std::round(v * scale) / scale;
  if (v == 0.0) v = 0.0;  // turns -0 into +0
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed, decimals);
  out.append(buf, res.ptr);
}

int MetricDecimals(std::string_view metric) {
  if (metric == "temperature" || metric == "wind_speed" || metric == "flow") return 2;
  if (metric == "stage") return 3;
  return 1;
}

// Local solar hour of day in [0, 24) at longitude `lon`.
double SolarHour(TimeUs t, double lon) {
  double h = static_cast<double>(t) / kMicrosPerHourD + lon / 15.0;
  h = std::fmod(h, 24.0);
  return h < 0 ? h + 24.0 : h;
}

}  // namespace

// ---------------------------------------------------------------------------
// Names

std::string_view DeviceTypeName(DeviceType type) {
  switch (type) {
    case DeviceType::kAirQuality:
      return "air_quality";
    case DeviceType::kWeather:
      return "weather";
    case DeviceType::kRiver:
      return "river";
    case DeviceType::kSoil:
      return "soil";
  }
  return "?";
}

std::string_view DeviceTypePrefix(DeviceType type) {
  switch (type) {
    case DeviceType::kAirQuality:
      return "aq";
    case DeviceType::kWeather:
      return "ws";
    case DeviceType::kRiver:
      return "rg";
    case DeviceType::kSoil:
      return "sm";
  }
  return "?";
}

const std::vector<std::string_view>& DeviceTypeMetrics(DeviceType type) {
  static const std::vector<std::string_view> kAq = {"pm25", "pm10", "no2", "temperature",
                                                    "humidity"};
  static const std::vector<std::string_view> kWs = {"temperature", "humidity", "pressure",
                                                    "wind_speed"};
  static const std::vector<std::string_view> kRg = {"stage", "flow"};
  static const std::vector<std::string_view> kSm = {"soil_moisture", "temperature"};
  switch (type) {
    case DeviceType::kAirQuality:
      return kAq;
    case DeviceType::kWeather:
      return kWs;
    case DeviceType::kRiver:
      return kRg;
    case DeviceType::kSoil:
      return kSm;
  }
  return kAq;
}

std::string_view MalformedKindName(MalformedKind kind) {
  switch (kind) {
    case MalformedKind::kTruncatedJson:
      return "truncated_json";
    case MalformedKind::kInvalidJson:
      return "invalid_json";
    case MalformedKind::kNanCoordinate:
      return "nan_coordinate";
    case MalformedKind::kLatOutOfRange:
      return "lat_out_of_range";
    case MalformedKind::kUnknownUnit:
      return "unknown_unit";
  }
  return "?";
}

// ---------------------------------------------------------------------------
// Random numbers

SimRng::SimRng(uint64_t seed) {
  uint64_t s = seed;
  for (uint64_t& x : s_) x = SplitMix64(s);
}

uint64_t SimRng::NextU64() {
  auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  uint64_t result = rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double SimRng::Normal() {
  double u1 = 1.0 - Uniform();  // (0, 1]
  double u2 = Uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * kPi * u2);
}

// ---------------------------------------------------------------------------
// UTM (Krüger series to n^6, Karney 2011)

void LatLonToUtm(double lat, double lon, int zone, bool south, double& easting, double& northing) {
  constexpr double kA = 6378137.0;
  constexpr double kF = 1.0 / 298.257223563;
  constexpr double kK0 = 0.9996;
  const double n = kF / (2.0 - kF);
  const double n2 = n * n, n3 = n2 * n, n4 = n3 * n, n5 = n4 * n, n6 = n5 * n;
  const double big_a = kA / (1.0 + n) * (1.0 + n2 / 4.0 + n4 / 64.0 + n6 / 256.0);
  const double alpha[6] = {
      n / 2.0 - 2.0 * n2 / 3.0 + 5.0 * n3 / 16.0 + 41.0 * n4 / 180.0 - 127.0 * n5 / 288.0 +
          7891.0 * n6 / 37800.0,
      13.0 * n2 / 48.0 - 3.0 * n3 / 5.0 + 557.0 * n4 / 1440.0 + 281.0 * n5 / 630.0 -
          1983433.0 * n6 / 1935360.0,
      61.0 * n3 / 240.0 - 103.0 * n4 / 140.0 + 15061.0 * n5 / 26880.0 + 167603.0 * n6 / 181440.0,
      49561.0 * n4 / 161280.0 - 179.0 * n5 / 168.0 + 6601661.0 * n6 / 7257600.0,
      34729.0 * n5 / 80640.0 - 3418889.0 * n6 / 1995840.0,
      212378941.0 * n6 / 319334400.0,
  };
  const double e = 2.0 * std::sqrt(n) / (1.0 + n);  // first eccentricity
  const double phi = lat * kDegToRad;
  const double lam = (lon - (zone * 6.0 - 183.0)) * kDegToRad;
  const double sphi = std::sin(phi);
  const double t = std::sinh(std::atanh(sphi) - e * std::atanh(e * sphi));
  const double xi_p = std::atan2(t, std::cos(lam));
  const double eta_p = std::atanh(std::sin(lam) / std::sqrt(1.0 + t * t));
  double xi = xi_p;
  double eta = eta_p;
  for (int j = 1; j <= 6; ++j) {
    xi += alpha[j - 1] * std::sin(2.0 * j * xi_p) * std::cosh(2.0 * j * eta_p);
    eta += alpha[j - 1] * std::cos(2.0 * j * xi_p) * std::sinh(2.0 * j * eta_p);
  }
  easting = 500000.0 + kK0 * big_a * eta;
  northing = (south ? 10000000.0 : 0.0) + kK0 * big_a * xi;
}

DurationUs SimDevice::ClockOffset(TimeUs t, TimeUs start) const {
  double hours = static_cast<double>(t - start) / kMicrosPerHourD;
  return clock_ahead + static_cast<DurationUs>(std::llround(drift_per_hour_s * hours * 1e6));
}

// ---------------------------------------------------------------------------
// The environment: smooth functions of absolute time and position (km from the
// centre), so the same instant looks the same whatever the start of the run.

class Simulator::Environment {
 public:
  explicit Environment(const SimulatorOptions& o) : seed_(o.seed), options_(o) {
    SimRng rng(o.seed ^ 0x5eed5eedULL);
    for (auto& field : fields_) {
      double weight_sum = 0;
      for (Wave& w : field) {
        double wavelength = rng.Uniform(0.25, 1.2) * o.extent_km;
        double dir = rng.Uniform(0, 2 * kPi);
        w.kx = 2 * kPi / wavelength * std::cos(dir);
        w.ky = 2 * kPi / wavelength * std::sin(dir);
        w.phase = rng.Uniform(0, 2 * kPi);
        w.weight = rng.Uniform(0.5, 1.0);
        weight_sum += w.weight;
      }
      for (Wave& w : field) w.weight /= weight_sum;
    }
    for (double& p : phases_) p = rng.Uniform(0, 2 * kPi);
    wind_base_dir_ = rng.Uniform(-0.6, 0.6);  // toward the east: westerlies
    south_ = o.center_lat < 0;
    double abs_lat = std::fabs(o.center_lat);
    annual_mean_ = 27.0 - 0.33 * abs_lat;
    seasonal_amp_ = Clamp(0.17 * abs_lat, 1.0, 14.0);
    utc_offset_h_ = std::round(o.center_lon / 15.0);
    // The warmest day of the year: July 20 in the north, January 20 in the south.
    peak_day_ =
        static_cast<double>(south_ ? DaysFromCivil(2024, 1, 20) : DaysFromCivil(2024, 7, 20));
  }

  /// Smooth spatial field `i` at (x, y) km, in [-1, 1].
  double Field(int i, double x, double y) const {
    double v = 0;
    for (const Wave& w : fields_[i]) v += w.weight * std::cos(w.kx * x + w.ky * y + w.phase);
    return v;
  }

  /// 1 at the centre, falling off over about a third of the extent.
  double Urbanness(double x, double y) const {
    double s = 0.3 * options_.extent_km;
    return std::exp(-(x * x + y * y) / (2 * s * s));
  }

  /// Seasonal factor: +1 on the warmest day, −1 on the coldest.
  double Season(TimeUs t) const {
    double days = static_cast<double>(t) / kMicrosPerDayD;
    return std::cos(2 * kPi * (days - peak_day_) / 365.2425);
  }

  /// Slow weather-system variation over days, in [-1, 1].
  double Synoptic(TimeUs t, int k) const {
    double days = static_cast<double>(t) / kMicrosPerDayD;
    static constexpr double kPeriods[4] = {5.3, 1.9, 4.3, 1.7};
    return 0.7 * std::sin(2 * kPi * days / kPeriods[k] + phases_[k]) +
           0.3 * std::sin(2 * kPi * days / (kPeriods[k] * 0.37) + phases_[k + 4]);
  }

  /// Diurnal temperature shape: +1 at 15:00 local solar time, −1 at 03:00.
  double Diurnal(TimeUs t, double hour_shift = 0) const {
    double h = SolarHour(t, options_.center_lon);
    return std::cos(2 * kPi * (h - 15.0 - hour_shift) / 24.0);
  }

  double DiurnalAmplitude(TimeUs t) const { return 3.5 + 1.5 * Season(t); }

  /// Air temperature, °C.
  double Temperature(TimeUs t, double x, double y) const {
    double uhi = 1.5 * Urbanness(x, y) * (1.0 - 0.5 * Diurnal(t));  // stronger at night
    return annual_mean_ + seasonal_amp_ * Season(t) + DiurnalAmplitude(t) * Diurnal(t) +
           3.0 * Synoptic(t, 0) + 0.8 * Field(0, x, y) + uhi;
  }

  /// Relative humidity, %: high at night, low in the afternoon.
  double Humidity(TimeUs t, double x, double y) const {
    double rh = 74.0 - 7.0 * Season(t) - 2.8 * DiurnalAmplitude(t) * Diurnal(t) +
                8.0 * Synoptic(t, 1) + 5.0 * Field(1, x, y) + 0.6 * RecentRain(t);
    return Clamp(rh, 12.0, 100.0);
  }

  /// Sea-level pressure, hPa.
  double Pressure(TimeUs t) const {
    double h = SolarHour(t, options_.center_lon);
    return 1013.0 + 10.0 * Synoptic(t, 2) + 4.0 * Synoptic(t, 3) +
           0.5 * std::cos(4 * kPi * (h - 10.0) / 24.0);
  }

  /// Wind: speed (m/s) and the direction the air moves toward (radians, 0 = east,
  /// counter-clockwise).
  void Wind(TimeUs t, double& speed, double& toward) const {
    double days = static_cast<double>(t) / kMicrosPerDayD;
    toward = wind_base_dir_ + 0.7 * std::sin(2 * kPi * days / 3.1 + phases_[1]) +
             0.35 * std::sin(2 * kPi * days / 0.9 + phases_[2]);
    speed = std::max(0.5, 3.5 + 1.5 * std::sin(2 * kPi * days / 2.3 + phases_[3]) +
                              1.0 * std::max(0.0, Diurnal(t, -1.0)));
  }

  /// Traffic intensity in [0, ~1]: rush-hour peaks at 08:00 and 17:30 local time,
  /// weaker at weekends.
  double Traffic(TimeUs t) const {
    double h = static_cast<double>(t) / kMicrosPerHourD + utc_offset_h_;
    int64_t day = static_cast<int64_t>(std::floor(h / 24.0));
    h -= static_cast<double>(day) * 24.0;
    int64_t weekday = ((day + 4) % 7 + 7) % 7;  // 1970-01-01 was a Thursday; 0 = Sunday
    double weekend = (weekday == 0 || weekday == 6) ? 0.45 : 1.0;
    double morning = std::exp(-(h - 8.0) * (h - 8.0) / (2 * 1.2 * 1.2));
    double evening = 0.8 * std::exp(-(h - 17.5) * (h - 17.5) / (2 * 1.5 * 1.5));
    double day_base = (h > 6.0 && h < 22.0) ? 0.15 : 0.03;
    return weekend * (morning + evening + day_base);
  }

  /// Extra PM2.5 from drifting plumes, µg/m³.
  double Plume(TimeUs t, double x, double y) const {
    if (!options_.plumes) return 0.0;
    constexpr DurationUs kEpoch = 4 * kMicrosPerHour;
    int64_t k = FloorDiv(t, kEpoch);
    double total = 0;
    for (int64_t e = k - 2; e <= k; ++e) {
      uint64_t ue = static_cast<uint64_t>(e);
      if (HashUniform(seed_, ue, 1) > 0.75) continue;  // no plume this epoch
      TimeUs t0 =
          e * kEpoch + static_cast<TimeUs>(HashUniform(seed_, ue, 2) * 0.5 * kMicrosPerHourD);
      if (t < t0) continue;
      double speed = 0, toward = 0;
      Wind(t0, speed, toward);
      double hours = static_cast<double>(t - t0) / kMicrosPerHourD;
      double ux = std::cos(toward), uy = std::sin(toward);
      double side = (HashUniform(seed_, ue, 3) - 0.5) * 0.6 * options_.extent_km;
      double ox = -ux * 0.6 * options_.extent_km - uy * side;
      double oy = -uy * 0.6 * options_.extent_km + ux * side;
      double km_per_h = speed * 3.6;
      double cx = ox + ux * km_per_h * hours, cy = oy + uy * km_per_h * hours;
      double sigma0 = 1.2 + 0.03 * options_.extent_km;
      double sigma = sigma0 + 0.5 * hours;
      double amp = 70.0 * (0.5 + HashUniform(seed_, ue, 4)) * (sigma0 * sigma0) / (sigma * sigma);
      double d2 = (x - cx) * (x - cx) + (y - cy) * (y - cy);
      total += amp * std::exp(-d2 / (2 * sigma * sigma));
    }
    return total;
  }

  /// PM2.5 without plumes or sensor error, µg/m³.
  double Pm25(TimeUs t, double x, double y) const {
    double speed = 0, toward = 0;
    Wind(t, speed, toward);
    double stagnation = Clamp(1.5 - 0.1 * speed, 0.8, 1.5);
    double background = (9.0 - 3.0 * Season(t)) * (1.0 + 0.3 * Field(2, x, y));
    double traffic = 16.0 * Traffic(t) * (0.3 + Urbanness(x, y));
    return (background + traffic) * stagnation;
  }

  /// NO2 without plumes or sensor error, µg/m³.
  double No2(TimeUs t, double x, double y) const {
    double u = Urbanness(x, y);
    return 8.0 + 10.0 * u + 38.0 * Traffic(t) * (0.2 + u) + 3.0 * Field(3, x, y);
  }

  /// Rain (mm) weighted by recency, feeding soil moisture (decay ~2.5 days).
  double SoilWetting(TimeUs t) {
    return RainResponse(t, [](double hours) { return 0.35 * std::exp(-hours / 60.0); });
  }

  /// River stage rise after rain, m: a few hours to rise, a day and a half to recede.
  double RiverRise(TimeUs t) {
    return RainResponse(t, [](double hours) {
      return 0.035 * (1.0 - std::exp(-hours / 4.0)) * std::exp(-hours / 30.0);
    });
  }

  /// Rain in the last day, mm (humidity goes up after rain).
  double RecentRain(TimeUs t) const {
    double mm = 0;
    for (const RainEvent& r : rain_) {
      if (r.time <= t && t - r.time < kMicrosPerDay) mm += r.mm;
    }
    return mm;
  }

  /// Soil temperature at 10 cm, °C: damped and delayed by three hours.
  double SoilTemperature(TimeUs t) const {
    return annual_mean_ + 0.9 * seasonal_amp_ * Season(t) +
           0.35 * DiurnalAmplitude(t) * Diurnal(t, 3.0) + 1.0 * Synoptic(t, 0);
  }

 private:
  struct Wave {
    double kx = 0, ky = 0, phase = 0, weight = 0;
  };
  struct RainEvent {
    TimeUs time = 0;
    double mm = 0;
  };
  static constexpr DurationUs kRainEpoch = 6 * kMicrosPerHour;
  static constexpr DurationUs kRainLookback = 15 * kMicrosPerDay;

  // Rebuild the list of rain events in the look-back window when `t` enters a new epoch.
  void RefreshRain(TimeUs t) {
    int64_t hi = FloorDiv(t, kRainEpoch);
    if (rain_valid_ && hi == rain_epoch_) return;
    rain_.clear();
    for (int64_t e = FloorDiv(t - kRainLookback, kRainEpoch); e <= hi; ++e) {
      uint64_t ue = static_cast<uint64_t>(e);
      if (HashUniform(seed_, ue, 11) > 0.12) continue;
      RainEvent r;
      r.time = e * kRainEpoch +
               static_cast<TimeUs>(HashUniform(seed_, ue, 12) * static_cast<double>(kRainEpoch));
      r.mm = 1.0 + 24.0 * HashUniform(seed_, ue, 13);
      rain_.push_back(r);
    }
    rain_epoch_ = hi;
    rain_valid_ = true;
  }

  template <typename Response>
  double RainResponse(TimeUs t, Response response) {
    RefreshRain(t);
    double v = 0;
    for (const RainEvent& r : rain_) {
      if (r.time > t) continue;
      v += r.mm * response(static_cast<double>(t - r.time) / kMicrosPerHourD);
    }
    return v;
  }

  uint64_t seed_;
  const SimulatorOptions& options_;
  std::array<std::array<Wave, 6>, 4> fields_{};
  std::array<double, 8> phases_{};
  double wind_base_dir_ = 0;
  bool south_ = false;
  double annual_mean_ = 10;
  double seasonal_amp_ = 9;
  double utc_offset_h_ = 1;
  double peak_day_ = 0;
  std::vector<RainEvent> rain_;
  int64_t rain_epoch_ = 0;
  bool rain_valid_ = false;
};

// ---------------------------------------------------------------------------
// Simulator

bool Simulator::PendingLater::operator()(const Pending& a, const Pending& b) const {
  if (a.arrival != b.arrival) return a.arrival > b.arrival;
  return a.order > b.order;
}

Simulator::Simulator(SimulatorOptions options) : options_(std::move(options)) {
  if (options_.duration > 0) end_time_ = options_.start + options_.duration;
  double lon = std::clamp(options_.center_lon, -180.0, 179.999999);
  utm_zone_ = static_cast<int>(std::floor((lon + 180.0) / 6.0)) + 1;
  utm_south_ = options_.center_lat < 0;
  crs_ = "EPSG:" + std::to_string((utm_south_ ? 32700 : 32600) + utm_zone_);
  env_ = std::make_unique<Environment>(options_);
  Layout();
}

Simulator::~Simulator() = default;

void Simulator::Layout() {
  const SimulatorOptions& o = options_;
  const size_t n = static_cast<size_t>(std::max<int64_t>(o.devices, 0));
  SimRng layout_rng(o.seed * 0x9e3779b97f4a7c15ULL + 0x1a7e);

  // Counts per type by largest remainder.
  double share_sum = 0;
  for (double s : o.type_share) share_sum += std::max(0.0, s);
  if (share_sum <= 0) share_sum = 1;
  std::array<size_t, kDeviceTypeCount> counts{};
  std::array<double, kDeviceTypeCount> remainders{};
  size_t assigned = 0;
  for (size_t i = 0; i < kDeviceTypeCount; ++i) {
    double exact = static_cast<double>(n) * std::max(0.0, o.type_share[i]) / share_sum;
    counts[i] = static_cast<size_t>(std::floor(exact));
    remainders[i] = exact - static_cast<double>(counts[i]);
    assigned += counts[i];
  }
  while (assigned < n) {
    size_t best = static_cast<size_t>(std::max_element(remainders.begin(), remainders.end()) -
                                      remainders.begin());
    ++counts[best];
    remainders[best] = -1;
    ++assigned;
  }

  const double extent = o.extent_km;
  const double half = extent / 2;
  // Traffic corridors for air-quality nodes and the course of the river.
  struct Corridor {
    double px, py, dx, dy;
  };
  std::array<Corridor, 4> corridors{};
  for (Corridor& c : corridors) {
    double angle = layout_rng.Uniform(0, kPi);
    c.px = layout_rng.Uniform(-0.2, 0.2) * extent;
    c.py = layout_rng.Uniform(-0.2, 0.2) * extent;
    c.dx = std::cos(angle);
    c.dy = std::sin(angle);
  }
  double river_phase = layout_rng.Uniform(0, 2 * kPi);

  devices_.reserve(n);
  state_.reserve(n);
  for (size_t type_i = 0; type_i < kDeviceTypeCount; ++type_i) {
    auto type = static_cast<DeviceType>(type_i);
    for (size_t k = 0; k < counts[type_i]; ++k) {
      uint32_t index = static_cast<uint32_t>(devices_.size());
      SimDevice dev;
      dev.type = type;
      dev.type_index = static_cast<uint32_t>(k + 1);
      char num[16];
      std::snprintf(num, sizeof(num), "%04u", dev.type_index);
      dev.id = std::string(DeviceTypePrefix(type)) + "-" + num;
      dev.interval = o.IntervalOf(type);

      DeviceState st{SimRng(o.seed ^ (0xa0761d6478bd642fULL * (uint64_t{index} + 1)))};
      SimRng& rng = st.rng;
      double x = 0, y = 0;
      switch (type) {
        case DeviceType::kAirQuality:
          if (rng.Chance(0.6)) {
            const Corridor& c = corridors[rng.NextU64() % corridors.size()];
            double along = rng.Uniform(-0.5, 0.5) * extent;
            double across = 0.15 * rng.Normal();
            x = c.px + c.dx * along - c.dy * across;
            y = c.py + c.dy * along + c.dx * across;
          } else {
            x = rng.Uniform(-half, half);
            y = rng.Uniform(-half, half);
          }
          break;
        case DeviceType::kWeather:
          x = rng.Uniform(-half, half);
          y = rng.Uniform(-half, half);
          break;
        case DeviceType::kRiver:
          x = rng.Uniform(-half, half);
          y = 0.12 * extent * std::sin(2 * kPi * x / (0.7 * extent) + river_phase) +
              0.05 * rng.Normal();
          break;
        case DeviceType::kSoil:
          for (int attempt = 0; attempt < 20; ++attempt) {
            x = rng.Uniform(-half, half);
            y = rng.Uniform(-half, half);
            if (x * x + y * y > (0.25 * extent) * (0.25 * extent)) break;
          }
          break;
      }
      x = Clamp(x, -half, half);
      y = Clamp(y, -half, half);
      // Local spherical approximation around the centre; positions are rounded to the
      // six decimals the payload carries, so they are exactly what devices report.
      double lat = o.center_lat + y / (kEarthRadiusKm * kDegToRad);
      double lon =
          o.center_lon + x / (kEarthRadiusKm * kDegToRad * std::cos(o.center_lat * kDegToRad));
      dev.lat = std::round(Clamp(lat, -89.999999, 89.999999) * 1e6) / 1e6;
      dev.lon = std::round(lon * 1e6) / 1e6;
      if (dev.lon > 180.0) dev.lon -= 360.0;
      if (dev.lon < -180.0) dev.lon += 360.0;
      dev.x_km = x;
      dev.y_km = y;
      LatLonToUtm(dev.lat, dev.lon, utm_zone_, utm_south_, dev.utm_x, dev.utm_y);

      switch (type) {
        case DeviceType::kAirQuality:
          dev.firmware = rng.Chance(0.7) ? "aq-2.1.0" : "aq-2.0.3";
          st.bias = 0.4 * rng.Normal();
          st.exposure = rng.Uniform(0.85, 1.15);
          break;
        case DeviceType::kWeather:
          dev.firmware = "ws-5.2.1";
          st.bias = 0.15 * rng.Normal();
          st.exposure = rng.Uniform(0.7, 1.3);
          st.base = 0.8 * rng.Normal();  // pressure offset, hPa
          break;
        case DeviceType::kRiver:
          dev.firmware = "rg-1.8.0";
          st.base = rng.Uniform(0.8, 2.5);       // stage at base flow, m
          st.exposure = rng.Uniform(8.0, 20.0);  // rating-curve coefficient
          break;
        case DeviceType::kSoil:
          dev.firmware = rng.Chance(0.5) ? "sm-3.0.2" : "sm-3.1.0";
          st.bias = 0.3 * rng.Normal();
          st.base = rng.Uniform(15.0, 35.0);  // field capacity share, %
          break;
      }
      st.battery = rng.Uniform(40.0, 100.0);
      st.battery_drain = rng.Uniform(0.3, 1.0);
      // First report at a random phase within the first interval.
      st.next_nominal =
          o.start + FloorDiv(static_cast<TimeUs>(rng.Uniform() * static_cast<double>(dev.interval)),
                             kMicrosPerMilli) *
                        kMicrosPerMilli;
      devices_.push_back(std::move(dev));
      state_.push_back(std::move(st));
    }
  }

  // Special devices, chosen by seeded shuffles so the counts are exact.
  auto shuffled = [&](std::vector<uint32_t> idx) {
    for (size_t i = idx.size(); i > 1; --i) {
      std::swap(idx[i - 1], idx[layout_rng.NextU64() % i]);
    }
    return idx;
  };
  auto share_count = [](double share, size_t of) {
    return static_cast<size_t>(std::llround(share * static_cast<double>(of)));
  };
  std::vector<uint32_t> all(n);
  std::iota(all.begin(), all.end(), 0u);
  std::vector<uint32_t> order = shuffled(all);
  size_t ahead = std::min(n, static_cast<size_t>(std::max<int64_t>(0, o.clock_ahead_devices)));
  size_t drifting = std::min(n - ahead, share_count(o.drifting_clock_share, n));
  for (size_t i = 0; i < ahead; ++i) {
    SimDevice& d = devices_[order[i]];
    // Alternate far ahead (beyond a 5-minute future tolerance) and a few minutes ahead.
    double minutes = (i % 2 == 0) ? layout_rng.Uniform(6.0, 12.0) : layout_rng.Uniform(2.0, 4.0);
    d.clock_ahead = static_cast<DurationUs>(std::llround(minutes * 60.0)) * kMicrosPerSecond;
  }
  // Between a sixth of the largest drift and the largest: by default 5 to 30 s a day,
  // what crystal clocks without NTP are reported to gain or lose.
  double max_drift = static_cast<double>(o.max_drift_per_hour) / 1e6;
  double min_drift = max_drift / 6.0;
  for (size_t i = ahead; i < ahead + drifting; ++i) {
    SimDevice& d = devices_[order[i]];
    double rate = layout_rng.Uniform(min_drift, max_drift);
    d.drift_per_hour_s = layout_rng.Chance(0.5) ? rate : -rate;
    if (d.drift_per_hour_s == 0.0) d.drift_per_hour_s = 1e-3;
  }
  order = shuffled(all);
  for (size_t i = 0; i < share_count(o.projected_share, n); ++i)
    devices_[order[i]].projected = true;
  std::vector<uint32_t> aq;
  for (uint32_t i = 0; i < n; ++i) {
    if (devices_[i].type == DeviceType::kAirQuality) aq.push_back(i);
  }
  aq = shuffled(aq);
  for (size_t i = 0; i < share_count(o.mg_m3_share, aq.size()); ++i) {
    SimDevice& d = devices_[aq[i]];
    d.mg_m3 = true;
    d.firmware = "pm-vx-1.4.2";
  }

  // First sample times.
  for (uint32_t i = 0; i < n; ++i) {
    DeviceState& st = state_[i];
    double j = (st.rng.Uniform() * 2.0 - 1.0) * static_cast<double>(o.jitter);
    TimeUs t =
        st.next_nominal + FloorDiv(static_cast<TimeUs>(j), kMicrosPerMilli) * kMicrosPerMilli;
    st.next_sample = std::max(o.start, t);
    if (st.next_sample < end_time_) schedule_.emplace(st.next_sample, i);
  }
}

void Simulator::Push(Pending p) {
  p.order = created_++;
  pending_.push_back(std::move(p));
  std::push_heap(pending_.begin(), pending_.end(), PendingLater());
}

std::string Simulator::Format(uint32_t d, TimeUs sample_time, TimeUs sensor_time,
                              bool unknown_unit) {
  const SimDevice& dev = devices_[d];
  DeviceState& st = state_[d];
  SimRng& rng = st.rng;
  Environment& env = *env_;
  const double x = dev.x_km, y = dev.y_km;
  const TimeUs t = sample_time;

  double values[5] = {0, 0, 0, 0, 0};
  switch (dev.type) {
    case DeviceType::kAirQuality: {
      double plume = env.Plume(t, x, y);
      double pm25 = (env.Pm25(t, x, y) * st.exposure + plume) * (1.0 + 0.08 * rng.Normal());
      pm25 = Clamp(pm25, 0.5, 480.0);
      double pm10 = pm25 * (1.45 + 0.1 * env.Field(1, x, y)) + 2.0 + 1.5 * std::fabs(rng.Normal());
      // The NO2 model is in µg/m³; payloads carry ppb, the canonical gas unit
      // (1 ppb NO2 = 46.0055 / 24.45 µg/m³ at 25 °C and 1 atm).
      double no2 =
          (env.No2(t, x, y) + 0.5 * plume) * (1.0 + 0.1 * rng.Normal()) * (24.45 / 46.0055);
      values[0] = pm25;
      values[1] = Clamp(pm10, 1.0, 580.0);
      values[2] = Clamp(no2, 0.25, 200.0);
      values[3] = env.Temperature(t, x, y) + st.bias + 0.3 * rng.Normal();
      values[4] = Clamp(env.Humidity(t, x, y) + 2.0 * rng.Normal(), 5.0, 100.0);
      break;
    }
    case DeviceType::kWeather: {
      double speed = 0, toward = 0;
      env.Wind(t, speed, toward);
      values[0] = env.Temperature(t, x, y) + st.bias + 0.1 * rng.Normal();
      values[1] = Clamp(env.Humidity(t, x, y) + rng.Normal(), 5.0, 100.0);
      values[2] = env.Pressure(t) + st.base + 0.1 * rng.Normal();
      values[3] = std::max(0.0, speed * st.exposure * (1.0 + 0.2 * rng.Normal()));
      break;
    }
    case DeviceType::kRiver: {
      double stage = st.base + env.RiverRise(t) + 0.004 * rng.Normal();
      stage = std::max(0.05, stage);
      double flow =
          st.exposure * std::pow(std::max(0.0, stage - 0.2), 1.6) * (1.0 + 0.02 * rng.Normal());
      values[0] = stage;
      values[1] = std::max(0.0, flow);
      break;
    }
    case DeviceType::kSoil: {
      double sm =
          st.base + env.SoilWetting(t) - 0.4 * env.Diurnal(t) + st.bias + 0.3 * rng.Normal();
      values[0] = Clamp(sm, 1.0, 60.0);
      values[1] = env.SoilTemperature(t) + st.bias + 0.1 * rng.Normal();
      break;
    }
  }
  // Battery drains and is swapped when low.
  st.battery -= st.battery_drain * static_cast<double>(dev.interval) / kMicrosPerDayD;
  if (st.battery < 8.0) st.battery = 100.0;

  std::string out;
  out.reserve(256);
  out += "{\"device_id\":\"";
  out += dev.id;
  out += "\",\"sensor_ts\":";
  AppendInt(out, FloorDiv(sensor_time, kMicrosPerMilli));
  if (dev.projected) {
    out += ",\"x\":";
    AppendFixed(out, dev.utm_x, 2);
    out += ",\"y\":";
    AppendFixed(out, dev.utm_y, 2);
    out += ",\"crs\":\"";
    out += crs_;
    out += '"';
  } else {
    out += ",\"lat\":";
    AppendFixed(out, dev.lat, 6);
    out += ",\"lon\":";
    AppendFixed(out, dev.lon, 6);
  }
  const std::vector<std::string_view>& metrics = DeviceTypeMetrics(dev.type);
  for (size_t i = 0; i < metrics.size(); ++i) {
    out += ",\"";
    out += metrics[i];
    out += "\":";
    if (i == 0 && dev.mg_m3) {
      AppendFixed(out, values[0] / 1000.0, 4);
    } else {
      AppendFixed(out, values[i], MetricDecimals(metrics[i]));
    }
  }
  if (dev.type != DeviceType::kWeather) {
    out += ",\"battery_pct\":";
    AppendInt(out, static_cast<int64_t>(std::llround(st.battery)));
  }
  out += ",\"firmware\":\"";
  out += dev.firmware;
  out += '"';

  // Units: metric → unit pairs, the first metric possibly replaced by "furlongs".
  std::vector<std::pair<std::string_view, std::string_view>> units;
  switch (dev.type) {
    case DeviceType::kAirQuality:
      if (dev.mg_m3) units.emplace_back("pm25", "mg/m3");
      break;
    case DeviceType::kWeather:
      units = {{"temperature", "degC"}, {"pressure", "hPa"}, {"wind_speed", "m/s"}};
      break;
    case DeviceType::kRiver:
      units = {{"stage", "m"}, {"flow", "m3/s"}};
      break;
    case DeviceType::kSoil:
      break;
  }
  if (unknown_unit) {
    auto it = std::find_if(units.begin(), units.end(),
                           [&](const auto& u) { return u.first == metrics[0]; });
    if (it != units.end()) {
      it->second = "furlongs";
    } else {
      units.insert(units.begin(), {metrics[0], "furlongs"});
    }
  }
  if (!units.empty()) {
    out += ",\"units\":{";
    for (size_t i = 0; i < units.size(); ++i) {
      if (i > 0) out += ',';
      out += '"';
      out += units[i].first;
      out += "\":\"";
      out += units[i].second;
      out += '"';
    }
    out += '}';
  }
  out += '}';
  return out;
}

namespace {

// Replace the number after `"key":` with `replacement`.
void ReplaceNumber(std::string& payload, std::string_view key, std::string_view replacement) {
  std::string needle = "\"" + std::string(key) + "\":";
  size_t pos = payload.find(needle);
  if (pos == std::string::npos) return;
  size_t begin = pos + needle.size();
  size_t end = payload.find_first_of(",}", begin);
  if (end == std::string::npos) return;
  payload.replace(begin, end - begin, replacement);
}

}  // namespace

void Simulator::Corrupt(uint32_t d, std::string& payload, MalformedKind kind) {
  const SimDevice& dev = devices_[d];
  SimRng& rng = state_[d].rng;
  switch (kind) {
    case MalformedKind::kTruncatedJson: {
      // Cut somewhere after the first few bytes and before the closing brace.
      size_t lo = 10, hi = payload.size() - 1;
      payload.resize(lo + static_cast<size_t>(rng.NextU64() % (hi - lo)));
      break;
    }
    case MalformedKind::kInvalidJson: {
      size_t pos = payload.find("\"sensor_ts\":");
      if (pos != std::string::npos) payload.erase(pos + 11, 1);
      break;
    }
    case MalformedKind::kNanCoordinate:
      ReplaceNumber(payload, dev.projected ? "x" : "lat", "NaN");
      break;
    case MalformedKind::kLatOutOfRange:
      ReplaceNumber(payload, "lat", "123.4");
      break;
    case MalformedKind::kUnknownUnit:
      break;  // written by Format
  }
}

void Simulator::Step(uint32_t d) {
  const SimDevice& dev = devices_[d];
  DeviceState& st = state_[d];
  const SimulatorOptions& o = options_;
  const TimeUs t = st.next_sample;

  // Schedule the next sample first.
  st.next_nominal += dev.interval;
  double j = (st.rng.Uniform() * 2.0 - 1.0) * static_cast<double>(o.jitter);
  st.next_sample =
      st.next_nominal + FloorDiv(static_cast<TimeUs>(j), kMicrosPerMilli) * kMicrosPerMilli;
  if (st.next_sample <= t) st.next_sample = t + kMicrosPerMilli;
  if (st.next_sample < end_time_) schedule_.emplace(st.next_sample, d);

  const TimeUs sensor_time = t + dev.ClockOffset(t, o.start);

  // Quiet: keep the reading for the burst at the end of the outage.
  // A device coming back online always sends its buffer before it can fail again.
  bool in_outage = st.outage_end > t;
  if (!in_outage && st.buffer.empty() && o.outages_per_day > 0) {
    double p = o.outages_per_day * static_cast<double>(dev.interval) / kMicrosPerDayD;
    if (st.rng.Chance(p)) {
      DurationUs length = static_cast<DurationUs>(
          st.rng.Uniform(static_cast<double>(o.outage_min), static_cast<double>(o.outage_max)));
      st.outage_end = t + std::max<DurationUs>(length, kMicrosPerMilli);
      in_outage = true;
    }
  }
  if (in_outage) {
    Pending p;
    p.sample_time = t;
    p.sensor_time = FloorDiv(sensor_time, kMicrosPerMilli) * kMicrosPerMilli;
    p.device = d;
    p.kind = SimMessageKind::kBurst;
    p.payload = Format(d, t, sensor_time, false);
    if (st.buffer.size() < 100000) st.buffer.push_back(std::move(p));
    return;
  }

  // Back online: everything buffered goes out at once, a couple of ms apart.
  TimeUs latency = static_cast<TimeUs>(st.rng.Uniform(0.08, 1.5) * 1e6);
  TimeUs arrival = t + latency;
  if (!st.buffer.empty()) {
    bool first = true;
    for (Pending& p : st.buffer) {
      p.arrival = arrival;
      p.first_of_burst = first;
      first = false;
      arrival += 2 * kMicrosPerMilli;
      Push(std::move(p));
    }
    st.buffer.clear();
  }

  Pending p;
  p.arrival = arrival;
  p.sample_time = t;
  p.sensor_time = FloorDiv(sensor_time, kMicrosPerMilli) * kMicrosPerMilli;
  p.device = d;
  p.kind = SimMessageKind::kLive;
  if (o.malformed_rate > 0 && st.rng.Chance(o.malformed_rate)) {
    auto kind = static_cast<MalformedKind>(st.rng.NextU64() % kMalformedKindCount);
    if (kind == MalformedKind::kLatOutOfRange && dev.projected)
      kind = MalformedKind::kNanCoordinate;
    p.kind = SimMessageKind::kMalformed;
    p.malformed = kind;
    p.payload = Format(d, t, sensor_time, kind == MalformedKind::kUnknownUnit);
    Corrupt(d, p.payload, kind);
    Push(std::move(p));
    return;
  }
  p.payload = Format(d, t, sensor_time, false);
  if (o.duplicate_rate > 0 && st.rng.Chance(o.duplicate_rate)) {
    Pending dup = p;
    dup.kind = SimMessageKind::kDuplicate;
    dup.arrival = p.arrival + static_cast<TimeUs>(st.rng.Uniform(0.5, 30.0) * 1e6);
    Push(std::move(p));
    Push(std::move(dup));
    return;
  }
  Push(std::move(p));
}

void Simulator::Advance() {
  while (true) {
    bool have_pending = !pending_.empty();
    if (have_pending && (schedule_.empty() || pending_.front().arrival < schedule_.top().first)) {
      if (pending_.front().arrival >= end_time_) {
        // Everything still to come arrives later than this: the run is over.
        pending_.clear();
        while (!schedule_.empty()) schedule_.pop();
      }
      return;
    }
    if (schedule_.empty()) return;
    uint32_t d = schedule_.top().second;
    schedule_.pop();
    Step(d);
  }
}

TimeUs Simulator::PeekArrival() {
  Advance();
  return pending_.empty() ? kMaxTime : pending_.front().arrival;
}

bool Simulator::Next(SimMessage& out) {
  Advance();
  if (pending_.empty()) return false;
  std::pop_heap(pending_.begin(), pending_.end(), PendingLater());
  Pending p = std::move(pending_.back());
  pending_.pop_back();

  const SimDevice& dev = devices_[p.device];
  const size_t metric_count = DeviceTypeMetrics(dev.type).size();
  SimulatorStats& s = stats_;
  ++s.messages;
  ++s.messages_by_type[static_cast<size_t>(dev.type)];
  if (p.kind == SimMessageKind::kMalformed) {
    ++s.malformed_messages;
    ++s.malformed_by_kind[static_cast<size_t>(p.malformed)];
    s.malformed_metric_values[static_cast<size_t>(p.malformed)] += metric_count;
  } else {
    s.metric_values += metric_count;
    if (dev.mg_m3) ++s.mg_m3_messages;
    if (dev.projected) ++s.projected_messages;
    if (dev.clock_ahead != 0) ++s.clock_ahead_messages;
    if (dev.drift_per_hour_s != 0.0) ++s.drifting_clock_messages;
    switch (p.kind) {
      case SimMessageKind::kLive:
        ++s.live_messages;
        break;
      case SimMessageKind::kBurst:
        ++s.burst_messages;
        if (p.first_of_burst) ++s.outages;
        s.max_burst_delay = std::max(s.max_burst_delay, p.arrival - p.sample_time);
        break;
      case SimMessageKind::kDuplicate:
        ++s.duplicate_messages;
        break;
      case SimMessageKind::kMalformed:
        break;
    }
  }

  out.payload = std::move(p.payload);
  out.arrival_time = p.arrival;
  out.sample_time = p.sample_time;
  out.sensor_time = p.sensor_time;
  out.device = p.device;
  out.sequence = emitted_++;
  out.kind = p.kind;
  out.malformed = p.malformed;
  return true;
}

// ---------------------------------------------------------------------------
// Options

const SectionSpec& SimulatorSectionSpec() {
  static const SectionSpec spec{
      "sources[] (type: simulator)",
      "A deterministic synthetic sensor network: air-quality nodes, weather stations, river "
      "gauges and soil arrays around a centre point, with diurnal cycles, spatial "
      "correlation, drifting pollution plumes, clock drift, outages followed by bursts of "
      "late data, duplicates, a vendor reporting mg/m³, projected (UTM) coordinates and "
      "malformed payloads. The same seed and start give the same byte stream. Records: "
      "topic `sim/<device_type>/<device_id>`, partition 0, offset = message sequence "
      "number, arrival time = simulated arrival.",
      {
          {"seed", OptionType::kInt, "42", "Seed of every random choice.", "0.."},
          {"devices", OptionType::kInt, "200", "Number of devices.", "1..1000000"},
          {"center_lat", OptionType::kDouble, "52.52", "Latitude of the area's centre (WGS84).",
           "-80..84"},
          {"center_lon", OptionType::kDouble, "13.40", "Longitude of the area's centre (WGS84).",
           "-180..180"},
          {"extent_km", OptionType::kDouble, "20", "Side of the square area, km.", "0.1..2000"},
          {"air_quality_share", OptionType::kDouble, "0.5",
           "Relative share of air-quality nodes (pm25, pm10, no2, temperature, humidity).", "0..1"},
          {"weather_share", OptionType::kDouble, "0.15",
           "Relative share of weather stations (temperature, humidity, pressure, wind_speed).",
           "0..1"},
          {"river_share", OptionType::kDouble, "0.10",
           "Relative share of river gauges (stage, flow).", "0..1"},
          {"soil_share", OptionType::kDouble, "0.25",
           "Relative share of soil arrays (soil_moisture, temperature).", "0..1"},
          {"interval", OptionType::kDuration, "60s", "Reporting interval (simulated time).",
           "1s..1d"},
          {"interval_air_quality", OptionType::kDuration, "0s",
           "Reporting interval of air-quality nodes; 0 uses `interval`.", "0s..1d"},
          {"interval_weather", OptionType::kDuration, "0s",
           "Reporting interval of weather stations; 0 uses `interval`.", "0s..1d"},
          {"interval_river", OptionType::kDuration, "0s",
           "Reporting interval of river gauges; 0 uses `interval`.", "0s..1d"},
          {"interval_soil", OptionType::kDuration, "0s",
           "Reporting interval of soil arrays; 0 uses `interval`.", "0s..1d"},
          {"jitter", OptionType::kDuration, "2s",
           "Each sample is taken up to this much before or after its slot; must be below "
           "half of every interval.",
           "0s..12h"},
          {"start", OptionType::kString, "now",
           "Simulated start time: ISO-8601 (`2024-05-01T00:00:00Z`) or `now` (the wall "
           "clock floored to the minute)."},
          {"speed", OptionType::kDouble, "1",
           "Simulated seconds per wall-clock second; 0 generates as fast as possible.",
           "0..1000000"},
          {"as_fast_as_possible", OptionType::kBool, "false",
           "Never wait for the simulated clock (same as speed 0)."},
          {"rate", OptionType::kDouble, "0",
           "Target messages per wall-clock second regardless of simulated time; 0 follows "
           "the simulated clock.",
           "0..100000000"},
          {"duration", OptionType::kDuration, "0s",
           "Simulated time after which the source ends its stream (messages arriving "
           "later are not sent); 0 runs forever."},
          {"malformed_rate", OptionType::kDouble, "0.01",
           "Share of messages broken on purpose: truncated or invalid JSON, NaN "
           "coordinates, latitude out of range, unknown unit.",
           "0..1"},
          {"duplicate_rate", OptionType::kDouble, "0.005",
           "Share of messages sent twice (the copy 0.5–30 s later).", "0..1"},
          {"outages_per_day", OptionType::kDouble, "0.5",
           "Expected outages per device per day; readings taken during an outage are sent "
           "in one burst when it ends, with their original event times.",
           "0..10000"},
          {"outage_min", OptionType::kDuration, "5m", "Shortest outage.", "1s..30d"},
          {"outage_max", OptionType::kDuration, "40m", "Longest outage.", "1s..30d"},
          {"drifting_clock_share", OptionType::kDouble, "0.03",
           "Share of devices whose clock drifts (from a sixth of `max_drift_per_hour` up to "
           "it, either way).",
           "0..1"},
          {"max_drift_per_hour", OptionType::kDuration, "1250ms",
           "Largest clock drift per simulated hour (the default is 30 s a day, the most "
           "crystal clocks without NTP are reported to drift).",
           "0s..1h"},
          {"clock_ahead_devices", OptionType::kInt, "2",
           "Devices whose clock runs minutes ahead (alternately 6–12 min and 2–4 min).",
           "0..1000000"},
          {"mg_m3_share", OptionType::kDouble, "0.1",
           "Share of air-quality nodes from a vendor that sends pm25 in mg/m³ "
           "(`\"units\":{\"pm25\":\"mg/m3\"}`).",
           "0..1"},
          {"projected_share", OptionType::kDouble, "0.05",
           "Share of devices sending UTM `x`, `y` and `crs` (the zone of `center_lon`) "
           "instead of `lat`/`lon`.",
           "0..1"},
          {"plumes", OptionType::kBool, "true",
           "Pollution plumes drifting with the wind across the area."},
      }};
  return spec;
}

Status ValidateSimulatorOptions(const SimulatorOptions& o) {
  if (o.devices < 1 || o.devices > 1000000) return Status::Invalid("devices must be 1..1000000");
  double share_sum = 0;
  for (double s : o.type_share) {
    if (s < 0) return Status::Invalid("device type shares must not be negative");
    share_sum += s;
  }
  if (share_sum <= 0) return Status::Invalid("at least one device type share must be above 0");
  if (o.interval < kMicrosPerSecond) return Status::Invalid("interval must be at least 1s");
  for (size_t i = 0; i < kDeviceTypeCount; ++i) {
    DurationUs iv = o.IntervalOf(static_cast<DeviceType>(i));
    if (iv < kMicrosPerSecond) {
      return Status::Invalid("interval_" + std::string(DeviceTypeName(static_cast<DeviceType>(i))) +
                             " must be 0 or at least 1s");
    }
    if (2 * o.jitter >= iv) {
      return Status::Invalid("jitter " + FormatDuration(o.jitter) +
                             " must be below half of the interval " + FormatDuration(iv));
    }
  }
  if (o.outage_min > o.outage_max) {
    return Status::Invalid("outage_min must not exceed outage_max");
  }
  if (o.clock_ahead_devices < 0 || o.clock_ahead_devices > o.devices) {
    return Status::Invalid("clock_ahead_devices must be 0..devices");
  }
  auto unit = [](double v) { return v >= 0 && v <= 1; };
  if (!unit(o.malformed_rate) || !unit(o.duplicate_rate) || !unit(o.drifting_clock_share) ||
      !unit(o.mg_m3_share) || !unit(o.projected_share)) {
    return Status::Invalid("rates and shares must be within 0..1");
  }
  if (o.speed < 0 || o.rate < 0 || o.duration < 0) {
    return Status::Invalid("speed, rate and duration must not be negative");
  }
  return Status::Ok();
}

Result<SimulatorOptions> ParseSimulatorOptions(const OptionReader& r) {
  SimulatorOptions o;
  TRIB_ASSIGN_OR_RETURN(int64_t seed, r.GetInt("seed"));
  o.seed = static_cast<uint64_t>(seed);
  TRIB_ASSIGN_OR_RETURN(o.devices, r.GetInt("devices"));
  TRIB_ASSIGN_OR_RETURN(o.center_lat, r.GetDouble("center_lat"));
  TRIB_ASSIGN_OR_RETURN(o.center_lon, r.GetDouble("center_lon"));
  TRIB_ASSIGN_OR_RETURN(o.extent_km, r.GetDouble("extent_km"));
  TRIB_ASSIGN_OR_RETURN(o.type_share[0], r.GetDouble("air_quality_share"));
  TRIB_ASSIGN_OR_RETURN(o.type_share[1], r.GetDouble("weather_share"));
  TRIB_ASSIGN_OR_RETURN(o.type_share[2], r.GetDouble("river_share"));
  TRIB_ASSIGN_OR_RETURN(o.type_share[3], r.GetDouble("soil_share"));
  if (o.type_share[0] + o.type_share[1] + o.type_share[2] + o.type_share[3] <= 0) {
    return r.Error("air_quality_share", "at least one device type share must be above 0");
  }
  TRIB_ASSIGN_OR_RETURN(o.interval, r.GetDuration("interval"));
  static constexpr std::string_view kIntervalKeys[kDeviceTypeCount] = {
      "interval_air_quality", "interval_weather", "interval_river", "interval_soil"};
  for (size_t i = 0; i < kDeviceTypeCount; ++i) {
    TRIB_ASSIGN_OR_RETURN(o.type_interval[i], r.GetDuration(kIntervalKeys[i]));
    if (o.type_interval[i] != 0 && o.type_interval[i] < kMicrosPerSecond) {
      return r.Error(kIntervalKeys[i], "must be 0 (use `interval`) or at least 1s");
    }
  }
  TRIB_ASSIGN_OR_RETURN(o.jitter, r.GetDuration("jitter"));
  for (size_t i = 0; i < kDeviceTypeCount; ++i) {
    DurationUs iv = o.IntervalOf(static_cast<DeviceType>(i));
    if (2 * o.jitter >= iv) {
      return r.Error("jitter", FormatDuration(o.jitter) + " must be below half of the " +
                                   std::string(DeviceTypeName(static_cast<DeviceType>(i))) +
                                   " interval " + FormatDuration(iv));
    }
  }
  TRIB_ASSIGN_OR_RETURN(std::string start, r.GetString("start"));
  if (start == "now" || start.empty()) {
    o.start = FloorDiv(NowUs(), kMicrosPerMinute) * kMicrosPerMinute;
  } else {
    Result<TimeUs> t = ParseTime(start);
    if (!t.ok()) return r.Error("start", t.status().message() + " (use ISO-8601 or `now`)");
    o.start = *t;
  }
  TRIB_ASSIGN_OR_RETURN(o.speed, r.GetDouble("speed"));
  TRIB_ASSIGN_OR_RETURN(o.as_fast_as_possible, r.GetBool("as_fast_as_possible"));
  TRIB_ASSIGN_OR_RETURN(o.rate, r.GetDouble("rate"));
  TRIB_ASSIGN_OR_RETURN(o.duration, r.GetDuration("duration"));
  TRIB_ASSIGN_OR_RETURN(o.malformed_rate, r.GetDouble("malformed_rate"));
  TRIB_ASSIGN_OR_RETURN(o.duplicate_rate, r.GetDouble("duplicate_rate"));
  TRIB_ASSIGN_OR_RETURN(o.outages_per_day, r.GetDouble("outages_per_day"));
  TRIB_ASSIGN_OR_RETURN(o.outage_min, r.GetDuration("outage_min"));
  TRIB_ASSIGN_OR_RETURN(o.outage_max, r.GetDuration("outage_max"));
  if (o.outage_min > o.outage_max) {
    return r.Error("outage_min", FormatDuration(o.outage_min) + " exceeds outage_max " +
                                     FormatDuration(o.outage_max));
  }
  TRIB_ASSIGN_OR_RETURN(o.drifting_clock_share, r.GetDouble("drifting_clock_share"));
  TRIB_ASSIGN_OR_RETURN(o.max_drift_per_hour, r.GetDuration("max_drift_per_hour"));
  TRIB_ASSIGN_OR_RETURN(o.clock_ahead_devices, r.GetInt("clock_ahead_devices"));
  if (o.clock_ahead_devices > o.devices) {
    return r.Error("clock_ahead_devices",
                   "exceeds the number of devices (" + std::to_string(o.devices) + ")");
  }
  TRIB_ASSIGN_OR_RETURN(o.mg_m3_share, r.GetDouble("mg_m3_share"));
  TRIB_ASSIGN_OR_RETURN(o.projected_share, r.GetDouble("projected_share"));
  TRIB_ASSIGN_OR_RETURN(o.plumes, r.GetBool("plumes"));
  Status st = ValidateSimulatorOptions(o);
  if (!st.ok()) return r.Error("", st.message());
  return o;
}

// ---------------------------------------------------------------------------
// The source

SimulatorSource::SimulatorSource(SimulatorOptions options) : sim_(std::move(options)) {}

Status SimulatorSource::Open(RunContext& ctx) {
  ctx_ = &ctx;
  wall_open_ = NowUs();
  topics_.assign(sim_.devices().size(), Symbol{});
  return Status::Ok();
}

Symbol SimulatorSource::TopicOf(uint32_t device) {
  if (topics_.size() <= device) topics_.resize(sim_.devices().size());
  Symbol& s = topics_[device];
  if (s.empty()) {
    const SimDevice& d = sim_.devices()[device];
    s = Intern("sim/" + std::string(DeviceTypeName(d.type)) + "/" + d.id);
  }
  return s;
}

// The position: the simulation start (a `start: now` run cannot be resumed by another
// process) and the number of messages handed on.
Status SimulatorSource::RestorePosition(std::string_view position) {
  CheckpointReader r(position);
  const TimeUs start = r.I64();
  const uint64_t emitted = r.U64();
  TRIB_RETURN_IF_ERROR(r.status().WithContext("simulator position"));
  const SimulatorOptions& o = sim_.options();
  if (start != o.start) {
    return Status::Invalid("simulator: the checkpoint was taken with start " + FormatTime(start) +
                           " but this run starts at " + FormatTime(o.start) +
                           "; a simulator with `start: now` cannot resume (set a fixed start)");
  }
  std::lock_guard<std::mutex> lock(mu_);
  TimeUs last_arrival = o.start;
  for (uint64_t i = 0; i < emitted; ++i) {
    if (!sim_.Next(msg_)) {
      return Status::Invalid("simulator: the checkpoint is at message " + std::to_string(emitted) +
                             " but the simulation ends after " + std::to_string(i));
    }
    last_arrival = msg_.arrival_time;
  }
  emitted_ = emitted;
  // Continue the pacing where it stood, not from the start.
  const TimeUs now = NowUs();
  if (!o.NoWaiting() && o.rate > 0) {
    wall_open_ = now - static_cast<TimeUs>(static_cast<double>(emitted) / o.rate * 1e6);
  } else if (!o.NoWaiting() && o.speed > 0) {
    wall_open_ = now - static_cast<TimeUs>(static_cast<double>(last_arrival - o.start) / o.speed);
  }
  return Status::Ok();
}

SimulatorStats SimulatorSource::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sim_.stats();
}

Status SimulatorSource::Poll(RawBatch& out, size_t max_records, DurationUs wait) {
  const SimulatorOptions& o = sim_.options();
  if (wall_open_ == 0) wall_open_ = NowUs();
  const TimeUs deadline = NowUs() + std::max<DurationUs>(wait, 0);
  if (paused_.load(std::memory_order_relaxed)) {
    // Held back (memory ceiling): the simulated clock and the rate schedule stand still,
    // so nothing is due twice as fast afterwards.
    if (paused_since_ == 0) paused_since_ = NowUs();
    while (paused_.load(std::memory_order_relaxed) && !stop_.load(std::memory_order_relaxed) &&
           NowUs() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(
          std::clamp<DurationUs>(deadline - NowUs(), 100, 5 * kMicrosPerMilli)));
    }
    if (paused_.load(std::memory_order_relaxed)) return Status::Ok();
  }
  if (paused_since_ != 0) {
    wall_open_ += NowUs() - paused_since_;
    paused_since_ = 0;
  }
  const bool no_wait = o.NoWaiting();
  const bool by_rate = !no_wait && o.rate > 0;
  size_t added = 0;
  while (true) {
    if (stop_.load(std::memory_order_relaxed) || (ctx_ != nullptr && ctx_->stopping())) {
      return Status::Ok();
    }
    const TimeUs wall_now = NowUs();
    const double elapsed_s = static_cast<double>(wall_now - wall_open_) / 1e6;
    TimeUs sim_now = kMaxTime;
    size_t budget = max_records - added;
    if (by_rate) {
      double allowed = std::floor(o.rate * elapsed_s) + 1.0;
      double left = allowed - static_cast<double>(emitted_);
      budget = std::min(budget, left > 0 ? static_cast<size_t>(left) : size_t{0});
    } else if (!no_wait) {
      sim_now = o.start + static_cast<TimeUs>(elapsed_s * o.speed * 1e6);
    }
    TimeUs next = kMaxTime;
    {
      std::lock_guard<std::mutex> lock(mu_);
      size_t n = 0;
      while (n < budget && sim_.PeekArrival() <= sim_now) {
        if (!sim_.Next(msg_)) break;
        out.Add(msg_.payload, msg_.arrival_time, TopicOf(msg_.device),
                static_cast<int64_t>(msg_.sequence), 0);
        ++n;
      }
      added += n;
      emitted_ += n;
      next = sim_.PeekArrival();
      if (ctx_ != nullptr && ctx_->checkpointing) {
        CheckpointWriter w;
        w.I64(o.start);
        w.U64(emitted_);
        out.position = w.Take();
      }
    }
    // The stream ends once nothing is left and the clock has passed the end.
    if (next == kMaxTime && sim_.end_time() != kMaxTime &&
        (no_wait || by_rate || sim_now >= sim_.end_time())) {
      out.end_of_stream = true;
      return Status::Ok();
    }
    if (added > 0) return Status::Ok();
    const TimeUs now = NowUs();
    if (now >= deadline) return Status::Ok();
    // Sleep until the next message is due, in small steps so Stop is honoured.
    DurationUs sleep = 10 * kMicrosPerMilli;
    if (by_rate) {
      sleep = std::min<DurationUs>(sleep, static_cast<DurationUs>(1e6 / o.rate) + 1);
    } else if (!no_wait && o.speed > 0) {
      TimeUs due = std::min(next, sim_.end_time());
      if (due != kMaxTime && due > sim_now) {
        sleep = std::min<DurationUs>(
            sleep, static_cast<DurationUs>(static_cast<double>(due - sim_now) / o.speed) + 1);
      }
    }
    sleep = std::clamp<DurationUs>(std::min(sleep, deadline - now), 100, 10 * kMicrosPerMilli);
    std::this_thread::sleep_for(std::chrono::microseconds(sleep));
  }
}

void RegisterSimulatorSource(Registry& registry) {
  registry.AddSource(
      "simulator", &SimulatorSectionSpec(),
      [](const SourceEntry& entry) -> Result<std::unique_ptr<Source>> {
        TRIB_ASSIGN_OR_RETURN(SimulatorOptions options, ParseSimulatorOptions(entry.options));
        return std::unique_ptr<Source>(std::make_unique<SimulatorSource>(std::move(options)));
      });
}

}  // namespace tributary
