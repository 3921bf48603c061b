// macOS <mach-o/dyld.h>: the one call hostcfg uses (see apple_shim.h).
#pragma once
#include <stdint.h>
extern "C" int _NSGetExecutablePath(char* buf, uint32_t* bufsize);
