// A Jinja2 subset for chat templates (Hugging Face tokenizer_config.json / GGUF tokenizer.chat_template).
//
// The source is lexed and parsed once into an AST (Template); render() evaluates it against a context of Values.
// Templates are untrusted input: every index is checked, parser nesting and evaluation depth are capped, output
// size, string/list sizes and the number of evaluation steps are bounded, and anything outside the subset (an
// unknown tag, filter, test, function or method) is an Error naming the construct and the template line, never a
// silently different prompt. Semantics follow jinja2 as configured by transformers' apply_chat_template
// (trim_blocks, lstrip_blocks, loopcontrols, default Undefined, its own tojson); see src/chat/jinja.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace vireo::jinja {

// Every parse or render failure: "<name> line N: what went wrong".
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// raise_exception("...") called by the template; what() holds the template's message after the line prefix.
struct RaisedError : Error {
  using Error::Error;
};

class Value;
using List = std::vector<Value>;
struct Dict;
struct CallArgs;
using NativeFn = std::function<Value(CallArgs&)>;
struct Function {
  std::string name;
  NativeFn fn;
};

class Value {
 public:
  enum class Kind { Undefined, None, Bool, Int, Float, String, List, Dict, Function };

  Value() : v_(Undef{}) {}  // undefined
  Value(bool b) : v_(b) {}
  Value(int v) : v_(int64_t(v)) {}
  Value(int64_t v) : v_(v) {}
  Value(double v) : v_(v) {}
  Value(std::string s) : v_(std::move(s)) {}
  Value(std::string_view s) : v_(std::string(s)) {}
  Value(const char* s) : v_(std::string(s)) {}
  Value(List l) : v_(std::make_shared<List>(std::move(l))) {}

  static Value undefined(std::string name = {}) { Value v; v.v_ = Undef{std::move(name)}; return v; }
  static Value none() { Value v; v.v_ = std::monostate{}; return v; }
  static Value dict();  // empty, insertion-ordered
  static Value function(std::string name, NativeFn fn);

  Kind kind() const { return Kind(v_.index()); }
  bool is_undefined() const { return kind() == Kind::Undefined; }
  bool is_none() const { return kind() == Kind::None; }
  bool is_bool() const { return kind() == Kind::Bool; }
  bool is_int() const { return kind() == Kind::Int; }
  bool is_float() const { return kind() == Kind::Float; }
  bool is_number() const { return is_int() || is_float(); }
  bool is_string() const { return kind() == Kind::String; }
  bool is_list() const { return kind() == Kind::List; }
  bool is_dict() const { return kind() == Kind::Dict; }
  bool is_function() const { return kind() == Kind::Function; }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_float() const { return std::get<double>(v_); }
  double as_number() const { return is_int() ? double(as_int()) : as_float(); }
  const std::string& str() const { return std::get<std::string>(v_); }
  List& list() const { return *std::get<std::shared_ptr<List>>(v_); }
  Dict& dict_ref() const { return *std::get<std::shared_ptr<Dict>>(v_); }
  const Function& function() const { return *std::get<std::shared_ptr<Function>>(v_); }
  const std::string& undefined_name() const { return std::get<Undef>(v_).name; }
  // Identity of a list/dict/function (for `is sameas`), null for others.
  const void* identity() const;

  bool truthy() const;

 private:
  struct Undef {
    std::string name;
  };
  std::variant<Undef, std::monostate, bool, int64_t, double, std::string, std::shared_ptr<List>,
               std::shared_ptr<Dict>, std::shared_ptr<Function>>
      v_;
};

// Insertion-ordered string-keyed map (Python dict order, as tojson and `items()` see it).
struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;  // namespace(): the one kind of object `{% set ns.attr = ... %}` may assign to
  const Value* find(std::string_view key) const;
  Value* find(std::string_view key);
  void set(std::string key, Value v);
};

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
};

struct Options {
  std::string name = "template";  // error prefix: "<name> line N: ..."
  bool trim_blocks = true;        // transformers' apply_chat_template renders with both on
  bool lstrip_blocks = true;
  size_t max_output = size_t(64) << 20;  // bytes of any rendered string
  size_t max_items = size_t(1) << 22;    // elements of any list built by the template (range(), +, *)
  uint64_t max_steps = 10'000'000;       // evaluation steps of one render
  int max_depth = 200;                   // nesting of the source (parser) and of evaluation (macros)
  // strftime_now(fmt): defaults to the local time formatted with strftime.
  std::function<std::string(const std::string& fmt)> strftime_now;
};

class Template {
 public:
  // Lexes and parses; throws Error on a syntax error or an unsupported construct.
  explicit Template(std::string_view source, Options opts = {});
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;
  Template(const Template&) = delete;
  Template& operator=(const Template&) = delete;

  // Renders with `context` (a dict; its keys are the template's variables, they shadow the built-in globals
  // range, namespace, dict, raise_exception, strftime_now). Throws Error / RaisedError.
  std::string render(const Value& context) const;

  struct Impl;  // defined in jinja.cpp

 private:
  std::unique_ptr<Impl> impl_;
};

// Python-style text of a value as `{{ v }}` prints it (str()), and json.dumps(v, ensure_ascii=False) with
// Python's separators, as transformers' tojson filter writes it (indent < 0: one line).
std::string to_string(const Value& v);
std::string to_json(const Value& v, int indent = -1, bool sort_keys = false);

}  // namespace vireo::jinja
