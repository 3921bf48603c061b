// Fuzzes the shell-profile block codec: for any file bytes and directory, apply then revert gives
// the original bytes back, a second apply changes nothing, probe then says "current", and the PATH
// model never crashes. Input: byte 0 picks the dialect, bytes up to the first 0xff byte are the
// directory name (under a fixed home), the rest is the file.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "hostcfg/format/shell_profile.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hostcfg;
  if (size < 1) return 0;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto dialect = static_cast<shell_dialect>(static_cast<unsigned char>(in[0]) % 4);
  in.remove_prefix(1);
  std::size_t sep = in.find('\xff');
  std::string name(in.substr(0, sep == std::string_view::npos ? 0 : sep));
  std::string_view bytes = sep == std::string_view::npos ? in : in.substr(sep + 1);
  path_block_spec spec{"com.example.app", "/home/u/" + (name.empty() ? std::string("bin") : name), "/home/u",
                       dialect, std::nullopt};
  (void)model_path(bytes, dialect, spec.dir, spec.home);
  (void)find_foreign_blocks(bytes, spec_markers(spec));
  auto probe = probe_profile(bytes, spec);
  auto edit = apply_profile_block(bytes, spec);
  if (!edit) return 0;
  if (!probe) std::abort();  // apply succeeded on bytes probe refused
  auto again = apply_profile_block(edit->bytes, spec);
  if (!again || again->changed() || again->bytes != edit->bytes) std::abort();
  auto after = probe_profile(edit->bytes, spec);
  if (!after || after->state != profile_state::current) std::abort();
  auto back = revert_profile_block(edit->bytes, edit->record, spec_markers(spec));
  if (!back) std::abort();
  if (edit->changed() && (!back->removed || (edit->record.kind != profile_edit_record::kind_t::unchanged &&
                                             back->bytes != bytes)))
    std::abort();
  return 0;
}
