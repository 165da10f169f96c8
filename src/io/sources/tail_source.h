// The `tail` source: follows a growing CSV or NDJSON file (the seed paper's CSV watcher
// bridge), feeds every new row into the pipeline and optionally publishes it to MQTT.
//
// Following: the file is read from the last processed position every `poll_interval`
// (and at once while there is more). Only complete lines (ending in a newline) are
// taken, so a row being written is read once it is finished. Rows are handed on like
// the `file` source's (CSV rows re-encoded as JSON objects keyed by the header, see
// file_source.h; the header is re-read from the start of the file after a restart).
//   - Rotation (the file renamed away and a new one created at `path`): the old file is
//     read to its end first, then the new one from its beginning.
//   - Truncation (the same file shorter than the position): reading starts again at
//     the beginning (and CSV takes the first line as the header again).
//   - A missing file is waited for.
//
// Position: after every sink committed a batch's results (Source::OnCommitted) the
// file's identity (device, inode) and the byte position after the batch are written
// atomically to `state_file`, never before; a restart resumes there, so a crash
// re-reads (the dedup stage drops the repeats) and never skips. When the file at `path`
// is another one than the saved one (rotated while tributary was down) it is read from
// its beginning, and rows appended to the old file after the saved position are not
// read (they are in the rotated file).
//
// With checkpoints on, rows read from the file are appended to the source's ingest log
// (stream/ingest_log.h) first and handed on from there; state_file then records the
// position up to which the log holds the file (written after each append), and a
// checkpoint records the position in the log, so a crash replays what the log holds
// after the checkpoint and reads the file on from where the log ends.
//
// Publishing (`publish.topic` set): every row is also published to the MQTT broker of
// `publish` as its JSON object, when it is read (the bridge's low latency), at
// `publish.qos`. Rows re-read after a crash are published again. A failed publish is
// logged and counted, not fatal: the row itself is in the pipeline either way.
//
// Records: topic = the path, offset = the byte position where the row starts,
// partition = -1, arrival time = the wall clock when read.
//
// Threading: Poll on the source thread; OnCommitted on the sink thread; Stop from any
// thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/intern.h"
#include "io/connector.h"
#include "io/mqtt_client.h"
#include "io/sources/file_source.h"
#include "stream/ingest_log.h"

namespace tributary {

class Registry;

struct TailPublishOptions {
  MqttConnectOptions connect;
  std::string topic;  ///< empty: do not publish
  int qos = 0;
  bool retain = false;
};

struct TailSourceOptions {
  std::string path;
  bool auto_format = true;
  FileFormat format = FileFormat::kCsv;
  char delimiter = ',';
  DurationUs poll_interval = 250'000;
  std::string state_file;     ///< empty: <data_dir>/tail/<source name>.json
  std::string source_name;    ///< for the default state file
  bool start_at_end = false;  ///< with no saved position: skip what the file holds
  TailPublishOptions publish;
};

/// The option table of `sources[] (type: tail)`.
const SectionSpec& TailSourceSectionSpec();
/// The keys of a tail source's `publish` mapping.
const SectionSpec& TailPublishSectionSpec();
/// Read and validate tail source options; errors name the key.
Result<TailSourceOptions> ParseTailSourceOptions(const OptionReader& reader,
                                                 const std::string& source_name);

class TailSource : public Source {
 public:
  explicit TailSource(TailSourceOptions options);
  ~TailSource() override;
  /// Reads the saved position; connects to the MQTT broker when publishing.
  Status Open(RunContext& ctx) override;
  Status Poll(RawBatch& out, size_t max_records, DurationUs wait) override;
  void Stop() override;
  void OnCommitted(uint64_t checkpoint) override;
  /// With checkpoints on, every row read goes through the ingest log first, so the
  /// source resumes from its position in the log.
  bool SupportsCheckpoints() const override { return log_ != nullptr; }
  Status RestorePosition(std::string_view position) override;
  void Close() override;

  /// Where the position is saved.
  const std::string& state_file() const { return options_.state_file; }
  /// Rotations and truncations seen so far.
  uint64_t rotations() const { return rotations_.load(std::memory_order_relaxed); }
  uint64_t truncations() const { return truncations_.load(std::memory_order_relaxed); }
  /// Rows published to MQTT, and publishes that failed (logged, not fatal).
  uint64_t published() const { return published_.load(std::memory_order_relaxed); }
  uint64_t publish_failures() const { return publish_failures_.load(std::memory_order_relaxed); }

 private:
  struct Position {
    uint64_t checkpoint = 0;
    dev_t dev = 0;
    ino_t ino = 0;
    uint64_t offset = 0;
  };
  Status OpenFile(uint64_t offset);
  void CloseFile();
  // Re-read the CSV header from the start of the open file (after a resume).
  Status ReadHeader();
  // Append complete records from the open file to `out`; the number added.
  Result<size_t> ReadRecords(RawBatch& out, size_t max_records, TimeUs now);
  // At the end of the open file: switch on rotation, restart on truncation.
  Status CheckRotation();
  void Publish(std::string_view json);
  void WaitFor(DurationUs wait);
  // Read new rows from the file (with the rotation and truncation checks) into `out`.
  Status ReadNew(RawBatch& out, size_t max_records);
  // Write the file identity and byte position to state_file.
  void SavePosition(const Position& p);
  // With the ingest log: append new rows to it, then hand on what the log holds.
  Status PollThroughLog(RawBatch& out, size_t max_records, DurationUs wait);

  TailSourceOptions options_;
  Symbol topic_;
  FileFormat format_ = FileFormat::kCsv;
  int fd_ = -1;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  uint64_t offset_ = 0;  ///< byte position after the last record handed on
  bool header_read_ = false;
  std::vector<std::string> header_;
  std::vector<CsvField> fields_;
  std::vector<char> buf_;
  std::unique_ptr<MqttPublisher> publisher_;
  std::atomic<uint64_t> rotations_{0};
  std::atomic<uint64_t> truncations_{0};
  std::atomic<uint64_t> published_{0};
  std::atomic<uint64_t> publish_failures_{0};
  uint64_t next_checkpoint_ = 1;

  std::mutex mu_;
  std::condition_variable cv_;  // Poll's waits end on Stop
  bool stop_ = false;
  std::deque<Position> pending_;  // handed on, not yet committed
  // With checkpoints: rows are appended here before they are handed on, and the
  // position in state_file follows the log rather than the commits.
  std::unique_ptr<IngestLog> log_;
  uint64_t log_failures_ = 0;
};

/// Register the `tail` source type.
void RegisterTailSource(Registry& registry);

}  // namespace tributary
