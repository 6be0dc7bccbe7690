// SessionMux::Stream's reactor callbacks: routing policyd's tagged
// answers to the sessions' inboxes, the write chain, and the end of the
// call. Never holds the stream's lock while calling into an Inbox.
#include "frontend/policy_client/mux_stream.h"

#include <algorithm>
#include <cctype>
#include <utility>
#include <vector>

namespace mailhook::front {
namespace {

// gRPC's status in an administrator's words ("unreachable: connection refused").
std::string describe(const grpc::Status& status) {
  if (status.ok()) return "";
  std::string lower = status.error_message();
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    for (const char* cause : {"connection refused", "no route to host", "network is unreachable",
                              "connection reset", "no such file or directory", "handshake failed"}) {
      if (lower.find(cause) != std::string::npos) return std::string("unreachable: ") + cause;
    }
    return "unreachable: " + status.error_message();
  }
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    return "serves no shared streams (Sessions: UNIMPLEMENTED: " + status.error_message() + ")";
  }
  return "status " + std::to_string(static_cast<int>(status.error_code())) + ": " + status.error_message();
}

}  // namespace

void SessionMux::Stream::OnReadDone(bool ok) {
  if (!ok) {  // the call is ending: nothing starts from outside a reaction any more, then OnDone may come
    {
      std::lock_guard l(mu_);
      ended_ = true;
    }
    RemoveHold();
    return;
  }
  if (!peer_known_.load(std::memory_order_relaxed)) {  // policyd's first frame: the call reached a replica
    peer_ = context_.peer();
    peer_known_.store(true, std::memory_order_release);
  }
  std::vector<std::pair<std::shared_ptr<Inbox>, v1::PolicyTagged>> routed;
  {
    std::lock_guard l(mu_);
    if (in_.has_limits()) {
      window_ = std::max<std::size_t>(1, in_.limits().max_pending_events());
      max_sessions_ = std::max<std::size_t>(1, in_.limits().max_sessions());
    }
    if (in_.has_drain()) {
      drained_ = true;
      maybe_half_close_locked();
    }
    for (v1::PolicyTagged& m : *in_.mutable_messages()) {
      const auto it = inboxes_.find(m.session());
      if (it == inboxes_.end()) continue;  // a session already ended here
      routed.emplace_back(it->second, std::move(m));
      if (routed.back().second.has_ended()) {
        inboxes_.erase(it);  // policyd forgot it
        maybe_half_close_locked();
      }
    }
  }
  in_.Clear();
  for (auto& [inbox, m] : routed) inbox->deliver(std::move(m));
  StartRead(&in_);
}

void SessionMux::Stream::OnWriteDone(bool ok) {
  std::lock_guard l(mu_);
  writing_ = false;
  if (!ok) {  // broken; OnDone follows with the status (sessions attached meanwhile learn it there)
    write_failed_ = true;
    frames_.clear();
    return;
  }
  write_next_locked();
  if (!writing_) maybe_half_close_locked();
}

void SessionMux::Stream::OnDone(const grpc::Status& status) {
  std::unordered_map<std::uint64_t, std::shared_ptr<Inbox>> orphans;
  const std::string why = status.ok() ? "stream ended" : describe(status);
  {
    std::lock_guard l(mu_);
    ended_ = true;
    failure_ = why;
    unimplemented_ = status.error_code() == grpc::StatusCode::UNIMPLEMENTED;
    orphans.swap(inboxes_);
  }
  for (auto& [id, inbox] : orphans) inbox->broken(why);
  self_.reset();  // others (an Inbox, the mux) may hold it a while longer
}

}  // namespace mailhook::front
