// The `http` source: sensors and gateways POST readings over HTTP.
//
// It listens on its own address (`listen`, default 127.0.0.1:8081), separate from the
// API server, so ingest can be exposed to devices while the API stays local, and so the
// source works with `--listen off`. One endpoint, `path` (default /ingest), takes POST:
//   - `Content-Type: application/json`: the body is one record (one reading or one
//     message with several metrics, decoded by the source's `format` and `mapping`);
//   - `application/x-ndjson` (also `application/ndjson`, `application/jsonl`): every
//     non-blank line is one record (a trailing CR removed).
//
// Answers:
//   202  {"received":N,"queued":N,"malformed":M,"first_offset":F,"committed":C}
//        N records were taken into the pipeline; M of them are not JSON at all and will
//        be quarantined as malformed_json (with their bytes). Which of the others end
//        accepted, quarantined, late or duplicate is decided later by ingestion and the
//        windows; it is in the run's ledger (/api/ledger) and the quarantine table, not
//        in this answer, so the answer never claims what is not yet known. With
//        `respond: committed` the answer waits until every sink committed the request's
//        records ("committed": true; false when `commit_timeout` passed first: the
//        records are still in the pipeline, do not resend them).
//   400  an empty body (no record); 401 a missing or wrong bearer token (with
//        WWW-Authenticate); 404 another path; 405 another method; 413 a body over
//        `max_body_bytes` or more records than `buffer`; 415 another content type.
//        The body is {"error":"<reason>"}; nothing of a rejected request is ingested.
//   503  with Retry-After (`retry_after` seconds) while backpressure holds: the buffer
//        has no room for the whole request, the runtime paused the source
//        (Source::SetPaused, the memory ceiling), or the run is stopping. A request is
//        taken whole or not at all, so a client can simply resend it.
//
// With checkpoints on (RunContext::checkpointing), the records of a request are appended
// to the source's ingest log (stream/ingest_log.h, <checkpoint dir>/ingest-<name>/) in
// one write before the answer, Poll reads the log, and the log's position is the
// source's position in checkpoints: a crash after a 202 loses nothing, the records are
// replayed from the log. `respond: queued` answers once the records are written to the
// log (synced per `checkpoint.ingest_log_fsync`); `respond: logged` (checkpoints only)
// once they are also fsynced, whatever that policy ("logged": true); `respond:
// committed` once every sink committed them. The 503 rule counts records appended but
// not yet read. A log that refuses the write (disk full) gets 503.
//
// Records: topic = `path`, offset = a per-source sequence (1, 2, ...), partition = -1,
// arrival time = the wall clock when the request was taken.
//
// Threading: requests are answered on the HTTP server's worker threads; Poll on the
// source thread; OnCommitted on the sink thread; Stop and SetPaused from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/config.h"
#include "core/intern.h"
#include "io/connector.h"
#include "stream/ingest_log.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace tributary {

class Registry;

enum class HttpIngestRespond { kQueued, kLogged, kCommitted };

struct HttpIngestOptions {
  std::string host = "127.0.0.1";
  int port = 8081;  ///< 0 picks a free port (tests)
  std::string path = "/ingest";
  std::vector<std::string> tokens;  ///< accepted bearer tokens; empty: no authentication
  size_t max_body_bytes = 1 << 20;
  size_t buffer = 10000;  ///< records held for the pipeline before requests get 503
  int retry_after_s = 1;
  HttpIngestRespond respond = HttpIngestRespond::kQueued;
  DurationUs commit_timeout = 30'000'000;
  std::string name;  ///< the source's name (its ingest log folder)
};

/// The option table of `sources[] (type: http)`.
const SectionSpec& HttpIngestSectionSpec();
/// Read and validate http source options; errors name the key.
Result<HttpIngestOptions> ParseHttpIngestOptions(const OptionReader& reader);

class HttpIngestSource : public Source {
 public:
  explicit HttpIngestSource(HttpIngestOptions options);
  ~HttpIngestSource() override;
  /// Binds the address; an address in use is an error here.
  Status Open(RunContext& ctx) override;
  Status Poll(RawBatch& out, size_t max_records, DurationUs wait) override;
  void Stop() override;
  void OnCommitted(uint64_t checkpoint) override;
  void SetPaused(bool paused) override;
  /// With checkpoints on, every request goes through the ingest log first.
  bool SupportsCheckpoints() const override { return log_ != nullptr; }
  Status RestorePosition(std::string_view position) override;
  void Close() override;

  /// The bound port (the real one when 0 was asked for); 0 before Open.
  int port() const { return port_; }
  /// Records currently waiting for Poll.
  size_t buffered() const;

 private:
  struct Pending {
    std::string payload;
    TimeUs arrival = 0;
    int64_t offset = 0;
    uint64_t request = 0;  ///< request sequence number
    bool last_of_request = false;
  };
  void Handle(const httplib::Request& req, httplib::Response& res);

  HttpIngestOptions options_;
  Symbol topic_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> paused_{false};
  std::unique_ptr<IngestLog> log_;  // with checkpoints

  mutable std::mutex mu_;
  std::condition_variable data_cv_;    // Poll waits: records arrived, or stop
  std::condition_variable commit_cv_;  // handlers wait (respond: committed)
  std::deque<Pending> queue_;
  bool stop_ = false;
  bool closed_ = false;  // Close: waiting answers give up
  int64_t next_offset_ = 1;
  uint64_t next_request_ = 1;
  uint64_t committed_request_ = 0;
};

/// Register the `http` source type.
void RegisterHttpIngestSource(Registry& registry);

}  // namespace tributary
