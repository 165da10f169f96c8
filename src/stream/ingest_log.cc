#include "stream/ingest_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <optional>
#include <system_error>

#include "core/intern.h"

namespace tributary {

namespace {

constexpr size_t kFrameHeader = 8;
constexpr size_t kReadChunk = size_t{256} << 10;
constexpr std::string_view kSegmentPrefix = "segment-";
constexpr std::string_view kSegmentSuffix = ".log";

uint32_t Fnv1a(std::string_view bytes) {
  uint32_t h = 2166136261u;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

void PutU32(std::string& out, uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  out.append(b, 4);
}

uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  std::memcpy(&v, p, 4);
  return v;
}

std::string Errno(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

// Write all of `bytes` at the end of `fd` (retrying short writes).
Status WriteAll(int fd, std::string_view bytes, const std::string& path) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::Io(Errno("ingest log: cannot write " + path), true);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

// A complete, intact frame at the start of `bytes`: its total size, or 0.
size_t FrameAt(std::string_view bytes) {
  if (bytes.size() < kFrameHeader) return 0;
  const uint32_t len = GetU32(bytes.data());
  if (bytes.size() - kFrameHeader < len) return 0;
  if (Fnv1a(bytes.substr(kFrameHeader, len)) != GetU32(bytes.data() + 4)) return 0;
  return kFrameHeader + len;
}

bool ParseU64(std::string_view s, uint64_t& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

void SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

}  // namespace

std::string IngestLogDir(const std::string& checkpoint_dir, const std::string& source_name) {
  return checkpoint_dir + "/ingest-" + source_name;
}

Result<std::unique_ptr<IngestLog>> OpenSourceIngestLog(const PipelineConfig& config,
                                                       const std::string& source_name) {
  TRIB_ASSIGN_OR_RETURN(CheckpointOptions ckpt, ReadCheckpointOptions(config));
  IngestLogOptions o;
  o.dir = IngestLogDir(ckpt.dir, source_name);
  o.fsync = ckpt.ingest_log_fsync;
  o.fsync_interval = ckpt.ingest_log_fsync_interval;
  o.segment_bytes = ckpt.ingest_log_segment_bytes;
  o.keep = ckpt.keep;
  auto log = std::make_unique<IngestLog>();
  TRIB_RETURN_IF_ERROR(log->Open(std::move(o)));
  return log;
}

IngestLog::~IngestLog() {
  Close();
}

std::string IngestLog::SegmentPath(uint64_t segment) const {
  std::string digits = std::to_string(segment);
  return options_.dir + "/" + std::string(kSegmentPrefix) +
         std::string(20 - std::min<size_t>(20, digits.size()), '0') + digits +
         std::string(kSegmentSuffix);
}

std::vector<uint64_t> IngestLog::Segments() const {
  std::vector<uint64_t> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(options_.dir, ec)) {
    std::string name = e.path().filename().string();
    if (name.size() <= kSegmentPrefix.size() + kSegmentSuffix.size() ||
        name.rfind(kSegmentPrefix, 0) != 0 ||
        name.compare(name.size() - kSegmentSuffix.size(), kSegmentSuffix.size(), kSegmentSuffix) !=
            0) {
      continue;
    }
    uint64_t n = 0;
    std::string_view digits = std::string_view(name).substr(
        kSegmentPrefix.size(), name.size() - kSegmentPrefix.size() - kSegmentSuffix.size());
    if (ParseU64(digits, n) && n > 0) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status IngestLog::OpenForAppend(uint64_t segment, uint64_t size) {
  if (append_fd_ >= 0) ::close(append_fd_);
  const std::string path = SegmentPath(segment);
  append_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (append_fd_ < 0) return Status::Io(Errno("ingest log: cannot open " + path), true);
  if (size == 0) SyncDir(options_.dir);  // the new file's name is durable too
  std::lock_guard lock(mu_);
  append_ = Pos{segment, size};
  return Status::Ok();
}

Status IngestLog::Open(IngestLogOptions options) {
  Close();
  options_ = std::move(options);
  std::error_code ec;
  std::filesystem::create_directories(options_.dir, ec);
  if (ec) return Status::Io("ingest log: cannot create " + options_.dir + ": " + ec.message());
  std::vector<uint64_t> segments = Segments();
  next_seq_ = 1;
  uint64_t last = segments.empty() ? 1 : segments.back();
  uint64_t last_size = 0;
  // Find the next sequence number (from the newest segment holding a record) and cut a
  // torn frame off the end of the newest segment.
  for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
    const std::string path = SegmentPath(*it);
    std::string bytes;
    {
      std::error_code size_ec;
      const auto size = std::filesystem::file_size(path, size_ec);
      if (size_ec) return Status::Io("ingest log: cannot read " + path + ": " + size_ec.message());
      bytes.resize(static_cast<size_t>(size));
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return Status::Io(Errno("ingest log: cannot read " + path));
      size_t got = 0;
      while (got < bytes.size()) {
        ssize_t n = ::pread(fd, bytes.data() + got, bytes.size() - got, static_cast<off_t>(got));
        if (n <= 0) break;
        got += static_cast<size_t>(n);
      }
      ::close(fd);
      bytes.resize(got);
    }
    size_t at = 0;
    int64_t last_seq = 0;
    while (size_t n = FrameAt(std::string_view(bytes).substr(at))) {
      CheckpointReader r(std::string_view(bytes).substr(at + kFrameHeader, n - kFrameHeader));
      last_seq = static_cast<int64_t>(r.U64());
      at += n;
    }
    if (*it == last) {
      if (at < bytes.size() && ::truncate(path.c_str(), static_cast<off_t>(at)) != 0) {
        return Status::Io(Errno("ingest log: cannot repair " + path));
      }
      last_size = at;
    }
    if (last_seq > 0) {
      next_seq_ = last_seq + 1;
      break;
    }
  }
  TRIB_RETURN_IF_ERROR(OpenForAppend(last, last_size));
  int64_t first_seq = next_seq_;  // of the oldest record in the log
  if (!segments.empty()) {
    int fd = ::open(SegmentPath(segments.front()).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      char header[kFrameHeader + 10];
      ssize_t n = ::pread(fd, header, sizeof header, 0);
      ::close(fd);
      if (n > static_cast<ssize_t>(kFrameHeader)) {
        CheckpointReader r(
            std::string_view(header + kFrameHeader, static_cast<size_t>(n) - kFrameHeader));
        const auto seq = static_cast<int64_t>(r.U64());
        if (r.ok() && seq > 0) first_seq = seq;
      }
    }
  }
  {
    std::lock_guard lock(mu_);
    oldest_segment_ = segments.empty() ? 1 : segments.front();
    // Without a checkpoint every record still in the log is read again.
    read_ = Pos{oldest_segment_, 0};
    read_seq_ = first_seq;
    closed_ = false;
    wake_ = false;
    dirty_ = false;
    batches_ = 0;
    committed_seq_ = 0;
    handed_.clear();
    committed_.clear();
  }
  if (options_.fsync == IngestLogFsync::kInterval) flusher_ = std::thread([this] { Flusher(); });
  return Status::Ok();
}

Status IngestLog::SyncLocked() {
  if (append_fd_ >= 0 && ::fdatasync(append_fd_) != 0) {
    return Status::Io(Errno("ingest log: cannot sync " + SegmentPath(append_.segment)), true);
  }
  return Status::Ok();
}

Result<int64_t> IngestLog::Append(const std::vector<IngestLogEntry>& entries, bool sync) {
  if (entries.empty()) return next_sequence();
  std::lock_guard write_lock(write_mu_);
  int64_t first = 0;
  Pos end;
  {
    std::lock_guard lock(mu_);
    if (closed_) return Status::Cancelled("ingest log: closed");
    first = next_seq_;
    end = append_;
  }
  // Encode all frames; start a new segment first when this append would overflow the
  // current one (a single append larger than a segment gets a segment of its own).
  std::string frames;
  std::string body;
  int64_t seq = first;
  for (const IngestLogEntry& e : entries) {
    CheckpointWriter w;
    w.U64(static_cast<uint64_t>(seq++));
    w.I64(e.arrival);
    w.Str(e.topic);
    w.Str(e.payload);
    body = w.Take();
    PutU32(frames, static_cast<uint32_t>(body.size()));
    PutU32(frames, Fnv1a(body));
    frames += body;
  }
  if (end.offset > 0 &&
      end.offset + frames.size() > static_cast<uint64_t>(options_.segment_bytes)) {
    // The finished segment is synced whatever the policy but `none`, so only the
    // newest segment can ever hold unsynced records.
    if (options_.fsync != IngestLogFsync::kNone) TRIB_RETURN_IF_ERROR(SyncLocked());
    TRIB_RETURN_IF_ERROR(OpenForAppend(end.segment + 1, 0));
    end = Pos{end.segment + 1, 0};
  }
  Status st = WriteAll(append_fd_, frames, SegmentPath(end.segment));
  if (!st.ok()) {
    // Cut what a failed write left, so the next append starts on a frame boundary.
    (void)::ftruncate(append_fd_, static_cast<off_t>(end.offset));
    return st;
  }
  if (sync || options_.fsync == IngestLogFsync::kEveryMessage) {
    TRIB_RETURN_IF_ERROR(SyncLocked());
  }
  {
    std::lock_guard lock(mu_);
    append_ = Pos{end.segment, end.offset + frames.size()};
    next_seq_ = seq;
    dirty_ = !(sync || options_.fsync == IngestLogFsync::kEveryMessage);
  }
  data_cv_.notify_all();
  return first;
}

void IngestLog::Flusher() {
  std::unique_lock lock(mu_);
  while (!closed_) {
    flush_cv_.wait_for(lock, std::chrono::microseconds(options_.fsync_interval),
                       [&] { return closed_; });
    if (closed_ || !dirty_) continue;
    dirty_ = false;
    lock.unlock();
    {
      std::lock_guard write_lock(write_mu_);
      (void)SyncLocked();  // a failure shows at the next append or sync
    }
    lock.lock();
  }
}

std::string IngestLog::EncodePosition(Pos p, int64_t next_seq) {
  return "ingest-log:" + std::to_string(p.segment) + ":" + std::to_string(p.offset) + ":" +
         std::to_string(next_seq);
}

Status IngestLog::Seek(std::string_view position) {
  constexpr std::string_view kPrefix = "ingest-log:";
  auto bad = [&] {
    return Status::Corrupt("ingest log " + options_.dir + ": bad position '" +
                           std::string(position) + "'");
  };
  if (position.rfind(kPrefix, 0) != 0) return bad();
  std::string_view rest = position.substr(kPrefix.size());
  uint64_t parts[3];
  for (int i = 0; i < 3; ++i) {
    size_t colon = i < 2 ? rest.find(':') : rest.size();
    if (colon == std::string_view::npos || !ParseU64(rest.substr(0, colon), parts[i])) {
      return bad();
    }
    rest = i < 2 ? rest.substr(colon + 1) : std::string_view();
  }
  std::lock_guard lock(mu_);
  const Pos p{parts[0], parts[1]};
  if (p.segment < oldest_segment_ || p.segment > append_.segment ||
      (p.segment == append_.segment && p.offset > append_.offset)) {
    return Status::Corrupt("ingest log " + options_.dir + ": position " + std::string(position) +
                           " is not in the log (segments " + std::to_string(oldest_segment_) +
                           ".." + std::to_string(append_.segment) +
                           "): was the log removed or replaced?");
  }
  read_ = p;
  read_seq_ = static_cast<int64_t>(parts[2]);
  return Status::Ok();
}

Status IngestLog::Read(RawBatch& out, size_t max_records, DurationUs wait) {
  std::unique_lock lock(mu_);
  auto has_data = [&] {
    return read_.segment < append_.segment ||
           (read_.segment == append_.segment && read_.offset < append_.offset);
  };
  data_cv_.wait_for(lock, std::chrono::microseconds(std::max<DurationUs>(wait, 0)),
                    [&] { return closed_ || wake_ || has_data(); });
  wake_ = false;
  size_t added = 0;
  while (added < max_records && !closed_ && has_data()) {
    const uint64_t end =
        read_.segment < append_.segment ? UINT64_MAX : static_cast<uint64_t>(append_.offset);
    if (read_fd_segment_ != read_.segment) {
      if (read_fd_ >= 0) ::close(read_fd_);
      const std::string path = SegmentPath(read_.segment);
      read_fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (read_fd_ < 0) {
        read_fd_segment_ = 0;
        return Status::Io(Errno("ingest log: cannot read " + path));
      }
      read_fd_segment_ = read_.segment;
    }
    // Read a chunk (or the frame the chunk starts with, if larger) and take its frames.
    size_t want = kReadChunk;
    if (end != UINT64_MAX) want = static_cast<size_t>(std::min<uint64_t>(want, end - read_.offset));
    read_buf_.resize(want);
    ssize_t n = ::pread(read_fd_, read_buf_.data(), want, static_cast<off_t>(read_.offset));
    if (n < 0) return Status::Io(Errno("ingest log: cannot read " + SegmentPath(read_.segment)));
    read_buf_.resize(static_cast<size_t>(n));
    if (n == 0) {
      // The end of a finished segment: go on with the next.
      if (read_.segment < append_.segment) {
        read_ = Pos{read_.segment + 1, 0};
        continue;
      }
      break;
    }
    std::string_view chunk(read_buf_);
    size_t at = 0;
    while (added < max_records) {
      size_t f = FrameAt(chunk.substr(at));
      if (f == 0) break;
      CheckpointReader r(chunk.substr(at + kFrameHeader, f - kFrameHeader));
      const auto seq = static_cast<int64_t>(r.U64());
      const TimeUs arrival = r.I64();
      std::string_view topic = r.Str();
      std::string_view payload = r.Str();
      if (!r.ok()) {
        return Status::Corrupt("ingest log: bad record in " + SegmentPath(read_.segment) +
                               " at byte " + std::to_string(read_.offset + at));
      }
      out.Add(payload, arrival, topic.empty() ? Symbol{} : Intern(topic), seq, -1);
      read_seq_ = seq + 1;
      at += f;
      ++added;
    }
    if (at == 0) {
      if (chunk.size() >= kFrameHeader) {
        const size_t len = kFrameHeader + GetU32(chunk.data());
        if (len > chunk.size() && (end == UINT64_MAX || read_.offset + len <= end)) {
          // One frame larger than the chunk: read exactly it next time round.
          read_buf_.resize(len);
          ssize_t m = ::pread(read_fd_, read_buf_.data(), len, static_cast<off_t>(read_.offset));
          if (m == static_cast<ssize_t>(len) && FrameAt(read_buf_) == len) {
            CheckpointReader r(std::string_view(read_buf_).substr(kFrameHeader));
            const auto seq = static_cast<int64_t>(r.U64());
            const TimeUs arrival = r.I64();
            std::string_view topic = r.Str();
            std::string_view payload = r.Str();
            if (r.ok()) {
              out.Add(payload, arrival, topic.empty() ? Symbol{} : Intern(topic), seq, -1);
              read_seq_ = seq + 1;
              read_.offset += len;
              ++added;
              continue;
            }
          }
        }
      }
      if (read_.segment < append_.segment) {
        // A finished segment ends in bytes that are no frame (a torn write that an
        // append started a new segment after): go on with the next.
        read_ = Pos{read_.segment + 1, 0};
        continue;
      }
      return Status::Corrupt("ingest log: unreadable record in " + SegmentPath(read_.segment) +
                             " at byte " + std::to_string(read_.offset));
    }
    read_.offset += at;
  }
  if (added > 0) {
    out.checkpoint = ++batches_;
    out.position = EncodePosition(read_, read_seq_);
    handed_.push_back(Handed{out.checkpoint, read_, read_seq_ - 1});
  }
  return Status::Ok();
}

void IngestLog::OnCommitted(uint64_t batch) {
  std::vector<uint64_t> remove;
  {
    std::lock_guard lock(mu_);
    std::optional<Pos> pos;
    while (!handed_.empty() && handed_.front().batch <= batch) {
      pos = handed_.front().pos;
      committed_seq_ = std::max(committed_seq_, handed_.front().last_seq);
      handed_.pop_front();
    }
    if (!pos) return;
    committed_.push_back(*pos);
    while (committed_.size() > static_cast<size_t>(std::max<int64_t>(options_.keep, 1))) {
      committed_.pop_front();
    }
    // Segments before the one the oldest kept checkpoint reads from are not needed by
    // any recovery; the segment being appended to is never removed.
    const uint64_t keep_from = std::min(committed_.front().segment, append_.segment);
    for (uint64_t s = oldest_segment_; s < keep_from; ++s) remove.push_back(s);
    oldest_segment_ = std::max(oldest_segment_, keep_from);
  }
  for (uint64_t s : remove) std::remove(SegmentPath(s).c_str());
}

void IngestLog::Wake() {
  {
    std::lock_guard lock(mu_);
    wake_ = true;
  }
  data_cv_.notify_all();
}

uint64_t IngestLog::backlog() const {
  std::lock_guard lock(mu_);
  return static_cast<uint64_t>(std::max<int64_t>(next_seq_ - read_seq_, 0));
}

int64_t IngestLog::committed_sequence() const {
  std::lock_guard lock(mu_);
  return committed_seq_;
}

int64_t IngestLog::next_sequence() const {
  std::lock_guard lock(mu_);
  return next_seq_;
}

void IngestLog::Close() {
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
  }
  flush_cv_.notify_all();
  data_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  std::lock_guard write_lock(write_mu_);
  if (append_fd_ >= 0) {
    if (options_.fsync != IngestLogFsync::kNone) (void)::fdatasync(append_fd_);
    ::close(append_fd_);
    append_fd_ = -1;
  }
  if (read_fd_ >= 0) ::close(read_fd_);
  read_fd_ = -1;
  read_fd_segment_ = 0;
}

}  // namespace tributary
