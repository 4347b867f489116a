// Turns ResolverOptions::servers ("ip", "ip:port", "[v6]:port") into the CSV
// that c-ares takes. We parse it ourselves because c-ares 1.18 accepts some
// malformed entries silently; a typo in the server list must fail at startup
// with a message naming the entry, not as timeouts later.
#pragma once

#include <string>
#include <vector>

namespace egress::dns {

/// "127.0.0.1:5353,[::1]:53". Throws std::runtime_error naming the bad
/// entry and the accepted forms.
std::string servers_to_csv(const std::vector<std::string>& servers);

}  // namespace egress::dns
