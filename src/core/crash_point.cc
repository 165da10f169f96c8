#include "core/crash_point.h"

#include <signal.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace tributary {

namespace {

constexpr std::array<std::string_view, 6> kNames = {
    "none", "epoch_write", "after_prepare", "after_decide", "between_sinks", "after_commit",
};

int64_t g_target = 0;  // the arrival that kills
int64_t g_reached = 0;

// TRIBUTARY_CRASH_AT=<step>:<n> (n defaults to 1).
CrashStep ReadEnvironment() {
  const char* v = std::getenv("TRIBUTARY_CRASH_AT");
  if (v == nullptr || *v == '\0') return CrashStep::kNone;
  std::string_view spec(v);
  std::string_view name = spec;
  int64_t n = 1;
  if (size_t colon = spec.find(':'); colon != std::string_view::npos) {
    name = spec.substr(0, colon);
    n = std::strtoll(std::string(spec.substr(colon + 1)).c_str(), nullptr, 10);
  }
  const CrashStep step = CrashStepByName(name);
  if (step == CrashStep::kNone || n < 1) {
    std::fprintf(stderr,
                 "TRIBUTARY_CRASH_AT=%s ignored: expected <step>:<n>, step one of epoch_write, "
                 "after_prepare, after_decide, between_sinks, after_commit, n >= 1\n",
                 v);
    return CrashStep::kNone;
  }
  g_target = n;
  return step;
}

}  // namespace

CrashStep CrashStepByName(std::string_view name) {
  for (size_t i = 1; i < kNames.size(); ++i) {
    if (kNames[i] == name) return static_cast<CrashStep>(i);
  }
  return CrashStep::kNone;
}

std::string_view CrashStepName(CrashStep step) {
  const auto i = static_cast<size_t>(step);
  return i < kNames.size() ? kNames[i] : "none";
}

namespace crash_detail {

CrashStep armed = ReadEnvironment();

bool Due() {
  return ++g_reached == g_target;
}

void Kill(CrashStep step) {
  const std::string_view name = CrashStepName(step);
  // Unbuffered, so the line is in the log whatever happens next.
  (void)!::write(STDERR_FILENO, "TRIBUTARY_CRASH_AT: killed at ", 30);
  (void)!::write(STDERR_FILENO, name.data(), name.size());
  (void)!::write(STDERR_FILENO, "\n", 1);
  ::kill(::getpid(), SIGKILL);
  while (true) ::pause();
}

}  // namespace crash_detail

}  // namespace tributary
