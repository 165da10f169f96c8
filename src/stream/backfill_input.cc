#include "stream/backfill_input.h"

#include <fmt/format.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>

#include "core/json_writer.h"
#include "io/sources/file_source.h"

#ifdef TRIBUTARY_HAVE_DUCKDB
#include <duckdb.h>
#endif

namespace tributary {
namespace {

constexpr size_t kReadChunk = 1 << 20;
// A quoted CSV field may span at most this many lines (as in the file source).
constexpr int kMaxCsvContinuationLines = 1000;

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

bool HasSuffix(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool IsBlank(std::string_view s) {
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
  }
  return true;
}

std::string CsvErrorJson(std::string_view message, std::string_view raw) {
  std::string out = "{\"_csv_error\":";
  AppendJsonString(out, message);
  out += ",\"_raw\":";
  AppendJsonString(out, raw);
  out += '}';
  return out;
}

// ---------------------------------------------------------------------------
// Byte streams: plain, gzip, zstd.

class ByteStream {
 public:
  virtual ~ByteStream() = default;
  // Up to `n` decompressed bytes into `buf`; 0 at the end.
  virtual Result<size_t> Read(char* buf, size_t n) = 0;
  virtual uint64_t consumed() const = 0;
};

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f != nullptr) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

class PlainStream : public ByteStream {
 public:
  PlainStream(FilePtr f, std::string path) : f_(std::move(f)), path_(std::move(path)) {}
  Result<size_t> Read(char* buf, size_t n) override {
    size_t got = std::fread(buf, 1, n, f_.get());
    if (got == 0 && std::ferror(f_.get())) {
      return Status::Io("cannot read " + path_ + ": " + std::strerror(errno));
    }
    consumed_ += got;
    return got;
  }
  uint64_t consumed() const override { return consumed_; }

 private:
  FilePtr f_;
  std::string path_;
  uint64_t consumed_ = 0;
};

class GzipStream : public ByteStream {
 public:
  GzipStream(gzFile gz, std::string path) : gz_(gz), path_(std::move(path)) {}
  ~GzipStream() override { gzclose(gz_); }
  Result<size_t> Read(char* buf, size_t n) override {
    int got = gzread(gz_, buf, static_cast<unsigned>(std::min<size_t>(n, 1u << 30)));
    if (got < 0) {
      int err = 0;
      const char* msg = gzerror(gz_, &err);
      return Status::Io("cannot decompress " + path_ + " (gzip): " + (msg ? msg : "error"));
    }
    if (got == 0 && !gzeof(gz_)) {
      return Status::Io("cannot decompress " + path_ + " (gzip): unexpected end of stream");
    }
    // gzread stops silently at a truncated stream: zlib reports it only through gzerror.
    if (got == 0) {
      int err = 0;
      const char* msg = gzerror(gz_, &err);
      if (err != Z_OK && err != Z_STREAM_END) {
        return Status::Io("cannot decompress " + path_ + " (gzip): " + (msg ? msg : "error"));
      }
    }
    consumed_ = static_cast<uint64_t>(std::max<z_off_t>(0, gzoffset(gz_)));
    return static_cast<size_t>(got);
  }
  uint64_t consumed() const override { return consumed_; }

 private:
  gzFile gz_;
  std::string path_;
  uint64_t consumed_ = 0;
};

class ZstdStream : public ByteStream {
 public:
  ZstdStream(FilePtr f, std::string path)
      : f_(std::move(f)), path_(std::move(path)), dctx_(ZSTD_createDStream()) {
    in_buf_.resize(ZSTD_DStreamInSize());
  }
  ~ZstdStream() override { ZSTD_freeDStream(dctx_); }
  Result<size_t> Read(char* buf, size_t n) override {
    ZSTD_outBuffer out{buf, n, 0};
    while (out.pos == 0) {
      if (in_.pos == in_.size) {
        if (file_eof_) {
          if (frame_open_) {
            return Status::Io("cannot decompress " + path_ + " (zstd): truncated stream");
          }
          return size_t{0};
        }
        size_t got = std::fread(in_buf_.data(), 1, in_buf_.size(), f_.get());
        if (got == 0) {
          if (std::ferror(f_.get())) {
            return Status::Io("cannot read " + path_ + ": " + std::strerror(errno));
          }
          file_eof_ = true;
          continue;
        }
        consumed_ += got;
        in_ = ZSTD_inBuffer{in_buf_.data(), got, 0};
      }
      size_t rc = ZSTD_decompressStream(dctx_, &out, &in_);
      if (ZSTD_isError(rc)) {
        return Status::Io("cannot decompress " + path_ + " (zstd): " + ZSTD_getErrorName(rc));
      }
      frame_open_ = rc != 0;
    }
    return out.pos;
  }
  uint64_t consumed() const override { return consumed_; }

