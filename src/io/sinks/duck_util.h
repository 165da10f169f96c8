// Thin RAII wrappers over DuckDB's C API shared by the sinks that use DuckDB (parquet,
// duckdb): a database with one connection, query results, and an appender that fills
// data chunks column by column and appends them whole. Only in builds with DuckDB.
//
// Threading: one thread at a time per object (DuckDB itself may use worker threads).
#pragma once

#ifdef TRIBUTARY_HAVE_DUCKDB

#include <duckdb.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "core/time.h"

namespace tributary {

/// One column of a table the sinks create and append to.
struct DuckColumn {
  std::string_view name;
  duckdb_type type;
};

/// `s` as a DuckDB identifier / string literal.
std::string DuckQuoteIdent(std::string_view s);
std::string DuckQuoteLiteral(std::string_view s);
/// CREATE [OR REPLACE] TABLE `table` with `columns`; `tail` is appended inside the
/// parentheses (e.g. ", PRIMARY KEY (a, b)").
std::string DuckCreateTableSql(std::string_view create, std::string_view table,
                               const std::vector<DuckColumn>& columns, std::string_view tail = {});

class DuckDbResult {
 public:
  DuckDbResult() = default;
  DuckDbResult(const DuckDbResult&) = delete;
  DuckDbResult& operator=(const DuckDbResult&) = delete;
  ~DuckDbResult() { duckdb_destroy_result(&result_); }
  duckdb_result* get() { return &result_; }

  idx_t rows() { return duckdb_row_count(&result_); }
  /// Rows an INSERT, UPDATE or DELETE changed.
  idx_t changed() { return duckdb_rows_changed(&result_); }
  std::string Text(idx_t col, idx_t row);
  int64_t Int(idx_t col, idx_t row) { return duckdb_value_int64(&result_, col, row); }
  double Double(idx_t col, idx_t row) { return duckdb_value_double(&result_, col, row); }
  bool IsNull(idx_t col, idx_t row) { return duckdb_value_is_null(&result_, col, row); }

 private:
  duckdb_result result_{};
};

class DuckDbConnection {
 public:
  DuckDbConnection() = default;
  DuckDbConnection(const DuckDbConnection&) = delete;
  DuckDbConnection& operator=(const DuckDbConnection&) = delete;
  ~DuckDbConnection() { Close(); }

  /// Open the database file `path` (created if missing), or an in-memory database when
  /// `path` is empty, with `threads` worker threads.
  Status Open(const std::string& path, int threads);
  void Close();
  bool is_open() const { return conn_ != nullptr; }
  duckdb_connection get() const { return conn_; }

  /// Run `sql`; errors quote DuckDB's message. Disk-level failures are retryable.
  Status Exec(const std::string& sql, DuckDbResult* out = nullptr);

 private:
  duckdb_database db_ = nullptr;
  duckdb_connection conn_ = nullptr;
};

/// Writes values into the row `row()` of a data chunk's vectors, column by column.
class DuckChunkWriter {
 public:
  /// Write into `chunk` (not owned) from its first row; `columns` vectors.
  void Attach(duckdb_data_chunk chunk, size_t columns);

  void Str(int c, std::string_view v) {
    duckdb_vector_assign_string_element_len(vectors_[c], row_, v.data() != nullptr ? v.data() : "",
                                            v.size());
  }
  void StrOrNull(int c, std::string_view v) {
    if (v.empty()) {
      Null(c);
    } else {
      Str(c, v);
    }
  }
  /// Finite values; NaN and infinities become NULL.
  void F64(int c, double v) {
    if (std::isfinite(v)) {
      static_cast<double*>(data_[c])[row_] = v;
    } else {
      Null(c);
    }
  }
  void I64(int c, int64_t v) { static_cast<int64_t*>(data_[c])[row_] = v; }
  void I64OrNull(int c, int64_t v) {  // -1 means "not applicable"
    if (v < 0) {
      Null(c);
    } else {
      I64(c, v);
    }
  }
  void I32(int c, int32_t v) { static_cast<int32_t*>(data_[c])[row_] = v; }
  void I32OrNull(int c, int32_t v) {
    if (v < 0) {
      Null(c);
    } else {
      I32(c, v);
    }
  }
  void Date(int c, TimeUs t) { I32(c, static_cast<int32_t>(FloorDiv(t, kMicrosPerDay))); }
  void Null(int c) { duckdb_validity_set_row_invalid(validity_[c], row_); }

  idx_t row() const { return row_; }
  idx_t capacity() const { return capacity_; }
  /// Go on to the next row (the caller stops at capacity()).
  void NextRow() { ++row_; }

 protected:
  /// Point the column pointers at `chunk`'s vectors.
  void Refresh(duckdb_data_chunk chunk);

  std::vector<duckdb_vector> vectors_;
  std::vector<void*> data_;
  std::vector<uint64_t*> validity_;
  idx_t row_ = 0;
  idx_t capacity_ = 0;
};

/// One data chunk being filled row by row, appended to a table through an appender when
/// full. Values are written straight into the chunk's vectors.
class DuckChunkAppender : public DuckChunkWriter {
 public:
  DuckChunkAppender() = default;
  DuckChunkAppender(const DuckChunkAppender&) = delete;
  DuckChunkAppender& operator=(const DuckChunkAppender&) = delete;
  ~DuckChunkAppender() { Destroy(); }

  /// Append to `table` (optionally in `schema`, e.g. "temp") whose columns are `columns`.
  Status Create(DuckDbConnection& conn, const std::string& table,
                const std::vector<DuckColumn>& columns, const char* schema = nullptr);
  void Destroy();

  /// Finish the row; append the chunk when it is full.
  Status EndRow() {
    if (++row_ == capacity_) return Flush();
    return Status::Ok();
  }
  /// Append the rows of the chunk so far to the appender's buffer.
  Status Flush();
  /// Flush the chunk and make every appended row visible to queries.
  Status FlushAll();

 private:
  std::string AppenderError() const;

  duckdb_appender appender_ = nullptr;
  duckdb_data_chunk chunk_ = nullptr;
  std::string table_;
};

}  // namespace tributary

#endif  // TRIBUTARY_HAVE_DUCKDB
