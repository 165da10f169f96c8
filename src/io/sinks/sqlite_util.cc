#include "io/sinks/sqlite_util.h"

#include <cstring>
#include <utility>

namespace tributary {

namespace {

// SQLite's message for the last failure on `db`, with the operating system's reason
// for file-level failures ("unable to open database file: Permission denied").
std::string ConnectionMessage(sqlite3* db, int rc) {
  if (db == nullptr) return sqlite3_errstr(rc);
  std::string msg = sqlite3_errmsg(db);
  switch (rc & 0xff) {
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_PERM: {
      int sys = sqlite3_system_errno(db);
      if (sys != 0) msg += std::string(": ") + std::strerror(sys);
      break;
    }
    default:
      break;
  }
  return msg;
}

}  // namespace

Status SqliteStatus(int rc, const std::string& path, std::string_view action,
                    std::string_view sqlite_message) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return Status::Ok();
  std::string msg = "sqlite " + path + ": " + std::string(action) + ": ";
  std::string_view generic = sqlite3_errstr(rc);
  if (sqlite_message.empty() || sqlite_message == generic) {
    msg += generic;
    msg += " (code " + std::to_string(rc) + ")";
  } else {
    msg += sqlite_message;
    msg += " (";
    msg += generic;
    msg += ", code " + std::to_string(rc) + ")";
  }
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Status(StatusCode::kUnavailable, std::move(msg), true);
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return Status(StatusCode::kIoError, std::move(msg), true);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Status(StatusCode::kCorrupt, std::move(msg), false);
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
    case SQLITE_TOOBIG:
      return Status(StatusCode::kInvalidArgument, std::move(msg), false);
    case SQLITE_INTERRUPT:
      return Status(StatusCode::kCancelled, std::move(msg), false);
    case SQLITE_ERROR:
    case SQLITE_MISUSE:
    case SQLITE_INTERNAL:
      return Status(StatusCode::kInternal, std::move(msg), false);
    default:
      return Status(StatusCode::kIoError, std::move(msg), false);
  }
}

// ---------------------------------------------------------------------------
// SqliteStatement

SqliteStatement::SqliteStatement(SqliteStatement&& other) noexcept
    : stmt_(std::exchange(other.stmt_, nullptr)), path_(other.path_) {}

SqliteStatement& SqliteStatement::operator=(SqliteStatement&& other) noexcept {
  if (this != &other) {
    Finalize();
    stmt_ = std::exchange(other.stmt_, nullptr);
    path_ = other.path_;
  }
  return *this;
}

void SqliteStatement::Finalize() {
  if (stmt_ != nullptr) {
    sqlite3_finalize(stmt_);
    stmt_ = nullptr;
  }
}

Result<bool> SqliteStatement::Step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  // sqlite3_step returns the extended code; the connection's message explains it.
  std::string message = ConnectionMessage(sqlite3_db_handle(stmt_), rc);
  std::string sql = sqlite3_sql(stmt_) != nullptr ? sqlite3_sql(stmt_) : "";
  if (sql.size() > 60) sql = sql.substr(0, 57) + "...";
  sqlite3_reset(stmt_);
  static const std::string kUnknown = "<unknown>";
  return SqliteStatus(rc, path_ != nullptr ? *path_ : kUnknown, "running '" + sql + "'", message);
}

Status SqliteStatement::Run() {
  while (true) {
    Result<bool> row = Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
  }
  sqlite3_reset(stmt_);
  return Status::Ok();
}

std::string_view SqliteStatement::ColumnText(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  if (p == nullptr) return {};
  return std::string_view(reinterpret_cast<const char*>(p),
                          static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
}

std::string_view SqliteStatement::ColumnBlob(int col) const {
  const void* p = sqlite3_column_blob(stmt_, col);
  if (p == nullptr) return {};
  return std::string_view(static_cast<const char*>(p),
                          static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
}

// ---------------------------------------------------------------------------
// SqliteDb

Status SqliteDb::Open(const std::string& path, bool read_only, int busy_timeout_ms) {
  Close();
  path_ = path;
  int flags = SQLITE_OPEN_NOMUTEX |
              (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = ConnectionMessage(db, rc);
    sqlite3_close_v2(db);  // a handle is returned even on failure (or nullptr)
    return SqliteStatus(rc, path_, "cannot open the database", message);
  }
  db_ = db;
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, busy_timeout_ms);
  return Status::Ok();
}

void SqliteDb::Close() {
  if (db_ != nullptr) {
    // close_v2 defers the close until any forgotten statement is finalized.
    sqlite3_close_v2(db_);
    db_ = nullptr;
  }
}

Status SqliteDb::Error(int rc, std::string_view action) const {
  return SqliteStatus(rc, path_, action, ConnectionMessage(db_, rc));
}

Status SqliteDb::Exec(std::string_view sql) {
  if (db_ == nullptr) return Status::Internal("sqlite " + path_ + ": database is not open");
  std::string text(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, text.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status::Ok();
  sqlite3_free(err);  // the same text as the connection's message
  std::string message = ConnectionMessage(db_, rc);
  std::string head = text.substr(0, text.find_first_of("(\n"));
  if (head.size() > 60) head = head.substr(0, 57) + "...";
  return SqliteStatus(rc, path_, "running '" + head + "'", message);
}

Result<SqliteStatement> SqliteDb::Prepare(std::string_view sql) {
  if (db_ == nullptr) return Status::Internal("sqlite " + path_ + ": database is not open");
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    std::string head(sql.substr(0, 60));
    return Error(rc, "preparing '" + head + "'");
  }
  return SqliteStatement(stmt, &path_);
}

Result<int64_t> SqliteDb::QueryInt(std::string_view sql) {
  TRIB_ASSIGN_OR_RETURN(SqliteStatement stmt, Prepare(sql));
  TRIB_ASSIGN_OR_RETURN(bool row, stmt.Step());
  return row ? stmt.ColumnInt(0) : int64_t{0};
}

Result<std::string> SqliteDb::QueryText(std::string_view sql) {
  TRIB_ASSIGN_OR_RETURN(SqliteStatement stmt, Prepare(sql));
  TRIB_ASSIGN_OR_RETURN(bool row, stmt.Step());
  return row ? std::string(stmt.ColumnText(0)) : std::string();
}

}  // namespace tributary