 private:
  FilePtr f_;
  std::string path_;
  ZSTD_DStream* dctx_;
  std::vector<char> in_buf_;
  ZSTD_inBuffer in_{nullptr, 0, 0};
  bool file_eof_ = false;
  bool frame_open_ = false;
  uint64_t consumed_ = 0;
};

// ---------------------------------------------------------------------------
// Line-oriented files (NDJSON, CSV), records as the file source makes them.

class TextFileReader : public BackfillFileReader {
 public:
  TextFileReader(std::unique_ptr<ByteStream> stream, const std::string& path,
                 BackfillInputFormat format, TimeUs arrival)
      : stream_(std::move(stream)), topic_(Intern(path)), format_(format), arrival_(arrival) {
    buf_.resize(kReadChunk);
  }

  Result<bool> Read(RawBatch& out, size_t max_records, size_t max_bytes) override {
    const size_t start_bytes = out.data.size();
    size_t added = 0;
    while (added < max_records && (added == 0 || out.data.size() - start_bytes < max_bytes)) {
      TRIB_ASSIGN_OR_RETURN(bool got, NextRecord(out));
      if (!got) return false;
      ++added;
    }
    return true;
  }
  uint64_t bytes_consumed() const override { return stream_->consumed(); }

 private:
  Result<bool> ReadLine(std::string& line) {
    line.clear();
    bool any = false;
    while (true) {
      if (pos_ < end_) {
        const char* begin = buf_.data() + pos_;
        size_t avail = end_ - pos_;
        const void* nl = std::memchr(begin, '\n', avail);
        size_t take =
            nl == nullptr ? avail : static_cast<size_t>(static_cast<const char*>(nl) - begin);
        line.append(begin, take);
        any = true;
        pos_ += take;
        if (nl != nullptr) {
          ++pos_;
          break;
        }
      }
      if (eof_) {
        if (!any) return false;
        break;
      }
      TRIB_ASSIGN_OR_RETURN(size_t n, stream_->Read(buf_.data(), buf_.size()));
      pos_ = 0;
      end_ = n;
      if (n == 0) eof_ = true;
    }
    ++line_no_;
    if (line_no_ == 1 && line.size() >= 3 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) {
      line.erase(0, 3);
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return true;
  }

  Result<bool> NextRecord(RawBatch& out) {
    while (true) {
      TRIB_ASSIGN_OR_RETURN(bool got, ReadLine(line_));
      if (!got) return false;
      if (IsBlank(line_)) continue;
      const int64_t start_line = line_no_;
      if (format_.kind == BackfillInputKind::kNdjson) {
        out.Add(line_, arrival_, topic_, start_line, -1);
        return true;
      }
      record_ = line_;
      CsvParse parse = SplitCsvRecord(record_, format_.delimiter, fields_);
      int continuations = 0;
      bool unterminated = false;
      while (parse == CsvParse::kOpenQuote) {
        if (continuations >= kMaxCsvContinuationLines) {
          unterminated = true;
          break;
        }
        TRIB_ASSIGN_OR_RETURN(bool more, ReadLine(line_));
        if (!more) {
          unterminated = true;
          break;
        }
        ++continuations;
        record_ += '\n';
        record_ += line_;
        parse = SplitCsvRecord(record_, format_.delimiter, fields_);
      }
      if (!header_read_) {
        if (unterminated) {
          out.Add(CsvErrorJson("unterminated quoted field in the header", record_), arrival_,
                  topic_, start_line, -1);
          return true;
        }
        header_.clear();
        for (size_t i = 0; i < fields_.size(); ++i) {
          std::string name = fields_[i].text;
          if (name.empty()) name = "_col" + std::to_string(i + 1);
          header_.push_back(std::move(name));
        }
        header_read_ = true;
        continue;
      }
      if (unterminated) {
        out.Add(CsvErrorJson("unterminated quoted field", record_), arrival_, topic_, start_line,
                -1);
      } else if (fields_.size() != header_.size()) {
        out.Add(CsvErrorJson("expected " + std::to_string(header_.size()) + " fields, got " +
                                 std::to_string(fields_.size()),
                             record_),
                arrival_, topic_, start_line, -1);
      } else {
        out.Add(CsvRowToJson(header_, fields_), arrival_, topic_, start_line, -1);
      }
      return true;
    }
  }

  std::unique_ptr<ByteStream> stream_;
  Symbol topic_;
  BackfillInputFormat format_;
  TimeUs arrival_;
  std::vector<char> buf_;
  size_t pos_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
  int64_t line_no_ = 0;
  std::string line_;
  std::string record_;
  bool header_read_ = false;
  std::vector<std::string> header_;
  std::vector<CsvField> fields_;
};

// ---------------------------------------------------------------------------
// Parquet through DuckDB.

#ifdef TRIBUTARY_HAVE_DUCKDB

std::string SqlQuote(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

std::string SqlIdent(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    out += c;
    if (c == '"') out += '"';
  }
  return out + "\"";
}

// How a column is rendered into the row's JSON object.
enum class ParquetColumnKind { kNumber, kBool, kString };

class ParquetFileReader : public BackfillFileReader {
 public:
  ~ParquetFileReader() override {
    if (chunk_ != nullptr) duckdb_destroy_data_chunk(&chunk_);
    if (have_result_) duckdb_destroy_result(&result_);
    if (pending_ != nullptr) duckdb_destroy_pending(&pending_);
    if (stmt_ != nullptr) duckdb_destroy_prepare(&stmt_);
    if (conn_ != nullptr) duckdb_disconnect(&conn_);
    if (db_ != nullptr) duckdb_close(&db_);
  }

