#pragma once
/// @file
/// Binary property lists (`bplist00`, which launchd accepts and `plutil -convert binary1` writes):
/// a bounds-checked reader, and `read_plist`, which detects XML vs binary.
///
/// Layout: "bplist00", objects, an offset table, and a 32-byte trailer (offset size, reference
/// size, object count, top object, offset-table offset). Every offset, length and reference is
/// checked against the file; reference cycles are refused; objects shared by several parents are
/// copied, bounded by `plist_read_options::max_nodes` so a small file cannot describe a huge tree.
/// Supported: bool, int (1/2/4/8/16 bytes), real (4/8), date, data, ASCII and UTF-16 strings
/// (converted to UTF-8), array, dict. Refused with a reason: null/fill, UID (NSKeyedArchiver
/// archives), set, UTF-8 string objects of later formats.

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "hostcfg/error.hpp"
#include "hostcfg/format/plist.hpp"
#include "hostcfg/format/plist_xml.hpp"

HOSTCFG_BEGIN_NAMESPACE

/// True when `bytes` start like a binary plist.
inline bool is_binary_plist(std::string_view bytes) { return bytes.substr(0, 8) == "bplist00"; }

namespace detail {

class plist_binary_reader {
 public:
  plist_binary_reader(std::string_view in, const plist_read_options& opt) : in_(in), opt_(opt) {}

  result<plist_value> run() {
    if (in_.size() > opt_.max_bytes)
      return fail(errc::too_large, "parse binary plist", opt_.source,
                  "larger than " + std::to_string(opt_.max_bytes) + " bytes");
    if (!is_binary_plist(in_)) return err("missing the bplist00 header");
    if (in_.size() < 8 + 1 + 32) return err("too short for a binary plist");
    std::size_t trailer = in_.size() - 32;
    offset_size_ = byte(trailer + 6);
    ref_size_ = byte(trailer + 7);
    std::uint64_t count = be(trailer + 8, 8);
    std::uint64_t top = be(trailer + 16, 8);
    std::uint64_t table = be(trailer + 24, 8);
    if (offset_size_ < 1 || offset_size_ > 8) return err("offset size " + std::to_string(offset_size_) + " is not 1..8");
    if (ref_size_ < 1 || ref_size_ > 8) return err("reference size " + std::to_string(ref_size_) + " is not 1..8");
    if (count == 0) return err("no objects");
    if (top >= count) return err("top object " + std::to_string(top) + " out of range");
    if (table < 8 || table > trailer) return err("offset table outside the file");
    if (count > (trailer - table) / offset_size_) return err("offset table runs into the trailer");
    table_ = static_cast<std::size_t>(table);
    count_ = static_cast<std::size_t>(count);
    state_.assign(count_, 0);
    return read_object(top, 1);
  }

 private:
  tl::unexpected<error> err(const std::string& what) const {
    return fail(errc::invalid_input, "parse binary plist", opt_.source, what);
  }
  unsigned byte(std::size_t p) const { return static_cast<unsigned char>(in_[p]); }
  // Big-endian unsigned of `n` (1..8) bytes at `p`; the caller has bounds-checked.
  std::uint64_t be(std::size_t p, std::size_t n) const {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v = (v << 8) | byte(p + i);
    return v;
  }
  // Objects live between the header and the offset table.
  bool fits(std::size_t p, std::uint64_t n) const { return p <= table_ && n <= table_ - p; }

  result<std::size_t> offset_of(std::size_t ref) const {
    std::uint64_t off = be(table_ + ref * offset_size_, offset_size_);
    if (off < 8 || off >= table_) return err("object " + std::to_string(ref) + " has offset " + std::to_string(off) + " outside the object area");
    return static_cast<std::size_t>(off);
  }

  // The count in a marker's low nibble, or (0xF) the int object that follows it. Advances `p`.
  result<std::uint64_t> length(unsigned marker, std::size_t& p) const {
    unsigned low = marker & 0xF;
    if (low != 0xF) return low;
    if (!fits(p, 1)) return err("truncated length");
    unsigned m = byte(p);
    if ((m & 0xF0) != 0x10 || (m & 0xF) > 3) return err("malformed length marker");
    std::size_t n = std::size_t{1} << (m & 0xF);
    if (!fits(p + 1, n)) return err("truncated length");
    std::uint64_t v = be(p + 1, n);
    p += 1 + n;
    return v;
  }

