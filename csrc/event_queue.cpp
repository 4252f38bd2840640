#include "event_queue.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>

#ifdef __linux__
#include <sys/eventfd.h>
#endif

namespace dmr {

EventQueue::EventQueue() {
#ifdef __linux__
    read_fd_ = write_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
#else
    int fds[2];
    if (::pipe(fds) == 0) {
        for (int f : fds) {
            ::fcntl(f, F_SETFL, ::fcntl(f, F_GETFL) | O_NONBLOCK);
            ::fcntl(f, F_SETFD, FD_CLOEXEC);
        }
        read_fd_ = fds[0];
        write_fd_ = fds[1];
    }
#endif
}

EventQueue::~EventQueue() {
    if (read_fd_ >= 0) ::close(read_fd_);
    if (write_fd_ >= 0 && write_fd_ != read_fd_) ::close(write_fd_);
}

void EventQueue::signal() {
#ifdef __linux__
    uint64_t one = 1;
    ssize_t rc = ::write(write_fd_, &one, sizeof(one));
#else
    char one = 1;
    ssize_t rc = ::write(write_fd_, &one, 1);
#endif
    (void)rc;  // EAGAIN: already signalled, which is all we need
}

void EventQueue::push(Event&& ev) {
    bool was_empty;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        was_empty = queue_.empty();
        queue_.push_back(std::move(ev));
    }
    if (was_empty) signal();
}

void EventQueue::push_many(std::vector<Event>& evs) {
    if (evs.empty()) return;
    bool was_empty;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        was_empty = queue_.empty();
        for (auto& e : evs) queue_.push_back(std::move(e));
    }
    evs.clear();
    if (was_empty) signal();
}

void EventQueue::drain(std::vector<Event>* out) {
    // Clear the fd first: a push racing with us re-signals, so no event is left without a wakeup.
#ifdef __linux__
    uint64_t value;
    while (::read(read_fd_, &value, sizeof(value)) > 0) {
    }
#else
    char buf[64];
    while (::read(read_fd_, buf, sizeof(buf)) > 0) {
    }
#endif
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& e : queue_) out->push_back(std::move(e));
    queue_.clear();
}

size_t EventQueue::size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return queue_.size();
}

}  // namespace dmr
