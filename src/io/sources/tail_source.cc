#include "io/sources/tail_source.h"

#include <fcntl.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <utility>

#include "core/json_writer.h"
#include "core/pipeline_config.h"
#include "core/registry.h"
#include "core/time.h"
#include "stream/runtime.h"

namespace tributary {

namespace {

constexpr size_t kTailReadChunk = 1 << 20;
constexpr size_t kTailMaxRecordBytes = 64 << 20;
constexpr int kTailMaxCsvContinuationLines = 1000;
constexpr DurationUs kTailPublishTimeout = 10'000'000;

bool TailBlank(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == ' ' || c == '\t'; });
}

// A file name made of the source name: letters, digits, '-', '_' and '.' kept.
std::string TailStateName(std::string_view name) {
  std::string out;
  for (char c : name) {
    bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '-' || c == '_' || c == '.';
    out += keep ? c : '_';
  }
  return out.empty() ? "tail" : out;
}

}  // namespace

const SectionSpec& TailPublishSectionSpec() {
  static const SectionSpec spec = [] {
    SectionSpec s{"sources[].publish (type: tail)",
                  "Publish every row the tail source reads to an MQTT broker as its JSON "
                  "object (the CSV watcher bridge). The connection keys are those of the "
                  "mqtt connectors.",
                  MqttConnectionOptionSpecs()};
    s.options.push_back({"topic",
                         OptionType::kString,
                         "",
                         "Topic the rows are published to, e.g. `weather/readings`.",
                         {},
                         true});
    s.options.push_back({"qos", OptionType::kInt, "0", "Publish QoS.", "0..2"});
    s.options.push_back({"retain", OptionType::kBool, "false", "Publish with the retain flag."});
    return s;
  }();
  return spec;
}

const SectionSpec& TailSourceSectionSpec() {
  static const SectionSpec spec{
      "sources[] (type: tail)",
      "Follows a growing CSV or NDJSON file: new complete rows are read every "
      "`poll_interval`; rotation (rename + new file) and truncation are followed. The byte "
      "position is saved to `state_file` only after the sinks committed the rows, so a "
      "restart resumes there. Rows are handed on like the file source's (CSV rows as JSON "
      "objects keyed by the header). Records: topic = the path, offset = the byte position "
      "of the row. With `publish`, each row is also published to MQTT.",
      {
          {"path", OptionType::kString, "", "The file to follow.", {}, true},
          {"file_format", OptionType::kEnum, "auto",
           "`ndjson`, `csv`, or `auto`: by extension (.csv and .tsv are CSV).", "auto|ndjson|csv"},
          {"delimiter", OptionType::kString, ",",
           "CSV field separator: one character, or `tab` (auto for .tsv files)."},
          {"poll_interval", OptionType::kDuration, "250ms",
           "How often the file is checked for new rows, rotation and truncation.", "1ms.."},
          {"state_file", OptionType::kString, "",
           "Where the committed position is saved (default: "
           "`<data_dir>/tail/<source name>.json`)."},
          {"start_at", OptionType::kEnum, "beginning",
           "With no saved position: read the file from its `beginning`, or only rows "
           "appended from now on (`end`).",
           "beginning|end"},
          {"publish", OptionType::kAny, "",
           "Publish each row to MQTT: `{broker: mqtt://host:1883, topic: weather/readings, "
           "qos: 1}`; keys under `sources[].publish (type: tail)`."},
      }};
  return spec;
}

