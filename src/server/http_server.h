// `vireo serve`: the OpenAI-compatible HTTP server.
//
// HTTP threads (cpp-httplib's pool) parse requests, render chat templates, tokenize and submit to the engine's
// Scheduler; one inference thread runs Scheduler::serve, which batches every active request into each forward
// pass. Tokens travel back through a per-request channel that the HTTP thread drains (server-sent events when
// streaming). HTTP threads never touch the model; the inference thread never blocks on a socket.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "server/openai.h"
#include "vireo/vireo.h"

namespace vireo::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                // 0: any free port (see HttpServer::port())
  std::string api_key;            // empty: no authentication
  std::string model_name = "vireo";
  int max_queue = 64;             // requests waiting for a slot before new ones get 503
  int http_threads = 0;           // 0: slots + max_queue + 8 (a streaming request holds one thread)
};

// Renders chat messages to the prompt text (the model's chat template).
using ChatRenderFn = std::function<std::string(const json& messages, const json& tools, const json& extra)>;

class HttpServer {
 public:
  // `bos_text`: the BOS token's text; when the rendered prompt already starts with it no BOS id is added.
  HttpServer(Engine& engine, ChatRenderFn render_chat, std::string bos_text, ServerOptions opts);
  ~HttpServer();
  // Binds (throws std::runtime_error naming host:port when it cannot), then serves until shutdown().
  void run(const std::function<void(int port)>& on_listening = {});
  // Stops accepting work, ends running streams (their clients get a final chunk and [DONE]), then returns
  // from run(). Safe to call from any thread, more than once.
  void shutdown();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace vireo::server