  static Result<std::unique_ptr<BackfillFileReader>> Make(const std::string& path, TimeUs arrival,
                                                          uint64_t file_bytes) {
    std::unique_ptr<ParquetFileReader> r(new ParquetFileReader());
    r->path_ = path;
    r->topic_ = Intern(path);
    r->arrival_ = arrival;
    r->file_bytes_ = file_bytes;
    TRIB_RETURN_IF_ERROR(r->Start());
    return std::unique_ptr<BackfillFileReader>(std::move(r));
  }

  Result<bool> Read(RawBatch& out, size_t max_records, size_t max_bytes) override {
    const size_t start_bytes = out.data.size();
    size_t added = 0;
    while (added < max_records && (added == 0 || out.data.size() - start_bytes < max_bytes)) {
      if (chunk_ == nullptr || row_ >= chunk_rows_) {
        if (chunk_ != nullptr) duckdb_destroy_data_chunk(&chunk_);
        chunk_ = duckdb_fetch_chunk(result_);
        row_ = 0;
        chunk_rows_ = chunk_ == nullptr ? 0 : duckdb_data_chunk_get_size(chunk_);
        if (chunk_ == nullptr || chunk_rows_ == 0) {
          const char* err = duckdb_result_error(&result_);
          if (err != nullptr && *err != '\0') {
            return Status::Io("cannot read Parquet file " + path_ + ": " + err);
          }
          done_ = true;
          return false;
        }
      }
      RowJson(row_++);
      ++row_no_;
      out.Add(json_, arrival_, topic_, row_no_, -1);
      ++added;
    }
    return true;
  }
  uint64_t bytes_consumed() const override { return done_ ? file_bytes_ : 0; }

 private:
  ParquetFileReader() = default;

  Status Fail(const std::string& what, const char* err) {
    return Status::Io("cannot read Parquet file " + path_ + ": " + what +
                      (err != nullptr ? std::string(": ") + err : std::string()));
  }

