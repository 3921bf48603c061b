// libFuzzer target for the helper's request decoder: whatever the bytes, decoding never crashes,
// never reads past the input, never accepts a payload over its cap, and every accepted request
// re-encodes to exactly the bytes of its frame.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "hostcfg/helper/protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hostcfg::helper;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  // Walk the input as a stream of frames, as the server does on one connection.
  while (!rest.empty()) {
    auto frame = decode_frame(rest);
    if (!frame || !*frame) break;
    const frame_view& f = **frame;
    if (f.size > rest.size() || f.payload.size() > max_payload || f.size != header_size + f.payload.size()) std::abort();
    if (auto req = decode_request(f)) {
      if (encode_request(*req) != rest.substr(0, f.size)) std::abort();
      if (req->type == frame_type::bind && req->bind.port == 0) std::abort();
      (void)endpoint_text(req->bind);
    }
    if (auto rep = decode_reply(f)) {
      if (encode_reply(*rep) != rest.substr(0, f.size)) std::abort();
    }
    rest.remove_prefix(f.size);
  }
  return 0;
}
