#include "server/metrics.h"

#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

namespace tributary {
namespace {

TEST(MetricsFractions, LateAndQuarantineFractionsOfInput) {
  MetricsInput in;
  in.ledger.input = 200;
  in.ledger.accepted = 186;
  in.ledger.late = 10;
  in.ledger.quarantined = 4;
  std::string text = RenderPrometheus(in);
  EXPECT_NE(text.find("\ntributary_late_fraction 0.050000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\ntributary_quarantine_fraction 0.020000\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE tributary_late_fraction gauge\n"), std::string::npos);
}

TEST(MetricsFractions, ZeroBeforeAnyInput) {
  std::string text = RenderPrometheus(MetricsInput{});
  EXPECT_NE(text.find("\ntributary_late_fraction 0.000000\n"), std::string::npos) << text;
}

// Every metric the example Grafana dashboard queries is one /metrics exports.
TEST(MetricsGrafana, ExampleDashboardQueriesExportedMetrics) {
  std::ifstream file(std::string(TRIBUTARY_SOURCE_DIR) +
                     "/examples/grafana/tributary-dashboard.json");
  ASSERT_TRUE(file);
  std::stringstream json;
  json << file.rdbuf();
  MetricsInput in;
  in.watermark = 1;  // so the lag gauge is exported
  std::string text = RenderPrometheus(in);
  std::set<std::string> queried;
  std::string doc = json.str();
  std::regex name(R"(\b(tributary_[a-z_]+|process_[a-z_]+)\b)");
  for (auto it = std::sregex_iterator(doc.begin(), doc.end(), name); it != std::sregex_iterator();
       ++it) {
    queried.insert((*it)[1]);
  }
  EXPECT_GE(queried.size(), 10u);
  for (const std::string& metric : queried) {
    EXPECT_NE(text.find("# TYPE " + metric + " "), std::string::npos) << metric;
  }
}

}  // namespace
}  // namespace tributary
