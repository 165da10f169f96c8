#include "ingest/units.h"

#include <string>
#include <unordered_map>
#include <vector>

namespace tributary {

namespace {

// One unit and the normalised spellings that name it.
struct UnitDef {
  UnitInfo info;
  std::vector<std::string_view> spellings;
};

// Factors are exact definitions where one exists (inch, foot, mile, knot, atm, psi).
const std::vector<UnitDef>& UnitDefs() {
  static const std::vector<UnitDef> defs = {
      // Mass concentration, base µg/m³.
      {{"ug/m3", Dimension::kMassConcentration, 1.0, 0.0},
       {"ug/m3", "ugm-3", "ug/cum", "microgram/m3", "micrograms/m3", "ugperm3"}},
      {{"mg/m3", Dimension::kMassConcentration, 1e3, 0.0}, {"mg/m3", "mgm-3", "milligram/m3"}},
      {{"ng/m3", Dimension::kMassConcentration, 1e-3, 0.0}, {"ng/m3", "ngm-3"}},
      {{"g/m3", Dimension::kMassConcentration, 1e6, 0.0}, {"g/m3", "gm-3"}},
      {{"mg/L", Dimension::kMassConcentration, 1e6, 0.0}, {"mg/l", "mgl-1", "mg/litre"}},
      {{"ug/L", Dimension::kMassConcentration, 1e3, 0.0}, {"ug/l", "ugl-1"}},
      // Mixing ratio (by volume), base ppb.
      {{"ppb", Dimension::kMixingRatio, 1.0, 0.0}, {"ppb", "ppbv", "nmol/mol"}},
      {{"ppm", Dimension::kMixingRatio, 1e3, 0.0}, {"ppm", "ppmv", "umol/mol"}},
      {{"ppt", Dimension::kMixingRatio, 1e-3, 0.0}, {"ppt", "pptv", "pmol/mol"}},
      // Temperature, base °C.
      {{"degC", Dimension::kTemperature, 1.0, 0.0},
       {"degc", "c", "celsius", "degcelsius", "degreesc", "degreec", "degreescelsius", "deg/c",
        "tempc"}},
      {{"degF", Dimension::kTemperature, 5.0 / 9.0, -32.0 * 5.0 / 9.0},
       {"degf", "f", "fahrenheit", "degfahrenheit", "degreesf", "degreef", "degreesfahrenheit",
        "deg/f"}},
      {{"K", Dimension::kTemperature, 1.0, -273.15}, {"k", "kelvin", "degk", "deg/k"}},
      // Pressure, base hPa.
      {{"hPa", Dimension::kPressure, 1.0, 0.0},
       {"hpa", "mbar", "mb", "millibar", "millibars", "hectopascal"}},
      {{"Pa", Dimension::kPressure, 0.01, 0.0}, {"pa", "pascal"}},
      {{"kPa", Dimension::kPressure, 10.0, 0.0}, {"kpa", "kilopascal"}},
      {{"bar", Dimension::kPressure, 1000.0, 0.0}, {"bar"}},
      {{"inHg", Dimension::kPressure, 33.8638866667, 0.0}, {"inhg", "inchhg", "inmercury"}},
      {{"mmHg", Dimension::kPressure, 1.33322387415, 0.0}, {"mmhg", "torr"}},
      {{"atm", Dimension::kPressure, 1013.25, 0.0}, {"atm"}},
      {{"psi", Dimension::kPressure, 68.9475729318, 0.0}, {"psi"}},
      // Speed, base m/s.
      {{"m/s", Dimension::kSpeed, 1.0, 0.0}, {"m/s", "ms-1", "mps", "meter/s", "metre/s"}},
      {{"km/h", Dimension::kSpeed, 1.0 / 3.6, 0.0}, {"km/h", "kmh", "kph", "kmph", "kmh-1"}},
      {{"mph", Dimension::kSpeed, 0.44704, 0.0}, {"mph", "mi/h", "miles/h"}},
      {{"kn", Dimension::kSpeed, 1852.0 / 3600.0, 0.0}, {"kn", "kt", "kts", "knot", "knots"}},
      {{"ft/s", Dimension::kSpeed, 0.3048, 0.0}, {"ft/s", "fps"}},
      // Length, base m.
      {{"m", Dimension::kLength, 1.0, 0.0}, {"m", "meter", "meters", "metre", "metres"}},
      {{"cm", Dimension::kLength, 0.01, 0.0}, {"cm"}},
      {{"mm", Dimension::kLength, 0.001, 0.0}, {"mm"}},
      {{"km", Dimension::kLength, 1000.0, 0.0}, {"km"}},
      {{"ft", Dimension::kLength, 0.3048, 0.0}, {"ft", "feet", "foot"}},
      {{"in", Dimension::kLength, 0.0254, 0.0}, {"in", "inch", "inches"}},
      // Volume flow, base m³/s.
      {{"m3/s", Dimension::kVolumeFlow, 1.0, 0.0}, {"m3/s", "m3s-1", "cumec", "cumecs", "cms"}},
      {{"m3/h", Dimension::kVolumeFlow, 1.0 / 3600.0, 0.0}, {"m3/h", "m3h-1"}},
      {{"L/s", Dimension::kVolumeFlow, 1e-3, 0.0}, {"l/s", "ls-1", "lps"}},
      {{"L/min", Dimension::kVolumeFlow, 1e-3 / 60.0, 0.0}, {"l/min", "lpm"}},
      {{"cfs", Dimension::kVolumeFlow, 0.028316846592, 0.0}, {"cfs", "ft3/s", "cusec", "cusecs"}},
      {{"gpm", Dimension::kVolumeFlow, 0.003785411784 / 60.0, 0.0}, {"gpm", "gal/min"}},
      // Percent.
      {{"%", Dimension::kPercent, 1.0, 0.0},
       {"%", "percent", "pct", "%rh", "rh", "rh%", "%vwc", "vwc", "vwc%", "%vol", "vol%"}},
      // Electrical conductivity, base µS/cm.
      {{"uS/cm", Dimension::kConductivity, 1.0, 0.0}, {"us/cm", "uscm-1", "umho/cm"}},
      {{"mS/cm", Dimension::kConductivity, 1000.0, 0.0}, {"ms/cm", "mscm-1", "mmho/cm"}},
      {{"S/m", Dimension::kConductivity, 1e4, 0.0}, {"s/m", "sm-1"}},
      {{"mS/m", Dimension::kConductivity, 10.0, 0.0}, {"ms/m", "msm-1"}},
      // Turbidity: the nephelometric units agree to within calibration.
      {{"NTU", Dimension::kTurbidity, 1.0, 0.0}, {"ntu", "fnu", "ftu"}},
      // Angle, base degree.
      {{"deg", Dimension::kAngle, 1.0, 0.0}, {"deg", "degree", "degrees"}},
      {{"rad", Dimension::kAngle, 57.29577951308232, 0.0}, {"rad", "radian", "radians"}},
      // pH.
      {{"pH", Dimension::kPh, 1.0, 0.0}, {"ph"}},
  };
  return defs;
}

const std::unordered_map<std::string_view, const UnitInfo*>& SpellingIndex() {
  static const auto* index = [] {
    auto* m = new std::unordered_map<std::string_view, const UnitInfo*>();
    for (const UnitDef& def : UnitDefs()) {
      for (std::string_view s : def.spellings) m->emplace(s, &def.info);
    }
    return m;
  }();
  return *index;
}

}  // namespace

std::string_view DimensionName(Dimension d) {
  switch (d) {
    case Dimension::kNone:
      return "none";
    case Dimension::kMassConcentration:
      return "mass_concentration";
    case Dimension::kMixingRatio:
      return "mixing_ratio";
    case Dimension::kTemperature:
      return "temperature";
    case Dimension::kPressure:
      return "pressure";
    case Dimension::kSpeed:
      return "speed";
    case Dimension::kLength:
      return "length";
    case Dimension::kVolumeFlow:
      return "volume_flow";
    case Dimension::kPercent:
      return "percent";
    case Dimension::kConductivity:
      return "conductivity";
    case Dimension::kTurbidity:
      return "turbidity";
    case Dimension::kAngle:
      return "angle";
    case Dimension::kPh:
      return "ph";
  }
  return "none";
}

size_t NormalizeUnitSpelling(std::string_view text, char* out) {
  size_t n = 0;
  auto put = [&](char c) {
    if (n < kMaxUnitSpelling) out[n] = c;
    ++n;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    unsigned char next = i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0;
    if (c == 0xC2 && next == 0xB5) {  // µ MICRO SIGN
      put('u');
      ++i;
    } else if (c == 0xCE && next == 0xBC) {  // μ GREEK SMALL LETTER MU
      put('u');
      ++i;
    } else if (c == 0xC2 && next == 0xB3) {  // ³
      put('3');
      ++i;
    } else if (c == 0xC2 && next == 0xB2) {  // ²
      put('2');
      ++i;
    } else if (c == 0xC2 && next == 0xB0) {  // °
      put('d');
      put('e');
      put('g');
      ++i;
    } else if (c == ' ' || c == '^' || c == '*' || c == '\t') {
      continue;
    } else if (c == '_') {
      put('/');
    } else if (c >= 'A' && c <= 'Z') {
      put(static_cast<char>(c - 'A' + 'a'));
    } else {
      put(static_cast<char>(c));
    }
  }
  return n <= kMaxUnitSpelling ? n : 0;
}

const UnitInfo* FindUnit(std::string_view spelling) {
  char buf[kMaxUnitSpelling];
  size_t n = NormalizeUnitSpelling(spelling, buf);
  if (n == 0) return nullptr;
  const auto& index = SpellingIndex();
  auto it = index.find(std::string_view(buf, n));
  if (it != index.end()) return it->second;
  // A trailing abbreviation dot ("deg." or "mph.") is noise.
  if (n > 1 && buf[n - 1] == '.') {
    it = index.find(std::string_view(buf, n - 1));
    if (it != index.end()) return it->second;
  }
  return nullptr;
}

UnitConversion ConversionBetween(const UnitInfo& from, const UnitInfo& to) {
  // base = v × s1 + o1;  out = (base − o2) / s2.
  UnitConversion c;
  c.scale = from.scale / to.scale;
  c.offset = (from.offset - to.offset) / to.scale;
  if (&from == &to) c = UnitConversion{};
  return c;
}

}  // namespace tributary
