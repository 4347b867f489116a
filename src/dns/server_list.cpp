// Parsing of the DNS server list (see server_list.h).
#include "dns/server_list.h"

#include <charconv>
#include <stdexcept>

#include <boost/asio/ip/address.hpp>

namespace egress::dns {
namespace {

[[noreturn]] void reject(const std::string& entry, const std::string& why) {
  throw std::runtime_error("dns: bad server \"" + entry + "\" in the resolver's server list: " +
                              why + "; use ip, ip:port or [ipv6]:port, e.g. 127.0.0.1:53");
}

unsigned parse_port(const std::string& entry, std::string_view text) {
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || port == 0 ||
      port > 65535) {
    reject(entry, "port \"" + std::string(text) + "\" is not a number in 1..65535");
  }
  return port;
}

boost::asio::ip::address parse_ip(const std::string& entry, std::string_view text) {
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(std::string(text), ec);
  if (ec) {
    // Built by appends: GCC 12 at -O3 misreads `"\"" + std::string(...)`
    // as an overflowing memcpy (-Wstringop-overflow false positive).
    std::string message = "\"";
    message.append(text).append("\" is not an IP address");
    reject(entry, message);
  }
  return address;
}

std::string to_csv_item(const std::string& entry) {
  std::string_view host = entry;
  unsigned port = 53;
  if (!entry.empty() && entry.front() == '[') {
    const auto close = entry.find(']');
    if (close == std::string::npos) reject(entry, "missing ']'");
    host = std::string_view(entry).substr(1, close - 1);
    const std::string_view rest = std::string_view(entry).substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') reject(entry, "expected ':port' after ']'");
      port = parse_port(entry, rest.substr(1));
    }
  } else if (entry.find(':') != std::string::npos && entry.find(':') == entry.rfind(':')) {
    const auto colon = entry.find(':');  // one colon: IPv4 with a port
    host = std::string_view(entry).substr(0, colon);
    port = parse_port(entry, std::string_view(entry).substr(colon + 1));
  }
  const auto address = parse_ip(entry, host);
  const std::string ip = address.to_string();
  return (address.is_v6() ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

}  // namespace

std::string servers_to_csv(const std::vector<std::string>& servers) {
  std::string csv;
  for (const auto& entry : servers) {
    if (!csv.empty()) csv += ',';
    csv += to_csv_item(entry);
  }
  return csv;
}

}  // namespace egress::dns
