#include "frontend/server/tls_stream.h"

#include <openssl/err.h>

#include <cerrno>
#include <cstring>

namespace mailhook::front {

TlsStream::TlsStream(asio::ip::tcp::socket& socket, SSL_CTX* ctx) {
  ssl_ = SSL_new(ctx);
  if (ssl_ == nullptr) {
    error_ = "SSL_new failed";
    return;
  }
  // Partial writes: a write that would block returns what went out, so
  // the caller resumes from there. Released buffers: an idle session holds
  // no record buffer.
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
  if (SSL_set_fd(ssl_, socket.native_handle()) != 1) {
    SSL_free(ssl_);
    ssl_ = nullptr;
    error_ = "SSL_set_fd failed";
    return;
  }
  SSL_set_accept_state(ssl_);
}

TlsStream::~TlsStream() {
  if (ssl_ != nullptr) SSL_free(ssl_);  // the socket is the connection's: not closed here
}

TlsStream::Want TlsStream::handshake() {
  ERR_clear_error();
  errno = 0;  // SSL_ERROR_SYSCALL with errno 0: the peer closed
  const int r = SSL_do_handshake(ssl_);
  return r == 1 ? Want::Done : outcome(r);
}

TlsStream::Want TlsStream::read(char* data, std::size_t size, std::size_t& n) {
  ERR_clear_error();
  errno = 0;  // SSL_ERROR_SYSCALL with errno 0: the peer closed
  n = 0;
  return SSL_read_ex(ssl_, data, size, &n) == 1 ? Want::Done : outcome(0);
}

TlsStream::Want TlsStream::write(const char* data, std::size_t size, std::size_t& n) {
  ERR_clear_error();
  errno = 0;  // SSL_ERROR_SYSCALL with errno 0: the peer closed
  n = 0;
  return SSL_write_ex(ssl_, data, size, &n) == 1 ? Want::Done : outcome(0);
}

TlsStream::Want TlsStream::outcome(int ret) {
  const int saved_errno = errno;
  switch (SSL_get_error(ssl_, ret)) {
    case SSL_ERROR_WANT_READ: return Want::Read;
    case SSL_ERROR_WANT_WRITE: return Want::Write;
    case SSL_ERROR_ZERO_RETURN: error_ = "the client closed TLS"; break;
    case SSL_ERROR_SYSCALL:
      error_ = saved_errno != 0 ? std::strerror(saved_errno) : "the client closed the connection";
      break;
    default: {
      char text[256];
      ERR_error_string_n(ERR_peek_last_error(), text, sizeof text);
      error_ = text;
      break;
    }
  }
  return Want::Failed;
}

}  // namespace mailhook::front