  bool charge(std::uint64_t n) {
    if (n > opt_.max_nodes || nodes_ + n > opt_.max_nodes) return false;
    nodes_ += static_cast<std::size_t>(n);
    return true;
  }
  tl::unexpected<error> too_many() const {
    return fail(errc::too_large, "parse binary plist", opt_.source, "more values than the bound allows",
                "shared objects expand to more than " + std::to_string(opt_.max_nodes) + " values");
  }

  result<plist_value> read_object(std::uint64_t ref64, std::size_t depth) {
    if (ref64 >= count_) return err("reference " + std::to_string(ref64) + " out of range");
    auto ref = static_cast<std::size_t>(ref64);
    if (ref >= count_) return err("reference " + std::to_string(ref) + " out of range");
    if (state_[ref]) return err("object " + std::to_string(ref) + " refers to itself (cycle)");
    if (!charge(1)) return too_many();
    auto off = offset_of(ref);
    if (!off) return tl::unexpected(off.error());
    std::size_t p = *off;
    unsigned marker = byte(p++);
    unsigned high = marker >> 4;
    switch (high) {
      case 0x0:
        if (marker == 0x08) return plist_value(false);
        if (marker == 0x09) return plist_value(true);
        return err("null/fill objects are not plist values");
      case 0x1: {
        unsigned lg = marker & 0xF;
        if (lg > 4) return err("integer of 2^" + std::to_string(lg) + " bytes");
        std::size_t n = std::size_t{1} << lg;
        if (!fits(p, n)) return err("truncated integer");
        if (n < 8) return plist_value(plist_integer::from_unsigned(be(p, n)));
        if (n == 8) return plist_value(plist_integer::from_signed(static_cast<std::int64_t>(be(p, 8))));
        // 16 bytes: what Apple writes for uint64 above INT64_MAX (high half zero) and, from
        // some writers, sign-extended negatives.
        std::uint64_t hi = be(p, 8), lo = be(p + 8, 8);
        if (hi == 0) return plist_value(plist_integer::from_unsigned(lo));
        if (hi == ~std::uint64_t{0} && (lo >> 63))
          return plist_value(plist_integer::from_signed(static_cast<std::int64_t>(lo)));
        return err("128-bit integer outside the 64-bit range");
      }
      case 0x2: {
        unsigned lg = marker & 0xF;
        if (lg != 2 && lg != 3) return err("real of 2^" + std::to_string(lg) + " bytes");
        std::size_t n = std::size_t{1} << lg;
        if (!fits(p, n)) return err("truncated real");
        std::uint64_t bits = be(p, n);
        if (n == 4) {
          auto b32 = static_cast<std::uint32_t>(bits);
          float f;
          std::memcpy(&f, &b32, 4);
          return plist_value(static_cast<double>(f));
        }
        double d;
        std::memcpy(&d, &bits, 8);
        return plist_value(d);
      }
      case 0x3: {
        if (marker != 0x33) return err("malformed date marker");
        if (!fits(p, 8)) return err("truncated date");
        std::uint64_t bits = be(p, 8);
        double d;
        std::memcpy(&d, &bits, 8);
        return plist_value(plist_date{d});
      }
      case 0x4:
      case 0x5:
      case 0x6: {
        auto n = length(marker, p);
        if (!n) return tl::unexpected(n.error());
        std::uint64_t units = *n;
        std::uint64_t size = high == 0x6 ? units * 2 : units;
        if (units > table_ || !fits(p, size)) return err("string or data runs past the object area");
        if (!charge(size)) return too_many();
        std::string_view raw = in_.substr(p, static_cast<std::size_t>(size));
        if (high == 0x4) return plist_value(plist_data{std::string(raw)});
        if (high == 0x5) {
          for (char c : raw)
            if (static_cast<unsigned char>(c) > 0x7F) return err("ASCII string object holds a non-ASCII byte");
          return plist_value(std::string(raw));
        }
        return utf16(raw);
      }
      case 0x7: return err("UTF-8 string objects are not part of bplist00");
      case 0x8: return err("UID objects (NSKeyedArchiver archives) are not plist values");
      case 0xA:
      case 0xD: {
        if (depth > opt_.max_depth) return err("nested deeper than " + std::to_string(opt_.max_depth) + " levels");
        auto n = length(marker, p);
        if (!n) return tl::unexpected(n.error());
        std::uint64_t refs = high == 0xD ? *n * 2 : *n;
        if (*n > table_ || !fits(p, refs * ref_size_)) return err("references run past the object area");
        state_[ref] = 1;
        auto done = [&](result<plist_value> r) {
          state_[ref] = 0;
          return r;
        };
        if (high == 0xA) {
          plist_array arr;
          arr.items.reserve(static_cast<std::size_t>(*n));
          for (std::uint64_t i = 0; i < *n; ++i) {
            auto v = read_object(be(p + i * ref_size_, ref_size_), depth + 1);
            if (!v) return done(v);
            arr.items.push_back(std::move(*v));
          }
          return done(plist_value(std::move(arr)));
        }
        plist_dict dict;
        dict.entries.reserve(static_cast<std::size_t>(*n));
        for (std::uint64_t i = 0; i < *n; ++i) {
          std::uint64_t kref = be(p + i * ref_size_, ref_size_);
          std::uint64_t vref = be(p + (*n + i) * ref_size_, ref_size_);
          auto k = read_object(kref, depth + 1);
          if (!k) return done(k);
          if (!k->as_string()) return done(err("dict key is a " + std::string(plist_type_name(k->type())) + ", not a string"));
          if (dict.find(*k->as_string())) return done(err("duplicate key \"" + *k->as_string() + "\""));
          auto v = read_object(vref, depth + 1);
          if (!v) return done(v);
          dict.entries.push_back(plist_entry{*k->as_string(), std::move(*v)});
        }
        return done(plist_value(std::move(dict)));
      }
      case 0xC: return err("set objects are not plist values");
      default: return err("unknown object marker 0x" + hex(marker));
    }
  }

