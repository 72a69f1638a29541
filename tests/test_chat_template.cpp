// ChatTemplate (src/chat/chat_template.*): the chat templates of real models' tokenizer_config.json (fixtures:
// Llama 3, Qwen3 with tools and thinking, Gemma 3), hand-written templates in the published Mistral, Phi-3,
// ChatML and Llama 3.1 styles, and loading from tokenizer_config.json variants and GGUF metadata.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "chat/chat_template.h"
#include "gguf/gguf.h"

namespace fs = std::filesystem;
using nlohmann::ordered_json;
using vireo::ChatTemplate;

namespace {

std::string tok_dir() { return std::string(VIREO_FIXTURES) + "/tokenizers"; }

ChatTemplate fixture(const std::string& name) {
  return ChatTemplate::from_tokenizer_config(tok_dir() + "/" + name + "/tokenizer_config.json");
}

#define NEED_FIXTURE(name)                                                                                    \
  if (!fs::exists(tok_dir() + "/" name "/tokenizer_config.json"))                                              \
  GTEST_SKIP() << "fixture " << tok_dir() << "/" name "/tokenizer_config.json absent (../shared/fixtures)"

const ordered_json kConv = ordered_json::parse(R"([
  {"role": "system", "content": "You are helpful."},
  {"role": "user", "content": "Hi there"},
  {"role": "assistant", "content": "Hello! How can I help?"},
  {"role": "user", "content": "What is 2+2?"}])");

const ordered_json kTools = ordered_json::parse(R"([{"type": "function", "function": {"name": "get_weather",
  "description": "Get the weather", "parameters": {"type": "object", "properties": {"city": {"type": "string",
  "description": "City name"}}, "required": ["city"]}}}])");

const ordered_json kToolConv = ordered_json::parse(R"([
  {"role": "system", "content": "You are a bot."},
  {"role": "user", "content": "Weather in Paris?"},
  {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather",
    "arguments": {"city": "Paris"}}}]},
  {"role": "tool", "content": "{\"temp\": 21}"},
  {"role": "assistant", "content": "<think>\nIt is warm.\n</think>\n\nIt is 21 degrees in Paris."},
  {"role": "user", "content": "Thanks"}])");

ordered_json tail(const ordered_json& conv, size_t from) {
  ordered_json out = ordered_json::array();
  for (size_t i = from; i < conv.size(); ++i) out.push_back(conv[i]);
  return out;
}

}  // namespace

TEST(ChatTemplate, Llama3Fixture) {
  NEED_FIXTURE("llama3");
  ChatTemplate t = fixture("llama3");
  EXPECT_EQ(t.bos_token(), "<|begin_of_text|>");
  EXPECT_EQ(t.eos_token(), "<|end_of_text|>");
  // This (base model) template always ends with the assistant header, whatever add_generation_prompt says.
  const std::string want =
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n";
  EXPECT_EQ(t.render(kConv, true), want);
  EXPECT_EQ(t.render(kConv, false), want);
  // content is trimmed; the bos goes before the first message whatever its role
  EXPECT_EQ(t.render(ordered_json::parse(R"([{"role": "user", "content": "  padded \n"}])"), true),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\npadded<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Qwen3Fixture) {
  NEED_FIXTURE("qwen3");
  ChatTemplate t = fixture("qwen3");
  EXPECT_EQ(t.bos_token(), "");
  EXPECT_EQ(t.eos_token(), "<|im_end|>");
  const std::string body =
      "<|im_start|>system\nYou are helpful.<|im_end|>\n"
      "<|im_start|>user\nHi there<|im_end|>\n"
      "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
      "<|im_start|>user\nWhat is 2+2?<|im_end|>\n";
  EXPECT_EQ(t.render(kConv, false), body);
  EXPECT_EQ(t.render(kConv, true), body + "<|im_start|>assistant\n");
  EXPECT_EQ(t.render(kConv, true, nullptr, {{"enable_thinking", false}}),
            body + "<|im_start|>assistant\n<think>\n\n</think>\n\n");
  EXPECT_EQ(t.render(kConv, true, nullptr, {{"enable_thinking", true}}), body + "<|im_start|>assistant\n");
  EXPECT_EQ(t.render(tail(kConv, 1), true),
            "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, Qwen3ToolCalls) {
  NEED_FIXTURE("qwen3");
  ChatTemplate t = fixture("qwen3");
  const std::string system =
      "<|im_start|>system\nYou are a bot.\n\n# Tools\n\nYou may call one or more functions to assist with the user "
      "query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
      R"({"type": "function", "function": {"name": "get_weather", "description": "Get the weather", "parameters": )"
      R"({"type": "object", "properties": {"city": {"type": "string", "description": "City name"}}, "required": )"
      R"(["city"]}}})"
      "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
      "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
      "<args-json-object>}\n</tool_call><|im_end|>\n";
  const std::string call =
      "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
      "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
      "</tool_call><|im_end|>\n"
      "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n";
  // The finished turn's reasoning (before the last user query) is dropped from the history.
  EXPECT_EQ(t.render(kToolConv, true, kTools, {{"enable_thinking", false}}),
            system + call +
                "<|im_start|>assistant\nIt is 21 degrees in Paris.<|im_end|>\n"
                "<|im_start|>user\nThanks<|im_end|>\n"
                "<|im_start|>assistant\n<think>\n\n</think>\n\n");
  // Mid tool loop (the last query is the user's first message): the generation prompt follows the tool result.
  EXPECT_EQ(t.render(ordered_json::array({kToolConv[0], kToolConv[1], kToolConv[2], kToolConv[3]}), true, kTools),
            system + call + "<|im_start|>assistant\n");
  // After the last query, an assistant turn keeps its reasoning.
  ordered_json conv = tail(kToolConv, 0);
  conv.erase(conv.size() - 1);
  EXPECT_EQ(t.render(conv, false, kTools),
            system + call + "<|im_start|>assistant\n<think>\nIt is warm.\n</think>\n\nIt is 21 degrees in Paris."
                            "<|im_end|>\n");
  // arguments given as a JSON string are copied as they are
  ordered_json c2 = ordered_json::parse(R"([{"role": "user", "content": "q"}, {"role": "assistant", "content": "ok",
    "tool_calls": [{"function": {"name": "f", "arguments": "{\"x\": 1}"}}]}])");
  EXPECT_EQ(t.render(c2, false),
            "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nok\n<tool_call>\n"
            "{\"name\": \"f\", \"arguments\": {\"x\": 1}}\n</tool_call><|im_end|>\n");
}

