#include "io/sources/mqtt_source.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <system_error>
#include <utility>

#include "core/pipeline_config.h"
#include "core/registry.h"
#include "core/time.h"
#include "stream/checkpoint.h"

namespace tributary {

namespace {
constexpr auto kMqttBatchLinger = std::chrono::microseconds(500);
constexpr size_t kMqttWakeEvery = 256;
constexpr size_t kMqttBurst = 64;
}  // namespace

const SectionSpec& MqttSourceSectionSpec() {
  static const SectionSpec spec = [] {
    SectionSpec s{
        "sources[] (type: mqtt)",
        "Messages from an MQTT broker. Records: topic = the MQTT topic, offset = a "
        "per-source sequence number. When the pipeline falls behind, reading pauses once "
        "`buffer` messages wait (the broker keeps the rest). A lost connection is retried "
        "with exponential backoff and the subscriptions are renewed. Without checkpoints a "
        "`mqtt://` broker is read by tributary's own subscriber (many messages per socket "
        "read; a QoS 1 message is acknowledged once it is in the source's buffer); "
        "`mqtts://`, and every broker with checkpoints, through Paho (docs/RELIABILITY.md).",
        MqttConnectionOptionSpecs()};
    s.options.push_back({"topics",
                         OptionType::kStringList,
                         "",
                         "Topic filters to subscribe to (`+` and `#` wildcards, "
                         "`$share/<group>/<filter>` for a shared subscription).",
                         {},
                         true});
    s.options.push_back({"qos", OptionType::kInt, "1", "Subscription QoS.", "0..2"});
    s.options.push_back({"reconnect_min", OptionType::kDuration, "1s",
                         "First wait before reconnecting after a lost connection."});
    s.options.push_back({"reconnect_max", OptionType::kDuration, "30s",
                         "The wait doubles after each failed attempt, up to this."});
    s.options.push_back({"buffer", OptionType::kInt, "1000",
                         "Messages held for the pipeline before reading from the broker "
                         "pauses.",
                         "1..1000000"});
    return s;
  }();
  return spec;
}

Result<MqttSourceOptions> ParseMqttSourceOptions(const OptionReader& r) {
  MqttSourceOptions o;
  TRIB_ASSIGN_OR_RETURN(o.connect, ParseMqttConnectOptions(r));
  TRIB_ASSIGN_OR_RETURN(o.topics, r.GetStringList("topics"));
  if (o.topics.empty()) return r.Error("topics", "needs at least one topic filter");
  for (const std::string& t : o.topics) {
    if (t.empty()) return r.Error("topics", "contains an empty topic filter");
  }
  TRIB_ASSIGN_OR_RETURN(int64_t qos, r.GetInt("qos"));
  o.qos = static_cast<int>(qos);
  TRIB_ASSIGN_OR_RETURN(o.reconnect_min, r.GetDuration("reconnect_min"));
  TRIB_ASSIGN_OR_RETURN(o.reconnect_max, r.GetDuration("reconnect_max"));
  if (o.reconnect_min <= 0) return r.Error("reconnect_min", "must be positive");
  if (o.reconnect_max < o.reconnect_min) {
    return r.Error("reconnect_max", "must not be less than reconnect_min");
  }
  TRIB_ASSIGN_OR_RETURN(int64_t buffer, r.GetInt("buffer"));
  o.buffer = static_cast<size_t>(buffer);
  return o;
}

MqttSource::MqttSource(MqttSourceOptions options) : options_(std::move(options)) {}

MqttSource::~MqttSource() {
  Close();
}

Status MqttSource::Open(RunContext& ctx) {
  auto on_message = [this](std::string_view topic, std::string_view payload, int /*qos*/) {
    OnMessage(topic, payload);
  };
  auto on_lost = [this](const std::string& cause) { OnLost(cause); };
  if (ctx.checkpointing && ctx.config != nullptr) {
    TRIB_ASSIGN_OR_RETURN(log_, OpenSourceIngestLog(*ctx.config, options_.name));
    TRIB_ASSIGN_OR_RETURN(CheckpointOptions ckpt, ReadCheckpointOptions(*ctx.config));
    const std::string log_dir = IngestLogDir(ckpt.dir, options_.name);
    if (uint64_t n = log_->backlog(); n > 0) {
      spdlog::info("mqtt {}: the ingest log {} holds {} messages", options_.name, log_dir, n);
    }
    // Paho's own store holds a QoS 2 message between PUBREC and PUBREL (see the header).
    std::string paho_dir;
    if (options_.qos == 2 && !options_.connect.clean_session) {
      paho_dir = log_dir + "/paho";
      std::error_code ec;
      std::filesystem::create_directories(paho_dir, ec);
      if (ec) return Status::Io("mqtt: cannot create " + paho_dir + ": " + ec.message());
    }
    TRIB_ASSIGN_OR_RETURN(receiver_,
                          MqttSubscriber::Create(options_.connect, on_message, on_lost, paho_dir));
    TRIB_RETURN_IF_ERROR(ConnectAndSubscribe());
    supervisor_ = std::thread([this] { Supervise(); });
    return Status::Ok();
  }
  if (MqttReader::Supports(options_.connect)) {
    // The reader says when a read's messages are in: Poll is woken once per read.
    wake_per_read_ = true;
    TRIB_ASSIGN_OR_RETURN(receiver_, MqttReader::Create(options_.connect, on_message, on_lost,
                                                        [this] { OnReadEnd(); }));
  } else {
    TRIB_ASSIGN_OR_RETURN(receiver_, MqttClient::Create(options_.connect, on_message, on_lost));
  }
  TRIB_RETURN_IF_ERROR(ConnectAndSubscribe());
  supervisor_ = std::thread([this] { Supervise(); });
  return Status::Ok();
}

Status MqttSource::ConnectAndSubscribe() {
  {
    // Cleared before connecting, so a loss reported right after the connect is kept.
    std::lock_guard<std::mutex> lock(mu_);
    lost_ = false;
  }
  TRIB_RETURN_IF_ERROR(receiver_->Connect());
  connects_.fetch_add(1, std::memory_order_relaxed);
  if (Status s = receiver_->Subscribe(options_.topics, options_.qos); !s.ok()) {
    receiver_->Disconnect(100'000);
    return s;
  }
  return Status::Ok();
}

bool MqttSource::Connected() const {
  return receiver_->IsConnected();
}

void MqttSource::OnMessage(std::string_view topic, std::string_view payload) {
  if (log_ != nullptr) {
    // The acknowledgement follows this return: keep trying until the log has it.
    const std::vector<IngestLogEntry> entry{IngestLogEntry{topic, payload, NowUs()}};
    TimeUs last_report = 0;
    while (true) {
      Result<int64_t> appended = log_->Append(entry);
      if (appended.ok()) return;
      log_failures_.fetch_add(1, std::memory_order_relaxed);
      {
        std::unique_lock<std::mutex> lock(mu_);
        if (stop_) {
          spdlog::error(
              "mqtt: a message on '{}' is lost: the ingest log refused it ({}) and the run "
              "stops",
              topic, appended.status().ToString());
          return;
        }
        if (NowUs() - last_report >= 10 * kMicrosPerSecond) {
          spdlog::error("mqtt: the ingest log refuses messages, not acknowledging them: {}",
                        appended.status().ToString());
          last_report = NowUs();
        }
        state_cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return stop_; });
      }
    }
  }
  if (topic != last_topic_ || last_topic_symbol_.empty()) {
    last_topic_.assign(topic);
    last_topic_symbol_ = Intern(topic);
  }
  const TimeUs arrival = NowUs();
  std::unique_lock<std::mutex> lock(mu_);
  space_cv_.wait(lock, [&] { return stop_ || queued_ < options_.buffer; });
  // Even when stopping, keep it: the broker already counts it as delivered, and the
  // runtime drains the buffer after Stop (at most one message per callback over).
  if (chunks_.empty() || chunks_.back().size() >= chunk_) {
    RawBatch& chunk = chunks_.emplace_back();
    chunk.records.reserve(chunk_);
    chunk.data.reserve(chunk_ * (payload.size() + 16));
  }
  chunks_.back().Add(payload, arrival, last_topic_symbol_, next_offset_++, -1);
  ++queued_;
  // Wake Poll for the first message, and then only now and then: while a burst gathers
  // (see Poll) a wake-up per message would cost a thread switch per message. With the
  // built-in reader, at the end of each read (OnReadEnd) instead: woken at the first
  // message, Poll took the read's messages a few at a time, each few a batch of its own.
  if (queued_ >= options_.buffer ||
      (!wake_per_read_ && (queued_ == 1 || queued_ % kMqttWakeEvery == 0))) {
    data_cv_.notify_one();
  }
}

