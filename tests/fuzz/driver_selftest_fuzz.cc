// A fuzz target with a planted bug, so ctest proves the driver finds one: it aborts
// when the input holds the byte sequence of a UTF-16 surrogate encoded as UTF-8
// (ED A0 80), which no seed holds and the mutations insert. Registered WILL_FAIL.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view s(reinterpret_cast<const char*>(data), size);
  if (s.find("\xed\xa0\x80") != std::string_view::npos) std::abort();
  return 0;
}
