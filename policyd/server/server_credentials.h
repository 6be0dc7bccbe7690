// What guards policyd's gRPC port: mutual TLS from --tls-cert/--tls-key/
// --tls-client-ca (a peer without a certificate of that CA opens nothing),
// and for unix:PATH listeners the socket's mode 0660 and a check that no
// live daemon owns the path. Runs once at start-up; never on a gRPC thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

namespace mailhook::policyd {

// Insecure credentials when all three are empty; else mTLS requiring and
// verifying a client certificate. nullptr and `error` set when a file
// cannot be read or only some are given.
std::shared_ptr<grpc::ServerCredentials> server_credentials(const std::string& cert, const std::string& key,
                                                            const std::string& client_ca, std::string& error);

// The filesystem path of a unix:PATH or unix:///PATH target; "" for others.
std::string unix_socket_path(const std::string& listen);

// "" when `path` is free or a stale socket (gRPC replaces it); else why
// not: a live process accepts on it, or it is not a socket.
std::string check_unix_socket_free(const std::string& path);

}  // namespace mailhook::policyd
