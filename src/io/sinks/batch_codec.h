// A compact binary encoding of the record parts of a Batch (readings, windows,
// quarantine, late), for the circuit breaker's local buffer. Little-endian fixed-width
// numbers, strings as u32 length + bytes, a leading format version byte. Interned
// symbols are written as text and interned again when decoded.
#pragma once

#include <string>
#include <string_view>

#include "core/model.h"
#include "core/status.h"

namespace tributary {

/// Format version written by EncodeBatchRecords.
// 2: readings carry qc_score; 3: alerts and spatial stats (a version 2 batch still reads)
inline constexpr uint8_t kBatchCodecVersion = 3;

/// Append the readings, windows, quarantine and late records of `batch` to `out`.
void EncodeBatchRecords(const Batch& batch, std::string& out);
/// Decode what EncodeBatchRecords wrote; Corrupt when the bytes are truncated or of an
/// unknown version.
Result<Batch> DecodeBatchRecords(std::string_view bytes);
/// Rows in the record parts of `batch`.
inline uint64_t BatchRecordRows(const Batch& b) {
  return b.readings.size() + b.windows.size() + b.quarantine.size() + b.late.size();
}

}  // namespace tributary
