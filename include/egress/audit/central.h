// Reading the central PostgreSQL store (`egress audit query|stats|tail|
// verify|export --db postgresql://...`, docs/audit-fleet.md).
//
// The read side keeps one implementation of filters, merging, stats,
// formats and verification: the SQLite one (log.h, maintenance.h). A
// CentralMirror copies the central rows each replica holds (all, or since a
// time) into one private SQLite file per replica in a fresh 0700 temporary
// directory, ids and chain hashes as they are, and the caller runs LogSet or
// verify() over those files. A row edited, deleted or re-ordered centrally
// is copied as it is, so verify sees exactly what PostgreSQL holds.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace egress::audit {

struct CentralOptions {
  std::string dsn;            // postgresql://... (no password in it)
  std::string password_file;  // "" = PGPASSFILE / ~/.pgpass
  std::string replica;        // "" = every replica
  std::string since;          // "" = every row; else rows with ts >= since (parse_time text)
};

class CentralMirror {
 public:
  /// Connects, checks the central schema and copies the rows. Throws
  /// AuditError (the DSN redacted) when PostgreSQL cannot be reached, has
  /// no egress schema, or has no rows for the replica asked for.
  explicit CentralMirror(const CentralOptions& options);
  ~CentralMirror();  // removes the temporary files
  CentralMirror(const CentralMirror&) = delete;
  CentralMirror& operator=(const CentralMirror&) = delete;

  /// One SQLite file per replica, in replicas() order.
  const std::vector<std::string>& paths() const;
  const std::vector<std::string>& replicas() const;
  const std::string& target() const;

  /// Copies rows that arrived centrally since the last copy (tail -f).
  void refresh();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace egress::audit
