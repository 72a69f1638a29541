#include "server/openai.h"

#include <cmath>
#include <limits>
#include <random>

namespace vireo::server {

json error_body(const ApiError& e) {
  json err = {{"message", e.what()}, {"type", e.type}};
  err["param"] = e.param.empty() ? json(nullptr) : json(e.param);
  err["code"] = e.code.empty() ? json(nullptr) : json(e.code);
  return json{{"error", err}};
}

namespace {

ApiError bad(const std::string& param, const std::string& msg) { return ApiError(400, msg, "invalid_request_error", param); }

// Typed field readers: a field that is absent or null keeps the default; a present field of the wrong type is
// an error naming it.
bool get_bool(const json& j, const char* key, bool def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_boolean()) throw bad(key, std::string("'") + key + "' must be a boolean");
  return it->get<bool>();
}

double get_number(const json& j, const char* key, double def, double lo, double hi) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_number()) throw bad(key, std::string("'") + key + "' must be a number");
  const double v = it->get<double>();
  if (!std::isfinite(v) || v < lo || v > hi)
    throw bad(key, std::string("'") + key + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return v;
}

int64_t get_int(const json& j, const char* key, int64_t def, int64_t lo, int64_t hi) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_number_integer() && !(it->is_number_float() && std::floor(it->get<double>()) == it->get<double>()))
    throw bad(key, std::string("'") + key + "' must be an integer");
  const double d = it->get<double>();
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi))
    throw bad(key, std::string("'") + key + "' must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  return it->is_number_integer() ? it->get<int64_t>() : static_cast<int64_t>(d);
}

// Message content: a string, null, or a list of parts of which only text parts are supported.
json normalize_content(const json& c, size_t index) {
  const std::string where = "messages[" + std::to_string(index) + "].content";
  if (c.is_null() || c.is_string()) return c;
  if (!c.is_array()) throw bad(where, "'" + where + "' must be a string, null or an array of content parts");
  std::string text;
  for (const auto& part : c) {
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      throw bad(where, "each part of '" + where + "' must be an object with a 'type'");
    const std::string type = part["type"];
    if (type != "text") throw bad(where, "content part type '" + type + "' is not supported (text only)");
    if (!part.contains("text") || !part["text"].is_string()) throw bad(where, "a text part needs a string 'text'");
    text += part["text"].get<std::string>();
  }
  return text;
}

void parse_stop(const json& j, std::vector<std::string>& out) {
  auto it = j.find("stop");
  if (it == j.end() || it->is_null()) return;
  if (it->is_string()) {
    if (!it->get<std::string>().empty()) out.push_back(*it);
    return;
  }
  if (!it->is_array()) throw bad("stop", "'stop' must be a string or an array of strings");
  if (it->size() > 16) throw bad("stop", "'stop' holds at most 16 strings");
  for (const auto& s : *it) {
    if (!s.is_string()) throw bad("stop", "'stop' must be a string or an array of strings");
    if (!s.get<std::string>().empty()) out.push_back(s);
  }
}

}  // namespace

