#include "io/sources/kafka_source.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <utility>

#include "core/intern.h"
#include "core/pipeline_config.h"
#include "core/registry.h"
#include "core/time.h"
#include "io/sinks/kafka_sink.h"
#include "server/metrics.h"
#include "stream/checkpoint.h"
#include "stream/operator.h"

namespace tributary {

namespace {

constexpr DurationUs kLagCheckIntervalUs = 100 * kMicrosPerMilli;

std::string SourceLabel(const std::string& name) {
  return "source=\"" + EscapeLabelValue(name) + "\"";
}

}  // namespace

const SectionSpec& KafkaSourceSectionSpec() {
  static const SectionSpec spec = [] {
    SectionSpec s{
        "sources[] (type: kafka)",
        "Records from Kafka topics, read in a consumer group. Offsets are committed only "
        "after every sink committed what the records produced, so a crash re-reads (never "
        "loses) what was not yet stored. Records per poll adapt to lag and latency; "
        "partitions pause while too many records wait for the sinks. Consumer lag per "
        "partition is exported as tributary_kafka_consumer_lag.",
        KafkaConnectionOptionSpecs()};
    s.options.push_back(
        {"topics", OptionType::kStringList, "", "Topics to subscribe to.", {}, true});
    s.options.push_back({"group_id", OptionType::kString, "tributary",
                         "Consumer group: processes with the same group split the partitions."});
    s.options.push_back({"start", OptionType::kEnum, "earliest",
                         "Where a group without committed offsets starts reading.",
                         "earliest|latest"});
    s.options.push_back({"poll_records", OptionType::kInt, "500",
                         "Records per poll while the pipeline keeps up.", "1..100000"});
    s.options.push_back({"poll_records_min", OptionType::kInt, "100",
                         "Records per poll while lag grows by more than `lag_jump` between "
                         "measurements or latency exceeds `latency_threshold`.",
                         "1..100000"});
    s.options.push_back({"lag_jump", OptionType::kInt, "10000",
                         "Growth of the total consumer lag (records) between two measurements "
                         "that switches to `poll_records_min`.",
                         "1.."});
    s.options.push_back({"latency_threshold", OptionType::kDuration, "1s",
                         "Time the pipeline may take to accept a batch before polls shrink "
                         "to `poll_records_min`."});
    s.options.push_back({"max_uncommitted", OptionType::kInt, "200000",
                         "Records handed on but not yet committed by the sinks; partitions "
                         "pause at 75% of this and resume under 50%.",
                         "100.."});
    return s;
  }();
  return spec;
}

Result<KafkaSourceOptions> ParseKafkaSourceOptions(const OptionReader& r, std::string name) {
  KafkaSourceOptions o;
  o.name = std::move(name);
  TRIB_ASSIGN_OR_RETURN(o.connect, ParseKafkaConnectOptions(r));
  TRIB_ASSIGN_OR_RETURN(o.topics, r.GetStringList("topics"));
  if (o.topics.empty()) return r.Error("topics", "needs at least one topic");
  for (const std::string& t : o.topics) {
    if (t.empty()) return r.Error("topics", "contains an empty topic name");
  }
  TRIB_ASSIGN_OR_RETURN(o.group_id, r.GetString("group_id"));
  if (o.group_id.empty()) return r.Error("group_id", "must not be empty");
  TRIB_ASSIGN_OR_RETURN(o.start, r.GetString("start"));
  TRIB_ASSIGN_OR_RETURN(int64_t records, r.GetInt("poll_records"));
  o.poll_records = static_cast<size_t>(records);
  TRIB_ASSIGN_OR_RETURN(int64_t records_min, r.GetInt("poll_records_min"));
  o.poll_records_min = static_cast<size_t>(records_min);
  if (o.poll_records_min > o.poll_records) {
    return r.Error("poll_records_min", "must not exceed poll_records");
  }
  TRIB_ASSIGN_OR_RETURN(o.lag_jump, r.GetInt("lag_jump"));
  TRIB_ASSIGN_OR_RETURN(o.latency_threshold, r.GetDuration("latency_threshold"));
  if (o.latency_threshold <= 0) return r.Error("latency_threshold", "must be positive");
  TRIB_ASSIGN_OR_RETURN(int64_t max_uncommitted, r.GetInt("max_uncommitted"));
  o.max_uncommitted = static_cast<size_t>(max_uncommitted);
  return o;
}

KafkaSource::KafkaSource(KafkaSourceOptions options) : options_(std::move(options)) {
  poll_limit_ = options_.poll_records;
}

KafkaSource::~KafkaSource() {
  Close();
}

Status KafkaSource::Open(RunContext& ctx) {
  checkpointing_ = ctx.checkpointing;
  ctx_ = &ctx;
  for (Sink* sink : ctx.sinks) {
    const auto* kafka = dynamic_cast<const KafkaSink*>(sink);
    if (kafka == nullptr || kafka->options().state_topic.empty()) continue;
    partition_state_ = true;
    state_connect_ = kafka->options().connect;
    state_topic_ = kafka->options().state_topic;
    marker_topic_ = kafka->options().checkpoint_topic;
  }
  KafkaProperties props = {
      {"bootstrap.servers", options_.connect.brokers},
      {"group.id", options_.group_id},
      {"enable.auto.commit", "false"},        // committed in OnCommitted only
      {"enable.auto.offset.store", "false"},  // idem
      {"auto.offset.reset", options_.start},
      {"client.id", "tributary-" + options_.name},
  };
  props.insert(props.end(), options_.connect.properties.begin(), options_.connect.properties.end());
  TRIB_ASSIGN_OR_RETURN(KafkaConf conf, MakeKafkaConf(props));
  rd_kafka_conf_set_rebalance_cb(conf.get(), &KafkaSource::OnRebalance);
  rd_kafka_conf_set_opaque(conf.get(), this);
  TRIB_ASSIGN_OR_RETURN(consumer_, MakeKafkaHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  // Rebalance and error events go to the consumer queue, which Poll serves.
  rd_kafka_poll_set_consumer(consumer_.get());
  KafkaPartitionList topics(
      rd_kafka_topic_partition_list_new(static_cast<int>(options_.topics.size())));
  for (const std::string& t : options_.topics) {
    rd_kafka_topic_partition_list_add(topics.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
  }
  TRIB_RETURN_IF_ERROR(
      KafkaStatus(rd_kafka_subscribe(consumer_.get(), topics.get()), "kafka subscribe"));
  SetConnectorGauge("tributary_kafka_poll_records", "{" + SourceLabel(options_.name) + "}",
                    static_cast<double>(poll_limit()), "Records per poll of a kafka source.");
  SetConnectorGauge("tributary_kafka_paused", "{" + SourceLabel(options_.name) + "}", 0,
                    "1 while a kafka source pauses its partitions for backpressure.");
  return Status::Ok();
}

Status KafkaSource::Poll(RawBatch& out, size_t max_records, DurationUs wait) {
  if (stop_.load(std::memory_order_relaxed) || consumer_ == nullptr) {
    // Nothing is held in memory: what was not polled stays in Kafka, uncommitted.
    return Status::Ok();
  }
  const TimeUs start = NowUs();
  // Processing latency: how long the pipeline took to accept the previous batch.
  const DurationUs latency = last_poll_end_ == 0 ? 0 : start - last_poll_end_;
  MeasureLag(start, latency);
  {
    std::lock_guard lock(mu_);
    backlog_paused_ = backlog_paused_ ? uncommitted_ >= options_.max_uncommitted / 2
                                      : uncommitted_ >= options_.max_uncommitted * 3 / 4;
    // Two reasons to pause, each with its own hysteresis: the sinks' backlog and the
    // process's memory ceiling (SetPaused).
    const bool want_pause = backlog_paused_ || memory_paused_.load(std::memory_order_relaxed);
    if (want_pause != paused()) ApplyPause(want_pause, uncommitted_);
  }

  if (!rebalance_error_.ok()) return rebalance_error_;
  const size_t limit = std::min(max_records, poll_limit());
  // Partition positions in this batch; linear search, as a batch touches few partitions.
  struct Position {
    rd_kafka_topic_t* rkt;
    int32_t partition;
    int64_t next;
    Symbol topic;
  };
  std::vector<Position> positions;
  int timeout_ms = static_cast<int>(std::max<DurationUs>(wait, 0) / kMicrosPerMilli);
  TimeUs arrival = 0;
  while (out.size() < limit && !stop_.load(std::memory_order_relaxed)) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer_.get(), timeout_ms);
    timeout_ms = 0;  // only the first poll waits
    if (m == nullptr) break;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        spdlog::warn("kafka source {}: {}", options_.name, rd_kafka_message_errstr(m));
      }
      rd_kafka_message_destroy(m);
      std::array<char, 256> reason{};
      rd_kafka_resp_err_t fatal =
          rd_kafka_fatal_error(consumer_.get(), reason.data(), reason.size());
      if (fatal != RD_KAFKA_RESP_ERR_NO_ERROR) {
        return Status::Io("kafka source " + options_.name + ": fatal error: " + reason.data());
      }
      continue;
    }
    if (!revoked_.empty() && revoked_.count({rd_kafka_topic_name(m->rkt), m->partition}) != 0) {
      rd_kafka_message_destroy(m);  // fetched before the partition was revoked
      continue;
    }
    auto it = std::find_if(positions.begin(), positions.end(), [&](const Position& p) {
      return p.rkt == m->rkt && p.partition == m->partition;
    });
    if (it == positions.end()) {
      positions.push_back({m->rkt, m->partition, 0, Intern(rd_kafka_topic_name(m->rkt))});
      it = positions.end() - 1;
    }
    it->next = m->offset + 1;
    if (arrival == 0) arrival = NowUs();
    out.Add(std::string_view(static_cast<const char*>(m->payload), m->len), arrival, it->topic,
            m->offset, m->partition);
    rd_kafka_message_destroy(m);
  }
  if (!rebalance_error_.ok()) return rebalance_error_;
  if (!revoked_.empty() && !out.empty()) {
    // Records of a partition revoked during this poll: the checkpoint of the revocation
    // did not cover them, so they are left to the next owner.
    RawBatch kept;
    kept.source_index = out.source_index;
    for (const RawRecord& r : out.records) {
      if (revoked_.count({std::string(r.topic.view()), r.partition}) != 0) continue;
      kept.Add(out.Payload(r), r.arrival_time, r.topic, r.offset, r.partition);
    }
    std::erase_if(positions, [&](const Position& pos) {
      return revoked_.count({std::string(pos.topic.view()), pos.partition}) != 0;
    });
    out.data = std::move(kept.data);
    out.records = std::move(kept.records);
  }
  if (!assigned_states_.empty()) {
    out.restores.insert(out.restores.end(), std::make_move_iterator(assigned_states_.begin()),
                        std::make_move_iterator(assigned_states_.end()));
    assigned_states_.clear();
  }
  if (!out.empty()) {
    Pending p;
    p.records = out.size();
    for (const Position& pos : positions) {
      PartitionKey key{std::string(pos.topic.view()), pos.partition};
      p.next_offsets[key] = pos.next;
      read_next_[key] = pos.next;
    }
    out.checkpoint = next_checkpoint_++;
    if (checkpointing_) out.position = EncodePosition();
    std::lock_guard lock(mu_);
    uncommitted_ += p.records;
    pending_.emplace(out.checkpoint, std::move(p));
  }
  last_poll_end_ = NowUs();
  return Status::Ok();
}