  Status Start() {
    duckdb_config config = nullptr;
    duckdb_create_config(&config);
    duckdb_set_config(config, "threads", "1");
    duckdb_set_config(config, "memory_limit", "256MB");
    char* open_err = nullptr;
    duckdb_state st = duckdb_open_ext(nullptr, &db_, config, &open_err);
    duckdb_destroy_config(&config);
    if (st != DuckDBSuccess) {
      Status s = Fail("cannot start DuckDB", open_err);
      duckdb_free(open_err);
      return s;
    }
    if (duckdb_connect(db_, &conn_) != DuckDBSuccess)
      return Fail("cannot connect to DuckDB", nullptr);
    duckdb_result res;
    if (duckdb_query(conn_, "SET TimeZone='UTC'", &res) != DuckDBSuccess) {
      // Without ICU, timestamps with time zone are UTC already.
    }
    duckdb_destroy_result(&res);
    // Column names and types first, to render each column.
    std::string describe = "DESCRIBE SELECT * FROM read_parquet(" + SqlQuote(path_) + ")";
    if (duckdb_query(conn_, describe.c_str(), &res) != DuckDBSuccess) {
      Status s = Fail("cannot read its schema", duckdb_result_error(&res));
      duckdb_destroy_result(&res);
      return s;
    }
    std::string select;
    for (idx_t i = 0; i < duckdb_row_count(&res); ++i) {
      char* name = duckdb_value_varchar(&res, 0, i);
      char* type = duckdb_value_varchar(&res, 1, i);
      std::string n = name ? name : "";
      std::string t = type ? type : "";
      duckdb_free(name);
      duckdb_free(type);
      names_.push_back(n);
      ParquetColumnKind kind = ParquetColumnKind::kString;
      std::string expr = SqlIdent(n);
      static const char* kNumeric[] = {"TINYINT", "SMALLINT", "INTEGER",   "BIGINT",
                                       "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                                       "UBIGINT", "FLOAT",    "DOUBLE",    "DECIMAL"};
      for (const char* k : kNumeric) {
        if (t.rfind(k, 0) == 0) kind = ParquetColumnKind::kNumber;
      }
      if (t == "BOOLEAN") kind = ParquetColumnKind::kBool;
      if (t.rfind("TIMESTAMP", 0) == 0 || t == "DATETIME") {
        expr = "strftime(CAST(" + expr + " AS TIMESTAMP), '%Y-%m-%dT%H:%M:%S.%fZ')";
      } else if (kind == ParquetColumnKind::kNumber && (t == "FLOAT" || t == "DOUBLE")) {
        // NaN and Inf are not JSON numbers: keep them as text, which ingestion rejects.
        expr = "CASE WHEN isfinite(" + expr + ") THEN CAST(" + expr + " AS VARCHAR) ELSE '\"' || " +
               "CAST(" + expr + " AS VARCHAR) || '\"' END";
      }
      kinds_.push_back(kind);
      select += (select.empty() ? "" : ", ") + std::string("CAST(") + expr + " AS VARCHAR)";
    }
    duckdb_destroy_result(&res);
    if (names_.empty()) return Fail("it has no columns", nullptr);
    std::string sql = "SELECT " + select + " FROM read_parquet(" + SqlQuote(path_) + ")";
    if (duckdb_prepare(conn_, sql.c_str(), &stmt_) != DuckDBSuccess) {
      return Fail("cannot prepare the scan", duckdb_prepare_error(stmt_));
    }
    if (duckdb_pending_prepared_streaming(stmt_, &pending_) != DuckDBSuccess) {
      return Fail("cannot start the scan", duckdb_pending_error(pending_));
    }
    if (duckdb_execute_pending(pending_, &result_) != DuckDBSuccess) {
      Status s = Fail("cannot scan it", duckdb_result_error(&result_));
      duckdb_destroy_result(&result_);
      return s;
    }
    have_result_ = true;
    return Status::Ok();
  }

  void RowJson(idx_t row) {
    json_.clear();
    json_ += '{';
    const idx_t cols = duckdb_data_chunk_get_column_count(chunk_);
    for (idx_t c = 0; c < cols && c < names_.size(); ++c) {
      if (c > 0) json_ += ',';
      AppendJsonString(json_, names_[c]);
      json_ += ':';
      duckdb_vector vec = duckdb_data_chunk_get_vector(chunk_, c);
      uint64_t* validity = duckdb_vector_get_validity(vec);
      if (validity != nullptr && !duckdb_validity_row_is_valid(validity, row)) {
        json_ += "null";
        continue;
      }
      auto* strings = static_cast<duckdb_string_t*>(duckdb_vector_get_data(vec));
      duckdb_string_t& s = strings[row];
      std::string_view text(duckdb_string_t_data(&s), duckdb_string_t_length(s));
      switch (kinds_[c]) {
        case ParquetColumnKind::kNumber:
          json_ += text;  // a JSON number, or NaN/Inf quoted by the query
          break;
        case ParquetColumnKind::kBool:
          json_ += text == "true" ? "true" : "false";
          break;
        case ParquetColumnKind::kString:
          AppendJsonString(json_, text);
          break;
      }
    }
    json_ += '}';
  }

  std::string path_;
  Symbol topic_;
  TimeUs arrival_ = 0;
  uint64_t file_bytes_ = 0;
  duckdb_database db_ = nullptr;
  duckdb_connection conn_ = nullptr;
  duckdb_prepared_statement stmt_ = nullptr;
  duckdb_pending_result pending_ = nullptr;
  duckdb_result result_{};
  bool have_result_ = false;
  duckdb_data_chunk chunk_ = nullptr;
  idx_t chunk_rows_ = 0;
  idx_t row_ = 0;
  int64_t row_no_ = 0;
  bool done_ = false;
  std::vector<std::string> names_;
  std::vector<ParquetColumnKind> kinds_;
  std::string json_;
};

#endif  // TRIBUTARY_HAVE_DUCKDB

// The first number of the line of `file` starting with `key` (e.g. "MemAvailable:").
uint64_t ProcField(const char* file, std::string_view key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      try {
        return std::stoull(line.substr(key.size()));
      } catch (...) {
        return 0;
      }
    }
  }
  return 0;
}

// A cgroup file holding one number ("max" or unreadable: 0).
uint64_t CgroupNumber(const char* file) {
  std::ifstream in(file);
  std::string text;
  if (!(in >> text) || text == "max") return 0;
  try {
    return std::stoull(text);
  } catch (...) {
    return 0;
  }
}

}  // namespace