ParsedRequest parse_request(const std::string& body, Endpoint endpoint) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    throw ApiError(400, std::string("request body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw ApiError(400, "request body must be a JSON object");
  ParsedRequest r;
  r.endpoint = endpoint;
  if (auto it = j.find("model"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) throw bad("model", "'model' must be a string");
    r.model = *it;
  }

  if (endpoint == Endpoint::Chat) {
    auto it = j.find("messages");
    if (it == j.end()) throw bad("messages", "'messages' is required");
    if (!it->is_array() || it->empty()) throw bad("messages", "'messages' must be a non-empty array");
    r.messages = json::array();
    for (size_t i = 0; i < it->size(); ++i) {
      const json& m = (*it)[i];
      const std::string where = "messages[" + std::to_string(i) + "]";
      if (!m.is_object()) throw bad(where, "'" + where + "' must be an object");
      if (!m.contains("role") || !m["role"].is_string()) throw bad(where + ".role", "'" + where + ".role' must be a string");
      const std::string role = m["role"];
      if (role != "system" && role != "user" && role != "assistant" && role != "tool" && role != "developer")
        throw bad(where + ".role", "unknown role '" + role + "'");
      json msg = m;
      msg["content"] = normalize_content(m.contains("content") ? m["content"] : json(nullptr), i);
      if (msg["content"].is_null() && role != "assistant")
        throw bad(where + ".content", "'" + where + ".content' is required");
      r.messages.push_back(std::move(msg));
    }
    if (auto t = j.find("tools"); t != j.end() && !t->is_null()) {
      if (!t->is_array()) throw bad("tools", "'tools' must be an array");
      r.tools = *t;
    }
    if (auto k = j.find("chat_template_kwargs"); k != j.end() && !k->is_null()) {
      if (!k->is_object()) throw bad("chat_template_kwargs", "'chat_template_kwargs' must be an object");
      r.template_kwargs = *k;
    }
  } else {
    auto it = j.find("prompt");
    if (it == j.end()) throw bad("prompt", "'prompt' is required");
    const json* p = &*it;
    if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];  // ["text"]
    if (p->is_string()) {
      r.prompt_text = *p;
    } else if (p->is_array() && !p->empty() && std::all_of(p->begin(), p->end(), [](const json& x) { return x.is_number_integer(); })) {
      r.prompt_is_ids = true;
      for (const auto& x : *p) {
        const int64_t v = x.get<int64_t>();
        if (v < 0 || v > std::numeric_limits<int32_t>::max()) throw bad("prompt", "token id out of range in 'prompt'");
        r.prompt_ids.push_back(static_cast<int32_t>(v));
      }
    } else {
      throw bad("prompt", "'prompt' must be a string, a one-string array or an array of token ids");
    }
    r.echo = get_bool(j, "echo", false);
  }

  const int64_t n = get_int(j, "n", 1, 1, 128);
  if (n != 1) throw bad("n", "only n = 1 is supported");
  const int64_t kMaxTokens = 1 << 24;
  int64_t max_tokens = -1;
  if (j.contains("max_completion_tokens") && !j["max_completion_tokens"].is_null())
    max_tokens = get_int(j, "max_completion_tokens", -1, 0, kMaxTokens);
  else if (j.contains("max_tokens") && !j["max_tokens"].is_null())
    max_tokens = get_int(j, "max_tokens", -1, 0, kMaxTokens);
  r.max_tokens_given = max_tokens >= 0;
  r.opts.max_tokens = r.max_tokens_given ? static_cast<int32_t>(max_tokens) : std::numeric_limits<int32_t>::max();

  SamplingParams& s = r.opts.sampling;
  // OpenAI semantics: temperature 1 and top_p 1 unless given; top_k / min_p (vireo extensions) off unless given.
  s.temperature = static_cast<float>(get_number(j, "temperature", 1.0, 0.0, 2.0));
  s.top_p = static_cast<float>(get_number(j, "top_p", 1.0, 0.0, 1.0));
  s.top_k = static_cast<int32_t>(get_int(j, "top_k", 0, 0, 1 << 20));
  s.min_p = static_cast<float>(get_number(j, "min_p", 0.0, 0.0, 1.0));
  s.presence_penalty = static_cast<float>(get_number(j, "presence_penalty", 0.0, -2.0, 2.0));
  s.frequency_penalty = static_cast<float>(get_number(j, "frequency_penalty", 0.0, -2.0, 2.0));
  s.repeat_penalty = static_cast<float>(get_number(j, "repeat_penalty", 1.0, 0.0, 10.0));
  s.penalty_last_n = -1;  // OpenAI's penalties look at the whole completion so far
  if (j.contains("seed") && !j["seed"].is_null()) {
    s.seed = static_cast<uint64_t>(get_int(j, "seed", 0, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()));
  } else {
    s.seed = std::random_device{}() * 0x9E3779B97F4A7C15ull + std::random_device{}();
  }
  parse_stop(j, r.opts.stop);

  r.stream = get_bool(j, "stream", false);
  if (auto so = j.find("stream_options"); so != j.end() && !so->is_null()) {
    if (!so->is_object()) throw bad("stream_options", "'stream_options' must be an object");
    r.include_usage = get_bool(*so, "include_usage", false);
  }

  if (endpoint == Endpoint::Chat) {
    r.logprobs = get_bool(j, "logprobs", false);
    r.top_logprobs = static_cast<int32_t>(get_int(j, "top_logprobs", 0, 0, 20));
    if (j.contains("top_logprobs") && !j["top_logprobs"].is_null() && !r.logprobs)
      throw bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  } else if (j.contains("logprobs") && !j["logprobs"].is_null()) {
    r.logprobs = true;
    r.top_logprobs = static_cast<int32_t>(get_int(j, "logprobs", 0, 0, 20));
  }
  r.opts.logprobs = r.logprobs ? r.top_logprobs : -1;
  r.opts.ignore_eos = get_bool(j, "ignore_eos", false);
  return r;
}

std::string finish_reason(const std::string& stop_reason) {
  if (stop_reason == "length" || stop_reason == "context") return "length";
  return "stop";
}

json chat_logprob_entry(const std::string& token_text, const TokenLogprob& chosen,
                        const std::vector<std::pair<std::string, TokenLogprob>>& top) {
  auto bytes = [](const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(static_cast<int>(c));
    return b;
  };
  json tops = json::array();
  for (const auto& [t, lp] : top)
    tops.push_back({{"token", t}, {"logprob", lp.logprob}, {"bytes", bytes(t)}});
  return json{{"token", token_text}, {"logprob", chosen.logprob}, {"bytes", bytes(token_text)}, {"top_logprobs", tops}};
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json usage_json(const GenerateStats& st) {
  return json{{"prompt_tokens", st.prompt_tokens},
              {"completion_tokens", st.generated_tokens},
              {"total_tokens", st.prompt_tokens + st.generated_tokens},
              {"prompt_tokens_details", {{"cached_tokens", st.prompt_tokens - st.prompt_computed}}}};
}

}  // namespace vireo::server
