// Geohash (G. Niemeyer, 2008): a position as a base-32 string whose prefixes are nested
// cells. Bits alternate longitude, latitude (longitude first), each halving its
// interval; five bits make one character of "0123456789bcdefghjkmnpqrstuvwxyz".
// An alternative key to H3 for systems that already speak geohash.
#pragma once

#include <string>
#include <string_view>

#include "core/status.h"

namespace tributary::geohash {

/// Encode a WGS84 position (degrees) to `precision` characters (1..12). Empty for a
/// non-finite or out-of-range coordinate.
std::string Encode(double lat, double lon, int precision);

/// The cell a geohash names: its bounds and centre.
struct Cell {
  double min_lat, max_lat, min_lon, max_lon;
  double lat() const { return (min_lat + max_lat) / 2; }
  double lon() const { return (min_lon + max_lon) / 2; }
};

/// Decode a geohash (case-insensitive); an error names the first invalid character.
Result<Cell> Decode(std::string_view hash);

}  // namespace tributary::geohash
