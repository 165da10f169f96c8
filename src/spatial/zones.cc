#include "spatial/zones.h"

#include <cpl_conv.h>
#include <cpl_vsi.h>
#include <gdal.h>
#include <gdal_priv.h>
#include <geos_c.h>
#include <ogr_geometry.h>
#include <ogrsf_frmts.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <mutex>
#include <numeric>

#include "spatial/h3.h"

namespace tributary {

// ---------------------------------------------------------------------------------------
// PackedRTree

namespace {

struct Packed {
  Envelope box;
  uint32_t ref;
};

// Sort-tile-recursive order: sqrt(n / node_size) vertical slices by centre x, each slice
// sorted by centre y, so consecutive runs of node_size items are compact tiles.
void StrSort(std::vector<Packed>& v, int node_size) {
  auto cx = [](const Packed& p) { return p.box.min_x + p.box.max_x; };
  auto cy = [](const Packed& p) { return p.box.min_y + p.box.max_y; };
  std::sort(v.begin(), v.end(), [&](const Packed& a, const Packed& b) { return cx(a) < cx(b); });
  size_t nodes = (v.size() + static_cast<size_t>(node_size) - 1) / static_cast<size_t>(node_size);
  size_t slices = static_cast<size_t>(std::ceil(std::sqrt(static_cast<double>(nodes))));
  size_t per_slice = slices == 0 ? v.size() : (nodes + slices - 1) / slices * node_size;
  for (size_t b = 0; b < v.size(); b += per_slice) {
    auto end = v.begin() + static_cast<ptrdiff_t>(std::min(v.size(), b + per_slice));
    std::sort(v.begin() + static_cast<ptrdiff_t>(b), end,
              [&](const Packed& a, const Packed& c) { return cy(a) < cy(c); });
  }
}

Envelope Union(const Envelope& a, const Envelope& b) {
  return {std::min(a.min_x, b.min_x), std::min(a.min_y, b.min_y), std::max(a.max_x, b.max_x),
          std::max(a.max_y, b.max_y)};
}

}  // namespace

PackedRTree::PackedRTree(const std::vector<Envelope>& items, int node_size)
    : node_size_(std::clamp(node_size, 2, 32)), num_items_(items.size()) {
  if (items.empty()) return;
  std::vector<Packed> level(items.size());
  for (size_t i = 0; i < items.size(); ++i) level[i] = {items[i], static_cast<uint32_t>(i)};
  while (true) {
    StrSort(level, node_size_);
    uint32_t begin = static_cast<uint32_t>(boxes_.size());
    level_begin_.push_back(begin);
    for (const Packed& p : level) {
      boxes_.push_back(p.box);
      refs_.push_back(p.ref);
    }
    if (level.size() == 1 && level_begin_.size() > 1) break;
    std::vector<Packed> parents;
    for (size_t i = 0; i < level.size(); i += static_cast<size_t>(node_size_)) {
      Envelope box = level[i].box;
      size_t end = std::min(level.size(), i + static_cast<size_t>(node_size_));
      for (size_t k = i + 1; k < end; ++k) box = Union(box, level[k].box);
      parents.push_back({box, begin + static_cast<uint32_t>(i)});
    }
    level = std::move(parents);
  }
}

// ---------------------------------------------------------------------------------------
// ZoneGrid

Envelope ZoneGrid::CellBox(int64_t cell) const {
  uint32_t ix = static_cast<uint32_t>(cell % nx), iy = static_cast<uint32_t>(cell / nx);
  return {x0 + ix * dx - kZoneGridSlack, y0 + iy * dy - kZoneGridSlack,
          x0 + (ix + 1) * dx + kZoneGridSlack, y0 + (iy + 1) * dy + kZoneGridSlack};
}

ZoneGrid BuildZoneGrid(const std::vector<Envelope>& zones, size_t max_items) {
  ZoneGrid g;
  if (zones.empty()) return g;
  Envelope ext = zones[0];
  for (const Envelope& e : zones) {
    ext = {std::min(ext.min_x, e.min_x), std::min(ext.min_y, e.min_y), std::max(ext.max_x, e.max_x),
           std::max(ext.max_y, e.max_y)};
  }
  double w = std::max(ext.max_x - ext.min_x, 1e-6), h = std::max(ext.max_y - ext.min_y, 1e-6);
  // About 16 cells per zone: cells small enough that most lie inside one zone, and a
  // bounded table (a few tens of bytes per zone).
  double cells = std::clamp(16.0 * static_cast<double>(zones.size()), 64.0, 4.0 * (1 << 20));
  double side = std::sqrt(w * h / cells);
  for (int attempt = 0; attempt < 12; ++attempt, side *= 2) {
    g.x0 = ext.min_x;
    g.y0 = ext.min_y;
    g.nx = static_cast<uint32_t>(std::clamp(std::ceil(w / side), 1.0, 8192.0));
    g.ny = static_cast<uint32_t>(std::clamp(std::ceil(h / side), 1.0, 8192.0));
    g.dx = w / g.nx;
    g.dy = h / g.ny;
    g.inv_dx = 1 / g.dx;
    g.inv_dy = 1 / g.dy;
    // Cell range of an envelope (widened by the slack), by the same arithmetic as Cell.
    auto range = [&](const Envelope& e, uint32_t& ix0, uint32_t& ix1, uint32_t& iy0,
                     uint32_t& iy1) {
      auto clampi = [](double f, uint32_t n) {
        return static_cast<uint32_t>(std::clamp(f, 0.0, static_cast<double>(n - 1)));
      };
      ix0 = clampi(std::floor((e.min_x - kZoneGridSlack - g.x0) * g.inv_dx), g.nx);
      ix1 = clampi(std::floor((e.max_x + kZoneGridSlack - g.x0) * g.inv_dx), g.nx);
      iy0 = clampi(std::floor((e.min_y - kZoneGridSlack - g.y0) * g.inv_dy), g.ny);
      iy1 = clampi(std::floor((e.max_y + kZoneGridSlack - g.y0) * g.inv_dy), g.ny);
    };
    size_t total = 0;
    size_t ncells = static_cast<size_t>(g.nx) * g.ny;
    std::vector<uint32_t> count(ncells + 1, 0);
    for (const Envelope& e : zones) {
      uint32_t ix0, ix1, iy0, iy1;
      range(e, ix0, ix1, iy0, iy1);
      total += static_cast<size_t>(ix1 - ix0 + 1) * (iy1 - iy0 + 1);
      if (total > max_items) break;
      for (uint32_t iy = iy0; iy <= iy1; ++iy) {
        for (uint32_t ix = ix0; ix <= ix1; ++ix) ++count[static_cast<size_t>(iy) * g.nx + ix + 1];
      }
    }
    if (total > max_items) continue;  // coarser
    for (size_t c = 0; c < ncells; ++c) count[c + 1] += count[c];
    g.cell_begin = count;
    g.items.resize(total);
    std::vector<uint32_t> fill(count.begin(), count.end() - 1);
    for (uint32_t z = 0; z < zones.size(); ++z) {  // ascending: lists come out sorted
      uint32_t ix0, ix1, iy0, iy1;
      range(zones[z], ix0, ix1, iy0, iy1);
      for (uint32_t iy = iy0; iy <= iy1; ++iy) {
        for (uint32_t ix = ix0; ix <= ix1; ++ix)
          g.items[fill[static_cast<size_t>(iy) * g.nx + ix]++] = z;
      }
    }
    return g;
  }
  return ZoneGrid{};
}

// ---------------------------------------------------------------------------------------
// GEOS handles

namespace {

// One GEOS context with its error messages; RAII for the handle.
class GeosContext {
 public:
  GeosContext() : handle_(GEOS_init_r()) {
    GEOSContext_setErrorMessageHandler_r(handle_, &GeosContext::OnError, this);
  }
  ~GeosContext() { GEOS_finish_r(handle_); }
  GeosContext(const GeosContext&) = delete;
  GeosContext& operator=(const GeosContext&) = delete;
  GEOSContextHandle_t get() const { return handle_; }
  const std::string& last_error() const { return last_error_; }

