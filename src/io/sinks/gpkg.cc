#include "io/sinks/gpkg.h"

#include <cstring>

#include "io/sinks/sqlite_util.h"

namespace tributary {

namespace {

// The metadata tables as GeoPackage 1.3 defines them (clauses 1.1.2, 1.1.3, 2.1.5).
constexpr std::string_view kGpkgTablesSql = R"sql(
CREATE TABLE IF NOT EXISTS gpkg_spatial_ref_sys (
  srs_name TEXT NOT NULL,
  srs_id INTEGER PRIMARY KEY,
  organization TEXT NOT NULL,
  organization_coordsys_id INTEGER NOT NULL,
  definition TEXT NOT NULL,
  description TEXT
);
CREATE TABLE IF NOT EXISTS gpkg_contents (
  table_name TEXT NOT NULL PRIMARY KEY,
  data_type TEXT NOT NULL,
  identifier TEXT UNIQUE,
  description TEXT DEFAULT '',
  last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  min_x DOUBLE,
  min_y DOUBLE,
  max_x DOUBLE,
  max_y DOUBLE,
  srs_id INTEGER,
  CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id)
);
CREATE TABLE IF NOT EXISTS gpkg_geometry_columns (
  table_name TEXT NOT NULL,
  column_name TEXT NOT NULL,
  geometry_type_name TEXT NOT NULL,
  srs_id INTEGER NOT NULL,
  z TINYINT NOT NULL,
  m TINYINT NOT NULL,
  CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
  CONSTRAINT uk_gc_table_name UNIQUE (table_name),
  CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
  CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id)
);
INSERT OR IGNORE INTO gpkg_spatial_ref_sys
  (srs_name, srs_id, organization, organization_coordsys_id, definition, description)
VALUES
  ('Undefined cartesian SRS', -1, 'NONE', -1, 'undefined',
   'undefined cartesian coordinate reference system'),
  ('Undefined geographic SRS', 0, 'NONE', 0, 'undefined',
   'undefined geographic coordinate reference system'),
  ('WGS 84 geodetic', 4326, 'EPSG', 4326,
   'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]',
   'longitude/latitude coordinates in decimal degrees on the WGS 84 spheroid');
)sql";

void PutLe32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

void PutLeDouble(uint8_t* p, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(bits >> (8 * i));
}

// SQL function tributary_gpkg_point(lon, lat): the GeoPackage point blob, NULL when a
// coordinate is missing. Used to fill the geometry of rows stored before it existed.
void GpkgPointFunction(sqlite3_context* ctx, int /*argc*/, sqlite3_value** argv) {
  if (sqlite3_value_type(argv[0]) == SQLITE_NULL || sqlite3_value_type(argv[1]) == SQLITE_NULL) {
    sqlite3_result_null(ctx);
    return;
  }
  double lon = sqlite3_value_double(argv[0]);
  double lat = sqlite3_value_double(argv[1]);
  if (!HasPosition(lon, lat)) {
    sqlite3_result_null(ctx);
    return;
  }
  uint8_t blob[kGpkgPointSize];
  EncodeGpkgPoint(lon, lat, blob);
  sqlite3_result_blob(ctx, blob, static_cast<int>(sizeof blob), SQLITE_TRANSIENT);
}

std::string Quoted(std::string_view identifier) {
  std::string out = "\"";
  for (char c : identifier) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

}  // namespace

void EncodeWkbPoint(double lon, double lat, uint8_t (&out)[kWkbPointSize]) {
  out[0] = 1;           // little-endian (NDR)
  PutLe32(out + 1, 1);  // wkbPoint
  PutLeDouble(out + 5, lon);
  PutLeDouble(out + 13, lat);
}

void EncodeGpkgPoint(double lon, double lat, uint8_t (&out)[kGpkgPointSize]) {
  out[0] = 'G';
  out[1] = 'P';
  out[2] = 0;     // version 1
  out[3] = 0x01;  // standard binary, not empty, no envelope, little-endian
  PutLe32(out + 4, static_cast<uint32_t>(kWgs84SrsId));
  uint8_t wkb[kWkbPointSize];
  EncodeWkbPoint(lon, lat, wkb);
  std::memcpy(out + 8, wkb, kWkbPointSize);
}

