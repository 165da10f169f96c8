#include "stream/partitioned_window.h"

#include <algorithm>
#include <charconv>

#include "core/intern.h"
#include "stream/checkpoint.h"

namespace tributary {

std::string PartitionStateKey(Symbol topic, int32_t partition) {
  return std::string(topic.view()) + "/" + std::to_string(partition);
}

bool ParsePartitionStateKey(std::string_view key, std::string_view& topic, int32_t& partition) {
  const size_t slash = key.rfind('/');
  if (slash == std::string_view::npos || slash == 0) return false;
  std::string_view number = key.substr(slash + 1);
  auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), partition);
  if (ec != std::errc() || end != number.data() + number.size()) return false;
  topic = key.substr(0, slash);
  return true;
}

PartitionedWindowOperator::PartitionedWindowOperator(Factory make) : make_(std::move(make)) {}
PartitionedWindowOperator::~PartitionedWindowOperator() = default;

PartitionedWindowOperator::Key PartitionedWindowOperator::KeyOf(const Reading& r) {
  return (static_cast<uint64_t>(r.prov.topic.id) << 32) | static_cast<uint32_t>(r.prov.partition);
}

bool PartitionedWindowOperator::ParseKey(std::string_view partition, bool intern, Key& key) {
  std::string_view topic;
  int32_t p = 0;
  if (!ParsePartitionStateKey(partition, topic, p)) return false;
  Symbol t = intern ? Intern(topic) : FindSymbol(topic);
  if (t.empty()) return false;
  key = (static_cast<uint64_t>(t.id) << 32) | static_cast<uint32_t>(p);
  return true;
}

Status PartitionedWindowOperator::Open(RunContext& ctx) {
  ctx_ = &ctx;
  // One stage made and opened now, so a definition that cannot run fails the start.
  std::unique_ptr<WindowOperator> probe = make_();
  return probe->Open(ctx);
}

Result<WindowOperator*> PartitionedWindowOperator::Make(Key key) {
  std::unique_ptr<WindowOperator> op = make_();
  if (expected_interval_) op->SetExpectedInterval(expected_interval_);
  op->SetMemoryShed(memory_shed_);
  if (ctx_ != nullptr) TRIB_RETURN_IF_ERROR(op->Open(*ctx_));
  WindowOperator* raw = op.get();
  parts_[key] = std::move(op);
  return raw;
}

void PartitionedWindowOperator::SetExpectedInterval(WindowOperator::ExpectedInterval lookup) {
  expected_interval_ = std::move(lookup);
  for (auto& [key, op] : parts_) op->SetExpectedInterval(expected_interval_);
}

void PartitionedWindowOperator::SetMemoryShed(const std::atomic<bool>* flag) {
  memory_shed_ = flag;
  for (auto& [key, op] : parts_) op->SetMemoryShed(flag);
}

namespace {

void Append(Batch& to, Batch& from) {
  auto move_all = [](auto& dst, auto& src) {
    if (dst.empty()) {
      dst = std::move(src);
    } else {
      dst.insert(dst.end(), std::make_move_iterator(src.begin()),
                 std::make_move_iterator(src.end()));
    }
    src.clear();
  };
  move_all(to.readings, from.readings);
  move_all(to.late, from.late);
  move_all(to.windows, from.windows);
  move_all(to.quarantine, from.quarantine);
  move_all(to.alerts, from.alerts);
  move_all(to.spatial_stats, from.spatial_stats);
}

}  // namespace

void PartitionedWindowOperator::Tag(Key key, Batch& sub) {
  const Symbol topic{static_cast<uint32_t>(key >> 32)};
  const auto partition = static_cast<int32_t>(static_cast<uint32_t>(key));
  for (WindowResult& w : sub.windows) {
    w.source_topic = topic;
    w.source_partition = partition;
  }
}

void PartitionedWindowOperator::SetWatermarks(Batch& out) const {
  out.watermark = watermark();
  out.partition_watermarks.clear();
  out.partition_watermarks.reserve(parts_.size());
  for (const auto& [key, op] : parts_) {
    out.partition_watermarks.push_back(
        PartitionWatermark{Symbol{static_cast<uint32_t>(key >> 32)},
                           static_cast<int32_t>(static_cast<uint32_t>(key)), op->watermark()});
  }
}

