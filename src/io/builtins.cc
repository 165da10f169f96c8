// The one list of built-in connectors and documented config sections, in the order
// the configuration reference shows them. Adding a connector: its file pair ends with
// Register<Name>(Registry&), and one line below calls it.
#include "alert/dispatch.h"
#include "alert/patterns.h"
#include "alert/rules.h"
#include "alert/summary.h"
#include "core/pipeline_config.h"
#include "core/registry.h"
#include "ingest/device_registry.h"
#include "ingest/source_options.h"
#include "io/sinks/duckdb_sink.h"
#include "io/sinks/influx_sink.h"
#include "io/sinks/kafka_sink.h"
#include "io/sinks/mqtt_sink.h"
#include "io/sinks/parquet_sink.h"
#include "io/sinks/postgres_sink.h"
#include "io/sinks/sqlite_sink.h"
#include "io/sources/file_source.h"
#include "io/sources/http_source.h"
#include "io/sources/kafka_source.h"
#include "io/sources/mqtt_source.h"
#include "io/sources/owm_source.h"
#include "io/sources/simulator.h"
#include "io/sources/tail_source.h"
#include "server/http_server.h"
#include "spatial/surface.h"
#include "spatial/zones.h"
#include "stream/checkpoint.h"
#include "stream/qc/drift.h"
#include "stream/qc/iforest.h"
#include "stream/qc/qc.h"
#include "stream/window.h"

namespace tributary {

void RegisterBuiltins(Registry& registry) {
  registry.AddSection(&PipelineSectionSpec());
  registry.AddSection(&ProcessingSectionSpec());
  registry.AddSection(&DeviceRegistryEntrySpec());
  registry.AddSection(&DeviceCalibrationSpec());
  // Sources.
  registry.AddSection(&SourceCommonSpec());
  registry.AddSection(&SourceMappingSpec());
  RegisterSimulatorSource(registry);
  RegisterFileSource(registry);
  RegisterMqttSource(registry);
  RegisterKafkaSource(registry);
  RegisterHttpIngestSource(registry);
  RegisterTailSource(registry);
  RegisterOwmSource(registry);
  // Spatial enrichment.
  registry.AddSection(&ZonesSectionSpec());
  registry.AddSection(&ZoneLayerSectionSpec());
  // Windows.
  // Quality control, then windows.
  registry.AddSection(&QcSectionSpec());
  registry.AddSection(&QcRuleSectionSpec());
  registry.AddSection(&WindowSectionSpec());
  registry.AddSection(&SurfaceSectionSpec());
  // Sinks.
  registry.AddSection(&SinkCommonSpec());
  RegisterSqliteSink(registry);
  RegisterParquetSink(registry);
  RegisterMqttSink(registry);
  RegisterPostgresSink(registry);
  RegisterInfluxSink(registry);
  RegisterKafkaSink(registry);
  RegisterDuckDbSink(registry);
  // Server.
  registry.AddSection(&ServerSectionSpec());
  // Alerts.
  registry.AddSection(&AlertsSectionSpec());
  registry.AddSection(&AlertRuleSectionSpec());
  registry.AddSection(&AlertChannelCommonSpec());
  registry.AddSection(&AlertMqttChannelSpec());
  registry.AddSection(&AlertWebhookChannelSpec());
  registry.AddSection(&AlertEmailChannelSpec());
  registry.AddSection(&SummarySectionSpec());
  // Checkpoints.
  registry.AddSection(&CheckpointSectionSpec());
  // Calibration drift, anomaly detection and pattern rules.
  registry.AddSection(&AnomalySectionSpec());
  registry.AddSection(&DriftSectionSpec());
  registry.AddSection(&AnomalyForestSectionSpec());
  registry.AddSection(&PatternRuleSectionSpec());
  registry.AddSection(&PatternConditionSectionSpec());
}

}  // namespace tributary