Result<TailSourceOptions> ParseTailSourceOptions(const OptionReader& r,
                                                 const std::string& source_name) {
  TailSourceOptions o;
  o.source_name = source_name;
  TRIB_ASSIGN_OR_RETURN(o.path, r.GetString("path"));
  if (o.path.empty()) return r.Error("path", "is required");
  TRIB_ASSIGN_OR_RETURN(std::string format, r.GetString("file_format"));
  o.auto_format = format == "auto";
  o.format = format == "ndjson" ? FileFormat::kNdjson : FileFormat::kCsv;
  if (o.auto_format) o.format = FileFormatFromPath(o.path);
  TRIB_ASSIGN_OR_RETURN(std::string delimiter, r.GetString("delimiter"));
  if (delimiter == "tab" || delimiter == "\\t" || delimiter == "\t") {
    o.delimiter = '\t';
  } else if (delimiter.size() == 1 && delimiter[0] != '"' && delimiter[0] != '\n' &&
             delimiter[0] != '\r') {
    o.delimiter = delimiter[0];
  } else {
    return r.Error("delimiter", "must be one character (not a quote or line break) or `tab`");
  }
  if (!r.Has("delimiter") && o.path.size() >= 4 && o.path.ends_with(".tsv")) o.delimiter = '\t';
  TRIB_ASSIGN_OR_RETURN(o.poll_interval, r.GetDuration("poll_interval"));
  TRIB_ASSIGN_OR_RETURN(o.state_file, r.GetString("state_file"));
  TRIB_ASSIGN_OR_RETURN(std::string start_at, r.GetString("start_at"));
  o.start_at_end = start_at == "end";
  if (r.Has("publish")) {
    if (!r.Node("publish").IsMap()) {
      return r.Error("publish", "expected a mapping with broker and topic");
    }
    OptionReader p = r.Child("publish", &TailPublishSectionSpec());
    TRIB_RETURN_IF_ERROR(p.CheckKeys());
    TRIB_ASSIGN_OR_RETURN(o.publish.connect, ParseMqttConnectOptions(p));
    TRIB_ASSIGN_OR_RETURN(o.publish.topic, p.GetString("topic"));
    if (o.publish.topic.empty()) return p.Error("topic", "must not be empty");
    if (o.publish.topic.find_first_of("+#") != std::string::npos) {
      return p.Error("topic", "a publish topic cannot hold the wildcards + or #");
    }
    TRIB_ASSIGN_OR_RETURN(int64_t qos, p.GetInt("qos"));
    o.publish.qos = static_cast<int>(qos);
    TRIB_ASSIGN_OR_RETURN(o.publish.retain, p.GetBool("retain"));
  }
  return o;
}

TailSource::TailSource(TailSourceOptions options)
    : options_(std::move(options)),
      topic_(Intern(options_.path)),
      format_(options_.format),
      buf_(kTailReadChunk) {}

TailSource::~TailSource() {
  Close();
}

Status TailSource::Open(RunContext& ctx) {
  if (options_.state_file.empty()) {
    options_.state_file = ctx.data_dir + "/tail/" + TailStateName(options_.source_name) + ".json";
  }
  std::error_code ec;
  std::filesystem::path state_dir = std::filesystem::path(options_.state_file).parent_path();
  if (!state_dir.empty()) std::filesystem::create_directories(state_dir, ec);
  if (ec) {
    return Status::Io("tail: cannot create " + state_dir.string() + ": " + ec.message());
  }
  if (!options_.publish.topic.empty()) {
    TRIB_ASSIGN_OR_RETURN(publisher_, MqttPublisher::Create(options_.publish.connect));
    TRIB_RETURN_IF_ERROR(publisher_->Connect());
  }
  if (ctx.checkpointing && ctx.config != nullptr) {
    TRIB_ASSIGN_OR_RETURN(log_, OpenSourceIngestLog(*ctx.config, options_.source_name));
    if (uint64_t n = log_->backlog(); n > 0) {
      spdlog::info("tail {}: the ingest log holds {} rows", options_.source_name, n);
    }
  }
  // The saved position, if any.
  bool have_saved = false;
  Position saved;
  if (std::filesystem::exists(options_.state_file, ec)) {
    simdjson::padded_string text;
    if (simdjson::padded_string::load(options_.state_file).get(text) != simdjson::SUCCESS) {
      return Status::Io("tail: cannot read " + options_.state_file);
    }
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    uint64_t dev = 0, ino = 0, offset = 0;
    if (parser.parse(text).get(doc) != simdjson::SUCCESS || doc["dev"].get(dev) ||
        doc["inode"].get(ino) || doc["offset"].get(offset)) {
      return Status::Invalid("tail: " + options_.state_file +
                             " is not a saved position ({\"dev\",\"inode\",\"offset\"}); "
                             "delete it to start over");
    }
    saved.dev = static_cast<dev_t>(dev);
    saved.ino = static_cast<ino_t>(ino);
    saved.offset = offset;
    have_saved = true;
  }
  struct stat st {};
  if (::stat(options_.path.c_str(), &st) != 0) {
    spdlog::info("tail: {} does not exist yet; waiting for it", options_.path);
    return Status::Ok();
  }
  uint64_t start = 0;
  if (have_saved) {
    if (st.st_dev != saved.dev || st.st_ino != saved.ino) {
      spdlog::warn(
          "tail: {} is another file than at the saved position (rotated while "
          "stopped); reading it from the beginning",
          options_.path);
    } else if (static_cast<uint64_t>(st.st_size) < saved.offset) {
      spdlog::warn(
          "tail: {} is shorter ({} bytes) than the saved position {} (truncated "
          "while stopped); reading it from the beginning",
          options_.path, st.st_size, saved.offset);
    } else {
      start = saved.offset;
    }
  } else if (options_.start_at_end) {
    start = static_cast<uint64_t>(st.st_size);
  }
  TRIB_RETURN_IF_ERROR(OpenFile(start));
  if (start > 0 && format_ == FileFormat::kCsv) TRIB_RETURN_IF_ERROR(ReadHeader());
  if (have_saved || start > 0) {
    spdlog::info("tail: following {} from byte {}", options_.path, start);
  }
  return Status::Ok();
}

