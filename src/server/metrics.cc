#include "server/metrics.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <utility>

#include "core/sink_health.h"
#include "core/stage_metrics.h"

namespace tributary {

namespace {

void Header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void Sample(std::string& out, std::string_view name, std::string_view labels, uint64_t v) {
  out += name;
  out += labels;
  out += ' ';
  out += std::to_string(v);
  out += '\n';
}

std::string Label(std::string_view key, std::string_view value) {
  return "{" + std::string(key) + "=\"" + EscapeLabelValue(value) + "\"}";
}

struct ConnectorGauges {
  std::mutex mu;
  std::map<std::string, std::string> help;                      // by gauge name
  std::map<std::string, std::map<std::string, double>> series;  // name → labels → value
};

ConnectorGauges& Gauges() {
  static ConnectorGauges* g = new ConnectorGauges();  // never destroyed: used at exit
  return *g;
}

}  // namespace

void SetConnectorGauge(const std::string& name, const std::string& labels, double value,
                       const std::string& help) {
  ConnectorGauges& g = Gauges();
  std::lock_guard lock(g.mu);
  g.help[name] = help;
  g.series[name][labels] = value;
}

void ClearConnectorGauges(const std::string& label_fragment) {
  ConnectorGauges& g = Gauges();
  std::lock_guard lock(g.mu);
  for (auto& [name, by_labels] : g.series) {
    std::erase_if(by_labels, [&](const auto& kv) {
      return kv.first.find(label_fragment) != std::string::npos;
    });
  }
}

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

// Circuit breakers of remote sinks (io/sinks/breaker_sink.h).
void RenderSinkHealth(std::string& out) {
  // Headers even without breakers, so the series' types are known before any data.
  std::map<std::string, SinkHealth> health = SinkHealthSnapshot();
  auto each = [&](std::string_view name, std::string_view type, std::string_view help, auto value) {
    Header(out, name, type, help);
    for (const auto& [sink, h] : health) Sample(out, name, Label("sink", sink), value(h));
  };
  each("tributary_sink_breaker_state", "gauge",
       "Circuit breaker of a remote sink: 0 closed, 1 open, 2 half-open.",
       [](const SinkHealth& h) { return static_cast<uint64_t>(h.state); });
  each("tributary_sink_breaker_opened_total", "counter", "Times the breaker opened.",
       [](const SinkHealth& h) { return h.opened_total; });
  each("tributary_sink_buffer_rows", "gauge", "Rows waiting in the local buffer.",
       [](const SinkHealth& h) { return h.buffered_rows; });
  each("tributary_sink_buffer_drained_rows_total", "counter",
       "Rows sent from the local buffer after a recovery.",
       [](const SinkHealth& h) { return h.drained_rows_total; });
  each("tributary_sink_buffer_drain_rows_per_second", "gauge",
       "Rate of the last drain of the local buffer.",
       [](const SinkHealth& h) { return static_cast<uint64_t>(h.drain_rows_per_s); });
  each("tributary_sink_buffer_full", "gauge",
       "1 while the local buffer refuses writes (disk full or breaker_buffer_max reached).",
       [](const SinkHealth& h) { return static_cast<uint64_t>(h.buffer_full ? 1 : 0); });
}

// Events per stage and the sink call latency histograms (core/stage_metrics.h). The
// headers are always written, so a dashboard finds the series' types before any data.
void RenderStageMetrics(std::string& out) {
  Header(out, "tributary_stage_events_total", "counter",
         "Events leaving a pipeline stage: raw records for sources; readings, window "
         "results and alerts for ingest, operators and sinks.");
  for (const auto& [stage, n] : StageEventsSnapshot()) {
    Sample(out, "tributary_stage_events_total", Label("stage", stage), n);
  }
  auto histograms = SinkLatencySnapshot();
  for (std::string_view op : {"write", "commit"}) {
    std::string name = "tributary_sink_" + std::string(op) + "_seconds";
    Header(out, name, "histogram",
           "Duration of one Sink::" + std::string(op == "write" ? "Write" : "Commit") +
               " call (retries are calls), seconds.");
    for (const auto& [key, h] : histograms) {
      if (key.second != op) continue;
      std::string sink = "sink=\"" + EscapeLabelValue(key.first) + "\"";
      for (size_t i = 0; i < kSinkLatencyBuckets.size(); ++i) {
        char le[32];
        std::snprintf(le, sizeof le, "%g", kSinkLatencyBuckets[i]);
        Sample(out, name + "_bucket", "{" + sink + ",le=\"" + le + "\"}", h.buckets[i]);
      }
      Sample(out, name + "_bucket", "{" + sink + ",le=\"+Inf\"}", h.count);
      out += name + "_sum{" + sink + "} " + std::to_string(h.sum_seconds) + "\n";
      Sample(out, name + "_count", "{" + sink + "}", h.count);
    }
  }
}

}  // namespace

