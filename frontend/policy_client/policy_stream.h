// PolicyStream: the gRPC stream of one SMTP session (callback API), used
// only by GrpcPolicySession. The connection's coroutine sends events and
// awaits answers through it; gRPC threads only queue what arrives and
// wake the coroutine through its executor. Never blocks a gRPC thread;
// one write in flight; lifetime ends in OnDone.
#pragma once

#include <grpcpp/grpcpp.h>

#include <asio.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>

#include "mailcore/util/fifo.h"
#include "mailcore/util/write_queue.h"
#include "mailhook/v1/session.grpc.pb.h"

namespace mailhook::front {

class PolicyStream final : public grpc::ClientBidiReactor<v1::FrontMessage, v1::PolicyMessage>,
                           public std::enable_shared_from_this<PolicyStream> {
 public:
  PolicyStream(v1::Policy::Stub& stub, asio::any_io_executor executor);

  // Starts the call with the first message; must be called once.
  void start(v1::FrontMessage first);
  void send(v1::FrontMessage message);
  // Half-closes: no more events.
  void close();
  // Abandons the call (the connection is being destroyed).
  void cancel() { context_.TryCancel(); }
  // Awaits the next message from policyd until `deadline`; nullopt when the
  // stream broke or the deadline passed. Connection thread only.
  asio::awaitable<std::optional<v1::PolicyMessage>> next(std::chrono::steady_clock::time_point deadline);
  bool broken();
  // Why the stream ended, in an administrator's words ("unreachable:
  // connection refused", "DEADLINE_EXCEEDED: ..."); "" while it runs.
  // Connection thread only; the text is gRPC's, not the client's.
  std::string failure();
  // failure() once gRPC has said why: a read can fail a moment before
  // OnDone brings the status. Waits for OnDone at most until `deadline`
  // (only when the stream broke; a stream that is merely slow has no
  // status to wait for). Connection thread only.
  asio::awaitable<std::string> settled_failure(std::chrono::steady_clock::time_point deadline);

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnWritesDoneDone(bool ok) override {}
  void OnDone(const grpc::Status& status) override;

 private:
  void wake();

  grpc::ClientContext context_;
  asio::any_io_executor executor_;
  asio::steady_timer timer_;
  v1::PolicyMessage in_;
  std::shared_ptr<PolicyStream> self_;  // held until OnDone

  std::mutex mu_;
  Fifo<v1::PolicyMessage> received_;
  WriteQueue<v1::FrontMessage> out_;
  bool close_pending_ = false;
  bool closed_ = false;
  bool broken_ = false;
  bool done_ = false;    // OnDone ran
  std::string failure_;  // set in OnDone for a status other than OK
};

}  // namespace mailhook::front
