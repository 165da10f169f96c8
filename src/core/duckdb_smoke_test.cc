// The DuckDB C API links and runs: an in-memory database answers a query.
#include <gtest/gtest.h>

#ifdef TRIBUTARY_HAVE_DUCKDB
#include <duckdb.h>

#include <cstdint>
#include <string>
#endif

namespace tributary {
namespace {

#ifdef TRIBUTARY_HAVE_DUCKDB
/// Own one DuckDB database, connection and query result; each is closed when set.
struct DuckDbSession {
  duckdb_database database = nullptr;
  duckdb_connection connection = nullptr;
  duckdb_result result{};
  bool has_result = false;

  DuckDbSession() = default;
  DuckDbSession(const DuckDbSession&) = delete;
  DuckDbSession& operator=(const DuckDbSession&) = delete;
  ~DuckDbSession() {
    if (has_result) duckdb_destroy_result(&result);
    if (connection != nullptr) duckdb_disconnect(&connection);
    if (database != nullptr) duckdb_close(&database);
  }
};

/// Own one data chunk fetched from a result.
struct ChunkHandle {
  duckdb_data_chunk chunk = nullptr;

  explicit ChunkHandle(duckdb_data_chunk c) : chunk(c) {}
  ChunkHandle(const ChunkHandle&) = delete;
  ChunkHandle& operator=(const ChunkHandle&) = delete;
  ~ChunkHandle() {
    if (chunk != nullptr) duckdb_destroy_data_chunk(&chunk);
  }
};
#endif

TEST(DuckDbSmokeTest, InMemoryDatabaseAnswersSelect42) {
#ifdef TRIBUTARY_HAVE_DUCKDB
  DuckDbSession session;
  ASSERT_EQ(duckdb_open(nullptr, &session.database), DuckDBSuccess);
  ASSERT_EQ(duckdb_connect(session.database, &session.connection), DuckDBSuccess);
  session.has_result = true;
  ASSERT_EQ(duckdb_query(session.connection, "SELECT 42 AS answer", &session.result), DuckDBSuccess)
      << duckdb_result_error(&session.result);

  ASSERT_EQ(duckdb_column_count(&session.result), 1u);
  EXPECT_STREQ(duckdb_column_name(&session.result, 0), "answer");
  ASSERT_EQ(duckdb_column_type(&session.result, 0), DUCKDB_TYPE_INTEGER);

  ChunkHandle first(duckdb_fetch_chunk(session.result));
  ASSERT_NE(first.chunk, nullptr);
  ASSERT_EQ(duckdb_data_chunk_get_size(first.chunk), 1u);
  duckdb_vector column = duckdb_data_chunk_get_vector(first.chunk, 0);
  const auto* values = static_cast<const int32_t*>(duckdb_vector_get_data(column));
  EXPECT_EQ(values[0], 42);
  EXPECT_TRUE(duckdb_validity_row_is_valid(duckdb_vector_get_validity(column), 0));

  ChunkHandle end(duckdb_fetch_chunk(session.result));
  EXPECT_EQ(end.chunk, nullptr);
#else
  GTEST_SKIP() << "built without DuckDB (get it with: scripts/setup.sh --deps-only)";
#endif
}

TEST(DuckDbSmokeTest, ReportsQueryErrors) {
#ifdef TRIBUTARY_HAVE_DUCKDB
  DuckDbSession session;
  ASSERT_EQ(duckdb_open(nullptr, &session.database), DuckDBSuccess);
  ASSERT_EQ(duckdb_connect(session.database, &session.connection), DuckDBSuccess);
  session.has_result = true;
  EXPECT_EQ(duckdb_query(session.connection, "SELECT * FROM no_such_table", &session.result),
            DuckDBError);
  const char* error = duckdb_result_error(&session.result);
  ASSERT_NE(error, nullptr);
  EXPECT_NE(std::string(error).find("no_such_table"), std::string::npos) << error;
#else
  GTEST_SKIP() << "built without DuckDB (get it with: scripts/setup.sh --deps-only)";
#endif
}

}  // namespace
}  // namespace tributary