BackfillInputFormat BackfillInputFormatOf(std::string_view path) {
  std::string p = Lower(path);
  BackfillInputFormat f;
  if (HasSuffix(p, ".gz")) {
    f.compression = BackfillCompression::kGzip;
    p.resize(p.size() - 3);
  } else if (HasSuffix(p, ".zst")) {
    f.compression = BackfillCompression::kZstd;
    p.resize(p.size() - 4);
  }
  if (HasSuffix(p, ".parquet")) {
    f.kind = BackfillInputKind::kParquet;
  } else if (HasSuffix(p, ".csv")) {
    f.kind = BackfillInputKind::kCsv;
  } else if (HasSuffix(p, ".tsv")) {
    f.kind = BackfillInputKind::kCsv;
    f.delimiter = '\t';
  }
  return f;
}

bool IsBackfillDataFile(std::string_view path) {
  std::string p = Lower(path);
  if (HasSuffix(p, ".parquet")) return true;
  if (HasSuffix(p, ".gz")) p.resize(p.size() - 3);
  if (HasSuffix(p, ".zst")) p.resize(p.size() - 4);
  for (const char* ext : {".ndjson", ".jsonl", ".json", ".csv", ".tsv"}) {
    if (HasSuffix(p, ext)) return true;
  }
  return false;
}

Result<std::unique_ptr<BackfillFileReader>> BackfillFileReader::Open(const std::string& path,
                                                                     TimeUs arrival) {
  const BackfillInputFormat format = BackfillInputFormatOf(path);
  FilePtr f(std::fopen(path.c_str(), "rb"));
  if (!f) return Status::Io("cannot open " + path + ": " + std::strerror(errno));
  if (format.kind == BackfillInputKind::kParquet) {
#ifdef TRIBUTARY_HAVE_DUCKDB
    if (format.compression != BackfillCompression::kNone) {
      return Status::Invalid(path +
                             ": a Parquet file is compressed inside; .gz/.zst around it "
                             "is not supported");
    }
    std::fseek(f.get(), 0, SEEK_END);
    const long size = std::ftell(f.get());
    f.reset();
    return ParquetFileReader::Make(path, arrival, size > 0 ? static_cast<uint64_t>(size) : 0);
#else
    return Status::Invalid(path + ": reading Parquet needs a build with DuckDB");
#endif
  }
  std::unique_ptr<ByteStream> stream;
  switch (format.compression) {
    case BackfillCompression::kNone:
      stream = std::make_unique<PlainStream>(std::move(f), path);
      break;
    case BackfillCompression::kGzip: {
      // zlib would read anything else through as plain bytes: check the magic first.
      unsigned char magic[2] = {0, 0};
      if (std::fread(magic, 1, 2, f.get()) != 2 || magic[0] != 0x1f || magic[1] != 0x8b) {
        return Status::Io("cannot decompress " + path + " (gzip): not a gzip file");
      }
      f.reset();
      gzFile gz = gzopen(path.c_str(), "rb");
      if (gz == nullptr) return Status::Io("cannot open " + path + ": " + std::strerror(errno));
      gzbuffer(gz, 1 << 18);
      stream = std::make_unique<GzipStream>(gz, path);
      break;
    }
    case BackfillCompression::kZstd:
      stream = std::make_unique<ZstdStream>(std::move(f), path);
      break;
  }
  return std::unique_ptr<BackfillFileReader>(
      std::make_unique<TextFileReader>(std::move(stream), path, format, arrival));
}

