#include "io/sources/file_source.h"

#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "core/json_writer.h"
#include "core/pipeline_config.h"
#include "core/registry.h"
#include "core/time.h"
#include "stream/checkpoint.h"

namespace tributary {
namespace {

constexpr size_t kReadChunk = 1 << 20;
// A batch stops growing past this many payload bytes (after at least one record).
constexpr size_t kMaxBatchBytes = 8 << 20;
// A quoted CSV field may span at most this many lines before the record is given up.
constexpr int kMaxCsvContinuationLines = 1000;

bool IsBlank(std::string_view s) {
  for (char c : s) {
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
  }
  return true;
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  for (size_t i = 0; i < suffix.size(); ++i) {
    char a = s[s.size() - suffix.size() + i];
    if (a >= 'A' && a <= 'Z') a = static_cast<char>(a - 'A' + 'a');
    if (a != suffix[i]) return false;
  }
  return true;
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string CsvError(std::string_view message, std::string_view raw) {
  std::string out = "{\"_csv_error\":";
  AppendJsonString(out, message);
  out += ",\"_raw\":";
  AppendJsonString(out, raw);
  out += '}';
  return out;
}

}  // namespace

std::string CsvErrorJson(std::string_view message, std::string_view raw) {
  return CsvError(message, raw);
}

FileFormat FileFormatFromPath(std::string_view path) {
  if (EndsWith(path, ".csv") || EndsWith(path, ".tsv")) return FileFormat::kCsv;
  return FileFormat::kNdjson;
}

// ---------------------------------------------------------------------------
// CSV

CsvParse SplitCsvRecord(std::string_view record, char delimiter, std::vector<CsvField>& fields) {
  fields.clear();
  CsvField cur;
  bool in_quotes = false;
  bool after_close = false;  // a quoted field was closed; only spaces expected now
  bool at_start = true;      // nothing but spaces seen in this field yet
  size_t i = 0;
  auto finish = [&] {
    if (!cur.quoted) cur.text = std::string(TrimSpaces(cur.text));
    fields.push_back(std::move(cur));
    cur = CsvField();
    after_close = false;
    at_start = true;
  };
  while (i < record.size()) {
    char c = record[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < record.size() && record[i + 1] == '"') {
          cur.text.push_back('"');
          i += 2;
          continue;
        }
        in_quotes = false;
        after_close = true;
      } else {
        cur.text.push_back(c);
      }
      ++i;
      continue;
    }
    if (c == delimiter) {
      finish();
    } else if (c == '"' && at_start) {
      cur.text.clear();  // spaces before the opening quote
      cur.quoted = true;
      in_quotes = true;
      at_start = false;
    } else if (after_close) {
      // Text after a closing quote: keep it (lenient), except spaces.
      if (c != ' ' && c != '\t') cur.text.push_back(c);
    } else {
      cur.text.push_back(c);
      if (c != ' ' && c != '\t') at_start = false;
    }
    ++i;
  }
  if (in_quotes) return CsvParse::kOpenQuote;
  finish();
  return CsvParse::kComplete;
}

bool IsJsonNumber(std::string_view s) {
  size_t i = 0, n = s.size();
  auto digit = [&](size_t k) { return k < n && s[k] >= '0' && s[k] <= '9'; };
  if (i < n && s[i] == '-') ++i;
  if (!digit(i)) return false;
  if (s[i] == '0') {
    ++i;
  } else {
    while (digit(i)) ++i;
  }
  if (i < n && s[i] == '.') {
    ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digit(i)) return false;
    while (digit(i)) ++i;
  }
  return i == n;
}

std::string CsvRowToJson(const std::vector<std::string>& header,
                         const std::vector<CsvField>& fields) {
  std::string out;
  out.reserve(64 + 16 * fields.size());
  out += '{';
  for (size_t i = 0; i < fields.size() && i < header.size(); ++i) {
    if (i > 0) out += ',';
    AppendJsonString(out, header[i]);
    out += ':';
    const CsvField& f = fields[i];
    if (f.quoted) {
      AppendJsonString(out, f.text);
    } else if (f.text.empty()) {
      out += "null";
    } else if (IsJsonNumber(f.text)) {
      out += f.text;
    } else {
      AppendJsonString(out, f.text);
    }
  }
  out += '}';
  return out;
}

