// libFuzzer target: arbitrary bytes through the JSON decoder and the whole ingestion
// stage. Checks what must hold for any input: nothing crashes, and every payload is
// accounted for (input == forwarded + quarantined + duplicate, at least one input).
//
// Under GCC the target runs through tests/fuzz/fuzz_driver.cc (ctest `fuzz_json_decoder`:
// the seed corpus plus deterministic mutations); with clang, configure with
// -DTRIBUTARY_LIBFUZZER=ON and run build/<dir>/tests/fuzz/json_decoder_fuzz
// tests/fuzz/corpus/json (see tests/fuzz/README.md).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "core/run_context.h"
#include "ingest/ingest.h"
#include "ingest/json_decoder.h"

namespace {

using namespace tributary;

struct FuzzState {
  FuzzState() {
    config.processing.dedup_horizon = kMicrosPerHour;
    config.processing.drift_threshold = 5 * kMicrosPerMinute;
    config.processing.max_future = 5 * kMicrosPerMinute;
    config.sources.push_back(SourceEntry{"fuzz", "fuzz", {}});
    auto made = IngestStage::Make(config);
    if (!made.ok()) std::abort();
    stage = std::move(made).value();
    ctx.config = &config;
    ctx.ledger = &ledger;
    if (!stage->Open(ctx).ok()) std::abort();
  }
  PipelineConfig config;
  Ledger ledger;
  RunContext ctx;
  std::unique_ptr<IngestStage> stage;
  JsonDecoder decoder;
  DecodedRecord record;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static FuzzState* state = new FuzzState();
  std::string_view payload(reinterpret_cast<const char*>(data), size);

  DecodeStatus status = state->decoder.Decode(payload, state->record);
  if (!status.ok && status.detail.empty()) std::abort();

  RawBatch raw;
  raw.Add(payload, 1714564800000000, Intern("fuzz"), 1, 0);
  Batch out;
  LedgerSnapshot before = state->ledger.Snapshot();
  if (!state->stage->Process(raw, out).ok()) std::abort();
  LedgerSnapshot after = state->ledger.Snapshot();
  uint64_t input = after.input - before.input;
  uint64_t quarantined = after.quarantined - before.quarantined;
  uint64_t duplicate = after.duplicate - before.duplicate;
  if (input == 0) std::abort();
  if (input != out.readings.size() + quarantined + duplicate) std::abort();
  if (quarantined != out.quarantine.size()) std::abort();
  for (const QuarantineRecord& q : out.quarantine) {
    if (q.reason.empty() || q.detail.empty()) std::abort();
  }
  return 0;
}
