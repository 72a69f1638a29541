// vireo chat: an interactive terminal chat. The conversation (a messages array) is rendered with the chat template
// every turn; the scheduler's prefix cache keeps the KV of the earlier turns, so only the new tokens are computed.
// Replies stream to stdout; a one-line summary per reply, notes and errors go to stderr.
// When stdin is not a terminal each input line is a user turn (or a /command) and no prompt is printed.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "chat/chat_template.h"
#include "common.h"

namespace vireo::cli {

namespace {

using ordered_json = nlohmann::ordered_json;

std::atomic<int> g_sigint{0};

extern "C" void on_sigint(int) { g_sigint.fetch_add(1, std::memory_order_relaxed); }

// Line reading on the raw descriptor, so that Ctrl-C (SIGINT, installed without SA_RESTART) interrupts a wait.
class LineReader {
 public:
  enum class Result { kLine, kEof, kInterrupted };

  Result next(std::string& line) {
    for (;;) {
      const size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return Result::kLine;
      }
      if (eof_) {
        if (buf_.empty()) return Result::kEof;
        line = std::move(buf_);
        buf_.clear();
        return Result::kLine;
      }
      if (g_sigint.load() != 0) return Result::kInterrupted;
      char tmp[4096];
      const ssize_t k = ::read(0, tmp, sizeof tmp);
      if (k > 0) {
        buf_.append(tmp, size_t(k));
      } else if (k == 0) {
        eof_ = true;
      } else if (errno == EINTR) {
        if (g_sigint.load() != 0) {
          buf_.clear();  // the terminal discards the half-typed line too
          return Result::kInterrupted;
        }
      } else {
        eof_ = true;
      }
    }
  }

 private:
  std::string buf_;
  bool eof_ = false;
};

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  const size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

constexpr const char* kHelp =
    "commands:\n"
    "  /reset       clear the conversation (keeps the system prompt)\n"
    "  /save FILE   write the conversation as JSON ({\"messages\": [...]})\n"
    "  /load FILE   read a conversation written by /save\n"
    "  /exit, /quit leave (so does Ctrl-D)\n"
    "  /help        this text\n"
    "Ctrl-C stops a reply as it streams; at the prompt it clears the line, twice in a row leaves.\n";

}  // namespace

