#include "io/sources/file_source.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include "core/pipeline_config.h"
#include "core/registry.h"
#include "test_util.h"

namespace tributary {
namespace {

using testing::TempDir;
using testing::WriteFile;

struct Read {
  std::vector<std::string> payloads;
  std::vector<int64_t> offsets;
  std::vector<std::string> topics;
};

// Read a whole source, `max` records per poll.
Read ReadAll(FileSource& source, size_t max = 1000) {
  Read out;
  RawBatch batch;
  for (int polls = 0; polls < 100000; ++polls) {
    batch.Clear();
    Status st = source.Poll(batch, max, 0);
    EXPECT_TRUE(st.ok()) << st.ToString();
    for (const RawRecord& r : batch.records) {
      out.payloads.emplace_back(batch.Payload(r));
      out.offsets.push_back(r.offset);
      out.topics.push_back(r.topic.str());
      EXPECT_EQ(r.partition, -1);
      EXPECT_GT(r.arrival_time, 0);
    }
    if (batch.end_of_stream || !st.ok()) break;
  }
  return out;
}

Read ReadFiles(const std::vector<std::string>& paths, size_t max = 1000) {
  FileSourceOptions o;
  o.paths = paths;
  FileSource source(o);
  RunContext ctx;
  Status st = source.Open(ctx);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return ReadAll(source, max);
}

OptionReader Reader(const std::string& yaml) {
  return OptionReader(YAML::Load(yaml), "test.yaml", "sources[0]", {&FileSourceSectionSpec()});
}

TEST(FileSourceTest, NdjsonLinesBlankLinesCrlfAndNoFinalNewline) {
  TempDir dir;
  std::string path = dir.File("in.ndjson");
  WriteFile(path,
            "{\"a\":1}\n"
            "\n"
            "{\"a\":2}\r\n"
            "   \t\r\n"
            "\r\n"
            "{\"a\":3}\n"
            "{\"a\":4}");
  Read r = ReadFiles({path});
  EXPECT_EQ(r.payloads,
            (std::vector<std::string>{"{\"a\":1}", "{\"a\":2}", "{\"a\":3}", "{\"a\":4}"}));
  EXPECT_EQ(r.offsets, (std::vector<int64_t>{1, 3, 6, 7}));
  for (const std::string& t : r.topics) EXPECT_EQ(t, path);
}

TEST(FileSourceTest, SmallPollsAndSeveralFiles) {
  TempDir dir;
  WriteFile(dir.File("a.ndjson"), "1\n2\n3\n");
  WriteFile(dir.File("b.jsonl"),
            "\xEF\xBB\xBF"
            "4\n5\n");
  Read r = ReadFiles({dir.File("a.ndjson"), dir.File("b.jsonl")}, 1);
  EXPECT_EQ(r.payloads, (std::vector<std::string>{"1", "2", "3", "4", "5"}));
  EXPECT_EQ(r.offsets, (std::vector<int64_t>{1, 2, 3, 1, 2}));
  EXPECT_EQ(r.topics[3], dir.File("b.jsonl"));
}

TEST(FileSourceTest, EmptyFileEndsAtOnce) {
  TempDir dir;
  WriteFile(dir.File("empty.ndjson"), "");
  Read r = ReadFiles({dir.File("empty.ndjson")});
  EXPECT_TRUE(r.payloads.empty());
}

TEST(FileSourceTest, VeryLongLinesAreDelivered) {
  TempDir dir;
  std::string big = "{\"x\":\"" + std::string(17 << 20, 'a') + "\"}";
  WriteFile(dir.File("big.ndjson"), big + "\n{\"y\":1}\n");
  Read r = ReadFiles({dir.File("big.ndjson")});
  ASSERT_EQ(r.payloads.size(), 2u);
  EXPECT_EQ(r.payloads[0], big);
  EXPECT_EQ(r.payloads[1], "{\"y\":1}");
}

TEST(FileSourceTest, MissingFileNamesThePathAndTheOsError) {
  FileSourceOptions o;
  o.paths = {"/nonexistent/dir/readings.ndjson"};
  FileSource source(o);
  RunContext ctx;
  Status st = source.Open(ctx);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("/nonexistent/dir/readings.ndjson"), std::string::npos);
  EXPECT_NE(st.message().find("No such file or directory"), std::string::npos) << st.message();

  TempDir dir;
  o.paths = {dir.path()};
  FileSource on_dir(o);
  st = on_dir.Open(ctx);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("Is a directory"), std::string::npos) << st.message();
}