void MqttSource::OnReadEnd() {
  std::lock_guard<std::mutex> lock(mu_);
  if (queued_ > 0) data_cv_.notify_one();
}

void MqttSource::OnLost(const std::string& cause) {
  spdlog::warn("mqtt: connection to {} lost: {}", options_.connect.broker, cause);
  std::lock_guard<std::mutex> lock(mu_);
  lost_ = true;
  state_cv_.notify_all();
}

void MqttSource::Supervise() {
  DurationUs backoff = options_.reconnect_min;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    // Woken by OnLost; the periodic look at the client catches a loss without callback.
    if (!state_cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_ || lost_; })) {
      lock.unlock();
      const bool connected = Connected();
      lock.lock();
      if (!connected) lost_ = true;
      continue;
    }
    if (stop_) break;
    // Wait, then try; double the wait after each failure.
    state_cv_.wait_for(lock, std::chrono::microseconds(backoff), [&] { return stop_; });
    if (stop_) break;
    lock.unlock();
    Status s = ConnectAndSubscribe();
    lock.lock();
    if (s.ok()) {
      spdlog::info("mqtt: reconnected to {}", options_.connect.broker);
      backoff = options_.reconnect_min;
    } else {
      spdlog::warn("mqtt: reconnect failed, next attempt in {}: {}",
                   FormatDuration(std::min(backoff * 2, options_.reconnect_max)), s.message());
      backoff = std::min(backoff * 2, options_.reconnect_max);
      lost_ = true;
    }
  }
}

