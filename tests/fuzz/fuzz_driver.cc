// A small deterministic driver for libFuzzer targets, so the CI build (GCC, no
// libFuzzer) still runs every fuzz target briefly under ctest.
//
//   <target>_fuzz_driver [--runs N] [--seed S] [--max-seconds T] [--max-len L] CORPUS...
//
// Every file of every CORPUS folder (or a file given directly) is run as it is, then
// N mutated inputs derived from them with a fixed-seed generator: bit flips, bytes set
// to JSON/CSV/YAML punctuation, inserted "interesting" tokens (huge numbers, deep
// nesting, invalid UTF-8, NUL, CR), deletions, duplications, truncations and splices of
// two corpus files. The same seed gives the same inputs, so a failure reproduces; the
// run stops early after T seconds of wall clock (the inputs done so far are still the
// same prefix of the sequence). The target checks its own invariants and aborts on a
// violation (the driver then exits with status 1); before each input the driver writes it to
// `fuzz-<pid>.last` in the working directory only when asked (--keep-last), and on a failure it
// prints the input's index and how it was made.
//
// This is not coverage-guided fuzzing: build with clang and -DTRIBUTARY_LIBFUZZER=ON
// for that (tests/fuzz/README.md).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

// The input being run, for the abort handler (set before each call).
volatile std::sig_atomic_t g_index = -1;
const char* g_origin = "";
std::string g_last_path;

void OnAbort(int sig) {
  char buf[256];
  int n = std::snprintf(buf, sizeof(buf), "fuzz driver: input #%d (%s) failed with signal %d%s%s\n",
                        static_cast<int>(g_index), g_origin, sig,
                        g_last_path.empty() ? "" : "; saved as ", g_last_path.c_str());
  if (n > 0) {
    ssize_t ignored = write(2, buf, std::min(static_cast<size_t>(n), sizeof(buf) - 1));
    (void)ignored;
  }
  // Exit instead of re-raising: the run fails with status 1 like libFuzzer's, and a
  // ctest expecting a failure (WILL_FAIL) can tell it from a missing binary.
  _exit(1);
}

// xorshift64*: small, fast, and the same on every platform.
struct Rng {
  uint64_t s;
  uint64_t Next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1DULL;
  }
  size_t Below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(Next() % n); }
};

const std::vector<std::string>& Tokens() {
  static const std::vector<std::string> tokens = {"{",
                                                  "}",
                                                  "[",
                                                  "]",
                                                  "\"",
                                                  ",",
                                                  ":",
                                                  "\\",
                                                  "\\u0000",
                                                  "\\ud800",
                                                  "null",
                                                  "true",
                                                  "-0",
                                                  "1e309",
                                                  "-1e309",
                                                  "NaN",
                                                  "Infinity",
                                                  "99999999999999999999999",
                                                  "4.9e-324",
                                                  "1714564800000",
                                                  "2024-05-01T12:00:00+14:00",
                                                  "\xff\xfe",
                                                  "\xc3\x28",
                                                  "\xed\xa0\x80",
                                                  std::string(1, '\0'),
                                                  "\r\n",
                                                  "\n\n",
                                                  "\"\"",
                                                  ",,,",
                                                  "[[[[[[[[[[[[[[[[",
                                                  "{\"a\":{\"a\":{",
                                                  "EPSG:27700",
                                                  "ug/m3",
                                                  "*",
                                                  "?",
                                                  "[a-",
                                                  "  - ",
                                                  ": &a",
                                                  "*a",
                                                  "!!binary",
                                                  "%YAML 1.2",
                                                  "---",
                                                  "device_id",
                                                  "lat",
                                                  "lon",
                                                  "pm25",
                                                  "devices:",
                                                  "calibration:",
                                                  "position:"};
  return tokens;
}

