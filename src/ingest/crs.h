// Reprojection of positions to WGS84 with PROJ.
//
// Devices on survey grids report easting/northing in a projected CRS (UTM, British
// National Grid, ...) or geographic coordinates on another datum; a reading leaves
// ingestion with WGS84 degrees. A CRS is named by its EPSG code ("EPSG:32633",
// "32633", "urn:ogc:def:crs:EPSG::27700"). Transformations are built with
// proj_create_crs_to_crs and proj_normalize_for_visualization, so input axis order is
// always x = easting or longitude, y = northing or latitude, whatever the EPSG
// definition says, and output is longitude/latitude in degrees.
//
// Threading: a CrsTransformer owns one PJ_CONTEXT and one PJ per source CRS it has
// seen, built on first use. PROJ objects must not be used from two threads at once,
// so each ingestion worker owns its own transformer.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "ingest/validate.h"

struct pj_ctx;
struct PJconsts;

namespace tributary {

/// Read an EPSG code from "EPSG:32633", "epsg::32633", "32633" or
/// "urn:ogc:def:crs:EPSG::32633" (case-insensitive). False for anything else.
bool ParseEpsgCode(std::string_view text, int& code);

/// A WGS84 position.
struct LonLat {
  double lon = 0;
  double lat = 0;
};

/// Transforms coordinates of EPSG-coded CRSs to WGS84, caching one PJ per code.
class CrsTransformer {
 public:
  CrsTransformer();
  ~CrsTransformer();
  CrsTransformer(const CrsTransformer&) = delete;
  CrsTransformer& operator=(const CrsTransformer&) = delete;

  /// Transform (x, y) given in `crs` (x = easting/longitude) to WGS84. Fails with
  /// unknown_crs when `crs` is not an EPSG code PROJ knows, and with
  /// crs_transform_failed when PROJ cannot transform the point or the result is not
  /// a finite position with |lat| ≤ 90 and |lon| ≤ 180. Details name `crs` and the input.
  Verdict ToWgs84(std::string_view crs, double x, double y, LonLat& out);

  /// Number of CRSs with a cached transformation (for tests).
  size_t cached() const { return cache_.size(); }

 private:
  struct ContextDeleter {
    void operator()(pj_ctx* ctx) const;
  };
  struct PjDeleter {
    void operator()(PJconsts* pj) const;
  };
  using PjPtr = std::unique_ptr<PJconsts, PjDeleter>;
  // A code PROJ rejected keeps its error, so bad payloads do not rebuild it every time.
  struct Entry {
    PjPtr pj;
    bool unknown = false;  // PROJ does not know the code (else: no transformation)
    std::string error;
  };

  Entry& Lookup(int code);

  std::unique_ptr<pj_ctx, ContextDeleter> ctx_;
  std::unordered_map<int, Entry> cache_;
  Entry overflow_;  // the uncached entry once the cache is full
};

}  // namespace tributary