  static std::string hex(unsigned v) {
    const char* digits = "0123456789abcdef";
    return std::string{digits[(v >> 4) & 0xF], digits[v & 0xF]};
  }

  result<plist_value> utf16(std::string_view raw) const {
    std::string out;
    out.reserve(raw.size());
    for (std::size_t i = 0; i + 1 < raw.size(); i += 2) {
      long u = static_cast<long>((static_cast<unsigned char>(raw[i]) << 8) | static_cast<unsigned char>(raw[i + 1]));
      if (u >= 0xD800 && u <= 0xDBFF) {
        if (i + 3 >= raw.size()) return err("UTF-16 string ends inside a surrogate pair");
        long lo = static_cast<long>((static_cast<unsigned char>(raw[i + 2]) << 8) | static_cast<unsigned char>(raw[i + 3]));
        if (lo < 0xDC00 || lo > 0xDFFF) return err("UTF-16 string has an unpaired surrogate");
        u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
        i += 2;
      } else if (u >= 0xDC00 && u <= 0xDFFF) {
        return err("UTF-16 string has an unpaired surrogate");
      }
      plist_append_utf8(out, u);
    }
    return plist_value(std::move(out));
  }

  std::string_view in_;
  const plist_read_options& opt_;
  std::size_t offset_size_ = 0, ref_size_ = 0, table_ = 0, count_ = 0, nodes_ = 0;
  std::vector<unsigned char> state_;  // 1 while an array/dict is being read: a reference back is a cycle
};

}  // namespace detail

/// Reads a `bplist00` binary plist. Errors are `errc::invalid_input` with what was wrong, or
/// `errc::too_large`.
inline result<plist_value> read_plist_binary(std::string_view bytes, const plist_read_options& options = {}) {
  return detail::plist_binary_reader(bytes, options).run();
}

/// Reads a plist in either form (binary when it starts with "bplist00", XML otherwise): what
/// probe uses on an installed job, which may have been converted by `plutil`.
inline result<plist_value> read_plist(std::string_view bytes, const plist_read_options& options = {}) {
  return is_binary_plist(bytes) ? read_plist_binary(bytes, options) : read_plist_xml(bytes, options);
}

HOSTCFG_END_NAMESPACE
