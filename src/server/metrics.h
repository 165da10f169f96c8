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
// tributary_sse_last_event_id, process_resident_memory_bytes; per remote sink with a circuit
// breaker: tributary_sink_breaker_state, _breaker_opened_total, _buffer_rows,
// _buffer_drained_rows_total, _buffer_drain_rows_per_second and _buffer_full (label sink).
// Per stage and sink (core/stage_metrics.h): tributary_stage_events_total{stage="source:x|
// ingest|operator:window|sink:local"}, and histograms tributary_sink_write_seconds and
// tributary_sink_commit_seconds (label sink; _bucket{le}, _sum, _count).
// Connector gauges (SetConnectorGauge) follow, e.g. from the kafka source:
//   tributary_kafka_consumer_lag{source="...",topic="...",partition="0"}  records behind
//   tributary_kafka_poll_records{source="..."}   the adaptive records-per-poll limit
//   tributary_kafka_paused{source="..."}         1 while partitions are paused
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

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
/// Set a connector's gauge `name` with `labels` (`{k="v",...}`, already escaped, or
/// empty) to `value`; process-wide and thread-safe. RenderPrometheus shows it.
void SetConnectorGauge(const std::string& name, const std::string& labels, double value,
                       const std::string& help);
/// Remove every series of connector gauges whose labels contain `label_fragment`
/// (e.g. `source="kafka-in"` when that source closes).
void ClearConnectorGauges(const std::string& label_fragment);
/// Escape a label value (backslash, double quote, newline).
std::string EscapeLabelValue(std::string_view v);

}  // namespace tributary
