#include "stream/partitioned_operator.h"

#include <unordered_map>

#include "core/intern.h"
#include "stream/checkpoint.h"

namespace tributary {

std::string PackedPartitionStateKey(uint64_t key) {
  return PartitionStateKey(Symbol{static_cast<uint32_t>(key >> 32)},
                           static_cast<int32_t>(static_cast<uint32_t>(key)));
}

bool ParsePackedPartition(std::string_view partition, bool intern, uint64_t& key) {
  std::string_view topic;
  int32_t p = 0;
  if (!ParsePartitionStateKey(partition, topic, p)) return false;
  Symbol t = intern ? Intern(topic) : FindSymbol(topic);
  if (t.empty()) return false;
  key = PackPartition(t, p);
  return true;
}

PartitionedOperator::PartitionedOperator(std::string name, Factory make)
    : name_(std::move(name)), make_(std::move(make)) {}
PartitionedOperator::~PartitionedOperator() = default;

Status PartitionedOperator::Open(RunContext& ctx) {
  ctx_ = &ctx;
  // One instance made and opened now, so a definition that cannot run fails the start.
  std::unique_ptr<Operator> probe = make_();
  return probe->Open(ctx);
}

Result<Operator*> PartitionedOperator::Get(Key key) {
  auto it = parts_.find(key);
  if (it != parts_.end()) return it->second.get();
  std::unique_ptr<Operator> op = make_();
  if (ctx_ != nullptr) TRIB_RETURN_IF_ERROR(op->Open(*ctx_));
  Operator* raw = op.get();
  parts_[key] = std::move(op);
  return raw;
}

namespace {

template <typename T>
void MoveAll(std::vector<T>& dst, std::vector<T>& src) {
  if (dst.empty()) {
    dst = std::move(src);
  } else {
    dst.insert(dst.end(), std::make_move_iterator(src.begin()), std::make_move_iterator(src.end()));
  }
  src.clear();
}

void AppendOutput(Batch& to, Batch& from) {
  MoveAll(to.readings, from.readings);
  MoveAll(to.windows, from.windows);
  MoveAll(to.alerts, from.alerts);
  MoveAll(to.late, from.late);
  MoveAll(to.quarantine, from.quarantine);
  MoveAll(to.spatial_stats, from.spatial_stats);
}

}  // namespace

Status PartitionedOperator::Process(Batch& batch) {
  std::map<Key, Batch> split;
  for (Reading& r : batch.readings) {
    split[PackPartition(r.prov.topic, r.prov.partition)].readings.push_back(std::move(r));
  }
  batch.readings.clear();
  if (!batch.windows.empty()) {
    // Rows of the partitioned window stage go to their partition; others pass through.
    std::vector<WindowResult> rest;
    for (WindowResult& w : batch.windows) {
      if (w.source_partition < 0 && w.source_topic.empty()) {
        rest.push_back(std::move(w));
      } else {
        split[PackPartition(w.source_topic, w.source_partition)].windows.push_back(std::move(w));
      }
    }
    batch.windows = std::move(rest);
  }
  std::unordered_map<Key, TimeUs> watermarks;
  for (const PartitionWatermark& pw : batch.partition_watermarks) {
    const Key key = PackPartition(pw.topic, pw.partition);
    watermarks[key] = pw.watermark;
    if (parts_.count(key) != 0) split.try_emplace(key);
  }
  for (auto& [key, sub] : split) {
    auto wm = watermarks.find(key);
    sub.watermark = wm != watermarks.end() ? wm->second : batch.watermark;
    TRIB_ASSIGN_OR_RETURN(Operator * op, Get(key));
    TRIB_RETURN_IF_ERROR(op->Process(sub));
    AppendOutput(batch, sub);
  }
  return Status::Ok();
}

Status PartitionedOperator::OnIdle(TimeUs wall_now, Batch& out) {
  for (auto& [key, op] : parts_) {
    Batch sub;
    TRIB_RETURN_IF_ERROR(op->OnIdle(wall_now, sub));
    AppendOutput(out, sub);
  }
  return Status::Ok();
}

Status PartitionedOperator::Finish(Batch& out) {
  for (auto& [key, op] : parts_) {
    Batch sub;
    TRIB_RETURN_IF_ERROR(op->Finish(sub));
    AppendOutput(out, sub);
  }
  return Status::Ok();
}

Status PartitionedOperator::Snapshot(CheckpointWriter& out) const {
  out.Section("partitioned-" + name_);
  return Status::Ok();
}

Status PartitionedOperator::Restore(CheckpointReader& in) {
  return in.ExpectSection("partitioned-" + name_);
}

Status PartitionedOperator::SnapshotPartition(std::string_view partition,
                                              CheckpointWriter& out) const {
  out.Section(name_ + "-partition");
  Key key = 0;
  auto it = ParsePackedPartition(partition, false, key) ? parts_.find(key) : parts_.end();
  out.Bool(it != parts_.end());
  if (it != parts_.end()) return it->second->Snapshot(out);
  return Status::Ok();
}

Status PartitionedOperator::RestorePartition(std::string_view partition, CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection(name_ + "-partition"));
  Key key = 0;
  if (!ParsePackedPartition(partition, true, key)) {
    return Status::Invalid(name_ + ": '" + std::string(partition) + "' is not a partition key");
  }
  parts_.erase(key);
  if (!in.Bool()) return in.status();
  TRIB_ASSIGN_OR_RETURN(Operator * op, Get(key));
  Status st = op->Restore(in);
  if (!st.ok()) parts_.erase(key);
  return st.WithContext(name_ + " state of partition " + std::string(partition));
}

void PartitionedOperator::DropPartition(std::string_view partition) {
  Key key = 0;
  if (ParsePackedPartition(partition, false, key)) parts_.erase(key);
}

std::vector<std::string> PartitionedOperator::Partitions() const {
  std::vector<std::string> out;
  for (const auto& [key, op] : parts_) out.push_back(PackedPartitionStateKey(key));
  return out;
}

const Operator* PartitionedOperator::partition(std::string_view key) const {
  Key k = 0;
  if (!ParsePackedPartition(key, false, k)) return nullptr;
  auto it = parts_.find(k);
  return it == parts_.end() ? nullptr : it->second.get();
}

}  // namespace tributary
