#include "spatial/zone_outlines.h"

#include <geos_c.h>

#include <cmath>
#include <memory>

namespace tributary {

namespace {

// One GEOS context for the build, with its last error message.
class OutlineGeos {
 public:
  OutlineGeos() : handle_(GEOS_init_r()) {
    GEOSContext_setErrorMessageHandler_r(handle_, &OutlineGeos::OnError, this);
  }
  ~OutlineGeos() { GEOS_finish_r(handle_); }
  OutlineGeos(const OutlineGeos&) = delete;
  OutlineGeos& operator=(const OutlineGeos&) = delete;
  GEOSContextHandle_t get() const { return handle_; }
  const std::string& last_error() const { return last_error_; }

 private:
  static void OnError(const char* message, void* user) {
    static_cast<OutlineGeos*>(user)->last_error_ = message != nullptr ? message : "";
  }
  GEOSContextHandle_t handle_;
  std::string last_error_;
};

struct OutlineGeomDeleter {
  GEOSContextHandle_t ctx;
  void operator()(GEOSGeometry* g) const { GEOSGeom_destroy_r(ctx, g); }
};
using OutlineGeom = std::unique_ptr<GEOSGeometry, OutlineGeomDeleter>;

}  // namespace

Result<std::vector<ZoneOutline>> BuildZoneOutlines(const ZoneSet& zones, size_t max_vertices) {
  OutlineGeos geos;
  GEOSContextHandle_t ctx = geos.get();
  GEOSWKBReader* reader = GEOSWKBReader_create_r(ctx);
  GEOSGeoJSONWriter* writer = GEOSGeoJSONWriter_create_r(ctx);
  std::vector<ZoneOutline> out;
  Status failed;
  for (size_t li = 0; li < zones.layers().size() && failed.ok(); ++li) {
    const ZoneLayer& layer = zones.layers()[li];
    for (const Zone& zone : layer.zones) {
      std::string where =
          "zone '" + std::string(zone.id.view()) + "' of layer '" + layer.name + "'";
      OutlineGeom g(
          GEOSWKBReader_read_r(ctx, reader, reinterpret_cast<const unsigned char*>(zone.wkb.data()),
                               zone.wkb.size()),
          OutlineGeomDeleter{ctx});
      if (g == nullptr) {
        failed = Status::Invalid(where + ": unreadable geometry: " + geos.last_error());
        break;
      }
      ZoneOutline o;
      o.layer = layer.name;
      o.layer_index = li;
      o.id = std::string(zone.id.view());
      o.name = zone.name;
      int n = GEOSGetNumCoordinates_r(ctx, g.get());
      o.vertices = n > 0 ? static_cast<size_t>(n) : 0;
      if (max_vertices > 0 && o.vertices > max_vertices) {
        const Envelope& e = zone.envelope;
        double tolerance = std::hypot(e.max_x - e.min_x, e.max_y - e.min_y) / 1000;
        for (int round = 0; round < 24 && o.vertices > max_vertices && tolerance > 0; ++round) {
          OutlineGeom s(GEOSTopologyPreserveSimplify_r(ctx, g.get(), tolerance),
                        OutlineGeomDeleter{ctx});
          tolerance *= 2;
          if (s == nullptr || GEOSisEmpty_r(ctx, s.get()) == 1) continue;
          int m = GEOSGetNumCoordinates_r(ctx, s.get());
          if (m <= 0) continue;
          g = std::move(s);
          o.vertices = static_cast<size_t>(m);
          o.simplified = true;
        }
      }
      char* json = GEOSGeoJSONWriter_writeGeometry_r(ctx, writer, g.get(), -1);
      if (json == nullptr) {
        failed = Status::Invalid(where + ": cannot write GeoJSON: " + geos.last_error());
        break;
      }
      o.geometry = json;
      GEOSFree_r(ctx, json);
      out.push_back(std::move(o));
    }
  }
  GEOSGeoJSONWriter_destroy_r(ctx, writer);
  GEOSWKBReader_destroy_r(ctx, reader);
  if (!failed.ok()) return failed;
  return out;
}

}  // namespace tributary
