#pragma once
/// @file
/// The property-list value model shared by the XML and binary codecs: dict (keys kept in the
/// order given), array, string, integer (the whole int64 and uint64 range, as binary plists
/// allow), real, bool, date and data. Equality is type-exact: `<integer>1</integer>`, `<true/>`
/// and `<string>1</string>` are three different values. `plist_equal` ignores dict key order
/// (what launchd sees); `plist_diff` lists the differences by key path for people.
///
///     plist_value job = plist_dict{{"Label", "com.docker.vmnetd"}, {"RunAtLoad", true}};
///     job.as_dict()->set("ProgramArguments", plist_array{"/Library/PrivilegedHelperTools/x"});

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "hostcfg/error.hpp"

HOSTCFG_BEGIN_NAMESPACE

class plist_value;

/// The type of a plist value, in the order of the variant below.
enum class plist_type { string, integer, real, boolean, date, data, array, dict };

/// Readable name of a type ("string", "integer", ...), as the XML element that carries it.
inline const char* plist_type_name(plist_type t) {
  switch (t) {
    case plist_type::string: return "string";
    case plist_type::integer: return "integer";
    case plist_type::real: return "real";
    case plist_type::boolean: return "bool";
    case plist_type::date: return "date";
    case plist_type::data: return "data";
    case plist_type::array: return "array";
    case plist_type::dict: return "dict";
  }
  return "unknown";
}

/// An integer in [-2^63, 2^64 - 1]: binary plists carry unsigned 64-bit values above INT64_MAX
/// (as 16-byte integers), so int64 alone would lose them.
class plist_integer {
 public:
  plist_integer() = default;
  /// Any signed value.
  static plist_integer from_signed(std::int64_t v) {
    plist_integer out;
    out.negative_ = v < 0;
    out.bits_ = static_cast<std::uint64_t>(v);
    return out;
  }
  /// Any unsigned value.
  static plist_integer from_unsigned(std::uint64_t v) {
    plist_integer out;
    out.bits_ = v;
    return out;
  }
  /// True when the value is below zero.
  bool negative() const { return negative_; }
  /// True when `as_int64()` holds the exact value.
  bool fits_int64() const { return negative_ || bits_ <= static_cast<std::uint64_t>(INT64_MAX); }
  /// The value as int64 (meaningful when `fits_int64()`).
  std::int64_t as_int64() const { return static_cast<std::int64_t>(bits_); }
  /// The value as uint64 (meaningful when `!negative()`).
  std::uint64_t as_uint64() const { return bits_; }
  /// Decimal text, as `<integer>` carries it.
  std::string to_string() const {
    return negative_ ? std::to_string(static_cast<std::int64_t>(bits_)) : std::to_string(bits_);
  }
  friend bool operator==(const plist_integer& a, const plist_integer& b) {
    return a.negative_ == b.negative_ && a.bits_ == b.bits_;
  }
  friend bool operator!=(const plist_integer& a, const plist_integer& b) { return !(a == b); }

 private:
  bool negative_ = false;
  std::uint64_t bits_ = 0;  // two's complement when negative
};

/// A point in time: seconds since 2001-01-01T00:00:00Z (Apple's reference date), as binary plists
/// store it. XML carries whole seconds only.
struct plist_date {
  double seconds_since_2001 = 0;
  friend bool operator==(const plist_date& a, const plist_date& b) {
    return a.seconds_since_2001 == b.seconds_since_2001;
  }
  friend bool operator!=(const plist_date& a, const plist_date& b) { return !(a == b); }
};

/// Raw bytes (`<data>`), a distinct type from a string.
struct plist_data {
  std::string bytes;
  friend bool operator==(const plist_data& a, const plist_data& b) { return a.bytes == b.bytes; }
  friend bool operator!=(const plist_data& a, const plist_data& b) { return !(a == b); }
};

/// An ordered list of values. Member functions that need `plist_value` complete are defined below it.
class plist_array {
 public:
  plist_array();
  plist_array(std::initializer_list<plist_value> items);
  // Special members are defined below, where plist_value is complete (C++20's constexpr vector
  // instantiates them eagerly otherwise).
  plist_array(const plist_array&);
  plist_array(plist_array&&) noexcept;
  plist_array& operator=(const plist_array&);
  plist_array& operator=(plist_array&&) noexcept;
  ~plist_array();
  std::vector<plist_value> items;  ///< the elements, in order
};

struct plist_entry;

