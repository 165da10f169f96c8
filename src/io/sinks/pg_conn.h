// RAII wrappers for libpq handles (PGconn, PGresult) and the few calls the PostgreSQL
// sink, its tests and its benchmark need.
//
// Threading: one PgConnection is used by one thread at a time (libpq's rule).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"

struct pg_conn;
struct pg_result;

namespace tributary {

/// A query result; empty when the query failed before producing one.
class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(pg_result* r) : r_(r, &Free) {}
  pg_result* get() const { return r_.get(); }
  int rows() const;
  /// Text of one cell ("" for NULL).
  std::string Value(int row, int col) const;
  bool IsNull(int row, int col) const;
  /// Rows affected by INSERT/UPDATE/DELETE/COPY (PQcmdTuples), 0 when none.
  uint64_t Affected() const;

 private:
  static void Free(pg_result* r);
  std::unique_ptr<pg_result, void (*)(pg_result*)> r_{nullptr, &Free};
};

/// One connection to a PostgreSQL server.
class PgConnection {
 public:
  PgConnection() = default;
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  /// Connect with a libpq connection string ("host=... dbname=..." or a postgresql://
  /// URI). `application_name` and `connect_timeout_s` apply unless the string sets them.
  /// Server notices (e.g. "relation already exists, skipping") are not printed.
  Status Connect(const std::string& conninfo, const std::string& application_name,
                 int connect_timeout_s);
  void Close();
  bool connected() const;
  /// The server's major version as reported at connect time (e.g. 15), 0 if unknown.
  int server_major() const;

  /// Run one or more statements that return no rows of interest.
  Status Exec(std::string_view sql);
  /// Run a query and return its result (tuples or a command status).
  Result<PgResult> Query(std::string_view sql);
  /// Run a query expected to return one integer in its first cell.
  Result<int64_t> QueryInt(std::string_view sql);
  /// COPY ... FROM STDIN with `data` followed by `tail` as the whole input; returns the
  /// rows copied.
  Result<uint64_t> CopyIn(std::string_view copy_sql, std::string_view data,
                          std::string_view tail = {});

  /// A Status for the connection's last error. Errors on a broken connection and the
  /// classes that usually pass (serialization, deadlock, too many connections,
  /// admin shutdown) are retryable; errors in the SQL or the data are not.
  Status LastError(std::string_view what, pg_result* result = nullptr) const;
  /// SQLSTATE of the last error LastError reported ("" when the server sent none).
  const std::string& last_sqlstate() const { return last_sqlstate_; }

 private:
  pg_conn* conn_ = nullptr;
  mutable std::string last_sqlstate_;
};

/// Quote an SQL identifier ("my schema" → "\"my schema\"").
std::string PgQuoteIdent(std::string_view ident);
/// Quote an SQL string literal ('it''s').
std::string PgQuoteLiteral(std::string_view text);

}  // namespace tributary