 private:
  static void OnError(const char* message, void* user) {
    static_cast<GeosContext*>(user)->last_error_ = message != nullptr ? message : "";
  }
  GEOSContextHandle_t handle_;
  std::string last_error_;
};

struct GeomDeleter {
  GEOSContextHandle_t ctx;
  void operator()(GEOSGeometry* g) const { GEOSGeom_destroy_r(ctx, g); }
};
using GeomPtr = std::unique_ptr<GEOSGeometry, GeomDeleter>;

GeomPtr ReadWkb(const GeosContext& ctx, std::string_view wkb) {
  GEOSWKBReader* reader = GEOSWKBReader_create_r(ctx.get());
  GEOSGeometry* g = GEOSWKBReader_read_r(
      ctx.get(), reader, reinterpret_cast<const unsigned char*>(wkb.data()), wkb.size());
  GEOSWKBReader_destroy_r(ctx.get(), reader);
  return GeomPtr(g, GeomDeleter{ctx.get()});
}

std::string WriteWkb(const GeosContext& ctx, const GEOSGeometry* g) {
  GEOSWKBWriter* writer = GEOSWKBWriter_create_r(ctx.get());
  size_t size = 0;
  unsigned char* buf = GEOSWKBWriter_write_r(ctx.get(), writer, g, &size);
  GEOSWKBWriter_destroy_r(ctx.get(), writer);
  std::string out;
  if (buf != nullptr) {
    out.assign(reinterpret_cast<const char*>(buf), size);
    GEOSFree_r(ctx.get(), buf);
  }
  return out;
}

bool IsPolygonal(const GeosContext& ctx, const GEOSGeometry* g) {
  int type = GEOSGeomTypeId_r(ctx.get(), g);
  return type == GEOS_POLYGON || type == GEOS_MULTIPOLYGON;
}

// Check a zone geometry: polygonal, valid (repaired with MakeValid when not, keeping the
// polygonal part), and fill its WKB and envelope. `where` names the feature in errors.
Status FinishZone(const GeosContext& ctx, GeomPtr g, const std::string& where, Zone& zone) {
  if (g == nullptr) return Status::Invalid(where + ": unreadable geometry: " + ctx.last_error());
  if (!IsPolygonal(ctx, g.get())) {
    return Status::Invalid(where + ": geometry is a " +
                           std::string(GEOSGeomType_r(ctx.get(), g.get())) +
                           ", expected a Polygon or MultiPolygon");
  }
  if (GEOSisValid_r(ctx.get(), g.get()) != 1) {
    char* reason = GEOSisValidReason_r(ctx.get(), g.get());
    spdlog::warn("{}: invalid polygon ({}), repaired with MakeValid", where,
                 reason != nullptr ? reason : "?");
    if (reason != nullptr) GEOSFree_r(ctx.get(), reason);
    GeomPtr fixed(GEOSMakeValid_r(ctx.get(), g.get()), GeomDeleter{ctx.get()});
    if (fixed == nullptr || !IsPolygonal(ctx, fixed.get())) {
      return Status::Invalid(where + ": invalid polygon that MakeValid cannot repair to a polygon");
    }
    g = std::move(fixed);
  }
  if (GEOSisEmpty_r(ctx.get(), g.get()) == 1) return Status::Invalid(where + ": empty geometry");
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  GEOSGeom_getXMin_r(ctx.get(), g.get(), &x0);
  GEOSGeom_getYMin_r(ctx.get(), g.get(), &y0);
  GEOSGeom_getXMax_r(ctx.get(), g.get(), &x1);
  GEOSGeom_getYMax_r(ctx.get(), g.get(), &y1);
  zone.envelope = {x0, y0, x1, y1};
  zone.wkb = WriteWkb(ctx, g.get());
  if (static_cast<size_t>(GEOSGetNumCoordinates_r(ctx.get(), g.get())) <= kFastPathMaxVertices) {
    auto add_ring = [&](const GEOSGeometry* ring) {
      const GEOSCoordSequence* seq = GEOSGeom_getCoordSeq_r(ctx.get(), ring);
      unsigned int n = 0;
      GEOSCoordSeq_getSize_r(ctx.get(), seq, &n);
      for (unsigned int i = 0; i < n; ++i) {
        double x = 0, y = 0;
        GEOSCoordSeq_getXY_r(ctx.get(), seq, i, &x, &y);
        zone.xy.push_back(x);
        zone.xy.push_back(y);
      }
      zone.ring_end.push_back(static_cast<uint32_t>(zone.xy.size() / 2));
    };
    int parts = GEOSGetNumGeometries_r(ctx.get(), g.get());
    for (int p = 0; p < parts; ++p) {
      const GEOSGeometry* poly = GEOSGetGeometryN_r(ctx.get(), g.get(), p);
      add_ring(GEOSGetExteriorRing_r(ctx.get(), poly));
      int holes = GEOSGetNumInteriorRings_r(ctx.get(), poly);
      for (int h = 0; h < holes; ++h) add_ring(GEOSGetInteriorRingN_r(ctx.get(), poly, h));
    }
  }
  return Status::Ok();
}

enum class FastAnswer { kInside, kOutside, kNearEdge };

// Even-odd crossing count over every ring of a valid (multi)polygon: parts do not
// overlap and holes lie inside their shells, so the parity over all rings is the
// answer. Rounding in the crossing abscissa is far below kEdgeTolerance, so a point
// farther than that from every crossing, and not level with a vertex, is decided
// exactly; anything else (on or next to an edge) is left to GEOS.
FastAnswer FastLocate(const double* blob, double px, double py) {
  constexpr double kEdgeTolerance = 1e-9;  // degrees
  bool inside = false;
  uint32_t begin = 0;
  const uint32_t rings = static_cast<uint32_t>(blob[0]);
  const double* xy = blob + 1 + rings;
  for (uint32_t r = 0; r < rings; ++r) {
    const uint32_t end = static_cast<uint32_t>(blob[1 + r]);
    for (uint32_t i = begin; i + 1 < end; ++i) {
      double x1 = xy[2 * i], y1 = xy[2 * i + 1], x2 = xy[2 * i + 2], y2 = xy[2 * i + 3];
      if ((y1 > py) != (y2 > py)) {
        double d = px - (x1 + (py - y1) * (x2 - x1) / (y2 - y1));
        if (std::fabs(d) <= kEdgeTolerance) return FastAnswer::kNearEdge;
        inside ^= d < 0;
      } else if ((std::fabs(py - y1) <= kEdgeTolerance || std::fabs(py - y2) <= kEdgeTolerance) &&
                 px >= std::min(x1, x2) - kEdgeTolerance &&
                 px <= std::max(x1, x2) + kEdgeTolerance) {
        return FastAnswer::kNearEdge;  // level with a vertex, or on a horizontal edge
      }
    }
    begin = end;
  }
  return inside ? FastAnswer::kInside : FastAnswer::kOutside;
}

// The H3 resolution-4 cells a point inside `e` can lie in: the cells of a lattice of
// samples over the envelope no farther apart than 0.05° (about 5.5 km, far below the
// cells' 19 km inradius, so any point of the envelope is within one cell of a sample),
// each with its ring of neighbours.
std::vector<uint64_t> TileCellsOfEnvelope(const Envelope& e) {
  constexpr double kStep = 0.05;
  double max_abs_lat = std::min(89.9, std::max(std::fabs(e.min_y), std::fabs(e.max_y)));
  double step_lon = std::min(kStep / std::max(std::cos(max_abs_lat * M_PI / 180), 1e-3), 360.0);
  std::vector<uint64_t> seeds;
  for (double y = e.min_y;; y = std::min(y + kStep, e.max_y)) {
    for (double x = e.min_x;; x = std::min(x + step_lon, e.max_x)) {
      seeds.push_back(h3::LatLngToCell(std::clamp(y, -90.0, 90.0), std::clamp(x, -180.0, 180.0),
                                       kZoneTileResolution));
      if (x >= e.max_x) break;
    }
    if (y >= e.max_y) break;
  }
  std::sort(seeds.begin(), seeds.end());
  seeds.erase(std::unique(seeds.begin(), seeds.end()), seeds.end());
  std::vector<uint64_t> cells;
  for (uint64_t c : seeds) {
    for (uint64_t n : h3::GridDisk(c, 1)) cells.push_back(n);
  }
  std::sort(cells.begin(), cells.end());
  cells.erase(std::unique(cells.begin(), cells.end()), cells.end());
  return cells;
}

void FinishLayer(ZoneLayer& layer, ZoneTiling tiling = ZoneTiling::kEager) {
  // Sorted by id: the boundary rule picks the first covering zone in index order.
  std::stable_sort(layer.zones.begin(), layer.zones.end(),
                   [](const Zone& a, const Zone& b) { return a.id.view() < b.id.view(); });
  std::vector<Envelope> boxes;
  boxes.reserve(layer.zones.size());
  for (const Zone& z : layer.zones) boxes.push_back(z.envelope);
  layer.name_symbol = Intern(layer.name);
  layer.lazy = tiling == ZoneTiling::kLazy ||
               (tiling == ZoneTiling::kAuto && layer.zones.size() > kLazyTilesAbove);
  if (layer.lazy) {
    // Tiles only; each locator indexes a tile's zones when a point first falls in it.
    for (uint32_t i = 0; i < layer.zones.size(); ++i) {
      for (uint64_t cell : TileCellsOfEnvelope(layer.zones[i].envelope)) {
        layer.tiles[cell].push_back(i);
      }
    }
    return;
  }
  layer.tree = PackedRTree(boxes);
  layer.grid = BuildZoneGrid(boxes);
  layer.fast.clear();
  layer.fast_offset.assign(layer.zones.size(), kNoFastPath);
  for (uint32_t i : layer.tree.LeafOrder()) {
    Zone& z = layer.zones[i];
    if (z.ring_end.empty()) continue;
    layer.fast_offset[i] = static_cast<uint32_t>(layer.fast.size());
    layer.fast.push_back(static_cast<double>(z.ring_end.size()));
    for (uint32_t e : z.ring_end) layer.fast.push_back(static_cast<double>(e));
    layer.fast.insert(layer.fast.end(), z.xy.begin(), z.xy.end());
    // The zone keeps no second copy.
    std::vector<double>().swap(z.xy);
  }
}

// ---------------------------------------------------------------------------------------
// GDAL/OGR reading

struct CtDeleter {
  void operator()(OGRCoordinateTransformation* ct) const {
    OGRCoordinateTransformation::DestroyCT(ct);
  }
};

void RegisterGdalOnce() {
  static std::once_flag once;
  std::call_once(once, [] { GDALAllRegister(); });
}

// A /vsimem/ file holding a builtin dataset for the lifetime of the guard.
class MemFile {
 public:
  MemFile(std::string path, std::string_view content) : path_(std::move(path)) {
    VSILFILE* f = VSIFileFromMemBuffer(path_.c_str(),
                                       reinterpret_cast<GByte*>(const_cast<char*>(content.data())),
                                       static_cast<vsi_l_offset>(content.size()), FALSE);
    if (f != nullptr) VSIFCloseL(f);
  }
  ~MemFile() { VSIUnlink(path_.c_str()); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

Result<ZoneLayer> LoadLayer(const ZoneLayerSpec& spec, const GeosContext& geos) {
  RegisterGdalOnce();
  std::string where_file = "zones layer '" + spec.name + "' (" + spec.path + ")";
  std::unique_ptr<MemFile> mem;
  std::string open_path = spec.path;
  if (spec.path.rfind("builtin:", 0) == 0) {
    if (spec.path != "builtin:city_districts") {
      return Status::NotFound(where_file +
                              ": unknown builtin boundary set (known: "
                              "builtin:city_districts)");
    }
    mem = std::make_unique<MemFile>("/vsimem/tributary_zones_" +
                                        std::to_string(reinterpret_cast<uintptr_t>(&spec)) +
                                        ".geojson",
                                    BuiltinCityDistricts());
    open_path = mem->path();
  }
  GDALDatasetUniquePtr ds(GDALDataset::Open(open_path.c_str(), GDAL_OF_VECTOR | GDAL_OF_READONLY,
                                            nullptr, nullptr, nullptr));
  if (ds == nullptr) {
    return Status::NotFound(where_file +
                            ": cannot open as a vector dataset: " + CPLGetLastErrorMsg());
  }
  OGRLayer* layer = nullptr;
  if (!spec.layer.empty()) {
    layer = ds->GetLayerByName(spec.layer.c_str());
    if (layer == nullptr) {
      std::string known;
      for (int i = 0; i < ds->GetLayerCount(); ++i) {
        known += (i ? ", " : "") + std::string(ds->GetLayer(i)->GetName());
      }
      return Status::NotFound(where_file + ": no layer '" + spec.layer + "' (layers: " + known +
                              ")");
    }
  } else {
    if (ds->GetLayerCount() < 1) return Status::Invalid(where_file + ": the file has no layer");
    layer = ds->GetLayer(0);
  }
  OGRFeatureDefn* defn = layer->GetLayerDefn();
  auto field_list = [&] {
    std::string known;
    for (int i = 0; i < defn->GetFieldCount(); ++i) {
      known += (i ? ", " : "") + std::string(defn->GetFieldDefn(i)->GetNameRef());
    }
    return known;
  };
  int id_index = defn->GetFieldIndex(spec.id_field.c_str());
  if (id_index < 0) {
    return Status::Invalid(where_file + ": no id field '" + spec.id_field +
                           "' (fields: " + field_list() + ")");
  }
  int name_index = -1;
  if (!spec.name_field.empty()) {
    name_index = defn->GetFieldIndex(spec.name_field.c_str());
    if (name_index < 0) {
      return Status::Invalid(where_file + ": no name field '" + spec.name_field +
                             "' (fields: " + field_list() + ")");
    }
  }

  // Reproject to WGS84 with x = longitude whatever the CRS's declared axis order.
  std::unique_ptr<OGRCoordinateTransformation, CtDeleter> ct;
  const OGRSpatialReference* src_srs = layer->GetSpatialRef();
  OGRSpatialReference wgs84;
  wgs84.SetWellKnownGeogCS("WGS84");
  wgs84.SetAxisMappingStrategy(OAMS_TRADITIONAL_GIS_ORDER);
  if (src_srs != nullptr) {
    OGRSpatialReference src(*src_srs);
    src.SetAxisMappingStrategy(OAMS_TRADITIONAL_GIS_ORDER);
    if (!src.IsSame(&wgs84)) {
      ct.reset(OGRCreateCoordinateTransformation(&src, &wgs84));
      if (ct == nullptr) {
        return Status::Invalid(where_file +
                               ": cannot transform its CRS to WGS84: " + CPLGetLastErrorMsg());
      }
    }
  }

  ZoneLayer out;
  out.name = spec.name;
  layer->ResetReading();
  for (auto& feature : *layer) {
    std::string where = where_file + " feature " + std::to_string(feature->GetFID());
    if (!feature->IsFieldSetAndNotNull(id_index)) {
      return Status::Invalid(where + ": id field '" + spec.id_field + "' is empty");
    }
    Zone zone;
    zone.id = Intern(feature->GetFieldAsString(id_index));
    if (zone.id.empty()) {
      return Status::Invalid(where + ": id field '" + spec.id_field + "' is empty");
    }
    if (name_index >= 0) zone.name = feature->GetFieldAsString(name_index);
    OGRGeometry* geom = feature->GetGeometryRef();
    if (geom == nullptr || geom->IsEmpty()) {
      return Status::Invalid(where + " (id " + zone.id.str() + "): no geometry");
    }
    std::unique_ptr<OGRGeometry> linear;
    if (geom->hasCurveGeometry()) {
      linear.reset(geom->getLinearGeometry());
      geom = linear.get();
    }
    if (ct != nullptr && geom->transform(ct.get()) != OGRERR_NONE) {
      return Status::Invalid(where + " (id " + zone.id.str() + "): cannot reproject to WGS84");
    }
    geom->flattenTo2D();
    std::string wkb(static_cast<size_t>(geom->WkbSize()), '\0');
    geom->exportToWkb(wkbNDR, reinterpret_cast<unsigned char*>(wkb.data()), wkbVariantIso);
    TRIB_RETURN_IF_ERROR(
        FinishZone(geos, ReadWkb(geos, wkb), where + " (id " + zone.id.str() + ")", zone));
    out.zones.push_back(std::move(zone));
  }
  if (out.zones.empty()) return Status::Invalid(where_file + ": the layer has no features");
  FinishLayer(out, spec.tiling);
  return out;
}

}  // namespace

Result<std::shared_ptr<const ZoneSet>> ZoneSet::Load(const std::vector<ZoneLayerSpec>& specs) {
  GeosContext geos;
  auto set = std::make_shared<ZoneSet>();
  for (const ZoneLayerSpec& spec : specs) {
    TRIB_ASSIGN_OR_RETURN(ZoneLayer layer, LoadLayer(spec, geos));
    if (layer.lazy) {
      spdlog::info("zones layer '{}': {} zones from {} in {} lazy H3 res-{} tiles", layer.name,
                   layer.zones.size(), spec.path, layer.tiles.size(), kZoneTileResolution);
    } else {
      spdlog::info("zones layer '{}': {} zones from {}", layer.name, layer.zones.size(), spec.path);
    }
    set->layers_.push_back(std::move(layer));
  }
  return std::shared_ptr<const ZoneSet>(std::move(set));
}

Result<std::shared_ptr<const ZoneSet>> ZoneSet::FromWkt(
    const std::vector<std::pair<std::string, std::vector<WktZone>>>& layers, ZoneTiling tiling) {
  GeosContext geos;
  auto set = std::make_shared<ZoneSet>();
  GEOSWKTReader* reader = GEOSWKTReader_create_r(geos.get());
  for (const auto& [name, zones] : layers) {
    ZoneLayer layer;
    layer.name = name;
    for (const WktZone& wz : zones) {
      Zone zone;
      zone.id = Intern(wz.id);
      zone.name = wz.name;
      GeomPtr g(GEOSWKTReader_read_r(geos.get(), reader, wz.wkt.c_str()), GeomDeleter{geos.get()});
      Status st = FinishZone(geos, std::move(g), "zone " + wz.id + " of layer " + name, zone);
      if (!st.ok()) {
        GEOSWKTReader_destroy_r(geos.get(), reader);
        return st;
      }
      layer.zones.push_back(std::move(zone));
    }
    FinishLayer(layer, tiling);
    set->layers_.push_back(std::move(layer));
  }
  GEOSWKTReader_destroy_r(geos.get(), reader);
  return std::shared_ptr<const ZoneSet>(std::move(set));
}

// ---------------------------------------------------------------------------------------
// ZoneLocator

// Per-cell cache entries besides a zone index.
constexpr int32_t kCellUnknown = -3, kCellEmpty = -2, kCellMixed = -1;

// One locator's lookup state for one indexed layer (or lazy tile): the parsed and
// prepared geometry of each zone, built on first use, and the grid's cell cache
// (kCellUnknown until first visited, then the zone covering the whole cell, kCellEmpty
// or kCellMixed).
struct LayerLookup {
  std::vector<GEOSGeometry*> geoms;
  std::vector<const GEOSPreparedGeometry*> prepared;
  std::vector<int32_t> cell_state;
  explicit LayerLookup(const ZoneLayer& layer)
      : geoms(layer.zones.size(), nullptr), prepared(layer.zones.size(), nullptr) {}
  void Release(GEOSContextHandle_t h) {
    for (size_t i = 0; i < geoms.size(); ++i) {
      if (prepared[i] != nullptr) GEOSPreparedGeom_destroy_r(h, prepared[i]);
      if (geoms[i] != nullptr) GEOSGeom_destroy_r(h, geoms[i]);
      prepared[i] = nullptr;
      geoms[i] = nullptr;
    }
  }
};

struct ZoneLocator::Geos {
  // A lazy layer's tile: its zones indexed as a layer of their own.
  struct Tile {
    ZoneLayer sub;                 // the tile's zones (copies), ascending index
    std::vector<uint32_t> global;  // sub index → index in the layer
    std::unique_ptr<LayerLookup> lookup;
    uint64_t last_used = 0;
  };