/// A dictionary whose keys keep the order they were given (the writer emits them in that order).
/// Keys are unique: `set` replaces, the readers refuse duplicates.
class plist_dict {
 public:
  plist_dict();
  plist_dict(std::initializer_list<plist_entry> entries);
  plist_dict(const plist_dict&);
  plist_dict(plist_dict&&) noexcept;
  plist_dict& operator=(const plist_dict&);
  plist_dict& operator=(plist_dict&&) noexcept;
  ~plist_dict();
  /// The value under `key`, or nullptr.
  const plist_value* find(std::string_view key) const;
  plist_value* find(std::string_view key);
  /// Sets `key` to `value`: replaced in place when present, appended otherwise.
  void set(std::string key, plist_value value);
  /// Removes `key`; true when it was there.
  bool erase(std::string_view key);
  std::vector<plist_entry> entries;  ///< (key, value) pairs in order
};

/// Any plist value. Cheap to build from C++ literals: strings, integers (signed or unsigned),
/// doubles, bools, `plist_date`, `plist_data`, `plist_array`, `plist_dict`.
class plist_value {
 public:
  using storage = std::variant<std::string, plist_integer, double, bool, plist_date, plist_data, plist_array, plist_dict>;

  /// An empty string; the constructors below take each C++ form of a value implicitly.
  plist_value() : v_(std::string()) {}
  plist_value(std::string s) : v_(std::move(s)) {}
  plist_value(const char* s) : v_(std::string(s)) {}
  plist_value(std::string_view s) : v_(std::string(s)) {}
  plist_value(plist_integer i) : v_(i) {}
  /// Any integral type except bool and char becomes an integer.
  template <class I, std::enable_if_t<std::is_integral<I>::value && !std::is_same<I, bool>::value &&
                                          !std::is_same<I, char>::value,
                                      int> = 0>
  plist_value(I i)
      : v_(std::is_signed<I>::value ? plist_integer::from_signed(static_cast<std::int64_t>(i))
                                    : plist_integer::from_unsigned(static_cast<std::uint64_t>(i))) {}
  plist_value(double d) : v_(d) {}
  plist_value(bool b) : v_(b) {}
  plist_value(plist_date d) : v_(d) {}
  plist_value(plist_data d) : v_(std::move(d)) {}
  plist_value(plist_array a) : v_(std::move(a)) {}
  plist_value(plist_dict d) : v_(std::move(d)) {}

  /// Which type this value holds.
  plist_type type() const { return static_cast<plist_type>(v_.index()); }
  /// Typed access: nullptr when the value is of another type.
  const std::string* as_string() const { return std::get_if<std::string>(&v_); }
  const plist_integer* as_integer() const { return std::get_if<plist_integer>(&v_); }
  const double* as_real() const { return std::get_if<double>(&v_); }
  const bool* as_bool() const { return std::get_if<bool>(&v_); }
  const plist_date* as_date() const { return std::get_if<plist_date>(&v_); }
  const plist_data* as_data() const { return std::get_if<plist_data>(&v_); }
  const plist_array* as_array() const { return std::get_if<plist_array>(&v_); }
  plist_array* as_array() { return std::get_if<plist_array>(&v_); }
  const plist_dict* as_dict() const { return std::get_if<plist_dict>(&v_); }
  plist_dict* as_dict() { return std::get_if<plist_dict>(&v_); }
  /// The underlying variant.
  const storage& get() const { return v_; }

 private:
  storage v_;
};

/// One dict entry.
struct plist_entry {
  std::string key;
  plist_value value;
};

inline plist_array::plist_array() = default;
inline plist_array::plist_array(const plist_array&) = default;
inline plist_array::plist_array(plist_array&&) noexcept = default;
inline plist_array& plist_array::operator=(const plist_array&) = default;
inline plist_array& plist_array::operator=(plist_array&&) noexcept = default;
inline plist_array::~plist_array() = default;
inline plist_dict::plist_dict() = default;
inline plist_dict::plist_dict(const plist_dict&) = default;
inline plist_dict::plist_dict(plist_dict&&) noexcept = default;
inline plist_dict& plist_dict::operator=(const plist_dict&) = default;
inline plist_dict& plist_dict::operator=(plist_dict&&) noexcept = default;
inline plist_dict::~plist_dict() = default;
inline plist_array::plist_array(std::initializer_list<plist_value> list) : items(list) {}
inline plist_dict::plist_dict(std::initializer_list<plist_entry> list) : entries(list) {}
inline const plist_value* plist_dict::find(std::string_view key) const {
  for (const auto& e : entries)
    if (e.key == key) return &e.value;
  return nullptr;
}
inline plist_value* plist_dict::find(std::string_view key) {
  for (auto& e : entries)
    if (e.key == key) return &e.value;
  return nullptr;
}
inline void plist_dict::set(std::string key, plist_value value) {
  if (plist_value* existing = find(key)) {
    *existing = std::move(value);
    return;
  }
  entries.push_back(plist_entry{std::move(key), std::move(value)});
}
inline bool plist_dict::erase(std::string_view key) {
  for (auto it = entries.begin(); it != entries.end(); ++it) {
    if (it->key == key) {
      entries.erase(it);
      return true;
    }
  }
  return false;
}

