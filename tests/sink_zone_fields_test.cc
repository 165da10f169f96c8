// The extra zone layers and the S2 cell of a reading in the Kafka and InfluxDB encodings
// (the SQLite, Parquet, DuckDB and PostgreSQL stores have them as columns).
#include <gtest/gtest.h>

#include <string>

#include "io/sinks/influx_sink.h"
#include "io/sinks/kafka_sink.h"
#include "sink_test_records.h"
#include "spatial/h3.h"
#include "spatial/s2cell.h"

namespace tributary {
namespace {

Reading PlacedReading() {
  Reading r = testing::BareReading("aq-1", "pm25", 1714564800000000, 12.5);
  r.lat = 52.52;
  r.lon = 13.40;
  r.zone = Intern("D5");
  r.extra_zones[0] = Intern("F1");  // layer "flood"
  r.h3 = h3::LatLngToCell(r.lat, r.lon, 8);
  r.s2 = S2CellIdAt(r.lat, r.lon, 13);
  return r;
}

TEST(SinkZoneFieldsTest, KafkaJsonCarriesEveryLayerAndTheS2Cell) {
  Reading r = PlacedReading();
  std::string json = KafkaReadingJson(r, {"flood", "habitat"});
  EXPECT_NE(json.find("\"zone\":\"D5\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"zones\":{\"flood\":\"F1\",\"habitat\":null}"), std::string::npos) << json;
  EXPECT_NE(json.find("\"s2\":\"" + S2CellToken(r.s2) + "\""), std::string::npos) << json;
  // Without extra layers there is no `zones` field; without an S2 cell no `s2`.
  r.s2 = 0;
  json = KafkaReadingJson(r);
  EXPECT_EQ(json.find("\"zones\""), std::string::npos) << json;
  EXPECT_EQ(json.find("\"s2\""), std::string::npos) << json;
  LateRecord l;
  l.reading = PlacedReading();
  EXPECT_NE(KafkaLateJson(l, {"flood"}).find("\"zones\":{\"flood\":\"F1\"}"), std::string::npos);
}

TEST(SinkZoneFieldsTest, InfluxLineTagsEveryLayerAndCarriesTheCells) {
  Reading r = PlacedReading();
  std::string line = InfluxReadingLine(r, {"flood", "habitat"});
  EXPECT_EQ(line.rfind("readings,device=aq-1,metric=pm25,zone=D5,zone_flood=F1 ", 0), 0u) << line;
  EXPECT_NE(line.find("h3=\"" + h3::CellToString(r.h3) + "\""), std::string::npos) << line;
  EXPECT_NE(line.find("s2=\"" + S2CellToken(r.s2) + "\""), std::string::npos) << line;
  EXPECT_EQ(line.find("zone_habitat"), std::string::npos) << "no tag for a layer without a zone";
}

}  // namespace
}  // namespace tributary