TEST(ChatTemplate, Gemma3Fixture) {
  NEED_FIXTURE("gemma3");
  ChatTemplate t = fixture("gemma3");
  EXPECT_EQ(t.bos_token(), "<bos>");
  EXPECT_EQ(t.eos_token(), "<end_of_turn>");
  const std::string body =
      "<bos><start_of_turn>user\nYou are helpful.\n\nHi there<end_of_turn>\n"
      "<start_of_turn>model\nHello! How can I help?<end_of_turn>\n"
      "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n";
  EXPECT_EQ(t.render(kConv, false), body);
  EXPECT_EQ(t.render(kConv, true), body + "<start_of_turn>model\n");
  EXPECT_EQ(t.render(tail(kConv, 1), true),
            "<bos><start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\nHello! How can I help?"
            "<end_of_turn>\n<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n");
  // content as a list of parts
  EXPECT_EQ(t.render(ordered_json::parse(R"([{"role": "system", "content": [{"type": "text", "text": "Sys"}]},
              {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " Describe "}]}])"),
                     true),
            "<bos><start_of_turn>user\nSys\n\n<start_of_image>Describe<end_of_turn>\n<start_of_turn>model\n");
  // roles must alternate: the template's raise_exception reaches the caller with its message
  try {
    t.render(ordered_json::parse(R"([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])"), true);
    FAIL() << "no exception";
  } catch (const vireo::jinja::RaisedError& e) {
    EXPECT_NE(std::string(e.what()).find("Conversation roles must alternate user/assistant/user/assistant/..."),
              std::string::npos)
        << e.what();
  }
}

// Mistral-7B-Instruct style: [INST] ... [/INST], roles must alternate.
TEST(ChatTemplate, MistralStyle) {
  ChatTemplate t(
      "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
      "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
      "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
      "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
      "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
      "<s>", "</s>");
  EXPECT_EQ(t.render(tail(kConv, 1), true), "<s>[INST] Hi there [/INST]Hello! How can I help?</s>[INST] What is 2+2? [/INST]");
  EXPECT_THROW(t.render(kConv, true), vireo::jinja::RaisedError);
  try {
    t.render(ordered_json::parse(R"([{"role": "assistant", "content": "x"}])"), true);
    FAIL();
  } catch (const vireo::jinja::RaisedError& e) {
    EXPECT_STREQ(e.what(), "chat template line 1: Conversation roles must alternate user/assistant/user/assistant/...");
  }
}

// Phi-3 style: <|user|>\n...<|end|>\n<|assistant|>\n
TEST(ChatTemplate, Phi3Style) {
  ChatTemplate t(
      "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + "
      "'<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}"
      "{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}"
      "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}",
      "<s>", "<|endoftext|>");
  const std::string body =
      "<|system|>\nYou are helpful.<|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\nHello! How can I help?<|end|>\n"
      "<|user|>\nWhat is 2+2?<|end|>\n";
  EXPECT_EQ(t.render(kConv, true), body + "<|assistant|>\n");
  EXPECT_EQ(t.render(kConv, false), body + "<|endoftext|>");
}

// Plain ChatML, written multi-line with whitespace control the way many repos ship it.
TEST(ChatTemplate, ChatML) {
  ChatTemplate t(
      "{% for message in messages %}\n"
      "    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\n"
      "{%- endfor %}\n"
      "{%- if add_generation_prompt %}\n"
      "    {{- '<|im_start|>assistant\\n' }}\n"
      "{%- endif %}\n",
      "", "<|im_end|>");
  const std::string body =
      "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
      "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n";
  EXPECT_EQ(t.render(kConv, false), body);
  EXPECT_EQ(t.render(kConv, true), body + "<|im_start|>assistant\n");
  EXPECT_EQ(t.render(ordered_json::array(), true), "<|im_start|>assistant\n");
}

