// Forced-included first (-include) by tests/macos/check-syntax: makes a Linux libc look enough like
// macOS's for hostcfg's `#if defined(__APPLE__)` branches to be COMPILED (type-checked) on Linux.
// Every declaration below copies the macOS SDK's signature (man pages: pthread_setugid_np(2) is
// private API declared in <pthread.h>, getpeereid(3), getgrouplist(3), getxattr(2), fcntl(2)
// F_FULLFSYNC, renameatx_np(2) RENAME_SWAP, stat(2) st_flags / st_mtimespec, chflags(2) UF_*/SF_*). It checks hostcfg's own
// code, not Apple's headers: a wrong signature here would hide a real mismatch, so keep it literal.
#pragma once
#include <sys/types.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <pthread.h>

// <sys/stat.h>: struct stat spells its times st_[amc]timespec and carries st_flags.
#define st_mtimespec st_mtim
#define st_ctimespec st_ctim
#define st_atimespec st_atim
#define st_flags __glibc_reserved[0]
#define UF_IMMUTABLE 0x00000002
#define UF_APPEND 0x00000004
#define SF_IMMUTABLE 0x00020000
#define SF_APPEND 0x00040000
// <fcntl.h>
#define F_FULLFSYNC 51
#define F_SETNOSIGPIPE 73
// <sys/socket.h>, <sys/un.h>
#define SO_NOSIGPIPE 0x1022
#define SOL_LOCAL 0
#define LOCAL_PEERCRED 0x001
#define LOCAL_PEERPID 0x002
#define LOCAL_PEERTOKEN 0x006

// <stdio.h> (macOS 10.12+): renameatx_np(2) with RENAME_SWAP swaps two names atomically.
#define RENAME_SWAP 0x00000002

extern "C" {
int pthread_setugid_np(uid_t uid, gid_t gid);
int getpeereid(int fd, uid_t* euid, gid_t* egid);
int renameatx_np(int fromfd, const char* from, int tofd, const char* to, unsigned int flags);
}
