// Continuous batching (Scheduler): batched output equals single-sequence output, prefix caching, cancellation,
// queue limits, log-probabilities.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "vireo/vireo.h"

namespace {

const std::string kModel = std::string(VIREO_FIXTURES) + "/models/stories260K-f32.gguf";

#define REQUIRE_MODEL() \
  if (!std::filesystem::exists(kModel)) GTEST_SKIP() << "fixture model not found at " << kModel << " (../shared/fixtures)"

std::unique_ptr<vireo::Engine> load(int slots, int threads = 2) {
  vireo::EngineOptions eo;
  eo.n_slots = slots;
  eo.threads = threads;
  eo.n_ctx = 256;
  eo.kv_f32 = true;
  return vireo::Engine::load(kModel, eo);
}

vireo::GenerateOptions greedy(int n) {
  vireo::GenerateOptions o;
  o.sampling.temperature = 0;
  o.max_tokens = n;
  o.ignore_eos = true;
  return o;
}

const std::vector<std::string> kPrompts = {
    "Once upon a time",
    "The little dog",
    "Lily and Tom went to the park. They saw a big",
    "One day, a bird",
    "Sam had a red ball. He",
    "The sun was hot and the",
};

struct Collected {
  std::vector<int32_t> tokens;
  std::string text;
  vireo::GenerateStats stats;
  bool done = false;
  int finals = 0;
};

vireo::GenerateRequest make_request(std::vector<int32_t> prompt, const vireo::GenerateOptions& o, Collected* out) {
  vireo::GenerateRequest r;
  r.prompt = std::move(prompt);
  r.opts = o;
  r.on_event = [out](const vireo::StreamEvent& ev) {
    out->text += ev.text;
    if (ev.done) {
      out->done = true;
      ++out->finals;
      out->stats = *ev.stats;
    } else {
      out->tokens.push_back(ev.token);
    }
    return true;
  };
  return r;
}

// Reference: each prompt alone, from an empty cache.
std::vector<Collected> run_alone(vireo::Engine& e, const std::vector<std::vector<int32_t>>& prompts, int n) {
  std::vector<Collected> out(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto o = greedy(n);
    o.reuse_cache = false;
    out[i].stats = e.generate_tokens(prompts[i], o, [&](std::string_view s) { out[i].text += s; return true; },
                                     [&](int32_t t) { out[i].tokens.push_back(t); });
  }
  return out;
}

TEST(Scheduler, BatchedGreedyEqualsSingleSequence) {
  REQUIRE_MODEL();
  auto single = load(1);
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& p : kPrompts) prompts.push_back(single->tokenize(p, true));
  const int n = 48;
  const auto ref = run_alone(*single, prompts, n);

  // Four slots for six requests: two wait and join the running batch when others finish; two more arrive after
  // a few steps, while others are mid-decode.
  auto eng = load(4);
  auto& s = eng->scheduler();
  std::vector<Collected> got(prompts.size() + 2);
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto o = greedy(n - static_cast<int>(i) * 5);  // different lengths: sequences leave at different steps
    s.submit(make_request(prompts[i], o, &got[i]));
  }
  for (int k = 0; k < 7; ++k) s.step();
  s.submit(make_request(prompts[2], greedy(n), &got[6]));
  s.submit(make_request(prompts[0], greedy(n), &got[7]));
  s.run_until_idle();

  for (size_t i = 0; i < got.size(); ++i) {
    const size_t src = i < prompts.size() ? i : (i == 6 ? 2 : 0);
    const size_t len = i < prompts.size() ? static_cast<size_t>(n - static_cast<int>(i) * 5) : n;
    ASSERT_TRUE(got[i].done) << i;
    EXPECT_EQ(got[i].finals, 1) << i;
    ASSERT_EQ(got[i].tokens.size(), len) << i;
    EXPECT_TRUE(std::equal(got[i].tokens.begin(), got[i].tokens.end(), ref[src].tokens.begin()))
        << "request " << i << " diverged from its single-sequence run";
    EXPECT_EQ(got[i].stats.stop_reason, "length");
  }
  // The text of a full-length request equals the single run's text.
  EXPECT_EQ(got[6].text, ref[2].text);
  const auto m = s.metrics();
  EXPECT_EQ(m.requests, 8);
  EXPECT_EQ(m.finished, 8);
  EXPECT_EQ(m.active, 0);
  EXPECT_EQ(m.queued, 0);
  EXPECT_LT(m.steps, 6 * n);  // batched: far fewer steps than tokens
}

