// PolicyTracker (egress/console/server.h): what serve's policy loads did.
#include <fstream>
#include <iterator>
#include <sstream>

#include "egress/audit/event.h"
#include "egress/console/server.h"

namespace egress::console {

void PolicyTracker::loaded(policy::PolicySnapshot policy) {
  std::string text;
  if (!status_.file.empty()) {
    std::ifstream in(status_.file, std::ios::binary);
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::lock_guard lock(mu_);
  status_.policy = std::move(policy);
  status_.text = std::move(text);
  status_.hash = policy::hash_token(status_.text);
  status_.last_load = audit::format_timestamp(std::chrono::system_clock::now());
  status_.last_result = "loaded";
  ++status_.loads;
}

void PolicyTracker::failed(const std::string& error) {
  std::lock_guard lock(mu_);
  status_.last_load = audit::format_timestamp(std::chrono::system_clock::now());
  status_.last_result = "failed, the previous policy stays in force: " + error.substr(0, error.find('\n'));
  ++status_.failures;
}

PolicyStatus PolicyTracker::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

}  // namespace egress::console
