// Chat templates: renders a conversation to the prompt text a model was trained on, from the Jinja template in
// its GGUF (tokenizer.chat_template) or Hugging Face tokenizer_config.json, the way transformers'
// apply_chat_template does (see chat/jinja.h for the template language subset).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "chat/jinja.h"

namespace vireo {

class GgufFile;

class ChatTemplate {
 public:
  // Parses `source` once (throws jinja::Error naming the line on a syntax error or unsupported construct).
  ChatTemplate(std::string source, std::string bos_token, std::string eos_token);

  // tokenizer.chat_template, with bos/eos token text from tokenizer.ggml.{bos,eos}_token_id and
  // tokenizer.ggml.tokens. Throws std::runtime_error "model has no chat template (pass --chat-template ...)"
  // when the key is missing.
  static ChatTemplate from_gguf(const GgufFile& gguf);
  // For models without a template: plain "User:/Assistant:" turns, so a base model (like the bundled
  // stories260K) still answers chat requests.
  static ChatTemplate plain_turns();
  // HF tokenizer_config.json: chat_template as a string, or a list of {name, template} (`name` picks one;
  // "default" unless told), or, when the key is absent, a chat_template.jinja next to the file; bos_token /
  // eos_token as a string or {"content": ...}.
  static ChatTemplate from_tokenizer_config(const std::string& path, const std::string& name = "default");

  // messages: array of objects (role, content as a string or a list of {type, text}, tool_calls, name,
  // tool_call_id, ...), passed to the template as they are; tools: null (the template sees `tools` as none) or
  // an array of tool schemas; extra: an object whose keys become template variables (enable_thinking,
  // date_string, ...; they may override the others). Object key order is kept (tojson writes it), hence
  // ordered_json; a plain nlohmann::json converts (with its keys sorted). Throws jinja::Error / RaisedError.
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& tools = nullptr,
                     const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

  const std::string& source() const { return source_; }
  const std::string& bos_token() const { return bos_; }
  const std::string& eos_token() const { return eos_; }

 private:
  std::string source_, bos_, eos_;
  std::shared_ptr<const jinja::Template> tmpl_;
};

// JSON to template value (objects keep their key order; integers that fit int64 stay integers).
jinja::Value json_to_value(const nlohmann::ordered_json& j);

}  // namespace vireo
