#include "stream/qc/iforest.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "ingest/device_registry.h"
#include "server/metrics.h"
#include "stream/checkpoint.h"

namespace tributary {

double IsolationPathNormaliser(double n) {
  if (n <= 1) return 0;
  if (n == 2) return 1;
  constexpr double kEulerGamma = 0.5772156649015329;
  return 2.0 * (std::log(n - 1.0) + kEulerGamma) - 2.0 * (n - 1.0) / n;
}

IsolationForest IsolationForest::Train(const std::vector<float>& rows, size_t dims,
                                       const Options& options) {
  IsolationForest f;
  f.dims_ = dims;
  if (dims == 0 || dims > UINT16_MAX || rows.size() < dims) return f;
  size_t n = rows.size() / dims;
  size_t sample = std::min(n, std::max<size_t>(2, options.sample_size));
  // A tree of `sample` vectors has at most 2·sample − 1 nodes: right-child offsets fit
  // in 16 bits.
  sample = std::min<size_t>(sample, 32767);
  f.norm_ = IsolationPathNormaliser(static_cast<double>(sample));
  if (f.norm_ <= 0) f.norm_ = 1;
  int max_depth = static_cast<int>(std::ceil(std::log2(static_cast<double>(sample))));
  SplitMix64 rng(options.seed);
  std::vector<uint32_t> all(n);
  std::iota(all.begin(), all.end(), 0u);
  std::vector<uint32_t> idx(sample);
  f.nodes_.reserve(options.trees * (2 * sample));
  for (size_t t = 0; t < options.trees; ++t) {
    // Partial Fisher–Yates: the first `sample` of `all` become a uniform subsample.
    for (size_t i = 0; i < sample; ++i) {
      size_t j = i + rng.Below(n - i);
      std::swap(all[i], all[j]);
      idx[i] = all[i];
    }
    f.roots_.push_back(static_cast<uint32_t>(f.nodes_.size()));
    f.Grow(rows, idx, 0, sample, 0, max_depth, rng);
  }
  f.nodes_.shrink_to_fit();
  f.ComputeDepth();
  return f;
}

void IsolationForest::Grow(const std::vector<float>& rows, std::vector<uint32_t>& idx, size_t begin,
                           size_t end, int depth, int max_depth, SplitMix64& rng) {
  size_t self = nodes_.size();
  nodes_.push_back(Node{});
  size_t count = end - begin;
  auto leaf = [&] {
    nodes_[self].right = 0;
    nodes_[self].feature = 0;
    // A leaf keeps its whole contribution to the path length, so scoring is a walk and
    // a sum: its depth plus the expected depth of the subtree never grown below it.
    nodes_[self].value =
        static_cast<float>(depth + IsolationPathNormaliser(static_cast<double>(count)));
  };
  if (count <= 1 || depth >= max_depth) return leaf();
  // A random feature among those that still vary in this node.
  size_t start = rng.Below(dims_);
  for (size_t k = 0; k < dims_; ++k) {
    size_t feature = (start + k) % dims_;
    float lo = rows[idx[begin] * dims_ + feature], hi = lo;
    for (size_t i = begin + 1; i < end; ++i) {
      float v = rows[idx[i] * dims_ + feature];
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    if (!(hi > lo)) continue;
    float split = static_cast<float>(lo + (hi - lo) * rng.Uniform());
    if (!(split > lo)) split = std::nextafter(lo, hi);
    auto mid = std::partition(idx.begin() + static_cast<std::ptrdiff_t>(begin),
                              idx.begin() + static_cast<std::ptrdiff_t>(end),
                              [&](uint32_t r) { return rows[r * dims_ + feature] < split; });
    size_t m = static_cast<size_t>(mid - idx.begin());
    nodes_[self].feature = static_cast<uint16_t>(feature);
    nodes_[self].value = split;
    Grow(rows, idx, begin, m, depth + 1, max_depth, rng);
    nodes_[self].right = static_cast<uint16_t>(nodes_.size() - self);
    Grow(rows, idx, m, end, depth + 1, max_depth, rng);
    return;
  }
  leaf();  // every feature constant: nothing left to isolate
}

bool IsolationForest::ComputeDepth() {
  depth_ = 0;
  // Depth-first order: walk each tree with an explicit stack of (node, depth).
  std::vector<std::pair<uint32_t, uint32_t>> stack;
  for (size_t t = 0; t < roots_.size(); ++t) {
    uint32_t end = t + 1 < roots_.size() ? roots_[t + 1] : static_cast<uint32_t>(nodes_.size());
    stack.assign(1, {roots_[t], 0});
    while (!stack.empty()) {
      auto [i, d] = stack.back();
      stack.pop_back();
      // Every node of a tree lies inside its run, so a walk never leaves its tree.
      if (i < roots_[t] || i >= end || d > 64) return false;
      const Node& n = nodes_[i];
      if (n.right == 0) {
        depth_ = std::max(depth_, d);
        continue;
      }
      if (n.feature >= dims_ || n.right < 2) return false;
      stack.push_back({i + 1, d + 1});
      stack.push_back({i + n.right, d + 1});
    }
  }
  return true;
}

double IsolationForest::Score(const float* x) const {
  if (roots_.empty()) return NAN;
  // Trees in groups of kLanes, walked level by level: the lanes' loads are independent,
  // so their cache misses overlap (a model of 100 trees × 256 is ~400 KB per device and
  // rarely in cache when the next message of that device comes). The sum runs in tree
  // order, so the score equals that of walking the trees one by one.
  constexpr size_t kLanes = 32;
  const Node* nodes = nodes_.data();
  double total = 0;
  uint32_t cur[kLanes];
  for (size_t t0 = 0; t0 < roots_.size(); t0 += kLanes) {
    const size_t lanes = std::min(kLanes, roots_.size() - t0);
    for (size_t k = 0; k < lanes; ++k) cur[k] = roots_[t0 + k];
    for (uint32_t d = 0; d < depth_; ++d) {
      for (size_t k = 0; k < lanes; ++k) {
        const Node n = nodes[cur[k]];
        // Left is the next node, right `right` nodes on; a leaf (right 0) stays. Written
        // as arithmetic, not a branch: the comparison is a coin toss for the predictor.
        const uint32_t right = n.right;
        const uint32_t left = right != 0 ? 1u : 0u;
        const uint32_t go_left = x[n.feature] < n.value ? 1u : 0u;
        cur[k] += right + go_left * (left - right);  // modulo 2^32: left or right
      }
    }
    for (size_t k = 0; k < lanes; ++k) total += nodes[cur[k]].value;  // leaf path lengths
  }
  double mean = total / static_cast<double>(roots_.size());
  return std::exp2(-mean / norm_);
}

void IsolationForest::Encode(CheckpointWriter& out) const {
  out.U64(dims_);
  out.F64(norm_);
  out.U64(roots_.size());
  for (uint32_t r : roots_) out.U64(r);
  out.U64(nodes_.size());
  // Per node: threshold or path length, absolute index of the right child (0: leaf),
  // feature, and a leaf size that is no longer kept (0).
  for (size_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    out.F64(n.value);
    out.U64(n.right == 0 ? 0 : i + n.right);
    out.U64(n.feature);
    out.U64(0);
  }
}

IsolationForest IsolationForest::Decode(CheckpointReader& in) {
  IsolationForest f;
  f.dims_ = in.U64();
  f.norm_ = in.F64();
  uint64_t roots = in.Count();
  for (uint64_t i = 0; i < roots && in.ok(); ++i)
    f.roots_.push_back(static_cast<uint32_t>(in.U64()));
  uint64_t nodes = in.Count();
  f.nodes_.reserve(nodes);
  for (uint64_t i = 0; i < nodes && in.ok(); ++i) {
    Node n;
    n.value = static_cast<float>(in.F64());
    uint64_t right = in.U64();
    uint64_t feature = in.U64();
    (void)in.U64();  // leaf size
    // A corrupt index must not walk out of its tree (checked whole by ComputeDepth).
    if (right != 0 && (right <= i + 1 || right - i > UINT16_MAX)) {
      in.Fail("isolation forest node out of range");
    }
    if (feature >= std::max<size_t>(f.dims_, 1)) in.Fail("isolation forest feature out of range");
    n.right = right == 0 ? 0 : static_cast<uint16_t>(right - i);
    n.feature = right == 0 ? 0 : static_cast<uint16_t>(feature);
    f.nodes_.push_back(n);
  }
  for (size_t t = 0; t < f.roots_.size(); ++t) {
    bool ordered = t == 0 ? f.roots_[t] == 0 : f.roots_[t] > f.roots_[t - 1];
    if (!ordered || f.roots_[t] >= f.nodes_.size()) in.Fail("isolation forest root out of range");
  }
  if (in.ok() && !f.ComputeDepth()) in.Fail("isolation forest tree malformed");
  if (!in.ok()) return IsolationForest{};
  return f;
}

// ---------------------------------------------------------------------------------
// Config

const SectionSpec& AnomalySectionSpec() {
  static const SectionSpec spec{
      "anomaly",
      "Calibration drift against co-located reference stations (`anomaly.drift`) and "
      "multivariate anomaly detection with an isolation forest per device "
      "(`anomaly.iforest`). Both run before the window stage and never drop a reading.",
      {
          {"drift", OptionType::kSection, "", "Calibration drift (`anomaly.drift`)."},
          {"iforest", OptionType::kSection, "", "Isolation forest per device (`anomaly.iforest`)."},
      }};
  return spec;
}

const SectionSpec& AnomalyForestSectionSpec() {
  static const SectionSpec spec{
      "anomaly.iforest",
      "An isolation forest per device over the vector of its latest `metrics`, sampled "
      "every `step` of event time into a history of `history` vectors. Every reading of the "
      "device is scored on the vector that includes it; scores at or above `threshold` are "
      "flagged ANOMALY, and the score is stored in the reading's provenance "
      "(`anomaly_score`). A candidate model is trained every `retrain_every` and scored in "
      "shadow beside the current one for `shadow` before it takes over; their agreement is "
      "logged and published as `tributary_anomaly_model_agreement`.",
      {
          {"enabled", OptionType::kBool, "false", "Run the detector."},
          {"metrics", OptionType::kStringList, "",
           "Canonical metrics forming the feature vector (at least two), e.g. `[pm25, pm10, "
           "no2, temperature, humidity]`. Devices that do not report all of them are not "
           "scored."},
          {"devices", OptionType::kStringList, "",
           "Only devices matching these glob patterns (`aq-*`); empty: every device."},
          {"trees", OptionType::kInt, "100",
           "Trees per forest. A model takes about trees × (2 · sample_size) × 12 bytes per "
           "device (0.6 MB at the defaults; twice that during a shadow period).",
           "1..1000"},
          {"sample_size", OptionType::kInt, "256", "Vectors subsampled per tree.", "8..4096"},
          {"history", OptionType::kInt, "1440", "Vectors kept per device for training.",
           "16..100000"},
          {"step", OptionType::kDuration, "1m",
           "Event-time step at which a device's latest values enter its history.", "1s..1d"},
          {"min_samples", OptionType::kInt, "1440",
           "Vectors a device needs before its first model is trained (the default, a day of "
           "minutes, lets the first model see a whole diurnal cycle).",
           "8..100000"},
          {"retrain_every", OptionType::kDuration, "6h",
           "Event time between trainings of a candidate model.", "1m..30d"},
          {"shadow", OptionType::kDuration, "1h",
           "How long a candidate is scored beside the current model before it takes over "
           "(0s: at once).",
           "0s..30d"},
          {"threshold", OptionType::kDouble, "0.66",
           "Score at or above which a reading is flagged.", "0.5..1"},
          {"seed", OptionType::kInt, "1", "Seed of the forests' random generator.", "0.."},
      }};
  return spec;
}

Result<AnomalyOptions> ReadAnomalyOptions(const PipelineConfig& config) {
  AnomalyOptions o;
  if (!config.anomaly.Has("iforest")) return o;
  OptionReader r = config.anomaly.Child("iforest", &AnomalyForestSectionSpec());
  TRIB_RETURN_IF_ERROR(r.CheckKeys());
  TRIB_ASSIGN_OR_RETURN(o.enabled, r.GetBool("enabled"));
  TRIB_ASSIGN_OR_RETURN(std::vector<std::string> metrics, r.GetStringList("metrics"));
  TRIB_ASSIGN_OR_RETURN(o.devices, r.GetStringList("devices"));
  TRIB_ASSIGN_OR_RETURN(int64_t trees, r.GetInt("trees"));
  TRIB_ASSIGN_OR_RETURN(int64_t sample, r.GetInt("sample_size"));
  TRIB_ASSIGN_OR_RETURN(int64_t history, r.GetInt("history"));
  TRIB_ASSIGN_OR_RETURN(o.step, r.GetDuration("step"));
  TRIB_ASSIGN_OR_RETURN(int64_t min_samples, r.GetInt("min_samples"));
  TRIB_ASSIGN_OR_RETURN(o.retrain_every, r.GetDuration("retrain_every"));
  TRIB_ASSIGN_OR_RETURN(o.shadow, r.GetDuration("shadow"));
  TRIB_ASSIGN_OR_RETURN(o.threshold, r.GetDouble("threshold"));
  TRIB_ASSIGN_OR_RETURN(int64_t seed, r.GetInt("seed"));
  o.forest.trees = static_cast<size_t>(trees);
  o.forest.sample_size = static_cast<size_t>(sample);
  o.forest.seed = static_cast<uint64_t>(seed);
  o.history = static_cast<size_t>(history);
  o.min_samples = static_cast<size_t>(min_samples);
  if (!o.enabled) return o;
  if (metrics.size() < 2) return r.Error("metrics", "needs at least two metrics");
  for (const std::string& m : metrics) {
    if (FindMetric(m) == nullptr) return r.Error("metrics", "unknown metric '" + m + "'");
    Symbol s = Intern(m);
    if (std::find(o.metrics.begin(), o.metrics.end(), s) != o.metrics.end()) {
      return r.Error("metrics", "metric '" + m + "' listed twice");
    }
    o.metrics.push_back(s);
  }
  if (o.min_samples > o.history) {
    return r.Error("min_samples", "must not exceed history (" + std::to_string(o.history) + ")");
  }
  return o;
}

// ---------------------------------------------------------------------------------
// Operator

AnomalyOperator::AnomalyOperator(AnomalyOptions options) : options_(std::move(options)) {
  for (size_t i = 0; i < options_.metrics.size(); ++i) {
    feature_of_[options_.metrics[i].id] = static_cast<int>(i);
  }
  scratch_.resize(options_.metrics.size());
}

Result<std::unique_ptr<AnomalyOperator>> AnomalyOperator::Make(const PipelineConfig& config) {
  TRIB_ASSIGN_OR_RETURN(AnomalyOptions o, ReadAnomalyOptions(config));
  if (!o.enabled) return std::unique_ptr<AnomalyOperator>();
  return std::make_unique<AnomalyOperator>(std::move(o));
}

Status AnomalyOperator::Open(RunContext& ctx) {
  (void)ctx;
  return Status::Ok();
}

int AnomalyOperator::FeatureOf(Symbol metric) const {
  auto it = feature_of_.find(metric.id);
  return it == feature_of_.end() ? -1 : it->second;
}

bool AnomalyOperator::Watched(Symbol device) {
  if (options_.devices.empty()) return true;
  auto [it, inserted] = watched_.try_emplace(device.id, false);
  if (inserted) {
    for (const std::string& p : options_.devices) {
      if (GlobMatch(p, device.view())) it->second = true;
    }
  }
  return it->second;
}

void AnomalyOperator::Train(Symbol device, DeviceState& s, TimeUs t) {
  size_t dims = options_.metrics.size();
  std::vector<float> rows(s.history_size * dims);
  // Oldest first, so the subsample does not depend on where the ring wraps.
  size_t first = (s.history_next + options_.history - s.history_size) % options_.history;
  for (size_t k = 0; k < s.history_size; ++k) {
    size_t slot = (first + k) % options_.history;
    std::copy_n(s.history.begin() + static_cast<std::ptrdiff_t>(slot * dims), dims,
                rows.begin() + static_cast<std::ptrdiff_t>(k * dims));
  }
  IsolationForest::Options fo = options_.forest;
  // One stream per device and training, so models do not depend on device order.
  fo.seed = options_.forest.seed ^ (0x9E3779B97F4A7C15ULL * (device.id + 1)) ^ (s.trainings << 32);
  auto model = std::make_shared<const IsolationForest>(IsolationForest::Train(rows, dims, fo));
  ++s.trainings;
  ++stats_.trained;
  s.trained_at = t;
  if (!s.current || options_.shadow <= 0) {
    s.current = std::move(model);
    s.candidate.reset();
    return;
  }
  s.candidate = std::move(model);
  s.shadow_until = t + options_.shadow;
  s.agree = s.compared = 0;
}

void AnomalyOperator::Promote(Symbol device, DeviceState& s) {
  double agreement =
      s.compared == 0 ? NAN : static_cast<double>(s.agree) / static_cast<double>(s.compared);
  spdlog::info(
      "anomaly: new model of {} takes over after its shadow period ({} readings, "
      "agreement {:.3f})",
      device.view(), s.compared, agreement);
  if (!std::isnan(agreement)) {
    SetConnectorGauge("tributary_anomaly_model_agreement",
                      "{device=\"" + EscapeLabelValue(device.view()) + "\"}", agreement,
                      "Share of readings on which a new anomaly model agreed with the current "
                      "one during its shadow period.");
  }
  stats_.last_agreement = agreement;
  ++stats_.promoted;
  s.current = std::move(s.candidate);
  s.candidate.reset();
}

Status AnomalyOperator::Process(Batch& batch) {
  const size_t dims = options_.metrics.size();
  std::vector<Reading>& rs = batch.readings;
  // The readings of one message are consecutive and share device and event time: they
  // update the vector together and are scored once, on the vector holding all of them.
  for (size_t i = 0; i < rs.size();) {
    size_t j = i + 1;
    while (j < rs.size() && rs[j].device == rs[i].device && rs[j].event_time == rs[i].event_time) {
      ++j;
    }
    const Symbol device = rs[i].device;
    const TimeUs t = rs[i].event_time;
    size_t begin = i;
    i = j;
    if (!Watched(device)) continue;
    DeviceState* sp = nullptr;
    bool any = false;
    for (size_t k = begin; k < j; ++k) {
      const Reading& r = rs[k];
      int f = FeatureOf(r.metric);
      if (f < 0 || !std::isfinite(r.value)) continue;
      if (sp == nullptr) {
        sp = &devices_[device.id];
        if (sp->latest.empty()) {
          sp->latest.assign(dims, NAN);
          sp->history.assign(options_.history * dims, 0.0f);
        }
      }
      DeviceState& s = *sp;
      int64_t step = t / options_.step;
      if (s.step_index != INT64_MIN && step > s.step_index) {
        // A new step: the vector as it stood at the end of the last one joins the history.
        bool complete =
            std::none_of(s.latest.begin(), s.latest.end(), [](float v) { return std::isnan(v); });
        if (complete) {
          std::copy(s.latest.begin(), s.latest.end(),
                    s.history.begin() + static_cast<std::ptrdiff_t>(s.history_next * dims));
          s.history_next = (s.history_next + 1) % options_.history;
          s.history_size = std::min(s.history_size + 1, options_.history);
        }
        bool due = !s.current ? s.history_size >= options_.min_samples
                              : (!s.candidate && t >= s.trained_at + options_.retrain_every);
        if (due) Train(device, s, t);
      }
      if (step > s.step_index) s.step_index = step;
      s.latest[static_cast<size_t>(f)] = static_cast<float>(r.value);
      any = true;
    }
    if (!any) continue;
    DeviceState& s = *sp;
    if (!s.current) continue;
    if (std::any_of(s.latest.begin(), s.latest.end(), [](float v) { return std::isnan(v); })) {
      continue;
    }
    if (!s.candidate) {
      // Scored after the loop, grouped by model (see the header): the vector as it is now
      // and the model current now.
      pending_.push_back(
          PendingScore{s.current, static_cast<uint32_t>(begin), static_cast<uint32_t>(j)});
      pending_vectors_.insert(pending_vectors_.end(), s.latest.begin(), s.latest.end());
      continue;
    }
    // In a shadow period at once: the agreement count and the hand-over at the period's
    // end follow the readings in order.
    double score = s.current->Score(s.latest.data());
    bool flag = score >= options_.threshold;
    Mark(rs, begin, j, score);
    bool other = s.candidate->Score(s.latest.data()) >= options_.threshold;
    ++s.compared;
    s.agree += other == flag;
    if (t >= s.shadow_until) Promote(device, s);
  }
  ScorePending(rs);
  return Status::Ok();
}

void AnomalyOperator::Mark(std::vector<Reading>& rs, size_t begin, size_t end, double score) {
  const bool flag = score >= options_.threshold;
  for (size_t k = begin; k < end; ++k) {
    Reading& r = rs[k];
    if (FeatureOf(r.metric) < 0 || !std::isfinite(r.value)) continue;
    ++stats_.scored;
    r.prov.anomaly_score = static_cast<float>(score);
    if (flag) {
      r.flags.Set(QcFlag::kAnomaly);
      ++stats_.flagged;
    }
  }
}

void AnomalyOperator::ScorePending(std::vector<Reading>& rs) {
  const size_t dims = options_.metrics.size();
  // A batch holds several messages of most devices (1,024 messages of 200 devices: about
  // five each); scoring them one model after the other reads each model from memory once
  // per batch instead of once per message. A score depends only on its vector and model,
  // so the order changes nothing.
  order_.resize(pending_.size());
  std::iota(order_.begin(), order_.end(), 0u);
  std::stable_sort(order_.begin(), order_.end(), [&](uint32_t a, uint32_t b) {
    return std::less<>()(pending_[a].model.get(), pending_[b].model.get());
  });
  for (uint32_t i : order_) {
    const PendingScore& p = pending_[i];
    Mark(rs, p.begin, p.end, p.model->Score(pending_vectors_.data() + size_t{i} * dims));
  }
  pending_.clear();
  pending_vectors_.clear();
}

Status AnomalyOperator::Finish(Batch& out) {
  (void)out;
  return Status::Ok();
}

namespace {

void EncodeModel(CheckpointWriter& out, const std::shared_ptr<const IsolationForest>& m) {
  out.Bool(m != nullptr);
  if (m) m->Encode(out);
}

std::shared_ptr<const IsolationForest> DecodeModel(CheckpointReader& in) {
  if (!in.Bool()) return nullptr;
  return std::make_shared<const IsolationForest>(IsolationForest::Decode(in));
}

}  // namespace

Status AnomalyOperator::Snapshot(CheckpointWriter& out) const {
  out.Section("anomaly");
  out.U64(options_.metrics.size());
  out.U64(options_.history);
  // Sorted by device id so equal state gives equal bytes.
  std::vector<uint32_t> ids;
  ids.reserve(devices_.size());
  for (const auto& [id, s] : devices_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  out.U64(ids.size());
  for (uint32_t id : ids) {
    const DeviceState& s = devices_.at(id);
    out.U64(id);
    for (float v : s.latest) out.F64(v);
    out.I64(s.step_index);
    out.U64(s.history_next);
    out.U64(s.history_size);
    for (float v : s.history) out.F64(v);
    EncodeModel(out, s.current);
    EncodeModel(out, s.candidate);
    out.I64(s.trained_at);
    out.I64(s.shadow_until);
    out.U64(s.agree);
    out.U64(s.compared);
    out.U64(s.trainings);
  }
  out.U64(stats_.scored);
  out.U64(stats_.flagged);
  out.U64(stats_.trained);
  out.U64(stats_.promoted);
  return Status::Ok();
}

Status AnomalyOperator::Restore(CheckpointReader& in) {
  TRIB_RETURN_IF_ERROR(in.ExpectSection("anomaly"));
  size_t dims = options_.metrics.size();
  if (in.U64() != dims || in.U64() != options_.history) {
    return Status::Invalid("anomaly: the checkpoint was taken with other metrics or history");
  }
  devices_.clear();
  uint64_t n = in.Count();
  for (uint64_t k = 0; k < n && in.ok(); ++k) {
    uint32_t id = static_cast<uint32_t>(in.U64());
    DeviceState& s = devices_[id];
    s.latest.resize(dims);
    for (float& v : s.latest) v = static_cast<float>(in.F64());
    s.step_index = in.I64();
    s.history_next = in.U64();
    s.history_size = in.U64();
    s.history.resize(options_.history * dims);
    for (float& v : s.history) v = static_cast<float>(in.F64());
    s.current = DecodeModel(in);
    s.candidate = DecodeModel(in);
    s.trained_at = in.I64();
    s.shadow_until = in.I64();
    s.agree = in.U64();
    s.compared = in.U64();
    s.trainings = in.U64();
    if (s.history_next >= options_.history || s.history_size > options_.history) {
      in.Fail("anomaly: history position out of range");
    }
  }
  stats_.scored = in.U64();
  stats_.flagged = in.U64();
  stats_.trained = in.U64();
  stats_.promoted = in.U64();
  return in.status();
}

}  // namespace tributary
