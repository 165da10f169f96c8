// OGC GeoPackage 1.3 and WKB points: what makes the SQLite store a GeoPackage that
// QGIS and GDAL open directly, and the point encodings the sinks share.
//
// A GeoPackage is a SQLite file with application_id 'GPKG' (0x47504B47), user_version
// 10300 (version 1.3.0) and three metadata tables: gpkg_spatial_ref_sys (the coordinate
// reference systems, with the required rows -1, 0 and 4326), gpkg_contents (one row per
// layer: 'features' for tables with geometry, 'attributes' for plain tables) and
// gpkg_geometry_columns (the geometry column of each feature table). A geometry value is
// a "GeoPackage binary" blob: an 8-byte header ('GP', version 0, flags, srs_id) followed
// by standard WKB. Coordinates are always x = longitude, y = latitude in degrees.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace tributary {

class SqliteDb;

/// PRAGMA application_id of a GeoPackage: the ASCII bytes 'GPKG'.
inline constexpr int32_t kGpkgApplicationId = 0x47504B47;
/// PRAGMA user_version of a GeoPackage 1.3.0 file.
inline constexpr int32_t kGpkgUserVersion = 10300;
/// EPSG code of WGS 84 longitude/latitude, the CRS of every tributary layer.
inline constexpr int32_t kWgs84SrsId = 4326;

/// Size of a little-endian WKB Point (byte order, type, x, y).
inline constexpr size_t kWkbPointSize = 21;
/// Size of a GeoPackage binary Point without envelope (8-byte header + WKB).
inline constexpr size_t kGpkgPointSize = 8 + kWkbPointSize;

/// True when both coordinates are finite (a point can be written).
inline bool HasPosition(double lon, double lat) {
  return lon - lon == 0.0 && lat - lat == 0.0;  // false for NaN and ±Inf
}

/// Write a little-endian WKB Point (x = lon, y = lat) into `out`.
void EncodeWkbPoint(double lon, double lat, uint8_t (&out)[kWkbPointSize]);
/// Write a GeoPackage binary Point (srs 4326, no envelope, little-endian) into `out`.
void EncodeGpkgPoint(double lon, double lat, uint8_t (&out)[kGpkgPointSize]);

/// A bounding box in degrees that grows with each point; empty until the first.
struct GeoBounds {
  double min_x = 0, min_y = 0, max_x = 0, max_y = 0;
  bool empty = true;

  void Add(double lon, double lat) {
    if (empty) {
      min_x = max_x = lon;
      min_y = max_y = lat;
      empty = false;
      return;
    }
    if (lon < min_x) min_x = lon;
    if (lon > max_x) max_x = lon;
    if (lat < min_y) min_y = lat;
    if (lat > max_y) max_y = lat;
  }
};

/// What gpkg_contents says about one table.
enum class GpkgDataType { kFeatures, kAttributes };

/// Create the GeoPackage metadata tables if missing, insert the required spatial
/// reference systems and set application_id and user_version. Idempotent; run it inside
/// the caller's transaction.
Status CreateGpkgMetadata(SqliteDb& db);

/// Register `table` in gpkg_contents (and, for features, its POINT column `geom_column`
/// with srs 4326 in gpkg_geometry_columns). An existing registration is kept.
Status RegisterGpkgTable(SqliteDb& db, std::string_view table, GpkgDataType type,
                         std::string_view description, std::string_view geom_column = "geom");

/// Add a POINT column `geom_column` to `table` when it has none, fill it for rows with a
/// NULL geometry from the columns `lon_column`/`lat_column`, and set the layer's bounds
/// in gpkg_contents from the stored points.
Status AddGpkgPointColumn(SqliteDb& db, std::string_view table, std::string_view lon_column,
                          std::string_view lat_column, std::string_view geom_column = "geom");

/// Widen the bounds of `table` in gpkg_contents to include `bounds` and set last_change
/// to now. Does nothing for empty bounds.
Status ExtendGpkgBounds(SqliteDb& db, std::string_view table, const GeoBounds& bounds);

}  // namespace tributary
