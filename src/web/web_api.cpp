// The C API of the browser build (vireo-web.wasm), called by web/src/worker.js. One engine per module instance.
// Generation is step-wise so that JavaScript stays in control between tokens: start() queues a request,
// each step() runs one forward pass of the scheduler (on WebGPU it waits on the GPU through a suspending
// import), and poll() hands over the text and tokens produced since the last poll. Strings go out as JSON in a
// buffer that stays valid until the next call; errors never cross as exceptions.
#include <emscripten.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "chat/chat_template.h"
#include "gguf/gguf.h"
#include "vireo/vireo.h"

EM_JS(void, vireo_web_progress, (double done, double total), {
  if (Module['onLoadProgress']) Module['onLoadProgress'](done, total);
});
EM_JS(void, vireo_web_compile_progress, (double done, double total), {
  if (Module['onCompileProgress']) Module['onCompileProgress'](done, total);
});

namespace {

using nlohmann::json;

struct Output {
  std::string text;              // final text not yet polled
  std::vector<int32_t> tokens;   // sampled ids not yet polled
  bool done = false;
  json stats;
};

struct State {
  std::unique_ptr<vireo::Engine> engine;
  std::unique_ptr<vireo::ChatTemplate> chat;
  std::map<uint64_t, Output> outputs;
  std::string out;  // the last string returned
  std::string error;
  int threads = 1;  // CPU threads of the loaded engine
};

State& state() {
  static State s;
  return s;
}

const char* give(std::string s) {
  state().out = std::move(s);
  return state().out.c_str();
}

int fail(const std::exception& e) {
  state().error = e.what();
  return -1;
}

template <typename T>
T get(const json& j, const char* key, T fallback) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? fallback : it->get<T>();
}

vireo::GenerateOptions generate_options(const json& o) {
  vireo::GenerateOptions g;
  auto& s = g.sampling;
  s.temperature = get<float>(o, "temperature", s.temperature);
  s.top_k = get<int32_t>(o, "topK", s.top_k);
  s.top_p = get<float>(o, "topP", s.top_p);
  s.min_p = get<float>(o, "minP", s.min_p);
  s.repeat_penalty = get<float>(o, "repeatPenalty", s.repeat_penalty);
  s.presence_penalty = get<float>(o, "presencePenalty", s.presence_penalty);
  s.frequency_penalty = get<float>(o, "frequencyPenalty", s.frequency_penalty);
  s.seed = get<uint64_t>(o, "seed", s.seed);
  g.max_tokens = get<int32_t>(o, "maxTokens", g.max_tokens);
  g.ignore_eos = get<bool>(o, "ignoreEos", g.ignore_eos);
  g.show_special = get<bool>(o, "showSpecial", g.show_special);
  if (o.contains("stop")) {
    const json& st = o["stop"];
    if (st.is_string()) g.stop.push_back(st.get<std::string>());
    else if (st.is_array())
      for (const auto& x : st) g.stop.push_back(x.get<std::string>());
  }
  return g;
}

}  // namespace

