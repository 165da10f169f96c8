#include "io/sinks/kafka_sink.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <string>

#include "sink_test_records.h"

namespace tributary {
namespace {

// The reading records the kafka sink produces carry the QC score beside the provenance,
// for on-time and late readings alike.
TEST(KafkaSinkRecordsTest, ReadingAndLateRecordsCarryTheQcScore) {
  Reading r = testing::BareReading("aq-0001", "pm25", 1714521600LL * kMicrosPerSecond, 12.5);
  r.qc_score = 1.25f;
  LateRecord l;
  l.reading = r;
  l.window = Intern("device_1m");
  for (const std::string& json : {KafkaReadingJson(r), KafkaLateJson(l)}) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    ASSERT_EQ(parser.parse(json).get(doc), simdjson::SUCCESS) << json;
    double score = 0;
    ASSERT_EQ(doc["qc_score"].get(score), simdjson::SUCCESS) << json;
    EXPECT_DOUBLE_EQ(score, 1.25);
    EXPECT_EQ(std::string_view(doc["device"]), "aq-0001");
  }
}

}  // namespace
}  // namespace tributary