Status TailSource::OpenFile(uint64_t offset) {
  CloseFile();
  fd_ = ::open(options_.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    if (errno == ENOENT) return Status::Ok();  // waited for
    return Status::Io("tail: cannot open " + options_.path + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    CloseFile();
    return Status::Io("tail: " + options_.path + " is not a regular file");
  }
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  offset_ = offset;
  header_read_ = false;
  header_.clear();
  return Status::Ok();
}

void TailSource::CloseFile() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

Status TailSource::ReadHeader() {
  // The first non-blank record of the file, read without moving offset_.
  const uint64_t keep = offset_;
  offset_ = 0;
  RawBatch scratch;
  // ReadRecords consumes the header itself and stops after the first data record.
  Result<size_t> n = ReadRecords(scratch, 0, 0);
  offset_ = keep;
  if (!n.ok()) return n.status();
  if (!header_read_) {
    return Status::Invalid("tail: " + options_.path +
                           " has a saved position but no complete header line");
  }
  return Status::Ok();
}

Result<size_t> TailSource::ReadRecords(RawBatch& out, size_t max_records, TimeUs now) {
  size_t added = 0;
  // max_records == 0: only read the header (ReadHeader).
  while (fd_ >= 0 && (max_records == 0 ? !header_read_ : added < max_records)) {
    ssize_t got = ::pread(fd_, buf_.data(), buf_.size(), static_cast<off_t>(offset_));
    if (got < 0) {
      if (errno == EINTR) continue;
      return Status::Io("tail: cannot read " + options_.path + ": " + std::strerror(errno));
    }
    if (got == 0) break;
    std::string_view chunk(buf_.data(), static_cast<size_t>(got));
    size_t pos = 0;
    bool progress = false;
    while (pos < chunk.size() && (max_records == 0 ? !header_read_ : added < max_records)) {
      const uint64_t record_start = offset_ + pos;
      size_t nl = chunk.find('\n', pos);
      if (nl == std::string_view::npos) break;  // incomplete: wait for its newline
      std::string_view line = chunk.substr(pos, nl - pos);
      size_t next = nl + 1;
      if (record_start == 0 && line.starts_with("\xEF\xBB\xBF")) line.remove_prefix(3);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (TailBlank(line)) {
        pos = next;
        progress = true;
        continue;
      }
      if (format_ == FileFormat::kNdjson) {
        if (max_records == 0) return added;  // no header in NDJSON
        out.Add(line, now, topic_, static_cast<int64_t>(record_start), -1);
        Publish(line);
        ++added;
        pos = next;
        progress = true;
        continue;
      }
      // CSV: gather continuation lines while a quoted field is open.
      std::string record(line);
      CsvParse parse = SplitCsvRecord(record, options_.delimiter, fields_);
      int continuations = 0;
      bool incomplete = false;
      bool unterminated = false;
      while (parse == CsvParse::kOpenQuote) {
        if (continuations >= kTailMaxCsvContinuationLines) {
          unterminated = true;
          break;
        }
        size_t nl2 = chunk.find('\n', next);
        if (nl2 == std::string_view::npos) {
          incomplete = true;
          break;
        }
        std::string_view more = chunk.substr(next, nl2 - next);
        if (!more.empty() && more.back() == '\r') more.remove_suffix(1);
        record += '\n';
        record += more;
        next = nl2 + 1;
        ++continuations;
        parse = SplitCsvRecord(record, options_.delimiter, fields_);
      }
      if (incomplete) break;
      pos = next;
      progress = true;
      if (!header_read_) {
        if (unterminated) {
          out.Add(CsvErrorJson("unterminated quoted field in the header", record), now, topic_,
                  static_cast<int64_t>(record_start), -1);
          ++added;
          continue;
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
      std::string json;
      if (unterminated) {
        json = CsvErrorJson("unterminated quoted field", record);
      } else if (fields_.size() != header_.size()) {
        json = CsvErrorJson("expected " + std::to_string(header_.size()) + " fields, got " +
                                std::to_string(fields_.size()),
                            record);
      } else {
        json = CsvRowToJson(header_, fields_);
      }
      out.Add(json, now, topic_, static_cast<int64_t>(record_start), -1);
      if (!unterminated && fields_.size() == header_.size()) Publish(json);
      ++added;
    }
    offset_ += pos;
    if (!progress) {
      // No complete record in a full chunk: the record is longer; read more at once.
      if (static_cast<size_t>(got) < buf_.size()) break;
      if (buf_.size() >= kTailMaxRecordBytes) {
        return Status::Invalid("tail: " + options_.path + ": a record at byte " +
                               std::to_string(offset_) + " is longer than " +
                               std::to_string(kTailMaxRecordBytes) + " bytes");
      }
      buf_.resize(buf_.size() * 2);
    }
  }
  return added;
}

void TailSource::Publish(std::string_view json) {
  if (publisher_ == nullptr) return;
  // The row is in the pipeline whatever happens here; a failed publish only loses the
  // MQTT copy, so it is logged (first and every 1000th) and counted, not fatal.
  Status s = Status::Ok();
  if (!publisher_->IsConnected()) s = publisher_->Connect();
  if (s.ok()) {
    Result<int> token = publisher_->Publish(options_.publish.topic, json, options_.publish.qos,
                                            options_.publish.retain);
    if (!token.ok()) {
      s = token.status();
    } else if (options_.publish.qos > 0) {
      s = publisher_->WaitForDelivery(*token, kTailPublishTimeout);
    }
  }
  if (s.ok()) {
    published_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  uint64_t failed = publish_failures_.fetch_add(1, std::memory_order_relaxed);
  if (failed % 1000 == 0) {
    spdlog::warn("tail: publishing a row to {} topic {} failed ({} so far): {}",
                 options_.publish.connect.broker, options_.publish.topic, failed + 1, s.ToString());
  }
}

Status TailSource::CheckRotation() {
  struct stat st {};
  if (::stat(options_.path.c_str(), &st) != 0) {
    // Renamed away and not yet re-created: keep the old file (it may still grow).
    return Status::Ok();
  }
  if (fd_ < 0) {
    TRIB_RETURN_IF_ERROR(OpenFile(0));
    if (fd_ >= 0) spdlog::info("tail: {} appeared; following it", options_.path);
    return Status::Ok();
  }
  if (st.st_dev != dev_ || st.st_ino != ino_) {
    // Rotated: the old file was read to its end just now; take the new one.
    spdlog::info("tail: {} was rotated; following the new file", options_.path);
    rotations_.fetch_add(1, std::memory_order_relaxed);
    return OpenFile(0);
  }
  if (static_cast<uint64_t>(st.st_size) < offset_) {
    spdlog::warn("tail: {} was truncated ({} bytes, position was {}); reading from the start",
                 options_.path, st.st_size, offset_);
    truncations_.fetch_add(1, std::memory_order_relaxed);
    offset_ = 0;
    header_read_ = false;
    header_.clear();
  }
  return Status::Ok();
}

void TailSource::WaitFor(DurationUs wait) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::microseconds(std::max<DurationUs>(wait, 0)),
               [&] { return stop_; });
}

Status TailSource::ReadNew(RawBatch& out, size_t max_records) {
  const TimeUs now = NowUs();
  size_t added = 0;
  if (fd_ >= 0) {
    TRIB_ASSIGN_OR_RETURN(added, ReadRecords(out, std::max<size_t>(max_records, 1), now));
  }
  if (added == 0) {
    // At the end: has the file been rotated or truncated? Then read on at once.
    TRIB_RETURN_IF_ERROR(CheckRotation());
    if (fd_ >= 0) {
      TRIB_ASSIGN_OR_RETURN(added, ReadRecords(out, std::max<size_t>(max_records, 1), now));
    }
  }
  return Status::Ok();
}

Status TailSource::Poll(RawBatch& out, size_t max_records, DurationUs wait) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return Status::Ok();  // nothing is held: the rest is read after a restart
  }
  if (log_ != nullptr) return PollThroughLog(out, max_records, wait);
  TRIB_RETURN_IF_ERROR(ReadNew(out, max_records));
  if (out.records.empty()) {
    WaitFor(std::min(wait, options_.poll_interval));
    return Status::Ok();
  }
  std::lock_guard<std::mutex> lock(mu_);
  out.checkpoint = next_checkpoint_++;
  pending_.push_back(Position{out.checkpoint, dev_, ino_, offset_});
  return Status::Ok();
}

