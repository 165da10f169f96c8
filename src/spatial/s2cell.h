// S2 cell ids (Google's S2 geometry, Debian's libs2) as an alternative spatial key to H3.
//
// S2 projects the sphere onto the six faces of a cube and numbers each face's cells
// along a Hilbert curve; a cell id is a 64-bit integer whose level (0 = a face, 30 ≈ 1 cm²)
// is given by its lowest set bit. Cells of one level are not equal in area (within a
// factor of about 2), but they nest exactly and have no pentagons, which is why S2 suits
// polar and high-latitude deployments (seed 000). The token is the id in hex without
// trailing zeros, as every S2 library prints it.
//
// Wrapped here so that only this file includes S2's headers (they pull in Abseil).
#pragma once

#include <cstdint>
#include <string>

namespace tributary {

/// The S2 cell id at `level` (0–30) of a WGS84 position; 0 when a coordinate is not
/// finite or out of range, or the level is outside 0–30.
uint64_t S2CellIdAt(double lat, double lon, int level);
/// The cell's token ("89c25b"); empty for 0 or an invalid id.
std::string S2CellToken(uint64_t id);
/// The level of a valid cell id, -1 otherwise.
int S2CellLevel(uint64_t id);

}  // namespace tributary
