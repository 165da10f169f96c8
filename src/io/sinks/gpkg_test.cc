#include "io/sinks/gpkg.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>

#include "io/sinks/sqlite_sink.h"
#include "io/sinks/sqlite_util.h"
#include "test_util.h"

namespace tributary {
namespace {

const TimeUs kT0 = 1714564800000000;  // 2024-05-01T12:00:00Z

std::string Hex(std::string_view bytes) {
  static const char* kDigits = "0123456789ABCDEF";
  std::string out;
  for (char c : bytes) {
    auto b = static_cast<unsigned char>(c);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

template <size_t N>
std::string_view Bytes(const uint8_t (&buf)[N]) {
  return std::string_view(reinterpret_cast<const char*>(buf), N);
}

Reading At(const char* device, TimeUs t, double lon, double lat) {
  Reading r;
  r.device = Intern(device);
  r.metric = Intern("pm25");
  r.value = 10;
  r.event_time = t;
  r.arrival_time = t + kMicrosPerSecond;
  r.lon = lon;
  r.lat = lat;
  return r;
}

TEST(GpkgTest, EncodesWkbAndGeoPackagePoints) {
  uint8_t wkb[kWkbPointSize];
  EncodeWkbPoint(1.0, 2.0, wkb);
  // 01 | 01000000 | 1.0 as little-endian double | 2.0
  EXPECT_EQ(Hex(Bytes(wkb)), "0101000000000000000000F03F0000000000000040");
  uint8_t gp[kGpkgPointSize];
  EncodeGpkgPoint(16.3738, 48.2082, gp);
  // 'G' 'P', version 0, flags 0x01 (little-endian, no envelope), srs_id 4326 = 0x10E6.
  EXPECT_EQ(Hex(Bytes(gp)).substr(0, 16), "47500001E6100000");
  EncodeWkbPoint(16.3738, 48.2082, wkb);
  EXPECT_EQ(std::memcmp(gp + 8, wkb, kWkbPointSize), 0);
  double x = 0, y = 0;
  std::memcpy(&x, gp + 13, 8);
  std::memcpy(&y, gp + 21, 8);
  EXPECT_EQ(x, 16.3738);
  EXPECT_EQ(y, 48.2082);
  EXPECT_TRUE(HasPosition(0, 0));
  EXPECT_FALSE(HasPosition(NAN, 1));
  EXPECT_FALSE(HasPosition(1, INFINITY));
}

class GpkgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_.ledger = &ledger_;
    ctx_.data_dir = dir_.path();
  }

  // Write readings (two placed, one without position), a window and a late record,
  // a quarantined payload, and commit.
  void WriteSample() {
    SqliteSinkOptions o;
    o.name = "local";
    auto sink = MakeSqliteSink(o);
    ASSERT_TRUE(sink->Open(ctx_).ok());
    Batch b;
    b.readings.push_back(At("a", kT0, 16.3738, 48.2082));
    b.readings.push_back(At("b", kT0, 16.40, 48.10));
    b.readings.push_back(At("c", kT0, NAN, NAN));
    WindowResult w;
    w.window = Intern("zone_1m");
    w.group_by = Intern("zone");
    w.group = Intern("zone-a");
    w.metric = Intern("pm25");
    w.start = kT0;
    w.end = kT0 + kMicrosPerMinute;
    w.count = 2;
    w.centroid_lon = 16.38;
    w.centroid_lat = 48.15;
    b.windows.push_back(w);
    LateRecord l;
    l.reading = At("a", kT0 - kMicrosPerHour, 16.2, 48.3);
    l.window = Intern("zone_1m");
    l.lateness = kMicrosPerMinute;
    b.late.push_back(l);
    QuarantineRecord q;
    q.reason = Intern("malformed_json");
    q.raw = "{oops";
    q.arrival_time = kT0;
    b.quarantine.push_back(q);
    ASSERT_TRUE(sink->Write(b).ok());
    ASSERT_TRUE(sink->Commit().ok());
    sink->Close();
  }

  std::string Store() const { return dir_.File("tributary.gpkg"); }

  std::unique_ptr<SqliteDb> Reader() {
    auto db = std::make_unique<SqliteDb>();
    Status st = db->Open(Store(), /*read_only=*/true);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return db;
  }

  testing::TempDir dir_;
  Ledger ledger_;
  RunContext ctx_;
};

TEST_F(GpkgStoreTest, DefaultStoreIsAGeoPackage) {
  WriteSample();
  auto db = Reader();
  EXPECT_EQ(*db->QueryInt("PRAGMA application_id"), 0x47504B47);
  EXPECT_EQ(*db->QueryInt("PRAGMA user_version"), 10300);
  EXPECT_EQ(*db->QueryText("SELECT group_concat(srs_id, ',') FROM (SELECT srs_id FROM "
                           "gpkg_spatial_ref_sys ORDER BY srs_id)"),
            "-1,0,4326");
  EXPECT_EQ(*db->QueryText("SELECT organization || ':' || organization_coordsys_id FROM "
                           "gpkg_spatial_ref_sys WHERE srs_id = 4326"),
            "EPSG:4326");
  EXPECT_EQ(*db->QueryText("SELECT group_concat(table_name || '=' || data_type || '/' || "
                           "coalesce(srs_id, 'null'), ',') FROM (SELECT * FROM gpkg_contents "
                           "ORDER BY table_name)"),
            "late=features/4326,quarantine=attributes/null,readings=features/4326,"
            "windows=features/4326");
  EXPECT_EQ(*db->QueryText("SELECT group_concat(table_name || '.' || column_name || ':' || "
                           "geometry_type_name || '/' || srs_id || '/' || z || m, ',') FROM "
                           "(SELECT * FROM gpkg_geometry_columns ORDER BY table_name)"),
            "late.geom:POINT/4326/00,readings.geom:POINT/4326/00,windows.geom:POINT/4326/00");
  // The geometry column is declared with its geometry type; column names are unchanged.
  EXPECT_EQ(*db->QueryText("SELECT type FROM pragma_table_info('readings') WHERE name = 'geom'"),
            "POINT");
  EXPECT_EQ(*db->QueryInt("SELECT count(*) FROM pragma_table_info('readings') WHERE name IN "
                          "('id', 'device_id', 'lat', 'lon', 'provenance')"),
            5);
  // The last_change timestamps follow the GeoPackage format.
  std::string last_change =
      *db->QueryText("SELECT last_change FROM gpkg_contents WHERE table_name = 'readings'");
  EXPECT_EQ(last_change.size(), 24u) << last_change;
  EXPECT_EQ(last_change.back(), 'Z');
  EXPECT_EQ(*db->QueryText("PRAGMA foreign_key_check"), "");
  EXPECT_EQ(*db->QueryText("PRAGMA integrity_check"), "ok");
}

TEST_F(GpkgStoreTest, GeometryBlobsFollowThePositions) {
  WriteSample();
  auto db = Reader();
  uint8_t expected[kGpkgPointSize];
  auto stmt = db->Prepare("SELECT device_id, geom FROM readings ORDER BY device_id");
  ASSERT_TRUE(stmt.ok());
  ASSERT_TRUE(*stmt->Step());
  EncodeGpkgPoint(16.3738, 48.2082, expected);
  EXPECT_EQ(Hex(stmt->ColumnBlob(1)), Hex(Bytes(expected)));
  ASSERT_TRUE(*stmt->Step());
  EncodeGpkgPoint(16.40, 48.10, expected);
  EXPECT_EQ(Hex(stmt->ColumnBlob(1)), Hex(Bytes(expected)));
  ASSERT_TRUE(*stmt->Step());
  EXPECT_EQ(stmt->ColumnText(0), "c");
  EXPECT_TRUE(stmt->ColumnIsNull(1));  // no position: no geometry
  EXPECT_FALSE(*stmt->Step());
  stmt->Finalize();

  EncodeGpkgPoint(16.38, 48.15, expected);  // windows: from the centroid
  EXPECT_EQ(*db->QueryText("SELECT hex(geom) FROM windows"), Hex(Bytes(expected)));
  EncodeGpkgPoint(16.2, 48.3, expected);
  EXPECT_EQ(*db->QueryText("SELECT hex(geom) FROM late"), Hex(Bytes(expected)));

  // Layer extents are widened at commit from the rows stored.
  EXPECT_EQ(*db->QueryText("SELECT min_x || ',' || min_y || ',' || max_x || ',' || max_y FROM "
                           "gpkg_contents WHERE table_name = 'readings'"),
            "16.3738,48.1,16.4,48.2082");
  EXPECT_EQ(*db->QueryText("SELECT min_x || ',' || max_y FROM gpkg_contents WHERE table_name = "
                           "'late'"),
            "16.2,48.3");
  EXPECT_EQ(*db->QueryText("SELECT coalesce(min_x, 'null') FROM gpkg_contents WHERE table_name = "
                           "'quarantine'"),
            "null");
}

TEST_F(GpkgStoreTest, BoundsOnlyGrowAcrossCommits) {
  WriteSample();
  SqliteSinkOptions o;
  o.name = "local";
  auto sink = MakeSqliteSink(o);
  ASSERT_TRUE(sink->Open(ctx_).ok());
  Batch b;
  b.readings.push_back(At("z", kT0 + kMicrosPerMinute, 17.5, 48.12));
  ASSERT_TRUE(sink->Write(b).ok());
  ASSERT_TRUE(sink->Commit().ok());
  sink->Close();
  auto db = Reader();
  EXPECT_EQ(*db->QueryText("SELECT min_x || ',' || min_y || ',' || max_x || ',' || max_y FROM "
                           "gpkg_contents WHERE table_name = 'readings'"),
            "16.3738,48.1,17.5,48.2082");
}

TEST_F(GpkgStoreTest, UpgradesAVersionOneStoreInPlace) {
  {
    // A store as schema version 1 wrote it: no GeoPackage tables, no geom column.
    SqliteDb db;
    ASSERT_TRUE(db.Open(Store()).ok());
    ASSERT_TRUE(db.Exec(R"sql(
      CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL,
                                   applied_by TEXT NOT NULL);
      INSERT INTO schema_version VALUES (1, '2024-05-01T00:00:00Z', 'tributary');
      CREATE TABLE readings (id INTEGER PRIMARY KEY, device_id TEXT NOT NULL,
        metric TEXT NOT NULL, value REAL, unit TEXT, event_time_us INTEGER NOT NULL,
        event_time TEXT NOT NULL, arrival_time_us INTEGER NOT NULL, arrival_time TEXT NOT NULL,
        lat REAL, lon REAL, zone_id TEXT, h3 TEXT, qc_flags TEXT NOT NULL DEFAULT '',
        provenance TEXT);
      INSERT INTO readings (device_id, metric, value, event_time_us, event_time,
        arrival_time_us, arrival_time, lat, lon)
      VALUES ('old', 'pm25', 3, 1, 'x', 2, 'y', 48.5, 16.5),
             ('nowhere', 'pm25', 4, 1, 'x', 2, 'y', NULL, NULL);
    )sql")
                    .ok());
  }
  WriteSample();
  auto db = Reader();
  uint8_t expected[kGpkgPointSize];
  EncodeGpkgPoint(16.5, 48.5, expected);
  EXPECT_EQ(*db->QueryText("SELECT hex(geom) FROM readings WHERE device_id = 'old'"),
            Hex(Bytes(expected)));
  EXPECT_EQ(*db->QueryInt("SELECT geom IS NULL FROM readings WHERE device_id = 'nowhere'"), 1);
  EXPECT_EQ(*db->QueryInt("SELECT count(*) FROM readings WHERE geom IS NOT NULL"), 3);
  EXPECT_EQ(*db->QueryText("SELECT group_concat(version, ',') FROM schema_version"), "1,3");
  EXPECT_EQ(*db->QueryInt("SELECT count(*) FROM pragma_table_info('windows') WHERE name IN "
                          "('nowcast', 'aqi')"),
            2);
  EXPECT_EQ(*db->QueryInt("PRAGMA application_id"), kGpkgApplicationId);
  // Bounds cover the upgraded rows and the new ones.
  EXPECT_EQ(*db->QueryText("SELECT min_x || ',' || min_y || ',' || max_x || ',' || max_y FROM "
                           "gpkg_contents WHERE table_name = 'readings'"),
            "16.3738,48.1,16.5,48.5");
}

// GDAL (ogrinfo, from Debian's gdal-bin) is what QGIS uses to open the file: it must see
// point layers with the right feature counts and coordinates.
class OgrInfoTest : public GpkgStoreTest {
 protected:
  static std::string OgrInfo() {
    for (const char* p : {"/usr/bin/ogrinfo", "/usr/local/bin/ogrinfo"}) {
      if (std::filesystem::exists(p)) return p;
    }
    return {};
  }
};

TEST_F(OgrInfoTest, GdalOpensThePointLayers) {
  std::string ogrinfo = OgrInfo();
  if (ogrinfo.empty()) GTEST_SKIP() << "ogrinfo not installed (Debian package gdal-bin)";
  WriteSample();
  testing::CommandResult list = testing::RunCommand({ogrinfo, "-ro", "-q", Store()});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("readings (Point)"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("windows (Point)"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("late (Point)"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("quarantine (None)"), std::string::npos) << list.out;

  testing::CommandResult so = testing::RunCommand({ogrinfo, "-ro", "-so", Store(), "readings"});
  ASSERT_EQ(so.exit_code, 0) << so.err;
  EXPECT_NE(so.out.find("Geometry: Point"), std::string::npos) << so.out;
  EXPECT_NE(so.out.find("Feature Count: 3"), std::string::npos) << so.out;
  EXPECT_NE(so.out.find("Extent: (16.373800, 48.100000) - (16.400000, 48.208200)"),
            std::string::npos)
      << so.out;
  EXPECT_NE(so.out.find("WGS 84"), std::string::npos) << so.out;
  EXPECT_NE(so.out.find("FID Column = id"), std::string::npos) << so.out;
  EXPECT_NE(so.out.find("Geometry Column = geom"), std::string::npos) << so.out;
  EXPECT_NE(so.out.find("device_id: String"), std::string::npos) << so.out;
  EXPECT_EQ(so.err.find("ERROR"), std::string::npos) << so.err;
  EXPECT_EQ(so.err.find("Warning"), std::string::npos) << so.err;

  testing::CommandResult feature = testing::RunCommand(
      {ogrinfo, "-ro", "-q", Store(), "-sql", "SELECT * FROM readings WHERE device_id = 'a'"});
  ASSERT_EQ(feature.exit_code, 0) << feature.err;
  EXPECT_NE(feature.out.find("POINT (16.3738 48.2082)"), std::string::npos) << feature.out;

  testing::CommandResult windows = testing::RunCommand({ogrinfo, "-ro", "-so", Store(), "windows"});
  ASSERT_EQ(windows.exit_code, 0) << windows.err;
  EXPECT_NE(windows.out.find("Feature Count: 1"), std::string::npos) << windows.out;
}

}  // namespace
}  // namespace tributary
