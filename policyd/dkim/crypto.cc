// DKIM's OpenSSL calls (crypto.h). RSA public keys are accepted as
// SubjectPublicKeyInfo (what every signer publishes) or as the bare
// RSAPublicKey RFC 6376 3.6.1 names.
#include "policyd/dkim/crypto.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace mailhook::policyd::dkim {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }

Pkey public_key(const KeyRecord& key) {
  if (key.type == KeyType::Ed25519) {
    return Pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, bytes(key.public_key), key.public_key.size()));
  }
  const unsigned char* p = bytes(key.public_key);
  Pkey k(d2i_PUBKEY(nullptr, &p, static_cast<long>(key.public_key.size())));
  if (!k) {
    p = bytes(key.public_key);
    k.reset(d2i_PublicKey(EVP_PKEY_RSA, nullptr, &p, static_cast<long>(key.public_key.size())));
  }
  if (k && EVP_PKEY_get_base_id(k.get()) != EVP_PKEY_RSA) k.reset();
  ERR_clear_error();
  return k;
}

}  // namespace

std::string sha256(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<const char*>(md), n);
}

KeyCheck verify_signature(const KeyRecord& key, std::string_view data, std::string_view signature) {
  Pkey k = public_key(key);
  if (!k) return KeyCheck::Unusable;
  if (key.type == KeyType::Rsa && EVP_PKEY_get_bits(k.get()) < 1024) return KeyCheck::Weak;
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) return KeyCheck::Unusable;
  int ok = 0;
  if (key.type == KeyType::Ed25519) {
    // RFC 8463 3: Ed25519 (PureEdDSA) over the SHA-256 hash of the data.
    const std::string digest = sha256(data);
    ok = EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, k.get()) == 1 &&
         EVP_DigestVerify(ctx.get(), bytes(signature), signature.size(), bytes(digest), digest.size()) == 1;
  } else {
    ok = EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, k.get()) == 1 &&
         EVP_DigestVerify(ctx.get(), bytes(signature), signature.size(), bytes(data), data.size()) == 1;
  }
  ERR_clear_error();
  return ok ? KeyCheck::Good : KeyCheck::Bad;
}

void PrivateKey::Free::operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }

std::optional<PrivateKey> PrivateKey::from_pem(std::string_view pem, std::string& error) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  if (!bio) {
    error = "out of memory";
    return std::nullopt;
  }
  EVP_PKEY* raw = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  ERR_clear_error();
  if (raw == nullptr) {
    error = "not a PEM private key (unencrypted PKCS#8 or PKCS#1)";
    return std::nullopt;
  }
  PrivateKey out;
  out.key_.reset(raw);
  const int id = EVP_PKEY_get_base_id(raw);
  if (id == EVP_PKEY_ED25519) {
    out.type_ = KeyType::Ed25519;
  } else if (id == EVP_PKEY_RSA) {
    out.type_ = KeyType::Rsa;
    if (EVP_PKEY_get_bits(raw) < 1024) {
      error = "an RSA key shorter than 1024 bits (RFC 8301 3.2)";
      return std::nullopt;
    }
  } else {
    error = "neither an RSA nor an Ed25519 key";
    return std::nullopt;
  }
  return out;
}

std::string PrivateKey::sign(std::string_view data) const {
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) return "";
  std::string digest;
  const EVP_MD* md = EVP_sha256();
  std::string_view input = data;
  if (type_ == KeyType::Ed25519) {  // RFC 8463 3
    digest = sha256(data);
    input = digest;
    md = nullptr;
  }
  std::size_t n = 0;
  if (EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &n, bytes(input), input.size()) != 1) {
    ERR_clear_error();
    return "";
  }
  std::string sig(n, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &n, bytes(input), input.size()) != 1) {
    ERR_clear_error();
    return "";
  }
  sig.resize(n);
  return sig;
}

}  // namespace mailhook::policyd::dkim
