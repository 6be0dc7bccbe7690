// Fifo: a first-in first-out queue that allocates nothing until used and
// gives its memory back once drained. For the per-session queues: a
// std::deque allocates about 600 bytes at construction, which 10,000 idle
// sessions would each hold. Elements do move when the queue grows, so a
// write in flight must not point into it (keep that one outside).
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace mailhook {

template <class T>
class Fifo {
 public:
  bool empty() const { return head_ == items_.size(); }
  std::size_t size() const { return items_.size() - head_; }
  T& front() { return items_[head_]; }
  void push_back(T value) { items_.push_back(std::move(value)); }

  T pop_front() {
    T value = std::move(items_[head_++]);
    if (empty()) clear();
    return value;
  }

  // Keeps a small buffer for the next event; a burst's (a message's
  // chunks) is freed.
  void clear() {
    if (items_.capacity() > kKept) {
      std::vector<T>().swap(items_);
    } else {
      items_.clear();
    }
    head_ = 0;
  }

 private:
  static constexpr std::size_t kKept = 4;
  std::vector<T> items_;
  std::size_t head_ = 0;
};

}  // namespace mailhook
