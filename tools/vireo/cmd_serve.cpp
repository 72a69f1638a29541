// vireo serve: the OpenAI-compatible HTTP server (src/server/).
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "chat/chat_template.h"
#include "common.h"
#include "gguf/gguf.h"
#include "server/http_server.h"

namespace vireo::cli {

// The chat template: --chat-template (a Jinja file or a tokenizer_config.json), else the model's, else
// ChatTemplate::plain_turns() (with a note).
std::shared_ptr<ChatTemplate> load_chat_template(const std::string& model_path, const std::string& override_path,
                                                 bool quiet) {
  const GgufFile file = GgufFile::open(model_path);
  const bool has_own = file.find("tokenizer.chat_template") != nullptr;
  if (!override_path.empty()) {
    if (std::filesystem::path(override_path).extension() == ".json")
      return std::make_shared<ChatTemplate>(ChatTemplate::from_tokenizer_config(override_path));
    FILE* f = std::fopen(override_path.c_str(), "rb");
    if (!f) throw std::runtime_error("cannot open chat template '" + override_path + "'");
    std::string src;
    char buf[65536];
    size_t k;
    while ((k = std::fread(buf, 1, sizeof buf, f)) > 0) src.append(buf, k);
    std::fclose(f);
    std::string bos, eos;
    if (has_own) {
      const ChatTemplate own = ChatTemplate::from_gguf(file);
      bos = own.bos_token();
      eos = own.eos_token();
    }
    return std::make_shared<ChatTemplate>(std::move(src), bos, eos);
  }
  if (has_own) return std::make_shared<ChatTemplate>(ChatTemplate::from_gguf(file));
  if (!quiet)
    std::fprintf(stderr, "note: the model has no chat template; chat requests use plain 'User:/Assistant:' turns "
                         "(--chat-template FILE sets one)\n");
  return std::make_shared<ChatTemplate>(ChatTemplate::plain_turns());
}

void add_serve_command(CLI::App& app) {
  struct Args {
    LoadArgs load;
    server::ServerOptions server;
    std::string chat_template;
    std::string alias;
    int step_delay_ms = 0;
  };
  auto args = std::make_shared<Args>();
  args->load.slots = 4;
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server (continuous batching)");
  args->load.add_to(cmd);
  cmd->add_option("--host", args->server.host, "address to listen on");
  cmd->add_option("--port", args->server.port, "port (0: any free port)")->check(CLI::Range(0, 65535));
  cmd->add_option("--parallel", args->load.slots, "sequences decoded together (KV slots)")->check(CLI::Range(1, 4096));
  cmd->add_option("--max-queue", args->server.max_queue, "requests that may wait for a slot (more get 503)")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--api-key", args->server.api_key, "require 'Authorization: Bearer KEY' (or set VIREO_API_KEY)")
      ->envname("VIREO_API_KEY");
  cmd->add_option("--chat-template", args->chat_template,
                  "Jinja chat template file, or a tokenizer_config.json (default: the model's)");
  cmd->add_option("--alias", args->alias, "model name the API reports (default: the file name)");
  cmd->add_option("--step-delay-ms", args->step_delay_ms, "sleep after each step (testing clients against a slow model)")
      ->check(CLI::Range(0, 10000));
  cmd->callback([args] {
    // Signals go to one watcher thread (blocked everywhere else), which shuts the server down cleanly.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
    signal(SIGPIPE, SIG_IGN);

    auto tmpl = load_chat_template(args->load.model, args->chat_template, false);
    auto engine = load_engine(args->load);
    engine->scheduler().set_step_delay_ms(args->step_delay_ms);
    server::ServerOptions so = args->server;
    so.model_name = !args->alias.empty() ? args->alias : std::filesystem::path(args->load.model).filename().string();
    server::HttpServer srv(
        *engine,
        [tmpl](const server::json& messages, const server::json& tools, const server::json& extra) {
          return tmpl->render(messages, true, tools, extra);
        },
        tmpl->bos_token(), so);

    std::thread watcher([&srv, sigs] {
      int sig = 0;
      sigwait(&sigs, &sig);
      if (sig == 0) return;
      std::fprintf(stderr, "\nvireo serve: %s received, finishing open streams and stopping\n",
                   sig == SIGINT ? "SIGINT" : "SIGTERM");
      srv.shutdown();
    });
    srv.run([&](int port) {
      std::fprintf(stderr, "vireo serve: model '%s' on http://%s:%d (%d parallel, context %d per sequence)\n",
                   so.model_name.c_str(), so.host.c_str(), port, engine->n_slots(), engine->n_ctx());
      std::fflush(stderr);
    });
    // run() returned (a signal, or the listener failed): wake the watcher if it still waits.
    pthread_kill(watcher.native_handle(), SIGTERM);
    watcher.join();
  });
}

}  // namespace vireo::cli
