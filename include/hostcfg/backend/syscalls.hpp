#pragma once
/// @file
/// The system calls `PosixFs` makes, as a table of plain function pointers (SQLite's `aSyscall[]`
/// seam). `default_syscalls()` is the real OS; a test builds its own table (see
/// <hostcfg/testing/syscall_faults.hpp>) to fail any single call, fail it persistently, or "crash" at
/// call k, and to count mutating calls. Every entry follows the libc convention: -1 (or a negative
/// count) and `errno` on failure. Each takes the table's `context` first, so a fault injector needs
/// no global state.

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <dirent.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#if defined(__linux__)
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#elif defined(__APPLE__)
#include <stdio.h>  // renameatx_np, RENAME_SWAP
#include <stdlib.h>
#include <sys/xattr.h>
#endif

#include "hostcfg/version.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// One entry per system call PosixFs issues. Plain function pointers plus one `context` pointer
/// handed back to each: copying a table is cheap and calling through it costs one indirect call.
struct syscall_table {
  void* context = nullptr;  ///< passed as the first argument of every entry

  int (*openat)(void* ctx, int dirfd, const char* path, int flags, mode_t mode);
  /// Linux openat2(2) with `resolve` flags (RESOLVE_*); -1/ENOSYS where the kernel lacks it.
  int (*openat2)(void* ctx, int dirfd, const char* path, int flags, mode_t mode, std::uint64_t resolve);
  int (*fstat)(void* ctx, int fd, struct ::stat* out);
  int (*fstatat)(void* ctx, int dirfd, const char* path, struct ::stat* out, int flags);
  ssize_t (*read)(void* ctx, int fd, void* buf, std::size_t size);
  ssize_t (*write)(void* ctx, int fd, const void* buf, std::size_t size);
  ssize_t (*pwrite)(void* ctx, int fd, const void* buf, std::size_t size, off_t offset);
  int (*ftruncate)(void* ctx, int fd, off_t size);
  /// fsync; on macOS fcntl(F_FULLFSYNC), falling back to fsync where the fs says ENOTSUP.
  int (*fsync)(void* ctx, int fd);
  int (*renameat)(void* ctx, int from_dirfd, const char* from, int to_dirfd, const char* to);
  int (*unlinkat)(void* ctx, int dirfd, const char* path, int flags);
  int (*mkdirat)(void* ctx, int dirfd, const char* path, mode_t mode);
  int (*symlinkat)(void* ctx, const char* target, int dirfd, const char* path);
  ssize_t (*readlinkat)(void* ctx, int dirfd, const char* path, char* buf, std::size_t size);
  int (*fchmod)(void* ctx, int fd, mode_t mode);
  int (*fchmodat)(void* ctx, int dirfd, const char* path, mode_t mode, int flags);
  int (*fchown)(void* ctx, int fd, uid_t uid, gid_t gid);
  int (*fchownat)(void* ctx, int dirfd, const char* path, uid_t uid, gid_t gid, int flags);
  int (*flock)(void* ctx, int fd, int operation);
  /// Appends the names in directory `fd` (without "." and "..") to `names`; `fd` stays open.
  /// (fdopendir/readdir on a dup of `fd`, i.e. getdents.)
  int (*list_dir)(void* ctx, int fd, std::vector<std::string>* names);
  /// Linux ioctl(FS_IOC_GETFLAGS) into `flags`; macOS: st_flags of fstat. ENOTTY/ENOTSUP/EINVAL
  /// when the filesystem has no flags.
  int (*get_flags)(void* ctx, int fd, unsigned long* flags);
  ssize_t (*flistxattr)(void* ctx, int fd, char* names, std::size_t size);
  ssize_t (*fgetxattr)(void* ctx, int fd, const char* name, void* value, std::size_t size);
  int (*fsetxattr)(void* ctx, int fd, const char* name, const void* value, std::size_t size, int flags);
  int (*close)(void* ctx, int fd);
  /// getrandom(2) (macOS: arc4random_buf), for temp names.
  ssize_t (*getrandom)(void* ctx, void* buf, std::size_t size, unsigned flags);
  /// Swaps two names atomically: Linux renameat2(RENAME_EXCHANGE), macOS renameatx_np(RENAME_SWAP);
  /// -1/EINVAL or ENOSYS where the kernel or the filesystem cannot.
  int (*exchangeat)(void* ctx, int dirfd_a, const char* a, int dirfd_b, const char* b);
};

