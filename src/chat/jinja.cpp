// Jinja2 subset: lexer -> parser (AST) -> tree-walking evaluator. See jinja.h for the contract.
#include "chat/jinja.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <limits>
#include <optional>

namespace vireo::jinja {

namespace {

// An error raised below the level that knows the line; the evaluator adds "<name> line N: ".
struct Pending {
  std::string msg;
  bool raised = false;
};
[[noreturn]] void fail(std::string msg) { throw Pending{std::move(msg)}; }

// ------------------------------------------------------------------------------------------------ UTF-8 helpers
std::vector<std::string> code_points(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + n > s.size()) n = s.size() - i;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}
bool is_ascii(const std::string& s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}
size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (char c : s)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  return n;
}
void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}
bool py_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
char lower_c(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }
char upper_c(char c) { return (c >= 'a' && c <= 'z') ? char(c - 'a' + 'A') : c; }
bool alpha_c(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool digit_c(char c) { return c >= '0' && c <= '9'; }
std::string lower_s(std::string s) {
  for (char& c : s) c = lower_c(c);
  return s;
}
std::string upper_s(std::string s) {
  for (char& c : s) c = upper_c(c);
  return s;
}

std::string strip_chars(const std::string& s, const std::string* chars, bool left, bool right) {
  auto strip_it = [&](char c) { return chars ? chars->find(c) != std::string::npos : py_space(c); };
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && strip_it(s[b])) ++b;
  if (right)
    while (e > b && strip_it(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::string format_float(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  for (int p = 1; p <= 17; ++p) {
    std::snprintf(buf, sizeof buf, "%.*g", p, d);
    if (std::strtod(buf, nullptr) == d) break;
  }
  std::string s = buf;
  // Python repr switches to exponent notation at 1e16 (and below 1e-4), %g at the precision: redo large ones.
  size_t epos = s.find('e');
  if (epos != std::string::npos) {
    int exp = std::atoi(s.c_str() + epos + 1);
    if (exp >= -4 && exp < 16) {
      std::snprintf(buf, sizeof buf, "%.1f", d);
      s = buf;  // integral value below 1e16
    }
  } else if (s.find('.') == std::string::npos && s.find("inf") == std::string::npos) {
    s += ".0";
  }
  return s;
}

std::string py_repr_string(const std::string& s) {
  char q = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (c == q || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  out += q;
  return out;
}

void repr_into(const Value& v, std::string& out, int depth);
void str_into(const Value& v, std::string& out, int depth) {
  if (depth > 100) fail("value nested too deeply to print");
  switch (v.kind()) {
    case Value::Kind::Undefined: return;
    case Value::Kind::None: out += "None"; return;
    case Value::Kind::Bool: out += v.as_bool() ? "True" : "False"; return;
    case Value::Kind::Int: out += std::to_string(v.as_int()); return;
    case Value::Kind::Float: out += format_float(v.as_float()); return;
    case Value::Kind::String: out += v.str(); return;
    default: repr_into(v, out, depth); return;
  }
}
void repr_into(const Value& v, std::string& out, int depth) {
  if (depth > 100) fail("value nested too deeply to print");
  switch (v.kind()) {
    case Value::Kind::String: out += py_repr_string(v.str()); return;
    case Value::Kind::List: {
      out += '[';
      bool first = true;
      for (const Value& x : v.list()) {
        if (!first) out += ", ";
        first = false;
        repr_into(x, out, depth + 1);
      }
      out += ']';
      return;
    }
    case Value::Kind::Dict: {
      if (v.dict_ref().is_namespace) {
        out += "<Namespace ";
      }
      out += '{';
      bool first = true;
      for (const auto& [k, x] : v.dict_ref().items) {
        if (!first) out += ", ";
        first = false;
        out += py_repr_string(k);
        out += ": ";
        repr_into(x, out, depth + 1);
      }
      out += '}';
      if (v.dict_ref().is_namespace) out += '>';
      return;
    }
    case Value::Kind::Function: out += "<function " + v.function().name + ">"; return;
    default: str_into(v, out, depth); return;
  }
}

void json_string(const std::string& s, std::string& out) {
  out += '"';
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (u < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", u);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

void json_into(const Value& v, std::string& out, int indent, bool sort_keys, int level) {
  if (level > 100) fail("tojson: value nested too deeply");
  auto newline = [&](int lvl) {
    out += '\n';
    out.append(size_t(indent) * size_t(lvl), ' ');
  };
  const char* item_sep = indent >= 0 ? "," : ", ";
  switch (v.kind()) {
    case Value::Kind::Undefined: fail("tojson: value is undefined");
    case Value::Kind::None: out += "null"; return;
    case Value::Kind::Bool: out += v.as_bool() ? "true" : "false"; return;
    case Value::Kind::Int: out += std::to_string(v.as_int()); return;
    case Value::Kind::Float: {
      double d = v.as_float();
      if (std::isnan(d)) out += "NaN";
      else if (std::isinf(d)) out += d > 0 ? "Infinity" : "-Infinity";
      else out += format_float(d);
      return;
    }
    case Value::Kind::String: json_string(v.str(), out); return;
    case Value::Kind::List: {
      const List& l = v.list();
      if (l.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < l.size(); ++i) {
        if (i) out += item_sep;
        if (indent >= 0) newline(level + 1);
        json_into(l[i], out, indent, sort_keys, level + 1);
      }
      if (indent >= 0) newline(level);
      out += ']';
      return;
    }
    case Value::Kind::Dict: {
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& kv : v.dict_ref().items) items.push_back(&kv);
      if (sort_keys)
        std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      if (items.empty()) {
        out += "{}";
        return;
      }
      out += '{';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += item_sep;
        if (indent >= 0) newline(level + 1);
        json_string(items[i]->first, out);
        out += ": ";
        json_into(items[i]->second, out, indent, sort_keys, level + 1);
      }
      if (indent >= 0) newline(level);
      out += '}';
      return;
    }
    case Value::Kind::Function: fail("tojson: a function is not JSON serializable");
  }
}

const char* kind_name(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return "undefined";
    case Value::Kind::None: return "none";
    case Value::Kind::Bool: return "bool";
    case Value::Kind::Int: return "int";
    case Value::Kind::Float: return "float";
    case Value::Kind::String: return "string";
    case Value::Kind::List: return "list";
    case Value::Kind::Dict: return "dict";
    case Value::Kind::Function: return "function";
  }
  return "?";
}

[[noreturn]] void undefined_error(const Value& v) {
  if (v.undefined_name().empty()) fail("value is undefined");
  fail("'" + v.undefined_name() + "' is undefined");
}

bool numeric(const Value& v) { return v.is_int() || v.is_float() || v.is_bool(); }
double num_of(const Value& v) {
  return v.is_bool() ? (v.as_bool() ? 1.0 : 0.0) : v.as_number();
}
bool intlike(const Value& v) { return v.is_int() || v.is_bool(); }
int64_t int_of(const Value& v) { return v.is_bool() ? (v.as_bool() ? 1 : 0) : v.as_int(); }

bool equals(const Value& a, const Value& b, int depth = 0) {
  if (depth > 100) fail("comparison nested too deeply");
  if (numeric(a) && numeric(b)) {
    if (intlike(a) && intlike(b)) return int_of(a) == int_of(b);
    return num_of(a) == num_of(b);
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return true;
    case Value::Kind::String: return a.str() == b.str();
    case Value::Kind::List: {
      const List &x = a.list(), &y = b.list();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equals(x[i], y[i], depth + 1)) return false;
      return true;
    }
    case Value::Kind::Dict: {
      const Dict &x = a.dict_ref(), &y = b.dict_ref();
      if (x.items.size() != y.items.size()) return false;
      for (const auto& [k, v] : x.items) {
        const Value* o = y.find(k);
        if (!o || !equals(v, *o, depth + 1)) return false;
      }
      return true;
    }
    case Value::Kind::Function: return a.identity() == b.identity();
    default: return false;
  }
}

// <0, 0, >0; fails on kinds Python cannot order.
int compare(const Value& a, const Value& b, int depth = 0) {
  if (depth > 100) fail("comparison nested too deeply");
  if (numeric(a) && numeric(b)) {
    if (intlike(a) && intlike(b)) return int_of(a) < int_of(b) ? -1 : int_of(a) > int_of(b);
    double x = num_of(a), y = num_of(b);
    return x < y ? -1 : x > y;
  }
  if (a.is_string() && b.is_string()) return a.str().compare(b.str()) < 0 ? -1 : a.str() == b.str() ? 0 : 1;
  if (a.is_list() && b.is_list()) {
    const List &x = a.list(), &y = b.list();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      int c = compare(x[i], y[i], depth + 1);
      if (c) return c;
    }
    return x.size() < y.size() ? -1 : x.size() > y.size();
  }
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  fail(std::string("cannot compare ") + kind_name(a) + " with " + kind_name(b));
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------- Value
Value Value::dict() {
  Value v;
  v.v_ = std::make_shared<Dict>();
  return v;
}
Value Value::function(std::string name, NativeFn fn) {
  Value v;
  v.v_ = std::make_shared<Function>(Function{std::move(name), std::move(fn)});
  return v;
}
const void* Value::identity() const {
  switch (kind()) {
    case Kind::List: return &list();
    case Kind::Dict: return &dict_ref();
    case Kind::Function: return &function();
    default: return nullptr;
  }
}
bool Value::truthy() const {
  switch (kind()) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return as_bool();
    case Kind::Int: return as_int() != 0;
    case Kind::Float: return as_float() != 0.0;
    case Kind::String: return !str().empty();
    case Kind::List: return !list().empty();
    case Kind::Dict: return !dict_ref().items.empty();
    case Kind::Function: return true;
  }
  return false;
}
const Value* Dict::find(std::string_view key) const {
  for (const auto& kv : items)
    if (kv.first == key) return &kv.second;
  return nullptr;
}
Value* Dict::find(std::string_view key) {
  for (auto& kv : items)
    if (kv.first == key) return &kv.second;
  return nullptr;
}
void Dict::set(std::string key, Value v) {
  if (Value* p = find(key)) {
    *p = std::move(v);
    return;
  }
  items.emplace_back(std::move(key), std::move(v));
}

std::string to_string(const Value& v) {
  std::string out;
  try {
    str_into(v, out, 0);
  } catch (const Pending& p) {
    throw Error(p.msg);
  }
  return out;
}
std::string to_json(const Value& v, int indent, bool sort_keys) {
  std::string out;
  try {
    json_into(v, out, indent, sort_keys, 0);
  } catch (const Pending& p) {
    throw Error(p.msg);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------- Lexer
namespace {

enum class Tk { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };
struct Token {
  Tk type;
  std::string s;
  int64_t i = 0;
  double f = 0;
  int line = 1;
};

class Lexer {
 public:
  Lexer(std::string_view src, const Options& o) : src_(src), o_(o) {}

  std::vector<Token> run() {
    size_t pos = 0;
    bool strip_next = false, trim_next = false;
    while (pos <= src_.size()) {
      size_t k = find_open(pos);
      size_t text_begin = pos;
      std::string text(src_.substr(pos, k - pos));
      int text_line = line_;
      if (strip_next) {
        size_t b = 0;
        while (b < text.size() && py_space(text[b])) ++b;
        text.erase(0, b);
        text_begin += b;
      } else if (trim_next && !text.empty() && text[0] == '\n') {
        text.erase(0, 1);
        ++text_begin;
      }
      strip_next = trim_next = false;
      if (k < src_.size()) {
        char kind = src_[k + 1];
        char mod = k + 2 < src_.size() ? src_[k + 2] : 0;
        if (mod == '-') {
          while (!text.empty() && py_space(text.back())) text.pop_back();
        } else if (mod != '+' && o_.lstrip_blocks && (kind == '%' || kind == '#')) {
          size_t l = text.rfind('\n');
          l = l == std::string::npos ? 0 : l + 1;
          bool line_starting = text_begin == 0 || src_[text_begin - 1] == '\n';
          if (l > 0 || line_starting) {
            bool blank = true;
            for (size_t j = l; j < text.size(); ++j)
              if (text[j] != ' ' && text[j] != '\t') blank = false;
            if (blank) text.resize(l);
          }
        }
      }
      if (!text.empty()) push(Tk::Text, std::move(text), text_line);
      count_lines(pos, k);
      if (k >= src_.size()) break;
      char kind = src_[k + 1];
      pos = k + 2;
      if (pos < src_.size() && (src_[pos] == '-' || src_[pos] == '+')) ++pos;
      if (kind == '#') {
        size_t e = src_.find("#}", pos);
        if (e == std::string_view::npos) err(line_, "unclosed comment '{#'");
        char m = e > pos ? src_[e - 1] : 0;
        strip_next = m == '-';
        trim_next = m != '-' && m != '+' && o_.trim_blocks;
        count_lines(k, e + 2);
        pos = e + 2;
        continue;
      }
      bool block = kind == '%';
      if (block && raw_follows(pos)) {
        pos = lex_raw(pos, strip_next, trim_next);
        continue;
      }
      push(block ? Tk::BlockBegin : Tk::VarBegin, {}, line_);
      pos = lex_tag(pos, block, strip_next, trim_next);
    }
    push(Tk::Eof, {}, line_);
    return std::move(toks_);
  }

 private:
  std::string_view src_;
  const Options& o_;
  std::vector<Token> toks_;
  int line_ = 1;

  [[noreturn]] void err(int line, const std::string& msg) {
    throw Error(o_.name + " line " + std::to_string(line) + ": " + msg);
  }
  void push(Tk t, std::string s, int line) {
    Token tok;
    tok.type = t;
    tok.s = std::move(s);
    tok.line = line;
    toks_.push_back(std::move(tok));
  }
  void count_lines(size_t a, size_t b) {
    b = std::min(b, src_.size());
    for (size_t j = a; j < b; ++j)
      if (src_[j] == '\n') ++line_;
  }
  size_t find_open(size_t pos) const {
    for (size_t j = pos; j + 1 < src_.size(); ++j)
      if (src_[j] == '{' && (src_[j + 1] == '{' || src_[j + 1] == '%' || src_[j + 1] == '#')) return j;
    return src_.size();
  }
  bool raw_follows(size_t p) const {
    while (p < src_.size() && py_space(src_[p])) ++p;
    if (src_.compare(p, 3, "raw") != 0) return false;
    p += 3;
    while (p < src_.size() && py_space(src_[p])) ++p;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    return src_.compare(p, 2, "%}") == 0;
  }
  // {% raw %}...{% endraw %}: the text between is output verbatim.
  size_t lex_raw(size_t p, bool& strip_next, bool& trim_next) {
    int start_line = line_;
    size_t close = src_.find("%}", p);
    bool strip_body = src_[close - 1] == '-';
    size_t body = close + 2;
    if (!strip_body && o_.trim_blocks && src_[close - 1] != '+' && body < src_.size() && src_[body] == '\n') ++body;
    for (size_t j = body; j + 1 < src_.size(); ++j) {
      if (src_[j] != '{' || src_[j + 1] != '%') continue;
      size_t q = j + 2;
      bool strip_end = q < src_.size() && src_[q] == '-';
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) ++q;
      while (q < src_.size() && py_space(src_[q])) ++q;
      if (src_.compare(q, 6, "endraw") != 0) continue;
      q += 6;
      while (q < src_.size() && py_space(src_[q])) ++q;
      char m = q < src_.size() ? src_[q] : 0;
      if (m == '-' || m == '+') ++q;
      if (src_.compare(q, 2, "%}") != 0) continue;
      std::string text(src_.substr(body, j - body));
      if (strip_body) text = strip_chars(text, nullptr, true, false);
      if (strip_end) text = strip_chars(text, nullptr, false, true);
      if (!text.empty()) push(Tk::Text, std::move(text), start_line);
      strip_next = m == '-';
      trim_next = m != '-' && m != '+' && o_.trim_blocks;
      count_lines(p, q + 2);
      return q + 2;
    }
    err(start_line, "unclosed '{% raw %}' block");
  }

  size_t lex_tag(size_t p, bool block, bool& strip_next, bool& trim_next) {
    const char close = block ? '%' : '}';
    int depth = 0;
    int start_line = line_;
    for (;;) {
      while (p < src_.size() && py_space(src_[p])) {
        if (src_[p] == '\n') ++line_;
        ++p;
      }
      if (p >= src_.size()) err(start_line, block ? "unclosed tag '{%'" : "unclosed '{{'");
      if (depth == 0) {
        size_t q = p;
        char m = src_[q];
        if (m == '-' || m == '+') ++q;
        if (q + 1 < src_.size() && src_[q] == close && src_[q + 1] == '}' && (q == p || q + 1 < src_.size())) {
          push(block ? Tk::BlockEnd : Tk::VarEnd, {}, line_);
          strip_next = m == '-';
          trim_next = block && m != '-' && m != '+' && o_.trim_blocks;
          return q + 2;
        }
      }
      char c = src_[p];
      if (alpha_c(c) || c == '_') {
        size_t b = p;
        while (p < src_.size() && (alpha_c(src_[p]) || digit_c(src_[p]) || src_[p] == '_')) ++p;
        push(Tk::Name, std::string(src_.substr(b, p - b)), line_);
      } else if (digit_c(c)) {
        p = lex_number(p);
      } else if (c == '\'' || c == '"') {
        p = lex_string(p);
      } else {
        static const char* two[] = {"//", "**", "==", "!=", "<=", ">="};
        std::string op;
        for (const char* t : two)
          if (src_.compare(p, 2, t) == 0) op = t;
        if (op.empty()) {
          if (!std::strchr("+-*/%~<>=()[]{},.:|", c) || c == 0) err(line_, std::string("unexpected character '") + c + "'");
          op = std::string(1, c);
        }
        if (op == "(" || op == "[" || op == "{") ++depth;
        if (op == ")" || op == "]" || op == "}") {
          if (depth == 0) err(line_, "unexpected '" + op + "'");
          --depth;
        }
        push(Tk::Op, op, line_);
        p += op.size();
      }
    }
  }

  size_t lex_number(size_t p) {
    size_t b = p;
    auto digits = [&] {
      while (p < src_.size() && (digit_c(src_[p]) || src_[p] == '_')) ++p;
    };
    digits();
    bool is_float = false;
    if (p + 1 < src_.size() && src_[p] == '.' && digit_c(src_[p + 1])) {
      is_float = true;
      ++p;
      digits();
    }
    if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < src_.size() && digit_c(src_[q])) {
        is_float = true;
        p = q;
        digits();
      }
    }
    std::string text;
    for (size_t j = b; j < p; ++j)
      if (src_[j] != '_') text += src_[j];
    Token t;
    t.line = line_;
    if (is_float) {
      t.type = Tk::Float;
      t.f = std::strtod(text.c_str(), nullptr);
    } else {
      t.type = Tk::Int;
      errno = 0;
      char* end = nullptr;
      long long v = std::strtoll(text.c_str(), &end, 10);
      if (errno == ERANGE) err(line_, "integer literal too large: " + text);
      t.i = v;
    }
    toks_.push_back(std::move(t));
    return p;
  }

  size_t lex_string(size_t p) {
    char q = src_[p++];
    int start_line = line_;
    std::string out;
    auto hex = [&](size_t n) -> uint32_t {
      if (p + n > src_.size()) err(line_, "bad escape in string");
      uint32_t v = 0;
      for (size_t j = 0; j < n; ++j) {
        char h = src_[p + j];
        int d = digit_c(h) ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10 : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
        if (d < 0) err(line_, "bad escape in string");
        v = v * 16 + uint32_t(d);
      }
      p += n;
      return v;
    };
    for (;;) {
      if (p >= src_.size()) err(start_line, "unterminated string");
      char c = src_[p++];
      if (c == q) break;
      if (c == '\n') ++line_;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (p >= src_.size()) err(start_line, "unterminated string");
      char e = src_[p++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case 'a': out += '\a'; break;
        case '0': out += '\0'; break;
        case '\n': ++line_; break;  // line continuation
        case 'x': append_utf8(out, hex(2)); break;
        case 'u': {
          uint32_t cp = hex(4);
          if (cp >= 0xD800 && cp <= 0xDBFF && src_.compare(p, 2, "\\u") == 0) {
            p += 2;
            uint32_t lo = hex(4);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        case 'U': {
          uint32_t cp = hex(8);
          if (cp > 0x10FFFF) err(line_, "bad \\U escape");
          append_utf8(out, cp);
          break;
        }
        default: out += '\\'; out += e; break;  // Python keeps unknown escapes as written
      }
    }
    push(Tk::String, std::move(out), start_line);
    return p;
  }
};

// ------------------------------------------------------------------------------------------------------------ AST
struct Node;
using NodeP = std::unique_ptr<Node>;
using Body = std::vector<NodeP>;

enum class NK {
  // expressions
  Literal, Name, ListLit, TupleLit, DictLit, Attr, Subscript, Slice, Call, Filter, Test, Neg, Pos, Binary, Compare,
  And, Or, Not, Cond,
  // statements
  Text, Output, If, For, Set, SetAttr, SetBlock, Macro, Break, Continue, Generation, FilterBlock,
};

struct Node {
  NK kind;
  int line = 0;
  std::string s;                  // name / operator / attribute / filter or test name / text
  std::string s2;                 // SetAttr: attribute
  bool negate = false;            // Test: `is not`
  Value lit;                      // Literal
  std::vector<NodeP> a;           // operands, in an order fixed per kind (see the parser)
  std::vector<NodeP> args;        // call/filter/test positional arguments
  std::vector<std::pair<std::string, NodeP>> kwargs;
  std::vector<std::string> names; // For/Set targets, Macro parameters, Compare operators
  std::vector<NodeP> defaults;    // Macro parameter defaults (null: none)
  std::vector<Body> bodies;       // If: one per branch (+ else); For: body (+ else); others: body
};

NodeP mk(NK k, int line) {
  auto n = std::make_unique<Node>();
  n->kind = k;
  n->line = line;
  return n;
}

// --------------------------------------------------------------------------------------------------------- Parser
class Parser {
 public:
  Parser(std::vector<Token> toks, const Options& o) : t_(std::move(toks)), o_(o) {}

  Body parse_template() {
    std::string end;
    Body b = parse_body({}, &end, "", 0);
    return b;
  }

 private:
  std::vector<Token> t_;
  size_t p_ = 0;
  const Options& o_;
  int depth_ = 0;
  int loop_depth_ = 0;

  struct DepthGuard {
    Parser& p;
    DepthGuard(Parser& pp, int line) : p(pp) {
      if (++p.depth_ > p.o_.max_depth) p.err(line, "template nested too deeply");
    }
    ~DepthGuard() { --p.depth_; }
  };

  [[noreturn]] void err(int line, const std::string& msg) const {
    throw Error(o_.name + " line " + std::to_string(line) + ": " + msg);
  }
  const Token& peek(size_t ahead = 0) const { return t_[std::min(p_ + ahead, t_.size() - 1)]; }
  const Token& next() {
    const Token& t = t_[std::min(p_, t_.size() - 1)];
    if (p_ < t_.size() - 1) ++p_;
    return t;
  }
  bool is_op(const char* op, size_t ahead = 0) const { return peek(ahead).type == Tk::Op && peek(ahead).s == op; }
  bool is_name(const char* n, size_t ahead = 0) const { return peek(ahead).type == Tk::Name && peek(ahead).s == n; }
  std::string describe(const Token& t) const {
    switch (t.type) {
      case Tk::Eof: return "end of template";
      case Tk::VarEnd: return "'}}'";
      case Tk::BlockEnd: return "'%}'";
      case Tk::Text: return "text";
      case Tk::String: return "string";
      case Tk::Int:
      case Tk::Float: return "number";
      default: return "'" + t.s + "'";
    }
  }
  void expect_op(const char* op) {
    if (!is_op(op)) err(peek().line, std::string("expected '") + op + "', got " + describe(peek()));
    next();
  }
  std::string expect_name(const char* what) {
    if (peek().type != Tk::Name) err(peek().line, std::string("expected ") + what + ", got " + describe(peek()));
    return next().s;
  }
  void expect_block_end(const std::string& tag) {
    if (peek().type != Tk::BlockEnd)
      err(peek().line, "expected '%}' to close '" + tag + "', got " + describe(peek()));
    next();
  }

  // Statements up to one of `ends` (its name is consumed, returned in *found). Top level: ends empty.
  Body parse_body(std::initializer_list<const char*> ends, std::string* found, const std::string& opener,
                  int open_line) {
    DepthGuard g(*this, peek().line);
    Body body;
    for (;;) {
      const Token& t = peek();
      if (t.type == Tk::Eof) {
        if (ends.size() == 0) return body;
        err(t.line, "unclosed '{% " + opener + " %}' block (opened at line " + std::to_string(open_line) + ")");
      }
      if (t.type == Tk::Text) {
        auto n = mk(NK::Text, t.line);
        n->s = t.s;
        next();
        body.push_back(std::move(n));
      } else if (t.type == Tk::VarBegin) {
        next();
        auto n = mk(NK::Output, t.line);
        n->a.push_back(parse_tuple_expr());
        if (peek().type != Tk::VarEnd) err(peek().line, "expected '}}', got " + describe(peek()));
        next();
        body.push_back(std::move(n));
      } else if (t.type == Tk::BlockBegin) {
        next();
        const Token& nt = peek();
        if (nt.type != Tk::Name) err(nt.line, "expected a tag name after '{%', got " + describe(nt));
        for (const char* e : ends)
          if (nt.s == e) {
            *found = nt.s;
            next();
            return body;
          }
        body.push_back(parse_statement());
      } else {
        err(t.line, "unexpected " + describe(t));
      }
    }
  }

  NodeP parse_statement() {
    const Token& tt = next();
    std::string tag = tt.s;
    int line = tt.line;
    if (tag == "if") return parse_if(line);
    if (tag == "for") return parse_for(line);
    if (tag == "set") return parse_set(line);
    if (tag == "macro") return parse_macro(line);
    if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) err(line, "'" + tag + "' outside of a loop");
      expect_block_end(tag);
      return mk(tag == "break" ? NK::Break : NK::Continue, line);
    }
    if (tag == "generation") {
      expect_block_end(tag);
      auto n = mk(NK::Generation, line);
      std::string end;
      n->bodies.push_back(parse_body({"endgeneration"}, &end, tag, line));
      expect_block_end(end);
      return n;
    }
    if (tag == "filter") {
      auto n = mk(NK::FilterBlock, line);
      // The filter chain is parsed with a Name placeholder as its innermost operand.
      NodeP chain = mk(NK::Literal, line);
      do {
        if (is_op("|")) next();
        chain = parse_filter(std::move(chain));
      } while (is_op("|"));
      n->a.push_back(std::move(chain));
      expect_block_end(tag);
      std::string end;
      n->bodies.push_back(parse_body({"endfilter"}, &end, tag, line));
      expect_block_end(end);
      return n;
    }
    static const char* ends[] = {"endif", "endfor", "endset", "endmacro", "endgeneration", "endfilter",
                                 "elif", "else", "endraw"};
    for (const char* e : ends)
      if (tag == e) err(line, "unexpected '{% " + tag + " %}'");
    err(line, "unknown tag '" + tag + "'");
  }

  NodeP parse_if(int line) {
    auto n = mk(NK::If, line);
    n->a.push_back(parse_expr());
    expect_block_end("if");
    for (;;) {
      std::string end;
      n->bodies.push_back(parse_body({"elif", "else", "endif"}, &end, "if", line));
      if (end == "elif") {
        n->a.push_back(parse_expr());
        expect_block_end("elif");
      } else if (end == "else") {
        expect_block_end("else");
        std::string e2;
        n->bodies.push_back(parse_body({"endif"}, &e2, "if", line));
        expect_block_end("endif");
        return n;
      } else {
        expect_block_end("endif");
        return n;
      }
    }
  }

  NodeP parse_for(int line) {
    auto n = mk(NK::For, line);
    n->names.push_back(expect_name("a loop variable"));
    while (is_op(",")) {
      next();
      n->names.push_back(expect_name("a loop variable"));
    }
    if (!is_name("in")) err(peek().line, "expected 'in' in for loop, got " + describe(peek()));
    next();
    n->a.push_back(parse_or());
    if (is_op(",")) {  // `for x in a, b` iterates a tuple
      auto tup = mk(NK::TupleLit, line);
      tup->a.push_back(std::move(n->a[0]));
      while (is_op(",")) {
        next();
        tup->a.push_back(parse_or());
      }
      n->a[0] = std::move(tup);
    }
    if (is_name("if")) {
      next();
      n->a.push_back(parse_expr());
    } else {
      n->a.push_back(nullptr);
    }
    if (is_name("recursive")) err(peek().line, "unsupported: recursive for loops");
    expect_block_end("for");
    ++loop_depth_;
    std::string end;
    n->bodies.push_back(parse_body({"else", "endfor"}, &end, "for", line));
    --loop_depth_;
    if (end == "else") {
      expect_block_end("else");
      std::string e2;
      n->bodies.push_back(parse_body({"endfor"}, &e2, "for", line));
    }
    expect_block_end("endfor");
    return n;
  }

  NodeP parse_set(int line) {
    std::string name = expect_name("a variable name");
    if (is_op(".")) {
      next();
      auto n = mk(NK::SetAttr, line);
      n->s = name;
      n->s2 = expect_name("an attribute name");
      expect_op("=");
      n->a.push_back(parse_tuple_expr());
      expect_block_end("set");
      return n;
    }
    std::vector<std::string> names{name};
    while (is_op(",")) {
      next();
      names.push_back(expect_name("a variable name"));
    }
    if (is_op("=")) {
      next();
      auto n = mk(NK::Set, line);
      n->names = std::move(names);
      n->a.push_back(parse_tuple_expr());
      expect_block_end("set");
      return n;
    }
    if (names.size() != 1) err(line, "block set needs one variable");
    auto n = mk(NK::SetBlock, line);
    n->names = std::move(names);
    if (is_op("|")) err(peek().line, "unsupported: filters on a block set");
    expect_block_end("set");
    std::string end;
    n->bodies.push_back(parse_body({"endset"}, &end, "set", line));
    expect_block_end("endset");
    return n;
  }

  NodeP parse_macro(int line) {
    auto n = mk(NK::Macro, line);
    n->s = expect_name("a macro name");
    expect_op("(");
    while (!is_op(")")) {
      n->names.push_back(expect_name("a parameter name"));
      if (is_op("=")) {
        next();
        n->defaults.push_back(parse_expr());
      } else {
        n->defaults.push_back(nullptr);
      }
      if (!is_op(")")) expect_op(",");
    }
    next();
    expect_block_end("macro");
    int saved = loop_depth_;
    loop_depth_ = 0;
    std::string end;
    n->bodies.push_back(parse_body({"endmacro"}, &end, "macro", line));
    loop_depth_ = saved;
    expect_block_end("endmacro");
    return n;
  }

  // expr (, expr)* -> a tuple when there is a comma
  NodeP parse_tuple_expr() {
    int line = peek().line;
    NodeP e = parse_expr();
    if (!is_op(",")) return e;
    auto tup = mk(NK::TupleLit, line);
    tup->a.push_back(std::move(e));
    while (is_op(",")) {
      next();
      if (peek().type == Tk::VarEnd || peek().type == Tk::BlockEnd) break;
      tup->a.push_back(parse_expr());
    }
    return tup;
  }

  NodeP parse_expr() {
    DepthGuard g(*this, peek().line);
    NodeP e = parse_or();
    while (is_name("if")) {
      int line = next().line;
      auto c = mk(NK::Cond, line);
      c->a.push_back(std::move(e));
      c->a.push_back(parse_or());
      if (is_name("else")) {
        next();
        c->a.push_back(parse_expr());
      } else {
        c->a.push_back(nullptr);
      }
      e = std::move(c);
    }
    return e;
  }
  NodeP parse_or() {
    NodeP e = parse_and();
    while (is_name("or")) {
      auto n = mk(NK::Or, next().line);
      n->a.push_back(std::move(e));
      n->a.push_back(parse_and());
      e = std::move(n);
    }
    return e;
  }
  NodeP parse_and() {
    NodeP e = parse_not();
    while (is_name("and")) {
      auto n = mk(NK::And, next().line);
      n->a.push_back(std::move(e));
      n->a.push_back(parse_not());
      e = std::move(n);
    }
    return e;
  }
  NodeP parse_not() {
    if (is_name("not")) {
      DepthGuard g(*this, peek().line);
      auto n = mk(NK::Not, next().line);
      n->a.push_back(parse_not());
      return n;
    }
    return parse_compare();
  }
  NodeP parse_compare() {
    int line = peek().line;
    NodeP e = parse_concat();
    NodeP cmp;
    for (;;) {
      std::string op;
      if (peek().type == Tk::Op && (peek().s == "==" || peek().s == "!=" || peek().s == "<" || peek().s == ">" ||
                                    peek().s == "<=" || peek().s == ">=")) {
        op = next().s;
      } else if (is_name("in")) {
        next();
        op = "in";
      } else if (is_name("not") && is_name("in", 1)) {
        next();
        next();
        op = "not in";
      } else {
        break;
      }
      if (!cmp) {
        cmp = mk(NK::Compare, line);
        cmp->a.push_back(std::move(e));
      }
      cmp->names.push_back(op);
      cmp->a.push_back(parse_concat());
    }
    return cmp ? std::move(cmp) : std::move(e);
  }
  NodeP binary(const std::string& op, NodeP l, NodeP r, int line) {
    auto n = mk(NK::Binary, line);
    n->s = op;
    n->a.push_back(std::move(l));
    n->a.push_back(std::move(r));
    return n;
  }
  NodeP parse_concat() {
    NodeP e = parse_math1();
    while (is_op("~")) {
      int line = next().line;
      e = binary("~", std::move(e), parse_math1(), line);
    }
    return e;
  }
  NodeP parse_math1() {
    NodeP e = parse_math2();
    while (is_op("+") || is_op("-")) {
      const Token& t = next();
      std::string op = t.s;
      e = binary(op, std::move(e), parse_math2(), t.line);
    }
    return e;
  }
  NodeP parse_math2() {
    NodeP e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& t = next();
      std::string op = t.s;
      e = binary(op, std::move(e), parse_pow(), t.line);
    }
    return e;
  }
  NodeP parse_pow() {
    NodeP e = parse_unary(true);
    while (is_op("**")) {
      int line = next().line;
      e = binary("**", std::move(e), parse_unary(true), line);
    }
    return e;
  }
  NodeP parse_unary(bool with_filter) {
    DepthGuard g(*this, peek().line);
    NodeP e;
    if (is_op("-") || is_op("+")) {
      const Token& t = next();
      e = mk(t.s == "-" ? NK::Neg : NK::Pos, t.line);
      e->a.push_back(parse_unary(false));
    } else {
      e = parse_postfix(parse_primary());
    }
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }
  NodeP parse_primary() {
    DepthGuard g(*this, peek().line);
    const Token& t = peek();
    int line = t.line;
    switch (t.type) {
      case Tk::Name: {
        std::string n = next().s;
        auto lit = mk(NK::Literal, line);
        if (n == "true" || n == "True") lit->lit = Value(true);
        else if (n == "false" || n == "False") lit->lit = Value(false);
        else if (n == "none" || n == "None") lit->lit = Value::none();
        else {
          auto nm = mk(NK::Name, line);
          nm->s = n;
          return nm;
        }
        return lit;
      }
      case Tk::String: {
        std::string s = next().s;
        while (peek().type == Tk::String) s += next().s;  // adjacent literals concatenate
        auto lit = mk(NK::Literal, line);
        lit->lit = Value(std::move(s));
        return lit;
      }
      case Tk::Int: {
        auto lit = mk(NK::Literal, line);
        lit->lit = Value(next().i);
        return lit;
      }
      case Tk::Float: {
        auto lit = mk(NK::Literal, line);
        lit->lit = Value(next().f);
        return lit;
      }
      case Tk::Op:
        if (t.s == "(") {
          next();
          if (is_op(")")) {
            next();
            return mk(NK::TupleLit, line);
          }
          NodeP e = parse_expr();
          if (is_op(",")) {
            auto tup = mk(NK::TupleLit, line);
            tup->a.push_back(std::move(e));
            while (is_op(",")) {
              next();
              if (is_op(")")) break;
              tup->a.push_back(parse_expr());
            }
            e = std::move(tup);
          }
          expect_op(")");
          return e;
        }
        if (t.s == "[") {
          next();
          auto l = mk(NK::ListLit, line);
          while (!is_op("]")) {
            l->a.push_back(parse_expr());
            if (!is_op("]")) expect_op(",");
          }
          next();
          return l;
        }
        if (t.s == "{") {
          next();
          auto d = mk(NK::DictLit, line);
          while (!is_op("}")) {
            d->a.push_back(parse_expr());
            expect_op(":");
            d->a.push_back(parse_expr());
            if (!is_op("}")) expect_op(",");
          }
          next();
          return d;
        }
        break;
      default: break;
    }
    err(line, "unexpected " + describe(t) + " in expression");
  }
  void parse_call_args(Node& n) {
    expect_op("(");
    while (!is_op(")")) {
      if (is_op("*") || is_op("**")) err(peek().line, "unsupported: *args / **kwargs in calls");
      if (peek().type == Tk::Name && is_op("=", 1)) {
        std::string k = next().s;
        next();
        n.kwargs.emplace_back(k, parse_expr());
      } else {
        if (!n.kwargs.empty()) err(peek().line, "positional argument after keyword argument");
        n.args.push_back(parse_expr());
      }
      if (!is_op(")")) expect_op(",");
    }
    next();
  }
  NodeP parse_postfix(NodeP e) {
    for (;;) {
      if (is_op(".")) {
        int line = next().line;
        auto n = mk(NK::Attr, line);
        if (peek().type == Tk::Name) {
          n->s = next().s;
          n->a.push_back(std::move(e));
        } else if (peek().type == Tk::Int) {  // xs.0 is xs[0]
          n->kind = NK::Subscript;
          auto idx = mk(NK::Literal, line);
          idx->lit = Value(next().i);
          n->a.push_back(std::move(e));
          n->a.push_back(std::move(idx));
        } else {
          err(line, "expected an attribute name after '.', got " + describe(peek()));
        }
        e = std::move(n);
      } else if (is_op("[")) {
        int line = next().line;
        auto n = mk(NK::Subscript, line);
        n->a.push_back(std::move(e));
        n->a.push_back(parse_subscript(line));
        expect_op("]");
        e = std::move(n);
      } else if (is_op("(")) {
        auto n = mk(NK::Call, peek().line);
        n->a.push_back(std::move(e));
        parse_call_args(*n);
        e = std::move(n);
      } else {
        return e;
      }
    }
  }
  NodeP parse_subscript(int line) {
    NodeP start;
    if (!is_op(":")) {
      start = parse_expr();
      if (!is_op(":")) return start;
    }
    auto s = mk(NK::Slice, line);
    next();  // ':'
    NodeP stop, step;
    if (!is_op(":") && !is_op("]")) stop = parse_expr();
    if (is_op(":")) {
      next();
      if (!is_op("]")) step = parse_expr();
    }
    s->a.push_back(std::move(start));
    s->a.push_back(std::move(stop));
    s->a.push_back(std::move(step));
    return s;
  }
  NodeP parse_filter(NodeP e) {
    int line = peek().line;
    auto n = mk(NK::Filter, line);
    n->s = expect_name("a filter name");
    n->a.push_back(std::move(e));
    if (is_op("(")) parse_call_args(*n);
    return n;
  }
  NodeP parse_filter_expr(NodeP e) {
    for (;;) {
      if (is_op("|")) {
        next();
        e = parse_filter(std::move(e));
      } else if (is_name("is")) {
        int line = next().line;
        auto n = mk(NK::Test, line);
        if (is_name("not")) {
          next();
          n->negate = true;
        }
        n->s = expect_name("a test name");
        n->a.push_back(std::move(e));
        if (is_op("(")) {
          parse_call_args(*n);
        } else {
          const Token& t = peek();
          bool arg = t.type == Tk::String || t.type == Tk::Int || t.type == Tk::Float ||
                     (t.type == Tk::Op && (t.s == "[" || t.s == "{" || t.s == "-")) ||
                     (t.type == Tk::Name && t.s != "else" && t.s != "or" && t.s != "and" && t.s != "if" &&
                      t.s != "is" && t.s != "in" && t.s != "not");
          if (arg) n->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(n);
      } else if (is_op("(")) {
        auto n = mk(NK::Call, peek().line);
        n->a.push_back(std::move(e));
        parse_call_args(*n);
        e = std::move(n);
      } else {
        return e;
      }
    }
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------------- Evaluation
struct Template::Impl {
  Options opts;
  Body root;
};

namespace {

struct Frame {
  std::vector<std::pair<std::string, Value>> vars;
  bool barrier = false;  // a macro's frame: lookups skip to the template's top level from here
  Value* find(std::string_view k) {
    for (auto& kv : vars)
      if (kv.first == k) return &kv.second;
    return nullptr;
  }
  void set(const std::string& k, Value v) {
    if (Value* p = find(k)) *p = std::move(v);
    else vars.emplace_back(k, std::move(v));
  }
};

enum class Flow { Normal, Break, Continue };

class Interp {
 public:
  Interp(const Template::Impl& t, const Value& ctx) : t_(t), o_(t.opts), ctx_(ctx) { frames_.push_back({}); }

  std::string run() {
    std::string out;
    exec_body(t_.root, out);
    return out;
  }

 private:
  const Template::Impl& t_;
  const Options& o_;
  const Value& ctx_;
  std::vector<Frame> frames_;
  uint64_t steps_ = 0;
  int depth_ = 0;

  struct Depth {
    Interp& in;
    explicit Depth(Interp& i) : in(i) {
      if (++in.depth_ > in.o_.max_depth * 2) fail("evaluation nested too deeply (recursive macro?)");
    }
    ~Depth() { --in.depth_; }
  };

  [[noreturn]] void line_error(int line, const Pending& p) {
    std::string msg = o_.name + " line " + std::to_string(line) + ": " + p.msg;
    if (p.raised) throw RaisedError(msg);
    throw Error(msg);
  }
  void step() {
    if (++steps_ > o_.max_steps) fail("template exceeded the evaluation step limit");
  }
  void append(std::string& out, const std::string& s) {
    if (out.size() + s.size() > o_.max_output) fail("output exceeds the size limit");
    out += s;
  }
  void check_str(size_t n) {
    if (n > o_.max_output) fail("string exceeds the size limit");
  }
  void check_items(size_t n) {
    if (n > o_.max_items) fail("list exceeds the size limit");
  }

  // ------------------------------------------------------------------------------------------ variables
  Value lookup(const std::string& name) {
    for (size_t i = frames_.size(); i-- > 0;) {
      if (Value* v = frames_[i].find(name)) return *v;
      if (frames_[i].barrier) break;
    }
    if (Value* v = frames_[0].find(name)) return *v;
    if (ctx_.is_dict())
      if (const Value* v = ctx_.dict_ref().find(name)) return *v;
    Value g = global(name);
    if (!g.is_undefined()) return g;
    return Value::undefined(name);
  }
  void assign(const std::vector<std::string>& names, const Value& v) {
    if (names.size() == 1) {
      frames_.back().set(names[0], v);
      return;
    }
    List items = iterate(v);
    if (items.size() != names.size())
      fail("cannot unpack " + std::to_string(items.size()) + " values into " + std::to_string(names.size()) +
           " variables");
    for (size_t i = 0; i < names.size(); ++i) frames_.back().set(names[i], items[i]);
  }

  // ------------------------------------------------------------------------------------------ statements
  Flow exec_body(const Body& body, std::string& out) {
    for (const NodeP& n : body) {
      Flow f = exec(*n, out);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Flow exec(const Node& n, std::string& out) {
    Depth d(*this);
    try {
      step();
      switch (n.kind) {
        case NK::Text: append(out, n.s); return Flow::Normal;
        case NK::Output: append(out, stringify(eval(*n.a[0]))); return Flow::Normal;
        case NK::If:
          for (size_t i = 0; i < n.a.size(); ++i)
            if (eval(*n.a[i]).truthy()) return exec_body(n.bodies[i], out);
          if (n.bodies.size() > n.a.size()) return exec_body(n.bodies.back(), out);
          return Flow::Normal;
        case NK::For: exec_for(n, out); return Flow::Normal;
        case NK::Set: assign(n.names, eval(*n.a[0])); return Flow::Normal;
        case NK::SetAttr: {
          Value target = lookup(n.s);
          if (!target.is_dict() || !target.dict_ref().is_namespace)
            fail("cannot assign attribute '" + n.s2 + "' on '" + n.s + "': not a namespace()");
          target.dict_ref().set(n.s2, eval(*n.a[0]));
          return Flow::Normal;
        }
        case NK::SetBlock: {
          std::string s;
          exec_body(n.bodies[0], s);
          frames_.back().set(n.names[0], Value(std::move(s)));
          return Flow::Normal;
        }
        case NK::Macro: frames_.back().set(n.s, make_macro(n)); return Flow::Normal;
        case NK::Break: return Flow::Break;
        case NK::Continue: return Flow::Continue;
        case NK::Generation: return exec_body(n.bodies[0], out);
        case NK::FilterBlock: {
          std::string s;
          Flow f = exec_body(n.bodies[0], s);
          append(out, stringify(apply_filter_chain(*n.a[0], Value(std::move(s)))));
          return f;
        }
        default: fail("internal: not a statement");
      }
    } catch (const Pending& p) {
      line_error(n.line, p);
    }
  }

  Value apply_filter_chain(const Node& f, Value input) {
    if (f.kind != NK::Filter) return input;
    Value inner = apply_filter_chain(*f.a[0], std::move(input));
    CallArgs args = eval_args(f);
    return filter(f.s, inner, args);
  }

  void exec_for(const Node& n, std::string& out) {
    Value seq = eval(*n.a[0]);
    if (seq.is_none()) fail("'NoneType' object is not iterable");
    List items = iterate(seq);
    frames_.push_back({});
    struct Pop {
      std::vector<Frame>& f;
      ~Pop() { f.pop_back(); }
    } pop{frames_};
    if (n.a[1]) {  // for x in xs if cond: filter first (loop.length counts what is left)
      List kept;
      for (const Value& it : items) {
        step();
        assign(n.names, it);
        if (eval(*n.a[1]).truthy()) kept.push_back(it);
      }
      items = std::move(kept);
    }
    const size_t len = items.size();
    // One loop object per loop, updated in place each iteration (jinja's LoopContext is one mutable object too).
    Value loop = Value::dict();
    Dict& L = loop.dict_ref();
    auto counter = std::make_shared<size_t>(0);
    for (const char* k : {"index", "index0", "revindex", "revindex0", "first", "last", "length", "depth", "depth0",
                          "previtem", "nextitem"})
      L.items.emplace_back(k, Value());
    L.items.emplace_back("cycle", Value::function("loop.cycle", [counter](CallArgs& a) -> Value {
      if (a.pos.empty()) fail("loop.cycle() needs at least one argument");
      return a.pos[*counter % a.pos.size()];
    }));
    for (size_t i = 0; i < len; ++i) {
      step();
      frames_.back().vars.clear();  // each iteration has its own scope, as in jinja2
      *counter = i;
      L.items[0].second = Value(int64_t(i + 1));
      L.items[1].second = Value(int64_t(i));
      L.items[2].second = Value(int64_t(len - i));
      L.items[3].second = Value(int64_t(len - i - 1));
      L.items[4].second = Value(i == 0);
      L.items[5].second = Value(i + 1 == len);
      L.items[6].second = Value(int64_t(len));
      L.items[7].second = Value(int64_t(1));
      L.items[8].second = Value(int64_t(0));
      L.items[9].second = i > 0 ? items[i - 1] : Value::undefined("previtem");
      L.items[10].second = i + 1 < len ? items[i + 1] : Value::undefined("nextitem");
      frames_.back().set("loop", loop);
      assign(n.names, items[i]);
      Flow f = exec_body(n.bodies[0], out);
      if (f == Flow::Break) break;
    }
    if (len == 0 && n.bodies.size() > 1) {
      frames_.back().vars.clear();
      exec_body(n.bodies[1], out);
    }
  }

  Value make_macro(const Node& n) {
    const Node* node = &n;
    return Value::function(n.s, [this, node](CallArgs& a) -> Value {
      if (a.pos.size() > node->names.size())
        fail("macro '" + node->s + "' takes " + std::to_string(node->names.size()) + " arguments, got " +
             std::to_string(a.pos.size()));
      Depth d(*this);
      Frame f;
      f.barrier = true;
      frames_.push_back(std::move(f));
      struct Pop {
        std::vector<Frame>& f;
        ~Pop() { f.pop_back(); }
      } pop{frames_};
      for (const auto& [k, v] : a.kw) {
        if (std::find(node->names.begin(), node->names.end(), k) == node->names.end())
          fail("macro '" + node->s + "' has no parameter '" + k + "'");
      }
      for (size_t i = 0; i < node->names.size(); ++i) {
        Value v;
        bool have = false;
        if (i < a.pos.size()) {
          v = a.pos[i];
          have = true;
        }
        for (const auto& [k, kv] : a.kw)
          if (k == node->names[i]) {
            v = kv;
            have = true;
          }
        if (!have) v = node->defaults[i] ? eval(*node->defaults[i]) : Value::undefined(node->names[i]);
        frames_.back().set(node->names[i], v);
      }
      std::string s;
      exec_body(node->bodies[0], s);
      return Value(std::move(s));
    });
  }

  // ------------------------------------------------------------------------------------------ expressions
  std::string stringify(const Value& v) {
    std::string s;
    str_into(v, s, 0);
    return s;
  }

  List iterate(const Value& v) {
    switch (v.kind()) {
      case Value::Kind::Undefined: return {};
      case Value::Kind::List: return v.list();
      case Value::Kind::Dict: {
        List keys;
        for (const auto& kv : v.dict_ref().items) keys.emplace_back(kv.first);
        return keys;
      }
      case Value::Kind::String: {
        List chars;
        for (auto& c : code_points(v.str())) chars.emplace_back(std::move(c));
        return chars;
      }
      default: fail(std::string("'") + kind_name(v) + "' object is not iterable");
    }
  }

  CallArgs eval_args(const Node& n) {
    CallArgs a;
    for (const NodeP& x : n.args) a.pos.push_back(eval(*x));
    for (const auto& [k, x] : n.kwargs) a.kw.emplace_back(k, eval(*x));
    return a;
  }

  Value eval(const Node& n) {
    Depth d(*this);
    try {
      step();
      return eval_inner(n);
    } catch (const Pending& p) {
      line_error(n.line, p);
    }
  }

  Value eval_inner(const Node& n) {
    switch (n.kind) {
      case NK::Literal: return n.lit;
      case NK::Name: return lookup(n.s);
      case NK::ListLit:
      case NK::TupleLit: {
        List l;
        for (const NodeP& x : n.a) l.push_back(eval(*x));
        return Value(std::move(l));
      }
      case NK::DictLit: {
        Value d = Value::dict();
        for (size_t i = 0; i + 1 < n.a.size(); i += 2) {
          Value k = eval(*n.a[i]);
          if (!k.is_string()) fail("unsupported: dict literal key of type " + std::string(kind_name(k)));
          d.dict_ref().set(k.str(), eval(*n.a[i + 1]));
        }
        return d;
      }
      case NK::Attr: return get_attr(eval(*n.a[0]), n.s);
      case NK::Subscript: {
        Value obj = eval(*n.a[0]);
        if (n.a[1]->kind == NK::Slice) return slice(obj, *n.a[1]);
        return get_item(obj, eval(*n.a[1]));
      }
      case NK::Call: {
        Value fn = eval(*n.a[0]);
        CallArgs args = eval_args(n);
        if (fn.is_undefined()) {
          if (n.a[0]->kind == NK::Name) fail("unknown function '" + n.a[0]->s + "'");
          if (n.a[0]->kind == NK::Attr) fail("unknown method '" + n.a[0]->s + "' on this value");
          undefined_error(fn);
        }
        if (!fn.is_function()) fail(std::string("'") + kind_name(fn) + "' object is not callable");
        return fn.function().fn(args);
      }
      case NK::Filter: {
        Value v = eval(*n.a[0]);
        CallArgs args = eval_args(n);
        return filter(n.s, v, args);
      }
      case NK::Test: {
        Value v = eval(*n.a[0]);
        CallArgs args = eval_args(n);
        bool r = test(n.s, v, args.pos);
        return Value(n.negate ? !r : r);
      }
      case NK::Neg:
      case NK::Pos: {
        Value v = eval(*n.a[0]);
        if (v.is_undefined()) undefined_error(v);
        if (!numeric(v)) fail(std::string("bad operand type for unary ") + (n.kind == NK::Neg ? "-" : "+") + ": '" +
                              kind_name(v) + "'");
        if (n.kind == NK::Pos) return intlike(v) ? Value(int_of(v)) : v;
        if (intlike(v)) {
          if (int_of(v) == std::numeric_limits<int64_t>::min()) fail("integer overflow");
          return Value(-int_of(v));
        }
        return Value(-v.as_float());
      }
      case NK::Not: return Value(!eval(*n.a[0]).truthy());
      case NK::And: {
        Value l = eval(*n.a[0]);
        return l.truthy() ? eval(*n.a[1]) : l;
      }
      case NK::Or: {
        Value l = eval(*n.a[0]);
        return l.truthy() ? l : eval(*n.a[1]);
      }
      case NK::Cond: {
        if (eval(*n.a[1]).truthy()) return eval(*n.a[0]);
        return n.a[2] ? eval(*n.a[2]) : Value::undefined();
      }
      case NK::Compare: {
        Value l = eval(*n.a[0]);
        for (size_t i = 0; i < n.names.size(); ++i) {
          Value r = eval(*n.a[i + 1]);
          if (!compare_op(n.names[i], l, r)) return Value(false);
          l = std::move(r);
        }
        return Value(true);
      }
      case NK::Binary: return binary_op(n.s, eval(*n.a[0]), eval(*n.a[1]));
      default: fail("internal: not an expression");
    }
  }

  bool contains(const Value& container, const Value& item) {
    switch (container.kind()) {
      case Value::Kind::String:
        if (!item.is_string()) fail("'in <string>' requires a string as left operand");
        return container.str().find(item.str()) != std::string::npos;
      case Value::Kind::List:
        for (const Value& x : container.list())
          if (equals(x, item)) return true;
        return false;
      case Value::Kind::Dict: return item.is_string() && container.dict_ref().find(item.str()) != nullptr;
      case Value::Kind::Undefined: return false;
      default: fail(std::string("argument of type '") + kind_name(container) + "' is not iterable");
    }
  }

  bool compare_op(const std::string& op, const Value& l, const Value& r) {
    if (op == "==") return equals(l, r);
    if (op == "!=") return !equals(l, r);
    if (op == "in") return contains(r, l);
    if (op == "not in") return !contains(r, l);
    int c = compare(l, r);
    if (op == "<") return c < 0;
    if (op == ">") return c > 0;
    if (op == "<=") return c <= 0;
    return c >= 0;
  }

  Value repeat(const Value& seq, int64_t times) {
    if (times <= 0) return seq.is_string() ? Value(std::string()) : Value(List{});
    if (seq.is_string()) {
      if (!seq.str().empty() && uint64_t(times) > o_.max_output / seq.str().size()) fail("string exceeds the size limit");
      std::string s;
      for (int64_t i = 0; i < times; ++i) s += seq.str();
      return Value(std::move(s));
    }
    const List& l = seq.list();
    if (!l.empty() && uint64_t(times) > o_.max_items / l.size()) fail("list exceeds the size limit");
    List out;
    for (int64_t i = 0; i < times; ++i) out.insert(out.end(), l.begin(), l.end());
    return Value(std::move(out));
  }

  Value binary_op(const std::string& op, const Value& l, const Value& r) {
    if (op == "~") {
      std::string s = stringify(l) + stringify(r);
      check_str(s.size());
      return Value(std::move(s));
    }
    if (l.is_undefined()) undefined_error(l);
    if (r.is_undefined()) undefined_error(r);
    auto type_error = [&]() -> Value {
      fail("unsupported operand types for " + op + ": '" + kind_name(l) + "' and '" + kind_name(r) + "'");
    };
    if (op == "+") {
      if (l.is_string() && r.is_string()) {
        check_str(l.str().size() + r.str().size());
        return Value(l.str() + r.str());
      }
      if (l.is_list() && r.is_list()) {
        check_items(l.list().size() + r.list().size());
        List out = l.list();
        out.insert(out.end(), r.list().begin(), r.list().end());
        return Value(std::move(out));
      }
    }
    if (op == "*") {
      if ((l.is_string() || l.is_list()) && intlike(r)) return repeat(l, int_of(r));
      if ((r.is_string() || r.is_list()) && intlike(l)) return repeat(r, int_of(l));
    }
    if (!numeric(l) || !numeric(r)) return type_error();
    const bool ints = intlike(l) && intlike(r);
    if (ints) {
      int64_t a = int_of(l), b = int_of(r), res = 0;
      if (op == "+") {
        if (__builtin_add_overflow(a, b, &res)) fail("integer overflow");
        return Value(res);
      }
      if (op == "-") {
        if (__builtin_sub_overflow(a, b, &res)) fail("integer overflow");
        return Value(res);
      }
      if (op == "*") {
        if (__builtin_mul_overflow(a, b, &res)) fail("integer overflow");
        return Value(res);
      }
      if (op == "//" || op == "%") {
        if (b == 0) fail("integer division or modulo by zero");
        if (a == std::numeric_limits<int64_t>::min() && b == -1) fail("integer overflow");
        int64_t q = a / b, m = a % b;
        if (m != 0 && ((m < 0) != (b < 0))) {
          --q;
          m += b;
        }
        return Value(op == "//" ? q : m);
      }
      if (op == "**" && b >= 0) {
        int64_t acc = 1;
        for (int64_t i = 0; i < b; ++i) {
          if (__builtin_mul_overflow(acc, a, &acc)) fail("integer overflow");
          if (acc == 0 || acc == 1) break;
          if (acc == -1) {
            acc = ((b - i - 1) % 2 == 0) ? -1 : 1;
            break;
          }
        }
        return Value(acc);
      }
    }
    double a = num_of(l), b = num_of(r);
    if (op == "+") return Value(a + b);
    if (op == "-") return Value(a - b);
    if (op == "*") return Value(a * b);
    if (op == "/") {
      if (b == 0) fail("division by zero");
      return Value(a / b);
    }
    if (op == "//") {
      if (b == 0) fail("float floor division by zero");
      return Value(std::floor(a / b));
    }
    if (op == "%") {
      if (b == 0) fail("float modulo by zero");
      double m = std::fmod(a, b);
      if (m != 0 && ((m < 0) != (b < 0))) m += b;
      return Value(m);
    }
    if (op == "**") return Value(std::pow(a, b));
    return type_error();
  }

  static int64_t norm_index(int64_t i, size_t n) { return i < 0 ? i + int64_t(n) : i; }

  Value get_item(const Value& obj, const Value& key) {
    switch (obj.kind()) {
      case Value::Kind::Undefined: undefined_error(obj);
      case Value::Kind::Dict:
        if (key.is_string()) {
          if (const Value* v = obj.dict_ref().find(key.str())) return *v;
          return get_attr_method(obj, key.str());
        }
        return Value::undefined();
      case Value::Kind::List:
        if (intlike(key)) {
          int64_t i = norm_index(int_of(key), obj.list().size());
          if (i < 0 || i >= int64_t(obj.list().size())) return Value::undefined();
          return obj.list()[size_t(i)];
        }
        if (key.is_string()) return get_attr(obj, key.str());
        return Value::undefined();
      case Value::Kind::String:
        if (intlike(key)) {
          if (is_ascii(obj.str())) {
            int64_t i = norm_index(int_of(key), obj.str().size());
            if (i < 0 || i >= int64_t(obj.str().size())) return Value::undefined();
            return Value(std::string(1, obj.str()[size_t(i)]));
          }
          auto cps = code_points(obj.str());
          int64_t i = norm_index(int_of(key), cps.size());
          if (i < 0 || i >= int64_t(cps.size())) return Value::undefined();
          return Value(cps[size_t(i)]);
        }
        if (key.is_string()) return get_attr(obj, key.str());
        return Value::undefined();
      default:
        if (key.is_string()) return get_attr(obj, key.str());
        return Value::undefined();
    }
  }

  Value slice(const Value& obj, const Node& sn) {
    auto bound = [&](const NodeP& e) -> std::optional<int64_t> {
      if (!e) return std::nullopt;
      Value v = eval(*e);
      if (v.is_none()) return std::nullopt;
      if (!intlike(v)) fail("slice indices must be integers or None");
      return int_of(v);
    };
    std::optional<int64_t> start = bound(sn.a[0]), stop = bound(sn.a[1]), stepv = bound(sn.a[2]);
    int64_t st = stepv.value_or(1);
    if (st == 0) fail("slice step cannot be zero");
    if (obj.is_undefined()) undefined_error(obj);
    std::vector<std::string> cps;
    size_t n;
    if (obj.is_string()) {
      cps = code_points(obj.str());
      n = cps.size();
    } else if (obj.is_list()) {
      n = obj.list().size();
    } else {
      fail(std::string("'") + kind_name(obj) + "' object is not subscriptable");
    }
    const int64_t len = int64_t(n);
    auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
      if (!v) return dflt;
      int64_t x = *v < 0 ? *v + len : *v;
      if (st > 0) return std::clamp<int64_t>(x, 0, len);
      return std::clamp<int64_t>(x, -1, len - 1);
    };
    int64_t b = clamp(start, st > 0 ? 0 : len - 1), e = clamp(stop, st > 0 ? len : -1);
    std::vector<size_t> idx;
    if (st > 0)
      for (int64_t i = b; i < e; i += st) idx.push_back(size_t(i));
    else
      for (int64_t i = b; i > e; i += st) idx.push_back(size_t(i));
    if (obj.is_string()) {
      std::string s;
      for (size_t i : idx) s += cps[i];
      return Value(std::move(s));
    }
    List out;
    for (size_t i : idx) out.push_back(obj.list()[i]);
    return Value(std::move(out));
  }

  // obj.name: a method if the type has one by that name, else a dict key, else undefined.
  Value get_attr(const Value& obj, const std::string& name) {
    if (obj.is_undefined()) undefined_error(obj);
    Value m = get_attr_method(obj, name);
    if (!m.is_undefined()) return m;
    if (obj.is_dict())
      if (const Value* v = obj.dict_ref().find(name)) return *v;
    return Value::undefined(name);
  }

  Value get_attr_method(const Value& obj, const std::string& name) {
    if (obj.is_string()) return string_method(obj, name);
    if (obj.is_dict() && !obj.dict_ref().is_namespace) return dict_method(obj, name);
    if (obj.is_list()) return list_method(obj, name);
    return Value::undefined(name);
  }

  static Value arg(CallArgs& a, size_t i, const char* kw, const Value& dflt) {
    if (i < a.pos.size()) return a.pos[i];
    for (const auto& [k, v] : a.kw)
      if (k == kw) return v;
    return dflt;
  }
  static void check_kwargs(CallArgs& a, const std::string& fname, std::initializer_list<const char*> allowed,
                           size_t max_pos) {
    if (a.pos.size() > max_pos)
      fail(fname + "() takes at most " + std::to_string(max_pos) + " arguments, got " + std::to_string(a.pos.size()));
    for (const auto& [k, v] : a.kw) {
      bool ok = false;
      for (const char* x : allowed)
        if (k == x) ok = true;
      if (!ok) fail(fname + "() got an unexpected keyword argument '" + k + "'");
    }
  }
  static const std::string& need_str(const Value& v, const std::string& what) {
    if (!v.is_string()) fail(what + " must be a string, not " + kind_name(v));
    return v.str();
  }

  Value string_method(const Value& self, const std::string& name) {
    const std::string s = self.str();
    auto method = [&](auto fn) { return Value::function(name, fn); };
    static const Value kNone = Value::none();
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      bool l = name != "rstrip", r = name != "lstrip";
      return method([s, l, r, name](CallArgs& a) -> Value {
        check_kwargs(a, name, {}, 1);
        const Value& c = arg(a, 0, "chars", kNone);
        if (c.is_none()) return Value(strip_chars(s, nullptr, l, r));
        return Value(strip_chars(s, &need_str(c, "chars"), l, r));
      });
    }
    if (name == "upper") return method([s](CallArgs&) -> Value { return Value(upper_s(s)); });
    if (name == "lower") return method([s](CallArgs&) -> Value { return Value(lower_s(s)); });
    if (name == "title") return method([s](CallArgs&) -> Value { return Value(py_title(s)); });
    if (name == "capitalize") return method([s](CallArgs&) -> Value { return Value(capitalize(s)); });
    if (name == "startswith" || name == "endswith") {
      bool starts = name == "startswith";
      return method([s, starts, name](CallArgs& a) -> Value {
        check_kwargs(a, name, {}, 1);
        if (a.pos.empty()) fail(name + "() takes one argument");
        List cands = a.pos[0].is_list() ? a.pos[0].list() : List{a.pos[0]};
        for (const Value& c : cands) {
          const std::string& p = need_str(c, name + " argument");
          if (p.size() <= s.size() &&
              (starts ? s.compare(0, p.size(), p) == 0 : s.compare(s.size() - p.size(), p.size(), p) == 0))
            return Value(true);
        }
        return Value(false);
      });
    }
    if (name == "split" || name == "rsplit") {
      bool rev = name == "rsplit";
      return method([s, rev, name](CallArgs& a) -> Value {
        check_kwargs(a, name, {"sep", "maxsplit"}, 2);
        const Value& sep = arg(a, 0, "sep", kNone);
        const Value& ms = arg(a, 1, "maxsplit", Value(int64_t(-1)));
        if (!ms.is_int()) fail("maxsplit must be an integer");
        return Value(py_split(s, sep.is_none() ? nullptr : &need_str(sep, "sep"), ms.as_int(), rev));
      });
    }
    if (name == "replace") {
      return method([s](CallArgs& a) -> Value {
        check_kwargs(a, "replace", {}, 3);
        if (a.pos.size() < 2) fail("replace() takes at least 2 arguments");
        int64_t count = a.pos.size() > 2 && a.pos[2].is_int() ? a.pos[2].as_int() : -1;
        return Value(replace_all(s, need_str(a.pos[0], "old"), need_str(a.pos[1], "new"), count));
      });
    }
    if (name == "find" || name == "rfind" || name == "count" || name == "index") {
      return method([s, name](CallArgs& a) -> Value {
        check_kwargs(a, name, {}, 1);
        if (a.pos.empty()) fail(name + "() takes one argument");
        const std::string& sub = need_str(a.pos[0], name + " argument");
        if (name == "count") {
          if (sub.empty()) return Value(int64_t(utf8_length(s) + 1));
          int64_t c = 0;
          for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++c;
          return Value(c);
        }
        size_t p = name == "rfind" ? s.rfind(sub) : s.find(sub);
        if (p == std::string::npos) {
          if (name == "index") fail("substring not found");
          return Value(int64_t(-1));
        }
        return Value(int64_t(utf8_length(s.substr(0, p))));
      });
    }
    if (name == "join") {
      return method([this, s](CallArgs& a) -> Value {
        if (a.pos.size() != 1) fail("join() takes one argument");
        std::string out;
        bool first = true;
        for (const Value& x : iterate(a.pos[0])) {
          if (!first) out += s;
          first = false;
          out += need_str(x, "join item");
          check_str(out.size());
        }
        return Value(std::move(out));
      });
    }
    if (name == "splitlines") {
      return method([s](CallArgs&) -> Value {
        List out;
        std::string cur;
        for (size_t i = 0; i < s.size(); ++i) {
          if (s[i] == '\n' || s[i] == '\r') {
            out.emplace_back(cur);
            cur.clear();
            if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
          } else {
            cur += s[i];
          }
        }
        if (!cur.empty()) out.emplace_back(cur);
        return Value(std::move(out));
      });
    }
    if (name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" || name == "islower" ||
        name == "isupper") {
      return method([s, name](CallArgs&) -> Value {
        if (s.empty()) return Value(false);
        bool any_cased = false;
        for (char c : s) {
          if (name == "isdigit" && !digit_c(c)) return Value(false);
          if (name == "isalpha" && !alpha_c(c)) return Value(false);
          if (name == "isalnum" && !alpha_c(c) && !digit_c(c)) return Value(false);
          if (name == "isspace" && !py_space(c)) return Value(false);
          if (name == "islower" && c >= 'A' && c <= 'Z') return Value(false);
          if (name == "isupper" && c >= 'a' && c <= 'z') return Value(false);
          if (alpha_c(c)) any_cased = true;
        }
        if (name == "islower" || name == "isupper") return Value(any_cased);
        return Value(true);
      });
    }
    return Value::undefined(name);
  }

  Value dict_method(const Value& self, const std::string& name) {
    Value d = self;
    if (name == "items")
      return Value::function(name, [d](CallArgs&) -> Value {
        List out;
        for (const auto& [k, v] : d.dict_ref().items) out.push_back(Value(List{Value(k), v}));
        return Value(std::move(out));
      });
    if (name == "keys")
      return Value::function(name, [d](CallArgs&) -> Value {
        List out;
        for (const auto& kv : d.dict_ref().items) out.emplace_back(kv.first);
        return Value(std::move(out));
      });
    if (name == "values")
      return Value::function(name, [d](CallArgs&) -> Value {
        List out;
        for (const auto& kv : d.dict_ref().items) out.push_back(kv.second);
        return Value(std::move(out));
      });
    if (name == "get")
      return Value::function(name, [d](CallArgs& a) -> Value {
        if (a.pos.empty() || a.pos.size() > 2) fail("get() takes 1 or 2 arguments");
        if (a.pos[0].is_string())
          if (const Value* v = d.dict_ref().find(a.pos[0].str())) return *v;
        return a.pos.size() > 1 ? a.pos[1] : Value::none();
      });
    return Value::undefined(name);
  }

  Value list_method(const Value& self, const std::string& name) {
    Value l = self;
    if (name == "index" || name == "count")
      return Value::function(name, [l, name](CallArgs& a) -> Value {
        if (a.pos.size() != 1) fail(name + "() takes one argument");
        int64_t c = 0;
        for (size_t i = 0; i < l.list().size(); ++i)
          if (equals(l.list()[i], a.pos[0])) {
            if (name == "index") return Value(int64_t(i));
            ++c;
          }
        if (name == "index") fail("value is not in list");
        return Value(c);
      });
    return Value::undefined(name);
  }

  // ------------------------------------------------------------------------------------------ string helpers
  static std::string capitalize(const std::string& s) {
    std::string out = lower_s(s);
    if (!out.empty()) out[0] = upper_c(out[0]);
    return out;
  }
  // str.title(): a letter after a non-letter starts a word.
  static std::string py_title(const std::string& s) {
    std::string out = s;
    bool prev_cased = false;
    for (char& c : out) {
      if (alpha_c(c)) {
        c = prev_cased ? lower_c(c) : upper_c(c);
        prev_cased = true;
      } else {
        prev_cased = static_cast<unsigned char>(c) >= 0x80 && prev_cased;
      }
    }
    return out;
  }
  // jinja's title filter: words start after whitespace or one of - ( { [ <.
  static std::string jinja_title(const std::string& s) {
    std::string out;
    bool start = true;
    for (char c : s) {
      if (py_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<') {
        out += c;
        start = true;
      } else {
        out += start ? upper_c(c) : lower_c(c);
        start = false;
      }
    }
    return out;
  }
  static std::string replace_all(const std::string& s, const std::string& from, const std::string& to,
                                 int64_t count) {
    if (from.empty()) {
      std::string out;
      int64_t n = 0;
      for (const auto& cp : code_points(s)) {
        if (count < 0 || n < count) {
          out += to;
          ++n;
        }
        out += cp;
      }
      if (count < 0 || n < count) out += to;
      return out;
    }
    std::string out;
    size_t p = 0;
    int64_t n = 0;
    for (;;) {
      size_t q = (count >= 0 && n >= count) ? std::string::npos : s.find(from, p);
      if (q == std::string::npos) {
        out.append(s, p, std::string::npos);
        return out;
      }
      out.append(s, p, q - p);
      out += to;
      p = q + from.size();
      ++n;
    }
  }
  static List py_split(const std::string& s, const std::string* sep, int64_t maxsplit, bool rev) {
    std::vector<std::string> parts;
    if (sep) {
      if (sep->empty()) fail("empty separator");
      if (!rev) {
        size_t p = 0;
        int64_t n = 0;
        for (;;) {
          size_t q = (maxsplit >= 0 && n >= maxsplit) ? std::string::npos : s.find(*sep, p);
          if (q == std::string::npos) {
            parts.push_back(s.substr(p));
            break;
          }
          parts.push_back(s.substr(p, q - p));
          p = q + sep->size();
          ++n;
        }
      } else {
        size_t e = s.size();
        int64_t n = 0;
        for (;;) {
          size_t q = (maxsplit >= 0 && n >= maxsplit) || e < sep->size() ? std::string::npos
                                                                          : s.rfind(*sep, e - sep->size());
          if (q == std::string::npos) {
            parts.insert(parts.begin(), s.substr(0, e));
            break;
          }
          parts.insert(parts.begin(), s.substr(q + sep->size(), e - q - sep->size()));
          e = q;
          ++n;
        }
      }
    } else {
      // whitespace split: runs of whitespace separate, no empty strings
      if (!rev) {
        size_t i = 0;
        int64_t n = 0;
        while (i < s.size()) {
          while (i < s.size() && py_space(s[i])) ++i;
          if (i >= s.size()) break;
          if (maxsplit >= 0 && n >= maxsplit) {
            size_t e = s.size();
            while (e > i && py_space(s[e - 1])) --e;
            parts.push_back(s.substr(i, e - i));
            break;
          }
          size_t j = i;
          while (j < s.size() && !py_space(s[j])) ++j;
          parts.push_back(s.substr(i, j - i));
          ++n;
          i = j;
        }
      } else {
        size_t e = s.size();
        int64_t n = 0;
        while (e > 0) {
          while (e > 0 && py_space(s[e - 1])) --e;
          if (e == 0) break;
          if (maxsplit >= 0 && n >= maxsplit) {
            size_t b = 0;
            while (b < e && py_space(s[b])) ++b;
            parts.insert(parts.begin(), s.substr(b, e - b));
            break;
          }
          size_t b = e;
          while (b > 0 && !py_space(s[b - 1])) --b;
          parts.insert(parts.begin(), s.substr(b, e - b));
          ++n;
          e = b;
        }
      }
    }
    List out;
    for (auto& p : parts) out.emplace_back(std::move(p));
    return out;
  }

  // ------------------------------------------------------------------------------------------ globals
  Value global(const std::string& name) {
    if (name == "range")
      return Value::function(name, [this](CallArgs& a) -> Value {
        check_kwargs(a, "range", {}, 3);
        if (a.pos.empty()) fail("range() takes 1 to 3 arguments");
        for (const Value& v : a.pos)
          if (!intlike(v)) fail("range() arguments must be integers");
        int64_t start = 0, stop, st = 1;
        if (a.pos.size() == 1) {
          stop = int_of(a.pos[0]);
        } else {
          start = int_of(a.pos[0]);
          stop = int_of(a.pos[1]);
          if (a.pos.size() == 3) st = int_of(a.pos[2]);
        }
        if (st == 0) fail("range() step must not be zero");
        long double count = st > 0 ? (stop > start ? ((long double)stop - start + st - 1) / st : 0)
                                   : (start > stop ? ((long double)start - stop - st - 1) / -st : 0);
        if (count > (long double)o_.max_items)
          fail("range() of " + std::to_string((unsigned long long)count) + " items exceeds the limit of " +
               std::to_string(o_.max_items));
        List out;
        for (int64_t i = start; st > 0 ? i < stop : i > stop; i += st) {
          out.emplace_back(i);
          if ((st > 0 && i > std::numeric_limits<int64_t>::max() - st) ||
              (st < 0 && i < std::numeric_limits<int64_t>::min() - st))
            break;
        }
        return Value(std::move(out));
      });
    if (name == "namespace" || name == "dict")
      return Value::function(name, [name](CallArgs& a) -> Value {
        Value d = Value::dict();
        d.dict_ref().is_namespace = name == "namespace";
        if (a.pos.size() > 1) fail(name + "() takes at most one positional argument");
        if (a.pos.size() == 1) {
          if (!a.pos[0].is_dict()) fail(name + "() positional argument must be a dict");
          for (const auto& [k, v] : a.pos[0].dict_ref().items) d.dict_ref().set(k, v);
        }
        for (const auto& [k, v] : a.kw) d.dict_ref().set(k, v);
        return d;
      });
    if (name == "raise_exception")
      return Value::function(name, [](CallArgs& a) -> Value {
        std::string msg = a.pos.empty() ? std::string("raise_exception() called") : to_string(a.pos[0]);
        throw Pending{msg, true};
      });
    if (name == "strftime_now")
      return Value::function(name, [this](CallArgs& a) -> Value {
        if (a.pos.size() != 1 || !a.pos[0].is_string()) fail("strftime_now() takes one string argument");
        if (o_.strftime_now) return Value(o_.strftime_now(a.pos[0].str()));
        std::time_t now = std::time(nullptr);
        std::tm tm{};
#if defined(_WIN32)
        localtime_s(&tm, &now);
#else
        localtime_r(&now, &tm);
#endif
        char buf[512];
        size_t n = std::strftime(buf, sizeof buf, a.pos[0].str().c_str(), &tm);
        return Value(std::string(buf, n));
      });
    return Value::undefined(name);
  }

  // ------------------------------------------------------------------------------------------ tests
  bool test(const std::string& name, const Value& v, std::vector<Value>& args) {
    auto need = [&](size_t n) {
      if (args.size() != n)
        fail("test '" + name + "' takes " + std::to_string(n) + " argument" + (n == 1 ? "" : "s"));
    };
    auto cmp = [&](auto pred) {
      need(1);
      return pred(v, args[0]);
    };
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "string") return v.is_string();
    if (name == "number") return v.is_int() || v.is_float() || v.is_bool();
    if (name == "integer") return v.is_int();
    if (name == "float") return v.is_float();
    if (name == "boolean") return v.is_bool();
    if (name == "true") return v.is_bool() && v.as_bool();
    if (name == "false") return v.is_bool() && !v.as_bool();
    if (name == "mapping") return v.is_dict();
    if (name == "sequence") return v.is_list() || v.is_string() || v.is_dict();
    if (name == "iterable") return v.is_list() || v.is_string() || v.is_dict() || v.is_undefined();
    if (name == "callable") return v.is_function();
    if (name == "odd" || name == "even") {
      if (!intlike(v)) fail("test '" + name + "' needs an integer");
      int64_t m = int_of(v) % 2;
      return name == "odd" ? m != 0 : m == 0;
    }
    if (name == "divisibleby") {
      need(1);
      if (!intlike(v) || !intlike(args[0])) fail("test 'divisibleby' needs integers");
      if (int_of(args[0]) == 0) fail("integer division or modulo by zero");
      return int_of(v) % int_of(args[0]) == 0;
    }
    if (name == "eq" || name == "equalto" || name == "==") return cmp([](auto& a, auto& b) { return equals(a, b); });
    if (name == "ne" || name == "!=") return cmp([](auto& a, auto& b) { return !equals(a, b); });
    if (name == "lt" || name == "lessthan" || name == "<") return cmp([](auto& a, auto& b) { return compare(a, b) < 0; });
    if (name == "le" || name == "<=") return cmp([](auto& a, auto& b) { return compare(a, b) <= 0; });
    if (name == "gt" || name == "greaterthan" || name == ">")
      return cmp([](auto& a, auto& b) { return compare(a, b) > 0; });
    if (name == "ge" || name == ">=") return cmp([](auto& a, auto& b) { return compare(a, b) >= 0; });
    if (name == "in") {
      need(1);
      return contains(args[0], v);
    }
    if (name == "sameas") {
      need(1);
      const Value& o = args[0];
      if (v.kind() != o.kind()) return false;
      if (v.identity()) return v.identity() == o.identity();
      return equals(v, o);
    }
    if (name == "lower" || name == "upper") {
      if (!v.is_string()) return false;
      return name == "lower" ? lower_s(v.str()) == v.str() : upper_s(v.str()) == v.str();
    }
    fail("unknown test '" + name + "'");
  }

  // ------------------------------------------------------------------------------------------ filters
  // attribute path "a.b" or "0" of an item, as jinja's make_attrgetter resolves it.
  Value attr_path(const Value& item, const Value& path) {
    if (intlike(path)) return get_item(item, path);
    const std::string& p = need_str(path, "attribute");
    Value cur = item;
    size_t b = 0;
    for (;;) {
      size_t e = p.find('.', b);
      std::string part = p.substr(b, e == std::string::npos ? std::string::npos : e - b);
      bool digits = !part.empty() && std::all_of(part.begin(), part.end(), digit_c);
      cur = digits ? get_item(cur, Value(int64_t(std::strtoll(part.c_str(), nullptr, 10)))) : get_item(cur, Value(part));
      if (e == std::string::npos) return cur;
      b = e + 1;
    }
  }

  Value sort_key(const Value& v, bool case_sensitive) {
    if (!case_sensitive && v.is_string()) return Value(lower_s(v.str()));
    return v;
  }

  Value filter(const std::string& name, const Value& v, CallArgs& a) {
    static const Value kNone = Value::none();
    static const Value kFalse = Value(false);
    const std::string f = name;
    auto seq = [&]() { return iterate(v); };
    auto str_arg = [&](size_t i, const char* kw) -> std::string {
      const Value& x = arg(a, i, kw, kNone);
      if (x.is_none()) fail("filter '" + f + "' needs argument '" + kw + "'");
      return stringify(x);
    };

    if (f == "trim") {
      check_kwargs(a, f, {"chars"}, 1);
      const Value& c = arg(a, 0, "chars", kNone);
      if (c.is_none()) return Value(strip_chars(stringify(v), nullptr, true, true));
      return Value(strip_chars(stringify(v), &need_str(c, "chars"), true, true));
    }
    if (f == "length" || f == "count") {
      switch (v.kind()) {
        case Value::Kind::String: return Value(int64_t(utf8_length(v.str())));
        case Value::Kind::List: return Value(int64_t(v.list().size()));
        case Value::Kind::Dict: return Value(int64_t(v.dict_ref().items.size()));
        case Value::Kind::Undefined: return Value(int64_t(0));
        default: fail(std::string("object of type '") + kind_name(v) + "' has no len()");
      }
    }
    if (f == "tojson") {
      check_kwargs(a, f, {"indent", "ensure_ascii", "separators", "sort_keys"}, 1);
      const Value& ind = arg(a, 0, "indent", kNone);
      int indent = -1;
      if (intlike(ind)) indent = int(std::clamp<int64_t>(int_of(ind), 0, 64));
      else if (!ind.is_none()) fail("tojson: indent must be an integer");
      for (const auto& [k, x] : a.kw) {
        if (k == "ensure_ascii" && x.truthy()) fail("unsupported: tojson(ensure_ascii=true)");
        if (k == "separators" && !x.is_none()) fail("unsupported: tojson(separators=...)");
      }
      bool sort = false;
      for (const auto& [k, x] : a.kw)
        if (k == "sort_keys") sort = x.truthy();
      std::string out;
      json_into(v, out, indent, sort, 0);
      check_str(out.size());
      return Value(std::move(out));
    }
    if (f == "string") return v.is_string() ? v : Value(stringify(v));
    if (f == "safe") return v.is_string() ? v : Value(stringify(v));
    if (f == "lower") return Value(lower_s(stringify(v)));
    if (f == "upper") return Value(upper_s(stringify(v)));
    if (f == "title") return Value(jinja_title(stringify(v)));
    if (f == "capitalize") return Value(capitalize(stringify(v)));
    if (f == "escape" || f == "e") {
      std::string out;
      for (char c : stringify(v)) {
        switch (c) {
          case '&': out += "&amp;"; break;
          case '<': out += "&lt;"; break;
          case '>': out += "&gt;"; break;
          case '"': out += "&#34;"; break;
          case '\'': out += "&#39;"; break;
          default: out += c;
        }
      }
      return Value(std::move(out));
    }
    if (f == "replace") {
      check_kwargs(a, f, {"old", "new", "count"}, 3);
      const Value& cnt = arg(a, 2, "count", kNone);
      std::string r = replace_all(stringify(v), str_arg(0, "old"), str_arg(1, "new"), cnt.is_int() ? cnt.as_int() : -1);
      check_str(r.size());
      return Value(std::move(r));
    }
    if (f == "int") {
      check_kwargs(a, f, {"default", "base"}, 2);
      const Value& dflt = arg(a, 0, "default", Value(int64_t(0)));
      if (intlike(v)) return Value(int_of(v));
      if (v.is_float()) {
        double d = v.as_float();
        if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return dflt;
        return Value(int64_t(d));
      }
      if (v.is_string()) {
        std::string s = strip_chars(v.str(), nullptr, true, true);
        char* end = nullptr;
        errno = 0;
        long long x = std::strtoll(s.c_str(), &end, 10);
        if (!s.empty() && end && *end == 0 && errno == 0) return Value(int64_t(x));
        double d = std::strtod(s.c_str(), &end);
        if (!s.empty() && end && *end == 0 && std::isfinite(d) && std::fabs(d) < 9.2e18) return Value(int64_t(d));
      }
      return dflt;
    }
    if (f == "float") {
      check_kwargs(a, f, {"default"}, 1);
      const Value& dflt = arg(a, 0, "default", Value(0.0));
      if (numeric(v)) return Value(num_of(v));
      if (v.is_string()) {
        std::string s = strip_chars(v.str(), nullptr, true, true);
        char* end = nullptr;
        double d = std::strtod(s.c_str(), &end);
        if (!s.empty() && end && *end == 0) return Value(d);
      }
      return dflt;
    }
    if (f == "abs") {
      if (intlike(v)) {
        if (int_of(v) == std::numeric_limits<int64_t>::min()) fail("integer overflow");
        return Value(int64_t(std::llabs(int_of(v))));
      }
      if (v.is_float()) return Value(std::fabs(v.as_float()));
      fail(std::string("bad operand type for abs(): '") + kind_name(v) + "'");
    }
    if (f == "round") {
      check_kwargs(a, f, {"precision", "method"}, 2);
      const Value& pv = arg(a, 0, "precision", Value(int64_t(0)));
      std::string method = arg(a, 1, "method", Value("common")).is_string() ? arg(a, 1, "method", Value("common")).str() : "";
      if (!intlike(pv)) fail("round: precision must be an integer");
      if (!numeric(v)) fail("round: value must be a number");
      int64_t p = std::clamp<int64_t>(int_of(pv), -20, 20);
      if (method == "common" && intlike(v) && p >= 0) return Value(int_of(v));
      double scale = std::pow(10.0, double(p));
      double x = num_of(v) * scale, r;
      if (method == "common") r = std::nearbyint(x);  // Python's round(): half to even
      else if (method == "floor") r = std::floor(x);
      else if (method == "ceil") r = std::ceil(x);
      else fail("round: method must be 'common', 'ceil' or 'floor'");
      return Value(r / scale);
    }
    if (f == "default" || f == "d") {
      check_kwargs(a, f, {"default_value", "boolean"}, 2);
      const Value& dv = arg(a, 0, "default_value", Value(std::string()));
      bool boolean = arg(a, 1, "boolean", kFalse).truthy();
      if (v.is_undefined() || (boolean && !v.truthy())) return dv;
      return v;
    }
    if (f == "join") {
      check_kwargs(a, f, {"d", "attribute"}, 2);
      std::string sep = stringify(arg(a, 0, "d", Value(std::string())));
      const Value& attr = arg(a, 1, "attribute", kNone);
      std::string out;
      bool first = true;
      for (const Value& x : seq()) {
        if (!first) out += sep;
        first = false;
        out += stringify(attr.is_none() ? x : attr_path(x, attr));
        check_str(out.size());
      }
      return Value(std::move(out));
    }
    if (f == "first" || f == "last") {
      List l = seq();
      if (l.empty()) return Value::undefined(f);
      return f == "first" ? l.front() : l.back();
    }
    if (f == "list") return Value(seq());
    if (f == "items") {
      if (v.is_undefined()) return Value(List{});
      if (!v.is_dict()) fail("filter 'items' needs a mapping");
      List out;
      for (const auto& [k, x] : v.dict_ref().items) out.push_back(Value(List{Value(k), x}));
      return Value(std::move(out));
    }
    if (f == "reverse") {
      if (v.is_string()) {
        auto cps = code_points(v.str());
        std::string out;
        for (size_t i = cps.size(); i-- > 0;) out += cps[i];
        return Value(std::move(out));
      }
      List l = seq();
      std::reverse(l.begin(), l.end());
      return Value(std::move(l));
    }
    if (f == "selectattr" || f == "rejectattr" || f == "select" || f == "reject") {
      bool by_attr = f == "selectattr" || f == "rejectattr";
      bool keep_if = f == "selectattr" || f == "select";
      if (!a.kw.empty()) fail("filter '" + f + "' takes no keyword arguments");
      size_t k = 0;
      Value attr;
      if (by_attr) {
        if (a.pos.empty()) fail("filter '" + f + "' needs an attribute name");
        attr = a.pos[k++];
      }
      std::string test_name;
      if (k < a.pos.size()) test_name = need_str(a.pos[k++], "test name");
      std::vector<Value> targs(a.pos.begin() + std::ptrdiff_t(k), a.pos.end());
      List out;
      for (const Value& x : seq()) {
        step();
        Value subject = by_attr ? attr_path(x, attr) : x;
        bool r = test_name.empty() ? subject.truthy() : test(test_name, subject, targs);
        if (r == keep_if) out.push_back(x);
      }
      return Value(std::move(out));
    }
    if (f == "map") {
      const Value* attribute = nullptr;
      const Value* dflt = nullptr;
      for (const auto& [k, x] : a.kw) {
        if (k == "attribute") attribute = &x;
        else if (k == "default") dflt = &x;
      }
      List out;
      if (attribute) {
        for (const Value& x : seq()) {
          Value r = attr_path(x, *attribute);
          if (r.is_undefined() && dflt) r = *dflt;
          out.push_back(std::move(r));
        }
        return Value(std::move(out));
      }
      if (a.pos.empty()) fail("filter 'map' needs a filter name or attribute=");
      std::string fname = need_str(a.pos[0], "filter name");
      CallArgs rest;
      rest.pos.assign(a.pos.begin() + 1, a.pos.end());
      rest.kw = a.kw;
      for (const Value& x : seq()) {
        CallArgs copy = rest;
        out.push_back(filter(fname, x, copy));
      }
      return Value(std::move(out));
    }
    if (f == "unique") {
      check_kwargs(a, f, {"case_sensitive", "attribute"}, 2);
      bool cs = arg(a, 0, "case_sensitive", kFalse).truthy();
      const Value& attr = arg(a, 1, "attribute", kNone);
      List out, seen;
      for (const Value& x : seq()) {
        step();
        Value key = sort_key(attr.is_none() ? x : attr_path(x, attr), cs);
        bool dup = false;
        for (const Value& s : seen)
          if (equals(s, key)) dup = true;
        if (!dup) {
          seen.push_back(key);
          out.push_back(x);
        }
      }
      return Value(std::move(out));
    }
    if (f == "sort") {
      check_kwargs(a, f, {"reverse", "case_sensitive", "attribute"}, 3);
      bool rev = arg(a, 0, "reverse", kFalse).truthy();
      bool cs = arg(a, 1, "case_sensitive", kFalse).truthy();
      const Value& attr = arg(a, 2, "attribute", kNone);
      List l = seq();
      std::vector<std::pair<Value, size_t>> keyed;
      for (size_t i = 0; i < l.size(); ++i) keyed.emplace_back(sort_key(attr.is_none() ? l[i] : attr_path(l[i], attr), cs), i);
      std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
        int c = compare(x.first, y.first);
        return rev ? c > 0 : c < 0;
      });
      List out;
      for (auto& [k, i] : keyed) out.push_back(l[i]);
      return Value(std::move(out));
    }
    if (f == "dictsort") {
      if (!v.is_dict()) fail("filter 'dictsort' needs a mapping");
      check_kwargs(a, f, {"case_sensitive", "by", "reverse"}, 3);
      bool cs = arg(a, 0, "case_sensitive", kFalse).truthy();
      std::string by = arg(a, 1, "by", Value("key")).is_string() ? arg(a, 1, "by", Value("key")).str() : "key";
      bool rev = arg(a, 2, "reverse", kFalse).truthy();
      List items;
      for (const auto& [k, x] : v.dict_ref().items) items.push_back(Value(List{Value(k), x}));
      size_t pos = by == "value" ? 1 : 0;
      std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
        int c = compare(sort_key(x.list()[pos], cs), sort_key(y.list()[pos], cs));
        return rev ? c > 0 : c < 0;
      });
      return Value(std::move(items));
    }
    if (f == "min" || f == "max") {
      check_kwargs(a, f, {"case_sensitive", "attribute"}, 2);
      bool cs = arg(a, 0, "case_sensitive", kFalse).truthy();
      const Value& attr = arg(a, 1, "attribute", kNone);
      List l = seq();
      if (l.empty()) return Value::undefined(f);
      size_t best = 0;
      for (size_t i = 1; i < l.size(); ++i) {
        int c = compare(sort_key(attr.is_none() ? l[i] : attr_path(l[i], attr), cs),
                        sort_key(attr.is_none() ? l[best] : attr_path(l[best], attr), cs));
        if (f == "min" ? c < 0 : c > 0) best = i;
      }
      return l[best];
    }
    if (f == "sum") {
      check_kwargs(a, f, {"attribute", "start"}, 2);
      const Value& attr = arg(a, 0, "attribute", kNone);
      Value acc = arg(a, 1, "start", Value(int64_t(0)));
      for (const Value& x : seq()) acc = binary_op("+", acc, attr.is_none() ? x : attr_path(x, attr));
      return acc;
    }
    if (f == "indent") {
      check_kwargs(a, f, {"width", "first", "blank"}, 3);
      const Value& w = arg(a, 0, "width", Value(int64_t(4)));
      std::string pad = w.is_string() ? w.str() : intlike(w) ? std::string(size_t(std::clamp<int64_t>(int_of(w), 0, 256)), ' ') : "";
      bool first = arg(a, 1, "first", kFalse).truthy();
      bool blank = arg(a, 2, "blank", kFalse).truthy();
      std::string s = stringify(v), out;
      size_t b = 0;
      bool is_first = true;
      for (;;) {
        size_t e = s.find('\n', b);
        std::string line = s.substr(b, e == std::string::npos ? std::string::npos : e - b);
        bool add = is_first ? first : (blank || !line.empty());
        if (add) out += pad;
        out += line;
        check_str(out.size());
        if (e == std::string::npos) break;
        out += '\n';
        b = e + 1;
        is_first = false;
      }
      return Value(std::move(out));
    }
    if (f == "wordcount") {
      std::string s = stringify(v);
      int64_t n = 0;
      bool in = false;
      for (char c : s) {
        bool w = alpha_c(c) || digit_c(c) || c == '_' || static_cast<unsigned char>(c) >= 0x80;
        if (w && !in) ++n;
        in = w;
      }
      return Value(n);
    }
    if (f == "batch") {
      check_kwargs(a, f, {"linecount", "fill_with"}, 2);
      const Value& n = arg(a, 0, "linecount", kNone);
      if (!intlike(n) || int_of(n) <= 0) fail("batch: linecount must be a positive integer");
      const Value& fill = arg(a, 1, "fill_with", kNone);
      bool do_fill = false;
      for (size_t i = 1; i < a.pos.size(); ++i) do_fill = true;
      for (const auto& kv : a.kw)
        if (kv.first == "fill_with") do_fill = true;
      List out, cur;
      for (const Value& x : seq()) {
        cur.push_back(x);
        if (int64_t(cur.size()) == int_of(n)) {
          out.push_back(Value(std::move(cur)));
          cur.clear();
        }
      }
      if (!cur.empty()) {
        if (do_fill)
          while (int64_t(cur.size()) < int_of(n)) cur.push_back(fill);
        out.push_back(Value(std::move(cur)));
      }
      return Value(std::move(out));
    }
    fail("unknown filter '" + f + "'");
  }
};

}  // namespace

// ------------------------------------------------------------------------------------------------------ Template
Template::Template(std::string_view source, Options opts) : impl_(std::make_unique<Impl>()) {
  impl_->opts = std::move(opts);
  if (impl_->opts.max_depth < 1) impl_->opts.max_depth = 1;
  Lexer lex(source, impl_->opts);
  Parser parser(lex.run(), impl_->opts);
  impl_->root = parser.parse_template();
}
Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const Value& context) const {
  Interp in(*impl_, context);
  try {
    return in.run();
  } catch (const Pending& p) {  // only reachable from code without a node to blame
    if (p.raised) throw RaisedError(impl_->opts.name + ": " + p.msg);
    throw Error(impl_->opts.name + ": " + p.msg);
  }
}

}  // namespace vireo::jinja
