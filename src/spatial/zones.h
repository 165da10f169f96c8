// Zones: which polygon of a boundary layer contains a position.
//
// A zone layer is a set of (multi)polygons read from a boundary file (GeoJSON, GeoPackage,
// Shapefile, FlatGeobuf or anything else GDAL/OGR reads), reprojected to WGS84 with x =
// longitude, y = latitude (traditional GIS axis order, whatever the CRS's official axis
// order says), each with an id and an optional name taken from configured attribute fields.
// Several layers can be loaded at once (districts, floodplains, protected habitats); a
// position gets one zone per layer, or none.
//
// Lookup: a uniform grid over the layer (about 16 cells per zone, ZoneGrid) lists for
// each cell the zones whose envelope meets it; a packed R-tree (sort-tile-recursive)
// over the envelopes answers instead for layers too sparse for a grid. The first time a
// locator sees a cell it asks GEOS whether one zone covers the whole cell with no zone
// of lower index touching it; if so, every later point in that cell is answered from
// that cache entry without any geometry test. Otherwise each candidate whose envelope
// contains the point is tested exactly by a GEOS prepared geometry "covers" — holes and
// multipolygons included. GEOS is used through its reentrant C API: a ZoneLocator owns
// one GEOS context, the prepared geometries built from it and the cell cache, so each
// thread uses its own locator over one shared, immutable ZoneSet. Prepared geometries
// are built on first use of a zone, so a layer of many zones costs nothing for the
// zones no reading ever falls into.
//
// GEOS's C API costs an allocation and a call chain per point; for the small polygons of
// most zone layers an own even-odd crossing count over the rings answers the points
// that are clearly inside or outside, and only points within 1e-9 degrees (0.1 mm) of
// an edge go to GEOS, so the boundary decision is always GEOS's "covers".
//
// Boundary rule (deterministic): a point on a zone's boundary belongs to it ("covers",
// not "contains"); where the point is covered by several zones of one layer — a shared
// edge or vertex, or overlapping polygons — the zone whose id sorts first (bytewise)
// wins. Zones of a layer are kept sorted by id, so "first in index order" is that rule.
//
// The antimeridian: GeoJSON (RFC 7946) and most boundary files split a polygon that
// crosses it into parts on either side; longitudes are taken as they come, so such a
// split multipolygon covers points at +179.9 and -179.9 alike. A position's longitude
// is normalised to [-180, 180] before lookup.
//
// Threading: ZoneSet is immutable after Load and shared freely; a ZoneLocator is used
// by one thread at a time.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/config.h"
#include "core/intern.h"
#include "core/status.h"

namespace tributary {

/// Axis-aligned box in degrees (x = longitude, y = latitude).
struct Envelope {
  double min_x = 0, min_y = 0, max_x = 0, max_y = 0;
  bool Contains(double x, double y) const {
    return x >= min_x && x <= max_x && y >= min_y && y <= max_y;
  }
};

/// A static R-tree over envelopes, bulk-loaded by sort-tile-recursive packing into
/// flat arrays (no pointers, cache-friendly). Items are numbered 0..n-1 in the order given.
class PackedRTree {
 public:
  PackedRTree() = default;
  /// `node_size` is 2..32.
  explicit PackedRTree(const std::vector<Envelope>& items, int node_size = 16);

  /// Call `visit(item)` for every item whose envelope contains (x, y), in no particular
  /// order. `visit` returns false to stop early.
  template <typename Visit>
  void Query(double x, double y, Visit&& visit) const;

  size_t size() const { return num_items_; }
  /// The items in leaf order (spatially clustered).
  std::vector<uint32_t> LeafOrder() const {
    return {refs_.begin(), refs_.begin() + static_cast<ptrdiff_t>(num_items_)};
  }