Status TailSource::PollThroughLog(RawBatch& out, size_t max_records, DurationUs wait) {
  // What the file has beyond the log goes into the log first; a log that refuses the
  // rows (disk full) leaves the file position where it was, so they are read again.
  const uint64_t offset = offset_;
  const bool header_read = header_read_;
  const std::vector<std::string> header = header_;
  const dev_t dev = dev_;
  const ino_t ino = ino_;
  RawBatch fresh;
  TRIB_RETURN_IF_ERROR(ReadNew(fresh, max_records));
  if (!fresh.records.empty()) {
    std::vector<IngestLogEntry> entries;
    entries.reserve(fresh.records.size());
    const std::string_view topic = topic_.view();
    for (const RawRecord& r : fresh.records) {
      entries.push_back(IngestLogEntry{topic, fresh.Payload(r), r.arrival_time});
    }
    Result<int64_t> appended = log_->Append(entries);
    if (appended.ok()) {
      SavePosition(Position{0, dev_, ino_, offset_});
    } else {
      if (log_failures_++ % 100 == 0) {
        spdlog::warn("tail {}: the ingest log refused {} rows (read again in a moment): {}",
                     options_.source_name, entries.size(), appended.status().ToString());
      }
      if (dev_ != dev || ino_ != ino) {
        // Rotated: ReadNew only switches files once the old one has nothing new, so all
        // of `fresh` came from the new file; read it from its start again.
        offset_ = 0;
        header_read_ = false;
        header_.clear();
      } else {
        offset_ = offset;
        header_read_ = header_read;
        header_ = header;
      }
      WaitFor(100 * kMicrosPerMilli);
    }
  }
  // Nothing new in the file: wait in the log (for at most a poll interval, then look at
  // the file again).
  return log_->Read(out, max_records,
                    fresh.records.empty() ? std::min(wait, options_.poll_interval) : 0);
}

