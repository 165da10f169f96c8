#include "spatial/s2cell.h"

#include <s2/s2cell_id.h>
#include <s2/s2latlng.h>

#include <cmath>

namespace tributary {

uint64_t S2CellIdAt(double lat, double lon, int level) {
  if (!std::isfinite(lat) || !std::isfinite(lon) || lat < -90 || lat > 90 || level < 0 ||
      level > S2CellId::kMaxLevel) {
    return 0;
  }
  S2CellId leaf(S2LatLng::FromDegrees(lat, lon).Normalized());
  return leaf.parent(level).id();
}

std::string S2CellToken(uint64_t id) {
  S2CellId cell(id);
  if (id == 0 || !cell.is_valid()) return {};
  return cell.ToToken();
}

int S2CellLevel(uint64_t id) {
  S2CellId cell(id);
  return id != 0 && cell.is_valid() ? cell.level() : -1;
}

}  // namespace tributary
