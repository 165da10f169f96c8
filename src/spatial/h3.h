// H3: the hierarchical hexagonal grid used to key readings by place.
//
// The domain, briefly. H3 covers the sphere by projecting it onto the 20 faces of an
// icosahedron (gnomonic projection, one plane per face, centred on the face) and tiling
// each face with hexagons. Resolution 0 has 122 "base cells"; each finer resolution divides
// every cell into 7 (aperture 7), so a cell at resolution r is its base cell followed by r
// digits 0-6 naming which of the 7 children to take at each step. The child grid is
// rotated by about 19.1 degrees from its parent, so even resolutions (Class II) and odd
// ones (Class III) alternate between two orientations. Cells are addressed on a face by
// three axes i, j, k 120 degrees apart (IJK coordinates). The 12 icosahedron vertices
// carry 12 pentagons (one per resolution per vertex, all children of 12 pentagonal base
// cells); a pentagon has no child in the k direction (digit 1 is "deleted"), which is why
// digits around pentagons are rotated when an index is built or read.
//
// The 64-bit index of a cell, highest bit first: 1 reserved bit (0), 4 bits of mode (1 for
// a cell), 3 reserved bits (0), 4 bits of resolution, 7 bits of base cell (0-121), then 15
// digits of 3 bits each, resolution 1 first; digits past the resolution are 7. Its text
// form is lowercase hexadecimal without padding or prefix (e.g. "85283473fffffff").
//
// Everything here follows the published H3 specification, and the results are the same as
// the reference library's, cell for cell (checked against h3-js by h3_reference_test.cc).
// Angles in the API are degrees (WGS84 latitude/longitude treated as spherical); areas use
// the authalic Earth radius 6371.007180918475 km. All functions are pure and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tributary::h3 {

/// A point in degrees: latitude in [-90, 90], longitude in [-180, 180].
struct LatLng {
  double lat = 0;
  double lng = 0;
};

inline constexpr int kMaxResolution = 15;
inline constexpr int kNumBaseCells = 122;
/// The index that names no cell; returned for invalid input.
inline constexpr uint64_t kNullCell = 0;

/// Return the cell at resolution `res` (0-15) that contains the point, or kNullCell when
/// the resolution is out of range, a coordinate is not finite or |lat| > 90. Longitudes
/// outside [-180, 180] wrap. Does not allocate.
uint64_t LatLngToCell(double lat_deg, double lng_deg, int res);

/// Return the centre of the cell; NaN coordinates for an invalid cell.
LatLng CellToLatLng(uint64_t cell);

/// Return the boundary of the cell, counter-clockwise, not closed: 6 vertices for a
/// hexagon, 5 for a pentagon, plus one more wherever an edge crosses an icosahedron edge
/// in a Class III resolution (up to 10). Empty for an invalid cell.
std::vector<LatLng> CellToBoundary(uint64_t cell);

/// Return the ancestor of the cell at `parent_res`, the cell itself when parent_res equals
/// its resolution, kNullCell when the cell is invalid or parent_res is out of range.
uint64_t CellToParent(uint64_t cell, int parent_res);

/// At most this many resolutions between a cell and the children asked for (7^8 cells).
inline constexpr int kMaxChildLevels = 8;

/// Return the descendants of the cell at `child_res`, in ascending index order (7^n for a
/// hexagon; a pentagon has 1 + 5 * (7^n - 1) / 6). Empty when the cell is invalid, or
/// child_res is coarser than the cell, above 15 or more than kMaxChildLevels finer.
std::vector<uint64_t> CellToChildren(uint64_t cell, int child_res);

/// Return every cell within `k` steps of the origin (the origin included), nearest rings
/// first; empty for an invalid origin or a negative k. Yields 3k(k+1)+1 cells (fewer
/// around a pentagon).
std::vector<uint64_t> GridDisk(uint64_t origin, int k);

/// Return the cell's area in square kilometres (exact spherical area of its boundary);
/// 0 for an invalid cell.
double CellAreaKm2(uint64_t cell);

/// Format the cell as lowercase hexadecimal ("85283473fffffff").
std::string CellToString(uint64_t cell);

/// Parse a hexadecimal cell (either case, no prefix); kNullCell unless it is a valid cell.
uint64_t StringToCell(std::string_view text);

/// Tell whether the bits form a valid cell index (mode, reserved bits, base cell, digits
/// and the pentagon's deleted k sub-sequence are all checked).
bool IsValidCell(uint64_t cell);

/// Return the resolution field (0-15) of an index; meaningful for valid cells.
int GetResolution(uint64_t cell);

/// Return the base cell field (0-121 for a valid cell).
int GetBaseCell(uint64_t cell);

/// Tell whether a valid cell is one of the 12 pentagons of its resolution.
bool IsPentagon(uint64_t cell);

}  // namespace tributary::h3