TimeUs PartitionedWindowOperator::watermark() const {
  TimeUs w = kMinTime;
  bool first = true;
  for (const auto& [key, op] : parts_) {
    w = first ? op->watermark() : std::min(w, op->watermark());
    first = false;
  }
  return w;
}

Status PartitionedWindowOperator::Process(Batch& batch) {
  if (!batch.readings.empty()) {
    // Split by partition, keeping each partition's readings in their order.
    std::map<Key, Batch> split;
    for (Reading& r : batch.readings) split[KeyOf(r)].readings.push_back(std::move(r));
    batch.readings.clear();
    for (auto& [key, sub] : split) {
      auto it = parts_.find(key);
      WindowOperator* op = nullptr;
      if (it != parts_.end()) {
        op = it->second.get();
      } else {
        TRIB_ASSIGN_OR_RETURN(op, Make(key));
      }
      TRIB_RETURN_IF_ERROR(op->Process(sub));
      Tag(key, sub);
      Append(batch, sub);
    }
  }
  SetWatermarks(batch);
  return Status::Ok();
}

Status PartitionedWindowOperator::OnIdle(TimeUs wall_now, Batch& out) {
  for (auto& [key, op] : parts_) {
    Batch sub;
    TRIB_RETURN_IF_ERROR(op->OnIdle(wall_now, sub));
    Tag(key, sub);
    Append(out, sub);
  }
  SetWatermarks(out);
  return Status::Ok();
}

Status PartitionedWindowOperator::Finish(Batch& out) {
  for (auto& [key, op] : parts_) {
    Batch sub;
    TRIB_RETURN_IF_ERROR(op->Finish(sub));
    Tag(key, sub);
    Append(out, sub);
  }
  SetWatermarks(out);
  return Status::Ok();
}

Status PartitionedWindowOperator::Snapshot(CheckpointWriter& out) const {
  out.Section("partitioned-window");
  return Status::Ok();
}

Status PartitionedWindowOperator::Restore(CheckpointReader& in) {
  return in.ExpectSection("partitioned-window");
}

Status PartitionedWindowOperator::SnapshotPartition(std::string_view partition,
                                                    CheckpointWriter& out) const {
  out.Section("window-partition");
  Key key = 0;
  auto it = ParseKey(partition, false, key) ? parts_.find(key) : parts_.end();
  out.Bool(it != parts_.end());
  if (it != parts_.end()) return it->second->Snapshot(out);
  return Status::Ok();
}

Status PartitionedWindowOperator::RestorePartition(std::string_view partition,
                                                   CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("window-partition"));
  Key key = 0;
  if (!ParseKey(partition, true, key)) {
    return Status::Invalid("window: '" + std::string(partition) + "' is not a partition key");
  }
  parts_.erase(key);
  if (!in.Bool()) return in.status();
  TRIB_ASSIGN_OR_RETURN(WindowOperator * op, Make(key));
  Status st = op->Restore(in);
  if (!st.ok()) parts_.erase(key);
  return st.WithContext("window state of partition " + std::string(partition));
}

void PartitionedWindowOperator::DropPartition(std::string_view partition) {
  Key key = 0;
  if (ParseKey(partition, false, key)) parts_.erase(key);
}

std::vector<std::string> PartitionedWindowOperator::Partitions() const {
  std::vector<std::string> out;
  for (const auto& [key, op] : parts_) {
    out.push_back(PartitionStateKey(Symbol{static_cast<uint32_t>(key >> 32)},
                                    static_cast<int32_t>(static_cast<uint32_t>(key))));
  }
  return out;
}

const WindowOperator* PartitionedWindowOperator::partition(std::string_view key) const {
  Key k = 0;
  if (!ParseKey(key, false, k)) return nullptr;
  auto it = parts_.find(k);
  return it == parts_.end() ? nullptr : it->second.get();
}

}  // namespace tributary
