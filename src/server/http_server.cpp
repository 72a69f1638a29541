#include "server/http_server.h"

#include <httplib.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "server/metrics.h"

namespace vireo::server {

namespace {

using clock_type = std::chrono::steady_clock;

// What one sampled token brings back to the HTTP thread.
struct Piece {
  std::string text;
  int32_t token = -1;
  TokenLogprob chosen;
  std::vector<TokenLogprob> top;
};

// Between the inference thread (producer) and the request's HTTP thread (consumer).
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Piece> pieces;
  bool done = false;
  std::string tail;  // text flushed by the final event
  GenerateStats stats;
  std::atomic<bool> client_gone{false};
  uint64_t id = 0;
};

int64_t unix_time() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string random_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}();
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s%016llx", prefix,
                static_cast<unsigned long long>((salt ^ (++counter * 0x9E3779B97F4A7C15ull))));
  return buf;
}

}  // namespace

struct HttpServer::Impl {
  Engine& engine;
  ChatRenderFn render_chat;
  std::string bos_text;
  ServerOptions opts;
  httplib::Server http;
  Metrics metrics;
  std::atomic<bool> stopping{false};
  std::atomic<bool> scheduler_stop{false};
  std::atomic<int> open_streams{0};
  std::thread inference;

  Impl(Engine& e, ChatRenderFn r, std::string bos, ServerOptions o)
      : engine(e), render_chat(std::move(r)), bos_text(std::move(bos)), opts(std::move(o)) {}

  void send_error(httplib::Response& res, const ApiError& e) {
    res.status = e.status;
    if (e.status == 503) res.set_header("Retry-After", "1");
    res.set_content(dump(error_body(e)), "application/json");
  }

  // ---- prompt ----
  std::vector<int32_t> build_prompt(const ParsedRequest& r) {
    std::vector<int32_t> ids;
    if (r.endpoint == Endpoint::Chat) {
      std::string text;
      try {
        text = render_chat(r.messages, r.tools, r.template_kwargs);
      } catch (const std::exception& e) {
        throw ApiError(400, std::string("chat template: ") + e.what(), "invalid_request_error", "messages");
      }
      const bool has_bos = !bos_text.empty() && text.rfind(bos_text, 0) == 0;
      ids = engine.tokenize(text, engine.adds_bos() && !has_bos);
    } else if (r.prompt_is_ids) {
      ids = r.prompt_ids;
      for (int32_t t : ids)
        if (t >= engine.n_vocab()) throw ApiError(400, "token id " + std::to_string(t) + " out of range", "invalid_request_error", "prompt");
    } else {
      ids = engine.tokenize(r.prompt_text, engine.adds_bos());
    }
    if (ids.empty()) throw ApiError(400, "the prompt is empty", "invalid_request_error", "prompt");
    if (static_cast<int32_t>(ids.size()) >= engine.n_ctx())
      throw ApiError(400,
                     "This model's maximum context length is " + std::to_string(engine.n_ctx()) +
                         " tokens; your prompt has " + std::to_string(ids.size()) + " tokens.",
                     "invalid_request_error", r.endpoint == Endpoint::Chat ? "messages" : "prompt",
                     "context_length_exceeded");
    return ids;
  }

