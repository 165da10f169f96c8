// `tributary rekey` against a librdkafka mock cluster: the messages of a hot H3 cell get
// keys at a finer resolution and spread over the output topic's partitions; the rest
// are keyed by their resolution-5 cell; nothing is lost or changed but the key.
#include "io/kafka_rekey.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <string>

#include "integration/kafka_mock.h"
#include "spatial/h3.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::KafkaMockCluster;

TEST(KafkaRekeyTest, PositionIsReadFromTheShapesOfTheJsonDecoder) {
  double lat = 0;
  double lon = 0;
  EXPECT_TRUE(RekeyPosition(R"({"device_id":"a","lat":48.1,"lon":11.5,"pm25":3})", &lat, &lon));
  EXPECT_DOUBLE_EQ(lat, 48.1);
  EXPECT_DOUBLE_EQ(lon, 11.5);
  EXPECT_TRUE(RekeyPosition(R"({"location":{"latitude":-33,"longitude":151.2}})", &lat, &lon));
  EXPECT_DOUBLE_EQ(lat, -33);
  EXPECT_DOUBLE_EQ(lon, 151.2);
  EXPECT_FALSE(RekeyPosition(R"({"device_id":"a","pm25":3})", &lat, &lon));
  EXPECT_FALSE(RekeyPosition("not json", &lat, &lon));
}

TEST(KafkaRekeyTest, KeysOnlyTheListedCellsFiner) {
  RekeyOptions o;
  o.resolution = 8;
  const uint64_t hot = h3::LatLngToCell(48.1, 11.5, 5);
  o.cells = {hot};
  bool fine = false;
  EXPECT_EQ(RekeyKey(48.1, 11.5, "dev", o, &fine),
            h3::CellToString(h3::LatLngToCell(48.1, 11.5, 8)));
  EXPECT_TRUE(fine);
  EXPECT_EQ(RekeyKey(52.5, 13.4, "dev", o, &fine),
            h3::CellToString(h3::LatLngToCell(52.5, 13.4, 5)));
  EXPECT_FALSE(fine);
  EXPECT_EQ(RekeyKey(NAN, NAN, "dev", o, &fine), "dev");
  EXPECT_FALSE(fine);
}

TEST(KafkaRekeyTest, HotCellSpreadsOverPartitionsAndNothingIsLost) {
  KafkaMockCluster kafka(1);
  ASSERT_FALSE(kafka.bootstrap().empty());
  constexpr int kPartitions = 6;
  ASSERT_EQ(kafka.CreateTopic("in", kPartitions), "");
  ASSERT_EQ(kafka.CreateTopic("out", kPartitions), "");
  // 600 readings in one res-5 cell around (48.1, 11.5), spread over ~6 km around its centre, keyed
  // by that cell (so all in one partition); 100 readings elsewhere; 10 without position.
  const uint64_t hot = h3::LatLngToCell(48.1, 11.5, 5);
  const h3::LatLng center = h3::CellToLatLng(hot);
  std::vector<std::pair<std::string, std::string>> in;
  std::multiset<std::string> values;
  for (int i = 0; i < 600; ++i) {
    const double lat = center.lat + 0.03 * std::sin(i * 0.7);
    const double lon = center.lng + 0.04 * std::cos(i * 1.3);
    ASSERT_EQ(h3::LatLngToCell(lat, lon, 5), hot);
    in.emplace_back(h3::CellToString(hot), "{\"device_id\":\"d" + std::to_string(i) +
                                               "\",\"lat\":" + std::to_string(lat) +
                                               ",\"lon\":" + std::to_string(lon) + ",\"pm25\":1}");
  }
  for (int i = 0; i < 100; ++i) {
    in.emplace_back("other", "{\"device_id\":\"e" + std::to_string(i) +
                                 "\",\"lat\":52.5,\"lon\":13.4,\"pm25\":2}");
  }
  for (int i = 0; i < 10; ++i) {
    in.emplace_back("dev-x", "{\"device_id\":\"x\",\"pm25\":" + std::to_string(i) + "}");
  }
  for (const auto& [k, v] : in) values.insert(v);
  ASSERT_EQ(kafka.Produce("in", in), "");

  RekeyOptions o;
  o.brokers = kafka.bootstrap();
  o.from = "in";
  o.to = "out";
  o.cells = {hot};
  o.resolution = 7;
  Result<RekeyReport> report = RekeyTopic(o);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->read, 710u);
  EXPECT_EQ(report->rekeyed_fine, 600u);
  EXPECT_EQ(report->rekeyed_base, 100u);
  EXPECT_EQ(report->kept, 10u);
  EXPECT_GT(report->fine_keys, 5u);

  std::vector<KafkaMockCluster::Message> out = kafka.ReadAll("out", 710, 20000);
  ASSERT_EQ(out.size(), 710u);
  std::multiset<std::string> out_values;
  std::set<int32_t> hot_partitions;
  for (const auto& m : out) {
    out_values.insert(m.value);
    if (m.value.find("\"device_id\":\"d") != std::string::npos) {
      const uint64_t cell = h3::StringToCell(m.key);
      ASSERT_EQ(h3::GetResolution(cell), 7) << m.key;
      EXPECT_EQ(h3::CellToParent(cell, 5), hot);
      hot_partitions.insert(m.partition);
    } else if (m.value.find("\"device_id\":\"e") != std::string::npos) {
      EXPECT_EQ(m.key, h3::CellToString(h3::LatLngToCell(52.5, 13.4, 5)));
    } else {
      EXPECT_EQ(m.key, "dev-x");
    }
  }
  EXPECT_EQ(out_values, values);
  // One partition held the hot cell; its finer keys land in several.
  EXPECT_GE(hot_partitions.size(), 3u);
}

}  // namespace
}  // namespace tributary
