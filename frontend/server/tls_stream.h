// TLS on an SMTP connection's own socket after STARTTLS. OpenSSL reads and
// writes the (non-blocking) descriptor itself and says what it waits for;
// the connection coroutine does the waiting, with its timeout and drain.
// Never blocks, never waits. Unlike asio::ssl::stream it keeps no buffers
// of its own, and OpenSSL releases its record buffers between records, so
// an idle STARTTLS session holds about the SSL object alone (bench/scale.py
// tls_idle: 105 KiB per session with asio::ssl::stream).
#pragma once

#include <openssl/ssl.h>

#include <asio.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

namespace mailhook::front {

class TlsStream {
 public:
  enum class Want : std::uint8_t {
    Done,    // the step finished (bytes were read or written)
    Read,    // wait until the socket is readable, then call again
    Write,   // wait until the socket is writable, then call again
    Failed,  // the client closed, or TLS failed: error() says which
  };

  // The server side of `socket`, which stays the caller's and must be
  // non-blocking. ok() is false if OpenSSL could not make the session.
  TlsStream(asio::ip::tcp::socket& socket, SSL_CTX* ctx);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  bool ok() const { return ssl_ != nullptr; }
  SSL* native_handle() { return ssl_; }

  Want handshake();
  // Up to `size` decrypted bytes into `data`; `n` of them on Done.
  Want read(char* data, std::size_t size, std::size_t& n);
  // From `data`: `n` bytes written on Done (at least one record). After
  // Write, call again with the same data.
  Want write(const char* data, std::size_t size, std::size_t& n);

  // Why the last step failed, for the log.
  const std::string& error() const { return error_; }

 private:
  Want outcome(int ret);

  SSL* ssl_ = nullptr;
  std::string error_;
};

}  // namespace mailhook::front
