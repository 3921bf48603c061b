#pragma once
// Test-only Fs decorator for the component-swap attack: forwards every operation to the inner
// backend and runs `hook` just before the Nth call (1-based, counted over every operation), so
// the swap lands deterministically at the exact operation under test.
#include <hostcfg/fs.hpp>

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hostcfg_test {

template <class Fs>
class SwapBeforeCall {
 public:
  SwapBeforeCall(Fs& inner, std::size_t n, std::function<void()> hook) : inner_(&inner), n_(n), hook_(std::move(hook)) {}

  std::size_t calls() const { return calls_; }
  bool fired() const { return fired_; }
  /// Names of the calls made, in order ("symlink /x"...).
  const std::vector<std::string>& log() const { return log_; }

  using actor = hostcfg::actor;
  auto lstat(const actor& a, std::string_view p) { return before("lstat", p), inner_->lstat(a, p); }
  auto stat(const actor& a, std::string_view p) { return before("stat", p), inner_->stat(a, p); }
  auto readlink(const actor& a, std::string_view p) { return before("readlink", p), inner_->readlink(a, p); }
  auto read_file(const actor& a, std::string_view p, std::size_t m) { return before("read_file", p), inner_->read_file(a, p, m); }
  auto replace_file(const actor& a, std::string_view p, std::string_view b, const hostcfg::replace_options& o) {
    return before("replace_file", p), inner_->replace_file(a, p, b, o);
  }
  auto symlink(const actor& a, std::string_view t, std::string_view p) { return before("symlink", p), inner_->symlink(a, t, p); }
  auto replace_symlink(const actor& a, std::string_view t, std::string_view p, std::optional<hostcfg::file_status> e) {
    return before("replace_symlink", p), inner_->replace_symlink(a, t, p, e);
  }
  auto rename(const actor& a, std::string_view f, std::string_view t) { return before("rename", f), inner_->rename(a, f, t); }
  auto unlink(const actor& a, std::string_view p) { return before("unlink", p), inner_->unlink(a, p); }
  auto mkdir(const actor& a, std::string_view p, hostcfg::mode_type m) { return before("mkdir", p), inner_->mkdir(a, p, m); }
  auto rmdir(const actor& a, std::string_view p) { return before("rmdir", p), inner_->rmdir(a, p); }
  auto chmod(const actor& a, std::string_view p, hostcfg::mode_type m) { return before("chmod", p), inner_->chmod(a, p, m); }
  auto lchown(const actor& a, std::string_view p, hostcfg::uid_type u, hostcfg::gid_type g) {
    return before("lchown", p), inner_->lchown(a, p, u, g);
  }
  auto get_flags(const actor& a, std::string_view p) { return before("get_flags", p), inner_->get_flags(a, p); }
  auto list_dir(const actor& a, std::string_view p) { return before("list_dir", p), inner_->list_dir(a, p); }
  auto lock(const actor& a, std::string_view p) { return before("lock", p), inner_->lock(a, p); }

 private:
  void before(const char* op, std::string_view path) {
    log_.push_back(std::string(op) + " " + std::string(path));
    if (++calls_ == n_ && hook_) {
      fired_ = true;
      hook_();
    }
  }
  Fs* inner_;
  std::size_t n_;
  std::function<void()> hook_;
  std::size_t calls_ = 0;
  bool fired_ = false;
  std::vector<std::string> log_;
};

}  // namespace hostcfg_test
