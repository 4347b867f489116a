// Reading the secrets directory. Every refusal names the file and the fix;
// none quotes what the file holds.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "egress/secrets/secrets.h"

namespace egress::secrets {
namespace {

std::string mode_text(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// Why the secret at `path` may not be used, or "".
std::string refusal(const std::string& path, const struct stat& st) {
  if (!S_ISREG(st.st_mode)) return path + " is not a regular file; a secret is one file holding the value";
  if ((st.st_mode & 07777 & ~mode_t{0640}) != 0) {
    return path + " has mode " + mode_text(st.st_mode) + ", more open than 0640; egress refuses it. Run: chmod 600 " +
           path;
  }
  if (st.st_uid != ::geteuid() && st.st_uid != 0) {
    return path + " is owned by uid " + std::to_string(st.st_uid) + ", not by egress (uid " +
           std::to_string(::geteuid()) + ") or root; egress refuses it. Run: chown " + std::to_string(::geteuid()) +
           " " + path;
  }
  return "";
}

std::string read_value(const std::string& path, std::string& problem) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) {
    problem = "cannot read " + path + ": " + std::strerror(errno);
    return {};
  }
  std::string value = text.str();
  if (value.ends_with("\r\n")) {
    value.resize(value.size() - 2);
  } else if (value.ends_with('\n')) {
    value.pop_back();
  }
  if (value.size() < SecretStore::kMinLength) {
    problem = path + " holds " + std::to_string(value.size()) + " bytes; a secret needs at least " +
              std::to_string(SecretStore::kMinLength) + " so that scrubbing it from responses cannot mangle them";
  } else if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
    problem = path + " holds a CR, LF or NUL byte (besides one trailing newline), which cannot go into a header";
  }
  return value;
}

}  // namespace

SecretStore SecretStore::load(const std::string& dir) {
  SecretStore store;
  std::error_code ec;
  std::filesystem::directory_iterator entries(dir, ec);
  if (ec) throw SecretsError("cannot read the secrets directory " + dir + ": " + ec.message());
  std::vector<std::string> problems;
  for (const auto& entry : entries) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with('.')) continue;  // Kubernetes' ..data and friends, editors' dot files
    const std::string path = entry.path().string();
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      problems.push_back("cannot stat " + path + ": " + std::strerror(errno));
      continue;
    }
    std::string problem = refusal(path, st);
    std::string value = problem.empty() ? read_value(path, problem) : std::string();
    if (!problem.empty()) {
      problems.push_back(std::move(problem));
      continue;
    }
    store.values_.emplace(name, std::move(value));
  }
  if (!problems.empty()) {
    std::string text = "the secrets directory " + dir + " has files egress refuses:";
    for (const auto& problem : problems) text += "\n  " + problem;
    throw SecretsError(text);
  }
  return store;
}

const std::string* SecretStore::find(std::string_view name) const {
  auto it = values_.find(name);
  return it == values_.end() ? nullptr : &it->second;
}

std::vector<std::string> SecretStore::names() const {
  std::vector<std::string> names;
  for (const auto& [name, value] : values_) names.push_back(name);
  return names;
}

}  // namespace egress::secrets
