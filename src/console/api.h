// The console's JSON endpoints (/api/…), each a function of the request's
// query parameters and the console's sources: no sockets here. Rows from
// the audit log keep their column names; every text value is valid UTF-8
// (invalid bytes become U+FFFD) and is rendered by the pages as text.
#pragma once

#include <map>
#include <string>

#include "egress/console/hub.h"
#include "egress/console/server.h"

namespace egress::console {

using Params = std::map<std::string, std::string, std::less<>>;

struct ApiResult {
  int status = 200;
  std::string json;
};

/// ?window=15m|1h|6h|24h|7d: the timeline per role, stats sections, and
/// each role's top allowed and refused destinations.
ApiResult api_summary(const ConsoleOptions& options, const Params& params);
/// ?window=…: refused destinations with their reasons, most refused first.
ApiResult api_refused(const ConsoleOptions& options, const Params& params);
/// ?role=&host=&port=&kind=: suggest_rule() for that destination.
ApiResult api_rule(const ConsoleOptions& options, const Params& params);
/// ?request_id=: the request's decision and close rows.
ApiResult api_event(const ConsoleOptions& options, const Params& params);
/// Policy in force, audit store, chain check of the newest rows, DNS and
/// certificate cache figures, the console's own feed.
ApiResult api_health(const ConsoleOptions& options, const EventHub& hub, std::size_t sessions);

}  // namespace egress::console
