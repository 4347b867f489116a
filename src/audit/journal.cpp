// The per-thread audit journal (journal.h): record encoding, segment files,
// the free-space reserve.
#include "audit/journal.h"

#include <fcntl.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <system_error>

namespace egress::audit {

namespace {

/// A sealed segment is this large at least: big enough that sealing and
/// deleting are rare, small enough that a crash leaves little to ingest.
constexpr std::uint64_t kSegmentBytes = 8 << 20;
/// The free space is read again after this long, or on every append once
/// it is within four reserves of the limit: a disk filling up is seen by
/// the next request, and a busy thread pays one fstatfs a millisecond.
constexpr std::int64_t kFreeSpaceRecheckNs = 1'000'000;
constexpr std::size_t kHeaderBytes = 4 + 8;
constexpr const char* kSuffix = ".journal";

enum Tag : unsigned char { kNull = 0, kInteger = 1, kText = 2 };

std::uint64_t fnv1a(std::string_view bytes) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (const char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

template <class Unsigned>
void put(std::string& out, Unsigned value) {
  char bytes[sizeof(Unsigned)];
  for (std::size_t i = 0; i < sizeof(Unsigned); ++i) bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  out.append(bytes, sizeof bytes);
}

// The little-endian bytes of `value` at `at` in `out` (already that long).
template <class Unsigned>
void put_at(std::string& out, std::size_t at, Unsigned value) {
  for (std::size_t i = 0; i < sizeof(Unsigned); ++i) out[at + i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

// Reads an unsigned little-endian value at `at`, advancing it; false if
// `bytes` ends first.
template <class Unsigned>
bool get(std::string_view bytes, std::size_t& at, Unsigned& value) {
  if (bytes.size() - at < sizeof(Unsigned)) return false;
  value = 0;
  for (std::size_t i = 0; i < sizeof(Unsigned); ++i) {
    value |= static_cast<Unsigned>(static_cast<unsigned char>(bytes[at + i])) << (8 * i);
  }
  at += sizeof(Unsigned);
  return true;
}

bool decode_values(std::string_view payload, std::vector<Value>& values) {
  std::size_t at = 0;
  std::uint16_t count = 0;
  if (!get(payload, at, count)) return false;
  values.reserve(count);
  for (std::uint16_t i = 0; i < count; ++i) {
    if (at >= payload.size()) return false;
    const auto tag = static_cast<unsigned char>(payload[at++]);
    if (tag == kNull) {
      values.emplace_back(std::monostate{});
    } else if (tag == kInteger) {
      std::uint64_t bits = 0;
      if (!get(payload, at, bits)) return false;
      values.emplace_back(static_cast<std::int64_t>(bits));
    } else if (tag == kText) {
      std::uint32_t length = 0;
      if (!get(payload, at, length) || payload.size() - at < length) return false;
      values.emplace_back(std::string(payload.substr(at, length)));
      at += length;
    } else {
      return false;
    }
  }
  return at == payload.size();
}

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string os_error(std::string_view what, const std::string& path, int error) {
  return std::string(what) + " " + path + ": " + std::strerror(error);
}

}  // namespace

std::string encode_record(const std::vector<Value>& values) {
  // The payload is written after room for the header, which is filled in
  // last: one string, no copy.
  std::string record(kHeaderBytes, '\0');
  record.reserve(512);
  put(record, static_cast<std::uint16_t>(values.size()));
  for (const Value& value : values) {
    if (const auto* i = std::get_if<std::int64_t>(&value)) {
      record += static_cast<char>(kInteger);
      put(record, static_cast<std::uint64_t>(*i));
    } else if (const auto* s = std::get_if<std::string>(&value)) {
      record += static_cast<char>(kText);
      put(record, static_cast<std::uint32_t>(s->size()));
      record += *s;
    } else {
      record += static_cast<char>(kNull);
    }
  }
  const std::string_view payload = std::string_view(record).substr(kHeaderBytes);
  put_at(record, 0, static_cast<std::uint32_t>(payload.size()));
  put_at(record, 4, fnv1a(payload));
  return record;
}

std::vector<std::vector<Value>> decode_records(std::string_view bytes, std::size_t* good_bytes) {
  std::vector<std::vector<Value>> records;
  std::size_t at = 0;
  for (;;) {
    std::size_t next = at;
    std::uint32_t length = 0;
    std::uint64_t checksum = 0;
    if (!get(bytes, next, length) || !get(bytes, next, checksum) || bytes.size() - next < length) break;
    const std::string_view payload = bytes.substr(next, length);
    std::vector<Value> values;
    if (fnv1a(payload) != checksum || !decode_values(payload, values)) break;
    records.push_back(std::move(values));
    at = next + length;
  }
  if (good_bytes) *good_bytes = at;
  return records;
}

std::string journal_directory(const std::string& path) {
  std::error_code ec;
  const auto real = std::filesystem::weakly_canonical(path, ec);
  return (ec ? path : real.string()) + "-journals";
}

std::vector<std::string> journal_files(const std::string& directory) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(directory, ec)) {
    if (entry.is_regular_file(ec) && entry.path().extension() == kSuffix) files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

namespace {

struct flock whole_file(short type) {
  struct flock lock {};
  lock.l_type = type;
  lock.l_whence = SEEK_SET;  // l_start = l_len = 0: the whole file
  return lock;
}

}  // namespace

bool lock_journal(int fd) {
  auto lock = whole_file(F_WRLCK);
  return ::fcntl(fd, F_OFD_SETLK, &lock) == 0;
}

std::vector<std::string> journal_files_left(const std::string& path) {
  const std::string directory = journal_directory(path);
  const int fd = ::open((directory + "/lock").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    auto lock = whole_file(F_RDLCK);
    const bool held = ::fcntl(fd, F_OFD_GETLK, &lock) == 0 && lock.l_type != F_UNLCK;
    ::close(fd);
    if (held) return {};
  }
  return journal_files(directory);
}

Journal::Journal(std::string directory, std::string prefix, std::uint64_t min_free_bytes)
    : directory_(std::move(directory)), prefix_(std::move(prefix)), min_free_bytes_(min_free_bytes) {}

Journal::~Journal() {
  if (fd_ >= 0) ::close(fd_);
}

bool Journal::open_segment(std::string& error) {
  std::string path = directory_ + "/" + prefix_ + "-" + std::to_string(segment_) + kSuffix;
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd_ < 0) {
    error = os_error("cannot open the audit journal", path, errno);
    return false;
  }
  size_ = 0;
  std::lock_guard lock(mu_);
  open_path_ = std::move(path);
  return true;
}

bool Journal::room_left(std::string& error) {
  const std::int64_t now = steady_ns();
  if (free_bytes_ >= 4 * min_free_bytes_ && now - checked_at_ns_ < kFreeSpaceRecheckNs) return true;
  struct statfs fs {};
  if (::fstatfs(fd_, &fs) != 0) {
    error = os_error("cannot read the free space of", directory_, errno);
    return false;
  }
  free_bytes_ = static_cast<std::uint64_t>(fs.f_bavail) * static_cast<std::uint64_t>(fs.f_bsize);
  checked_at_ns_ = now;
  if (free_bytes_ >= min_free_bytes_) return true;
  error = "the audit filesystem of " + directory_ + " has " + std::to_string(free_bytes_) +
          " bytes free, less than the " + std::to_string(min_free_bytes_) +
          " egress keeps in reserve (disk full?)";
  return false;
}

bool Journal::append(std::string_view record, std::uint64_t& seq, std::string& error) {
  if (fd_ < 0 && !open_segment(error)) return false;
  if (!room_left(error)) return false;
  const ssize_t n = ::write(fd_, record.data(), record.size());
  if (n != static_cast<ssize_t>(record.size())) {
    const int write_error = n < 0 ? errno : ENOSPC;
    // Nothing of a failed record may stay: a torn record in the middle
    // would hide the ones after it from recovery.
    if (n > 0 && ::ftruncate(fd_, static_cast<off_t>(size_)) != 0) seal();
    error = os_error("cannot write the audit journal", directory_, write_error);
    free_bytes_ = 0;  // look again next time
    return false;
  }
  size_ += record.size();
  seq = ++seq_;
  if (size_ >= kSegmentBytes) seal();
  return true;
}

void Journal::seal() {
  ::close(fd_);
  fd_ = -1;
  ++segment_;
  std::lock_guard lock(mu_);
  sealed_.push_back(Sealed{std::move(open_path_), seq_});
  open_path_.clear();
}

void Journal::committed(std::uint64_t seq) {
  std::lock_guard lock(mu_);
  const auto done = std::partition(sealed_.begin(), sealed_.end(), [&](const Sealed& s) { return s.last_seq > seq; });
  for (auto it = done; it != sealed_.end(); ++it) ::unlink(it->path.c_str());
  sealed_.erase(done, sealed_.end());
}

void Journal::remove_all() {
  std::lock_guard lock(mu_);
  for (const Sealed& s : sealed_) ::unlink(s.path.c_str());
  sealed_.clear();
  if (!open_path_.empty()) ::unlink(open_path_.c_str());
}

}  // namespace egress::audit