  GeosContext ctx;
  std::vector<std::unique_ptr<LayerLookup>> layers;  // per layer; null for lazy ones
  std::vector<std::unordered_map<uint64_t, std::unique_ptr<Tile>>> tiles;  // per layer
  size_t max_tiles = 256;
  uint64_t tick = 0;
  std::vector<uint32_t> candidates;  // reused per lookup

  ~Geos() {
    for (auto& l : layers) {
      if (l != nullptr) l->Release(ctx.get());
    }
    for (auto& per_layer : tiles) {
      for (auto& [cell, t] : per_layer) t->lookup->Release(ctx.get());
    }
  }

  // The prepared geometry of zone i (built on first use); null only if GEOS fails.
  const GEOSPreparedGeometry* Prepared(const ZoneLayer& layer, LayerLookup& st, uint32_t i) {
    const GEOSPreparedGeometry*& prep = st.prepared[i];
    if (prep == nullptr) {
      GEOSGeometry*& g = st.geoms[i];
      if (g == nullptr) g = ReadWkb(ctx, layer.zones[i].wkb).release();
      if (g == nullptr) return nullptr;  // checked at load; cannot happen
      prep = GEOSPrepare_r(ctx.get(), g);
    }
    return prep;
  }

  // Whether zone i covers (lon, lat): the fast crossing test, GEOS when it cannot tell.
  // `point` is built on first need and reused for the other candidates.
  bool Covers(const ZoneLayer& layer, LayerLookup& st, uint32_t i, double lon, double lat,
              GeomPtr& point, Stats& stats) {
    if (uint32_t off = layer.fast_offset[i]; off != kNoFastPath) {
      ++stats.fast_tests;
      FastAnswer a = FastLocate(layer.fast.data() + off, lon, lat);
      if (a == FastAnswer::kInside) return true;
      if (a == FastAnswer::kOutside) return false;
    }
    ++stats.geos_tests;
    if (point == nullptr) {
      point.reset(GEOSGeom_createPointFromXY_r(ctx.get(), lon, lat));
      if (point == nullptr) return false;
    }
    const GEOSPreparedGeometry* prep = Prepared(layer, st, i);
    return prep != nullptr && GEOSPreparedCovers_r(ctx.get(), prep, point.get()) == 1;
  }