TEST(Scheduler, PrefixCacheAcrossRequestsAndSlots) {
  REQUIRE_MODEL();
  auto single = load(1);
  const auto sys = single->tokenize("Lily and Tom went to the park. They saw a big tree and a small bird.", true);
  auto with = [&](const std::string& tail) {
    auto p = sys;
    auto t = single->tokenize(tail, false);
    p.insert(p.end(), t.begin(), t.end());
    return p;
  };
  const std::vector<std::vector<int32_t>> prompts = {with(" The bird"), with(" Tom said"), with(" Lily")};
  const auto ref = run_alone(*single, prompts, 24);

  auto eng = load(3);
  auto& s = eng->scheduler();
  std::vector<Collected> got(4);
  // A runs first and fills slot 0 with the shared prefix.
  s.submit(make_request(prompts[0], greedy(24), &got[0]));
  s.step();
  // B arrives while A still runs: it copies the shared prefix out of A's slot.
  s.submit(make_request(prompts[1], greedy(24), &got[1]));
  s.run_until_idle();
  // C arrives later: a free slot already holds the prefix.
  s.submit(make_request(prompts[2], greedy(24), &got[2]));
  s.run_until_idle();
  // The same prompt again: everything but its last token comes from the cache.
  s.submit(make_request(prompts[2], greedy(24), &got[3]));
  s.run_until_idle();

  EXPECT_EQ(got[0].stats.prompt_computed, static_cast<int32_t>(prompts[0].size()));
  for (int i = 1; i <= 2; ++i) {
    const size_t shared = sys.size();
    EXPECT_LE(got[i].stats.prompt_computed, static_cast<int32_t>(prompts[i].size() - shared + 1)) << i;
  }
  EXPECT_EQ(got[3].stats.prompt_computed, 1);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(got[i].tokens, ref[i].tokens) << "request " << i;
  EXPECT_EQ(got[3].tokens, ref[2].tokens);
  const auto m = s.metrics();
  EXPECT_EQ(m.prompt_tokens - m.prompt_computed, m.prompt_from_cache);
  EXPECT_GT(m.prompt_from_cache, static_cast<int64_t>(2 * sys.size()));
}

TEST(Scheduler, CancelFreesTheSlotAndOthersContinue) {
  REQUIRE_MODEL();
  auto eng = load(2);
  auto& s = eng->scheduler();
  const auto p = eng->tokenize("Once upon a time", true);
  Collected a, b, c;
  const uint64_t ida = s.submit(make_request(p, greedy(100), &a));
  s.submit(make_request(p, greedy(20), &b));
  // A third request waits for a slot; cancelling A lets it in.
  s.submit(make_request(eng->tokenize("The little dog", true), greedy(10), &c));
  for (int i = 0; i < 5; ++i) s.step();
  EXPECT_EQ(s.metrics().queued, 1);
  s.cancel(ida);
  s.run_until_idle();
  EXPECT_EQ(a.stats.stop_reason, "cancelled");
  EXPECT_LT(a.tokens.size(), 100u);
  EXPECT_EQ(a.finals, 1);
  EXPECT_EQ(b.stats.stop_reason, "length");
  EXPECT_EQ(b.tokens.size(), 20u);
  EXPECT_EQ(c.tokens.size(), 10u);
  EXPECT_EQ(s.metrics().cancelled, 1);

  // A callback returning false cancels too.
  Collected d;
  auto r = make_request(p, greedy(50), &d);
  int seen = 0;
  auto inner = r.on_event;
  r.on_event = [&](const vireo::StreamEvent& ev) {
    inner(ev);
    return ev.done || ++seen < 3;
  };
  s.submit(std::move(r));
  s.run_until_idle();
  EXPECT_EQ(d.stats.stop_reason, "cancelled");
  EXPECT_EQ(d.tokens.size(), 3u);
}

TEST(Scheduler, RejectsBadRequestsAndFullQueue) {
  REQUIRE_MODEL();
  auto eng = load(1);
  auto& s = eng->scheduler();
  Collected x;
  EXPECT_THROW(s.submit(make_request({}, greedy(4), &x)), std::invalid_argument);
  EXPECT_THROW(s.submit(make_request(std::vector<int32_t>(300, 5), greedy(4), &x)), std::invalid_argument);
  EXPECT_THROW(s.submit(make_request({1, 999999}, greedy(4), &x)), std::invalid_argument);
  s.set_max_queue(1);
  const auto p = eng->tokenize("Once", true);
  Collected a, b;
  s.submit(make_request(p, greedy(4), &a));
  EXPECT_THROW(s.submit(make_request(p, greedy(4), &b)), vireo::QueueFullError);
  s.run_until_idle();
  EXPECT_TRUE(a.done);
  EXPECT_FALSE(b.done);
}

TEST(Scheduler, StopsAtTheContextEnd) {
  REQUIRE_MODEL();
  auto eng = load(1);
  Collected a;
  auto& s = eng->scheduler();
  s.submit(make_request(eng->tokenize("Once upon a time", true), greedy(1000), &a));
  s.run_until_idle();
  EXPECT_EQ(a.stats.stop_reason, "context");
  EXPECT_EQ(static_cast<int>(a.tokens.size() + eng->tokenize("Once upon a time", true).size()), eng->n_ctx() + 1);
}

