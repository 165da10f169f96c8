// Byte sizes in config text: "512MiB", "2GiB", "1.5GB", "64KiB", "1048576".
#pragma once

#include <cstdint>
#include <string_view>

#include "core/status.h"

namespace tributary {

/// Parse a byte size: a number (fractions allowed) and an optional unit, binary (KiB,
/// MiB, GiB, TiB; also Ki, Mi, ...) or decimal (kB, MB, GB, TB; also k, M, ...), case
/// insensitive; no unit (or B) means bytes.
Result<uint64_t> ParseByteSizeText(std::string_view text);

}  // namespace tributary