void add_chat_command(CLI::App& app) {
  struct Args {
    LoadArgs load;
    std::string system;
    std::string chat_template;
    int n = 512;
    GenerateOptions gen;
    bool show_special = false;
    int token_delay_ms = 0;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("chat", "interactive chat in the terminal (keeps the KV cache across turns)");
  args->load.add_to(cmd);
  cmd->add_option("--system", args->system, "system prompt");
  cmd->add_option("-n,--n-predict", args->n, "new tokens per reply at most");
  SamplingParams& s = args->gen.sampling;
  cmd->add_option("--temp", s.temperature, "temperature (0: greedy)");
  cmd->add_option("--top-k", s.top_k, "top-k (0: off)");
  cmd->add_option("--top-p", s.top_p, "top-p (1: off)");
  cmd->add_option("--min-p", s.min_p, "min-p (0: off)");
  cmd->add_option("--repeat-penalty", s.repeat_penalty, "repetition penalty (1: off)");
  cmd->add_option("--seed", s.seed, "random seed");
  cmd->add_option("--chat-template", args->chat_template,
                  "Jinja chat template file, or a tokenizer_config.json (default: the model's)");
  cmd->add_flag("--show-special", args->show_special, "print the text of control tokens too");
  cmd->add_option("--token-delay-ms", args->token_delay_ms, "sleep after each streamed piece (for testing)")
      ->check(CLI::Range(0, 10000))
      ->group("");  // hidden
  cmd->callback([args] {
    const bool tty = isatty(0) != 0;
    auto tmpl = load_chat_template(args->load.model, args->chat_template, !tty);
    auto engine = load_engine(args->load, !tty);

    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a read at the prompt returns EINTR
    sigaction(SIGINT, &sa, nullptr);

    ordered_json messages = ordered_json::array();
    auto reset = [&] {
      messages = ordered_json::array();
      if (!args->system.empty()) messages.push_back({{"role", "system"}, {"content", args->system}});
    };
    reset();

    GenerateOptions g = args->gen;
    g.max_tokens = args->n;
    g.show_special = args->show_special;
    g.add_bos = false;  // decided below, from the rendered text

    if (tty)
      std::fprintf(stderr, "vireo chat: context %d tokens; /help for commands, Ctrl-D or /exit to leave\n",
                   engine->n_ctx());

    // One reply to the conversation as it stands (its last message is the user's).
    auto reply = [&] {
      std::string text;
      try {
        text = tmpl->render(messages, true);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "error: chat template: %s\n", e.what());
        messages.erase(messages.size() - 1);
        return;
      }
      const std::string& bos = tmpl->bos_token();
      const bool has_bos = !bos.empty() && text.rfind(bos, 0) == 0;
      const std::vector<int32_t> ids = engine->tokenize(text, engine->adds_bos() && !has_bos);
      std::string out;
      g_sigint.store(0);
      GenerateStats st;
      try {
        st = engine->generate_tokens(ids, g, [&](std::string_view piece) {
          if (g_sigint.load() != 0) return false;
          // Leading whitespace is dropped: templates put their own between the role and the content, and the
          // re-rendered turn then tokenizes as it was generated (so the next turn reuses its KV).
          if (out.empty()) {
            const size_t a = piece.find_first_not_of(" \t\r\n");
            piece.remove_prefix(a == std::string_view::npos ? piece.size() : a);
          }
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
          out.append(piece);
          if (args->token_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(args->token_delay_ms));
          return g_sigint.load() == 0;
        });
      } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s (/reset starts over)\n", e.what());
        messages.erase(messages.size() - 1);
        g_sigint.store(0);
        return;
      }
      const bool cancelled = g_sigint.load() != 0 || st.stop_reason == "cancelled";
      g_sigint.store(0);
      std::fputc('\n', stdout);
      std::fflush(stdout);
      messages.push_back({{"role", "assistant"}, {"content", out}});
      const double pp = st.prompt_seconds > 0 ? st.prompt_computed / st.prompt_seconds : 0;
      const double tg = st.decode_seconds > 0 ? (st.generated_tokens - 1) / st.decode_seconds : 0;
      std::fprintf(stderr,
                   "[prompt: %d/%d tokens computed (%d cached), %.1f tok/s | reply: %d tokens, %.1f tok/s | "
                   "stop: %s]\n",
                   st.prompt_computed, st.prompt_tokens, st.prompt_tokens - st.prompt_computed, pp,
                   st.generated_tokens, tg, cancelled ? "cancelled" : st.stop_reason.c_str());
      std::fflush(stderr);
    };

    // A /command; false to leave.
    auto command = [&](const std::string& line) {
      const size_t sp = line.find(' ');
      const std::string name = line.substr(0, sp);
      const std::string arg = sp == std::string::npos ? "" : trim(line.substr(sp + 1));
      if (name == "/exit" || name == "/quit") return false;
      if (name == "/help") {
        std::fputs(kHelp, stderr);
      } else if (name == "/reset") {
        reset();
        std::fprintf(stderr, "(conversation cleared)\n");
      } else if (name == "/save") {
        if (arg.empty()) {
          std::fprintf(stderr, "usage: /save FILE\n");
        } else {
          std::ofstream f(arg, std::ios::binary);
          f << ordered_json{{"messages", messages}}.dump(2) << "\n";
          f.close();
          if (!f)
            std::fprintf(stderr, "error: cannot write '%s'\n", arg.c_str());
          else
            std::fprintf(stderr, "(saved %zu messages to %s)\n", messages.size(), arg.c_str());
        }
      } else if (name == "/load") {
        if (arg.empty()) {
          std::fprintf(stderr, "usage: /load FILE\n");
        } else {
          try {
            std::ifstream f(arg, std::ios::binary);
            if (!f) throw std::runtime_error("cannot open '" + arg + "'");
            std::stringstream ss;
            ss << f.rdbuf();
            ordered_json j = ordered_json::parse(ss.str());
            if (!j.is_object() || !j.contains("messages") || !j["messages"].is_array())
              throw std::runtime_error("expected {\"messages\": [...]}");
            for (const auto& m : j["messages"])
              if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content"))
                throw std::runtime_error("every message needs a role and a content");
            messages = j["messages"];
            std::fprintf(stderr, "(loaded %zu messages from %s)\n", messages.size(), arg.c_str());
          } catch (const std::exception& e) {
            std::fprintf(stderr, "error: /load: %s\n", e.what());
          }
        }
      } else {
        std::fprintf(stderr, "unknown command '%s' (/help lists them)\n", name.c_str());
      }
      return true;
    };

    LineReader in;
    bool interrupted_at_prompt = false;
    for (;;) {
      if (tty) {
        std::fputs("> ", stdout);
        std::fflush(stdout);
      }
      std::string line;
      const LineReader::Result r = in.next(line);
      if (r == LineReader::Result::kEof) {
        if (tty) std::fputc('\n', stdout);
        break;
      }
      if (r == LineReader::Result::kInterrupted) {
        g_sigint.store(0);
        if (interrupted_at_prompt || !tty) {
          std::fputc('\n', stdout);
          break;
        }
        interrupted_at_prompt = true;
        std::fputs("\n", stdout);
        std::fprintf(stderr, "(Ctrl-C again or /exit to leave)\n");
        continue;
      }
      interrupted_at_prompt = false;
      if (!line.empty() && line[0] == '/') {
        if (!command(trim(line))) break;
        continue;
      }
      if (trim(line).empty()) continue;
      messages.push_back({{"role", "user"}, {"content", line}});
      reply();
    }
    std::fflush(stdout);
  });
}

}  // namespace vireo::cli
