#include "chat/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "gguf/gguf.h"

namespace vireo {

namespace {

jinja::Value json_to_value_depth(const nlohmann::ordered_json& j, int depth) {
  if (depth > 128) throw std::runtime_error("chat template input nested too deeply");
  using T = nlohmann::ordered_json::value_t;
  switch (j.type()) {
    case T::null: return jinja::Value::none();
    case T::boolean: return jinja::Value(j.get<bool>());
    case T::number_integer: return jinja::Value(j.get<int64_t>());
    case T::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > uint64_t(INT64_MAX)) return jinja::Value(double(u));
      return jinja::Value(int64_t(u));
    }
    case T::number_float: return jinja::Value(j.get<double>());
    case T::string: return jinja::Value(j.get<std::string>());
    case T::array: {
      jinja::List l;
      l.reserve(j.size());
      for (const auto& x : j) l.push_back(json_to_value_depth(x, depth + 1));
      return jinja::Value(std::move(l));
    }
    case T::object: {
      jinja::Value d = jinja::Value::dict();
      for (auto it = j.begin(); it != j.end(); ++it) d.dict_ref().set(it.key(), json_to_value_depth(it.value(), depth + 1));
      return d;
    }
    default: throw std::runtime_error("chat template input: unsupported JSON value (binary/discarded)");
  }
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string token_text(const nlohmann::ordered_json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  throw std::runtime_error(std::string("tokenizer_config.json: ") + key + " is neither a string nor {\"content\": ...}");
}

std::string gguf_token(const GgufFile& g, const char* id_key) {
  const GgufValue* id = g.find(id_key);
  const GgufValue* toks = g.find("tokenizer.ggml.tokens");
  if (!id || !toks || toks->type != GgufType::ARRAY) return {};
  int64_t i = id->as_int();
  const GgufArray& arr = toks->as_array();
  if (i < 0 || size_t(i) >= arr.items.size() || arr.elem_type != GgufType::STRING) return {};
  return arr.items[size_t(i)].as_string();
}

}  // namespace

jinja::Value json_to_value(const nlohmann::ordered_json& j) { return json_to_value_depth(j, 0); }

ChatTemplate::ChatTemplate(std::string source, std::string bos_token, std::string eos_token)
    : source_(std::move(source)), bos_(std::move(bos_token)), eos_(std::move(eos_token)) {
  jinja::Options o;
  o.name = "chat template";
  tmpl_ = std::make_shared<const jinja::Template>(source_, o);
}

ChatTemplate ChatTemplate::plain_turns() {
  return ChatTemplate(
      "{% for m in messages %}"
      "{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
      "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n"
      "{% else %}Assistant: {{ m['content'] }}\n{% endif %}"
      "{% endfor %}"
      "{% if add_generation_prompt %}Assistant:{% endif %}",
      "", "");
}

ChatTemplate ChatTemplate::from_gguf(const GgufFile& gguf) {
  const GgufValue* t = gguf.find("tokenizer.chat_template");
  if (!t || t->type != GgufType::STRING) throw std::runtime_error("model has no chat template (pass --chat-template ...)");
  return ChatTemplate(t->as_string(), gguf_token(gguf, "tokenizer.ggml.bos_token_id"),
                      gguf_token(gguf, "tokenizer.ggml.eos_token_id"));
}

ChatTemplate ChatTemplate::from_tokenizer_config(const std::string& path, const std::string& name) {
  nlohmann::ordered_json cfg;
  try {
    cfg = nlohmann::ordered_json::parse(slurp(path));
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
  if (!cfg.is_object()) throw std::runtime_error(path + ": not a JSON object");
  std::string source;
  auto it = cfg.find("chat_template");
  if (it == cfg.end() || it->is_null()) {
    auto side = std::filesystem::path(path).parent_path() / "chat_template.jinja";
    if (!std::filesystem::exists(side)) throw std::runtime_error(path + ": no chat_template");
    source = slurp(side.string());
  } else if (it->is_string()) {
    source = it->get<std::string>();
  } else if (it->is_array()) {
    std::string names;
    for (const auto& e : *it) {
      if (!e.is_object() || !e.contains("name") || !e.contains("template") || !e["name"].is_string() ||
          !e["template"].is_string())
        throw std::runtime_error(path + ": chat_template list entries must be {name, template}");
      if (e["name"] == name) source = e["template"].get<std::string>();
      names += (names.empty() ? "" : ", ") + e["name"].get<std::string>();
    }
    if (source.empty()) throw std::runtime_error(path + ": no chat template named '" + name + "' (has: " + names + ")");
  } else {
    throw std::runtime_error(path + ": chat_template must be a string or a list of {name, template}");
  }
  return ChatTemplate(std::move(source), token_text(cfg, "bos_token"), token_text(cfg, "eos_token"));
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json& tools, const nlohmann::ordered_json& extra) const {
  if (!messages.is_array()) throw std::invalid_argument("chat template: messages must be a JSON array");
  if (!extra.is_null() && !extra.is_object()) throw std::invalid_argument("chat template: extra must be a JSON object");
  jinja::Value ctx = jinja::Value::dict();
  jinja::Dict& d = ctx.dict_ref();
  d.set("messages", json_to_value(messages));
  d.set("tools", json_to_value(tools));
  d.set("documents", jinja::Value::none());
  d.set("add_generation_prompt", jinja::Value(add_generation_prompt));
  d.set("bos_token", jinja::Value(bos_));
  d.set("eos_token", jinja::Value(eos_));
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) d.set(it.key(), json_to_value(it.value()));
  return tmpl_->render(ctx);
}

}  // namespace vireo
