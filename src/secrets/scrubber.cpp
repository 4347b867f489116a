// Streaming replacement of injected secrets in what egress relays back to a
// worker. The only state between reads is the held-back tail: the longest
// suffix of what was read that is a proper prefix of some needle, so bytes
// that cannot begin a secret are never delayed.
#include <algorithm>

#include "egress/secrets/secrets.h"

namespace egress::secrets {

Scrubber::Scrubber(const InjectionPlan& plan, const SecretStore& store) {
  auto add = [this](const std::string& value, const std::string& name) {
    if (value.empty()) return;
    for (const auto& needle : needles_) {
      if (needle.value == value) return;
    }
    needles_.push_back({value, "[egress:" + name + "]"});
  };
  for (const auto& edit : plan.edits) {
    for (const auto& name : edit.secrets) {
      if (const std::string* value = store.find(name)) add(*value, name);
    }
    add(edit.encoded, edit.secrets.front());
  }
}

void Scrubber::drain(std::string_view text, bool final, std::string& out, std::string& held) {
  std::size_t pos = 0;
  for (;;) {
    // The earliest occurrence of any needle; at one position the longest.
    std::size_t best = std::string_view::npos;
    const Needle* found = nullptr;
    for (const auto& needle : needles_) {
      const std::size_t at = text.find(needle.value, pos);
      if (at < best || (at == best && at != std::string_view::npos && needle.value.size() > found->value.size())) {
        best = at;
        found = &needle;
      }
    }
    if (!found) break;
    out.append(text.substr(pos, best - pos));
    out.append(found->replacement);
    ++replacements_;
    pos = best + found->value.size();
  }
  std::string_view rest = text.substr(pos);
  std::size_t keep = 0;
  if (!final) {
    for (const auto& needle : needles_) {
      for (std::size_t k = std::min(rest.size(), needle.value.size() - 1); k > keep; --k) {
        if (std::string_view(needle.value).starts_with(rest.substr(rest.size() - k))) {
          keep = k;
          break;
        }
      }
    }
  }
  out.append(rest.substr(0, rest.size() - keep));
  held.assign(rest.substr(rest.size() - keep));
}

void Scrubber::feed(std::string_view in, std::string& out) {
  if (needles_.empty()) {
    out.append(in);
    return;
  }
  if (held_.empty()) {
    drain(in, false, out, held_);
    return;
  }
  std::string joined = std::move(held_);
  joined.append(in);
  drain(joined, false, out, held_);
}

void Scrubber::finish(std::string& out) {
  out.append(held_);
  held_.clear();
}

std::string Scrubber::scrub(std::string_view value) {
  std::string out;
  std::string held;
  drain(value, true, out, held);
  return out;
}

}  // namespace egress::secrets
