#include "server/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "core/stage_metrics.h"

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
  for (std::string metric : queried) {
    // A histogram is queried through its _bucket (or _sum, _count) series.
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string base = metric.substr(0, metric.size() - std::min(metric.size(), strlen(suffix)));
      if (metric.size() > base.size() &&
          metric.compare(base.size(), std::string::npos, suffix) == 0 &&
          text.find("# TYPE " + base + " histogram") != std::string::npos) {
        metric = base;
      }
    }
    EXPECT_NE(text.find("# TYPE " + metric + " "), std::string::npos) << metric;
  }
  // The dashboard shows the stages, the sink latencies and the breakers.
  for (const char* m : {"tributary_stage_events_total", "tributary_sink_write_seconds",
                        "tributary_sink_commit_seconds", "tributary_sink_breaker_state"}) {
    EXPECT_EQ(queried.count(m) + queried.count(std::string(m) + "_bucket"), 1u) << m;
  }
}

TEST(MetricsStages, SinkLatencyHistogramIsCumulative) {
  ObserveSinkLatency("metrics-test-sink", "write", 0.003);
  ObserveSinkLatency("metrics-test-sink", "write", 0.2);
  ObserveSinkLatency("metrics-test-sink", "commit", 20);  // beyond the last bound
  AddStageEvents("operator:metrics-test", 5);
  AddStageEvents("operator:metrics-test", 2);
  std::string text = RenderPrometheus(MetricsInput{});
  auto has = [&](const std::string& line) {
    EXPECT_NE(text.find("\n" + line + "\n"), std::string::npos) << line << "\n" << text;
  };
  const std::string w = "tributary_sink_write_seconds";
  has("# TYPE " + w + " histogram");
  has(w + "_bucket{sink=\"metrics-test-sink\",le=\"0.0025\"} 0");
  has(w + "_bucket{sink=\"metrics-test-sink\",le=\"0.005\"} 1");
  has(w + "_bucket{sink=\"metrics-test-sink\",le=\"0.1\"} 1");
  has(w + "_bucket{sink=\"metrics-test-sink\",le=\"0.25\"} 2");
  has(w + "_bucket{sink=\"metrics-test-sink\",le=\"+Inf\"} 2");
  has(w + "_count{sink=\"metrics-test-sink\"} 2");
  has(w + "_sum{sink=\"metrics-test-sink\"} 0.203000");
  const std::string c = "tributary_sink_commit_seconds";
  has(c + "_bucket{sink=\"metrics-test-sink\",le=\"10\"} 0");
  has(c + "_bucket{sink=\"metrics-test-sink\",le=\"+Inf\"} 1");
  has("tributary_stage_events_total{stage=\"operator:metrics-test\"} 7");
}

}  // namespace
}  // namespace tributary