  // The zone covering all of grid cell `cell` when no zone before it in index order
  // touches the cell (so it is the boundary rule's answer for every point of the cell);
  // kCellEmpty when no zone meets the cell, kCellMixed otherwise.
  int32_t ClassifyCell(const ZoneLayer& layer, LayerLookup& st, int64_t cell) {
    const ZoneGrid& g = layer.grid;
    uint32_t b = g.cell_begin[static_cast<size_t>(cell)];
    uint32_t e = g.cell_begin[static_cast<size_t>(cell) + 1];
    Envelope box = g.CellBox(cell);
    GeomPtr rect(GEOSGeom_createRectangle_r(ctx.get(), box.min_x, box.min_y, box.max_x, box.max_y),
                 GeomDeleter{ctx.get()});
    if (rect == nullptr) return kCellMixed;
    for (uint32_t k = b; k < e; ++k) {
      const GEOSPreparedGeometry* prep = Prepared(layer, st, g.items[k]);
      if (prep == nullptr) return kCellMixed;
      if (GEOSPreparedCovers_r(ctx.get(), prep, rect.get()) == 1) {
        return static_cast<int32_t>(g.items[k]);
      }
      // A zone meeting part of the cell: points there may be its, so no single answer.
      if (GEOSPreparedIntersects_r(ctx.get(), prep, rect.get()) != 0) return kCellMixed;
    }
    return kCellEmpty;
  }