extern "C" {

// Loads the GGUF at `path` (Emscripten's file system: the worker mounts the model there). options: JSON
// {device: "webgpu"|"cpu", contextLength, kvF32, threads}. Returns 0, or -1 with vireo_web_error() saying why.
EMSCRIPTEN_KEEPALIVE int vireo_web_load(const char* path, const char* options_json) {
  State& st = state();
  try {
    const json o = json::parse(options_json ? options_json : "{}");
    st.outputs.clear();
    st.chat.reset();
    st.engine.reset();
    vireo::EngineOptions eo;
    eo.device = get<std::string>(o, "device", "cpu");
    eo.n_ctx = get<int>(o, "contextLength", 0);
    eo.kv_f32 = get<bool>(o, "kvF32", false);
    // Threads only in the threaded build (vireo-web-mt, for cross-origin isolated pages); the worker passes
    // how many the browser offers.
#ifdef __EMSCRIPTEN_PTHREADS__
    eo.threads = std::clamp(get<int>(o, "threads", 1), 1, 16);
#else
    eo.threads = 1;
#endif
    st.threads = eo.device == "cpu" ? eo.threads : 1;
    // On the GPU the weights live in GPU buffers: read them tensor by tensor instead of holding the file in the
    // heap (models larger than the 4 GB WASM heap load).
    eo.stream_weights = eo.device == "webgpu";
    eo.on_compile = [](int64_t done, int64_t total) {
      vireo_web_compile_progress(static_cast<double>(done), static_cast<double>(total));
    };
    st.engine = vireo::Engine::load(path, eo, [](int64_t done, int64_t total) {
      vireo_web_progress(static_cast<double>(done), static_cast<double>(total));
    });
    const vireo::GgufFile& f = st.engine->gguf();
    st.chat = std::make_unique<vireo::ChatTemplate>(f.find("tokenizer.chat_template")
                                                        ? vireo::ChatTemplate::from_gguf(f)
                                                        : vireo::ChatTemplate::plain_turns());
    return 0;
  } catch (const std::exception& e) {
    st.engine.reset();
    return fail(e);
  }
}

EMSCRIPTEN_KEEPALIVE const char* vireo_web_error() { return state().error.c_str(); }

// {architecture, name, device, contextLength, vocabSize, memoryBytes, weightBytesPerToken, hasChatTemplate, threads}
EMSCRIPTEN_KEEPALIVE const char* vireo_web_info() {
  State& st = state();
  if (!st.engine) return give("null");
  const vireo::Engine& e = *st.engine;
  const vireo::GgufFile& f = e.gguf();
  return give(json{{"architecture", e.architecture()},
                   {"name", f.get_string("general.name", "")},
                   {"device", e.device_description()},
                   {"contextLength", e.n_ctx()},
                   {"vocabSize", e.n_vocab()},
                   {"memoryBytes", e.memory_bytes()},
                   {"weightBytesPerToken", e.weight_bytes_per_token()},
                   {"hasChatTemplate", f.find("tokenizer.chat_template") != nullptr},
                   {"threads", st.threads}}
                  .dump());
}

// The prompt text for a conversation (messages: JSON [{role, content}, ...]) in the model's chat template
// (plain "User:/Assistant:" turns when it has none), ending with the assistant's turn opened. Null on error.
EMSCRIPTEN_KEEPALIVE const char* vireo_web_chat_prompt(const char* messages_json) {
  State& st = state();
  try {
    if (!st.chat) throw std::runtime_error("no model loaded");
    return give(st.chat->render(nlohmann::ordered_json::parse(messages_json), true));
  } catch (const std::exception& e) {
    fail(e);
    return nullptr;
  }
}

// Tokenizes `prompt` (BOS as the model asks unless options.addBos says otherwise; with options.chat, not when the
// rendered chat already starts with the BOS text) and queues its generation. Returns the request id (> 0), or -1.
EMSCRIPTEN_KEEPALIVE int vireo_web_start(const char* prompt, const char* options_json) {
  State& st = state();
  try {
    if (!st.engine) throw std::runtime_error("no model loaded");
    const json o = json::parse(options_json ? options_json : "{}");
    vireo::GenerateRequest req;
    req.opts = generate_options(o);
    const std::string text = prompt;
    const std::string& bos_text = st.chat ? st.chat->bos_token() : std::string();
    const bool has_bos = get<bool>(o, "chat", false) && !bos_text.empty() && text.rfind(bos_text, 0) == 0;
    req.prompt = st.engine->tokenize(text, get<bool>(o, "addBos", st.engine->adds_bos() && !has_bos));
    if (req.prompt.empty()) throw std::runtime_error("empty prompt (no tokens)");
    auto holder = std::make_shared<uint64_t>(0);
    req.on_event = [holder](const vireo::StreamEvent& ev) {
      Output& out = state().outputs[*holder];
      out.text.append(ev.text);
      if (ev.token >= 0) out.tokens.push_back(ev.token);
      if (ev.done && ev.stats) {
        const vireo::GenerateStats& s = *ev.stats;
        out.done = true;
        out.stats = {{"promptTokens", s.prompt_tokens},
                     {"promptComputed", s.prompt_computed},
                     {"generatedTokens", s.generated_tokens},
                     {"promptSeconds", s.prompt_seconds},
                     {"decodeSeconds", s.decode_seconds},
                     {"ttftSeconds", s.ttft_seconds},
                     {"stopReason", s.stop_reason},
                     {"error", s.error}};
      }
      return true;
    };
    uint64_t id = 0;
    try {
      id = st.engine->scheduler().submit(std::move(req));
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(e.what());
    }
    *holder = id;
    st.outputs[id];
    return static_cast<int>(id);
  } catch (const std::exception& e) {
    return fail(e);
  }
}

// Runs one forward pass over the queued requests: 1 when one ran, 0 when there was nothing to do, -1 on error.
EMSCRIPTEN_KEEPALIVE int vireo_web_step() {
  State& st = state();
  try {
    if (!st.engine) throw std::runtime_error("no model loaded");
    return st.engine->scheduler().step() ? 1 : 0;
  } catch (const std::exception& e) {
    return fail(e);
  }
}

// What request `id` produced since the last poll: {text, tokens, done, stats}. A finished request is
// forgotten once polled.
EMSCRIPTEN_KEEPALIVE const char* vireo_web_poll(int id) {
  State& st = state();
  auto it = st.outputs.find(static_cast<uint64_t>(id));
  if (it == st.outputs.end()) return give("null");
  Output& o = it->second;
  json j = {{"text", o.text}, {"tokens", o.tokens}, {"done", o.done}};
  if (o.done) j["stats"] = o.stats;
  o.text.clear();
  o.tokens.clear();
  if (o.done) st.outputs.erase(it);
  return give(j.dump(-1, ' ', false, json::error_handler_t::replace));
}

EMSCRIPTEN_KEEPALIVE void vireo_web_cancel(int id) {
  State& st = state();
  if (st.engine) st.engine->scheduler().cancel(static_cast<uint64_t>(id));
}

// Token ids of `text` as JSON (no BOS).
EMSCRIPTEN_KEEPALIVE const char* vireo_web_tokenize(const char* text) {
  State& st = state();
  if (!st.engine) return give("null");
  return give(json(st.engine->tokenize(text, false)).dump());
}

EMSCRIPTEN_KEEPALIVE void vireo_web_unload() {
  State& st = state();
  st.outputs.clear();
  st.chat.reset();
  st.engine.reset();
}

}  // extern "C"
