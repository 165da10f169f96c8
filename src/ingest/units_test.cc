#include "ingest/units.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "ingest/metrics.h"

namespace tributary {
namespace {

double Convert(std::string_view from, std::string_view to, double v) {
  const UnitInfo* a = FindUnit(from);
  const UnitInfo* b = FindUnit(to);
  EXPECT_NE(a, nullptr) << from;
  EXPECT_NE(b, nullptr) << to;
  if (a == nullptr || b == nullptr) return NAN;
  EXPECT_EQ(a->dimension, b->dimension) << from << " -> " << to;
  return ConversionBetween(*a, *b).Apply(v);
}

TEST(IngestUnits, SpellingsOfMicrogramsPerCubicMetreAreOneUnit) {
  const UnitInfo* canonical = FindUnit("ug/m3");
  ASSERT_NE(canonical, nullptr);
  for (std::string_view s :
       {"ug/m3", "µg/m³", "μg/m3", "ug/m^3", "UG/M3", "ug_m3", "µg m-3", "ug/m**3", " ug/m3 "}) {
    EXPECT_EQ(FindUnit(s), canonical) << s;
  }
  EXPECT_EQ(canonical->dimension, Dimension::kMassConcentration);
}

TEST(IngestUnits, NormalisationMapsUnicodeAndSeparators) {
  char buf[kMaxUnitSpelling];
  size_t n = NormalizeUnitSpelling("°C", buf);
  EXPECT_EQ(std::string(buf, n), "degc");
  n = NormalizeUnitSpelling("m³/s", buf);
  EXPECT_EQ(std::string(buf, n), "m3/s");
  n = NormalizeUnitSpelling("mg_m3", buf);
  EXPECT_EQ(std::string(buf, n), "mg/m3");
  EXPECT_EQ(NormalizeUnitSpelling("", buf), 0u);
  EXPECT_EQ(NormalizeUnitSpelling(std::string(100, 'x'), buf), 0u);
}

TEST(IngestUnits, UnknownSpellingsAreNull) {
  EXPECT_EQ(FindUnit("furlongs"), nullptr);
  EXPECT_EQ(FindUnit(""), nullptr);
  EXPECT_EQ(FindUnit("ug/m4"), nullptr);
  EXPECT_EQ(FindUnit(std::string(1000, 'u')), nullptr);
}

TEST(IngestUnits, Conversions) {
  EXPECT_DOUBLE_EQ(Convert("mg/m3", "ug/m3", 0.0123), 12.3);
  EXPECT_DOUBLE_EQ(Convert("degF", "degC", 212.0), 100.0);
  EXPECT_NEAR(Convert("°F", "°C", 32.0), 0.0, 1e-12);
  EXPECT_NEAR(Convert("K", "degC", 273.15), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(Convert("kPa", "hPa", 101.325), 1013.25);
  EXPECT_NEAR(Convert("inHg", "hPa", 29.92), 1013.21, 0.01);
  EXPECT_DOUBLE_EQ(Convert("mbar", "hPa", 1000.0), 1000.0);
  EXPECT_DOUBLE_EQ(Convert("Pa", "hPa", 101325.0), 1013.25);
  EXPECT_DOUBLE_EQ(Convert("ppm", "ppb", 0.05), 50.0);
  EXPECT_DOUBLE_EQ(Convert("km/h", "m/s", 36.0), 10.0);
  EXPECT_DOUBLE_EQ(Convert("mph", "m/s", 10.0), 4.4704);
  EXPECT_NEAR(Convert("knots", "m/s", 1.0), 0.514444, 1e-6);
  EXPECT_DOUBLE_EQ(Convert("ft", "m", 10.0), 3.048);
  EXPECT_NEAR(Convert("cfs", "m3/s", 1000.0), 28.316846592, 1e-9);
  EXPECT_DOUBLE_EQ(Convert("percent", "%", 55.0), 55.0);
  EXPECT_DOUBLE_EQ(Convert("mS/cm", "uS/cm", 1.5), 1500.0);
}

TEST(IngestUnits, SameUnitIsIdentity) {
  const UnitInfo* hpa = FindUnit("hPa");
  ASSERT_NE(hpa, nullptr);
  EXPECT_TRUE(ConversionBetween(*hpa, *FindUnit("mbar")).identity());
  EXPECT_FALSE(ConversionBetween(*FindUnit("kPa"), *hpa).identity());
}

TEST(IngestUnits, EveryMetricHasAKnownCanonicalUnit) {
  for (const MetricInfo& m : AllMetrics()) {
    ASSERT_NE(m.unit_info, nullptr) << m.name << " unit " << m.unit;
    EXPECT_EQ(m.unit_info->name, m.unit) << m.name;
    EXPECT_LT(m.min, m.max) << m.name;
  }
}

}  // namespace
}  // namespace tributary