  // Submits; the channel receives every token. Throws ApiError for a full queue.
  std::shared_ptr<Channel> submit(const ParsedRequest& r, std::vector<int32_t> prompt) {
    auto ch = std::make_shared<Channel>();
    GenerateRequest req;
    req.prompt = std::move(prompt);
    req.opts = r.opts;
    const auto t_arrival = clock_type::now();
    req.on_event = [this, ch, t_arrival, last = clock_type::time_point{}](const StreamEvent& ev) mutable {
      const auto now = clock_type::now();
      if (!ev.done) {
        if (last == clock_type::time_point{}) metrics.ttft.observe(std::chrono::duration<double>(now - t_arrival).count());
        else metrics.itl.observe(std::chrono::duration<double>(now - last).count());
        last = now;
      }
      {
        std::lock_guard<std::mutex> lock(ch->mu);
        if (ev.done) {
          ch->done = true;
          ch->tail = std::string(ev.text);
          ch->stats = *ev.stats;
        } else {
          Piece p;
          p.text = std::string(ev.text);
          p.token = ev.token;
          p.chosen = ev.chosen;
          p.top = ev.top;
          ch->pieces.push_back(std::move(p));
        }
      }
      ch->cv.notify_one();
      return !ch->client_gone.load();
    };
    try {
      ch->id = engine.scheduler().submit(std::move(req));
    } catch (const QueueFullError& e) {
      metrics.rejected++;
      throw ApiError(503, std::string(e.what()) + "; retry later", "server_error", "", "server_busy");
    } catch (const std::invalid_argument& e) {
      throw ApiError(400, e.what());
    }
    return ch;
  }

  // Waits for the next pieces (or the end); false when the wait timed out.
  static bool wait(Channel& ch, std::deque<Piece>& out, bool& done, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(ch.mu);
    if (!ch.cv.wait_for(lock, timeout, [&] { return !ch.pieces.empty() || ch.done; })) return false;
    out.swap(ch.pieces);
    done = ch.done;
    return true;
  }

  // ---- response bodies ----
  json logprobs_chat(const Piece& p) {
    std::vector<std::pair<std::string, TokenLogprob>> top;
    for (const auto& t : p.top) top.push_back({engine.token_text(t.token), t});
    return chat_logprob_entry(engine.token_text(p.token), p.chosen, top);
  }

  json final_object(const ParsedRequest& r, const std::string& id, int64_t created, const std::string& text,
                    const std::vector<Piece>& pieces, const GenerateStats& st) {
    json choice;
    if (r.endpoint == Endpoint::Chat) {
      choice = {{"index", 0}, {"message", {{"role", "assistant"}, {"content", text}}}};
      if (r.logprobs) {
        json content = json::array();
        for (const auto& p : pieces) content.push_back(logprobs_chat(p));
        choice["logprobs"] = {{"content", content}};
      } else {
        choice["logprobs"] = nullptr;
      }
    } else {
      choice = {{"index", 0}, {"text", text}};
      choice["logprobs"] = r.logprobs ? completion_logprobs(pieces) : json(nullptr);
    }
    choice["finish_reason"] = finish_reason(st.stop_reason);
    return json{{"id", id},
                {"object", r.endpoint == Endpoint::Chat ? "chat.completion" : "text_completion"},
                {"created", created},
                {"model", opts.model_name},
                {"system_fingerprint", "vireo"},
                {"choices", json::array({choice})},
                {"usage", usage_json(st)}};
  }

