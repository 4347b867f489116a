// The inspection CA: creation (`egress ca init`), description (`ca show`)
// and loading for `serve`. See egress/tls/ca.h. No message built here
// contains key material: errors name files, never contents (invariant 6).
#include "egress/tls/ca.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "egress/tls/leaf.h"

namespace egress::tls {
namespace {

struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

std::string mode_text(mode_t mode) {
  char buffer[8];
  std::snprintf(buffer, sizeof buffer, "%04o", static_cast<unsigned>(mode & 07777));
  return buffer;
}

/// The PEM text in a memory BIO, as a string.
std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

/// Writes `text` to a new file at `path` with `mode` (O_EXCL: never through
/// a file or link someone else put there). Throws CaError.
void write_new_file(const std::string& path, const std::string& text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) throw CaError("cannot create " + path + ": " + std::strerror(errno));
  // The umask may have narrowed the mode; it must not have widened it, but
  // set it exactly so the key is 0600 whatever the umask says.
  bool ok = ::fchmod(fd, mode) == 0;
  std::size_t done = 0;
  while (ok && done < text.size()) {
    const auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<std::size_t>(n);
  }
  ok = ::fsync(fd) == 0 && ok;
  const int saved = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    throw CaError("cannot write " + path + ": " + std::strerror(saved));
  }
}

void add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) throw CaError(openssl_error("building the " + std::string(OBJ_nid2sn(nid)) + " extension"));
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (!ok) throw CaError(openssl_error("adding the " + std::string(OBJ_nid2sn(nid)) + " extension"));
}

std::string name_text(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
  return bio_text(bio.get());
}

std::string time_text(const ASN1_TIME* time) {
  const auto tp = to_time_point(time);
  const std::time_t t = std::chrono::system_clock::to_time_t(tp);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buffer;
}

std::string key_text(EVP_PKEY* key) {
  if (!key) return "unknown";
  const int bits = EVP_PKEY_get_bits(key);
  if (EVP_PKEY_is_a(key, "EC")) {
    char group[64] = {};
    std::size_t len = 0;
    EVP_PKEY_get_utf8_string_param(key, "group", group, sizeof group, &len);
    return std::string("ECDSA ") + (std::string_view(group) == "prime256v1" ? "P-256" : group);
  }
  if (EVP_PKEY_is_a(key, "RSA")) return std::string("RSA ").append(std::to_string(bits));
  return std::string(EVP_PKEY_get0_type_name(key) ? EVP_PKEY_get0_type_name(key) : "unknown") + " " +
         std::to_string(bits);
}

X509Ptr read_certificate(const std::string& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    ERR_clear_error();
    throw CaError("cannot read the certificate " + path + ": " + std::strerror(errno));
  }
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) throw CaError(openssl_error(path + " holds no PEM certificate"));
  return cert;
}

/// PEM passphrase callback: egress never prompts; an encrypted key is an error.
int no_passphrase(char*, int, int, void* flag) {
  *static_cast<bool*>(flag) = true;
  return -1;
}

KeyPtr read_key(const std::string& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    ERR_clear_error();
    throw CaError("cannot read the CA key " + path + ": " + std::strerror(errno));
  }
  bool asked_for_passphrase = false;
  KeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, &asked_for_passphrase));
  if (!key) {
    ERR_clear_error();  // the queue may quote PEM headers; say it in our words
    if (asked_for_passphrase) {
      throw CaError("the CA key " + path +
                    " is encrypted; egress reads it without a passphrase. Decrypt it into a file of mode 0600 "
                    "(openssl pkey -in KEY -out ca.key) and protect it with file permissions");
    }
    throw CaError("the CA key " + path + " holds no PEM private key");
  }
  return key;
}

}  // namespace

