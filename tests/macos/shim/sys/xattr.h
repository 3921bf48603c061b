// macOS <sys/xattr.h>: every call takes a position and an options argument (see apple_shim.h).
// glibc's own declarations are renamed away so the macOS ones can take the plain names.
#pragma once
#define flistxattr glibc_flistxattr_
#define fgetxattr glibc_fgetxattr_
#define fsetxattr glibc_fsetxattr_
#include_next <sys/xattr.h>
#undef flistxattr
#undef fgetxattr
#undef fsetxattr
#include <stdint.h>
extern "C" {
ssize_t flistxattr(int fd, char* namebuff, size_t size, int options);
ssize_t fgetxattr(int fd, const char* name, void* value, size_t size, uint32_t position, int options);
int fsetxattr(int fd, const char* name, const void* value, size_t size, uint32_t position, int options);
}
