// The cryptography of DKIM on OpenSSL: SHA-256, RSASSA-PKCS1-v1_5 with
// SHA-256 (RFC 6376 3.3.2) and Ed25519 over the SHA-256 of the data
// (RFC 8463 3). Pure over bytes: no files (keys come in as text), no
// DNS, no Lua. Every OpenSSL object is owned by RAII.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "policyd/dkim/signature.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace mailhook::policyd::dkim {

std::string sha256(std::string_view data);

enum class KeyCheck : std::uint8_t {
  Good,       // the signature verifies
  Bad,        // it does not
  Unusable,   // p= is no key of its k= type
  Weak,       // RSA shorter than 1024 bits (RFC 8301 3.2: never valid)
};

// Verifies `signature` over `data` (the header hash input) with the key
// record's public key.
KeyCheck verify_signature(const KeyRecord& key, std::string_view data, std::string_view signature);

// A private key from a PEM file's text (PKCS#8 or PKCS#1 RSA, PKCS#8 Ed25519).
class PrivateKey {
 public:
  static std::optional<PrivateKey> from_pem(std::string_view pem, std::string& error);
  KeyType type() const { return type_; }
  // The signature of `data` per the key's algorithm; "" on failure.
  std::string sign(std::string_view data) const;

 private:
  struct Free {
    void operator()(EVP_PKEY* k) const;
  };
  std::unique_ptr<EVP_PKEY, Free> key_;
  KeyType type_ = KeyType::Rsa;
};

}  // namespace mailhook::policyd::dkim