// Position: count, then (topic, partition, next offset) per partition, in key order.
std::string KafkaSource::EncodePosition() const {
  CheckpointWriter w;
  w.U64(read_next_.size());
  for (const auto& [key, next] : read_next_) {
    w.Str(key.first);
    w.I64(key.second);
    w.I64(next);
  }
  return w.Take();
}

Status KafkaSource::RestorePosition(std::string_view position) {
  CheckpointReader in(position);
  std::map<PartitionKey, int64_t> offsets;
  const uint64_t n = in.Count();
  for (uint64_t i = 0; i < n && in.ok(); ++i) {
    std::string topic(in.Str());
    const auto partition = static_cast<int32_t>(in.I64());
    offsets[{std::move(topic), partition}] = in.I64();
  }
  TRIB_RETURN_IF_ERROR(in.status().WithContext("kafka source " + options_.name + " position"));
  read_next_ = offsets;
  std::lock_guard lock(mu_);
  restored_ = std::move(offsets);
  return Status::Ok();
}

void KafkaSource::OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                              rd_kafka_topic_partition_list_t* partitions, void* opaque) {
  auto* self = static_cast<KafkaSource*>(opaque);
  const char* protocol = rd_kafka_rebalance_protocol(rk);
  const bool cooperative = protocol != nullptr && std::string_view(protocol) == "COOPERATIVE";
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    if (self->partition_state_) {
      self->AssignStates(partitions);
    } else {
      // Start from the checkpoint where it knows the partition: the group's committed
      // offset may lag it (a crash between the checkpoint and the commit).
      std::lock_guard lock(self->mu_);
      for (int i = 0; i < partitions->cnt; ++i) {
        rd_kafka_topic_partition_t& tp = partitions->elems[i];
        auto it = self->restored_.find({tp.topic, tp.partition});
        if (it != self->restored_.end()) tp.offset = it->second;
      }
    }
    Status st = cooperative
                    ? KafkaStatus(rd_kafka_incremental_assign(rk, partitions), "incremental assign")
                    : KafkaStatus(rd_kafka_assign(rk, partitions), "assign");
    if (!st.ok()) spdlog::warn("kafka source {}: {}", self->options_.name, st.ToString());
    spdlog::info("kafka source {}: assigned {} partitions ({})", self->options_.name,
                 partitions->cnt, cooperative ? "cooperative" : "eager");
    return;
  }
  if (self->partition_state_) self->RevokeStates(partitions);
  Status st = cooperative ? KafkaStatus(rd_kafka_incremental_unassign(rk, partitions),
                                        "incremental unassign")
                          : KafkaStatus(rd_kafka_assign(rk, nullptr), "unassign");
  if (!st.ok()) spdlog::warn("kafka source {}: {}", self->options_.name, st.ToString());
  spdlog::info("kafka source {}: {} partitions revoked ({})", self->options_.name, partitions->cnt,
               rd_kafka_err2name(err));
}