Status TailSource::RestorePosition(std::string_view position) {
  if (log_ == nullptr) return Source::RestorePosition(position);
  TRIB_RETURN_IF_ERROR(log_->Seek(position).WithContext("tail ingest log"));
  if (uint64_t n = log_->backlog(); n > 0) {
    spdlog::info("tail {}: {} rows read after the checkpoint are replayed from the ingest log",
                 options_.source_name, n);
  }
  return Status::Ok();
}

void TailSource::OnCommitted(uint64_t checkpoint) {
  if (log_ != nullptr) {
    log_->OnCommitted(checkpoint);
    return;
  }
  Position last;
  bool found = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (!pending_.empty() && pending_.front().checkpoint <= checkpoint) {
      last = pending_.front();
      found = true;
      pending_.pop_front();
    }
  }
  if (found) SavePosition(last);
}

void TailSource::SavePosition(const Position& p) {
  std::string json = "{\"path\":";
  AppendJsonString(json, options_.path);
  json += ",\"dev\":" + std::to_string(static_cast<uint64_t>(p.dev)) +
          ",\"inode\":" + std::to_string(static_cast<uint64_t>(p.ino)) +
          ",\"offset\":" + std::to_string(p.offset) + "}\n";
  Status st = WriteFileAtomic(options_.state_file, json);
  if (!st.ok()) spdlog::warn("tail: cannot save the position: {}", st.ToString());
}

void TailSource::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (log_ != nullptr) log_->Wake();
}

void TailSource::Close() {
  Stop();
  CloseFile();
  if (log_ != nullptr) log_->Close();
  if (publisher_ != nullptr) {
    publisher_->Disconnect(1'000'000);
    publisher_.reset();
  }
}

void RegisterTailSource(Registry& registry) {
  registry.AddSource(
      "tail", &TailSourceSectionSpec(),
      [](const SourceEntry& entry) -> Result<std::unique_ptr<Source>> {
        TRIB_ASSIGN_OR_RETURN(TailSourceOptions options,
                              ParseTailSourceOptions(entry.options, entry.name));
        return std::unique_ptr<Source>(std::make_unique<TailSource>(std::move(options)));
      });
  registry.AddSection(&TailPublishSectionSpec());
}

}  // namespace tributary
