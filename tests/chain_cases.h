// Decode chains (Backend::end_step_chain) checked against one step at a time, shared by the CUDA and WebGPU suites:
// the backend alone (argmax and sampled chains, chains back to back, refusals) and the scheduler streaming chained
// ids (stops, cancels, the context end, seeded sampling) on stories260K.
#pragma once
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "model/model.h"
#include "runtime/backend.h"
#include "runtime/scheduler_impl.h"
#include "tokenizer/tokenizer.h"
#include "vireo/vireo.h"

namespace vireo::chain_cases {

using MakeBackend = std::function<std::unique_ptr<Backend>()>;

// Decode chains (end_step_chain): a decode step run several times on the device, each run's ids fed to the next,
// gives exactly the ids of as many separate steps (argmax, and draws at the same uniforms); a chain after a chain
// and a step after a chain start from what the host gives; a chain told to stop reports every run it did, in
// order (a backend whose runs report as they finish, `runs_stream`, stops within its look-ahead); a chain that
// cannot be one is refused.
inline void chain_equals_steps(const std::filesystem::path& path, const MakeBackend& make, bool runs_stream = false) {
  auto file = std::make_shared<const GgufFile>(GgufFile::open(path.string()));
  RunOptions ro;
  ro.n_ctx = 32;
  ro.max_batch = 16;
  ro.n_slots = 2;
  Model steps(file, make(), ro), chained(file, make(), ro);
  ASSERT_TRUE(chained.chains_steps());
  const std::vector<std::vector<int32_t>> prompts = {{1, 403, 407, 261, 378, 429}, {1, 285, 370, 263, 354}};
  Batch b;
  for (int slot = 0; slot < 2; ++slot)
    for (size_t i = 0; i < prompts[slot].size(); ++i)
      b.add(prompts[slot][i], static_cast<int32_t>(i), slot, i + 1 == prompts[slot].size());
  std::vector<int32_t> first(2), again(2);
  steps.forward_argmax(b, first);
  chained.forward_argmax(b, again);
  ASSERT_EQ(first, again);
  int32_t pos[2] = {6, 5};
  std::vector<int32_t> last = first;
  auto decode_batch = [&](const std::vector<int32_t>& toks) {
    Batch d;
    for (int slot = 0; slot < 2; ++slot) d.add(toks[slot], pos[slot], slot, true);
    return d;
  };
  // `n` runs: one step at a time on `steps`, one chain on `chained`; rows empty = argmax
  auto run = [&](int32_t n, const std::vector<DeviceSampleRow>& rows) {
    SCOPED_TRACE("chain of " + std::to_string(n) + (rows.empty() ? " (argmax)" : " (sampled)"));
    std::vector<int32_t> want, got(static_cast<size_t>(n) * 2, -7);
    const Batch start = decode_batch(last);
    std::vector<int32_t> toks = last, ids(2);
    for (int32_t s = 0; s < n; ++s) {
      const Batch d = decode_batch(toks);
      if (rows.empty())
        steps.forward_argmax(d, ids);
      else
        steps.forward_sample(d, std::span<const DeviceSampleRow>(rows.data() + size_t(s) * 2, 2), ids);
      want.insert(want.end(), ids.begin(), ids.end());
      toks = ids;
      ++pos[0], ++pos[1];
    }
    chained.forward_chain(start, n, rows, got);
    EXPECT_EQ(got, want);
    last = toks;
  };
  run(3, {});
  run(2, {});  // a chain right after a chain
  {            // a plain step after a chain
    std::vector<int32_t> x(2), y(2);
    steps.forward_argmax(decode_batch(last), x);
    chained.forward_argmax(decode_batch(last), y);
    EXPECT_EQ(x, y);
    last = x;
    ++pos[0], ++pos[1];
  }
  std::vector<DeviceSampleRow> rows(6);
  std::mt19937 rng(5);
  for (auto& r : rows) {
    r.temperature = 0.9f, r.top_k = 40, r.top_p = 0.95f, r.margin = 36.f;
    r.uniform = std::uniform_real_distribution<float>(0.f, 0.999f)(rng);
  }
  rows[3].temperature = 0;  // a greedy row in a sampled chain
  run(3, rows);
  {  // a chain of 8 told after its first run to stop
    const int32_t n = 8;
    std::vector<int32_t> want, toks = last, ids(2), got(size_t(n) * 2, -7), seen;
    const Batch start = decode_batch(last);
    const int32_t pos0[2] = {pos[0], pos[1]};
    for (int32_t s = 0; s < n; ++s) {
      steps.forward_argmax(decode_batch(toks), ids);
      want.insert(want.end(), ids.begin(), ids.end());
      toks = ids;
      ++pos[0], ++pos[1];
    }
    const int32_t ran = chained.forward_chain(start, n, {}, got, [&](int32_t done) {
      seen.push_back(done);
      return done < 1;
    });
    ASSERT_GE(ran, 1);
    ASSERT_LE(ran, n);
    if (runs_stream) EXPECT_LE(ran, 4) << "the chain ran on after the stop";
    std::vector<int32_t> order(static_cast<size_t>(ran));
    for (int32_t i = 0; i < ran; ++i) order[size_t(i)] = i + 1;
    EXPECT_EQ(seen, order);
    got.resize(size_t(ran) * 2), want.resize(size_t(ran) * 2);
    EXPECT_EQ(got, want);
    // and a step right after it, from what the host gives
    pos[0] = pos0[0] + ran, pos[1] = pos0[1] + ran;
    last = {want[size_t(ran - 1) * 2], want[size_t(ran - 1) * 2 + 1]};
    std::vector<int32_t> x(2), y(2);
    chained.forward_argmax(decode_batch(last), y);
    steps.forward_argmax(decode_batch(last), x);  // `steps` wrote these positions' keys already: rewritten
    EXPECT_EQ(x, y);
    last = x;
    ++pos[0], ++pos[1];
  }
  // refused: past the context, and a step that is not one decode token per slot
  std::vector<int32_t> ids(64);
  EXPECT_THROW(chained.forward_chain(decode_batch(last), ro.n_ctx - pos[0] + 1, {}, ids), std::runtime_error);
  Batch two;
  two.add(last[0], pos[0], 0, true);
  two.add(last[1], pos[0] + 1, 0, true);
  EXPECT_THROW(chained.forward_chain(two, 2, {}, ids), std::runtime_error);
  Batch no_row;
  no_row.add(last[0], pos[0], 0, false);
  EXPECT_THROW(chained.forward_chain(no_row, 2, {}, ids), std::runtime_error);
}

// The scheduler with decode chains streams what it streams one step at a time: the same tokens, text and stop
// reason for greedy and seeded sampled requests that stop on the token budget, a stop string, a cancel or the
// context end inside a chain, with more requests than slots (chains wait for the queue to drain); and no chains
// under a time bound shorter than a step.
inline void scheduler_with_chains_equals_without(const std::filesystem::path& path, const MakeBackend& make) {
  auto file = std::make_shared<const GgufFile>(GgufFile::open(path.string()));
  auto tok = Tokenizer::from_gguf(*file);
  struct Result {
    std::vector<int32_t> tokens;
    std::string text, stop;
  };
  auto generate = [&](int32_t chain, int64_t* chains, double max_ms = 0) {
    RunOptions ro;
    ro.n_ctx = 24;
    ro.max_batch = 16;
    ro.n_slots = 3;
    Model model(file, make(), ro);
    Scheduler::Impl impl(model, *tok);
    Scheduler sched(&impl);
    sched.set_decode_chain(chain, max_ms);  // 0: no time bound, chains however slow the device
    std::vector<GenerateOptions> opts(5);
    opts[0].sampling.temperature = 0, opts[0].max_tokens = 6, opts[0].ignore_eos = true;
    opts[1].sampling.temperature = 0, opts[1].max_tokens = 12, opts[1].stop = {"."};
    opts[2].sampling.temperature = 0.8f, opts[2].sampling.top_p = 0.9f, opts[2].sampling.seed = 7;
    opts[2].max_tokens = 7, opts[2].ignore_eos = true;
    opts[3].sampling.temperature = 0, opts[3].max_tokens = 12, opts[3].ignore_eos = true;  // cancelled after 4
    opts[4].sampling.temperature = 1.0f, opts[4].sampling.seed = 3, opts[4].max_tokens = 100;
    opts[4].ignore_eos = true;  // runs into the end of the context
    const std::vector<std::string> prompts = {"Once upon a time", "The little dog", "Lily and Tom", "One day, a bird",
                                              "Sam had a red ball"};
    std::vector<Result> out(prompts.size());
    for (size_t i = 0; i < prompts.size(); ++i) {
      GenerateRequest r;
      r.prompt = tok->encode(prompts[i], true);
      r.opts = opts[i];
      r.on_event = [&out, i](const StreamEvent& ev) {
        if (ev.done) {
          out[i].stop = ev.stats->stop_reason;
          return true;
        }
        out[i].tokens.push_back(ev.token);
        out[i].text += ev.text;
        return !(i == 3 && out[i].tokens.size() == 4);
      };
      sched.submit(std::move(r));
    }
    sched.run_until_idle();
    *chains = sched.metrics().chains;
    return out;
  };
  int64_t chains_off = 0, chains_on = 0, chains_bounded = 0;
  const std::vector<Result> ref = generate(1, &chains_off), got = generate(4, &chains_on);
  EXPECT_EQ(chains_off, 0);
  EXPECT_GT(chains_on, 0);
  generate(4, &chains_bounded, 1e-6);  // a time bound shorter than any step: no chains
  EXPECT_EQ(chains_bounded, 0);
  for (size_t i = 0; i < ref.size(); ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    EXPECT_EQ(got[i].tokens, ref[i].tokens);
    EXPECT_EQ(got[i].text, ref[i].text);
    EXPECT_EQ(got[i].stop, ref[i].stop);
  }
  EXPECT_EQ(ref[0].stop, "length");
  EXPECT_EQ(ref[1].stop, "stop") << ref[1].text;
  EXPECT_EQ(ref[3].stop, "cancelled");
  EXPECT_EQ(ref[4].stop, "context");
}

}  // namespace vireo::chain_cases
