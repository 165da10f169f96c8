// The ledger: where every input record ended.
//
// Invariant (checked by tests, reported at the end of every run):
//   input == accepted + quarantined + late + duplicate
// Counters are updated by the stage that decides a record's fate: ingestion counts
// input, quarantined and duplicate; the window stage counts accepted and late. While a
// run is in flight the difference is "in flight"; after a clean stop it is zero.
// Thread-safe: counters are atomics, reason and sink maps take a mutex (rare paths).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "core/status.h"

namespace tributary {

struct LedgerSnapshot {
  uint64_t input = 0;
  uint64_t accepted = 0;
  uint64_t quarantined = 0;
  uint64_t late = 0;
  uint64_t duplicate = 0;
  uint64_t windows_emitted = 0;
  std::map<std::string, uint64_t> quarantine_reasons;
  std::map<std::string, uint64_t> sink_committed;  ///< "sink/table" → rows committed

  uint64_t accounted() const { return accepted + quarantined + late + duplicate; }
  uint64_t in_flight() const { return input - accounted(); }
  bool balanced() const { return input == accounted(); }
  /// The ledger as a JSON object (the content of ledger.json).
  std::string ToJson() const;
  /// A short human-readable table for the end of a run.
  std::string ToText() const;
};

/// Parse a ledger.json written by LedgerSnapshot::ToJson.
Result<LedgerSnapshot> ParseLedgerJson(std::string_view json);

class Ledger {
 public:
  void AddInput(uint64_t n) { input_.fetch_add(n, std::memory_order_relaxed); }
  void AddAccepted(uint64_t n) { accepted_.fetch_add(n, std::memory_order_relaxed); }
  void AddLate(uint64_t n) { late_.fetch_add(n, std::memory_order_relaxed); }
  void AddDuplicate(uint64_t n) { duplicate_.fetch_add(n, std::memory_order_relaxed); }
  void AddWindowsEmitted(uint64_t n) { windows_.fetch_add(n, std::memory_order_relaxed); }
  /// Count one quarantined record under its reason code.
  void AddQuarantined(std::string_view reason, uint64_t n = 1);
  /// Count rows a sink committed durably (e.g. "sqlite/readings").
  void AddSinkCommitted(std::string_view sink_table, uint64_t n);

  /// Restore counters (after recovery from a checkpoint).
  void Restore(const LedgerSnapshot& s);
  LedgerSnapshot Snapshot() const;

 private:
  std::atomic<uint64_t> input_{0}, accepted_{0}, quarantined_{0}, late_{0}, duplicate_{0},
      windows_{0};
  mutable std::mutex mu_;
  std::map<std::string, uint64_t, std::less<>> reasons_;
  std::map<std::string, uint64_t, std::less<>> sinks_;
};

}  // namespace tributary
