// EventHub and Subscription (see egress/console/hub.h).
#include "egress/console/hub.h"

#include <algorithm>
#include <string_view>

namespace egress::console {

void EventHub::publish(const std::string& json_line) {
  if (count_.load(std::memory_order_relaxed) == 0) return;
  // A decision row's JSON has this member; a string value cannot fake it,
  // since every quote inside a JSON string is escaped.
  if (json_line.find(R"("event":"decision")") == std::string::npos) return;
  std::lock_guard lock(mu_);
  published_.fetch_add(1, std::memory_order_relaxed);
  for (Subscription* s : subscribers_) {
    ++s->seen_;
    if (s->queue_.size() >= queue_limit_) {
      ++s->dropped_;
      dropped_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    s->queue_.push_back(json_line);
  }
}

std::unique_ptr<Subscription> EventHub::subscribe() {
  std::unique_ptr<Subscription> s(new Subscription(*this));
  std::lock_guard lock(mu_);
  subscribers_.push_back(s.get());
  count_.store(subscribers_.size(), std::memory_order_relaxed);
  return s;
}

HubStats EventHub::stats() const {
  return {count_.load(), published_.load(), dropped_.load()};
}

Subscription::Batch Subscription::take() {
  Batch batch;
  std::lock_guard lock(hub_.mu_);
  batch.lines.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
  queue_.clear();
  batch.seen = seen_;
  batch.dropped = dropped_;
  return batch;
}

Subscription::~Subscription() {
  std::lock_guard lock(hub_.mu_);
  auto& subs = hub_.subscribers_;
  subs.erase(std::remove(subs.begin(), subs.end(), this), subs.end());
  hub_.count_.store(subs.size(), std::memory_order_relaxed);
}

}  // namespace egress::console