  // Locate in an indexed (eager) layer: the grid and its cell cache, or the R-tree.
  int Locate(const ZoneLayer& layer, LayerLookup& st, double lon, double lat, Stats& stats) {
    GeomPtr point(nullptr, GeomDeleter{ctx.get()});  // built only when GEOS has to decide
    if (!layer.grid.empty()) {
      const ZoneGrid& g = layer.grid;
      int64_t cell = g.Cell(lon, lat);
      if (cell < 0) return -1;
      if (st.cell_state.empty())
        st.cell_state.assign(static_cast<size_t>(g.nx) * g.ny, kCellUnknown);
      int32_t& state = st.cell_state[static_cast<size_t>(cell)];
      if (state == kCellUnknown) {
        state = ClassifyCell(layer, st, cell);
        ++stats.cells_classified;
      }
      if (state >= 0) {
        ++stats.cell_hits;
        return state;
      }
      if (state == kCellEmpty) return -1;
      uint32_t e = g.cell_begin[static_cast<size_t>(cell) + 1];
      for (uint32_t k = g.cell_begin[static_cast<size_t>(cell)]; k < e; ++k) {
        uint32_t i = g.items[k];
        if (!layer.zones[i].envelope.Contains(lon, lat)) continue;
        if (Covers(layer, st, i, lon, lat, point, stats)) return static_cast<int>(i);
      }
      return -1;
    }
    candidates.clear();
    layer.tree.Query(lon, lat, [&](uint32_t item) {
      candidates.push_back(item);
      return true;
    });
    if (candidates.size() > 1) std::sort(candidates.begin(), candidates.end());
    for (uint32_t i : candidates) {
      if (Covers(layer, st, i, lon, lat, point, stats)) return static_cast<int>(i);
    }
    return -1;
  }

