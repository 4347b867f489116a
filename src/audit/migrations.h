// The schema migrations compiled into the binary from schema/NNN_*.sql, in
// order. The database's `PRAGMA user_version` is the number of migrations
// applied; a database with a higher number came from a newer egress and is
// refused.
#pragma once

#include <string_view>
#include <vector>

namespace egress::audit {

struct Migration {
  std::string_view name;  // "001_events.sql"
  std::string_view sql;
};

const std::vector<Migration>& migrations();

}  // namespace egress::audit
