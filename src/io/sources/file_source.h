// The `file` source: bounded input from NDJSON or CSV files.
//
// NDJSON: every non-blank line is one record, handed on byte for byte (a trailing CR of
// a CRLF line ending removed). Lines of any length are delivered; the decoder decides
// what is too large.
//
// CSV (RFC 4180): the first non-blank record of each file is the header. Every
// following record is re-encoded as one JSON object keyed by the header names, so the
// one JSON decoder handles both formats:
//   - an unquoted field that is exactly a JSON number literal (`12.5`, `-3`, `1e3`,
//     `1714564800000`) becomes a JSON number; any other unquoted field a JSON string
//     (so `0042`, `NaN`, `+5` and `0x1F` stay text);
//   - a quoted field is always a JSON string (`"12"` → "12"); doubled quotes inside
//     become one quote, and a quoted field may span lines (joined with "\n");
//   - an empty unquoted field becomes null (a dropout), an empty quoted field "";
//   - spaces and tabs around unquoted fields and around quotes are trimmed;
//   - keys keep the header order; an empty header name becomes "_col<N>" (1-based).
//   A record whose field count differs from the header's, or whose quoted field never
//   closes, becomes
//     {"_csv_error":"expected 6 fields, got 4","_raw":"<the record text>"}
//   which the decoder quarantines with the raw text.
//
// Both formats: a UTF-8 byte-order mark at the start of a file is dropped; empty and
// whitespace-only lines are not records (skipped silently); RawRecord offset = the
// 1-based line number where the record starts, topic = the file path, partition = -1,
// arrival time = the wall clock when read (or the fixed `arrival_time` option). Several files are
// read one after another; the stream ends after the last.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/intern.h"
#include "core/time.h"
#include "io/connector.h"

namespace tributary {

class Registry;

enum class FileFormat { kNdjson, kCsv };

/// Pick the format of a path by its extension: .csv/.tsv → CSV, anything else NDJSON.
FileFormat FileFormatFromPath(std::string_view path);

struct FileSourceOptions {
  std::vector<std::string> paths;
  bool auto_format = true;                  ///< choose per file by extension
  FileFormat format = FileFormat::kNdjson;  ///< used when auto_format is false
  char delimiter = ',';                     ///< CSV field separator ('\t' for .tsv when auto)
  bool delimiter_set = false;               ///< delimiter given explicitly
  /// When set (UTC µs), every record's arrival time instead of the wall clock, so a
  /// re-read of an archive is reproducible (`tributary backfill` sets it).
  TimeUs fixed_arrival_time = kMinTime;
};

/// The option table of `sources[] (type: file)`.
const SectionSpec& FileSourceSectionSpec();

/// Read and validate file source options; errors name the key.
Result<FileSourceOptions> ParseFileSourceOptions(const OptionReader& reader);

/// One CSV field as parsed.
struct CsvField {
  std::string text;
  bool quoted = false;
};

/// Outcome of parsing one CSV record.
enum class CsvParse { kComplete, kOpenQuote };

/// Split one CSV record (which may contain newlines inside quoted fields) into fields.
/// kOpenQuote means a quoted field is still open at the end of `record`: append the
/// next line and parse again.
CsvParse SplitCsvRecord(std::string_view record, char delimiter, std::vector<CsvField>& fields);

/// True when `text` is exactly a JSON number literal (RFC 8259).
bool IsJsonNumber(std::string_view text);

/// Re-encode a CSV data row as a JSON object keyed by `header` (see the file comment).
std::string CsvRowToJson(const std::vector<std::string>& header,
                         const std::vector<CsvField>& fields);

/// The record a CSV row that cannot be split becomes:
/// {"_csv_error":"<message>","_raw":"<the record text>"} (quarantined with the raw text).
std::string CsvErrorJson(std::string_view message, std::string_view raw);

/// The `file` source.
class FileSource : public Source {
 public:
  explicit FileSource(FileSourceOptions options);
  ~FileSource() override;
  /// Checks that every path is a readable regular file; the error names the path and
  /// the OS error.
  Status Open(RunContext& ctx) override;
  Status Poll(RawBatch& out, size_t max_records, DurationUs wait) override;
  void Stop() override { stop_.store(true, std::memory_order_relaxed); }
  /// Stop reading (true) until released; the file position is kept.
  void SetPaused(bool paused) override { paused_.store(paused, std::memory_order_relaxed); }
  bool SupportsCheckpoints() const override { return true; }
  /// With a fixed `arrival_time` the file is a replay whose clock is its own: the
  /// machine pausing between two reads must not move the watermark (two runs of the
  /// same files then give the same output).
  bool ClockIsSimulated() const override { return options_.fixed_arrival_time != kMinTime; }
  /// Reopen the file of `position` and seek to the byte after its last batch.
  Status RestorePosition(std::string_view position) override;
  void Close() override;

  /// Bytes consumed so far and in total, over all files (for progress reports).
  uint64_t bytes_read() const { return bytes_read_.load(std::memory_order_relaxed); }
  uint64_t total_bytes() const { return total_bytes_; }

 private:
  struct FileCloser {
    void operator()(std::FILE* f) const {
      if (f != nullptr) std::fclose(f);
    }
  };
  // Read the next physical line into `line` without its line ending; false at EOF.
  Result<bool> ReadLine(std::string& line);
  Status OpenNext();
  std::string EncodePosition() const;
  // Read the next record of the current file into `out`; false at end of file.
  Result<bool> NextRecord(RawBatch& out, TimeUs now);

  FileSourceOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> paused_{false};
  size_t next_path_ = 0;
  std::unique_ptr<std::FILE, FileCloser> file_;
  std::string path_;
  Symbol topic_;
  FileFormat format_ = FileFormat::kNdjson;
  char delimiter_ = ',';
  int64_t line_no_ = 0;
  bool header_read_ = false;
  std::vector<std::string> header_;
  std::vector<char> buf_;  // read buffer: bytes [buf_pos_, buf_end_) not consumed yet
  size_t buf_pos_ = 0;
  size_t buf_end_ = 0;
  bool eof_ = false;
  std::string line_;
  std::string record_;
  std::vector<CsvField> fields_;
  std::atomic<uint64_t> bytes_read_{0};
  uint64_t total_bytes_ = 0;
  bool done_ = false;
  bool checkpointing_ = false;  // fill RawBatch::position
};

/// Register the `file` source type.
void RegisterFileSource(Registry& registry);

}  // namespace tributary
