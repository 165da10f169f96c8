// RAII wrappers for the SQLite C API: one connection (SqliteDb) and its prepared
// statements (SqliteStatement), with errors turned into Status values that name the
// database file and SQLite's own message.
//
// Threading: a SqliteDb and its statements are used by one thread at a time (the
// connection is opened with SQLITE_OPEN_NOMUTEX); moving them between threads with a
// happens-before edge (a queue, a join) is fine.
//
// Lifetime: statements hold the raw connection pointer, so every SqliteStatement must
// be destroyed (or Finalize()d) before its SqliteDb. Declare statements after the
// database in a class so that destruction order takes care of it.
#pragma once

#include <sqlite3.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace tributary {

/// Turn a SQLite result code into a Status naming `path`, the action and SQLite's message.
/// Busy/locked/full/nomem are retryable; corrupt/notadb map to kCorrupt.
Status SqliteStatus(int rc, const std::string& path, std::string_view action,
                    std::string_view sqlite_message = {});

/// A prepared statement. Parameter and column indexes follow SQLite: binds are 1-based,
/// columns 0-based.
class SqliteStatement {
 public:
  SqliteStatement() = default;
  SqliteStatement(const SqliteStatement&) = delete;
  SqliteStatement& operator=(const SqliteStatement&) = delete;
  SqliteStatement(SqliteStatement&& other) noexcept;
  SqliteStatement& operator=(SqliteStatement&& other) noexcept;
  ~SqliteStatement() { Finalize(); }

  bool valid() const { return stmt_ != nullptr; }
  sqlite3_stmt* get() const { return stmt_; }
  /// Release the statement (idempotent).
  void Finalize();

  /// Bind an integer.
  void BindInt(int index, int64_t v) { sqlite3_bind_int64(stmt_, index, v); }
  /// Bind a double; NaN and ±Inf become NULL (SQLite has no NaN).
  void BindDouble(int index, double v) {
    if (std::isfinite(v)) {
      sqlite3_bind_double(stmt_, index, v);
    } else {
      sqlite3_bind_null(stmt_, index);
    }
  }
  void BindNull(int index) { sqlite3_bind_null(stmt_, index); }
  /// Bind text without copying: `v` must stay unchanged until the statement is stepped
  /// and the parameter rebound (interned Symbols and buffers owned by the caller). An
  /// empty view binds '' (never NULL, even when its data pointer is null).
  void BindText(int index, std::string_view v) {
    sqlite3_bind_text(stmt_, index, v.data() != nullptr ? v.data() : "", static_cast<int>(v.size()),
                      SQLITE_STATIC);
  }
  /// Bind text, or NULL when `v` is empty.
  void BindTextOrNull(int index, std::string_view v) {
    if (v.empty()) {
      BindNull(index);
    } else {
      BindText(index, v);
    }
  }
  /// Bind bytes as a BLOB without copying (same lifetime rule as BindText). An empty
  /// view binds a zero-length BLOB, not NULL.
  void BindBlob(int index, std::string_view bytes) {
    sqlite3_bind_blob(stmt_, index, bytes.empty() ? "" : bytes.data(),
                      static_cast<int>(bytes.size()), SQLITE_STATIC);
  }

  /// Step once: true when a row is available, false when done.
  Result<bool> Step();
  /// Step to completion (for statements that return no rows) and reset.
  Status Run();
  /// Reset to run again; bindings are kept.
  void Reset() { sqlite3_reset(stmt_); }

  int64_t ColumnInt(int col) const { return sqlite3_column_int64(stmt_, col); }
  double ColumnDouble(int col) const { return sqlite3_column_double(stmt_, col); }
  bool ColumnIsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  /// Text of a column ("" for NULL); valid until the next Step/Reset.
  std::string_view ColumnText(int col) const;
  /// Bytes of a BLOB (or text) column; valid until the next Step/Reset.
  std::string_view ColumnBlob(int col) const;

 private:
  friend class SqliteDb;
  SqliteStatement(sqlite3_stmt* stmt, const std::string* path) : stmt_(stmt), path_(path) {}
  sqlite3_stmt* stmt_ = nullptr;
  const std::string* path_ = nullptr;  // the owning SqliteDb's path, for messages
};

/// One SQLite connection. Not movable: its statements point at its path.
class SqliteDb {
 public:
  SqliteDb() = default;
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;
  ~SqliteDb() { Close(); }

  /// Open (and by default create) the database file at `path`. Read-write unless
  /// `read_only`. Sets a busy timeout so a concurrent reader or writer makes writes
  /// wait up to `busy_timeout_ms` before failing with a retryable error.
  Status Open(const std::string& path, bool read_only = false, int busy_timeout_ms = 5000);
  /// Close the connection (idempotent). Statements must already be finalized.
  void Close();

  bool is_open() const { return db_ != nullptr; }
  sqlite3* get() const { return db_; }
  const std::string& path() const { return path_; }

  /// Run one or more SQL statements that return no rows of interest.
  Status Exec(std::string_view sql);
  /// Prepare a statement for repeated use.
  Result<SqliteStatement> Prepare(std::string_view sql);
  /// Run a query that returns one integer (e.g. "PRAGMA user_version").
  Result<int64_t> QueryInt(std::string_view sql);
  /// Run a query that returns one text value ("" for NULL or no row).
  Result<std::string> QueryText(std::string_view sql);

  /// Rows changed by the most recent INSERT/UPDATE/DELETE on this connection.
  int64_t Changes() const { return sqlite3_changes64(db_); }
  /// True when no transaction is open (SQLite may roll one back by itself after
  /// SQLITE_FULL, SQLITE_IOERR, SQLITE_BUSY or SQLITE_NOMEM).
  bool autocommit() const { return db_ == nullptr || sqlite3_get_autocommit(db_) != 0; }

  /// A Status for `rc` naming this file, the action and the connection's last message.
  Status Error(int rc, std::string_view action) const;

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
};

}  // namespace tributary