/// Type-exact, order-insensitive equality for dicts (launchd does not care about key order),
/// order-sensitive for arrays. Reals compare by value, with NaN equal to NaN so a value always
/// equals itself.
inline bool plist_equal(const plist_value& a, const plist_value& b) {
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case plist_type::string: return *a.as_string() == *b.as_string();
    case plist_type::integer: return *a.as_integer() == *b.as_integer();
    case plist_type::real: {
      double x = *a.as_real(), y = *b.as_real();
      return x == y || (std::isnan(x) && std::isnan(y));
    }
    case plist_type::boolean: return *a.as_bool() == *b.as_bool();
    case plist_type::date: return *a.as_date() == *b.as_date();
    case plist_type::data: return *a.as_data() == *b.as_data();
    case plist_type::array: {
      const auto& x = a.as_array()->items;
      const auto& y = b.as_array()->items;
      if (x.size() != y.size()) return false;
      for (std::size_t i = 0; i < x.size(); ++i)
        if (!plist_equal(x[i], y[i])) return false;
      return true;
    }
    case plist_type::dict: {
      const auto& x = *a.as_dict();
      const auto& y = *b.as_dict();
      if (x.entries.size() != y.entries.size()) return false;
      for (const auto& e : x.entries) {
        const plist_value* other = y.find(e.key);
        if (!other || !plist_equal(e.value, *other)) return false;
      }
      return true;
    }
  }
  return false;
}

/// Exact structural equality including dict key order: what "same bytes when written" needs.
inline bool plist_identical(const plist_value& a, const plist_value& b) {
  if (a.type() != b.type()) return false;
  if (a.type() == plist_type::dict) {
    const auto& x = a.as_dict()->entries;
    const auto& y = b.as_dict()->entries;
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (x[i].key != y[i].key || !plist_identical(x[i].value, y[i].value)) return false;
    return true;
  }
  if (a.type() == plist_type::array) {
    const auto& x = a.as_array()->items;
    const auto& y = b.as_array()->items;
    if (x.size() != y.size()) return false;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (!plist_identical(x[i], y[i])) return false;
    return true;
  }
  return plist_equal(a, b);
}

namespace detail {

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
inline std::int64_t plist_days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

// Inverse of plist_days_from_civil.
inline void plist_civil_from_days(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  y = static_cast<std::int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
}

// Seconds between 1970-01-01 and 2001-01-01.
inline constexpr std::int64_t plist_epoch_offset = 978307200;

}  // namespace detail

/// The date at a UTC calendar time: `plist_date_from_utc(2020, 1, 2, 3, 4, 5)`.
inline plist_date plist_date_from_utc(std::int64_t year, unsigned month, unsigned day, unsigned hour, unsigned minute,
                                      unsigned second) {
  std::int64_t days = detail::plist_days_from_civil(year, month, day);
  std::int64_t unix_seconds = days * 86400 + hour * 3600 + minute * 60 + second;
  return plist_date{static_cast<double>(unix_seconds - detail::plist_epoch_offset)};
}

/// ISO-8601 text of a date in whole seconds ("2020-01-02T03:04:05Z"), as XML plists carry it.
/// Fractions of a second are dropped (as Apple's and Python's writers do). Fails outside years
/// 1..9999, which the XML form cannot express.
inline result<std::string> plist_date_to_iso(const plist_date& date) {
  double s = std::floor(date.seconds_since_2001);
  // Years 1..9999 span about +/-3.2e11 s around 2001; anything outside is not a writable date.
  if (!(s >= -63113904000.0 && s < 252423993600.0))
    return fail(errc::invalid_input, "write plist date", {}, "date outside years 1..9999");
  auto unix_seconds = static_cast<std::int64_t>(s) + detail::plist_epoch_offset;
  std::int64_t days = unix_seconds >= 0 ? unix_seconds / 86400 : -((-unix_seconds + 86399) / 86400);
  std::int64_t rem = unix_seconds - days * 86400;
  std::int64_t y;
  unsigned m, d;
  detail::plist_civil_from_days(days, y, m, d);
  if (y < 1 || y > 9999) return fail(errc::invalid_input, "write plist date", {}, "date outside years 1..9999");
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02dZ", static_cast<int>(y), m, d,
                static_cast<int>(rem / 3600), static_cast<int>(rem / 60 % 60), static_cast<int>(rem % 60));
  return std::string(buf);
}

