#include "core/json_writer.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <cmath>

namespace tributary {
namespace {

TEST(JsonWriterTest, WritesValidJsonForHostileStrings) {
  JsonWriter w;
  std::string bad_utf8 = "ok\xff\xfe tail";
  std::string overlong = "\xc0\xaf";
  std::string control("a\0b\x01\"\\\n", 7);
  w.BeginObject()
      .Key("bad")
      .String(bad_utf8)
      .Key("overlong")
      .String(overlong)
      .Key("control")
      .String(control)
      .Key("nan")
      .Number(NAN)
      .Key("list")
      .BeginArray()
      .Int(-3)
      .UInt(7)
      .Bool(true)
      .Null()
      .Number(0.1)
      .EndArray()
      .Key("µg/m³")
      .String("µg/m³")
      .EndObject();
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  ASSERT_EQ(parser.parse(w.str()).get(doc), simdjson::SUCCESS) << w.str();
  EXPECT_EQ(std::string_view(doc["bad"]), "ok\xEF\xBF\xBD\xEF\xBF\xBD tail");
  EXPECT_EQ(std::string_view(doc["control"]), control);
  EXPECT_TRUE(doc["nan"].is_null());
  EXPECT_EQ(double(doc["list"].at(4)), 0.1);
  EXPECT_EQ(std::string_view(doc["µg/m³"]), "µg/m³");
}

}  // namespace
}  // namespace tributary
