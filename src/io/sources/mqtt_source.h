// The `mqtt` source: an unbounded stream of messages from an MQTT broker.
//
// Subscribes to topic filters (`+`, `#`, `$share/<group>/<filter>`) at QoS 0, 1 or 2.
// Records: topic = the MQTT topic, offset = a per-source sequence (1, 2, ...),
// partition = -1, arrival time = the wall clock when the message arrived.
//
// Delivery: messages wait in a bounded buffer (`buffer` messages) until Poll hands them
// on. When the buffer is full the client's receive thread blocks, so the client stops
// reading from the socket and stops acknowledging: the broker keeps what is not yet
// taken (in its in-flight window and, with a persistent session, its queue). The client
// library acknowledges a QoS 1/2 message when it has received it (see io/mqtt_client.h),
// so at most `buffer` + 2 acknowledged messages are held only in memory at any time:
// these are lost if the process dies, and also on a clean stop (the runtime stops
// polling at Stop, and what is still buffered is dropped). Several mqtt sources in one
// process share the client library's receive thread: while one source's buffer is full,
// the others pause too. SetPaused (the memory ceiling) stops Poll from taking messages,
// so the same happens on purpose.
//
// With checkpoints on (RunContext::checkpointing), the source goes through its ingest
// log (stream/ingest_log.h, <checkpoint dir>/ingest-<name>/) instead: the receive
// callback appends each message to the log before it returns, and the client is Paho's
// MQTTAsync (MqttSubscriber), which sends the PUBACK of a QoS 1 message only after the
// callback returned, so the broker stops holding a message only once the log has it
// (synced per `checkpoint.ingest_log_fsync`). Poll reads the log, the log's position
// is the source's position in checkpoints, and recovery replays the log from there:
// a kill -9 at any moment loses no acknowledged message. For QoS 2, Paho sends PUBREC on
// receipt and keeps the message in its own file store under the log folder until it is
// handed over (PUBREL), so it survives a kill too. The backlog is on disk, so the
// callback does not wait for the pipeline (its thread also serves publishers); while
// paused, messages go on into the log and Poll hands on nothing. A log that refuses a
// write (disk full) is retried every 100 ms without acknowledging the message.
//
// Reconnection: a supervisor thread reconnects after a lost connection with exponential
// backoff between `reconnect_min` and `reconnect_max`, and subscribes again. With
// clean_session false and QoS ≥ 1 the broker delivers what was published meanwhile.
//
// Threading: Poll on the source thread; Stop from any thread; the message callback on
// the client's receive thread; reconnection on the supervisor thread.
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
#include "io/mqtt_client.h"
#include "io/mqtt_reader.h"
#include "stream/ingest_log.h"

namespace tributary {

class Registry;

struct MqttSourceOptions {
  MqttConnectOptions connect;
  std::vector<std::string> topics;  ///< subscription filters
  int qos = 1;
  DurationUs reconnect_min = 1'000'000;   ///< first wait after a lost connection
  DurationUs reconnect_max = 30'000'000;  ///< the wait doubles up to this
  size_t buffer = 1000;                   ///< messages held before reading pauses
  std::string name;                       ///< the source's name (its ingest log folder)
};

/// The option table of `sources[] (type: mqtt)`.
const SectionSpec& MqttSourceSectionSpec();
/// Read and validate mqtt source options; errors name the key.
Result<MqttSourceOptions> ParseMqttSourceOptions(const OptionReader& reader);

class MqttSource : public Source {
 public:
  explicit MqttSource(MqttSourceOptions options);
  ~MqttSource() override;
  /// Connects and subscribes once; a refused login or unreachable broker is an error
  /// here ("bad user name or password"). Later losses are retried by the supervisor.
  Status Open(RunContext& ctx) override;
  Status Poll(RawBatch& out, size_t max_records, DurationUs wait) override;
  void Stop() override;
  /// Stop taking messages (true): Poll hands on nothing, the buffer fills and the client
  /// stops reading from the broker, which keeps the rest. false: take them again.
  void SetPaused(bool paused) override;
  void OnCommitted(uint64_t checkpoint) override;
  /// With checkpoints on, every message goes through the ingest log, so the source
  /// resumes from its position in the log.
  bool SupportsCheckpoints() const override { return log_ != nullptr; }
  Status RestorePosition(std::string_view position) override;
  void Close() override;

  /// Successful connects so far (1 after Open; more after reconnects).
  uint64_t connects() const { return connects_.load(std::memory_order_relaxed); }
  /// Messages currently waiting for Poll (in memory, or in the ingest log).
  size_t buffered() const;
  /// Messages the ingest log could not take (each was not acknowledged, or, when the
  /// run stopped meanwhile, dropped with an error line).
  uint64_t log_failures() const { return log_failures_.load(std::memory_order_relaxed); }

 private:
  void OnMessage(std::string_view topic, std::string_view payload);
  void OnReadEnd();
  void OnLost(const std::string& cause);
  Status ConnectAndSubscribe();
  void Supervise();

  bool Connected() const;

  MqttSourceOptions options_;
  bool wake_per_read_ = false;  // the receiver calls OnReadEnd (set in Open)
  // Without an ingest log: MqttReader for mqtt://, MqttClient for mqtts://. With
  // checkpoints: the ingest log, and an MqttSubscriber that acknowledges after the append.
  std::unique_ptr<MqttReceiver> receiver_;
  std::unique_ptr<IngestLog> log_;
  std::atomic<uint64_t> log_failures_{0};
  std::thread supervisor_;
  std::atomic<uint64_t> connects_{0};

  mutable std::mutex mu_;
  std::condition_variable data_cv_;   // Poll waits: a message arrived, or stop
  std::condition_variable space_cv_;  // receive thread waits: buffer has room, or stop
  std::condition_variable state_cv_;  // supervisor waits: connection lost, or stop
  // Without an ingest log: received messages, in RawBatch chunks of at most chunk_
  // records that Poll hands on whole (the receive thread copies each payload once, into
  // the chunk; Poll moves chunks out under the lock and merges them outside it).
  std::deque<RawBatch> chunks_;
  size_t queued_ = 0;    // records in chunks_
  size_t chunk_ = 1024;  // the last max_records Poll asked for
  int64_t next_offset_ = 1;
  // Receive thread only: the last topic and its Symbol (one Intern per topic change).
  std::string last_topic_;
  Symbol last_topic_symbol_;
  bool stop_ = false;
  bool lost_ = false;
  bool paused_ = false;  // SetPaused
};

/// Register the `mqtt` source type.
void RegisterMqttSource(Registry& registry);

}  // namespace tributary
