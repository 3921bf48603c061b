#pragma once
/// @file
/// A file descriptor that closes itself: the RAII type every POSIX part of hostcfg (PosixFs, the
/// helper, PrivilegedPortBind's listening sockets) hands around.

#include <unistd.h>

#include <utility>

#include "hostcfg/version.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// Owns one fd (or none: -1). Move-only; closes on destruction.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  /// The fd, still owned.
  int get() const noexcept { return fd_; }
  /// True when an fd is held.
  explicit operator bool() const noexcept { return fd_ >= 0; }
  /// Gives up ownership and returns the fd.
  int release() noexcept { return std::exchange(fd_, -1); }
  /// Closes the held fd (if any) and takes `fd`.
  void reset(int fd = -1) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

HOSTCFG_END_NAMESPACE
