// WriteQueue: one stream write in flight, the rest waiting behind it in
// order. Both ends of the policy stream need it (the front's PolicyStream,
// policyd's SessionReactor): gRPC allows one outstanding write and holds
// the message's address until OnWriteDone, so the message in flight lives
// here, outside the queue. Not thread-safe: callers hold their own lock.
#pragma once

#include <utility>

#include "mailcore/util/fifo.h"

namespace mailhook {

template <class T>
class WriteQueue {
 public:
  // The message to start writing now, or nullptr when a write is in
  // flight (`message` then waits its turn).
  T* offer(T message) {
    if (writing_) {
      queued_.push_back(std::move(message));
      return nullptr;
    }
    sending_ = std::move(message);
    writing_ = true;
    return &sending_;
  }

  // The write in flight finished: the next message to start, or nullptr.
  T* done() {
    writing_ = false;
    if (queued_.empty()) return nullptr;
    return offer(queued_.pop_front());
  }

  // The stream broke: nothing more goes out.
  void drop() {
    writing_ = false;
    queued_.clear();
  }

  bool writing() const { return writing_; }

 private:
  T sending_;
  Fifo<T> queued_;
  bool writing_ = false;
};

}  // namespace mailhook
