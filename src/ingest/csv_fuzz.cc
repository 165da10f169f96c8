// libFuzzer target for CSV input: the bytes are a whole CSV file, read by the real file
// source (header mapping, quoted fields spanning lines, rows of the wrong width) and
// run through the ingestion stage. Checks what must hold for any input: nothing
// crashes, the source ends, and every record it produced is accounted for
// (input == forwarded + quarantined + duplicate, at least one input per record).
//
// Under GCC the target runs through tests/fuzz/fuzz_driver.cc (ctest `fuzz_csv`); with
// clang, configure with -DTRIBUTARY_LIBFUZZER=ON and run build/<dir>/tests/fuzz/csv_fuzz
// tests/fuzz/corpus/csv (see tests/fuzz/README.md).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "core/run_context.h"
#include "ingest/ingest.h"
#include "io/sources/file_source.h"

namespace {

using namespace tributary;

struct FuzzState {
  FuzzState() {
    config.processing.dedup_horizon = kMicrosPerHour;
    config.processing.drift_threshold = 5 * kMicrosPerMinute;
    config.processing.max_future = 5 * kMicrosPerMinute;
    config.sources.push_back(SourceEntry{"fuzz", "file", {}});
    auto made = IngestStage::Make(config);
    if (!made.ok()) std::abort();
    stage = std::move(made).value();
    ctx.config = &config;
    ctx.ledger = &ledger;
    if (!stage->Open(ctx).ok()) std::abort();
    // Memory-backed when possible: the target rewrites the file for every input.
    char shm[] = "/dev/shm/tributary-csv-fuzz-XXXXXX";
    char tmp[] = "/tmp/tributary-csv-fuzz-XXXXXX";
    const char* made_dir = mkdtemp(shm);
    if (made_dir == nullptr) made_dir = mkdtemp(tmp);
    if (made_dir == nullptr) std::abort();
    dir = made_dir;
    path = dir + "/input.csv";
    std::atexit([] {
      std::remove(Get().path.c_str());
      rmdir(Get().dir.c_str());
    });
  }
  static FuzzState& Get() {
    static FuzzState* state = new FuzzState();
    return *state;
  }
  PipelineConfig config;
  Ledger ledger;
  RunContext ctx;
  std::unique_ptr<IngestStage> stage;
  std::string dir;
  std::string path;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzState* state = &FuzzState::Get();
  std::FILE* f = std::fopen(state->path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);

  FileSourceOptions options;
  options.paths = {state->path};
  FileSource source(options);
  if (!source.Open(state->ctx).ok()) std::abort();
  // Each Poll returns at least one record or the end; a file of n bytes has at most n
  // records, so more polls than that means the source does not end.
  for (size_t polls = 0;; ++polls) {
    if (polls > size + 2) std::abort();
    RawBatch raw;
    if (!source.Poll(raw, 64, 0).ok()) break;  // an I/O error is a value, not a crash
    if (!raw.records.empty()) {
      Batch out;
      LedgerSnapshot before = state->ledger.Snapshot();
      if (!state->stage->Process(raw, out).ok()) std::abort();
      LedgerSnapshot after = state->ledger.Snapshot();
      uint64_t input = after.input - before.input;
      uint64_t quarantined = after.quarantined - before.quarantined;
      uint64_t duplicate = after.duplicate - before.duplicate;
      if (input < raw.records.size()) std::abort();
      if (input != out.readings.size() + quarantined + duplicate) std::abort();
      if (quarantined != out.quarantine.size()) std::abort();
      for (const QuarantineRecord& q : out.quarantine) {
        if (q.reason.empty() || q.detail.empty()) std::abort();
      }
    }
    if (raw.end_of_stream) break;
  }
  source.Close();
  return 0;
}
