#pragma once
/// @file
/// Paths are plain strings: absolute, normalized, never relative to the process cwd. These are
/// the only path helpers the library uses; they are lexical (no I/O).

#include <string>
#include <string_view>
#include <vector>

#include "hostcfg/error.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// Lexically normalizes an absolute path: collapses `//`, drops `.`, resolves `..` (never above
/// `/`), drops a trailing slash. Refuses relative paths, empty paths and NUL bytes.
/// `normalize_path("/usr//local/./bin/")` == "/usr/local/bin".
inline result<std::string> normalize_path(std::string_view path) {
  if (path.empty() || path.front() != '/')
    return fail(errc::invalid_input, "normalize path", std::string(path), "not an absolute path");
  if (path.find('\0') != std::string_view::npos)
    return fail(errc::invalid_input, "normalize path", std::string(path), "contains a NUL byte");
  std::vector<std::string_view> parts;
  std::size_t pos = 0;
  while (pos < path.size()) {
    std::size_t next = path.find('/', pos);
    if (next == std::string_view::npos) next = path.size();
    std::string_view part = path.substr(pos, next - pos);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    pos = next + 1;
  }
  std::string out;
  for (auto part : parts) {
    out += '/';
    out += part;
  }
  return out.empty() ? std::string("/") : out;
}

/// True when `path` is absolute and already normal (what every backend operation requires).
inline bool is_normal_path(std::string_view path) {
  auto normal = normalize_path(path);
  return normal && *normal == path;
}

/// The parent directory of a normal absolute path: "/a/b" -> "/a", "/a" -> "/", "/" -> "/".
inline std::string parent_path(std::string_view path) {
  auto slash = path.rfind('/');
  if (slash == std::string_view::npos || slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

/// The last component of a normal absolute path: "/a/b" -> "b", "/" -> "".
inline std::string base_name(std::string_view path) {
  auto slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

/// Joins a directory and a relative name: join_path("/a", "b/c") == "/a/b/c". Not normalized.
inline std::string join_path(std::string_view dir, std::string_view name) {
  std::string out(dir);
  if (out.empty() || out.back() != '/') out += '/';
  out.append(name.data(), name.size());
  return out;
}

/// Components of a normal absolute path: "/a/b" -> {"a", "b"}; "/" -> {}.
inline std::vector<std::string> path_components(std::string_view path) {
  std::vector<std::string> parts;
  std::size_t pos = 1;
  while (pos < path.size()) {
    std::size_t next = path.find('/', pos);
    if (next == std::string_view::npos) next = path.size();
    if (next > pos) parts.emplace_back(path.substr(pos, next - pos));
    pos = next + 1;
  }
  return parts;
}

/// Makes a symlink target absolute (relative to the link's directory) and normal, for comparing
/// link targets: resolve_link_target("/usr/local/bin/docker", "../lib/x") == "/usr/local/lib/x".
inline result<std::string> resolve_link_target(std::string_view link_path, std::string_view target) {
  if (!target.empty() && target.front() == '/') return normalize_path(target);
  return normalize_path(join_path(parent_path(link_path), target));
}

/// True when `path` equals `dir` or lies below it (both normal).
inline bool path_is_within(std::string_view path, std::string_view dir) {
  if (dir == "/") return true;
  return path.size() >= dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         (path.size() == dir.size() || path[dir.size()] == '/');
}

HOSTCFG_END_NAMESPACE
