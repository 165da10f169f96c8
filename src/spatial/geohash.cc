#include "spatial/geohash.h"

#include <cmath>

namespace tributary::geohash {

namespace {
constexpr char kAlphabet[] = "0123456789bcdefghjkmnpqrstuvwxyz";

int ValueOf(char c) {
  if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  for (int i = 0; i < 32; ++i) {
    if (kAlphabet[i] == c) return i;
  }
  return -1;
}
}  // namespace

std::string Encode(double lat, double lon, int precision) {
  if (!std::isfinite(lat) || !std::isfinite(lon) || std::fabs(lat) > 90 || std::fabs(lon) > 180 ||
      precision < 1 || precision > 12) {
    return {};
  }
  double lat_lo = -90, lat_hi = 90, lon_lo = -180, lon_hi = 180;
  std::string out;
  bool even = true;  // longitude bit
  int bits = 0, value = 0;
  while (static_cast<int>(out.size()) < precision) {
    double& lo = even ? lon_lo : lat_lo;
    double& hi = even ? lon_hi : lat_hi;
    double v = even ? lon : lat;
    double mid = (lo + hi) / 2;
    value <<= 1;
    if (v >= mid) {
      value |= 1;
      lo = mid;
    } else {
      hi = mid;
    }
    even = !even;
    if (++bits == 5) {
      out += kAlphabet[value];
      bits = value = 0;
    }
  }
  return out;
}

Result<Cell> Decode(std::string_view hash) {
  if (hash.empty() || hash.size() > 12) {
    return Status::Invalid("geohash must have 1 to 12 characters, got " +
                           std::to_string(hash.size()));
  }
  Cell c{-90, 90, -180, 180};
  bool even = true;
  for (size_t i = 0; i < hash.size(); ++i) {
    int v = ValueOf(hash[i]);
    if (v < 0) {
      return Status::Invalid("geohash '" + std::string(hash) + "': invalid character '" +
                             std::string(1, hash[i]) + "' at position " + std::to_string(i + 1));
    }
    for (int b = 4; b >= 0; --b) {
      bool bit = ((v >> b) & 1) != 0;
      double& lo = even ? c.min_lon : c.min_lat;
      double& hi = even ? c.max_lon : c.max_lat;
      double mid = (lo + hi) / 2;
      (bit ? lo : hi) = mid;
      even = !even;
    }
  }
  return c;
}

}  // namespace tributary::geohash
