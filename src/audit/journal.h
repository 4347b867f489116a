// The audit journal: what makes an event survive a crash of egress before
// the database has it. Each proxy thread appends its events to its own
// append-only file with one write(2): once that call returns, the bytes are
// in the kernel's page cache and outlive the process, SIGKILL included,
// which is what commit-before-connect (invariant 2) needs with
// `audit_sync: normal` (the WAL gave no more: neither survives power loss).
// The SQLite writer ingests the same events in large batches afterwards, so
// a session never waits for another thread; a start after a crash ingests
// what the journals hold that the database does not (sqlite_store.cpp).
//
// A journal is a sequence of segment files "<prefix>-<n>.journal". The
// owning thread writes the open segment and seals it once it is large; the
// writer deletes a sealed segment once every record in it is committed.
//
// Record layout (little-endian): u32 payload length, u64 FNV-1a of the
// payload, payload. The payload is a u16 value count, then per value a tag
// byte (0 NULL, 1 integer: 8 bytes, 2 text: u32 length and the bytes). The
// checksum finds a torn tail (a write cut short, or power loss).
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "egress/audit/log.h"
#include "egress/audit/maintenance.h"  // journal_directory, journal_files_left

namespace egress::audit {

/// The record for one row's content values.
std::string encode_record(const std::vector<Value>& values);

/// The records at the start of `bytes`, in order, up to the first torn or
/// corrupt one. `good_bytes` (when given) gets how many bytes they span.
std::vector<std::vector<Value>> decode_records(std::string_view bytes, std::size_t* good_bytes = nullptr);

/// The segment files in `directory`, sorted by name, "" entries never.
std::vector<std::string> journal_files(const std::string& directory);

/// Takes the journal directory's lock on `fd` (its "lock" file, open for
/// writing) for as long as `fd` stays open; false if another store holds
/// it. An open-file-description lock: it conflicts within one process too,
/// and journal_files_left() can look at it without taking it.
bool lock_journal(int fd);

class Journal {
 public:
  /// Segments are "<directory>/<prefix>-<n>.journal". Appends are refused
  /// while the filesystem has less than `min_free_bytes` available: room
  /// for the database to ingest what the journals hold.
  Journal(std::string directory, std::string prefix, std::uint64_t min_free_bytes);
  ~Journal();  // closes the open segment; deletes nothing
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // ---- The owning thread ----

  /// Appends `record` with one write(2). True: it is in the file, and
  /// `seq` is its position (1, 2, ...) for committed(). False: nothing of
  /// it is in the file and `error` says why (low space, I/O error).
  bool append(std::string_view record, std::uint64_t& seq, std::string& error);

  // ---- The writer thread ----

  /// Every record up to `seq` is in the database: deletes the sealed
  /// segments that hold nothing newer.
  void committed(std::uint64_t seq);
  /// Everything is in the database (a clean stop): deletes every segment.
  void remove_all();

 private:
  bool open_segment(std::string& error);
  bool room_left(std::string& error);
  void seal();

  const std::string directory_;
  const std::string prefix_;
  const std::uint64_t min_free_bytes_;

  // Owning thread only.
  int fd_ = -1;
  std::uint64_t size_ = 0;        // bytes in the open segment
  std::uint64_t segment_ = 0;     // the open segment's number
  std::uint64_t seq_ = 0;         // records ever appended
  std::uint64_t free_bytes_ = 0;  // at the last check
  std::int64_t checked_at_ns_ = 0;

  struct Sealed {
    std::string path;
    std::uint64_t last_seq;
  };
  std::mutex mu_;  // guards sealed_ and open_path_ (owner seals, writer deletes)
  std::vector<Sealed> sealed_;
  std::string open_path_;
};

}  // namespace egress::audit