Status CreateGpkgMetadata(SqliteDb& db) {
  TRIB_RETURN_IF_ERROR(db.Exec("PRAGMA application_id = " + std::to_string(kGpkgApplicationId) +
                               "; PRAGMA user_version = " + std::to_string(kGpkgUserVersion)));
  return db.Exec(kGpkgTablesSql);
}

Status RegisterGpkgTable(SqliteDb& db, std::string_view table, GpkgDataType type,
                         std::string_view description, std::string_view geom_column) {
  bool features = type == GpkgDataType::kFeatures;
  TRIB_ASSIGN_OR_RETURN(
      SqliteStatement contents,
      db.Prepare("INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, "
                 "description, srs_id) VALUES (?1, ?2, ?1, ?3, ?4)"));
  contents.BindText(1, table);
  contents.BindText(2, features ? "features" : "attributes");
  contents.BindText(3, description);
  if (features) {
    contents.BindInt(4, kWgs84SrsId);
  } else {
    contents.BindNull(4);
  }
  TRIB_RETURN_IF_ERROR(contents.Run());
  if (!features) return Status::Ok();
  TRIB_ASSIGN_OR_RETURN(
      SqliteStatement columns,
      db.Prepare("INSERT OR IGNORE INTO gpkg_geometry_columns (table_name, column_name, "
                 "geometry_type_name, srs_id, z, m) VALUES (?1, ?2, 'POINT', ?3, 0, 0)"));
  columns.BindText(1, table);
  columns.BindText(2, geom_column);
  columns.BindInt(3, kWgs84SrsId);
  return columns.Run();
}

Status AddGpkgPointColumn(SqliteDb& db, std::string_view table, std::string_view lon_column,
                          std::string_view lat_column, std::string_view geom_column) {
  TRIB_ASSIGN_OR_RETURN(SqliteStatement has,
                        db.Prepare("SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2"));
  has.BindText(1, table);
  has.BindText(2, geom_column);
  TRIB_ASSIGN_OR_RETURN(bool row, has.Step());
  bool exists = row && has.ColumnInt(0) > 0;
  has.Finalize();
  std::string t = Quoted(table);
  std::string g = Quoted(geom_column);
  if (!exists) {
    TRIB_RETURN_IF_ERROR(db.Exec("ALTER TABLE " + t + " ADD COLUMN " + g + " POINT"));
  }
  int rc = sqlite3_create_function_v2(db.get(), "tributary_gpkg_point", 2,
                                      SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr,
                                      &GpkgPointFunction, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return db.Error(rc, "register tributary_gpkg_point");
  std::string lon = Quoted(lon_column);
  std::string lat = Quoted(lat_column);
  TRIB_RETURN_IF_ERROR(db.Exec("UPDATE " + t + " SET " + g + " = tributary_gpkg_point(" + lon +
                               ", " + lat + ") WHERE " + g + " IS NULL AND " + lon +
                               " IS NOT NULL AND " + lat + " IS NOT NULL"));
  // Bounds of what is stored (NULL for an empty layer).
  TRIB_ASSIGN_OR_RETURN(
      SqliteStatement bounds,
      db.Prepare("UPDATE gpkg_contents SET (min_x, min_y, max_x, max_y) = (SELECT min(" + lon +
                 "), min(" + lat + "), max(" + lon + "), max(" + lat + ") FROM " + t + " WHERE " +
                 g + " IS NOT NULL) WHERE table_name = ?1"));
  bounds.BindText(1, table);
  return bounds.Run();
}

Status ExtendGpkgBounds(SqliteDb& db, std::string_view table, const GeoBounds& bounds) {
  if (bounds.empty) return Status::Ok();
  TRIB_ASSIGN_OR_RETURN(
      SqliteStatement s,
      db.Prepare("UPDATE gpkg_contents SET min_x = min(coalesce(min_x, ?2), ?2), "
                 "min_y = min(coalesce(min_y, ?3), ?3), max_x = max(coalesce(max_x, ?4), ?4), "
                 "max_y = max(coalesce(max_y, ?5), ?5), "
                 "last_change = strftime('%Y-%m-%dT%H:%M:%fZ','now') WHERE table_name = ?1"));
  s.BindText(1, table);
  s.BindDouble(2, bounds.min_x);
  s.BindDouble(3, bounds.min_y);
  s.BindDouble(4, bounds.max_x);
  s.BindDouble(5, bounds.max_y);
  return s.Run();
}

}  // namespace tributary