TEST(CsvTest, SplitFollowsRfc4180) {
  std::vector<CsvField> f;
  ASSERT_EQ(SplitCsvRecord("a,\"b,c\",\"say \"\"hi\"\"\",,\"\"", ',', f), CsvParse::kComplete);
  ASSERT_EQ(f.size(), 5u);
  EXPECT_EQ(f[0].text, "a");
  EXPECT_FALSE(f[0].quoted);
  EXPECT_EQ(f[1].text, "b,c");
  EXPECT_TRUE(f[1].quoted);
  EXPECT_EQ(f[2].text, "say \"hi\"");
  EXPECT_EQ(f[3].text, "");
  EXPECT_FALSE(f[3].quoted);
  EXPECT_EQ(f[4].text, "");
  EXPECT_TRUE(f[4].quoted);

  ASSERT_EQ(SplitCsvRecord(" 1 ,  \"x y\"  ,z", ',', f), CsvParse::kComplete);
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0].text, "1");
  EXPECT_EQ(f[1].text, "x y");
  EXPECT_EQ(f[2].text, "z");

  EXPECT_EQ(SplitCsvRecord("a,\"open", ',', f), CsvParse::kOpenQuote);
  ASSERT_EQ(SplitCsvRecord("a,\"line1\nline2\",b", ',', f), CsvParse::kComplete);
  EXPECT_EQ(f[1].text, "line1\nline2");
  ASSERT_EQ(SplitCsvRecord("a\tb", '\t', f), CsvParse::kComplete);
  EXPECT_EQ(f.size(), 2u);
  ASSERT_EQ(SplitCsvRecord("", ',', f), CsvParse::kComplete);
  EXPECT_EQ(f.size(), 1u);
}

TEST(CsvTest, JsonNumbersAreRecognisedExactly) {
  for (const char* yes :
       {"0", "-0", "12", "12.5", "-3.25", "1e3", "1E-7", "2.5e+10", "1714564800000"}) {
    EXPECT_TRUE(IsJsonNumber(yes)) << yes;
  }
  for (const char* no : {"", "-", "0042", "+5", ".5", "5.", "1e", "NaN", "inf", "0x1F", "1,5",
                         "12 ", "1.2.3", "--1"}) {
    EXPECT_FALSE(IsJsonNumber(no)) << no;
  }
}

TEST(FileSourceTest, CsvRowsBecomeJsonObjects) {
  TempDir dir;
  std::string path = dir.File("readings.csv");
  WriteFile(path,
            "device_id,sensor_ts,lat,lon,pm25,note\r\n"
            "aq-0001,1714564800000,52.51,13.39,12.3,plain\r\n"
            "\r\n"
            "0042,1714564860000,52.52,13.40,,\"comma, and \"\"quote\"\"\"\r\n"
            "aq-0003,1714564920000,52.53,13.41,\"7\",\"two\nlines\"\r\n"
            "aq-0004,1714564980000,52.54\r\n"
            "aq-0005,1714565040000,52.55,13.43,NaN,last");
  Read r = ReadFiles({path});
  ASSERT_EQ(r.payloads.size(), 5u);
  EXPECT_EQ(r.payloads[0],
            "{\"device_id\":\"aq-0001\",\"sensor_ts\":1714564800000,\"lat\":52.51,\"lon\":13.39,"
            "\"pm25\":12.3,\"note\":\"plain\"}");
  EXPECT_EQ(r.payloads[1],
            "{\"device_id\":\"0042\",\"sensor_ts\":1714564860000,\"lat\":52.52,\"lon\":13.40,"
            "\"pm25\":null,\"note\":\"comma, and \\\"quote\\\"\"}");
  EXPECT_EQ(r.payloads[2],
            "{\"device_id\":\"aq-0003\",\"sensor_ts\":1714564920000,\"lat\":52.53,\"lon\":13.41,"
            "\"pm25\":\"7\",\"note\":\"two\\nlines\"}");
  EXPECT_EQ(
      r.payloads[3],
      "{\"_csv_error\":\"expected 6 fields, got 3\",\"_raw\":\"aq-0004,1714564980000,52.54\"}");
  EXPECT_EQ(r.payloads[4],
            "{\"device_id\":\"aq-0005\",\"sensor_ts\":1714565040000,\"lat\":52.55,\"lon\":13.43,"
            "\"pm25\":\"NaN\",\"note\":\"last\"}");
  // Offsets are the line where each record starts (the header is line 1).
  EXPECT_EQ(r.offsets, (std::vector<int64_t>{2, 4, 5, 7, 8}));
  simdjson::dom::parser parser;
  for (const std::string& p : r.payloads) {
    simdjson::dom::element doc;
    EXPECT_EQ(parser.parse(p).get(doc), simdjson::SUCCESS) << p;
  }
}

