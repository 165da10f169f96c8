// libFuzzer target for the vendor formats (vendor_decoders.h): one target for all four.
// Every input goes through each of sensor_community, ttn_v3, chirpstack_v4 and owm,
// first the decoder alone and then the whole ingestion stage with one source per
// format; the payloads of the four formats are all JSON objects, so a mutation of one
// format's seed is a useful input for the others too. Checks what must hold for any
// input: nothing crashes, every decode failure has a detail, and every payload is
// accounted for (input == forwarded + quarantined + duplicate, at least one input).
//
// Under GCC the target runs through tests/fuzz/fuzz_driver.cc (ctest `fuzz_vendor_decoders`:
// the seed corpus plus deterministic mutations); with clang, configure with
// -DTRIBUTARY_LIBFUZZER=ON and run build/<dir>/tests/fuzz/vendor_decoders_fuzz
// tests/fuzz/corpus/{sensor_community,ttn_v3,chirpstack_v4,owm} (see tests/fuzz/README.md).
#include <yaml-cpp/yaml.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "core/ledger.h"
#include "core/pipeline_config.h"
#include "core/run_context.h"
#include "ingest/ingest.h"
#include "ingest/vendor_decoders.h"

namespace {

using namespace tributary;

constexpr std::array<std::pair<const char*, PayloadFormat>, 4> kFormats = {{
    {"sensor_community", PayloadFormat::kSensorCommunity},
    {"ttn_v3", PayloadFormat::kTtnV3},
    {"chirpstack_v4", PayloadFormat::kChirpstackV4},
    {"owm", PayloadFormat::kOwm},
}};

struct FuzzState {
  FuzzState() {
    config.processing.dedup_horizon = kMicrosPerHour;
    config.processing.drift_threshold = 5 * kMicrosPerMinute;
    config.processing.max_future = 5 * kMicrosPerMinute;
    for (const auto& [name, format] : kFormats) {
      YAML::Node node;
      node["format"] = name;
      config.sources.push_back(
          SourceEntry{name, "fuzz", OptionReader(node, "fuzz", name, {&SourceCommonSpec()})});
      names.push_back(std::make_unique<JsonDecoder>(VendorDecoder::MessageMapping(format)));
      decoders.push_back(VendorDecoder::Make(format, OwmUnits::kStandard, *names.back()));
    }
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
  std::vector<std::unique_ptr<JsonDecoder>> names;
  std::vector<std::unique_ptr<VendorDecoder>> decoders;
  DecodedRecord record;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static FuzzState* state = new FuzzState();
  std::string_view payload(reinterpret_cast<const char*>(data), size);
  for (uint16_t source = 0; source < kFormats.size(); ++source) {
    DecodeStatus status = state->decoders[source]->Decode(payload, state->record);
    if (!status.ok && status.detail.empty()) std::abort();

    RawBatch raw;
    raw.source_index = source;
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
  }
  return 0;
}
