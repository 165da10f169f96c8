// Zone outlines for display: each zone of a ZoneSet as a GeoJSON geometry, simplified
// when it has more vertices than a map needs.
//
// The zone index keeps exact WGS84 geometry (WKB) for point-in-polygon lookups; a map
// drawn in a browser needs far less. A zone of more than `max_vertices` vertices is
// simplified with GEOS's topology-preserving Douglas-Peucker (rings stay valid, holes
// stay inside their shell), the tolerance doubling from 1/1000 of the zone's envelope
// diagonal until it fits. Coordinates are x = longitude, y = latitude, as RFC 7946 wants.
// Built once (the zone set is immutable); uses its own GEOS context.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "core/status.h"
#include "spatial/zones.h"

namespace tributary {

/// One zone ready for a GeoJSON Feature.
struct ZoneOutline {
  std::string layer;       ///< layer name ("district")
  size_t layer_index = 0;  ///< position of the layer in the zone set (0: the one windows use)
  std::string id;
  std::string name;
  std::string geometry;  ///< a GeoJSON geometry object (Polygon or MultiPolygon)
  size_t vertices = 0;   ///< vertices in `geometry`
  bool simplified = false;
};

/// Outline every zone of every layer, in layer order and then by zone id.
Result<std::vector<ZoneOutline>> BuildZoneOutlines(const ZoneSet& zones, size_t max_vertices);

}  // namespace tributary