// Llama 3.1 style system header with the knowledge cutoff and today's date (date_string through extra).
TEST(ChatTemplate, Llama31StyleDate) {
  ChatTemplate t(
      "{{- bos_token }}\n"
      "{%- if not date_string is defined %}\n"
      "    {%- set date_string = strftime_now(\"%d %b %Y\") %}\n"
      "{%- endif %}\n"
      "{%- if messages[0]['role'] == 'system' %}\n"
      "    {%- set system_message = messages[0]['content']|trim %}\n"
      "    {%- set messages = messages[1:] %}\n"
      "{%- else %}\n"
      "    {%- set system_message = \"\" %}\n"
      "{%- endif %}\n"
      "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
      "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n"
      "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n"
      "{{- system_message }}\n"
      "{{- \"<|eot_id|>\" }}\n"
      "{%- for message in messages %}\n"
      "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
      "'<|eot_id|>' }}\n"
      "{%- endfor %}\n"
      "{%- if add_generation_prompt %}\n"
      "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
      "{%- endif %}\n",
      "<|begin_of_text|>", "<|eot_id|>");
  EXPECT_EQ(t.render(tail(kConv, 0), true, nullptr, {{"date_string", "26 Jul 2024"}}),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
            "Today Date: 26 Jul 2024\n\nYou are helpful.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
            "Hi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // without date_string: today's date from strftime_now
  std::string out = t.render(tail(kConv, 1), false);
  EXPECT_NE(out.find("Today Date: "), std::string::npos);
  EXPECT_EQ(out.find("Today Date: \n"), std::string::npos);
}

TEST(ChatTemplate, TokenizerConfigVariants) {
  fs::path dir = fs::temp_directory_path() / ("vireo_chat_template_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  // a list of named templates, tokens as AddedToken objects
  std::string p = write("list.json", R"({"chat_template": [{"name": "tool_use", "template": "T{{ bos_token }}"},
    {"name": "default", "template": "D{{ bos_token }}{{ eos_token }}"}],
    "bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": {"content": "</s>"}})");
  EXPECT_EQ(ChatTemplate::from_tokenizer_config(p).render(ordered_json::array(), false), "D<s></s>");
  EXPECT_EQ(ChatTemplate::from_tokenizer_config(p, "tool_use").render(ordered_json::array(), false), "T<s>");
  EXPECT_THROW(ChatTemplate::from_tokenizer_config(p, "nope"), std::runtime_error);
  // no chat_template key: chat_template.jinja next to it
  p = write("tokenizer_config.json", R"({"bos_token": null, "eos_token": "E"})");
  EXPECT_THROW(ChatTemplate::from_tokenizer_config(p), std::runtime_error);
  write("chat_template.jinja", "{% for m in messages %}{{ m.content }}{% endfor %}{{ eos_token }}");
  EXPECT_EQ(ChatTemplate::from_tokenizer_config(p).render(ordered_json::parse(R"([{"role":"user","content":"x"}])"), false),
            "xE");
  // a syntax error in the template is reported when loading
  p = write("bad.json", R"({"chat_template": "{% if x %}never closed"})");
  try {
    ChatTemplate::from_tokenizer_config(p);
    FAIL();
  } catch (const vireo::jinja::Error& e) {
    EXPECT_STREQ(e.what(), "chat template line 1: unclosed '{% if %}' block (opened at line 1)");
  }
  fs::remove_all(dir);
}

TEST(ChatTemplate, FromGguf) {
  using namespace vireo;
  auto make = [](bool with_template) {
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    if (with_template) w.set_string("tokenizer.chat_template", "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}");
    GgufArray toks{GgufType::STRING, {}};
    for (const char* s : {"<unk>", "<s>", "</s>", "a"}) toks.items.push_back({GgufType::STRING, std::string(s)});
    w.set("tokenizer.ggml.tokens", {GgufType::ARRAY, toks});
    w.set_u32("tokenizer.ggml.bos_token_id", 1);
    w.set_u32("tokenizer.ggml.eos_token_id", 2);
    return GgufFile(ByteSource::from_buffer(w.write_to_memory([](size_t, std::vector<uint8_t>&) {})));
  };
  ChatTemplate t = ChatTemplate::from_gguf(make(true));
  EXPECT_EQ(t.render(ordered_json::parse(R"([{"role": "user", "content": "hi"}])"), true), "<s>hi</s>");
  try {
    ChatTemplate::from_gguf(make(false));
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "model has no chat template (pass --chat-template ...)");
  }
}

TEST(ChatTemplate, PlainJsonConverts) {
  ChatTemplate t("{% for m in messages %}{{ m.role }}:{{ m.content }};{% endfor %}{{ tools is none }}", "", "");
  nlohmann::json msgs = nlohmann::json::parse(R"([{"role": "user", "content": "a"}])");
  EXPECT_EQ(t.render(msgs, false), "user:a;True");
}
