// macOS <grp.h>: getgrouplist takes int group ids (see apple_shim.h).
#pragma once
#define getgrouplist glibc_getgrouplist_
#include_next <grp.h>
#undef getgrouplist
extern "C" int getgrouplist(const char* name, int basegid, int* groups, int* ngroups);