 private:
  // Nodes level by level, leaves (the items, in packed order) first, the root last. For
  // a leaf, refs_ is the item number; for a node of level l > 0 it is the index of its
  // first child, and its children are the next node_size_ nodes of level l-1 (fewer at
  // the end of that level, which ends where level l begins).
  std::vector<Envelope> boxes_;
  std::vector<uint32_t> refs_;         // for leaves: item number; for inner nodes: first child
  std::vector<uint32_t> level_begin_;  // index in boxes_ of each level's first node
  int node_size_ = 16;
  size_t num_items_ = 0;
};

/// Whether a layer's zones are indexed by H3 resolution-4 tile and prepared lazily.
enum class ZoneTiling : uint8_t { kAuto, kEager, kLazy };
/// kAuto tiles layers of more zones than this.
inline constexpr size_t kLazyTilesAbove = 100000;
/// H3 resolution of the lazy tiles (about 1,770 km² cells).
inline constexpr int kZoneTileResolution = 4;

/// One boundary layer to load (one entry of `zones.layers`).
struct ZoneLayerSpec {
  std::string name;        ///< layer name in the pipeline ("district")
  std::string path;        ///< boundary file (or `builtin:city_districts`)
  std::string layer;       ///< layer inside the file; empty: the first
  std::string id_field;    ///< attribute giving the zone id
  std::string name_field;  ///< attribute giving a display name; empty: none
  ZoneTiling tiling = ZoneTiling::kAuto;
};

/// A zone: its id, name, envelope and geometry (WGS84 WKB, x = lon).
struct Zone {
  Symbol id;
  std::string name;
  Envelope envelope;
  std::string wkb;
  /// For zones of at most kFastPathMaxVertices vertices: every ring of every part as
  /// flat x, y pairs, ring r spanning [ring_end[r-1], ring_end[r]) points (closed). The
  /// pairs move into ZoneLayer::fast when the layer is finished; ring_end stays.
  std::vector<double> xy;
  std::vector<uint32_t> ring_end;
};

/// Zones with more vertices than this are always tested by GEOS (whose prepared
/// geometry indexes the edges); smaller ones are first tested by an even-odd crossing
/// count that hands any point within 1e-9 degrees of an edge to GEOS.
inline constexpr size_t kFastPathMaxVertices = 256;

/// A uniform grid over a layer's extent: for each cell, the zones (ascending index)
/// whose envelope meets the cell (closed, widened by kZoneGridSlack). Because the cell
/// of a point is computed with the same monotone arithmetic as the cells of an
/// envelope, every zone whose envelope contains the point is in the point's cell list.
/// The locator caches per cell whether one zone covers it entirely (ZoneLocator), so
/// most points need neither the R-tree nor an exact test.
struct ZoneGrid {
  double x0 = 0, y0 = 0, dx = 1, dy = 1, inv_dx = 1, inv_dy = 1;
  uint32_t nx = 0, ny = 0;
  std::vector<uint32_t> cell_begin;  ///< nx * ny + 1 offsets into items
  std::vector<uint32_t> items;       ///< zone indices, ascending within a cell
  bool empty() const { return nx == 0; }
  /// The cell of (x, y), or -1 outside the grid (outside every zone's envelope).
  int64_t Cell(double x, double y) const {
    double fx = std::floor((x - x0) * inv_dx), fy = std::floor((y - y0) * inv_dy);
    if (!(fx >= 0 && fy >= 0 && fx <= nx && fy <= ny)) return -1;
    uint32_t ix = std::min(static_cast<uint32_t>(fx), nx - 1);
    uint32_t iy = std::min(static_cast<uint32_t>(fy), ny - 1);
    return static_cast<int64_t>(iy) * nx + ix;
  }
  /// The cell's rectangle widened by kZoneGridSlack.
  Envelope CellBox(int64_t cell) const;
};
/// Degrees by which grid cells are widened (far above the rounding of cell arithmetic).
inline constexpr double kZoneGridSlack = 1e-9;
/// Build the grid of `zones` (empty when there are none or their envelopes would need
/// more than `max_items` cell entries even at a coarse resolution).
ZoneGrid BuildZoneGrid(const std::vector<Envelope>& zones, size_t max_items = size_t{1} << 24);

/// One loaded layer: zones sorted by id, and the R-tree over their envelopes.
struct ZoneLayer {
  std::string name;
  Symbol name_symbol;
  std::vector<Zone> zones;
  PackedRTree tree;
  /// The grid lookups go through (the R-tree answers when it is empty).
  ZoneGrid grid;
  /// The fast-path geometry of every small zone in one array, laid out in the R-tree's
  /// leaf order so spatial neighbours are adjacent in memory (a lookup touches one or
  /// two cache lines of it): at fast_offset[zone] the ring count, the rings' end
  /// offsets (in points), then the x, y pairs. kNoFastPath for zones GEOS handles alone.
  std::vector<double> fast;
  std::vector<uint32_t> fast_offset;
  /// Lazy layers: no grid or fast path here (zones keep their xy); instead, for every
  /// H3 resolution-4 cell that some zone's envelope meets, the zones (ascending index)
  /// a point in that cell can fall into. A locator builds a tile's index (grid, fast
  /// path, prepared geometries) on the first lookup in it and keeps a bounded number.
  bool lazy = false;
  std::unordered_map<uint64_t, std::vector<uint32_t>> tiles;
};
inline constexpr uint32_t kNoFastPath = UINT32_MAX;

/// Immutable set of zone layers, shared by every locator.
class ZoneSet {
 public:
  /// Read every layer with GDAL/OGR and reproject to WGS84. Errors name the file, the
  /// layer and the feature at fault (missing id field, non-polygon geometry, ...).
  static Result<std::shared_ptr<const ZoneSet>> Load(const std::vector<ZoneLayerSpec>& specs);
  /// Build one layer from (id, name, WKT) triples in WGS84 (tests, generated sets).
  struct WktZone {
    std::string id;
    std::string name;
    std::string wkt;
  };
  static Result<std::shared_ptr<const ZoneSet>> FromWkt(
      const std::vector<std::pair<std::string, std::vector<WktZone>>>& layers,
      ZoneTiling tiling = ZoneTiling::kAuto);