std::string Mutate(const std::vector<std::string>& corpus, Rng& rng, size_t max_len,
                   std::string& how) {
  std::string s = corpus[rng.Below(corpus.size())];
  size_t steps = 1 + rng.Below(4);
  for (size_t k = 0; k < steps; ++k) {
    size_t op = rng.Below(8);
    size_t pos = rng.Below(s.size() + 1);
    switch (op) {
      case 0:  // flip one bit
        if (!s.empty()) {
          s[rng.Below(s.size())] ^= static_cast<char>(1u << rng.Below(8));
          how += "flip ";
        }
        break;
      case 1: {  // set a byte to punctuation
        static const char kPunct[] = "{}[]\",:\\\n\r\t 0-.e#'";
        if (!s.empty()) s[rng.Below(s.size())] = kPunct[rng.Below(sizeof(kPunct) - 1)];
        how += "punct ";
        break;
      }
      case 2: {  // insert a token
        const std::string& t = Tokens()[rng.Below(Tokens().size())];
        s.insert(pos, t);
        how += "token ";
        break;
      }
      case 3: {  // delete a range
        size_t len = rng.Below(std::min<size_t>(s.size() - std::min(pos, s.size()), 32) + 1);
        s.erase(std::min(pos, s.size()), len);
        how += "delete ";
        break;
      }
      case 4: {  // duplicate a range (repeats, deeper nesting)
        size_t len = rng.Below(std::min<size_t>(s.size() - std::min(pos, s.size()), 64) + 1);
        std::string piece = s.substr(std::min(pos, s.size()), len);
        size_t times = 1 + rng.Below(8);
        for (size_t i = 0; i < times; ++i) s.insert(std::min(pos, s.size()), piece);
        how += "dup ";
        break;
      }
      case 5:  // truncate
        s.resize(pos);
        how += "truncate ";
        break;
      case 6: {  // splice with another corpus entry
        const std::string& other = corpus[rng.Below(corpus.size())];
        size_t from = rng.Below(other.size() + 1);
        s = s.substr(0, pos) + other.substr(from);
        how += "splice ";
        break;
      }
      default: {  // overwrite digits with a long run of digits
        s.insert(pos, std::string(1 + rng.Below(400), static_cast<char>('0' + rng.Below(10))));
        how += "digits ";
        break;
      }
    }
    if (s.size() > max_len) s.resize(max_len);
  }
  return s;
}

bool ReadFile(const std::filesystem::path& p, std::string& out) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

int Usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--runs N] [--seed S] [--max-seconds T] [--max-len L] [--keep-last] "
               "CORPUS...\n",
               argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t runs = 2000, seed = 1;
  double max_seconds = 5;
  size_t max_len = 64 << 10;
  bool keep_last = false;
  std::vector<std::filesystem::path> inputs;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "--runs" || a == "--seed" || a == "--max-seconds" || a == "--max-len") {
      const char* v = value();
      if (v == nullptr) return Usage(argv[0]);
      if (a == "--runs") runs = std::strtoull(v, nullptr, 10);
      if (a == "--seed") seed = std::strtoull(v, nullptr, 10);
      if (a == "--max-seconds") max_seconds = std::strtod(v, nullptr);
      if (a == "--max-len") max_len = std::strtoull(v, nullptr, 10);
    } else if (a == "--keep-last") {
      keep_last = true;
    } else if (!a.empty() && a[0] == '-') {
      return Usage(argv[0]);
    } else {
      inputs.emplace_back(a);
    }
  }
  if (inputs.empty()) return Usage(argv[0]);

  std::vector<std::string> corpus;
  std::vector<std::string> names;
  for (const auto& in : inputs) {
    std::error_code ec;
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(in, ec)) {
      for (const auto& e : std::filesystem::directory_iterator(in)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
    } else {
      files.push_back(in);
    }
    std::sort(files.begin(), files.end());  // directory order is not stable
    for (const auto& f : files) {
      std::string data;
      if (!ReadFile(f, data)) {
        std::fprintf(stderr, "fuzz driver: cannot read %s\n", f.c_str());
        return 2;
      }
      corpus.push_back(std::move(data));
      names.push_back(f.string());
    }
  }
  if (corpus.empty()) {
    std::fprintf(stderr, "fuzz driver: the corpus is empty\n");
    return 2;
  }
  if (keep_last) {
    g_last_path = "fuzz-" + std::to_string(getpid()) + ".last";
  }
  std::signal(SIGABRT, OnAbort);
  std::signal(SIGSEGV, OnAbort);
  std::signal(SIGBUS, OnAbort);
  std::signal(SIGFPE, OnAbort);

  auto run = [&](const std::string& input, int index, const char* origin) {
    g_index = index;
    g_origin = origin;
    if (keep_last) {
      std::ofstream(g_last_path, std::ios::binary | std::ios::trunc) << input;
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  };
  int index = 0;
  for (size_t i = 0; i < corpus.size(); ++i) run(corpus[i], index++, names[i].c_str());
  // The empty input always, whatever the corpus holds.
  run(std::string(), index++, "empty input");

  Rng rng{seed * 0x9E3779B97F4A7C15ULL + 1};
  auto start = std::chrono::steady_clock::now();
  uint64_t done = 0;
  std::string how;
  for (; done < runs; ++done) {
    if (done % 64 == 0) {
      std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
      if (elapsed.count() > max_seconds) break;
    }
    how.clear();
    std::string input = Mutate(corpus, rng, max_len, how);
    run(input, index++, how.c_str());
  }
  std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  std::printf(
      "fuzz driver: %zu corpus inputs and %llu of %llu mutations (seed %llu) in %.2f s, "
      "no failure\n",
      corpus.size(), static_cast<unsigned long long>(done), static_cast<unsigned long long>(runs),
      static_cast<unsigned long long>(seed), elapsed.count());
  return 0;
}