// ---------------------------------------------------------------------------
// Options

const SectionSpec& FileSourceSectionSpec() {
  static const SectionSpec spec{
      "sources[] (type: file)",
      "Bounded input from files: NDJSON (one JSON object per line) or CSV (a header line, "
      "then rows; each row is handed to the JSON decoder as an object keyed by the header "
      "names, numbers as numbers, empty fields as null; a row with the wrong number of "
      "fields becomes `{\"_csv_error\":...,\"_raw\":...}` and is quarantined). Blank lines "
      "are skipped. Records: topic = the path, offset = the 1-based line number.",
      {
          {"path", OptionType::kString, "", "The file to read (or use `paths`)."},
          {"paths", OptionType::kStringList, "", "Several files, read one after another."},
          {"file_format", OptionType::kEnum, "auto",
           "`ndjson`, `csv`, or `auto`: by extension (.csv and .tsv are CSV, anything else "
           "NDJSON).",
           "auto|ndjson|csv"},
          {"delimiter", OptionType::kString, ",",
           "CSV field separator: one character, or `tab` (auto for .tsv files)."},
          {"arrival_time", OptionType::kString, "",
           "A UTC timestamp used as every record's arrival time instead of the wall clock "
           "(reproducible re-reads of archives; drift and future checks compare against it)."},
          {"follow", OptionType::kBool, "false",
           "Must be false: to follow a growing file use a `tail` source."},
      }};
  return spec;
}

Result<FileSourceOptions> ParseFileSourceOptions(const OptionReader& r) {
  FileSourceOptions o;
  TRIB_ASSIGN_OR_RETURN(std::string path, r.GetString("path"));
  TRIB_ASSIGN_OR_RETURN(std::vector<std::string> paths, r.GetStringList("paths"));
  if (!path.empty()) o.paths.push_back(path);
  for (std::string& p : paths) {
    if (p.empty()) return r.Error("paths", "contains an empty path");
    o.paths.push_back(std::move(p));
  }
  if (o.paths.empty()) return r.Error("path", "is required (or give `paths`)");
  TRIB_ASSIGN_OR_RETURN(std::string format, r.GetString("file_format"));
  o.auto_format = format == "auto";
  o.format = format == "csv" ? FileFormat::kCsv : FileFormat::kNdjson;
  TRIB_ASSIGN_OR_RETURN(std::string arrival, r.GetString("arrival_time"));
  if (!arrival.empty()) {
    Result<TimeUs> t = ParseTime(arrival);
    if (!t.ok()) return r.Error("arrival_time", t.status().message());
    o.fixed_arrival_time = *t;
  }
  TRIB_ASSIGN_OR_RETURN(std::string delimiter, r.GetString("delimiter"));
  o.delimiter_set = r.Has("delimiter");
  if (delimiter == "tab" || delimiter == "\\t" || delimiter == "\t") {
    o.delimiter = '\t';
  } else if (delimiter.size() == 1 && delimiter[0] != '"' && delimiter[0] != '\n' &&
             delimiter[0] != '\r') {
    o.delimiter = delimiter[0];
  } else {
    return r.Error("delimiter",
                   "must be one character (not a quote or line break) or `tab`, "
                   "got '" +
                       delimiter + "'");
  }
  TRIB_ASSIGN_OR_RETURN(bool follow, r.GetBool("follow"));
  if (follow) {
    return r.Error("follow",
                   "the file source reads files once to the end; to follow a growing "
                   "file use `type: tail` (see sources[] (type: tail))");
  }
  return o;
}

// ---------------------------------------------------------------------------
// The source

FileSource::FileSource(FileSourceOptions options) : options_(std::move(options)) {}

FileSource::~FileSource() = default;

Status FileSource::Open(RunContext& ctx) {
  total_bytes_ = 0;
  for (const std::string& p : options_.paths) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) {
      int err = errno;
      std::string msg = "file source: cannot open '" + p + "': " + std::strerror(err);
      return err == ENOENT ? Status::NotFound(msg) : Status::Io(msg);
    }
    if (S_ISDIR(st.st_mode)) {
      return Status::Io("file source: cannot read '" + p + "': " + std::strerror(EISDIR));
    }
    std::unique_ptr<std::FILE, FileCloser> f(std::fopen(p.c_str(), "rb"));
    if (!f) {
      return Status::Io("file source: cannot open '" + p + "': " + std::strerror(errno));
    }
    total_bytes_ += static_cast<uint64_t>(st.st_size);
  }
  next_path_ = 0;
  done_ = false;
  checkpointing_ = ctx.checkpointing;
  return Status::Ok();
}

