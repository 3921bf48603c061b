#include <hostcfg/error.hpp>
#include <hostcfg/path.hpp>
#include <hostcfg/format/markers.hpp>

#include "support/test_support.hpp"

using namespace hostcfg;

TEST_CASE("an errno error reads as op path -> path2: reason [hint]") {
  auto e = fail_errno(EXDEV, "rename", "/a", "/b", "use the in-place fallback").value();
  CHECK(e.is_errno(EXDEV));
  CHECK(e.message() == "rename /a -> /b: Invalid cross-device link [use the in-place fallback]");
}

TEST_CASE("a hostcfg error carries its own category and code") {
  auto e = fail(errc::invalid_input, "parse hostname", "bad name", "label longer than 63 bytes").value();
  CHECK(e.is(errc::invalid_input));
  CHECK(std::string(e.code.category().name()) == "hostcfg");
  CHECK(e.message() == "parse hostname bad name: label longer than 63 bytes");
}

TEST_CASE("paths normalize lexically and refuse relative or NUL input") {
  CHECK(*normalize_path("/usr//local/./bin/") == "/usr/local/bin");
  CHECK(*normalize_path("/a/../../b") == "/b");
  CHECK(*normalize_path("/") == "/");
  CHECK_FALSE(normalize_path("usr/bin"));
  CHECK_FALSE(normalize_path(std::string_view("/a\0b", 4)));
  CHECK(parent_path("/a/b") == "/a");
  CHECK(parent_path("/a") == "/");
  CHECK(base_name("/a/b") == "b");
  CHECK(*resolve_link_target("/usr/local/bin/docker", "../lib/x") == "/usr/local/lib/x");
  CHECK(path_is_within("/a/b", "/a"));
  CHECK_FALSE(path_is_within("/ab", "/a"));
}

TEST_CASE("split_lines keeps every ending so joining gives the input back") {
  std::string input = "a\r\nb\nc\rd";
  std::string joined;
  auto lines = split_lines(input);
  REQUIRE(lines.size() == 4);
  for (auto& l : lines) joined += std::string(l.text) + std::string(l.ending);
  CHECK(joined == input);
  CHECK(lines[3].ending.empty());
  CHECK(preferred_line_ending("x\r\ny") == "\r\n");
}

TEST_CASE("find_section locates our section and refuses broken markers") {
  auto m = default_markers("com.example.app");
  std::string ok = "x\n" + m.begin_line + "\n1.2.3.4 a\n" + m.end_line + "\ny\n";
  auto found = find_section(ok, m);
  REQUIRE(found);
  REQUIRE(found->has_value());
  CHECK(ok.substr((*found)->inner_begin, (*found)->inner_end - (*found)->inner_begin) == "1.2.3.4 a\n");
  CHECK(find_section(m.end_line + "\n" + m.begin_line + "\n", m).error().is(errc::broken_markers));
  CHECK(find_section(m.begin_line + "\n", m).error().is(errc::broken_markers));
  CHECK(find_section(ok + ok, m).error().is(errc::broken_markers));
  CHECK_FALSE(find_section("nothing here\n", m)->has_value());
}