// Partition-owned state, on assignment: the latest committed state of each partition
// decides where it starts; the state goes to the process thread with the next batch.
void KafkaSource::AssignStates(rd_kafka_topic_partition_list_t* partitions) {
  std::set<std::string> keys;
  for (int i = 0; i < partitions->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = partitions->elems[i];
    keys.insert(PartitionStateKey(Intern(tp.topic), tp.partition));
  }
  const TimeUs started = NowUs();
  Result<std::map<std::string, PartitionState>> states =
      ReadPartitionStates(state_connect_, state_topic_, marker_topic_, keys, 30 * kMicrosPerSecond,
                          "tributary-" + options_.name + "-restore");
  if (!states.ok()) {
    // Reading a partition without its state would process it twice: stop the run.
    rebalance_error_ = states.status().WithContext("kafka source " + options_.name +
                                                   ": partition state of the assignment");
    return;
  }
  size_t restored = 0;
  std::lock_guard lock(mu_);
  for (int i = 0; i < partitions->cnt; ++i) {
    rd_kafka_topic_partition_t& tp = partitions->elems[i];
    const PartitionKey key{tp.topic, tp.partition};
    PartitionState state;
    state.key = PartitionStateKey(Intern(tp.topic), tp.partition);
    auto it = states->find(state.key);
    if (it != states->end()) {
      state = std::move(it->second);
      ++restored;
    }
    if (state.offset >= 0) {
      tp.offset = state.offset;
      read_next_[key] = state.offset;
      restored_[key] = state.offset;
    }
    revoked_.erase(key);
    owned_.insert(key);
    assigned_states_.push_back(std::move(state));
  }
  spdlog::info("kafka source {}: state of {} of {} assigned partitions restored from {} ({})",
               options_.name, restored, partitions->cnt, state_topic_,
               FormatDuration(NowUs() - started));
}

