#include "ingest/metrics.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace tributary {
namespace {

std::string_view NameOf(std::string_view alias) {
  const MetricInfo* m = FindMetric(alias);
  return m == nullptr ? std::string_view("(none)") : m->name;
}

TEST(IngestMetrics, AliasesResolveToCanonicalNames) {
  for (std::string_view a : {"pm25", "PM2.5", "pm2_5", "pm-2.5", "PM25", "SDS_P2", "pm_25"}) {
    EXPECT_EQ(NameOf(a), "pm25") << a;
  }
  for (std::string_view a : {"pm10", "PM10", "SDS_P1", "pm_10", "PM10.0"}) {
    EXPECT_EQ(NameOf(a), "pm10") << a;
  }
  // A separator between digits is a decimal point: PM1.0 is not PM10.
  EXPECT_EQ(NameOf("PM1.0"), "pm1");
  EXPECT_EQ(NameOf("pm1_0"), "pm1");
  EXPECT_EQ(NameOf("temp"), "temperature");
  EXPECT_EQ(NameOf("Temperature"), "temperature");
  EXPECT_EQ(NameOf("RH"), "humidity");
  EXPECT_EQ(NameOf("windSpeed"), "wind_speed");
  EXPECT_EQ(NameOf("wind_speed"), "wind_speed");
  EXPECT_EQ(NameOf("soil"), "soil_moisture");
  EXPECT_EQ(NameOf("do"), "dissolved_oxygen");
  EXPECT_EQ(NameOf("NO2"), "no2");
  EXPECT_EQ(NameOf("battery_pct"), "(none)");
  EXPECT_EQ(NameOf(""), "(none)");
}

TEST(IngestMetrics, AliasesMayImplyAUnit) {
  const UnitInfo* implied = nullptr;
  const MetricInfo* m = FindMetric("temp_f", &implied);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->name, "temperature");
  ASSERT_NE(implied, nullptr);
  EXPECT_EQ(implied->name, "degF");
  m = FindMetric("temperature_c", &implied);
  ASSERT_NE(m, nullptr);
  ASSERT_NE(implied, nullptr);
  EXPECT_EQ(implied->name, "degC");
  FindMetric("pm25", &implied);
  EXPECT_EQ(implied, nullptr);
}

TEST(IngestMetrics, CanonicalNamesAreUniqueAndInterned) {
  std::set<std::string_view> names;
  for (const MetricInfo& m : AllMetrics()) {
    EXPECT_TRUE(names.insert(m.name).second) << m.name;
    EXPECT_EQ(m.symbol.view(), m.name);
    EXPECT_EQ(MetricBySymbol(m.symbol), &m);
  }
  EXPECT_EQ(MetricBySymbol(Intern("not-a-metric")), nullptr);
}

TEST(IngestMetrics, BoundsFromTheSeeds) {
  const MetricInfo* pm25 = FindMetric("pm25");
  ASSERT_NE(pm25, nullptr);
  EXPECT_EQ(pm25->min, 0);
  EXPECT_EQ(pm25->max, 1000);
  const MetricInfo* t = FindMetric("temperature");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->min, -50);
  EXPECT_EQ(t->max, 60);
  EXPECT_EQ(FindMetric("soil_moisture")->max, 100);
  EXPECT_EQ(FindMetric("flow")->max, 1e6);
  EXPECT_EQ(FindMetric("dissolved_oxygen")->max, 20);
}

