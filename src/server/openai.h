// The OpenAI API's request and response shapes, apart from HTTP: parsing and validating request bodies into
// generation options, and building completion objects, stream chunks and error bodies.
#pragma once
#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>
#include <vector>

#include "vireo/vireo.h"

namespace vireo::server {

using json = nlohmann::ordered_json;

// A request the server rejects: HTTP status, OpenAI error type and code, the offending parameter.
struct ApiError : std::runtime_error {
  ApiError(int status, std::string message, std::string type = "invalid_request_error", std::string param = "",
           std::string code = "")
      : std::runtime_error(message), status(status), type(std::move(type)), param(std::move(param)),
        code(std::move(code)) {}
  int status;
  std::string type, param, code;
};

json error_body(const ApiError& e);

enum class Endpoint { Chat, Completion };

// A parsed /v1/chat/completions or /v1/completions body.
struct ParsedRequest {
  Endpoint endpoint = Endpoint::Chat;
  json messages;                    // chat: the messages, content normalized to strings where they were parts
  json tools;                       // chat: tool definitions (passed to the template), or null
  std::string prompt_text;          // completions: prompt as text
  std::vector<int32_t> prompt_ids;  // completions: prompt given as token ids
  bool prompt_is_ids = false;
  GenerateOptions opts;
  bool max_tokens_given = false;
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;            // chat: logprobs; completions: logprobs given
  int32_t top_logprobs = 0;
  bool echo = false;
  std::string model;
  json template_kwargs;             // extra template variables (chat_template_kwargs)
};

// Throws ApiError (400) naming the field when a body is malformed or a value has the wrong type or range.
// Unknown fields are ignored.
ParsedRequest parse_request(const std::string& body, Endpoint endpoint);

std::string finish_reason(const std::string& stop_reason);  // "stop" / "length" (vireo stop reasons mapped)

// One token's log-probability in the chat format ({token, logprob, bytes, top_logprobs}).
json chat_logprob_entry(const std::string& token_text, const TokenLogprob& chosen,
                        const std::vector<std::pair<std::string, TokenLogprob>>& top);

json usage_json(const GenerateStats& st);

// Serializes; a token may end in the middle of a UTF-8 character, so invalid bytes become U+FFFD instead of an error.
std::string dump(const json& j);

}  // namespace vireo::server
