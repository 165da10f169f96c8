#include "io/sinks/duck_util.h"

#ifdef TRIBUTARY_HAVE_DUCKDB

namespace tributary {

namespace {

std::string Quoted(std::string_view s, char q) {
  std::string out(1, q);
  for (char c : s) {
    if (c == q) out.push_back(q);
    out.push_back(c);
  }
  out.push_back(q);
  return out;
}

const char* SqlType(duckdb_type t) {
  switch (t) {
    case DUCKDB_TYPE_DATE:
      return "DATE";
    case DUCKDB_TYPE_VARCHAR:
      return "VARCHAR";
    case DUCKDB_TYPE_DOUBLE:
      return "DOUBLE";
    case DUCKDB_TYPE_TIMESTAMP_TZ:
      return "TIMESTAMPTZ";
    case DUCKDB_TYPE_INTEGER:
      return "INTEGER";
    case DUCKDB_TYPE_BIGINT:
      return "BIGINT";
    default:
      return "BLOB";
  }
}

}  // namespace

std::string DuckQuoteIdent(std::string_view s) {
  return Quoted(s, '"');
}

std::string DuckQuoteLiteral(std::string_view s) {
  return Quoted(s, '\'');
}

std::string DuckCreateTableSql(std::string_view create, std::string_view table,
                               const std::vector<DuckColumn>& columns, std::string_view tail) {
  std::string ddl = std::string(create) + " " + std::string(table) + " (";
  for (size_t c = 0; c < columns.size(); ++c) {
    if (c > 0) ddl += ", ";
    ddl += DuckQuoteIdent(columns[c].name);
    ddl += ' ';
    ddl += SqlType(columns[c].type);
  }
  ddl += tail;
  ddl += ")";
  return ddl;
}

std::string DuckDbResult::Text(idx_t col, idx_t row) {
  char* s = duckdb_value_varchar(&result_, col, row);
  std::string out = s != nullptr ? s : "";
  duckdb_free(s);
  return out;
}

Status DuckDbConnection::Open(const std::string& path, int threads) {
  Close();
  duckdb_config config = nullptr;
  if (duckdb_create_config(&config) != DuckDBSuccess) {
    return Status::Internal("duckdb: cannot create a config");
  }
  std::string t = std::to_string(threads);
  duckdb_set_config(config, "threads", t.c_str());
  char* error = nullptr;
  duckdb_state st = duckdb_open_ext(path.empty() ? nullptr : path.c_str(), &db_, config, &error);
  duckdb_destroy_config(&config);
  const std::string what = path.empty() ? std::string("an in-memory database") : path;
  if (st != DuckDBSuccess) {
    std::string msg = error != nullptr ? error : "unknown error";
    duckdb_free(error);
    db_ = nullptr;
    // A file held by another process (DuckDB's lock) may become free: retryable.
    return Status::Io("duckdb: cannot open " + what + ": " + msg, /*retryable=*/!path.empty());
  }
  if (duckdb_connect(db_, &conn_) != DuckDBSuccess) {
    conn_ = nullptr;
    return Status::Internal("duckdb: cannot connect to " + what);
  }
  return Status::Ok();
}

void DuckDbConnection::Close() {
  if (conn_ != nullptr) duckdb_disconnect(&conn_);
  if (db_ != nullptr) duckdb_close(&db_);
  conn_ = nullptr;
  db_ = nullptr;
}

Status DuckDbConnection::Exec(const std::string& sql, DuckDbResult* out) {
  DuckDbResult local;
  DuckDbResult& r = out != nullptr ? *out : local;
  if (duckdb_query(conn_, sql.c_str(), r.get()) == DuckDBSuccess) return Status::Ok();
  const char* msg = duckdb_result_error(r.get());
  duckdb_error_type type = duckdb_result_error_type(r.get());
  bool retryable = type == DUCKDB_ERROR_IO || type == DUCKDB_ERROR_OUT_OF_MEMORY;
  return Status(retryable ? StatusCode::kIoError : StatusCode::kInternal,
                std::string("duckdb: ") + (msg != nullptr ? msg : "query failed"), retryable);
}

Status DuckChunkAppender::Create(DuckDbConnection& conn, const std::string& table,
                                 const std::vector<DuckColumn>& columns, const char* schema) {
  Destroy();
  if (duckdb_appender_create(conn.get(), schema, table.c_str(), &appender_) != DuckDBSuccess) {
    std::string msg = AppenderError();
    duckdb_appender_destroy(&appender_);
    appender_ = nullptr;
    return Status::Internal("duckdb: cannot append to " + table + ": " + msg);
  }
  std::vector<duckdb_logical_type> types;
  for (const DuckColumn& c : columns) types.push_back(duckdb_create_logical_type(c.type));
  chunk_ = duckdb_create_data_chunk(types.data(), types.size());
  for (duckdb_logical_type& t : types) duckdb_destroy_logical_type(&t);
  capacity_ = duckdb_vector_size();
  vectors_.resize(columns.size());
  data_.resize(columns.size());
  validity_.resize(columns.size());
  table_ = table;
  Refresh(chunk_);
  return Status::Ok();
}

void DuckChunkAppender::Destroy() {
  if (chunk_ != nullptr) duckdb_destroy_data_chunk(&chunk_);
  if (appender_ != nullptr) duckdb_appender_destroy(&appender_);
  chunk_ = nullptr;
  appender_ = nullptr;
  row_ = 0;
}

Status DuckChunkAppender::Flush() {
  if (row_ == 0) return Status::Ok();
  duckdb_data_chunk_set_size(chunk_, row_);
  duckdb_state st = duckdb_append_data_chunk(appender_, chunk_);
  duckdb_data_chunk_reset(chunk_);
  row_ = 0;
  Refresh(chunk_);
  if (st != DuckDBSuccess) {
    return Status::Internal("duckdb: append to " + table_ + ": " + AppenderError());
  }
  return Status::Ok();
}

Status DuckChunkAppender::FlushAll() {
  TRIB_RETURN_IF_ERROR(Flush());
  if (duckdb_appender_flush(appender_) != DuckDBSuccess) {
    return Status::Internal("duckdb: flush " + table_ + ": " + AppenderError());
  }
  return Status::Ok();
}

std::string DuckChunkAppender::AppenderError() const {
  const char* e = appender_ != nullptr ? duckdb_appender_error(appender_) : nullptr;
  return e != nullptr ? e : "unknown error";
}

void DuckChunkWriter::Attach(duckdb_data_chunk chunk, size_t columns) {
  vectors_.resize(columns);
  data_.resize(columns);
  validity_.resize(columns);
  row_ = 0;
  capacity_ = duckdb_vector_size();
  Refresh(chunk);
}

void DuckChunkWriter::Refresh(duckdb_data_chunk chunk) {
  for (size_t c = 0; c < vectors_.size(); ++c) {
    vectors_[c] = duckdb_data_chunk_get_vector(chunk, c);
    data_[c] = duckdb_vector_get_data(vectors_[c]);
    duckdb_vector_ensure_validity_writable(vectors_[c]);
    validity_[c] = duckdb_vector_get_validity(vectors_[c]);
  }
}

}  // namespace tributary

#endif  // TRIBUTARY_HAVE_DUCKDB
