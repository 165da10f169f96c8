// Multivariate anomaly detection with an isolation forest, and the operator that runs
// one forest per device over the device's latest metrics.
//
// Isolation forest (Liu, Ting & Zhou, 2008). A tree is grown on a random subsample of
// `sample_size` feature vectors by splitting on a random feature at a value drawn
// uniformly between that feature's min and max in the node, until a node holds one
// vector or the depth limit ceil(log2 sample_size) is reached. Anomalies are few and
// different, so random splits isolate them near the root: the score of x is
// 2^(−E[h(x)] / c(n)), with h the path length (plus c(size) of the leaf reached, the
// expected depth of the unbuilt subtree) and c(n) = 2·H(n−1) − 2(n−1)/n the average
// path length of an unsuccessful binary-search-tree lookup. Scores near 1 are
// anomalies, ~0.5 or below ordinary. Splits are axis-parallel, so features need no
// scaling. All randomness comes from a splitmix64 generator seeded by the caller:
// the same data and seed give the same forest on every platform.
//
// The operator (AnomalyOperator). Per device that reports every configured metric, it
// keeps the latest value of each metric; at each `step` (event time) the vector of
// latest values enters the device's history (a ring of `history` vectors). Every
// reading of the device is scored with the device's current model on the vector that
// includes it; at or above `threshold` the reading is flagged ANOMALY, and its score is
// kept in Provenance::anomaly_score either way. No reading is dropped or changed. The
// readings of one message are scored once, together. Outside shadow periods the scores
// of a batch are computed after its loop, grouped by model, so a device's model is read
// from memory once per batch rather than once per message (a 100-tree model is ~300 KB,
// and a batch of a busy source holds several messages of each device); the results are
// those of scoring every message as it comes.
//
// Retraining. A device's first model is trained once it has `min_samples` vectors.
// Every `retrain_every` of event time a candidate is trained on the current history and
// runs in shadow for `shadow`: each reading is scored by both, and the share on which
// they agree (both flag or both pass) is counted. At the end of the shadow period the
// candidate takes over; the agreement is logged and published as the gauge
// `tributary_anomaly_model_agreement{device=...}`.
//
// Threading: one instance per operator chain; not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/config.h"
#include "core/model.h"
#include "core/pipeline_config.h"
#include "stream/operator.h"

namespace tributary {

class CheckpointWriter;
class CheckpointReader;

/// splitmix64: a tiny deterministic generator (the same stream on every platform).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  /// Uniform integer in [0, n).
  uint64_t Below(uint64_t n) { return n == 0 ? 0 : Next() % n; }

 private:
  uint64_t state_;
};

/// Average path length of an unsuccessful search in a binary search tree of n items.
double IsolationPathNormaliser(double n);

/// An isolation forest over fixed-width float vectors. Immutable once trained.
class IsolationForest {
 public:
  struct Options {
    size_t trees = 100;
    size_t sample_size = 256;
    uint64_t seed = 1;
  };
  /// Train on `rows` (row-major, `dims` floats each). Fewer rows than sample_size use
  /// them all. An empty forest (no rows) scores NaN.
  static IsolationForest Train(const std::vector<float>& rows, size_t dims, const Options& options);

  /// Anomaly score of `x` (`dims` values) in (0, 1]; NaN when untrained.
  double Score(const float* x) const;
  size_t dims() const { return dims_; }
  size_t trees() const { return roots_.size(); }
  size_t nodes() const { return nodes_.size(); }
  /// Bytes of the node arrays (what scoring reads).
  size_t bytes() const { return nodes_.size() * sizeof(Node) + roots_.size() * sizeof(uint32_t); }
  bool trained() const { return !roots_.empty(); }

  void Encode(CheckpointWriter& out) const;
  static IsolationForest Decode(CheckpointReader& in);

 private:
  // Every tree is one contiguous run of 8-byte nodes in depth-first order, the trees one
  // after another: a split node's left child follows it and `right` is the offset of its
  // right child from the node; a leaf has right == 0 and in `value` its whole path
  // length (depth + c(size)). Scoring walks all trees together, one level per pass
  // (Score), so the node loads of different trees overlap instead of each tree's walk
  // waiting on the previous one's cache misses; a leaf steps by 0, i.e. stays put, so
  // every tree takes exactly `depth_` steps without a branch on the node kind.
  struct Node {
    float value = 0;     // split: threshold (go left when x[feature] < value); leaf: path length
    uint16_t right = 0;  // split: offset of the right child; leaf: 0
    uint16_t feature = 0;
  };
  static_assert(sizeof(Node) == 8);
  void Grow(const std::vector<float>& rows, std::vector<uint32_t>& idx, size_t begin, size_t end,
            int depth, int max_depth, SplitMix64& rng);
  /// Steps from a root to the deepest leaf (0 for a lone leaf); false when malformed.
  bool ComputeDepth();

