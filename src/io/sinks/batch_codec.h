// A compact binary encoding of the record parts of a Batch (readings, windows,
// quarantine, late, alerts, spatial stats: every field), for the circuit breaker's
// local buffer. Little-endian fixed-width
// numbers, strings as u32 length + bytes, a leading format version byte. Interned
// symbols are written as text and interned again when decoded.
#pragma once

#include <string>
#include <string_view>

#include "core/model.h"
#include "core/status.h"

namespace tributary {

/// Format version written by EncodeBatchRecords.
// 2: readings carry qc_score; 3: alerts and spatial stats; 4: readings carry the extra
// zone layers and the S2 cell, windows the interpolated sample fraction and the
// exceedance count (versions 2 and 3 still read)
inline constexpr uint8_t kBatchCodecVersion = 4;

/// Append the readings, windows, quarantine and late records of `batch` to `out`.
void EncodeBatchRecords(const Batch& batch, std::string& out);
/// Decode what EncodeBatchRecords wrote; Corrupt when the bytes are truncated or of an
/// unknown version.
Result<Batch> DecodeBatchRecords(std::string_view bytes);
/// Format version of EncodeBatchColumns (a value EncodeBatchRecords never writes).
inline constexpr uint8_t kBatchColumnsVersion = 0x82;
/// The columns format of older builds, whose late rows lack the extra zone layers and the
/// S2 cell (still read).
inline constexpr uint8_t kBatchColumnsVersion3 = 0x81;

/// The same records as EncodeBatchRecords, for the epoch log of checkpoints
/// (stream/checkpoint.h): readings and window results by column, fixed width, a column
/// whose rows all hold the same bits written once, one of long runs of equal values
/// as runs; symbols as their interned ids, so
/// the bytes only mean something to a process that interned the same symbols in the
/// same order (the checkpoint's symbol table restores them). Quarantine, late, alert
/// and spatial stats records follow as in EncodeBatchRecords. Every field of a reading
/// and a window result is carried, including the extra zone layers and the S2 cell.
void EncodeBatchColumns(const Batch& batch, std::string& out);
/// Decode what EncodeBatchColumns wrote; Corrupt when truncated, of another version or
/// naming a symbol id not interned.
Result<Batch> DecodeBatchColumns(std::string_view bytes);
/// Rows in the record parts of `batch`.
inline uint64_t BatchRecordRows(const Batch& b) {
  return b.readings.size() + b.windows.size() + b.quarantine.size() + b.late.size();
}

}  // namespace tributary