BackfillMemoryPlan PlanBackfillMemory(uint64_t ceiling_bytes, size_t workers) {
  BackfillMemoryPlan plan;
  plan.available_bytes = ProcField("/proc/meminfo", "MemAvailable:") * 1024;
  plan.basis = "MemAvailable";
  // cgroup v2, then v1: a container's limit minus what it uses, when lower.
  uint64_t limit = CgroupNumber("/sys/fs/cgroup/memory.max");
  uint64_t usage = CgroupNumber("/sys/fs/cgroup/memory.current");
  if (limit == 0) {
    limit = CgroupNumber("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    usage = CgroupNumber("/sys/fs/cgroup/memory/memory.usage_in_bytes");
  }
  // v1 reports "no limit" as a huge number.
  if (limit > 0 && limit < (uint64_t{1} << 60)) {
    uint64_t room = limit > usage ? limit - usage : 0;
    if (plan.available_bytes == 0 || room < plan.available_bytes) {
      plan.available_bytes = room;
      plan.basis = "cgroup memory limit";
    }
  }
  if (plan.available_bytes == 0) {
    plan.available_bytes = uint64_t{1} << 30;  // unknown: assume 1 GiB
    plan.basis = "assumed 1 GiB";
  }
  plan.budget_bytes = plan.available_bytes * 3 / 10;
  if (ceiling_bytes > 0 && ceiling_bytes < plan.budget_bytes) {
    plan.budget_bytes = ceiling_bytes;
    plan.basis += ", capped by --memory";
  }
  // Chunks in flight: one being read, one per worker, a few waiting for the ordered
  // stage and the sinks. A decoded chunk takes about 6× its raw bytes (Readings of about
  // 200 bytes from about 70 raw bytes per metric), and the window state and sinks need
  // their share: chunks get a quarter of the budget.
  plan.chunks_in_flight = 2 * std::max<size_t>(workers, 1) + 2;
  const uint64_t per_chunk = plan.budget_bytes / 4 / (plan.chunks_in_flight * 7);
  plan.chunk_bytes = static_cast<size_t>(std::clamp<uint64_t>(per_chunk, 64 << 10, 4 << 20));
  plan.chunk_records = std::max<size_t>(plan.chunk_bytes / 64, 256);
  return plan;
}

Result<uint64_t> ParseByteSize(std::string_view text) {
  std::string t = Lower(text);
  size_t i = 0;
  while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || t[i] == '.')) ++i;
  if (i == 0) return Status::Invalid("'" + std::string(text) + "' is not a size (e.g. 512MiB)");
  double n = 0;
  try {
    n = std::stod(t.substr(0, i));
  } catch (...) {
    return Status::Invalid("'" + std::string(text) + "' is not a size (e.g. 512MiB)");
  }
  std::string unit = t.substr(i);
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  double mult = 0;
  if (unit.empty() || unit == "b") mult = 1;
  if (unit == "k" || unit == "kb") mult = 1e3;
  if (unit == "kib") mult = 1024;
  if (unit == "m" || unit == "mb") mult = 1e6;
  if (unit == "mib") mult = 1024.0 * 1024;
  if (unit == "g" || unit == "gb") mult = 1e9;
  if (unit == "gib") mult = 1024.0 * 1024 * 1024;
  if (mult == 0) {
    return Status::Invalid("'" + std::string(text) +
                           "': unknown size unit (B, KB, KiB, MB, MiB, GB, GiB)");
  }
  return static_cast<uint64_t>(n * mult);
}

uint64_t PeakRssBytes() {
  return ProcField("/proc/self/status", "VmHWM:") * 1024;
}

uint64_t CurrentRssBytes() {
  return ProcField("/proc/self/status", "VmRSS:") * 1024;
}

}  // namespace tributary
