// The canonical metric table: names, aliases, canonical units and physical bounds.
//
// Every reading leaves ingestion with a canonical metric name and its value in that
// metric's canonical unit. Devices use many names for one quantity ("PM2.5", "pm2_5",
// "SDS_P2" are all pm25); names are matched after normalisation (ASCII lower case,
// '.', '_', '-' and spaces removed), and an alias may imply a unit ("temp_f" is a
// temperature in °F).
//
// Physical bounds are ingest bounds: a value outside them cannot be a real measurement
// of the quantity (a broken sensor, a unit mistake) and is quarantined as out_of_bounds.
// They are deliberately wide; "unusual but possible" is a later QC step, not this one.
// Where the seeds give a number it is used (seed 000: PM2.5 0–1000 µg/m³; seed 001:
// temperature −50–60 °C, soil moisture 0–100 %, flow 0–1e6 m³/s, DO 0–20 mg/L).
//
// Gas concentrations (NO2, O3, SO2, CO) are canonical as mixing ratios in ppb, the unit
// of the US AQI breakpoints and of most gas sensors; mass concentrations (µg/m³, mg/m³)
// convert with the metric's molar mass at 25 °C and 1013.25 hPa (molar volume
// 24.45 L/mol): µg/m³ = ppb × M / 24.45. A pipeline may ask for mass concentration
// instead (`processing.gas_unit: ug/m3`, GasMassConversion). CO2 stays in ppm.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "core/intern.h"
#include "ingest/units.h"

namespace tributary {

/// One canonical metric.
struct MetricInfo {
  std::string_view name;  ///< canonical name ("pm25")
  std::string_view unit;  ///< canonical unit spelling ("ug/m3"), a FindUnit key
  double min = 0;         ///< ingest bounds, inclusive, in the canonical unit
  double max = 0;
  double molar_mass = 0;     ///< g/mol for gases (ppb ↔ µg/m³); 0 when not a gas
  bool ppm_by_mass = false;  ///< "ppm" means mg/kg ≈ mg/L (substances in water)
  std::string_view description;
  Symbol symbol;                        ///< interned name (filled when the table is built)
  const UnitInfo* unit_info = nullptr;  ///< FindUnit(unit)
};

/// Every canonical metric.
std::span<const MetricInfo> AllMetrics();

/// Look a metric name or alias up. When the alias implies a unit ("temp_f"), `implied`
/// receives it (else nullptr). nullptr when the name is not a known metric.
const MetricInfo* FindMetric(std::string_view name, const UnitInfo** implied = nullptr);

/// The metric of a canonical name Symbol; nullptr when it is not canonical.
const MetricInfo* MetricBySymbol(Symbol name);

/// Normalise a metric name for lookup into `out` (capacity `cap`): ASCII lower case,
/// '.', '_', '-' and whitespace removed. Returns the length, 0 when empty or too long.
size_t NormalizeMetricName(std::string_view name, char* out, size_t cap);

/// How to bring a value in `unit` to the canonical unit of `metric`.
struct MetricConversion {
  bool known = false;  ///< false: the unit is unknown or not a unit of this metric
  UnitConversion conversion;
};

/// For a gas canonical in ppb: the conversion from ppb to mass concentration at 25 °C
/// and 1 atm (µg/m³; mg/m³ for CO). Not known for other metrics.
MetricConversion GasMassConversion(const MetricInfo& metric);
/// The unit GasMassConversion produces ("ug/m3", "mg/m3"); empty when not a gas.
std::string_view GasMassUnit(const MetricInfo& metric);

/// Resolve the conversion of `unit` (a FindUnit result, may be nullptr) to the metric's
/// canonical unit, including the molar-mass and ppm-by-mass cross conversions.
MetricConversion ConversionTo(const MetricInfo& metric, const UnitInfo* unit);

}  // namespace tributary