Status MqttSource::Poll(RawBatch& out, size_t max_records, DurationUs wait) {
  if (log_ != nullptr) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      // After Stop what is not read yet stays in the log for the next run; the final
      // checkpoint does not cover it.
      if (stop_) return Status::Ok();
      if (paused_) {
        data_cv_.wait_for(lock, std::chrono::microseconds(std::max<DurationUs>(wait, 0)),
                          [&] { return stop_ || !paused_; });
        return Status::Ok();
      }
    }
    return log_->Read(out, max_records, wait);
  }
  std::unique_lock<std::mutex> lock(mu_);
  // Paused: take nothing (after Stop the buffer is drained regardless).
  data_cv_.wait_for(lock, std::chrono::microseconds(std::max<DurationUs>(wait, 0)),
                    [&] { return stop_ || (!paused_ && queued_ > 0); });
  if (paused_ && !stop_) return Status::Ok();
  if (max_records == 0) return Status::Ok();
  chunk_ = max_records;
  // In a burst (kMqttBurst messages already waiting) let the batch fill for up to
  // kMqttBatchLinger: one hand-off per batch instead of per message keeps tributary ahead
  // of the broker under load. A few waiting messages go on at once: lingering for them
  // added its whole length to every reading's latency at a steady 10,000 messages/s.
  if (!stop_ && queued_ >= kMqttBurst && queued_ < max_records) {
    data_cv_.wait_for(lock, kMqttBatchLinger, [&] { return stop_ || queued_ >= max_records; });
  }
  // Take whole chunks while they fit; merge them outside the lock. A chunk larger than
  // what is asked for (max_records fell since it was begun) is split.
  std::vector<RawBatch> taken;
  size_t n = 0;
  while (!chunks_.empty() && n < max_records) {
    RawBatch& front = chunks_.front();
    if (n + front.size() <= max_records) {
      n += front.size();
      taken.push_back(std::move(front));
      chunks_.pop_front();
      continue;
    }
    const size_t k = max_records - n;
    RawBatch head;
    RawBatch rest;
    for (size_t i = 0; i < front.size(); ++i) {
      const RawRecord& r = front.records[i];
      (i < k ? head : rest).Add(front.Payload(r), r.arrival_time, r.topic, r.offset, r.partition);
    }
    front = std::move(rest);
    n += k;
    taken.push_back(std::move(head));
  }
  queued_ -= n;
  if (n > 0) space_cv_.notify_all();
  lock.unlock();
  for (RawBatch& chunk : taken) {
    if (out.empty() && out.data.empty()) {
      out.data = std::move(chunk.data);
      out.records = std::move(chunk.records);
      continue;
    }
    const auto base = static_cast<uint32_t>(out.data.size());
    out.data.append(chunk.data);
    out.records.reserve(out.records.size() + chunk.records.size());
    for (RawRecord r : chunk.records) {
      r.begin += base;
      out.records.push_back(r);
    }
  }
  return Status::Ok();
}

void MqttSource::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    data_cv_.notify_all();
    space_cv_.notify_all();
    state_cv_.notify_all();
  }
  if (log_ != nullptr) log_->Wake();
}

void MqttSource::SetPaused(bool paused) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (paused_ == paused) return;
    paused_ = paused;
    data_cv_.notify_all();
  }
  if (log_ != nullptr) log_->Wake();
}

void MqttSource::OnCommitted(uint64_t checkpoint) {
  if (log_ != nullptr) log_->OnCommitted(checkpoint);
}

Status MqttSource::RestorePosition(std::string_view position) {
  if (log_ == nullptr) return Source::RestorePosition(position);
  TRIB_RETURN_IF_ERROR(log_->Seek(position).WithContext("mqtt ingest log"));
  if (uint64_t n = log_->backlog(); n > 0) {
    spdlog::info(
        "mqtt {}: {} messages acknowledged after the checkpoint are replayed from the "
        "ingest log",
        options_.name, n);
  }
  return Status::Ok();
}

size_t MqttSource::buffered() const {
  if (log_ != nullptr) return static_cast<size_t>(log_->backlog());
  std::lock_guard<std::mutex> lock(mu_);
  return queued_;
}

void MqttSource::Close() {
  Stop();
  if (supervisor_.joinable()) supervisor_.join();
  if (receiver_ != nullptr) {
    receiver_->Disconnect(1'000'000);
    receiver_.reset();
  }
  if (log_ != nullptr) log_->Close();
}

void RegisterMqttSource(Registry& registry) {
  registry.AddSource(
      "mqtt", &MqttSourceSectionSpec(),
      [](const SourceEntry& entry) -> Result<std::unique_ptr<Source>> {
        TRIB_ASSIGN_OR_RETURN(MqttSourceOptions options, ParseMqttSourceOptions(entry.options));
        options.name = entry.name;
        return std::unique_ptr<Source>(std::make_unique<MqttSource>(std::move(options)));
      });
}

}  // namespace tributary