  size_t dims_ = 0;
  double norm_ = 1;  // c(sample size actually used)
  uint32_t depth_ = 0;
  std::vector<Node> nodes_;
  std::vector<uint32_t> roots_;
};

/// The `anomaly` section and `anomaly.iforest`, for docs and validation.
const SectionSpec& AnomalySectionSpec();
const SectionSpec& AnomalyForestSectionSpec();

/// The resolved `anomaly.iforest` options.
struct AnomalyOptions {
  bool enabled = false;
  std::vector<Symbol> metrics;       ///< feature order
  std::vector<std::string> devices;  ///< glob patterns; empty: every device
  IsolationForest::Options forest;
  size_t history = 1440;  ///< vectors kept per device
  DurationUs step = 60 * kMicrosPerSecond;
  DurationUs retrain_every = 6 * kMicrosPerHour;
  DurationUs shadow = kMicrosPerHour;
  size_t min_samples = 1440;
  double threshold = 0.66;
};

/// Read `anomaly.iforest` (disabled when absent).
Result<AnomalyOptions> ReadAnomalyOptions(const PipelineConfig& config);

/// Figures of the operator, for tests and benchmarks.
struct AnomalyStats {
  uint64_t scored = 0;          ///< readings scored by a current model
  uint64_t flagged = 0;         ///< readings flagged ANOMALY
  uint64_t trained = 0;         ///< models trained (first models and candidates)
  uint64_t promoted = 0;        ///< candidates that took over after their shadow period
  double last_agreement = NAN;  ///< agreement of the last promoted candidate
};

class AnomalyOperator final : public Operator {
 public:
  explicit AnomalyOperator(AnomalyOptions options);
  /// Null when `anomaly.iforest` is not enabled.
  static Result<std::unique_ptr<AnomalyOperator>> Make(const PipelineConfig& config);

  std::string_view name() const override { return "anomaly"; }
  Status Open(RunContext& ctx) override;
  Status Process(Batch& batch) override;
  Status Finish(Batch& out) override;
  Status Snapshot(CheckpointWriter& out) const override;
  Status Restore(CheckpointReader& in) override;

  const AnomalyStats& stats() const { return stats_; }

 private:
  struct DeviceState {
    std::vector<float> latest;       // per feature, NaN until seen
    int64_t step_index = INT64_MIN;  // step of the latest reading
    std::vector<float> history;      // ring of `history` vectors
    size_t history_next = 0;         // ring write position (in vectors)
    size_t history_size = 0;         // vectors held
    std::shared_ptr<const IsolationForest> current, candidate;
    TimeUs trained_at = kMinTime;    // event time the latest model was trained
    TimeUs shadow_until = kMinTime;  // candidate takes over at this event time
    uint64_t agree = 0, compared = 0;
    uint64_t trainings = 0;
  };
  // A message to score once the batch's loop is done: its readings [begin, end) and the
  // model current when it came (its vector is the i-th of `pending_vectors_`).
  struct PendingScore {
    std::shared_ptr<const IsolationForest> model;
    uint32_t begin = 0, end = 0;
  };
  int FeatureOf(Symbol metric) const;
  void Mark(std::vector<Reading>& rs, size_t begin, size_t end, double score);
  void ScorePending(std::vector<Reading>& rs);
  bool Watched(Symbol device);
  void Train(Symbol device, DeviceState& s, TimeUs t);
  void Promote(Symbol device, DeviceState& s);

  AnomalyOptions options_;
  std::unordered_map<uint32_t, int> feature_of_;  // metric id → feature index
  std::unordered_map<uint32_t, bool> watched_;    // device id → matches `devices`
  std::unordered_map<uint32_t, DeviceState> devices_;
  std::vector<float> scratch_;
  std::vector<PendingScore> pending_;
  std::vector<float> pending_vectors_;
  std::vector<uint32_t> order_;
  AnomalyStats stats_;
};

}  // namespace tributary
