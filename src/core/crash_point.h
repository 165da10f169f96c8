// Fault injection for crash tests: `TRIBUTARY_CRASH_AT=<step>:<n>` makes the process
// raise SIGKILL on itself the n-th time (1-based) it reaches the named step of a
// checkpoint (docs/RELIABILITY.md, "Forcing a crash at a step"). The variable is read
// once, before main; when it is unset a crash point costs one predictable branch.
//
// Steps (stream/checkpoint.cc):
//   epoch_write    in the middle of appending a batch to the epoch log (the frame is
//                  half written and flushed to the file, then the process dies);
//                  counted from the process's second epoch log on, so the run has
//                  completed a checkpoint before
//   after_prepare  every sink prepared and the epoch log fsynced; nothing decided yet
//   after_decide   the checkpoint row is durable in the store; no sink has committed
//   between_sinks  the first sink committed, the second has not (pipelines with at
//                  least two sinks)
//   after_commit   every sink committed; the epoch log not yet removed
#pragma once

#include <cstdint>
#include <string_view>

namespace tributary {

enum class CrashStep : uint8_t {
  kNone = 0,
  kEpochWrite,
  kAfterPrepare,
  kAfterDecide,
  kBetweenSinks,
  kAfterCommit,
};

/// The step named `name` ("after_decide"), or kNone.
CrashStep CrashStepByName(std::string_view name);
/// The name of a step ("after_decide").
std::string_view CrashStepName(CrashStep step);

namespace crash_detail {
/// The armed step (kNone when TRIBUTARY_CRASH_AT is unset or invalid).
extern CrashStep armed;
/// Count one arrival at the armed step; true at the n-th.
bool Due();
/// Log the step on stderr and raise SIGKILL; does not return.
[[noreturn]] void Kill(CrashStep step);
}  // namespace crash_detail

/// A named crash point: kills the process when TRIBUTARY_CRASH_AT names `step` and this
/// is its n-th arrival.
inline void CrashPoint(CrashStep step) {
  if (crash_detail::armed == step) [[unlikely]] {
    if (crash_detail::Due()) crash_detail::Kill(step);
  }
}

/// Counts an arrival at `step` like CrashPoint, but returns true instead of killing when
/// it is the n-th, so the caller can leave a torn write behind before crash_detail::Kill.
inline bool CrashDue(CrashStep step) {
  return crash_detail::armed == step && crash_detail::Due();
}

}  // namespace tributary