void FileSource::Close() {
  file_.reset();
}

Status FileSource::OpenNext() {
  path_ = options_.paths[next_path_++];
  file_.reset(std::fopen(path_.c_str(), "rb"));
  if (!file_) {
    return Status::Io("file source: cannot open '" + path_ + "': " + std::strerror(errno));
  }
  topic_ = Intern(path_);
  format_ = options_.auto_format ? FileFormatFromPath(path_) : options_.format;
  delimiter_ = options_.delimiter;
  if (options_.auto_format && !options_.delimiter_set && EndsWith(path_, ".tsv")) {
    delimiter_ = '\t';
  }
  line_no_ = 0;
  header_read_ = false;
  header_.clear();
  buf_.resize(kReadChunk);
  buf_pos_ = buf_end_ = 0;
  eof_ = false;
  return Status::Ok();
}

Result<bool> FileSource::ReadLine(std::string& line) {
  line.clear();
  bool any = false;
  while (true) {
    if (buf_pos_ < buf_end_) {
      const char* begin = buf_.data() + buf_pos_;
      size_t avail = buf_end_ - buf_pos_;
      const void* nl = std::memchr(begin, '\n', avail);
      size_t take =
          nl == nullptr ? avail : static_cast<size_t>(static_cast<const char*>(nl) - begin);
      line.append(begin, take);
      any = true;
      buf_pos_ += take;
      if (nl != nullptr) {
        ++buf_pos_;  // the '\n'
        bytes_read_.fetch_add(take + 1, std::memory_order_relaxed);
        break;
      }
      bytes_read_.fetch_add(take, std::memory_order_relaxed);
    }
    if (eof_) {
      if (!any) return false;
      break;  // last line without a final newline
    }
    size_t n = std::fread(buf_.data(), 1, buf_.size(), file_.get());
    buf_pos_ = 0;
    buf_end_ = n;
    if (n == 0) {
      if (std::ferror(file_.get())) {
        return Status::Io("file source: error reading '" + path_ + "': " + std::strerror(errno));
      }
      eof_ = true;
    }
  }
  ++line_no_;
  if (line_no_ == 1 && line.size() >= 3 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) {
    line.erase(0, 3);
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return true;
}

Result<bool> FileSource::NextRecord(RawBatch& out, TimeUs now) {
  while (true) {
    TRIB_ASSIGN_OR_RETURN(bool got, ReadLine(line_));
    if (!got) return false;
    if (IsBlank(line_)) continue;
    const int64_t start_line = line_no_;
    if (format_ == FileFormat::kNdjson) {
      out.Add(line_, now, topic_, start_line, -1);
      return true;
    }
    // CSV: gather continuation lines while a quoted field is open.
    record_ = line_;
    CsvParse parse = SplitCsvRecord(record_, delimiter_, fields_);
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
      parse = SplitCsvRecord(record_, delimiter_, fields_);
    }
    if (!header_read_) {
      if (unterminated) {
        out.Add(CsvError("unterminated quoted field in the header", record_), now, topic_,
                start_line, -1);
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
      out.Add(CsvError("unterminated quoted field", record_), now, topic_, start_line, -1);
    } else if (fields_.size() != header_.size()) {
      out.Add(CsvError("expected " + std::to_string(header_.size()) + " fields, got " +
                           std::to_string(fields_.size()),
                       record_),
              now, topic_, start_line, -1);
    } else {
      out.Add(CsvRowToJson(header_, fields_), now, topic_, start_line, -1);
    }
    return true;
  }
}

Status FileSource::Poll(RawBatch& out, size_t max_records, DurationUs wait) {
  if (done_) {
    out.end_of_stream = true;
    return Status::Ok();
  }
  if (paused_.load(std::memory_order_relaxed)) {
    // Held back (memory ceiling): read nothing for up to `wait`, in short steps.
    const TimeUs until = NowUs() + std::max<DurationUs>(wait, 0);
    while (paused_.load(std::memory_order_relaxed) && !stop_.load(std::memory_order_relaxed)) {
      const TimeUs now = NowUs();
      if (now >= until) return Status::Ok();
      std::this_thread::sleep_for(
          std::chrono::microseconds(std::min<DurationUs>(until - now, 5 * kMicrosPerMilli)));
    }
    if (stop_.load(std::memory_order_relaxed)) return Status::Ok();
  }
  const TimeUs now =
      options_.fixed_arrival_time != kMinTime ? options_.fixed_arrival_time : NowUs();
  size_t added = 0;
  const size_t start_bytes = out.data.size();
  while (added < max_records && !stop_.load(std::memory_order_relaxed)) {
    if (added > 0 && out.data.size() - start_bytes >= kMaxBatchBytes) break;
    if (!file_) {
      if (next_path_ >= options_.paths.size()) {
        done_ = true;
        out.end_of_stream = true;
        break;
      }
      TRIB_RETURN_IF_ERROR(OpenNext());
    }
    TRIB_ASSIGN_OR_RETURN(bool got, NextRecord(out, now));
    if (!got) {
      file_.reset();
      continue;
    }
    ++added;
  }
  if (checkpointing_) out.position = EncodePosition();
  return Status::Ok();
}

// The position: done flag, index of the current file (or of the next one when none
// is open), whether one is open, and for an open file the bytes consumed, the line
// number and the CSV header.
std::string FileSource::EncodePosition() const {
  CheckpointWriter w;
  w.Bool(done_);
  const bool open = file_ != nullptr;
  w.U64(open ? next_path_ - 1 : next_path_);
  w.Bool(open);
  if (open) {
    off_t at = ::ftello(file_.get());
    w.U64(static_cast<uint64_t>(at) - (buf_end_ - buf_pos_));
    w.I64(line_no_);
    w.Bool(header_read_);
    w.U64(header_.size());
    for (const std::string& h : header_) w.Str(h);
  }
  return w.Take();
}

Status FileSource::RestorePosition(std::string_view position) {
  CheckpointReader r(position);
  const bool done = r.Bool();
  const uint64_t index = r.U64();
  const bool open = r.Bool();
  TRIB_RETURN_IF_ERROR(r.status().WithContext("file source position"));
  if (index > options_.paths.size() || (open && index >= options_.paths.size())) {
    return Status::Invalid("file source: the checkpoint is at file " + std::to_string(index + 1) +
                           " but only " + std::to_string(options_.paths.size()) +
                           " paths are configured");
  }
  file_.reset();
  done_ = done;
  next_path_ = static_cast<size_t>(index);
  uint64_t before = 0;
  for (size_t i = 0; i < next_path_; ++i) {
    struct stat st {};
    if (::stat(options_.paths[i].c_str(), &st) == 0) before += static_cast<uint64_t>(st.st_size);
  }
  if (open) {
    const uint64_t offset = r.U64();
    const int64_t line_no = r.I64();
    const bool header_read = r.Bool();
    std::vector<std::string> header(r.Count());
    for (std::string& h : header) h = std::string(r.Str());
    TRIB_RETURN_IF_ERROR(r.status().WithContext("file source position"));
    TRIB_RETURN_IF_ERROR(OpenNext());
    struct stat st {};
    if (::fstat(::fileno(file_.get()), &st) != 0 || static_cast<uint64_t>(st.st_size) < offset) {
      return Status::Invalid("file source: '" + path_ +
                             "' is shorter than the checkpoint's offset " + std::to_string(offset) +
                             " (was the file replaced?)");
    }
    if (::fseeko(file_.get(), static_cast<off_t>(offset), SEEK_SET) != 0) {
      return Status::Io("file source: cannot seek in '" + path_ + "': " + std::strerror(errno));
    }
    line_no_ = line_no;
    header_read_ = header_read;
    header_ = std::move(header);
    before += offset;
  }
  bytes_read_.store(before, std::memory_order_relaxed);
  return Status::Ok();
}

void RegisterFileSource(Registry& registry) {
  registry.AddSource(
      "file", &FileSourceSectionSpec(),
      [](const SourceEntry& entry) -> Result<std::unique_ptr<Source>> {
        TRIB_ASSIGN_OR_RETURN(FileSourceOptions options, ParseFileSourceOptions(entry.options));
        return std::unique_ptr<Source>(std::make_unique<FileSource>(std::move(options)));
      });
}

}  // namespace tributary