std::string RenderPrometheus(const MetricsInput& in) {
  const LedgerSnapshot& l = in.ledger;
  std::string out;
  Header(out, "tributary_records_input_total", "counter", "Records that entered ingestion.");
  Sample(out, "tributary_records_input_total", "", l.input);
  Header(out, "tributary_records_total", "counter", "Records by final outcome.");
  Sample(out, "tributary_records_total", Label("outcome", "accepted"), l.accepted);
  Sample(out, "tributary_records_total", Label("outcome", "quarantined"), l.quarantined);
  Sample(out, "tributary_records_total", Label("outcome", "late"), l.late);
  Sample(out, "tributary_records_total", Label("outcome", "duplicate"), l.duplicate);
  Header(out, "tributary_quarantined_total", "counter", "Quarantined records by reason code.");
  for (const auto& [reason, n] : l.quarantine_reasons) {
    Sample(out, "tributary_quarantined_total", Label("reason", reason), n);
  }
  Header(out, "tributary_windows_emitted_total", "counter",
         "Window results emitted, revisions included.");
  Sample(out, "tributary_windows_emitted_total", "", l.windows_emitted);
  Header(out, "tributary_sink_committed_rows_total", "counter",
         "Rows committed durably by sink and table.");
  for (const auto& [sink_table, n] : l.sink_committed) {
    Sample(out, "tributary_sink_committed_rows_total", Label("sink_table", sink_table), n);
  }
  RenderSinkHealth(out);
  RenderStageMetrics(out);
  Header(out, "tributary_queue_depth", "gauge", "Batches waiting in an inter-stage queue.");
  Sample(out, "tributary_queue_depth", Label("queue", "raw"), in.raw_queue_depth);
  Sample(out, "tributary_queue_depth", Label("queue", "sink"), in.sink_queue_depth);
  if (in.watermark != kMinTime) {
    Header(out, "tributary_watermark_lag_seconds", "gauge",
           "Processing time minus the operator watermark, seconds.");
    double lag = static_cast<double>(in.now - in.watermark) / kMicrosPerSecond;
    out += "tributary_watermark_lag_seconds " + std::to_string(lag) + "\n";
  }
  // Fractions of all input so far: a dashboard shows them without PromQL ratios.
  double input = l.input > 0 ? static_cast<double>(l.input) : 1.0;
  Header(out, "tributary_late_fraction", "gauge", "Late records / input records since start.");
  out += "tributary_late_fraction " + std::to_string(static_cast<double>(l.late) / input) + "\n";
  Header(out, "tributary_quarantine_fraction", "gauge",
         "Quarantined records / input records since start.");
  out += "tributary_quarantine_fraction " +
         std::to_string(static_cast<double>(l.quarantined) / input) + "\n";
  Header(out, "tributary_pipeline_running", "gauge", "1 while the pipeline runs.");
  Sample(out, "tributary_pipeline_running", "", in.running ? 1 : 0);
  Header(out, "tributary_sse_last_event_id", "counter", "Id of the newest live event.");
  Sample(out, "tributary_sse_last_event_id", "", in.last_event_id);
  Header(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  Sample(out, "process_resident_memory_bytes", "", in.rss_bytes);
  ConnectorGauges& g = Gauges();
  std::lock_guard lock(g.mu);
  for (const auto& [name, by_labels] : g.series) {
    if (by_labels.empty()) continue;
    Header(out, name, "gauge", g.help[name]);
    for (const auto& [labels, v] : by_labels) {
      out += name;
      out += labels;
      out += ' ';
      // Whole numbers (counts, offsets, flags) without a fraction.
      out += (v == std::floor(v) && std::fabs(v) < 1e15) ? std::to_string(static_cast<int64_t>(v))
                                                         : std::to_string(v);
      out += '\n';
    }
  }
  return out;
}

uint64_t ProcessRssBytes() {
  // /proc/self/statm: size resident shared text lib data dt, in pages.
  std::ifstream in("/proc/self/statm");
  uint64_t size = 0;
  uint64_t resident = 0;
  if (!(in >> size >> resident)) return 0;
  long page = ::sysconf(_SC_PAGESIZE);
  return resident * static_cast<uint64_t>(page > 0 ? page : 4096);
}

}  // namespace tributary