  // The tile of H3 cell `cell` of lazy layer l, indexed on first use; the least
  // recently used tile goes when max_tiles are held. Null when no zone meets the cell.
  Tile* TileFor(const ZoneLayer& layer, size_t l, uint64_t cell, Stats& stats) {
    auto& held = tiles[l];
    auto it = held.find(cell);
    if (it == held.end()) {
      auto members = layer.tiles.find(cell);
      if (members == layer.tiles.end()) return nullptr;
      if (held.size() >= max_tiles) {
        auto oldest = held.begin();
        for (auto t = held.begin(); t != held.end(); ++t) {
          if (t->second->last_used < oldest->second->last_used) oldest = t;
        }
        oldest->second->lookup->Release(ctx.get());
        held.erase(oldest);
        ++stats.tiles_evicted;
      }
      auto tile = std::make_unique<Tile>();
      tile->sub.name = layer.name;
      tile->global = members->second;
      for (uint32_t i : tile->global) tile->sub.zones.push_back(layer.zones[i]);
      FinishLayer(tile->sub, ZoneTiling::kEager);  // ids ascending: the order is kept
      tile->lookup = std::make_unique<LayerLookup>(tile->sub);
      ++stats.tiles_loaded;
      it = held.emplace(cell, std::move(tile)).first;
    }
    it->second->last_used = ++tick;
    return it->second.get();
  }
};

ZoneLocator::ZoneLocator(std::shared_ptr<const ZoneSet> zones, size_t max_tiles)
    : zones_(std::move(zones)), geos_(std::make_unique<Geos>()) {
  geos_->max_tiles = std::max<size_t>(max_tiles, 1);
  for (const ZoneLayer& layer : zones_->layers()) {
    geos_->layers.push_back(layer.lazy ? nullptr : std::make_unique<LayerLookup>(layer));
    geos_->tiles.emplace_back();
  }
}

ZoneLocator::~ZoneLocator() = default;

int ZoneLocator::Locate(size_t layer_index, double lat, double lon) {
  if (layer_index >= zones_->layers().size() || !std::isfinite(lat) || !std::isfinite(lon)) {
    return -1;
  }
  if (lon > 180.0 || lon < -180.0) lon = std::remainder(lon, 360.0);
  const ZoneLayer& layer = zones_->layers()[layer_index];
  if (!layer.lazy) return geos_->Locate(layer, *geos_->layers[layer_index], lon, lat, stats_);
  if (lat < -90.0 || lat > 90.0) return -1;
  uint64_t cell = h3::LatLngToCell(lat, lon, kZoneTileResolution);
  Geos::Tile* tile = geos_->TileFor(layer, layer_index, cell, stats_);
  if (tile == nullptr) return -1;
  int i = geos_->Locate(tile->sub, *tile->lookup, lon, lat, stats_);
  return i < 0 ? -1 : static_cast<int>(tile->global[static_cast<size_t>(i)]);
}

Symbol ZoneLocator::LocateId(size_t layer, double lat, double lon) {
  int i = Locate(layer, lat, lon);
  return i < 0 ? Symbol{} : zones_->layers()[layer].zones[static_cast<size_t>(i)].id;
}

// ---------------------------------------------------------------------------------------
// Config

const SectionSpec& ZonesSectionSpec() {
  static const SectionSpec spec{
      "zones",
      "Spatial enrichment before windowing: the H3 cell of every reading and its zone in "
      "each boundary layer, so windows with `group_by: zone` group by the first layer's "
      "zone. A point on a boundary belongs to the zone it touches; on an edge shared by "
      "several zones of a layer, to the one whose id sorts first. A reading outside every "
      "zone of a layer gets no zone for it and the flag NO_ZONE.",
      {
          {"h3_resolution", OptionType::kInt, "8",
           "H3 resolution (0-15) of `reading.h3`, used by `group_by: h3` and stored by the "
           "sinks; -1 leaves it unset. Resolution 8 cells are about 0.74 km².",
           "-1..15"},
          {"s2_level", OptionType::kInt, "-1",
           "S2 cell level (0-30) of `reading.s2`, stored by the sinks as the cell's token in "
           "the `s2` column; -1 leaves it unset. Level 13 cells are about 1 km². Windows "
           "group by any level with `group_by: s2:<level>`, whatever this is.",
           "-1..30"},
          {"layers", OptionType::kSection, "",
           "Boundary layers, in order; the first one's zone is the reading's `zone`. Keys "
           "are listed under `zones.layers[]`."},
      }};
  return spec;
}

const SectionSpec& ZoneLayerSectionSpec() {
  static const SectionSpec spec{
      "zones.layers[]",
      "One boundary layer, read with GDAL/OGR (GeoJSON, GeoPackage, Shapefile, FlatGeobuf, "
      "...) and reprojected to WGS84. Features must be polygons or multipolygons (holes are "
      "honoured); invalid polygons are repaired with MakeValid and logged.",
      {
          {"name", OptionType::kString, "", "Name of the layer (`district`).", {}, true},
          {"path",
           OptionType::kString,
           "",
           "Boundary file, relative to the pipeline file's folder, or "
           "`builtin:city_districts` for the districts of the simulator's default city.",
           {},
           true},
          {"layer", OptionType::kString, "",
           "Layer inside the file (GeoPackage tables, ...); empty: the first layer."},
          {"id_field", OptionType::kString, "", "Attribute holding the zone id.", {}, true},
          {"name_field", OptionType::kString, "", "Attribute holding a display name; optional."},
          {"tiles", OptionType::kEnum, "auto",
           "`lazy`: index the zones per H3 resolution-4 cell (about 1,770 km²) and prepare a "
           "cell's zones on the first reading in it, keeping the 256 most recently used cells "
           "per worker — for very large boundary sets of which a pipeline touches a small "
           "part; `eager`: index everything at start; `auto`: lazy above 100,000 zones.",
           "auto|eager|lazy"},
      }};
  return spec;
}

std::vector<std::string> ZoneLayerNames(const OptionReader& zones_section) {
  std::vector<std::string> names;
  YAML::Node layers = zones_section.Node("layers");
  if (!layers.IsDefined() || !layers.IsSequence()) return names;
  for (const YAML::Node& l : layers) {
    if (l.IsMap() && l["name"].IsScalar()) names.push_back(l["name"].as<std::string>());
  }
  return names;
}

Result<ZoneOptions> ReadZoneOptions(const OptionReader& section, const std::string& base_dir) {
  ZoneOptions out;
  const OptionReader o(section.node(), section.file(), section.path(), {&ZonesSectionSpec()});
  TRIB_RETURN_IF_ERROR(o.CheckKeys());
  TRIB_ASSIGN_OR_RETURN(int64_t res, o.GetInt("h3_resolution"));
  out.h3_resolution = static_cast<int>(res);
  TRIB_ASSIGN_OR_RETURN(int64_t s2_level, o.GetInt("s2_level"));
  out.s2_level = static_cast<int>(s2_level);
  YAML::Node layers = o.Node("layers");
  if (!layers.IsDefined() || layers.IsNull()) return out;
  if (!layers.IsSequence()) return o.Error("layers", "expected a list (entries start with '- ')");
  std::vector<std::string> names;
  for (size_t i = 0; i < layers.size(); ++i) {
    std::string path =
        (o.path().empty() ? "zones" : o.path()) + ".layers[" + std::to_string(i) + "]";
    OptionReader l(layers[i], o.file(), path, {&ZoneLayerSectionSpec()});
    if (!layers[i].IsMap()) return l.Error("", "expected a mapping with name, path and id_field");
    TRIB_RETURN_IF_ERROR(l.CheckKeys());
    ZoneLayerSpec spec;
    TRIB_ASSIGN_OR_RETURN(spec.name, l.GetString("name"));
    TRIB_ASSIGN_OR_RETURN(spec.path, l.GetString("path"));
    TRIB_ASSIGN_OR_RETURN(spec.layer, l.GetString("layer"));
    TRIB_ASSIGN_OR_RETURN(spec.id_field, l.GetString("id_field"));
    TRIB_ASSIGN_OR_RETURN(spec.name_field, l.GetString("name_field"));
    TRIB_ASSIGN_OR_RETURN(std::string tiles, l.GetString("tiles"));
    spec.tiling = tiles == "lazy"    ? ZoneTiling::kLazy
                  : tiles == "eager" ? ZoneTiling::kEager
                                     : ZoneTiling::kAuto;
    if (spec.name.empty()) return l.Error("name", "must not be empty");
    if (std::find(names.begin(), names.end(), spec.name) != names.end()) {
      return l.Error("name", "duplicate layer name '" + spec.name + "'");
    }
    names.push_back(spec.name);
    if (spec.path.rfind("builtin:", 0) != 0 && std::filesystem::path(spec.path).is_relative() &&
        !base_dir.empty()) {
      spec.path = (std::filesystem::path(base_dir) / spec.path).string();
    }
    out.layers.push_back(std::move(spec));
  }
  return out;
}

}  // namespace tributary