  const std::vector<ZoneLayer>& layers() const { return layers_; }

 private:
  std::vector<ZoneLayer> layers_;
};

/// Answers point-in-zone queries over a ZoneSet with its own GEOS context. One per thread.
class ZoneLocator {
 public:
  /// `max_tiles`: lazy layers' tiles kept indexed per layer (least recently used go).
  explicit ZoneLocator(std::shared_ptr<const ZoneSet> zones, size_t max_tiles = 256);
  ~ZoneLocator();
  ZoneLocator(const ZoneLocator&) = delete;
  ZoneLocator& operator=(const ZoneLocator&) = delete;

  /// Return the index (into layers()[layer].zones) of the zone of `layer` covering the
  /// position (degrees), or -1 when none does or a coordinate is not finite. Applies the
  /// boundary rule above.
  int Locate(size_t layer, double lat, double lon);
  /// The id of the zone covering the position, empty when none.
  Symbol LocateId(size_t layer, double lat, double lon);

  const ZoneSet& zones() const { return *zones_; }

  /// Lookup counters (tests and benchmarks): answered from a whole-cell cache entry, by
  /// the fast crossing test, by GEOS.
  struct Stats {
    uint64_t cell_hits = 0, fast_tests = 0, geos_tests = 0, cells_classified = 0;
    uint64_t tiles_loaded = 0, tiles_evicted = 0;  ///< lazy layers
  };
  const Stats& stats() const { return stats_; }

 private:
  struct Geos;  // GEOS context, prepared geometries and the per-cell cache
  Stats stats_;
  std::shared_ptr<const ZoneSet> zones_;
  std::unique_ptr<Geos> geos_;
};

/// The `zones` section (h3 resolution and the list of layers) and its layer entries.
const SectionSpec& ZonesSectionSpec();
const SectionSpec& ZoneLayerSectionSpec();

/// Options of the enrichment step read from the `zones` section.
struct ZoneOptions {
  int h3_resolution = -1;  ///< -1: do not compute reading.h3
  int s2_level = -1;       ///< -1: do not compute reading.s2
  std::vector<ZoneLayerSpec> layers;
};

/// Read the `zones` section; relative paths are taken from `base_dir` (the config
/// file's folder).
Result<ZoneOptions> ReadZoneOptions(const OptionReader& section, const std::string& base_dir);

/// The names of the `zones.layers` entries in order, read without loading anything
/// (entries without a name are skipped; ReadZoneOptions reports them).
std::vector<std::string> ZoneLayerNames(const OptionReader& zones_section);

/// The GeoJSON of the districts of the simulator's default city (`builtin:city_districts`,
/// also in examples/zones/city_districts.geojson).
std::string_view BuiltinCityDistricts();

// Inline so the visitor inlines into the lookup loop.
template <typename Visit>
void PackedRTree::Query(double x, double y, Visit&& visit) const {
  if (boxes_.empty()) return;
  // Explicit stack of (node index, level); the root is the last node.
  struct Entry {
    uint32_t node;
    uint32_t level;
  };
  Entry stack[256];  // depth × node_size bounds it: ample for 2^32 items
  int top = 0;
  stack[top++] = {static_cast<uint32_t>(boxes_.size() - 1),
                  static_cast<uint32_t>(level_begin_.size() - 1)};
  while (top > 0) {
    Entry e = stack[--top];
    if (e.level == 0) {  // a root that is a leaf
      if (!boxes_[e.node].Contains(x, y)) continue;
      if (!visit(refs_[e.node])) return;
      continue;
    }
    uint32_t begin = refs_[e.node];
    uint32_t end =
        std::min<uint32_t>(begin + static_cast<uint32_t>(node_size_), level_begin_[e.level]);
    // Branch-free containment mask over the children: the tests are unpredictable, so
    // computing all of them beats branching on each.
    uint32_t mask = 0;
    for (uint32_t c = begin; c < end; ++c) {
      const Envelope& b = boxes_[c];
      mask |=
          static_cast<uint32_t>((x >= b.min_x) & (x <= b.max_x) & (y >= b.min_y) & (y <= b.max_y))
          << (c - begin);
    }
    while (mask != 0) {
      uint32_t c = begin + static_cast<uint32_t>(__builtin_ctz(mask));
      mask &= mask - 1;
      if (e.level == 1) {
        if (!visit(refs_[c])) return;
      } else if (top < 256) {
        stack[top++] = {c, e.level - 1};
      }
    }
  }
}

}  // namespace tributary