// Partition-owned state, on revocation: commit what this process did with the
// partitions (their state and output, in one checkpoint), then forget them.
void KafkaSource::RevokeStates(rd_kafka_topic_partition_list_t* partitions) {
  std::vector<std::string> keys;
  for (int i = 0; i < partitions->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = partitions->elems[i];
    keys.push_back(PartitionStateKey(Intern(tp.topic), tp.partition));
  }
  const TimeUs started = NowUs();
  if (rd_kafka_assignment_lost(consumer_.get())) {
    // librdkafka calls an assignment lost when the coordinator forgot this member (its
    // session timed out: the member id is reset) and also when a request of this member
    // carried an older generation during a rebalance (it stays a member: nobody else gets
    // its partitions before it rejoins, so it commits them as on any revocation). Once
    // forgotten, the group may have given the partitions to another member already, and
    // committing their state could overwrite what the new owner committed: nothing more
    // commits, and the run stops (restart it to rejoin).
    char* member = rd_kafka_memberid(consumer_.get());
    const bool forgotten = member == nullptr || *member == '\0';
    if (member != nullptr) rd_kafka_mem_free(consumer_.get(), member);
    if (forgotten) {
      assignment_lost_.store(true);
      rebalance_error_ = Status::Cancelled(
          "kafka source " + options_.name + ": the assignment of " + std::to_string(keys.size()) +
          " partitions was lost (the group no longer knows this member: its session timed "
          "out); their state and output since the last checkpoint are not committed, their "
          "next owner processes them again");
      spdlog::error("{}", rebalance_error_.message());
    } else {
      spdlog::warn(
          "kafka source {}: assignment lost on a stale generation; still a member, so the "
          "{} partitions commit their state as on a revocation",
          options_.name, keys.size());
    }
  }
  const bool committed = !assignment_lost_.load() && ctx_ != nullptr && ctx_->revoke_partitions &&
                         ctx_->revoke_partitions(keys);
  if (committed) {
    spdlog::info("kafka source {}: {} revoked partitions committed their state ({})", options_.name,
                 keys.size(), FormatDuration(NowUs() - started));
  }
  std::lock_guard lock(mu_);
  for (int i = 0; i < partitions->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = partitions->elems[i];
    const PartitionKey key{tp.topic, tp.partition};
    revoked_.insert(key);
    owned_.erase(key);
    read_next_.erase(key);
    restored_.erase(key);
    committed_.erase(key);
    std::erase_if(assigned_states_, [&](const PartitionState& p) {
      return p.key == PartitionStateKey(Intern(tp.topic), tp.partition);
    });
  }
}