TEST(FileSourceTest, CsvUnterminatedQuoteAndTsv) {
  TempDir dir;
  WriteFile(dir.File("bad.csv"), "a,b\n1,\"never closed\n2,3\n");
  Read r = ReadFiles({dir.File("bad.csv")});
  ASSERT_EQ(r.payloads.size(), 1u);
  EXPECT_EQ(r.payloads[0],
            "{\"_csv_error\":\"unterminated quoted field\",\"_raw\":\"1,\\\"never closed\\n2,3\"}");

  WriteFile(dir.File("t.tsv"), "a\tb\n1\tx y\n");
  r = ReadFiles({dir.File("t.tsv")});
  ASSERT_EQ(r.payloads.size(), 1u);
  EXPECT_EQ(r.payloads[0], "{\"a\":1,\"b\":\"x y\"}");

  WriteFile(dir.File("semi.txt"), "a;b;\n1;2;3\n");
  FileSourceOptions o;
  o.paths = {dir.File("semi.txt")};
  o.auto_format = false;
  o.format = FileFormat::kCsv;
  o.delimiter = ';';
  FileSource source(o);
  RunContext ctx;
  ASSERT_TRUE(source.Open(ctx).ok());
  r = ReadAll(source);
  ASSERT_EQ(r.payloads.size(), 1u);
  EXPECT_EQ(r.payloads[0], "{\"a\":1,\"b\":2,\"_col3\":3}");
}

TEST(FileSourceTest, OptionsAndRegistration) {
  Result<FileSourceOptions> o = ParseFileSourceOptions(Reader("path: x.csv\n"));
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->paths, std::vector<std::string>{"x.csv"});
  EXPECT_TRUE(o->auto_format);
  EXPECT_EQ(FileFormatFromPath("x.CSV"), FileFormat::kCsv);
  EXPECT_EQ(FileFormatFromPath("x.ndjson"), FileFormat::kNdjson);

  o =
      ParseFileSourceOptions(Reader("paths: [a.ndjson, b.ndjson]\nfile_format: csv\n"
                                    "delimiter: tab\n"));
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->paths.size(), 2u);
  EXPECT_FALSE(o->auto_format);
  EXPECT_EQ(o->format, FileFormat::kCsv);
  EXPECT_EQ(o->delimiter, '\t');

  auto error = [](const std::string& yaml) {
    Result<FileSourceOptions> r = ParseFileSourceOptions(Reader(yaml));
    return r.ok() ? std::string("ok") : r.status().message();
  };
  EXPECT_NE(error("{}").find("sources[0].path: is required"), std::string::npos) << error("{}");
  EXPECT_NE(error("path: a\nfollow: true\n").find("sources[0].follow"), std::string::npos);
  EXPECT_NE(error("path: a\ndelimiter: ab\n").find("sources[0].delimiter"), std::string::npos);
  EXPECT_NE(error("path: a\nfile_format: xml\n").find("file_format"), std::string::npos);

  TempDir dir;
  WriteFile(dir.File("r.ndjson"), "{\"a\":1}\n");
  Result<PipelineConfig> config = ParsePipelineConfig(
      "sources:\n  - name: f\n    type: file\n    path: " + dir.File("r.ndjson") + "\n",
      "test.yaml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  Result<std::unique_ptr<Source>> source = Registry::Get().MakeSource(config->sources[0]);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  RunContext ctx;
  ASSERT_TRUE((*source)->Open(ctx).ok());
  RawBatch batch;
  ASSERT_TRUE((*source)->Poll(batch, 10, 0).ok());
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch.Payload(batch.records[0]), "{\"a\":1}");
}

TEST(FileSourceTest, ExampleSamplesAreValidPayloads) {
  for (const char* name : {"sample_readings.ndjson", "sample_readings.csv"}) {
    std::string path = std::string(TRIBUTARY_SOURCE_DIR) + "/examples/" + name;
    Read r = ReadFiles({path});
    ASSERT_GT(r.payloads.size(), 10u) << name;
    simdjson::dom::parser parser;
    size_t valid = 0;
    for (const std::string& p : r.payloads) {
      simdjson::dom::element doc;
      if (parser.parse(p).get(doc) != simdjson::SUCCESS) continue;
      std::string_view id;
      if (doc["device_id"].get(id) == simdjson::SUCCESS && !id.empty()) ++valid;
    }
    // The samples hold a few malformed payloads on purpose, not more.
    EXPECT_GE(valid, r.payloads.size() - 3) << name;
  }
}

}  // namespace
}  // namespace tributary
