#include "io/sinks/sink_text.h"

#include <gtest/gtest.h>

#include <cmath>

namespace tributary {
namespace {

TEST(SinkProvenanceJsonTest, SameBytesAsProvenanceToJson) {
  SinkProvenanceJson text;
  Provenance p;
  // Only the device and the flags.
  EXPECT_EQ(text.Format(p, Intern("d1"), QcFlags{}), "{\"device_id\":\"d1\",\"qc_flags\":[]}");
  p.source = Intern("file");
  p.topic = Intern("/data/a \"b\"\\c\n\x01.ndjson");
  p.partition = 3;
  p.offset = 1234567890123;
  p.firmware = Intern("fw-2.1");
  p.calibration_date = Intern("2024-03-01");
  p.crs_source = Intern("EPSG:32633");
  p.orig_x = 500000.5;
  p.orig_y = NAN;
  p.drift_correction = Intern("slope=0.9");
  p.anomaly_score = 0.123456f;
  QcFlags flags;
  flags.Set(QcFlag::kLate);
  flags.Set(QcFlag::kSpike);
  const Symbol device = Intern("dev-\xc3\xa9\xff");
  EXPECT_EQ(text.Format(p, device, flags), ProvenanceToJson(p, device, flags));
  EXPECT_EQ(text.Format(p, device, flags),
            "{\"device_id\":\"dev-\xc3\xa9\xEF\xBF\xBD\",\"firmware_version\":\"fw-2.1\","
            "\"calibration_date\":\"2024-03-01\",\"crs_source\":\"EPSG:32633\","
            "\"original_x\":500000.5,\"original_y\":null,\"source\":\"file\","
            "\"topic\":\"/data/a \\\"b\\\"\\\\c\\n\\u0001.ndjson\",\"partition\":3,"
            "\"offset\":1234567890123,\"drift_correction\":\"slope=0.9\","
            "\"anomaly_score\":0.1235,\"qc_flags\":[\"LATE\",\"SPIKE\"]}");
  // The remembered flags follow the bitset.
  QcFlags other;
  other.Set(QcFlag::kLateArrival);
  EXPECT_EQ(text.Format(p, device, other), ProvenanceToJson(p, device, other));
  p.partition = -1;
  p.offset = 0;
  p.crs_source = Symbol{};
  p.anomaly_score = NAN;
  EXPECT_EQ(text.Format(p, Symbol{}, QcFlags{}), ProvenanceToJson(p, Symbol{}, QcFlags{}));
}

}  // namespace
}  // namespace tributary