rd_kafka_consumer_group_metadata_t* KafkaSource::GroupMetadata() const {
  return consumer_ == nullptr ? nullptr : rd_kafka_consumer_group_metadata(consumer_.get());
}

std::map<std::pair<std::string, int32_t>, int64_t> KafkaSource::TransactionOffsets(
    uint64_t through) const {
  std::lock_guard lock(mu_);
  std::map<PartitionKey, int64_t> out = restored_;
  for (const auto& [key, next] : committed_) {
    int64_t& o = out[key];
    o = std::max(o, next);
  }
  for (auto it = pending_.begin(); it != pending_.end() && it->first <= through; ++it) {
    for (const auto& [key, next] : it->second.next_offsets) {
      int64_t& o = out[key];
      o = std::max(o, next);
    }
  }
  return out;
}

Status KafkaSource::CheckMembership() const {
  if (consumer_ == nullptr) return Status::Ok();
  const std::string what = "kafka source " + options_.name;
  if (assignment_lost_.load()) {
    return Status::Cancelled(what + ": the group no longer knows this member");
  }
  KafkaPartitionList list(rd_kafka_topic_partition_list_new(8));
  {
    std::lock_guard lock(mu_);
    for (const PartitionKey& key : owned_) {
      int64_t next = -1;
      if (auto it = restored_.find(key); it != restored_.end()) next = it->second;
      if (auto it = committed_.find(key); it != committed_.end()) next = std::max(next, it->second);
      if (next < 0) continue;  // nothing committed yet: nothing to commit again
      rd_kafka_topic_partition_list_add(list.get(), key.first.c_str(), key.second)->offset = next;
    }
  }
  if (list->cnt == 0) return Status::Ok();
  rd_kafka_resp_err_t err = rd_kafka_commit(consumer_.get(), list.get(), 0);
  for (int i = 0; i < list->cnt && err == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
    err = list->elems[i].err;
  }
  switch (err) {
    case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
    case RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID:
      return Status::Cancelled(what +
                               ": the group coordinator no longer counts this member as "
                               "the owner of its partitions (" +
                               rd_kafka_err2name(err) + ")");
    default:
      // Anything else says nothing about ownership: a rebalance in progress, or an older
      // generation while one completes (the member is still in the group, and nobody
      // gets its partitions before it rejoins), a coordinator moving. The transaction's
      // own offsets are checked by the broker (KIP-447).
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        spdlog::debug("{}: membership check: {}", what, rd_kafka_err2str(err));
      }
      return Status::Ok();
  }
}

