// The plist codec: writer golden bytes, reader leniency and errors, binary reader, semantic
// compare and diff, and Python's plistlib as the independent reference.
#include "hostcfg/format/plist.hpp"
#include "hostcfg/format/plist_binary.hpp"
#include "hostcfg/format/plist_xml.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "support/real_fs.hpp"
#include "support/test_support.hpp"

using namespace hostcfg;

namespace {

using hostcfg_test::read_whole_file_or_empty;
using hostcfg_test::write_whole_file;

const std::string header =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" \"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n"
    "<plist version=\"1.0\">\n";

std::vector<std::string> corpus_plists() {
  std::vector<std::string> out;
  std::string dir = hostcfg_test::corpus_dir() + "/plists";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.size() > 6 && name.substr(name.size() - 6) == ".plist") out.push_back(dir + "/" + name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

// Runs a shell command and returns its stdout and exit status.
std::pair<int, std::string> run(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) return {-1, out};
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

bool have_python_plistlib() { return run("python3 -c 'import plistlib' 2>/dev/null").first == 0; }

// A private temp directory for the files handed to python, removed when the tests end.
struct scratch {
  std::string dir;
  scratch() {
    char tmpl[] = "/tmp/hostcfg-plist-test-XXXXXX";
    const char* made = ::mkdtemp(tmpl);
    dir = made ? made : "";
  }
  ~scratch() {
    if (!dir.empty()) (void)std::system(("rm -rf '" + dir + "'").c_str());
  }
};

std::string scratch_dir() {
  static scratch s;
  return s.dir;
}

// plistlib's load-then-dump of each file, as XML (or binary) with the key order kept, in one
// python process (a process per file would cost seconds). Returns the outputs, or the error text.
std::pair<int, std::vector<std::string>> plistlib_roundtrip_all(const std::vector<std::string>& paths,
                                                               const char* fmt = "FMT_XML") {
  std::string command = std::string(
                            "python3 -c 'import plistlib,sys\n"
                            "a = sys.argv[1:]\n"
                            "for p, q in zip(a[0::2], a[1::2]):\n"
                            "  open(q,\"wb\").write(plistlib.dumps(plistlib.load(open(p,\"rb\")), fmt=plistlib.") +
                        fmt + ", sort_keys=False))\n'";
  static int batch = 0;
  std::vector<std::string> outs;
  for (const auto& p : paths) {
    outs.push_back(scratch_dir() + "/py" + std::to_string(batch++) + ".out");
    command += " '" + p + "' '" + outs.back() + "'";
  }
  auto result = run(command + " 2>&1");
  std::vector<std::string> outputs;
  if (result.first != 0) return {result.first, {result.second}};
  for (const auto& q : outs) outputs.push_back(read_whole_file_or_empty(q));
  return {0, outputs};
}

std::pair<int, std::string> plistlib_roundtrip(const std::string& path, const char* fmt = "FMT_XML") {
  auto all = plistlib_roundtrip_all({path}, fmt);
  return {all.first, all.second.empty() ? std::string() : all.second[0]};
}

plist_value vmnetd_job() {
  return plist_dict{
      {"Label", "com.docker.vmnetd"},
      {"Program", "/Library/PrivilegedHelperTools/com.docker.vmnetd"},
      {"ProgramArguments", plist_array{"/Library/PrivilegedHelperTools/com.docker.vmnetd"}},
      {"RunAtLoad", true},
      {"KeepAlive", false},
      {"Sockets", plist_dict{{"Listener", plist_dict{{"SockPathMode", 438}, {"SockPathName", "/var/run/com.docker.vmnetd.sock"}}}}},
      {"Version", "59"},
  };
}

}  // namespace

TEST_CASE("writer emits Apple's header, TAB indentation and keys in the order given") {
  plist_value v = plist_dict{
      {"Label", "com.example.job"},
      {"ProgramArguments", plist_array{"/usr/bin/true", "-x"}},
      {"RunAtLoad", true},
      {"Disabled", false},
      {"Nice", -5},
      {"Big", std::uint64_t{18446744073709551615u}},
      {"Ratio", 1.5},
      {"Empty", plist_dict{}},
      {"None", plist_array{}},
      {"When", plist_date_from_utc(2020, 1, 2, 3, 4, 5)},
      {"Blob", plist_data{std::string("\0\1hello", 7)}},
      {"Nested", plist_dict{{"Inner", plist_array{plist_dict{{"k", "v"}}}}}},
  };
  auto out = write_plist_xml(v);
  REQUIRE(out);
  CHECK(*out == header +
                    "<dict>\n"
                    "\t<key>Label</key>\n"
                    "\t<string>com.example.job</string>\n"
                    "\t<key>ProgramArguments</key>\n"
                    "\t<array>\n"
                    "\t\t<string>/usr/bin/true</string>\n"
                    "\t\t<string>-x</string>\n"
                    "\t</array>\n"
                    "\t<key>RunAtLoad</key>\n"
                    "\t<true/>\n"
                    "\t<key>Disabled</key>\n"
                    "\t<false/>\n"
                    "\t<key>Nice</key>\n"
                    "\t<integer>-5</integer>\n"
                    "\t<key>Big</key>\n"
                    "\t<integer>18446744073709551615</integer>\n"
                    "\t<key>Ratio</key>\n"
                    "\t<real>1.5</real>\n"
                    "\t<key>Empty</key>\n"
                    "\t<dict/>\n"
                    "\t<key>None</key>\n"
                    "\t<array/>\n"
                    "\t<key>When</key>\n"
                    "\t<date>2020-01-02T03:04:05Z</date>\n"
                    "\t<key>Blob</key>\n"
                    "\t<data>\n"
                    "\tAAFoZWxsbw==\n"
                    "\t</data>\n"
                    "\t<key>Nested</key>\n"
                    "\t<dict>\n"
                    "\t\t<key>Inner</key>\n"
                    "\t\t<array>\n"
                    "\t\t\t<dict>\n"
                    "\t\t\t\t<key>k</key>\n"
                    "\t\t\t\t<string>v</string>\n"
                    "\t\t\t</dict>\n"
                    "\t\t</array>\n"
                    "\t</dict>\n"
                    "</dict>\n"
                    "</plist>\n");
}

TEST_CASE("writer wraps data like plistlib: 76 columns minus the indentation") {
  auto top = write_plist_xml(plist_data{std::string(200, 'x')});
  REQUIRE(top);
  CHECK(*top == header +
                    "<data>\n"
                    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4\n"
                    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4\n"
                    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4\n"
                    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHg=\n"
                    "</data>\n"
                    "</plist>\n");
  auto deep = write_plist_xml(plist_dict{{"a", plist_dict{{"b", plist_dict{{"c", plist_dict{{"d", plist_data{std::string(100, 'y')}}}}}}}}});
  REQUIRE(deep);
  CHECK(deep->find("\t\t\t\t<data>\n"
                   "\t\t\t\teXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5\n"
                   "\t\t\t\teXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5\n"
                   "\t\t\t\teXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5\n"
                   "\t\t\t\teQ==\n"
                   "\t\t\t\t</data>\n") != std::string::npos);
  auto empty = write_plist_xml(plist_data{});
  REQUIRE(empty);
  CHECK(*empty == header + "<data>\n</data>\n</plist>\n");
}

TEST_CASE("reals are written as Python's repr: shortest round-trip digits") {
  const std::pair<double, const char*> table[] = {
      {1.0, "1.0"},         {0.1, "0.1"},       {1e16, "1e+16"},     {1e15, "1000000000000000.0"},
      {1e-05, "1e-05"},     {0.0001, "0.0001"}, {123.456, "123.456"}, {-0.0, "-0.0"},
      {2.5e-300, "2.5e-300"}, {1234567890123456.7, "1234567890123456.8"}, {-2.5, "-2.5"}, {1.0 / 0.0, "inf"},
  };
  for (const auto& row : table) {
    auto out = write_plist_xml(row.first);
    REQUIRE(out);
    CHECK(*out == header + "<real>" + row.second + "</real>\n</plist>\n");
    auto back = read_plist_xml(*out);
    REQUIRE(back);
    CHECK(*back->as_real() == row.first);
  }
}

TEST_CASE("escaping: & < > are escaped, quotes stay literal, CR survives as &#13;, values round-trip") {
  const std::pair<std::string, std::string> table[] = {
      {"com.example.a&b", "com.example.a&amp;b"},
      {"/Applications/<Tom & Jerry>.app", "/Applications/&lt;Tom &amp; Jerry&gt;.app"},
      {"say \"hi\" it's", "say \"hi\" it's"},
      {"]]>", "]]&gt;"},
      {"line1\r\nline2", "line1&#13;\nline2"},
      {"tab\there", "tab\there"},
      {"caf\xc3\xa9 \xe2\x98\x85 \xf0\x9f\x90\xb3", "caf\xc3\xa9 \xe2\x98\x85 \xf0\x9f\x90\xb3"},
  };
  for (const auto& row : table) {
    plist_value v = plist_dict{{row.first, row.first}};
    auto out = write_plist_xml(v);
    REQUIRE(out);
    CHECK(*out == header + "<dict>\n\t<key>" + row.second + "</key>\n\t<string>" + row.second +
                      "</string>\n</dict>\n</plist>\n");
    auto back = read_plist_xml(*out);
    REQUIRE(back);
    CHECK(plist_identical(*back, v));
  }
}

TEST_CASE("characters XML 1.0 cannot carry are refused with the key path, never written") {
  struct row {
    plist_value value;
    std::string path;
    std::string reason_part;
  };
  const row table[] = {
      {plist_dict{{"ProgramArguments", plist_array{"/bin/x", std::string("a\x01" "b")}}}, "ProgramArguments[1]", "U+0001"},
      {plist_dict{{"Label", std::string("nul\0here", 8)}}, "Label", "U+0000"},
      {plist_dict{{"EnvironmentVariables", plist_dict{{"PATH", "\x1b[31m"}}}}, "EnvironmentVariables.PATH", "U+001B"},
      {plist_dict{{"bad\x0bkey", "x"}}, "\"bad\x0bkey\"", "U+000B"},
      {plist_dict{{"Label", "\xef\xbf\xbe"}}, "Label", "U+FFFE"},
      {plist_dict{{"Label", "\xff"}}, "Label", "not valid UTF-8"},
      {plist_dict{{"Label", "\xed\xa0\x80"}}, "Label", "not valid UTF-8"},  // an encoded surrogate
      {plist_dict{{"Label", "\xc0\xaf"}}, "Label", "not valid UTF-8"},      // overlong '/'
      {plist_value(std::string("\x02")), "(root)", "U+0002"},
  };
  for (const auto& r : table) {
    auto out = write_plist_xml(r.value);
    REQUIRE_FALSE(out);
    CHECK(out.error().is(errc::invalid_input));
    CHECK(out.error().path == r.path);
    CHECK(out.error().message().find(r.reason_part) != std::string::npos);
    CHECK(out.error().message().rfind("write plist " + r.path + ": ", 0) == 0);
  }
  auto dup = write_plist_xml(plist_dict{{"Label", "a"}, {"Label", "b"}});
  REQUIRE_FALSE(dup);
  CHECK(dup.error().message() == "write plist Label: duplicate key [a dict holds each key once]");
  auto date = write_plist_xml(plist_date{1e13});
  REQUIRE_FALSE(date);
  CHECK(date.error().reason == "date outside years 1..9999");
}

TEST_CASE("reader accepts what people hand-write") {
  plist_value expected = plist_dict{{"Label", "x"}, {"Args", plist_array{"a", "b"}}, {"On", true}};
  const std::string body_variants[] = {
      // comments between keys, inside arrays, inside a string; <true /> with a space
      "<dict>\n<!-- c --><key>Label</key><!-- c -->\n<string>x</string>\n<key>Args</key>\n<array>\n<!-- <string>gone</string> -->\n"
      "<string>a</string><string>b</string>\n</array>\n<key>On</key>\n<true />\n</dict>\n",
      // CDATA, entities and character references
      "<dict><key>Lab&#101;l</key><string><![CDATA[x]]></string><key>Args</key><array><string>&#x61;</string>"
      "<string>b<!-- split -->"
      "</string></array><key>On</key><true></true></dict>",
      // odd whitespace and 2-space indentation, CRLF
      "  <dict>\r\n    <key>Label</key>\r\n        <string>x</string>\r\n  <key>Args</key>\r\n<array><string>a</string>\r\n"
      "<string>b</string></array>\r\n<key>On</key><true/></dict>\r\n",
  };
  for (const auto& body : body_variants) {
    for (const std::string& prolog :
         {header, std::string("\xEF\xBB\xBF") + header,
          std::string("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE plist PUBLIC \"-//Apple Computer//DTD PLIST 1.0//EN\" "
                      "\"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n<!-- before root -->\n<plist version=\"1.0\">"),
          std::string("<plist>")}) {
      auto v = read_plist_xml(prolog + body + "</plist>");  // no final newline
      INFO(std::string(prolog + body));
      REQUIRE(v);
      CHECK(plist_identical(*v, expected));
    }
  }
  auto bare = read_plist_xml("<dict><key>k</key><integer> 0x1F </integer></dict>\n");
  REQUIRE(bare);
  CHECK(bare->as_dict()->find("k")->as_integer()->as_int64() == 31);
  auto text = read_plist_xml("<plist><string>a\r\nb&#13;c &quot;&apos;&lt;&gt;&amp;</string></plist>");
  REQUIRE(text);
  CHECK(*text->as_string() == "a\nb\rc \"'<>&");
  auto empties = read_plist_xml("<plist><array><string/><dict/><array/><data/><key/></array></plist>");
  REQUIRE_FALSE(empties);  // <key/> outside a dict
  auto empties2 = read_plist_xml("<plist><array><string/><dict/><array/><data/></array></plist>");
  REQUIRE(empties2);
  CHECK(plist_identical(*empties2, plist_array{"", plist_dict{}, plist_array{}, plist_data{}}));
}

TEST_CASE("reader parses integers over the whole int64 and uint64 range, and dates") {
  auto v = read_plist_xml(
      "<plist><array><integer>-9223372036854775808</integer><integer>18446744073709551615</integer>"
      "<integer>+7</integer><date>2001-01-01T00:00:00Z</date><date>1981-05-16T11:32:06Z</date><date>2020Z</date>"
      "<real>+infinity</real><real> 2.5 </real></array></plist>");
  REQUIRE(v);
  const auto& items = v->as_array()->items;
  CHECK(items[0].as_integer()->as_int64() == INT64_MIN);
  CHECK(items[0].as_integer()->to_string() == "-9223372036854775808");
  CHECK(items[1].as_integer()->as_uint64() == UINT64_MAX);
  CHECK_FALSE(items[1].as_integer()->fits_int64());
  CHECK(items[2].as_integer()->as_int64() == 7);
  CHECK(items[3].as_date()->seconds_since_2001 == 0.0);
  CHECK(*plist_date_to_iso(*items[4].as_date()) == "1981-05-16T11:32:06Z");
  CHECK(*plist_date_to_iso(*items[5].as_date()) == "2020-01-01T00:00:00Z");
  CHECK(*items[6].as_real() == 1.0 / 0.0);
  CHECK(*items[7].as_real() == 2.5);
}

TEST_CASE("reader errors name the line and what was wrong") {
  struct row {
    std::string xml;
    std::string reason;
  };
  const row table[] = {
      {"<plist>\n<dict>\n<key>a</key>\n<string>x</string>\n</array>\n</plist>", "line 5: expected </dict>, found </array>"},
      {"<plist>\n<dict>\n<key>a</key><true/>\n<key>a</key><false/>\n</dict></plist>", "line 4: duplicate key \"a\""},
      {"<plist><string>&nbsp;</string></plist>", "line 1: unknown entity &nbsp;"},
      {"<plist><string>&#0;</string></plist>", "line 1: character reference &#0; is not an XML 1.0 character"},
      {"<plist><string>&#x1;</string></plist>", "line 1: character reference &#x1; is not an XML 1.0 character"},
      {"<!DOCTYPE plist [<!ENTITY a \"b\">]>\n<plist/>", "line 1: DOCTYPE with an internal subset is refused (entity definitions)"},
      {"<plist><integer>18446744073709551616</integer></plist>", "line 1: <integer> out of range: 18446744073709551616"},
      {"<plist><integer>-9223372036854775809</integer></plist>", "line 1: <integer> out of range: -9223372036854775809"},
      {"<plist><integer>12abc</integer></plist>", "line 1: <integer> is not a number: \"12abc\""},
      {"<plist><real>one</real></plist>", "line 1: <real> is not a number: \"one\""},
      {"<plist><dict><key>a</key></dict></plist>", "line 1: key \"a\" has no value"},
      {"<plist><dict>text<key>a</key><true/></dict></plist>", "line 1: unexpected text outside a value"},
      {"<plist><dict><string>a</string></dict></plist>", "line 1: expected <key> in <dict>, found <string>"},
      {"<plist><data>!!!!</data></plist>", "line 1: <data> is not base64"},
      {"<plist><date>2020-13-01T00:00:00Z</date></plist>", "line 1: <date> is not YYYY-MM-DDTHH:MM:SSZ: \"2020-13-01T00:00:00Z\""},
      {"<plist><key>a</key></plist>", "line 1: <key> outside a <dict>"},
      {"<plist><true/></plist>\n<plist><true/></plist>", "line 2: content after the end of the plist"},
      {"<plist><string>a</string><string>b</string></plist>", "line 1: expected </plist>, found <string>"},
      {"<plist>\n<dict>\n", "line 3: unexpected end of input"},
      {"<plist><foo/></plist>", "line 1: unknown element <foo>"},
      {"<plist><string>\x01</string></plist>", "line 1: character not allowed in XML 1.0"},
      {"<plist>\n<string>\xff</string></plist>", "line 2: not valid UTF-8"},
      {"<plist><true>x</true></plist>", "line 1: <true> must be empty"},
      {"<plist/>", "line 1: empty <plist/>: no value"},
      {"<plist><!-- never closed <true/></plist>", "line 1: unterminated comment"},
      {"", "line 1: unexpected end of input"},
  };
  for (const auto& r : table) {
    plist_read_options opt;
    opt.source = "/x.plist";
    auto v = read_plist_xml(r.xml, opt);
    INFO(r.xml);
    REQUIRE_FALSE(v);
    CHECK(v.error().is(errc::invalid_input));
    CHECK(v.error().path == "/x.plist");
    CHECK(v.error().reason == r.reason);
  }
  auto utf16 = read_plist_xml(std::string("\xFF\xFE<\0p\0", 6));
  REQUIRE_FALSE(utf16);
  CHECK(utf16.error().reason == "line 1: UTF-16 XML plists are not supported");
}

TEST_CASE("reader refuses nesting deeper than 64 levels and inputs over the size bound") {
  auto nest = [](int levels) {
    std::string s = "<plist>";
    for (int i = 0; i < levels; ++i) s += "<array>";
    for (int i = 0; i < levels; ++i) s += "</array>";
    return s + "</plist>";
  };
  CHECK(read_plist_xml(nest(64)));
  auto deep = read_plist_xml(nest(65));
  REQUIRE_FALSE(deep);
  CHECK(deep.error().reason == "line 1: nested deeper than 64 levels");
  plist_read_options small;
  small.max_bytes = 10;
  auto big = read_plist_xml("<plist><true/></plist>", small);
  REQUIRE_FALSE(big);
  CHECK(big.error().is(errc::too_large));
}

TEST_CASE("every corpus plist parses and writes back exactly as plistlib writes it") {
  auto files = corpus_plists();
  if (files.empty()) {
    HOSTCFG_SKIP("no plist corpus at " + hostcfg_test::corpus_dir());
    return;
  }
  CHECK(files.size() >= 24);
  bool python = have_python_plistlib();
  if (!python) HOSTCFG_SKIP("python3 with plistlib not available: comparing with our reader only");
  std::size_t binary = 0;
  std::vector<std::string> reference;
  if (python) {
    auto all = plistlib_roundtrip_all(files);
    REQUIRE(all.first == 0);
    reference = all.second;
  }
  for (std::size_t i = 0; i < files.size(); ++i) {
    const std::string& f = files[i];
    INFO(f);
    std::string bytes = read_whole_file_or_empty(f);
    auto v = read_plist(bytes);
    REQUIRE(v);
    binary += is_binary_plist(bytes);
    auto w = write_plist_xml(*v);
    REQUIRE(w);
    // Round trip: write(read(write(v))) == write(v).
    auto again = read_plist_xml(*w);
    REQUIRE(again);
    CHECK(plist_identical(*again, *v));
    CHECK(*write_plist_xml(*again) == *w);
    if (!python) continue;
    CHECK(*w == reference[i]);  // byte for byte what plistlib writes
    auto theirs = read_plist_xml(reference[i]);
    REQUIRE(theirs);
    CHECK(plist_equal(*theirs, *v));
    CHECK(plist_diff(*theirs, *v).empty());
  }
  CHECK(binary == 4);
}

TEST_CASE("binary reader: corpus values are decoded with the right types") {
  std::string dir = hostcfg_test::corpus_dir() + "/plists/";
  std::string all_types = read_whole_file_or_empty(dir + "binary-bplist00-rust-plist-all-types.plist");
  if (all_types.empty()) {
    HOSTCFG_SKIP("no plist corpus");
    return;
  }
  auto v = read_plist_binary(all_types);
  REQUIRE(v);
  const plist_dict& d = *v->as_dict();
  CHECK(*d.find("Author")->as_string() == "William Shakespeare");
  CHECK(d.find("BiggestNumber")->as_integer()->as_uint64() == UINT64_MAX);
  CHECK(d.find("SmallestNumber")->as_integer()->as_int64() == INT64_MIN);
  CHECK(*plist_date_to_iso(*d.find("Birthdate")->as_date()) == "1981-05-16T11:32:06Z");
  CHECK(*d.find("IsTrue")->as_bool() == true);
  CHECK(*d.find("IsNotFalse")->as_bool() == false);
  CHECK(d.find("Data")->as_data()->bytes.size() == 15);
  CHECK(d.find("EmptyArray")->as_array()->items.empty());
  CHECK(d.find("EmptyDictionary")->as_dict()->entries.empty());
  CHECK(d.find("Height")->type() == plist_type::real);
  auto utf16 = read_plist_binary(read_whole_file_or_empty(dir + "binary-bplist00-utf16-strings.plist"));
  REQUIRE(utf16);
  CHECK(*utf16->as_dict()->find("name")->as_string() == "\xe2\x98\x85 or better");
}

TEST_CASE("binary plists written by plistlib read back equal to the XML value") {
  if (!have_python_plistlib()) {
    HOSTCFG_SKIP("python3 with plistlib not available");
    return;
  }
  plist_value v = plist_dict{
      {"Label", "com.example.\xe2\x98\x85"},
      {"Neg", -1},
      {"Small", 200},
      {"Mid", 70000},
      {"Big", std::uint64_t{18446744073709551615u}},
      {"Min", std::int64_t{INT64_MIN}},
      {"Real", 0.25},
      {"Date", plist_date_from_utc(2024, 2, 29, 23, 59, 59)},
      {"Data", plist_data{std::string(40, '\0')}},
      {"Many", plist_array{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}},
      {"Nested", plist_dict{{"a", plist_dict{{"b", plist_array{true, false, ""}}}}}},
      {"Long", std::string(300, 'z')},
  };
  std::string xml_path = scratch_dir() + "/in.plist";
  write_whole_file(xml_path, *write_plist_xml(v));
  auto bin = plistlib_roundtrip(xml_path, "FMT_BINARY");
  REQUIRE(bin.first == 0);
  REQUIRE(is_binary_plist(bin.second));
  auto back = read_plist(bin.second);
  REQUIRE(back);
  CHECK(plist_equal(*back, v));
  CHECK(plist_identical(*back, v));
}

namespace {
// A binary plist from raw object bytes: header, objects, offset table (1-byte offsets) and trailer.
std::string make_bplist(const std::vector<std::string>& objects, std::size_t top = 0, unsigned ref_size = 1) {
  std::string out = "bplist00";
  std::vector<std::size_t> offsets;
  for (const auto& o : objects) {
    offsets.push_back(out.size());
    out += o;
  }
  std::size_t table = out.size();
  for (auto off : offsets) out += static_cast<char>(off);
  std::string trailer(32, '\0');
  trailer[6] = 1;
  trailer[7] = static_cast<char>(ref_size);
  trailer[15] = static_cast<char>(objects.size());
  trailer[23] = static_cast<char>(top);
  trailer[31] = static_cast<char>(table);
  return out + trailer;
}
}  // namespace

TEST_CASE("binary reader refuses malformed files with a reason") {
  struct row {
    std::string bytes;
    std::string reason;
  };
  std::string good = make_bplist({std::string("\xA1\x01", 2), "\x09"});
  REQUIRE(read_plist_binary(good));
  CHECK(plist_identical(*read_plist_binary(good), plist_array{true}));
  std::string bad_offset_size = good;
  bad_offset_size[bad_offset_size.size() - 26] = 9;
  std::string bad_table = good;
  bad_table[bad_table.size() - 1] = static_cast<char>(200);
  const row table[] = {
      {"bplist00", "too short for a binary plist"},
      {bad_offset_size, "offset size 9 is not 1..8"},
      {bad_table, "offset table outside the file"},
      {make_bplist({std::string("\xA1\x00", 2)}), "object 0 refers to itself (cycle)"},
      {make_bplist({std::string("\xA1\x01", 2), std::string("\xA1\x00", 2)}), "object 0 refers to itself (cycle)"},
      {make_bplist({std::string("\xA1\x05", 2)}), "reference 5 out of range"},
      {make_bplist({std::string("\xA3\x01", 2)}), "references run past the object area"},
      {make_bplist({"\x80\x01"}), "UID objects (NSKeyedArchiver archives) are not plist values"},
      {make_bplist({std::string("\xC0", 1)}), "set objects are not plist values"},
      {make_bplist({std::string("\x00", 1)}), "null/fill objects are not plist values"},
      {make_bplist({std::string("\x14\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00", 17)}), "128-bit integer outside the 64-bit range"},
      {make_bplist({"\x15"}), "integer of 2^5 bytes"},
      {make_bplist({"\x13\x01"}), "truncated integer"},
      {make_bplist({"\x5F\x10\x7F" "abc"}), "string or data runs past the object area"},
      {make_bplist({"\x52\xC3\xA9"}), "ASCII string object holds a non-ASCII byte"},
      {make_bplist({std::string("\x61\xD8\x00", 3)}), "UTF-16 string ends inside a surrogate pair"},
      {make_bplist({std::string("\x61\xDC\x00", 3)}), "UTF-16 string has an unpaired surrogate"},
      {make_bplist({std::string("\xD1\x01\x01", 3), "\x09"}), "dict key is a bool, not a string"},
      {make_bplist({std::string("\xD2\x01\x01\x02\x02", 5), "\x51k", "\x09"}), "duplicate key \"k\""},
      {make_bplist({"\x09"}, 3), "top object 3 out of range"},
      {make_bplist({"\xE0"}), "unknown object marker 0xe0"},
  };
  for (const auto& r : table) {
    auto v = read_plist_binary(r.bytes);
    INFO(r.reason);
    REQUIRE_FALSE(v);
    CHECK(v.error().is(errc::invalid_input));
    CHECK(v.error().reason == r.reason);
  }
}

TEST_CASE("binary reader bounds a small file that shares objects into a huge tree") {
  // Object i (i < 40) is an array holding object i+1 twice: 2^40 leaves if copied naively.
  std::vector<std::string> objects;
  for (int i = 0; i < 40; ++i) objects.push_back(std::string("\xA2", 1) + static_cast<char>(i + 1) + static_cast<char>(i + 1));
  objects.push_back("\x09");
  plist_read_options opt;
  opt.max_nodes = 100000;  // the default (2^20) works the same, only slower
  auto v = read_plist_binary(make_bplist(objects), opt);
  REQUIRE_FALSE(v);
  // Depth 41 is allowed, so the node budget is what stops it.
  CHECK(v.error().is(errc::too_large));
  CHECK(plist_read_options{}.max_nodes == (1u << 20));
  // Shared objects within the budget are fine (the DarwinDirectory corpus file shares strings).
  std::vector<std::string> small;
  for (int i = 0; i < 5; ++i) small.push_back(std::string("\xA2", 1) + static_cast<char>(i + 1) + static_cast<char>(i + 1));
  small.push_back("\x09");
  auto ok = read_plist_binary(make_bplist(small));
  REQUIRE(ok);
  CHECK(ok->as_array()->items.size() == 2);
}

TEST_CASE("semantic compare: key order, whitespace, comments and XML vs binary do not matter; types do") {
  auto a = read_plist_xml(header + "<dict><key>A</key><integer>1</integer><key>B</key><string>x</string></dict></plist>");
  auto b = read_plist_xml("<plist>\n  <dict>\n  <!-- c -->\n    <key>B</key> <string>x</string>\n    <key>A</key>\n <integer>1</integer>\n  </dict>\n</plist>");
  REQUIRE(a);
  REQUIRE(b);
  CHECK(plist_equal(*a, *b));
  CHECK_FALSE(plist_identical(*a, *b));  // key order differs
  const plist_value one_int = 1, one_true = true, one_string = "1", one_real = 1.0;
  CHECK_FALSE(plist_equal(one_int, one_true));
  CHECK_FALSE(plist_equal(one_int, one_string));
  CHECK_FALSE(plist_equal(one_true, one_string));
  CHECK_FALSE(plist_equal(one_int, one_real));
  CHECK_FALSE(plist_equal(plist_value(plist_data{"x"}), plist_value("x")));
  CHECK(plist_equal(plist_value(0.0 / 0.0), plist_value(0.0 / 0.0)));
  CHECK_FALSE(plist_equal(plist_array{1, 2}, plist_array{2, 1}));
  CHECK(plist_equal(plist_value(std::uint64_t{5}), plist_value(std::int64_t{5})));
  CHECK_FALSE(plist_equal(plist_value(std::uint64_t{UINT64_MAX}), plist_value(std::int64_t{-1})));
  // XML vs binary: a corpus binary file against its XML rewrite.
  std::string bin = read_whole_file_or_empty(hostcfg_test::corpus_dir() + "/plists/binary-bplist00-apple-DarwinDirectory.configuration.macos.plist");
  if (!bin.empty()) {
    auto from_bin = read_plist(bin);
    REQUIRE(from_bin);
    auto from_xml = read_plist(*write_plist_xml(*from_bin));
    REQUIRE(from_xml);
    CHECK(plist_equal(*from_bin, *from_xml));
  }
}

TEST_CASE("diff lists added, removed and changed key paths") {
  plist_value installed = vmnetd_job();
  plist_value desired = vmnetd_job();
  plist_dict& d = *desired.as_dict();
  d.erase("Sockets");
  d.set("KeepAlive", plist_dict{{"SuccessfulExit", false}});
  d.find("ProgramArguments")->as_array()->items.push_back("--debug");
  d.find("ProgramArguments")->as_array()->items[0] = "/opt/x";
  d.set("RunAtLoad", 1);
  d.set("EnvironmentVariables", plist_dict{});
  CHECK(plist_diff(installed, desired) == std::vector<std::string>{
                                              "- Sockets",
                                              "~ ProgramArguments[0]: \"/Library/PrivilegedHelperTools/com.docker.vmnetd\" -> \"/opt/x\"",
                                              "+ ProgramArguments[1]",
                                              "~ RunAtLoad: true -> 1",
                                              "~ KeepAlive: false -> {1 keys}",
                                              "+ EnvironmentVariables",
                                          });
  CHECK(plist_diff(installed, vmnetd_job()).empty());
  plist_value paths_a = plist_dict{{"KeepAlive", plist_dict{{"PathState", plist_dict{{"/etc/rc.local", true}}}}}};
  plist_value paths_b = plist_dict{{"KeepAlive", plist_dict{{"PathState", plist_dict{{"/etc/rc.local", false}}}}}};
  CHECK(plist_diff(paths_a, paths_b) ==
        std::vector<std::string>{"~ KeepAlive.PathState.\"/etc/rc.local\": true -> false"});
  CHECK(plist_diff(plist_value("a\"b\n"), plist_value(plist_data{"xy"})) ==
        std::vector<std::string>{"~ (root): \"a\\\"b\\n\" -> <2 bytes of data>"});
}

TEST_CASE("plistlib loads every file the writer produces, with the same values") {
  if (!have_python_plistlib()) {
    HOSTCFG_SKIP("python3 with plistlib not available");
    return;
  }
  struct row {
    plist_value value;
    bool same_xml_bytes;  // false where plistlib's own writer normalizes CR to LF
  };
  const row table[] = {
      {vmnetd_job(), true},
      {plist_dict{{"Label", "a&b<c>\"d'e"}, {"ProgramArguments", plist_array{"/Applications/Tom & Jerry.app/x", "]]>"}}}, true},
      {plist_dict{{"cr", "cr\rlf\r\n"}}, false},
      {plist_dict{{"caf\xc3\xa9", "\xf0\x9f\x90\xb3 \xe2\x98\x85"}, {"tab", "\t"}}, true},
      {plist_array{std::int64_t{INT64_MIN}, std::uint64_t{UINT64_MAX}, 0, -1, 0.1, -2.5e-300, 1e300, true, false}, true},
      {plist_dict{{"d", plist_date_from_utc(1, 1, 1, 0, 0, 0)}, {"e", plist_date_from_utc(9999, 12, 31, 23, 59, 59)},
                  {"blob", plist_data{std::string("\0\xff\x01", 3)}}, {"big", plist_data{std::string(1000, '\x7f')}}},
       true},
      {plist_dict{}, true},
      {plist_array{}, true},
      {plist_value(""), true},
  };
  std::vector<std::string> paths, written;
  for (const auto& r : table) {
    auto w = write_plist_xml(r.value);
    REQUIRE(w);
    paths.push_back(scratch_dir() + "/out" + std::to_string(paths.size()) + ".plist");
    write_whole_file(paths.back(), *w);
    written.push_back(*w);
  }
  auto xml = plistlib_roundtrip_all(paths);
  REQUIRE(xml.first == 0);
  // The exact values plistlib loaded, through its binary writer (which keeps CR).
  auto bin = plistlib_roundtrip_all(paths, "FMT_BINARY");
  REQUIRE(bin.first == 0);
  for (std::size_t i = 0; i < paths.size(); ++i) {
    INFO(written[i]);
    if (table[i].same_xml_bytes) CHECK(xml.second[i] == written[i]);
    auto theirs = read_plist(bin.second[i]);
    REQUIRE(theirs);
    CHECK(plist_identical(*theirs, table[i].value));
  }
}

TEST_CASE("dates convert between calendar time and seconds since 2001") {
  CHECK(plist_date_from_utc(2001, 1, 1, 0, 0, 0).seconds_since_2001 == 0.0);
  CHECK(plist_date_from_utc(2000, 12, 31, 23, 59, 59).seconds_since_2001 == -1.0);
  CHECK(plist_date_from_utc(1970, 1, 1, 0, 0, 0).seconds_since_2001 == -978307200.0);
  CHECK(*plist_date_to_iso(plist_date{-0.5}) == "2000-12-31T23:59:59Z");  // floor, not truncation
  CHECK(*plist_date_to_iso(plist_date{86400.9}) == "2001-01-02T00:00:00Z");
  CHECK(*plist_date_to_iso(plist_date_from_utc(1, 1, 1, 0, 0, 0)) == "0001-01-01T00:00:00Z");
  CHECK_FALSE(plist_date_to_iso(plist_date{0.0 / 0.0}));
}
