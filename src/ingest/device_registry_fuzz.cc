// libFuzzer target for the device registry file parser (device_registry.h): arbitrary
// bytes as a registry file. Checks what must hold for any input: nothing crashes or
// throws, an error names the file, and a registry that parses answers lookups (every
// entry finds itself; a pattern entry at least finds some entry) and its calibration
// coefficients are finite.
//
// Under GCC the target runs through tests/fuzz/fuzz_driver.cc (ctest
// `fuzz_device_registry`); with clang, configure with -DTRIBUTARY_LIBFUZZER=ON and run
// build/<dir>/tests/fuzz/device_registry_fuzz tests/fuzz/corpus/registry.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ingest/device_registry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tributary;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = RegistrySnapshot::Parse(text, "fuzz.yaml");
  if (!parsed.ok()) {
    if (parsed.status().message().find("fuzz.yaml") == std::string::npos) std::abort();
    return 0;
  }
  const RegistrySnapshot& snap = **parsed;
  for (const DeviceEntry& e : snap.entries()) {
    const DeviceEntry* found = snap.Find(e.key);
    if (found == nullptr) {
      // A pattern may not match its own spelling ("a[b]" does not match "a[b]"), but an
      // exact id always finds its entry.
      if (!e.pattern) std::abort();
    } else if (!e.pattern && found != &e) {
      std::abort();
    }
    for (const Calibration& c : e.calibrations) {
      if (!std::isfinite(c.m) || !std::isfinite(c.b) || !std::isfinite(c.c)) std::abort();
    }
    if (e.has_position && !e.position_xy && (std::fabs(e.lat) > 90 || std::fabs(e.lon) > 180)) {
      std::abort();
    }
  }
  (void)snap.Find(text.substr(0, 128));
  return 0;
}
