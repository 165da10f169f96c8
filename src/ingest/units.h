// Units of measurement: the spellings devices use, mapped to physical dimensions.
//
// Every known unit belongs to one Dimension and is an affine map to that dimension's
// base unit: base = value × scale + offset (offset is non-zero only for temperatures).
// Converting between two units of one dimension goes through the base. Spellings are
// matched after normalisation (NormalizeUnitSpelling), so "µg/m³", "ug/m3", "ug/m^3",
// "ug_m3" and "μg m-3" are one unit. Cross-dimension conversions that need a property
// of the substance (ppb ↔ µg/m³ needs a molar mass) live with the metric table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tributary {

/// Physical dimensions with the base unit every unit of that dimension maps to.
enum class Dimension : uint8_t {
  kNone = 0,
  kMassConcentration,  ///< base µg/m³ (also mg/L for substances in water)
  kMixingRatio,        ///< base ppb (by volume)
  kTemperature,        ///< base °C
  kPressure,           ///< base hPa
  kSpeed,              ///< base m/s
  kLength,             ///< base m
  kVolumeFlow,         ///< base m³/s
  kPercent,            ///< base %
  kConductivity,       ///< base µS/cm
  kTurbidity,          ///< base NTU
  kAngle,              ///< base degree
  kPh,                 ///< pH units
};

/// Name a dimension ("mass_concentration").
std::string_view DimensionName(Dimension d);

/// One unit: how its values map to the base unit of its dimension.
struct UnitInfo {
  std::string_view name;  ///< canonical ASCII spelling, e.g. "ug/m3", "degC"
  Dimension dimension = Dimension::kNone;
  double scale = 1.0;  ///< base = value × scale + offset
  double offset = 0.0;
};

/// An affine conversion: out = value × scale + offset.
struct UnitConversion {
  double scale = 1.0;
  double offset = 0.0;

  /// True when the conversion changes no value (e.g. "mbar" → "hPa").
  bool identity() const { return scale == 1.0 && offset == 0.0; }
  double Apply(double value) const { return value * scale + offset; }
};

/// Longest unit spelling considered; longer strings are unknown units.
inline constexpr size_t kMaxUnitSpelling = 32;

/// Normalise a spelling into `out` (capacity kMaxUnitSpelling): ASCII lower case;
/// µ (U+00B5) and μ (U+03BC) → 'u'; ³ → '3'; ² → '2'; ° → "deg"; spaces, '^' and '*'
/// dropped; '_' → '/'. Returns the normalised length, or 0 when the text is empty or
/// too long.
size_t NormalizeUnitSpelling(std::string_view text, char* out);

/// Look a unit spelling up (normalised first); nullptr when unknown.
const UnitInfo* FindUnit(std::string_view spelling);

/// The conversion from `from` to `to`; both must have the same dimension.
UnitConversion ConversionBetween(const UnitInfo& from, const UnitInfo& to);

}  // namespace tributary