  json completion_logprobs(const std::vector<Piece>& pieces) {
    json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
    size_t offset = 0;
    for (const auto& p : pieces) {
      const std::string t = engine.token_text(p.token);
      tokens.push_back(t);
      lps.push_back(p.chosen.logprob);
      json top = json::object();
      for (const auto& c : p.top) top[engine.token_text(c.token)] = c.logprob;
      tops.push_back(top);
      offsets.push_back(offset);
      offset += t.size();
    }
    return json{{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
  }

  json chunk(const ParsedRequest& r, const std::string& id, int64_t created, json choice) {
    return json{{"id", id},
                {"object", r.endpoint == Endpoint::Chat ? "chat.completion.chunk" : "text_completion"},
                {"created", created},
                {"model", opts.model_name},
                {"system_fingerprint", "vireo"},
                {"choices", choice.is_null() ? json::array() : json::array({choice})}};
  }

  // ---- handlers ----
  void handle_generate(const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
    const bool chat = endpoint == Endpoint::Chat;
    metrics.requests++;
    if (stopping) throw ApiError(503, "the server is shutting down", "server_error", "", "shutting_down");
    ParsedRequest r = parse_request(req.body, endpoint);
    std::vector<int32_t> prompt = build_prompt(r);
    if (r.echo && !chat) r.opts.max_tokens = std::max(0, r.opts.max_tokens);
    auto ch = submit(r, prompt);
    const std::string id = random_id(chat ? "chatcmpl-" : "cmpl-");
    const int64_t created = unix_time();
    const std::string echo_text = (!chat && r.echo) ? (r.prompt_is_ids ? engine.detokenize(r.prompt_ids) : r.prompt_text) : "";

    if (!r.stream) {
      // Not streaming: wait for the end. A client that leaves is noticed when the response cannot be sent; the
      // generation is bounded by max_tokens and the context.
      std::vector<Piece> all;
      std::string text = echo_text;
      bool done = false;
      std::deque<Piece> got;
      while (!done) {
        got.clear();
        if (!wait(*ch, got, done, std::chrono::milliseconds(1000))) {
          if (stopping && !scheduler_running()) break;
          continue;
        }
        for (auto& p : got) {
          text += p.text;
          all.push_back(std::move(p));
        }
      }
      GenerateStats st;
      {
        std::lock_guard<std::mutex> lock(ch->mu);
        text += ch->tail;
        st = ch->stats;
      }
      count_finished(st);
      if (st.stop_reason == "error") throw ApiError(500, "generation failed: " + st.error, "server_error");
      res.set_content(dump(final_object(r, id, created, text, all, st)), "application/json");
      return;
    }

    // Streaming: server-sent events, one chunk per piece of text, then the finish chunk, usage, [DONE].
    open_streams++;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    auto sent_role = std::make_shared<bool>(false);
    auto finished = std::make_shared<bool>(false);
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, r, ch, id, created, sent_role, finished, echo_text](size_t, httplib::DataSink& sink) {
          auto send = [&](const json& j) {
            const std::string s = "data: " + dump(j) + "\n\n";
            return sink.write(s.data(), s.size());
          };
          if (!*sent_role) {
            *sent_role = true;
            if (r.endpoint == Endpoint::Chat) {
              json c = {{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
              if (!send(chunk(r, id, created, c))) return false;
            } else if (!echo_text.empty()) {
              json c = {{"index", 0}, {"text", echo_text}, {"logprobs", nullptr}, {"finish_reason", nullptr}};
              if (!send(chunk(r, id, created, c))) return false;
            }
          }
          std::deque<Piece> got;
          bool done = false;
          if (!wait(*ch, got, done, std::chrono::milliseconds(500))) return sink.is_writable();  // keep waiting
          for (const auto& p : got) {
            if (p.text.empty() && !r.logprobs) continue;  // held back (stop-string prefix, partial UTF-8)
            json c;
            if (r.endpoint == Endpoint::Chat) {
              c = {{"index", 0}, {"delta", {{"content", p.text}}}};
              c["logprobs"] = r.logprobs ? json{{"content", json::array({logprobs_chat(p)})}} : json(nullptr);
            } else {
              c = {{"index", 0}, {"text", p.text}};
              c["logprobs"] = r.logprobs ? completion_logprobs({p}) : json(nullptr);
            }
            c["finish_reason"] = nullptr;
            if (!send(chunk(r, id, created, c))) return false;
          }
          if (!done) return true;
          GenerateStats st;
          std::string tail;
          {
            std::lock_guard<std::mutex> lock(ch->mu);
            st = ch->stats;
            tail = ch->tail;
          }
          count_finished(st);
          json c;
          if (r.endpoint == Endpoint::Chat) c = {{"index", 0}, {"delta", tail.empty() ? json::object() : json{{"content", tail}}}};
          else c = {{"index", 0}, {"text", tail}};
          c["logprobs"] = nullptr;
          c["finish_reason"] = finish_reason(st.stop_reason);
          if (st.stop_reason == "error") {
            const std::string s = "data: " + dump(error_body(ApiError(500, "generation failed: " + st.error, "server_error"))) + "\n\n";
            sink.write(s.data(), s.size());
          } else if (!send(chunk(r, id, created, c))) {
            return false;
          }
          if (r.include_usage) {
            json u = chunk(r, id, created, nullptr);
            u["usage"] = usage_json(st);
            if (!send(u)) return false;
          }
          const std::string end = "data: [DONE]\n\n";
          sink.write(end.data(), end.size());
          *finished = true;
          sink.done();
          return true;
        },
        [this, ch, finished](bool) {
          // The stream ended: normally, or because the client went away (then free its slot at once).
          if (!*finished) {
            ch->client_gone = true;
            engine.scheduler().cancel(ch->id);
            metrics.disconnects++;
          }
          open_streams--;
        });
  }

  void count_finished(const GenerateStats& st) {
    metrics.prompt_tokens += st.prompt_tokens;
    metrics.generated_tokens += st.generated_tokens;
    metrics.completed++;
  }

  bool scheduler_running() const { return !scheduler_stop.load(); }

  void install_routes() {
    http.set_payload_max_length(64ull << 20);
    http.set_read_timeout(30, 0);
    http.set_write_timeout(30, 0);
    const int threads = opts.http_threads > 0 ? opts.http_threads : engine.n_slots() + opts.max_queue + 8;
    http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };

    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (opts.api_key.empty() || req.path == "/health" || req.path == "/metrics") return httplib::Server::HandlerResponse::Unhandled;
      const std::string auth = req.get_header_value("Authorization");
      if (auth != "Bearer " + opts.api_key) {
        metrics.unauthorized++;
        send_error(res, ApiError(401, "Incorrect API key provided.", "invalid_request_error", "", "invalid_api_key"));
        return httplib::Server::HandlerResponse::Handled;
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });

    auto wrap = [this](auto fn) {
      return [this, fn](const httplib::Request& req, httplib::Response& res) {
        try {
          fn(req, res);
        } catch (const ApiError& e) {
          if (e.status >= 400 && e.status < 500) metrics.bad_requests++;
          send_error(res, e);
        } catch (const std::exception& e) {
          metrics.server_errors++;
          send_error(res, ApiError(500, std::string("internal error: ") + e.what(), "server_error"));
        }
      };
    };
    http.Post("/v1/chat/completions", wrap([this](const auto& q, auto& s) { handle_generate(q, s, Endpoint::Chat); }));
    http.Post("/v1/completions", wrap([this](const auto& q, auto& s) { handle_generate(q, s, Endpoint::Completion); }));
    http.Get("/v1/models", wrap([this](const auto&, auto& res) {
      json m = {{"id", opts.model_name}, {"object", "model"}, {"created", unix_time()}, {"owned_by", "vireo"}};
      m["meta"] = {{"n_ctx", engine.n_ctx()}, {"n_vocab", engine.n_vocab()}, {"architecture", engine.architecture()}};
      res.set_content(dump(json{{"object", "list"}, {"data", json::array({m})}}), "application/json");
    }));
    http.Get(R"(/v1/models/(.+))", wrap([this](const auto& req, auto& res) {
      if (req.matches[1] != opts.model_name) throw ApiError(404, "The model '" + std::string(req.matches[1]) + "' does not exist", "invalid_request_error", "model", "model_not_found");
      res.set_content(dump(json{{"id", opts.model_name}, {"object", "model"}, {"created", unix_time()}, {"owned_by", "vireo"}}), "application/json");
    }));
    http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      if (stopping) {
        res.status = 503;
        res.set_content(R"({"status":"shutting down"})", "application/json");
      } else {
        res.set_content(R"({"status":"ok"})", "application/json");
      }
    });
    http.Post("/tokenize", wrap([this](const auto& req, auto& res) {
      json j = parse_object(req.body);
      if (!j.contains("content") || !j["content"].is_string()) throw ApiError(400, "'content' must be a string", "invalid_request_error", "content");
      bool add_special = false;
      if (j.contains("add_special")) {
        if (!j["add_special"].is_boolean()) throw ApiError(400, "'add_special' must be a boolean", "invalid_request_error", "add_special");
        add_special = j["add_special"];
      }
      const auto ids = engine.tokenize(j["content"].get<std::string>(), add_special && engine.adds_bos());
      res.set_content(dump(json{{"tokens", ids}}), "application/json");
    }));
    http.Post("/detokenize", wrap([this](const auto& req, auto& res) {
      json j = parse_object(req.body);
      if (!j.contains("tokens") || !j["tokens"].is_array()) throw ApiError(400, "'tokens' must be an array of token ids", "invalid_request_error", "tokens");
      std::vector<int32_t> ids;
      for (const auto& t : j["tokens"]) {
        if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= engine.n_vocab())
          throw ApiError(400, "'tokens' must hold token ids below " + std::to_string(engine.n_vocab()), "invalid_request_error", "tokens");
        ids.push_back(t.get<int32_t>());
      }
      res.set_content(dump(json{{"content", engine.detokenize(ids)}}), "application/json");
    }));
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.prometheus(engine.scheduler().metrics(), open_streams.load()), "text/plain; version=0.0.4");
    });
    http.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;  // a handler already wrote an error body
      if (res.status == 404)
        send_error(res, ApiError(404, "no route for " + req.method + " " + req.path, "invalid_request_error", "", "not_found"));
      else if (res.status == 413)
        send_error(res, ApiError(413, "request body too large", "invalid_request_error"));
      else if (res.status >= 400)
        send_error(res, ApiError(res.status, "request failed with status " + std::to_string(res.status), "invalid_request_error"));
    });
  }

  static json parse_object(const std::string& body) {
    json j;
    try {
      j = json::parse(body);
    } catch (const json::parse_error& e) {
      throw ApiError(400, std::string("request body is not valid JSON: ") + e.what());
    }
    if (!j.is_object()) throw ApiError(400, "request body must be a JSON object");
    return j;
  }
};

