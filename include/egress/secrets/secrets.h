// Credentials the worker never holds. egress reads secrets from its own
// secrets directory (one file per secret, the file name is the secret's
// name: the Docker and Kubernetes secrets convention), adds them to the
// requests a rule's `inject:` names after the decision, and scrubs them from
// everything it relays back. A secret's value goes nowhere else: not to a
// log, the audit, metrics, `egress check` or an error message; those see
// names only. Pure apart from SecretStore::load(), which reads the files.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "egress/policy/policy.h"

namespace egress::secrets {

/// Thrown by SecretStore::load(); what() names every refused file and why
/// (never a value).
class SecretsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The secrets of one directory, read whole. Immutable once loaded; serve
/// shares it as a SecretsSnapshot and swaps the pointer on every policy
/// reload, so a rotated file takes effect without dropping connections.
class SecretStore {
 public:
  SecretStore() = default;  // no directory: every {secret:NAME} is missing

  /// Reads every file of `dir` whose name does not start with '.' (links
  /// followed, as Kubernetes mounts them). Refuses, naming the file: one
  /// more open than 0640, one owned by another user than this process's or
  /// root, one that is not a regular file, an empty one, or one shorter
  /// than kMinLength (too short to scrub from responses without mangling
  /// them). One trailing newline is dropped from each value.
  static SecretStore load(const std::string& dir);

  static constexpr std::size_t kMinLength = 8;

  /// The value, or nullptr when there is no such secret.
  const std::string* find(std::string_view name) const;
  std::vector<std::string> names() const;

 private:
  std::map<std::string, std::string, std::less<>> values_;
};

using SecretsSnapshot = std::shared_ptr<const SecretStore>;

/// One header to set on the request going upstream.
struct HeaderEdit {
  std::string header;
  std::string value;                 // holds a secret: never log it
  std::vector<std::string> secrets;  // the names it holds, for the audit and the scrubber
  /// For `basic`: the base64 credential, which the scrubber also looks for
  /// (an echo of the header carries the secret only in that form).
  std::string encoded;
};

/// What the decided request's injections come to.
struct InjectionPlan {
  std::vector<HeaderEdit> edits;
  /// A secret the rule needs that the store does not have: the request must
  /// be refused (secret-unavailable), never sent without it.
  std::optional<std::string> missing;
  /// "hf_token" or "a,b": the names injected, for the audit row.
  std::string injected_names() const;
};

/// The injections a decided request gets: the rule's `inject` on an
/// allowed request inside an inspected tunnel (the upstream's certificate
/// verified), or on a plain HTTP request when the rule says
/// allow_plaintext; none for CONNECT tunnels, report verdicts or denials.
std::span<const policy::Injection> injections_for(const policy::Decision& decision, policy::RequestKind kind);

/// Reads a header the worker sent (first value), or nullopt.
using HeaderLookup = std::function<std::optional<std::string_view>(std::string_view name)>;

/// The edits for `injections` (a decision's `inject`). An `only_placeholder`
/// injection applies only when the worker's header contains "egress:NAME"
/// for one of its secrets, and then replaces that whole header.
InjectionPlan plan_injections(std::span<const policy::Injection> injections, const SecretStore& store,
                              const HeaderLookup& worker_header);

/// Replaces every occurrence of the injected secrets (and of the header
/// values built from them, such as a Basic credential) with
/// "[egress:NAME]" in a byte stream, without buffering it: feed() passes on
/// everything except the shortest tail that could still be the start of a
/// secret, which the next feed() or finish() settles. A secret split across
/// two reads is therefore still caught.
class Scrubber {
 public:
  Scrubber() = default;  // scrubs nothing
  explicit Scrubber(const InjectionPlan& plan, const SecretStore& store);

  bool active() const { return !needles_.empty(); }
  /// Appends to `out` the scrubbed bytes of `in` that are safe to send now.
  void feed(std::string_view in, std::string& out);
  /// Appends what is held back; the stream ends.
  void finish(std::string& out);
  /// A whole value at once (a response header): feed + finish.
  std::string scrub(std::string_view value);
  std::size_t replacements() const { return replacements_; }

 private:
  struct Needle {
    std::string value;
    std::string replacement;
  };
  /// Scrubs `text`; unless `final`, keeps in `held` the tail that may begin a needle.
  void drain(std::string_view text, bool final, std::string& out, std::string& held);

  std::vector<Needle> needles_;
  std::string held_;
  std::size_t replacements_ = 0;
};

}  // namespace egress::secrets
