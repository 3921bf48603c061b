// Fuzzes both plist readers (XML and bplist00) and the writer: nothing read may crash, hang or
// exceed its bounds, and whatever is read and written must read back to the same value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "hostcfg/format/plist.hpp"
#include "hostcfg/format/plist_binary.hpp"
#include "hostcfg/format/plist_xml.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  hostcfg::plist_read_options opt;
  opt.max_nodes = 1u << 16;  // keeps shared-object expansion fast under the fuzzer
  // Each reader on every input, whatever its first bytes say.
  for (int which = 0; which < 2; ++which) {
    auto v = which == 0 ? hostcfg::read_plist_xml(bytes, opt) : hostcfg::read_plist_binary(bytes, opt);
    if (!v) continue;
    auto written = hostcfg::write_plist_xml(*v);
    if (!written) continue;  // e.g. a binary string holding U+0001: refused, never written
    auto back = hostcfg::read_plist_xml(*written);
    if (!back || !hostcfg::plist_identical(*back, *v)) {
      // Dates keep only whole seconds in XML; everything else must survive exactly.
      auto again = back ? hostcfg::write_plist_xml(*back) : decltype(written){};
      if (!again || *again != *written) std::abort();
    }
  }
  return 0;
}
