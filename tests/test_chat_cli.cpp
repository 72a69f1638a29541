// `vireo chat`, run as a user would: through a pipe (one user turn per line) and through a pseudo-terminal
// (streaming, Ctrl-C stops a reply and the prompt comes back).
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

const std::string kCli = VIREO_CLI_PATH;
const std::string kModel = "models/stories260K.gguf";  // tests run in the source tree

struct Result {
  int status = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::stringstream ss;
  ss << std::ifstream(path, std::ios::binary).rdbuf();
  return ss.str();
}

std::string temp_path(const std::string& name) {
  static int calls = 0;
  return (std::filesystem::temp_directory_path() /
          ("vireo_chat_" + std::to_string(getpid()) + "_" + std::to_string(++calls) + "_" + name))
      .string();
}

Result run_chat(const std::string& args, const std::string& stdin_text) {
  const std::string in = temp_path("in"), out = temp_path("out"), err = temp_path("err");
  std::ofstream(in) << stdin_text;
  const std::string cmd = kCli + " chat -m " + kModel + " " + args + " <" + in + " >" + out + " 2>" + err;
  const int rc = std::system(cmd.c_str());
  Result r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  std::filesystem::remove(in);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return r;
}

struct Summary {
  int computed, total;
  std::string stop;
};

std::vector<Summary> summaries(const std::string& err) {
  std::vector<Summary> v;
  static const std::regex re(R"(\[prompt: (\d+)/(\d+) tokens computed.*stop: (\w+)\])");
  for (auto it = std::sregex_iterator(err.begin(), err.end(), re); it != std::sregex_iterator(); ++it)
    v.push_back({std::stoi((*it)[1]), std::stoi((*it)[2]), (*it)[3]});
  return v;
}

}  // namespace

TEST(ChatCli, PipedTurnsKeepTheCacheAndSaveLoadReset) {
  ASSERT_TRUE(std::filesystem::exists(kModel));
  const std::string f1 = temp_path("a.json"), f2 = temp_path("b.json");
  const std::string input = "Hello there\nTell me a story\n/save " + f1 + "\n/load " + f1 + "\n/save " + f2 +
                            "\n/reset\nHello there\n";
  Result r = run_chat("--temp 0 -n 16 -t 2", input);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.find("> "), std::string::npos) << "no prompt when stdin is not a terminal";

  const auto sums = summaries(r.err);
  ASSERT_EQ(sums.size(), 3u) << r.err;
  EXPECT_EQ(sums[0].computed, sums[0].total) << r.err;  // a fresh cache computes every prompt token
  EXPECT_LT(sums[1].computed, sums[1].total) << r.err;  // turn 2 reuses turn 1's KV
  EXPECT_GT(sums[1].total, sums[0].total);
  EXPECT_GE(sums[1].total - sums[1].computed, sums[0].total) << r.err;  // at least all of turn 1's prompt
  EXPECT_EQ(sums[2].total, sums[0].total) << r.err;  // after /reset: the first prompt again...
  EXPECT_LT(sums[2].computed, sums[0].total) << r.err;  // ...found in the cache
  EXPECT_LE(sums[2].computed, 2) << r.err;

  const auto j = nlohmann::ordered_json::parse(slurp(f1));
  ASSERT_TRUE(j.contains("messages"));
  const auto& m = j["messages"];
  ASSERT_EQ(m.size(), 4u) << j.dump();
  EXPECT_EQ(m[0]["role"], "user");
  EXPECT_EQ(m[0]["content"], "Hello there");
  EXPECT_EQ(m[1]["role"], "assistant");
  EXPECT_EQ(m[2]["role"], "user");
  EXPECT_EQ(m[2]["content"], "Tell me a story");
  EXPECT_EQ(m[3]["role"], "assistant");
  const std::string a1 = m[1]["content"], a2 = m[3]["content"];
  EXPECT_FALSE(a1.empty());
  EXPECT_FALSE(a2.empty());
  // stdout is exactly the replies, one per turn; greedy: the same first prompt gives the same reply.
  EXPECT_EQ(r.out, a1 + "\n" + a2 + "\n" + a1 + "\n");
  EXPECT_EQ(slurp(f2), slurp(f1));  // /load then /save round-trips
  std::filesystem::remove(f1);
  std::filesystem::remove(f2);
}

TEST(ChatCli, SystemPromptAndBadCommands) {
  ASSERT_TRUE(std::filesystem::exists(kModel));
  const std::string f = temp_path("s.json");
  Result r = run_chat("--temp 0 -n 4 -t 2 --system 'You tell stories.'",
                      "/nope\n/load /nonexistent/file.json\nHi\n/reset\n/save " + f + "\n/quit\nnot reached\n");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("unknown command"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("error: /load"), std::string::npos) << r.err;
  EXPECT_EQ(summaries(r.err).size(), 1u) << r.err;  // /quit stops before the last line
  const auto j = nlohmann::ordered_json::parse(slurp(f));
  ASSERT_EQ(j["messages"].size(), 1u) << j.dump();  // /reset keeps the system prompt
  EXPECT_EQ(j["messages"][0]["role"], "system");
  EXPECT_EQ(j["messages"][0]["content"], "You tell stories.");
  std::filesystem::remove(f);
}