namespace detail {

// A key path element as shown in messages and diffs: plain keys as they are, others quoted.
inline std::string plist_path_key(const std::string& parent, const std::string& key) {
  bool plain = !key.empty();
  for (char c : key) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    plain = plain && ok;
  }
  std::string shown = plain ? key : "\"" + key + "\"";
  return parent.empty() ? shown : parent + "." + shown;
}

inline std::string plist_path_index(const std::string& parent, std::size_t index) {
  return parent + "[" + std::to_string(index) + "]";
}

// A short, one-line rendering of a value for diffs.
inline std::string plist_short(const plist_value& v) {
  switch (v.type()) {
    case plist_type::string: {
      std::string out = "\"";
      for (char c : *v.as_string()) {
        if (c == '"' || c == '\\') {
          out += '\\';
          out += c;
        } else if (c == '\n') {
          out += "\\n";
        } else if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
      }
      return out + "\"";
    }
    case plist_type::integer: return v.as_integer()->to_string();
    case plist_type::real: {
      char buf[40];
      std::snprintf(buf, sizeof buf, "%.17g", *v.as_real());
      return std::string("real ") + buf;
    }
    case plist_type::boolean: return *v.as_bool() ? "true" : "false";
    case plist_type::date: {
      auto text = plist_date_to_iso(*v.as_date());
      return "date " + (text ? *text : std::string("?"));
    }
    case plist_type::data: return "<" + std::to_string(v.as_data()->bytes.size()) + " bytes of data>";
    case plist_type::array: return "[" + std::to_string(v.as_array()->items.size()) + " items]";
    case plist_type::dict: return "{" + std::to_string(v.as_dict()->entries.size()) + " keys}";
  }
  return "?";
}

inline void plist_diff_into(const plist_value& from, const plist_value& to, const std::string& path,
                            std::vector<std::string>& out) {
  if (from.type() == plist_type::dict && to.type() == plist_type::dict) {
    const auto& a = *from.as_dict();
    const auto& b = *to.as_dict();
    for (const auto& e : a.entries) {
      const plist_value* other = b.find(e.key);
      if (!other) out.push_back("- " + plist_path_key(path, e.key));
    }
    for (const auto& e : b.entries) {
      const plist_value* old = a.find(e.key);
      if (!old)
        out.push_back("+ " + plist_path_key(path, e.key));
      else
        plist_diff_into(*old, e.value, plist_path_key(path, e.key), out);
    }
    return;
  }
  if (from.type() == plist_type::array && to.type() == plist_type::array) {
    const auto& a = from.as_array()->items;
    const auto& b = to.as_array()->items;
    std::size_t common = a.size() < b.size() ? a.size() : b.size();
    for (std::size_t i = 0; i < common; ++i) plist_diff_into(a[i], b[i], plist_path_index(path, i), out);
    for (std::size_t i = common; i < a.size(); ++i) out.push_back("- " + plist_path_index(path, i));
    for (std::size_t i = common; i < b.size(); ++i) out.push_back("+ " + plist_path_index(path, i));
    return;
  }
  if (!plist_equal(from, to))
    out.push_back("~ " + (path.empty() ? std::string("(root)") : path) + ": " + plist_short(from) + " -> " +
                  plist_short(to));
}

}  // namespace detail

/// The differences from `from` (e.g. the installed job) to `to` (the desired one), one line per
/// key path, ignoring dict key order:
///
///     + KeepAlive                         (only in `to`)
///     - Sockets                           (only in `from`)
///     ~ ProgramArguments[1]: "a" -> "b"   (changed; a type change shows both types)
///
/// Nested keys are joined with '.', keys other than [A-Za-z0-9_-] are quoted
/// (`KeepAlive.PathState."/etc/rc.local"`). Empty when `plist_equal(from, to)`.
inline std::vector<std::string> plist_diff(const plist_value& from, const plist_value& to) {
  std::vector<std::string> out;
  detail::plist_diff_into(from, to, {}, out);
  return out;
}

HOSTCFG_END_NAMESPACE