namespace detail {

inline int sys_openat(void*, int dirfd, const char* path, int flags, mode_t mode) {
  return ::openat(dirfd, path, flags, mode);
}

inline int sys_openat2(void*, int dirfd, const char* path, int flags, mode_t mode, std::uint64_t resolve) {
#if defined(__linux__) && defined(SYS_openat2)
  // struct open_how from <linux/openat2.h>, spelled out so older kernel headers still compile.
  struct {
    std::uint64_t flags;
    std::uint64_t mode;
    std::uint64_t resolve;
  } how{static_cast<std::uint64_t>(static_cast<unsigned>(flags)), static_cast<std::uint64_t>(mode), resolve};
  return static_cast<int>(::syscall(SYS_openat2, dirfd, path, &how, sizeof how));
#else
  (void)dirfd, (void)path, (void)flags, (void)mode, (void)resolve;
  errno = ENOSYS;
  return -1;
#endif
}

inline int sys_fstat(void*, int fd, struct ::stat* out) { return ::fstat(fd, out); }
inline int sys_fstatat(void*, int dirfd, const char* path, struct ::stat* out, int flags) {
  return ::fstatat(dirfd, path, out, flags);
}
inline ssize_t sys_read(void*, int fd, void* buf, std::size_t size) { return ::read(fd, buf, size); }
inline ssize_t sys_write(void*, int fd, const void* buf, std::size_t size) { return ::write(fd, buf, size); }
inline ssize_t sys_pwrite(void*, int fd, const void* buf, std::size_t size, off_t offset) {
  return ::pwrite(fd, buf, size, offset);
}
inline int sys_ftruncate(void*, int fd, off_t size) { return ::ftruncate(fd, size); }

inline int sys_fsync(void*, int fd) {
#if defined(__APPLE__)
  // fsync on macOS does not flush the drive's cache; F_FULLFSYNC does, where the fs supports it.
  if (::fcntl(fd, F_FULLFSYNC) == 0) return 0;
  if (errno != ENOTSUP && errno != EINVAL) return -1;
#endif
  return ::fsync(fd);
}

inline int sys_renameat(void*, int from_dirfd, const char* from, int to_dirfd, const char* to) {
  return ::renameat(from_dirfd, from, to_dirfd, to);
}
inline int sys_exchangeat(void*, int dirfd_a, const char* a, int dirfd_b, const char* b) {
#if defined(__linux__) && defined(SYS_renameat2)
  // The raw system call: glibc's wrapper and RENAME_EXCHANGE's header vary across versions.
  constexpr unsigned exchange_flag = 1u << 1;  // RENAME_EXCHANGE
  return static_cast<int>(::syscall(SYS_renameat2, dirfd_a, a, dirfd_b, b, exchange_flag));
#elif defined(__APPLE__)
  return ::renameatx_np(dirfd_a, a, dirfd_b, b, RENAME_SWAP);
#else
  (void)dirfd_a, (void)a, (void)dirfd_b, (void)b;
  errno = ENOSYS;
  return -1;
#endif
}
inline int sys_unlinkat(void*, int dirfd, const char* path, int flags) { return ::unlinkat(dirfd, path, flags); }
inline int sys_mkdirat(void*, int dirfd, const char* path, mode_t mode) { return ::mkdirat(dirfd, path, mode); }
inline int sys_symlinkat(void*, const char* target, int dirfd, const char* path) {
  return ::symlinkat(target, dirfd, path);
}
inline ssize_t sys_readlinkat(void*, int dirfd, const char* path, char* buf, std::size_t size) {
  return ::readlinkat(dirfd, path, buf, size);
}
inline int sys_fchmod(void*, int fd, mode_t mode) { return ::fchmod(fd, mode); }
inline int sys_fchmodat(void*, int dirfd, const char* path, mode_t mode, int flags) {
  return ::fchmodat(dirfd, path, mode, flags);
}
inline int sys_fchown(void*, int fd, uid_t uid, gid_t gid) { return ::fchown(fd, uid, gid); }
inline int sys_fchownat(void*, int dirfd, const char* path, uid_t uid, gid_t gid, int flags) {
  return ::fchownat(dirfd, path, uid, gid, flags);
}
inline int sys_flock(void*, int fd, int operation) { return ::flock(fd, operation); }

inline int sys_list_dir(void*, int fd, std::vector<std::string>* names) {
  // fdopendir takes ownership of its fd, so it gets a duplicate and the caller keeps `fd`.
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return -1;
  DIR* dir = ::fdopendir(copy);
  if (!dir) {
    int saved = errno;
    ::close(copy);
    errno = saved;
    return -1;
  }
  ::rewinddir(dir);
  errno = 0;
  while (struct dirent* entry = ::readdir(dir)) {
    std::string name(entry->d_name);
    if (name != "." && name != "..") names->push_back(std::move(name));
    errno = 0;
  }
  int saved = errno;
  ::closedir(dir);
  errno = saved;
  return saved == 0 ? 0 : -1;
}

inline int sys_get_flags(void*, int fd, unsigned long* flags) {
#if defined(__linux__)
  int value = 0;  // the kernel reads and writes an int despite the ioctl's declared long
  if (::ioctl(fd, FS_IOC_GETFLAGS, &value) != 0) return -1;
  *flags = static_cast<unsigned>(value);
  return 0;
#elif defined(__APPLE__)
  struct ::stat st;
  if (::fstat(fd, &st) != 0) return -1;
  *flags = st.st_flags;
  return 0;
#else
  (void)fd, (void)flags;
  errno = ENOTSUP;
  return -1;
#endif
}

inline ssize_t sys_flistxattr(void*, int fd, char* names, std::size_t size) {
#if defined(__linux__)
  return ::flistxattr(fd, names, size);
#elif defined(__APPLE__)
  return ::flistxattr(fd, names, size, 0);
#else
  (void)fd, (void)names, (void)size;
  return 0;  // no xattrs on this platform: nothing to copy
#endif
}

inline ssize_t sys_fgetxattr(void*, int fd, const char* name, void* value, std::size_t size) {
#if defined(__linux__)
  return ::fgetxattr(fd, name, value, size);
#elif defined(__APPLE__)
  return ::fgetxattr(fd, name, value, size, 0, 0);
#else
  (void)fd, (void)name, (void)value, (void)size;
  errno = ENOTSUP;
  return -1;
#endif
}

inline int sys_fsetxattr(void*, int fd, const char* name, const void* value, std::size_t size, int flags) {
#if defined(__linux__)
  return ::fsetxattr(fd, name, value, size, flags);
#elif defined(__APPLE__)
  return ::fsetxattr(fd, name, value, size, 0, flags);
#else
  (void)fd, (void)name, (void)value, (void)size, (void)flags;
  errno = ENOTSUP;
  return -1;
#endif
}

inline int sys_close(void*, int fd) { return ::close(fd); }

inline ssize_t sys_getrandom(void*, void* buf, std::size_t size, unsigned flags) {
#if defined(__linux__)
  return ::getrandom(buf, size, flags);
#elif defined(__APPLE__)
  (void)flags;
  ::arc4random_buf(buf, size);  // macOS has no getrandom; arc4random never fails
  return static_cast<ssize_t>(size);
#else
  (void)buf, (void)size, (void)flags;
  errno = ENOSYS;
  return -1;
#endif
}

}  // namespace detail

/// The real system calls. The returned table lives for the whole program.
inline const syscall_table& default_syscalls() {
  static const syscall_table table{nullptr,
                                   detail::sys_openat,
                                   detail::sys_openat2,
                                   detail::sys_fstat,
                                   detail::sys_fstatat,
                                   detail::sys_read,
                                   detail::sys_write,
                                   detail::sys_pwrite,
                                   detail::sys_ftruncate,
                                   detail::sys_fsync,
                                   detail::sys_renameat,
                                   detail::sys_unlinkat,
                                   detail::sys_mkdirat,
                                   detail::sys_symlinkat,
                                   detail::sys_readlinkat,
                                   detail::sys_fchmod,
                                   detail::sys_fchmodat,
                                   detail::sys_fchown,
                                   detail::sys_fchownat,
                                   detail::sys_flock,
                                   detail::sys_list_dir,
                                   detail::sys_get_flags,
                                   detail::sys_flistxattr,
                                   detail::sys_fgetxattr,
                                   detail::sys_fsetxattr,
                                   detail::sys_close,
                                   detail::sys_getrandom,
                                   detail::sys_exchangeat};
  return table;
}

HOSTCFG_END_NAMESPACE