TEST(IngestMetrics, GasMixingRatiosConvertWithMolarMass) {
  // NO2, O3, SO2 and CO are canonical in ppb.
  for (std::string_view gas : {"no2", "o3", "so2", "co"}) {
    const MetricInfo* m = FindMetric(gas);
    ASSERT_NE(m, nullptr) << gas;
    EXPECT_EQ(m->unit, "ppb") << gas;
  }
  const MetricInfo* no2 = FindMetric("no2");
  MetricConversion c = ConversionTo(*no2, FindUnit("ppb"));
  ASSERT_TRUE(c.known);
  EXPECT_TRUE(c.conversion.identity());
  c = ConversionTo(*no2, FindUnit("ppm"));
  ASSERT_TRUE(c.known);
  EXPECT_DOUBLE_EQ(c.conversion.Apply(0.1), 100.0);
  // EPA/WHO reference: 1 ppb NO2 = 1.88 µg/m³ at 25 °C (µg/m³ = ppb × 46.0055 / 24.45).
  c = ConversionTo(*no2, FindUnit("ug/m3"));
  ASSERT_TRUE(c.known);
  EXPECT_NEAR(c.conversion.Apply(1.8816), 1.0, 1e-4);
  c = ConversionTo(*no2, FindUnit("mg/m3"));
  ASSERT_TRUE(c.known);
  EXPECT_NEAR(c.conversion.Apply(0.18816), 100.0, 1e-2);
  // 1 ppb O3 = 47.9982 / 24.45 = 1.9631 µg/m³; 1 ppb SO2 = 2.6203 µg/m³.
  EXPECT_NEAR(ConversionTo(*FindMetric("o3"), FindUnit("ug/m3")).conversion.Apply(196.31), 100.0,
              1e-2);
  EXPECT_NEAR(ConversionTo(*FindMetric("so2"), FindUnit("ug/m3")).conversion.Apply(26.203), 10.0,
              1e-2);
  // CO: 1 ppm = 1000 ppb = 1.1456 mg/m³.
  const MetricInfo* co = FindMetric("co");
  EXPECT_DOUBLE_EQ(ConversionTo(*co, FindUnit("ppm")).conversion.Apply(1.0), 1000.0);
  EXPECT_NEAR(ConversionTo(*co, FindUnit("mg/m3")).conversion.Apply(1.1456), 1000.0, 0.1);
  const MetricInfo* co2 = FindMetric("co2");
  c = ConversionTo(*co2, FindUnit("ppb"));
  ASSERT_TRUE(c.known);
  EXPECT_DOUBLE_EQ(c.conversion.Apply(420000.0), 420.0);
}

TEST(IngestMetrics, GasMassConversionOnRequest) {
  MetricConversion no2 = GasMassConversion(*FindMetric("no2"));
  ASSERT_TRUE(no2.known);
  EXPECT_NEAR(no2.conversion.Apply(20.0), 37.632, 1e-3);
  EXPECT_EQ(GasMassUnit(*FindMetric("no2")), "ug/m3");
  EXPECT_NEAR(GasMassConversion(*FindMetric("o3")).conversion.Apply(50.0), 98.156, 1e-3);
  EXPECT_NEAR(GasMassConversion(*FindMetric("so2")).conversion.Apply(10.0), 26.203, 1e-3);
  MetricConversion co = GasMassConversion(*FindMetric("co"));
  ASSERT_TRUE(co.known);
  EXPECT_NEAR(co.conversion.Apply(1000.0), 1.1456, 1e-4);  // mg/m³
  EXPECT_EQ(GasMassUnit(*FindMetric("co")), "mg/m3");
  // Not gases in ppb: no conversion.
  EXPECT_FALSE(GasMassConversion(*FindMetric("pm25")).known);
  EXPECT_FALSE(GasMassConversion(*FindMetric("co2")).known);
  EXPECT_TRUE(GasMassUnit(*FindMetric("temperature")).empty());
}

TEST(IngestMetrics, DissolvedOxygenPpmIsMilligramsPerLitre) {
  const MetricInfo* dox = FindMetric("dissolved_oxygen");
  MetricConversion c = ConversionTo(*dox, FindUnit("ppm"));
  ASSERT_TRUE(c.known);
  EXPECT_DOUBLE_EQ(c.conversion.Apply(8.5), 8.5);
  c = ConversionTo(*dox, FindUnit("ug/L"));
  ASSERT_TRUE(c.known);
  EXPECT_DOUBLE_EQ(c.conversion.Apply(8500.0), 8.5);
}

TEST(IngestMetrics, WrongDimensionIsNotAConversion) {
  EXPECT_FALSE(ConversionTo(*FindMetric("temperature"), FindUnit("ppb")).known);
  EXPECT_FALSE(ConversionTo(*FindMetric("pm25"), FindUnit("ppb")).known);  // no molar mass
  EXPECT_FALSE(ConversionTo(*FindMetric("humidity"), FindUnit("hPa")).known);
  EXPECT_FALSE(ConversionTo(*FindMetric("pm25"), nullptr).known);
}

TEST(IngestMetrics, CanonicalUnitIsIdentity) {
  for (const MetricInfo& m : AllMetrics()) {
    MetricConversion c = ConversionTo(m, m.unit_info);
    ASSERT_TRUE(c.known) << m.name;
    EXPECT_TRUE(c.conversion.identity()) << m.name;
  }
}

}  // namespace
}  // namespace tributary
