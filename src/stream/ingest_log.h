// The ingest log: a durable, segmented record of every raw message a source that cannot
// rewind (MQTT, HTTP) took in, so that a message acknowledged to its sender survives a
// crash of the process.
//
// Such a source appends each message here before it acknowledges it (an MQTT PUBACK, an
// HTTP 202), and hands the pipeline what it reads back from the log, never what it
// holds only in memory. The log's read position after a batch is the source's position
// in a checkpoint (RawBatch::position), so recovery seeks to the checkpoint's position
// and replays everything after it: records that were acknowledged but not yet covered
// by a checkpoint are processed again, exactly as in the run that died.
//
// Layout: <dir>/segment-<20 digits>.log, numbered from 1. A segment is a sequence of
// frames (u32 body length, u32 FNV-1a checksum of the body, body = varint sequence
// number, zig-zag arrival time µs, topic, payload as length-prefixed strings). A new
// segment starts once the current one reaches `segment_bytes`. At open the last segment
// is scanned and cut after its last complete frame, so a frame torn by a crash in the
// middle of a write is dropped — it was never acknowledged, since acknowledgement
// follows the append.
//
// Durability (`checkpoint.ingest_log_fsync`):
//   - every_message: Append returns after fdatasync, so an acknowledged message
//     survives a power cut;
//   - interval: Append returns once the bytes are written to the file (the kernel holds
//     them: they survive a crash or kill of the process), and a flusher thread syncs
//     every `fsync_interval`, so a power cut loses at most that much;
//   - none: the kernel decides when the bytes reach the disk.
//   Append(..., /*sync=*/true) syncs whatever the policy (HTTP `respond: logged`).
//
// Removal: every batch Read hands out carries a number (RawBatch::checkpoint); once all
// sinks committed through that batch (Source::OnCommitted), its position is covered by
// a complete checkpoint. The log keeps the positions of the last `keep` such commits
// (the checkpoints the store keeps) and deletes every segment wholly before the oldest.
//
// Threading: Append from any number of threads (serialized inside); Read, Seek and
// backlog on the source thread; OnCommitted on the sink thread. All under one mutex,
// except the write and sync themselves, which only Append and the flusher do.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/model.h"
#include "core/status.h"
#include "core/time.h"
#include "stream/checkpoint.h"

namespace tributary {

struct IngestLogOptions {
  std::string dir;  ///< the log's own folder (created)
  IngestLogFsync fsync = IngestLogFsync::kInterval;
  DurationUs fsync_interval = 100 * kMicrosPerMilli;
  int64_t segment_bytes = int64_t{64} << 20;
  int64_t keep = 2;  ///< committed positions kept (checkpoint.keep)
};

/// One message to append.
struct IngestLogEntry {
  std::string_view topic;
  std::string_view payload;
  TimeUs arrival = 0;
};

/// The folder of the ingest log of source `source_name` under the checkpoint folder.
std::string IngestLogDir(const std::string& checkpoint_dir, const std::string& source_name);

struct PipelineConfig;
class IngestLog;

/// Open the ingest log of source `source_name` with the run's `checkpoint` options.
Result<std::unique_ptr<IngestLog>> OpenSourceIngestLog(const PipelineConfig& config,
                                                       const std::string& source_name);

class IngestLog {
 public:
  IngestLog() = default;
  ~IngestLog();
  IngestLog(const IngestLog&) = delete;
  IngestLog& operator=(const IngestLog&) = delete;

  /// Open or create the log; repairs a torn last frame. The read position starts at the
  /// first record of the oldest segment (a run without a checkpoint replays it all).
  Status Open(IngestLogOptions options);
  /// Append `entries` in one write; returns once they are as durable as the policy (or
  /// `sync`) asks. The records get consecutive sequence numbers; the first is returned.
  Result<int64_t> Append(const std::vector<IngestLogEntry>& entries, bool sync = false);
  /// Add up to `max_records` records after the read position to `out` (topic interned,
  /// offset = sequence number, partition -1), waiting at most `wait` for the first.
  /// Sets out.position and out.checkpoint when it added any.
  Status Read(RawBatch& out, size_t max_records, DurationUs wait);
  /// Move the read position to `position` (a RawBatch::position of this log).
  Status Seek(std::string_view position);
  /// Every sink committed through the batch Read numbered `batch`.
  void OnCommitted(uint64_t batch);
  /// Wake a waiting Read (it returns what it has, possibly nothing).
  void Wake();
  /// The sequence number of the last record every sink committed (0: none yet).
  int64_t committed_sequence() const;
  /// Records appended but not yet read.
  uint64_t backlog() const;
  /// The sequence number the next appended record gets.
  int64_t next_sequence() const;
  /// Segment files currently on disk.
  std::vector<uint64_t> Segments() const;
  void Close();

 private:
  struct Pos {
    uint64_t segment = 1;
    uint64_t offset = 0;
  };
  static std::string EncodePosition(Pos p, int64_t next_seq);
  std::string SegmentPath(uint64_t segment) const;
  Status OpenForAppend(uint64_t segment, uint64_t size);
  Status SyncLocked();
  void Flusher();

  IngestLogOptions options_;
  mutable std::mutex mu_;
  std::condition_variable data_cv_;   // Read waits: records appended, or Wake
  std::condition_variable flush_cv_;  // flusher waits: interval, or Close
  std::mutex write_mu_;               // serializes Append's write and the syncs
  int append_fd_ = -1;
  Pos append_;  // end of the last complete append (guarded by mu_)
  int64_t next_seq_ = 1;
  bool dirty_ = false;  // written since the last sync
  bool closed_ = true;
  bool wake_ = false;
  uint64_t oldest_segment_ = 1;
  // Reading.
  Pos read_;
  int64_t read_seq_ = 1;  // sequence number of the next record to read
  int read_fd_ = -1;
  uint64_t read_fd_segment_ = 0;
  std::string read_buf_;
  uint64_t batches_ = 0;  // numbers of the batches Read handed out
  struct Handed {
    uint64_t batch = 0;
    Pos pos;               // position after the batch
    int64_t last_seq = 0;  // its last record
  };
  std::deque<Handed> handed_;
  int64_t committed_seq_ = 0;
  std::deque<Pos> committed_;  // last `keep` committed positions
  std::thread flusher_;
};

}  // namespace tributary
