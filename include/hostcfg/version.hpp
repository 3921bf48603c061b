#pragma once
/// @file
/// Version of the hostcfg headers. `HOSTCFG_VERSION` is MAJOR*10000 + MINOR*100 + PATCH, as {fmt}
/// does, so a consumer can compare it in the preprocessor.

#define HOSTCFG_VERSION_MAJOR 0
#define HOSTCFG_VERSION_MINOR 1
#define HOSTCFG_VERSION_PATCH 0
#define HOSTCFG_VERSION (HOSTCFG_VERSION_MAJOR * 10000 + HOSTCFG_VERSION_MINOR * 100 + HOSTCFG_VERSION_PATCH)

// Every public name lives in `hostcfg::v0` (inline), so two incompatible major versions linked into
// one program do not violate the one-definition rule.
#define HOSTCFG_BEGIN_NAMESPACE namespace hostcfg { inline namespace v0 {
#define HOSTCFG_END_NAMESPACE } }