HttpServer::HttpServer(Engine& engine, ChatRenderFn render_chat, std::string bos_text, ServerOptions opts)
    : impl_(std::make_unique<Impl>(engine, std::move(render_chat), std::move(bos_text), std::move(opts))) {
  impl_->engine.scheduler().set_max_queue(impl_->opts.max_queue);
  impl_->install_routes();
}

HttpServer::~HttpServer() {
  shutdown();
  if (impl_->inference.joinable()) impl_->inference.join();
}

void HttpServer::run(const std::function<void(int)>& on_listening) {
  Impl& m = *impl_;
  int port = m.opts.port;
  if (port == 0) {
    port = m.http.bind_to_any_port(m.opts.host);
    if (port < 0) throw std::runtime_error("cannot bind to " + m.opts.host);
  } else if (!m.http.bind_to_port(m.opts.host, port)) {
    throw std::runtime_error("cannot listen on " + m.opts.host + ":" + std::to_string(port) + " (in use or not allowed)");
  }
  m.inference = std::thread([&m] { m.engine.scheduler().serve(m.scheduler_stop); });
  if (on_listening) on_listening(port);
  m.http.listen_after_bind();
  m.scheduler_stop = true;
  if (m.inference.joinable()) m.inference.join();
}

void HttpServer::shutdown() {
  Impl& m = *impl_;
  if (m.stopping.exchange(true)) return;
  // New requests now get 503. Stop the scheduler: every queued or running request ends as cancelled, so each
  // open stream sends its last chunk and [DONE]. Then give the streams a moment to flush before closing sockets.
  m.scheduler_stop = true;
  const auto deadline = clock_type::now() + std::chrono::seconds(5);
  while (m.open_streams.load() > 0 && clock_type::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  m.http.stop();
}

}  // namespace vireo::server