void KafkaSource::MeasureLag(TimeUs now, DurationUs latency) {
  if (now - last_lag_check_ < kLagCheckIntervalUs && latency <= options_.latency_threshold) {
    return;
  }
  last_lag_check_ = now;
  rd_kafka_topic_partition_list_t* raw = nullptr;
  if (rd_kafka_assignment(consumer_.get(), &raw) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  KafkaPartitionList assignment(raw);
  rd_kafka_position(consumer_.get(), assignment.get());
  int64_t total = 0;
  for (int i = 0; i < assignment->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = assignment->elems[i];
    int64_t low = 0;
    int64_t high = -1;
    if (rd_kafka_get_watermark_offsets(consumer_.get(), tp.topic, tp.partition, &low, &high) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        high < 0) {
      continue;  // not fetched yet: unknown
    }
    int64_t next = tp.offset >= 0 ? tp.offset : low;
    int64_t lag = std::max<int64_t>(high - next, 0);
    total += lag;
    SetConnectorGauge("tributary_kafka_consumer_lag",
                      "{" + SourceLabel(options_.name) + ",topic=\"" + EscapeLabelValue(tp.topic) +
                          "\",partition=\"" + std::to_string(tp.partition) + "\"}",
                      static_cast<double>(lag),
                      "Records between a kafka source's position and the partition's end.");
  }
  const bool lag_jumped = last_total_lag_ >= 0 && total - last_total_lag_ > options_.lag_jump;
  const bool slow = latency > options_.latency_threshold;
  const size_t limit = (lag_jumped || slow) ? options_.poll_records_min : options_.poll_records;
  if (limit != poll_limit()) {
    spdlog::info("kafka source {}: {} records per poll (lag {} was {}, latency {})", options_.name,
                 limit, total, last_total_lag_, FormatDuration(latency));
    poll_limit_ = limit;
    SetConnectorGauge("tributary_kafka_poll_records", "{" + SourceLabel(options_.name) + "}",
                      static_cast<double>(limit), "Records per poll of a kafka source.");
  }
  last_total_lag_ = total;
  // A rebalance may have assigned partitions that are not paused yet.
  if (paused()) ApplyPause(true, 0);
}

void KafkaSource::ApplyPause(bool pause, size_t waiting) {
  rd_kafka_topic_partition_list_t* raw = nullptr;
  if (rd_kafka_assignment(consumer_.get(), &raw) != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  KafkaPartitionList assignment(raw);
  rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(consumer_.get(), assignment.get())
                                  : rd_kafka_resume_partitions(consumer_.get(), assignment.get());
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    spdlog::warn("kafka source {}: cannot {} partitions: {}", options_.name,
                 pause ? "pause" : "resume", rd_kafka_err2str(err));
    return;
  }
  if (pause != paused()) {
    spdlog::info("kafka source {}: {} {} partitions ({} records wait for the sinks{})",
                 options_.name, pause ? "paused" : "resumed", assignment->cnt, waiting,
                 memory_paused_.load(std::memory_order_relaxed) ? "; memory ceiling" : "");
    SetConnectorGauge("tributary_kafka_paused", "{" + SourceLabel(options_.name) + "}",
                      pause ? 1 : 0,
                      "1 while a kafka source pauses its partitions for backpressure.");
  }
  paused_ = pause;
}

void KafkaSource::SetPaused(bool paused) {
  // Applied by the next Poll (at most one poll wait later), on the source thread.
  memory_paused_.store(paused, std::memory_order_relaxed);
}

void KafkaSource::OnCommitted(uint64_t checkpoint) {
  std::map<PartitionKey, int64_t> offsets;
  {
    std::lock_guard lock(mu_);
    auto end = pending_.upper_bound(checkpoint);
    for (auto it = pending_.begin(); it != end; ++it) {
      for (const auto& [key, next] : it->second.next_offsets) {
        int64_t& o = offsets[key];
        o = std::max(o, next);
      }
      uncommitted_ -= it->second.records;
    }
    pending_.erase(pending_.begin(), end);
  }
  if (partition_state_) {
    // Only partitions this process still owns: the others' offsets are their owners'.
    std::lock_guard lock(mu_);
    std::erase_if(offsets, [&](const auto& kv) { return owned_.count(kv.first) == 0; });
  }
  if (offsets.empty() || consumer_ == nullptr) return;
  KafkaPartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(offsets.size())));
  for (const auto& [key, next] : offsets) {
    rd_kafka_topic_partition_list_add(list.get(), key.first.c_str(), key.second)->offset = next;
  }
  // Synchronous: when this returns the group coordinator has the offsets. A failure
  // (e.g. the partition moved to another member in a rebalance) only means those
  // records may be read again.
  rd_kafka_resp_err_t err = rd_kafka_commit(consumer_.get(), list.get(), 0);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    spdlog::warn("kafka source {}: offset commit failed (records may be read again): {}",
                 options_.name, rd_kafka_err2str(err));
    return;
  }
  std::lock_guard lock(mu_);
  for (const auto& [key, next] : offsets) committed_[key] = next;
}

std::map<std::pair<std::string, int32_t>, int64_t> KafkaSource::committed_offsets() const {
  std::lock_guard lock(mu_);
  return committed_;
}

void KafkaSource::Stop() {
  stop_ = true;
}

void KafkaSource::Close() {
  stop_ = true;
  if (consumer_ != nullptr) {
    // Leaves the group (its partitions go to other members at once); commits nothing.
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(consumer_.get());
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      spdlog::warn("kafka source {}: close: {}", options_.name, rd_kafka_err2str(err));
    }
    consumer_.reset();
    ctx_ = nullptr;
    ClearConnectorGauges(SourceLabel(options_.name));
  }
}

void RegisterKafkaSource(Registry& registry) {
  registry.AddSource(
      "kafka", &KafkaSourceSectionSpec(),
      [](const SourceEntry& entry) -> Result<std::unique_ptr<Source>> {
        TRIB_ASSIGN_OR_RETURN(KafkaSourceOptions options,
                              ParseKafkaSourceOptions(entry.options, entry.name));
        return std::unique_ptr<Source>(std::make_unique<KafkaSource>(std::move(options)));
      });
}

}  // namespace tributary
