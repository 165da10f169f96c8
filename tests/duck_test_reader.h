// Reading DuckDB databases and Parquet files back in tests: rows come back as text,
// columns joined by '|' and NULL as "NULL". Only in builds with DuckDB.
#pragma once

#ifdef TRIBUTARY_HAVE_DUCKDB

#include <duckdb.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "io/sinks/gpkg.h"

namespace tributary::testing {

class DuckTestReader {
 public:
  /// An in-memory database, or the database file `path`.
  explicit DuckTestReader(const std::string& path = {}) {
    EXPECT_EQ(duckdb_open(path.empty() ? nullptr : path.c_str(), &db_), DuckDBSuccess) << path;
    EXPECT_EQ(duckdb_connect(db_, &conn_), DuckDBSuccess);
  }
  ~DuckTestReader() {
    duckdb_disconnect(&conn_);
    duckdb_close(&db_);
  }
  DuckTestReader(const DuckTestReader&) = delete;
  DuckTestReader& operator=(const DuckTestReader&) = delete;

  std::vector<std::string> Rows(const std::string& sql) {
    duckdb_result r;
    std::vector<std::string> out;
    if (duckdb_query(conn_, sql.c_str(), &r) != DuckDBSuccess) {
      ADD_FAILURE() << sql << ": " << duckdb_result_error(&r);
      duckdb_destroy_result(&r);
      return out;
    }
    idx_t cols = duckdb_column_count(&r);
    idx_t rows = duckdb_row_count(&r);
    for (idx_t row = 0; row < rows; ++row) {
      std::string line;
      for (idx_t c = 0; c < cols; ++c) {
        if (c > 0) line += "|";
        if (duckdb_value_is_null(&r, c, row)) {
          line += "NULL";
        } else {
          char* v = duckdb_value_varchar(&r, c, row);
          line += v;
          duckdb_free(v);
        }
      }
      out.push_back(line);
    }
    duckdb_destroy_result(&r);
    return out;
  }
  std::string One(const std::string& sql) {
    std::vector<std::string> rows = Rows(sql);
    return rows.size() == 1 ? rows[0] : "<" + std::to_string(rows.size()) + " rows>";
  }

 private:
  duckdb_database db_ = nullptr;
  duckdb_connection conn_ = nullptr;
};

/// Hex of the WKB point, as DuckDB's hex() writes it.
inline std::string WkbHex(double lon, double lat) {
  uint8_t wkb[kWkbPointSize];
  EncodeWkbPoint(lon, lat, wkb);
  static const char* kDigits = "0123456789ABCDEF";
  std::string h;
  for (uint8_t byte : wkb) {
    h += kDigits[byte >> 4];
    h += kDigits[byte & 15];
  }
  return h;
}

}  // namespace tributary::testing

#endif  // TRIBUTARY_HAVE_DUCKDB
