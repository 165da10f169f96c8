#include "core/config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/pipeline_config.h"

namespace tributary {
namespace {

std::string ErrorOf(std::string_view yaml) {
  Result<PipelineConfig> r = ParsePipelineConfig(yaml, "test.yaml");
  return r.ok() ? std::string("ok") : r.status().message();
}

TEST(ConfigTest, DefaultsComeFromTheSpecTables) {
  Result<PipelineConfig> r = ParsePipelineConfig("", "empty.yaml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->name, "tributary");
  EXPECT_EQ(r->data_dir, "./tributary-data");
  EXPECT_EQ(r->batch_size, 1024u);
  EXPECT_EQ(r->processing.grace, 15 * kMicrosPerMinute);
  EXPECT_EQ(r->processing.drift_threshold, 5 * kMicrosPerMinute);
}

TEST(ConfigTest, ErrorsNameFileLineAndKey) {
  EXPECT_EQ(ErrorOf("pipeline:\n  name: x\n  batch_size: many\n"),
            "test.yaml:3:15: pipeline.batch_size: expected an integer, got 'many'");
  EXPECT_EQ(ErrorOf("pipeline:\n  batch_size: 0\n"),
            "test.yaml:2:15: pipeline.batch_size: 0 is below the minimum 1");
  EXPECT_EQ(ErrorOf("processing:\n  grace: soon\n"),
            "test.yaml:2:10: processing.grace: bad duration 'soon': expected a number (use e.g. "
            "500ms, 30s, 5m, 1h, 1d)");
  std::string unknown = ErrorOf("processing:\n  grase: 5m\n");
  EXPECT_EQ(unknown.rfind("test.yaml:2:10: processing.grase: unknown option (known here: ", 0), 0u)
      << unknown;
  EXPECT_EQ(ErrorOf("pipelines:\n  name: x\n").rfind("test.yaml:2:3: pipelines: unknown option", 0),
            0u);
  std::string type = ErrorOf("sources:\n  - name: a\n    type: carrier-pigeon\n");
  EXPECT_EQ(type.rfind("test.yaml:3:11: sources[0].type: unknown source type 'carrier-pigeon'", 0),
            0u)
      << type;
  EXPECT_EQ(ErrorOf("sources:\n  - type: file\n"), "test.yaml:2:5: sources[0].name: is required");
  EXPECT_EQ(ErrorOf("sources: 3\n"),
            "test.yaml:1:10: sources: expected a list (entries start with '- ')");
}

TEST(ConfigTest, YamlSyntaxErrorsNameTheLine) {
  std::string e = ErrorOf("pipeline:\n  name: [unclosed\n  other: 1\n");
  EXPECT_EQ(e.rfind("test.yaml:", 0), 0u) << e;
  EXPECT_NE(e.find("YAML syntax error"), std::string::npos) << e;
}

TEST(ConfigTest, SubstitutesEnvironment) {
  setenv("TRIBUTARY_TEST_NAME", "from-env", 1);
  unsetenv("TRIBUTARY_TEST_UNSET");
  Result<PipelineConfig> r = ParsePipelineConfig(
      "pipeline:\n  name: ${TRIBUTARY_TEST_NAME}\n  data_dir: ${TRIBUTARY_TEST_UNSET:-/tmp/x}\n",
      "env.yaml");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->name, "from-env");
  EXPECT_EQ(r->data_dir, "/tmp/x");
  EXPECT_EQ(ErrorOf("pipeline:\n\n  name: ${TRIBUTARY_TEST_UNSET}\n"),
            "test.yaml:3: environment variable TRIBUTARY_TEST_UNSET is not set (write "
            "${TRIBUTARY_TEST_UNSET:-default} to give a default)");
  EXPECT_EQ(*SubstituteEnv("cost: $${literal}", "x"), "cost: ${literal}");
  EXPECT_FALSE(SubstituteEnv("a: ${UNCLOSED\n", "x").ok());
}

TEST(ConfigTest, DocsAreGeneratedFromTheTables) {
  std::string doc = GenerateConfigurationDoc();
  EXPECT_NE(doc.find("| `batch_size` | integer | `1024` | `1..1000000` |"), std::string::npos);
  EXPECT_NE(doc.find("## `processing`"), std::string::npos);
  // The committed reference must equal what the code generates.
  std::ifstream in(std::string(TRIBUTARY_SOURCE_DIR) + "/docs/CONFIGURATION.md");
  ASSERT_TRUE(in) << "docs/CONFIGURATION.md is missing; run: tributary config-doc > "
                     "docs/CONFIGURATION.md";
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), doc) << "docs/CONFIGURATION.md is stale; regenerate it with "
                              "`tributary config-doc > docs/CONFIGURATION.md`";
}

TEST(ConfigTest, EmbeddedDefaultParses) {
  Result<PipelineConfig> r = ParsePipelineConfig(EmbeddedDefaultConfig(), "<embedded default>");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->sources.empty());
  EXPECT_FALSE(r->sinks.empty());
  EXPECT_FALSE(r->windows.empty());
}

}  // namespace
}  // namespace tributary
