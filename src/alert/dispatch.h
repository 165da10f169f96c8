// Alert delivery: channels (MQTT topic, webhook, email over SMTP) each with its own
// worker thread and persistent retry queue.
//
// Configured by `alerts.channels[]` (AlertChannelCommonSpec plus one spec per type).
// Submit() only appends the event to each routed channel's in-memory inbox and wakes its
// worker, so the pipeline never waits for a channel. Each worker:
//   1. with nothing pending in its queue file, delivers its inbox straight from memory,
//      one message at a time, in order, for up to 50 ms a turn (a healthy channel writes
//      no row per alert);
//   2. moves what is left (after a failed delivery, or a slow turn) into its queue table
//      in the queue file (SQLite, WAL, synchronous=NORMAL; one row per pending delivery,
//      so what was accepted survives a restart and is retried by the next run), the
//      failed one with its first attempt counted,
//   3. delivers due rows in order; a delivered row is deleted, a failed one gets
//      attempts + 1 and its next try after min(retry_max, retry_initial × 2^(attempts−1))
//      with ±20 % jitter,
//   4. sleeps until new input or the next due row.
// A channel that hangs or fails therefore delays only itself. Persist() (at every
// checkpoint barrier, and at Stop) writes what is still only in memory to the queue
// file, so a kill -9 after a checkpoint loses no alert the checkpoint covers. The queue of a
// channel is bounded (`max_pending`): past it the oldest pending rows are dropped, counted and
// logged — the only way an alert is given up. Nothing else gives up (a channel that
// refuses a message, an HTTP 4xx, keeps it and retries with backoff).
//
// Threading: Submit() and Stats() are thread-safe; Open/Stop from the owner's thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/config.h"
#include "core/model.h"
#include "core/pipeline_config.h"

namespace tributary {

const SectionSpec& AlertChannelCommonSpec();
const SectionSpec& AlertMqttChannelSpec();
const SectionSpec& AlertWebhookChannelSpec();
const SectionSpec& AlertEmailChannelSpec();

/// One message as it waits in a queue: the alert JSON plus a subject and a text for
/// people (email).
struct AlertMessage {
  std::string rule;
  std::string key;
  std::string severity;
  std::string state;
  std::string json;
  std::string subject;
  std::string text;
};

/// Build the message of an alert event.
AlertMessage MakeAlertMessage(const AlertEvent& e);

/// Delivers one message. Implementations run on their channel's worker only.
class AlertChannel {
 public:
  virtual ~AlertChannel() = default;
  /// Deliver; an error (retryable or not) keeps the message queued for a later try.
  virtual Status Deliver(const AlertMessage& m) = 0;
};

/// Send plain-text mail over SMTP with libcurl (STARTTLS per `starttls`: none, try,
/// required). Shared by the email channel and the daily summaries. One call per message;
/// safe to use from several threads (each call has its own curl handle).
class SmtpSender {
 public:
  struct Options {
    std::string url, from, username, password, starttls = "try", ca_file;
    DurationUs timeout = 30 * kMicrosPerSecond;
  };
  explicit SmtpSender(Options o) : o_(std::move(o)) {}
  /// Send one message; `extra_headers` are complete header lines without CRLF.
  Status Send(const std::vector<std::string>& to, const std::string& subject,
              const std::string& text, const std::vector<std::string>& extra_headers = {});
  const Options& options() const { return o_; }

 private:
  Options o_;
};

/// Retry and queue settings of one channel.
struct ChannelOptions {
  std::string name;
  std::string type;
  DurationUs retry_initial = 0;
  DurationUs retry_max = 0;
  int64_t max_pending = 0;
  std::vector<std::string> severities;  ///< empty: every severity
  bool resolved = true;                 ///< also deliver resolved events
};

/// Counters of one channel.
struct ChannelStats {
  std::string name;
  uint64_t delivered = 0;
  uint64_t failed_attempts = 0;
  uint64_t dropped = 0;  ///< given up because the queue was full
  uint64_t pending = 0;  ///< in the queue file or the inbox
  std::string last_error;
};

class AlertDispatcher {
 public:
  /// Build every channel of `config.alerts` (nothing is connected). Rules route to
  /// channels by name (`rule_channels[i]` for rule name `rule_names[i]`; empty: all).
  static Result<std::unique_ptr<AlertDispatcher>> Make(
      const PipelineConfig& config, const std::vector<std::string>& rule_names,
      const std::vector<std::vector<std::string>>& rule_channels);
  /// Build from ready channels (tests, benchmarks).
  static std::unique_ptr<AlertDispatcher> FromChannels(
      std::vector<std::pair<ChannelOptions, std::unique_ptr<AlertChannel>>> channels);
  ~AlertDispatcher();

  /// Open the queue file and start one worker per channel; pending rows of an earlier
  /// run are delivered first.
  Status Open(const std::string& queue_file);
  /// Queue `e` on every channel it is routed to. Never blocks on a channel.
  void Submit(const AlertEvent& e);
  /// Write every alert that exists only in memory — a channel's inbox and the message
  /// its worker is delivering straight from memory — into the queue file, in order, in
  /// one transaction per channel synced to disk (synchronous = FULL). Called at every
  /// checkpoint barrier (AlertOperator::Snapshot), so a checkpoint never covers an alert
  /// a crash could lose; with empty inboxes it costs a lock per channel. Thread-safe; the
  /// worker goes on delivering meanwhile, and the outcome of a delivery in flight is
  /// applied to its row.
  Status Persist();
  /// Give workers up to `wait` to empty their queues, then stop them (what is left stays
  /// in the queue file).
  void Stop(DurationUs wait);
  std::vector<ChannelStats> Stats() const;
  size_t channel_count() const { return workers_.size(); }

 private:
  struct Worker;
  AlertDispatcher() = default;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::pair<std::string, std::vector<std::string>>> routes_;  // rule → channels
};

}  // namespace tributary
