// macOS Security.framework: the declarations helper/macos_code_signature.hpp uses, with the
// SDK's signatures (see apple_shim.h).
#pragma once
#include <CoreFoundation/CoreFoundation.h>
typedef struct __SecCode* SecCodeRef;
typedef struct __SecRequirement* SecRequirementRef;
typedef uint32_t SecCSFlags;
enum { kSecCSDefaultFlags = 0 };
enum { errSecSuccess = 0 };
extern const CFStringRef kSecGuestAttributeAudit;
OSStatus SecRequirementCreateWithString(CFStringRef text, SecCSFlags flags, SecRequirementRef* requirement);
OSStatus SecCodeCopyGuestWithAttributes(SecCodeRef host, CFDictionaryRef attributes, SecCSFlags flags, SecCodeRef* guest);
OSStatus SecCodeCheckValidity(SecCodeRef code, SecCSFlags flags, SecRequirementRef requirement);
typedef struct { unsigned int val[8]; } audit_token_t;