std::chrono::system_clock::time_point to_time_point(const ASN1_TIME* time) {
  std::tm tm{};
  if (!time || ASN1_TIME_to_tm(time, &tm) != 1) return {};
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

CaFiles create_ca(const std::string& dir, const CaOptions& options, Overwrite overwrite) {
  if (options.days < 1 || options.days > 3650) {
    throw CaError("--days " + std::to_string(options.days) + ": use 1 to 3650 days");
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw CaError("cannot create the directory " + dir + ": " + ec.message());
  CaFiles files{(std::filesystem::path(dir) / "ca.crt").string(), (std::filesystem::path(dir) / "ca.key").string()};
  for (const auto& path : {files.cert, files.key}) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) continue;
    if (overwrite == Overwrite::Refuse) {
      throw CaError(path + " already exists; egress ca init does not replace a CA that workers may trust. "
                    "Use --force to replace it, or --out DIR to create another");
    }
    if (::unlink(path.c_str()) != 0) throw CaError("cannot remove " + path + ": " + std::strerror(errno));
  }

  KeyPtr key = generate_key(options.key_type);
  X509Ptr cert(X509_new());
  if (!cert) throw CaError(openssl_error("creating the CA certificate"));
  X509_set_version(cert.get(), X509_VERSION_3);
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) throw CaError(openssl_error("drawing a serial number"));
  serial[0] &= 0x7f;  // positive
  serial[0] |= 0x01;  // and 16 bytes long
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  // Valid from an hour ago: workers whose clocks lag a little accept it.
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_time_adj_ex(X509_getm_notAfter(cert.get()), options.days, 0, nullptr);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(options.common_name.c_str()), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("egress"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  X509_set_pubkey(cert.get(), key.get());
  // pathlen:0: this CA signs leaves only, never another CA.
  add_extension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  add_extension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_extension(cert.get(), cert.get(), NID_subject_key_identifier, "hash");
  if (!options.permitted_domains.empty()) {
    std::string constraints = "critical";
    for (auto domain : options.permitted_domains) {
      if (domain.starts_with('.')) domain.erase(0, 1);
      if (domain.empty() || domain.find_first_of(",:/ ") != std::string::npos) {
        throw CaError("--permit '" + domain + "': give a domain name such as huggingface.co");
      }
      constraints += ",permitted;DNS:" + domain;
    }
    // A name-constrained CA should not vouch for IP addresses either.
    constraints += ",excluded;IP:0.0.0.0/0.0.0.0,excluded;IP:0:0:0:0:0:0:0:0/0:0:0:0:0:0:0:0";
    add_extension(cert.get(), cert.get(), NID_name_constraints, constraints);
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0) throw CaError(openssl_error("signing the CA certificate"));

  BioPtr key_pem(BIO_new(BIO_s_mem()));
  BioPtr cert_pem(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PrivateKey(key_pem.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) ||
      !PEM_write_bio_X509(cert_pem.get(), cert.get())) {
    throw CaError(openssl_error("encoding the CA"));
  }
  // The key first: a certificate without its key is useless, the reverse
  // would be a key file lying around without a certificate saying what it is.
  write_new_file(files.key, bio_text(key_pem.get()), 0600);
  write_new_file(files.cert, bio_text(cert_pem.get()), 0644);
  return files;
}

CertificateInfo describe_certificate(const std::string& cert_path) {
  const auto cert = read_certificate(cert_path);
  CertificateInfo info;
  info.subject = name_text(X509_get_subject_name(cert.get()));
  info.issuer = name_text(X509_get_issuer_name(cert.get()));
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  X509_digest(cert.get(), EVP_sha256(), digest, &length);
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned int i = 0; i < length; ++i) {
    if (i) info.sha256_fingerprint += ':';
    info.sha256_fingerprint += kHex[digest[i] >> 4];
    info.sha256_fingerprint += kHex[digest[i] & 0xf];
  }
  info.not_before = time_text(X509_get0_notBefore(cert.get()));
  info.not_after = time_text(X509_get0_notAfter(cert.get()));
  info.expired = X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0;
  info.key = key_text(X509_get0_pubkey(cert.get()));
  info.is_ca = X509_check_ca(cert.get()) >= 1;
  const int index = X509_get_ext_by_NID(cert.get(), NID_name_constraints, -1);
  if (index >= 0) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    X509V3_EXT_print(bio.get(), X509_get_ext(cert.get(), index), 0, 0);
    info.name_constraints = bio_text(bio.get());
  }
  return info;
}

std::string key_permission_problem(const std::string& key_path) {
  struct stat st {};
  if (::stat(key_path.c_str(), &st) != 0) return "cannot stat " + key_path + ": " + std::strerror(errno);
  if ((st.st_mode & (S_IRWXG | S_IRWXO)) == 0) return {};
  return "the CA key " + key_path + " has mode " + mode_text(st.st_mode) +
         ": readable or writable by group or others; egress refuses to use it. Run: chmod 600 " + key_path;
}

Authority::Authority(X509Ptr cert, KeyPtr key) : cert_(std::move(cert)), key_(std::move(key)) {
  not_before_ = to_time_point(X509_get0_notBefore(cert_.get()));
  not_after_ = to_time_point(X509_get0_notAfter(cert_.get()));
  subject_ = name_text(X509_get_subject_name(cert_.get()));
}

std::shared_ptr<const Authority> Authority::load(const std::string& cert_path, const std::string& key_path) {
  if (const auto problem = key_permission_problem(key_path); !problem.empty()) throw CaError(problem);
  auto cert = read_certificate(cert_path);
  auto key = read_key(key_path);
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    throw CaError("the CA key " + key_path + " does not belong to the certificate " + cert_path +
                  "; give the key that was created with it");
  }
  if (X509_check_ca(cert.get()) < 1) {
    throw CaError(cert_path + " is not a CA certificate (basicConstraints CA:TRUE and keyCertSign are needed); "
                  "create one with egress ca init");
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0) {
    throw CaError("the CA certificate " + cert_path + " has expired (" +
                  time_text(X509_get0_notAfter(cert.get())) + "); create a new one with egress ca init --force");
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) > 0) {
    throw CaError("the CA certificate " + cert_path + " is not valid before " +
                  time_text(X509_get0_notBefore(cert.get())) + "; check the clock");
  }
  return std::make_shared<const Authority>(std::move(cert), std::move(key));
}

X509Ptr share(X509* cert) {
  if (cert) X509_up_ref(cert);
  return X509Ptr(cert);
}

std::string openssl_error(const std::string& what) {
  std::string out = what;
  bool first = true;
  while (const unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof buffer);
    out += first ? ": " : "; ";
    out += buffer;
    first = false;
  }
  return out;
}

}  // namespace egress::tls