namespace {

// The chat under a pseudo-terminal; every read has a deadline so a failure cannot hang the suite.
class PtyChat {
 public:
  explicit PtyChat(const std::vector<std::string>& args) {
    std::vector<std::string> argv_s = {kCli, "chat", "-m", kModel};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    pid_ = forkpty(&fd_, nullptr, nullptr, nullptr);
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& s : argv_s) argv.push_back(s.data());
      argv.push_back(nullptr);
      execv(kCli.c_str(), argv.data());
      _exit(127);
    }
  }
  ~PtyChat() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) close(fd_);
  }
  bool started() const { return pid_ > 0 && fd_ >= 0; }

  // Reads until `needle` appears in what was read since the last call; returns all that text (the needle
  // included), or "" after the timeout. Any text after the needle is kept for the next call.
  std::string read_until(const std::string& needle, int timeout_ms = 30000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      const size_t at = buf_.find(needle);
      if (at != std::string::npos) {
        std::string got = buf_.substr(0, at + needle.size());
        buf_.erase(0, at + needle.size());
        return got;
      }
      if (!read_some(deadline)) {
        last_failed_ = buf_;
        return "";
      }
    }
  }
  // Reads whatever arrives until at least `n` bytes are buffered (or the timeout).
  bool wait_bytes(size_t n, int timeout_ms = 30000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (buf_.size() < n)
      if (!read_some(deadline)) return false;
    return true;
  }
  void send(const std::string& s) { ASSERT_EQ(write(fd_, s.data(), s.size()), ssize_t(s.size())); }
  bool alive() {
    if (exited_) return false;
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      exited_ = true;
      status_ = st;
      return false;
    }
    return true;
  }
  // Waits for the exit (draining output so the child never blocks on a full terminal); -1 on timeout.
  int wait_exit(int timeout_ms = 30000) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (alive()) {
      if (std::chrono::steady_clock::now() > deadline) return -1;
      read_some(std::chrono::steady_clock::now() + std::chrono::milliseconds(50));
    }
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : -1;
  }
  const std::string& pending() const { return buf_; }
  const std::string& last_failed() const { return last_failed_; }

 private:
  bool read_some(std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, int(left.count())) <= 0) return false;
    char tmp[4096];
    const ssize_t k = read(fd_, tmp, sizeof tmp);
    if (k <= 0) return false;  // EIO: the child closed the terminal
    buf_.append(tmp, size_t(k));
    return true;
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  bool exited_ = false;
  int status_ = 0;
  std::string buf_, last_failed_;
};

}  // namespace

TEST(ChatCli, TerminalStreamsAndCtrlCStopsAReply) {
  ASSERT_TRUE(std::filesystem::exists(kModel));
  PtyChat chat({"--temp", "0", "-n", "2000", "-c", "2048", "-t", "2", "--token-delay-ms", "100"});
  ASSERT_TRUE(chat.started());
  ASSERT_NE(chat.read_until("> "), "") << chat.last_failed();

  // A reply with the delay: 2000 tokens would take minutes, so Ctrl-C stops it.
  chat.send("Once upon a time\n");
  ASSERT_NE(chat.read_until("Once upon a time\r\n"), "") << chat.last_failed();  // the terminal's echo
  ASSERT_TRUE(chat.wait_bytes(8)) << chat.pending();  // some reply streamed
  chat.send("\x03");
  const std::string rest = chat.read_until("> ", 20000);
  ASSERT_NE(rest, "") << chat.last_failed();
  EXPECT_NE(rest.find("stop: cancelled"), std::string::npos) << rest;
  EXPECT_TRUE(chat.alive());

  // The chat goes on after a cancelled reply.
  chat.send("/reset\n");
  ASSERT_NE(chat.read_until("> "), "") << chat.last_failed();
  chat.send("Hi\n");
  ASSERT_NE(chat.read_until("Hi\r\n"), "") << chat.last_failed();
  ASSERT_TRUE(chat.wait_bytes(4)) << chat.pending();
  chat.send("\x03");
  const std::string second = chat.read_until("> ", 20000);
  ASSERT_NE(second, "") << chat.last_failed();
  EXPECT_NE(second.find("[prompt: "), std::string::npos) << second;
  EXPECT_TRUE(chat.alive());

  // Ctrl-C at the prompt clears the line and keeps the chat; /exit leaves with status 0.
  chat.send("half a line");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  chat.send("\x03");
  ASSERT_NE(chat.read_until("> ", 20000), "") << chat.last_failed();
  EXPECT_TRUE(chat.alive());
  chat.send("/exit\n");
  EXPECT_EQ(chat.wait_exit(), 0);
}

TEST(ChatCli, TerminalSecondCtrlCAtThePromptExits) {
  ASSERT_TRUE(std::filesystem::exists(kModel));
  PtyChat chat({"--temp", "0", "-n", "8", "-t", "2"});
  ASSERT_TRUE(chat.started());
  ASSERT_NE(chat.read_until("> "), "") << chat.last_failed();
  chat.send("Hello\n");
  const std::string reply = chat.read_until("> ");
  ASSERT_NE(reply, "") << chat.last_failed();
  EXPECT_NE(reply.find("[prompt: "), std::string::npos) << reply;
  chat.send("\x03");
  ASSERT_NE(chat.read_until("> ", 20000), "") << chat.last_failed();
  chat.send("\x03");
  EXPECT_EQ(chat.wait_exit(), 0);
}
