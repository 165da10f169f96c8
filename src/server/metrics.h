// Prometheus text exposition (format 0.0.4) of the pipeline's counters and gauges.
//
// Counters come from the ledger, so /metrics and /api/ledger always agree:
//   tributary_records_input_total                      records that entered ingestion
//   tributary_records_total{outcome="accepted|quarantined|late|duplicate"}
//   tributary_quarantined_total{reason="..."}          quarantined records by reason code
//   tributary_windows_emitted_total                    window results (revisions included)
//   tributary_sink_committed_rows_total{sink_table="sqlite/readings"}
// Gauges: tributary_queue_depth{queue="raw|sink"} (batches), tributary_watermark_lag_seconds
// (processing time − operator watermark), tributary_late_fraction and
// tributary_quarantine_fraction (of all input), tributary_pipeline_running (0/1),
// tributary_sse_last_event_id, process_resident_memory_bytes.
#pragma once

#include <cstdint>
#include <string>

#include "core/ledger.h"
#include "core/time.h"

namespace tributary {

struct MetricsInput {
  LedgerSnapshot ledger;
  size_t raw_queue_depth = 0;   ///< batches
  size_t sink_queue_depth = 0;  ///< batches
  TimeUs watermark = kMinTime;  ///< kMinTime: no watermark yet (the lag is not exported)
  TimeUs now = 0;               ///< processing time, UTC µs
  bool running = false;
  uint64_t last_event_id = 0;
  uint64_t rss_bytes = 0;
};

/// Render every metric in the Prometheus text format.
std::string RenderPrometheus(const MetricsInput& in);
/// Resident set size of this process in bytes (0 when /proc is unavailable).
uint64_t ProcessRssBytes();
/// Escape a label value (backslash, double quote, newline).
std::string EscapeLabelValue(std::string_view v);

}  // namespace tributary