TEST(Scheduler, LogprobsMatchTheLogits) {
  REQUIRE_MODEL();
  auto eng = load(1);
  const auto p = eng->tokenize("Once upon a time", true);
  auto o = greedy(6);
  o.logprobs = 5;
  std::vector<vireo::StreamEvent> evs;
  std::vector<std::vector<vireo::TokenLogprob>> tops;
  std::vector<int32_t> toks;
  vireo::GenerateRequest r;
  r.prompt = p;
  r.opts = o;
  r.on_event = [&](const vireo::StreamEvent& ev) {
    if (!ev.done) {
      toks.push_back(ev.token);
      tops.push_back(ev.top);
      evs.push_back(ev);
      evs.back().text = {};
    }
    return true;
  };
  eng->scheduler().submit(std::move(r));
  eng->scheduler().run_until_idle();
  ASSERT_EQ(toks.size(), 6u);

  // Reference: log-softmax of the logits of the whole sequence, computed from scratch.
  std::vector<int32_t> seq = p;
  seq.insert(seq.end(), toks.begin(), toks.end() - 1);
  const auto logits = eng->logits_all(seq);
  const int V = eng->n_vocab();
  for (size_t i = 0; i < toks.size(); ++i) {
    const float* row = logits.data() + (p.size() - 1 + i) * V;
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < V; ++j) mx = std::max(mx, static_cast<double>(row[j]));
    for (int j = 0; j < V; ++j) sum += std::exp(row[j] - mx);
    const double lse = mx + std::log(sum);
    EXPECT_EQ(evs[i].chosen.token, toks[i]);
    EXPECT_NEAR(evs[i].chosen.logprob, row[toks[i]] - lse, 1e-3);
    ASSERT_EQ(tops[i].size(), 5u);
    EXPECT_EQ(tops[i][0].token, toks[i]);  // greedy picks the most likely
    for (size_t k = 1; k < 5; ++k) EXPECT_GE(tops[i][k - 1].logprob, tops[i][k].logprob);
    for (const auto& t : tops[i]) EXPECT_NEAR(t.logprob, row[t.token] - lse, 1e-3);
  }
}

TEST(Scheduler, ServeOnAThreadWithSubmittersOnOthers) {
  REQUIRE_MODEL();
  auto eng = load(4);
  auto& s = eng->scheduler();
  std::atomic<bool> stop{false};
  std::thread loop([&] { s.serve(stop); });
  const auto p = eng->tokenize("Once upon a time", true);
  std::vector<Collected> got(12);
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  std::vector<std::thread> clients;
  for (int i = 0; i < 12; ++i)
    clients.emplace_back([&, i] {
      auto r = make_request(p, greedy(16 + i), &got[i]);
      auto inner = r.on_event;
      r.on_event = [&, inner](const vireo::StreamEvent& ev) {
        inner(ev);
        if (ev.done) {
          std::lock_guard<std::mutex> lock(mu);
          ++done;
          cv.notify_all();
        }
        return true;
      };
      s.submit(std::move(r));
    });
  for (auto& c : clients) c.join();
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return done == 12; }));
  }
  stop = true;
  loop.join();
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(got[i].tokens.size(), static_cast<size_t>(16 + i));
    // Same prompt, greedy: every request's tokens are a prefix of the longest one's.
    EXPECT_TRUE(std::equal(got[i].tokens.begin(), got[i].tokens.end(), got[11].tokens.begin())) << i;
  }
}

}  // namespace

namespace {
// Sampled requests without penalties or logprobs take the candidates path (Backend::end_step_candidates); with
// logprobs the full logits come back. Same seed, same tokens either way, alone or batched.
TEST(Scheduler, SampledCandidatesPathEqualsFullLogitsPath) {
  REQUIRE_MODEL();
  auto eng = load(3);
  auto& s = eng->scheduler();
  const std::vector<std::string> prompts = {"Once upon a time", "The little dog", "One day, a bird"};
  for (float t : {0.6f, 1.0f, 1.8f}) {
    std::vector<Collected> cand(3), full(3);
    for (int pass = 0; pass < 2; ++pass)
      for (size_t i = 0; i < prompts.size(); ++i) {
        vireo::GenerateOptions o;
        o.sampling.temperature = t;
        o.sampling.top_k = i == 1 ? 20 : 0;
        o.sampling.top_p = i == 2 ? 0.9f : 1.0f;
        o.sampling.min_p = 0;
        o.sampling.seed = 1234 + i;
        o.max_tokens = 40;
        o.ignore_eos = true;
        o.logprobs = pass == 0 ? -1 : 0;
        s.submit(make_request(eng->tokenize(prompts[i], true), o, pass == 0 ? &cand[i] : &full[i]));
      }
    s.run_until_idle();
    for (size_t i = 0; i < prompts.size(); ++i) {
      ASSERT_EQ(cand[i].tokens.size(), 40u);
      EXPECT_EQ(cand[i].tokens, full[i].tokens) << "t=" << t << " request " << i;
    }
  }
}
}  // namespace
