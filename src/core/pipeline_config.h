// The parsed pipeline file: the `pipeline` section resolved to values, and one
// OptionReader per source, window definition and sink, read by the module that owns
// those options (each module declares its SectionSpec next to its code).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"

namespace tributary {

struct SourceEntry {
  std::string name;
  std::string type;  ///< registered source type ("simulator", "file", ...)
  OptionReader options;
};

struct SinkEntry {
  std::string name;
  std::string type;  ///< registered sink type ("sqlite", ...)
  OptionReader options;
};

/// Pipeline-wide processing options (the `processing` section).
struct ProcessingOptions {
  DurationUs out_of_orderness = 0;  ///< watermark = max event time − this, per partition
  DurationUs idle_timeout = 0;      ///< a partition quiet this long stops holding the watermark
  size_t clock_outliers = 0;        ///< fastest device clocks the watermark passes over
  DurationUs grace = 0;             ///< default grace period of window definitions
  DurationUs dedup_horizon = 0;     ///< how long (device, metric, time) keys are remembered
  DurationUs drift_threshold = 0;   ///< |arrival − event time| above this → TIMESTAMP_DRIFT
  DurationUs max_future = 0;        ///< event time ahead of arrival by more → quarantine
};

struct PipelineConfig {
  std::string file;  ///< where it was loaded from ("<embedded default>" for none)
  std::string name;
  std::string data_dir;            ///< resolved: --data-dir overrides the file
  size_t batch_size = 0;           ///< raw records per batch from a source
  size_t queue_capacity = 0;       ///< batches per inter-stage queue
  DurationUs commit_interval = 0;  ///< how often sinks commit
  DurationUs duration = 0;         ///< stop after this long (0 = until the input ends)
  std::vector<SourceEntry> sources;
  ProcessingOptions processing;
  OptionReader processing_options;  ///< the raw `processing` mapping, for module keys
  std::vector<OptionReader> windows;
  std::vector<SinkEntry> sinks;
  OptionReader server;                 ///< the `server` section, read by the server module
  OptionReader zones;                  ///< the `zones` section, read by the spatial module
  std::vector<OptionReader> surfaces;  ///< `surfaces[]` entries, read by the spatial module
  OptionReader alerts;      ///< the `alerts` section, read by the alert module (alert/rules.h)
  OptionReader checkpoint;  ///< the `checkpoint` section (stream/checkpoint.h)
  OptionReader anomaly;     ///< the `anomaly` section (stream/qc/drift.h, stream/qc/iforest.h)
  OptionReader qc;          ///< the `qc` section (stream/qc/qc.h)
};

/// The `pipeline` section spec and the top-level key list.
const SectionSpec& PipelineSectionSpec();
/// The `processing` section spec.
const SectionSpec& ProcessingSectionSpec();
/// Common keys of every `sources[]` entry (name, type, format).
const SectionSpec& SourceCommonSpec();
/// Common keys of every `sinks[]` entry (name, type).
const SectionSpec& SinkCommonSpec();

/// Parse a pipeline from YAML text. Source, sink and window options are checked
/// against their registered specs here; unknown types are errors naming the line.
Result<PipelineConfig> ParsePipelineConfig(std::string_view yaml_text, const std::string& file);
/// Read and parse a pipeline file.
Result<PipelineConfig> LoadPipelineConfig(const std::string& path);

/// The embedded default pipeline: simulator → processing → local store.
std::string_view EmbeddedDefaultConfig();

}  // namespace tributary
