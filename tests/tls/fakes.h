// Helpers for the tls tests: a private temporary directory per test, and a
// CA created in it once per process (ECDSA: fast enough for every test).
#pragma once

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <string>

#include "egress/tls/ca.h"

namespace egress::tls::testing {

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "egress-tls-test-XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }

 private:
  std::string path_;
};

inline unsigned file_mode(const std::string& path) {
  struct stat st {};
  ::stat(path.c_str(), &st);
  return st.st_mode & 07777;
}

/// A CA made with `options` in a fresh directory, loaded.
struct TestCa {
  explicit TestCa(const CaOptions& options = {}) {
    files = create_ca(dir.path(), options, Overwrite::Refuse);
    authority = Authority::load(files.cert, files.key);
  }
  TempDir dir;
  CaFiles files;
  std::shared_ptr<const Authority> authority;
};

}  // namespace egress::tls::testing
