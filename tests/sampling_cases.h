// Rows for testing a backend that draws tokens on the device (Backend::end_step_sample) against the host Sampler,
// shared by the WebGPU and CUDA suites: sharp and flat rows, ties, NaN, a row of -inf, a row of NaN, greedy rows,
// top-k / top-p / min-p on and off, and rows with more candidates than a device keeps (1,024: a top-k of at most
// that many cuts them, ties to the lower ids; without one the row is handed back as -1).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <set>
#include <span>
#include <vector>

#include "runtime/backend.h"
#include "runtime/sampler.h"
#include "vireo/vireo.h"

namespace vireo::sampling_cases {

struct Cases {
  int vocab = 0, n = 0;
  std::vector<float> logits;  // n rows of vocab
  std::vector<SamplingParams> params;
  std::vector<DeviceSampleRow> rows;  // what the scheduler hands the device (the uniform included)
  const float* row(int i) const { return logits.data() + size_t(i) * vocab; }
};

inline Cases make(int vocab, int n) {
  Cases c;
  c.vocab = vocab, c.n = n;
  c.logits.resize(size_t(n) * vocab);
  c.params.resize(n);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (int i = 0; i < n; ++i) {
    const float scale = std::array<float, 4>{0.5f, 2.f, 5.f, 12.f}[i % 4];
    for (int k = 0; k < vocab; ++k) c.logits[size_t(i) * vocab + k] = scale * normal(rng);
    SamplingParams& p = c.params[i];
    p.temperature = std::array<float, 4>{0.7f, 1.f, 1.5f, 0.3f}[(i / 4) % 4];
    p.top_k = std::array<int, 5>{0, 1, 5, 40, 2000}[i % 5];
    p.top_p = std::array<float, 3>{1.f, 0.9f, 0.5f}[i % 3];
    p.min_p = std::array<float, 2>{0.f, 0.05f}[(i / 3) % 2];
  }
  auto row = [&](int i) { return c.logits.data() + size_t(i) * vocab; };
  row(1)[17] = row(1)[vocab - 1000] = 40.f;                      // a tie at the top
  for (int k = 0; k < 50; ++k) row(2)[100 + k * 7] = 9.f;        // 50 equal logits around the top-k cut
  c.params[2].top_k = 40, c.params[2].temperature = 1.f, c.params[2].top_p = 1.f;
  row(3)[5] = NAN, row(3)[6] = INFINITY * 0.f;                   // NaN is never drawn
  for (int k = 0; k < vocab; ++k) row(4)[k] = 0.125f;            // flat: every token a candidate
  c.params[4].top_k = 40;                                        // ... cut by the radix select, lowest ids
  for (int k = 0; k < vocab; ++k) row(5)[k] = 0.001f * float(k % 1500);  // > 1024 distinct candidates
  c.params[5].top_k = 700, c.params[5].top_p = 0.8f;
  for (int k = 0; k < vocab; ++k) row(6)[k] = 0.f;               // flat, no top-k: handed back (-1)
  c.params[6].top_k = 0;
  for (int k = 0; k < vocab; ++k) row(7)[k] = -INFINITY;         // nothing possible: the lowest id
  c.params[8].temperature = 0.f;                                 // greedy
  row(8)[123] = 1e3f;
  c.params[9].min_p = 2.f;                                       // min-p above 1 keeps the top token only
  for (int k = 0; k < vocab; ++k) row(10)[k] = NAN;              // all NaN: 0, as the host's argmax
  c.rows.resize(n);
  for (int i = 0; i < n; ++i) {
    Sampler s(c.params[i], vocab);
    s.reseed(1000 + i);
    c.rows[i] = s.device_row();
  }
  return c;
}

// The device's ids against the host: where the host's own choice changes when the uniform, top_p or min_p move by
// 1e-4 (the device sums probabilities in f32, the host in double) the device may take any of those choices;
// everywhere else exactly the host's.
inline void check(const Cases& c, const std::vector<int32_t>& ids) {
  int boundary = 0;
  for (int i = 0; i < c.n; ++i) {
    const std::span<const float> r(c.row(i), c.vocab);
    const SamplingParams& p = c.params[i];
    if (ids[i] == -1) {  // handed back: only rows whose candidates do not fit and no top-k <= 1024 cuts them
      std::vector<float> wv(1025);
      std::vector<int32_t> wi(1025);
      EXPECT_EQ(select_candidates(r, Sampler(p, c.vocab).candidate_margin(), 1024, wv.data(), wi.data()), -1)
          << "row " << i;
      EXPECT_TRUE(p.top_k <= 0 || p.top_k > 1024) << "row " << i;
      continue;
    }
    const bool all_nan = std::none_of(r.begin(), r.end(), [](float v) { return v == v; });
    if (p.temperature <= 0.f || all_nan) {
      EXPECT_EQ(ids[i], argmax(r)) << "row " << i;
      continue;
    }
    const double u = c.rows[i].uniform;
    const int32_t want = Sampler(p, c.vocab).sample_at(r, u);
    std::set<int32_t> near;  // the host's choices under small moves of u, top_p and min_p
    for (double du : {-1e-4, 0.0, 1e-4})
      for (float dp : {-1e-4f, 0.f, 1e-4f}) {
        SamplingParams q = p;
        if (q.top_p < 1.f) q.top_p += dp;
        if (q.min_p > 0.f) q.min_p += dp;
        near.insert(Sampler(q, c.vocab).sample_at(r, std::clamp(u + du, 0.0, 0.99999999)));
      }
    if (near.size() == 1) {
      EXPECT_EQ(ids[i], want) << "row " << i;
    } else {
      ++boundary;
      EXPECT_TRUE(near.count(ids[i])) << "row " << i << ": " << ids[i] << " is none of the host's near choices";
    }
  }
  EXPECT_LE(boundary, 3);
  EXPECT_EQ(ids[6], -1);
  EXPECT_EQ(ids[7], 0);
  EXPECT_EQ(ids[8], 123);
  EXPECT_EQ(ids[10], 0);
  EXPECT_TRUE(ids[1] == 17 || ids[1] == c.vocab - 1000);
  EXPECT_GE(ids[4], 0);
  EXPECT_LT(ids[4], 40);  // the flat row's top 40 are its lowest ids
  EXPECT_NE(ids[3], 5);
}

// One step on `be` whose logits x (c.n x c.vocab) already hold c.logits: the rows drawn on the device, checked;
// the logits stay readable for a row handed back.
inline void run_and_check(Backend& be, const Cases& c, Act x) {
  Batch b;
  for (int i = 0; i < c.n; ++i) b.add(0, i, 0, true);
  std::vector<int32_t> ids(c.n, -2);
  be.begin_step(b);
  be.end_step_sample(x.with_rows(c.n), c.rows, ids);
  check(c, ids);
  std::vector<float> back(c.vocab);
  be.read_logit_rows(x.with_rows(c.n), std::vector<int32_t>{6}, back);
  EXPECT_EQ(back[17], 0.f);
}

// Candidates picked on the device (Backend::end_step_candidates) equal the host's select_candidates() on the same
// rows: margins from none to all, ties at the floor, a row with more than `cap` candidates (-1), and NaN; the logits
// stay readable afterwards (read_logit_rows, for the rows the sampler must see whole). `upload` writes the step's
// logits into an activation of the backend.
inline void check_candidates(Backend& be, const std::function<void(Act, const std::vector<float>&)>& upload) {
  const int n = 5, vocab = 3001, cap = 64;
  std::vector<float> xv(size_t(n) * vocab);
  std::mt19937 rng(43);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (float& v : xv) v = normal(rng);
  xv[0 * vocab + 3000] = 9.f;                          // the last id tops row 0
  xv[1 * vocab + 10] = xv[1 * vocab + 2000] = 6.f;     // row 1: a tie at the top
  xv[1 * vocab + 11] = 5.f;                            // ... and a value exactly at the floor (margin 1)
  for (int c = 0; c < vocab; ++c) xv[3 * vocab + c] = 0.25f;  // row 3: all equal, more than cap
  xv[4 * vocab + 7] = NAN;                             // NaN is never a candidate
  Act x = be.alloc_act(n, vocab);
  upload(x, xv);
  Batch b;
  for (int i = 0; i < n; ++i) b.add(0, i, 0, true);
  const std::vector<float> margins = {3.f, 1.f, 0.f, 2.f, 2.5f};
  std::vector<float> values(n * cap);
  std::vector<int32_t> ids(n * cap), counts(n);
  be.begin_step(b);
  be.end_step_candidates(x.with_rows(n), margins, cap, values, ids, counts);
  for (int i = 0; i < n; ++i) {
    std::vector<float> wv(cap);
    std::vector<int32_t> wi(cap);
    const int32_t want = select_candidates(std::span<const float>(xv.data() + i * vocab, vocab), margins[i], cap,
                                           wv.data(), wi.data());
    ASSERT_EQ(counts[i], want) << "row " << i;
    for (int j = 0; j < want; ++j) {
      EXPECT_EQ(ids[i * cap + j], wi[j]) << "row " << i << " #" << j;
      EXPECT_EQ(values[i * cap + j], wv[j]) << "row " << i << " #" << j;
    }
  }
  EXPECT_EQ(counts[3], -1);
  EXPECT_EQ(counts[2], 1);
  EXPECT_GE(counts[1], 3);
  std::vector<float> rows(2 * vocab);
  be.read_logit_rows(x.with_rows(n), std::vector<int32_t>{3, 0}, rows);
  EXPECT_EQ(std::memcmp(rows.data(), xv.data() + 3 * vocab, vocab * 4), 0);
  EXPECT_EQ(rows[vocab + 3000], 9.f);
}

// Engine level: four seeded sampled requests on `eng` (stories260K) and the same four asking for log-probabilities,
// which samples them on the host from the full logits: each pair must generate the same `max_tokens` tokens.
inline void check_engine_draws_equal_full_logits(Engine& eng, int max_tokens) {
  Scheduler& s = eng.scheduler();
  std::vector<std::vector<int32_t>> got(8);
  for (int i = 0; i < 8; ++i) {
    GenerateRequest r;
    r.prompt = eng.tokenize(i % 2 ? "The little dog" : "Once upon a time", true);
    r.opts.sampling.temperature = 0.9f;
    r.opts.sampling.top_k = 0, r.opts.sampling.min_p = 0;
    r.opts.sampling.seed = 77 + i % 4;  // request i and i + 4: same prompt, same seed, the two paths
    r.opts.max_tokens = max_tokens;
    r.opts.ignore_eos = true;
    r.opts.logprobs = i < 4 ? -1 : 0;  // the last four take the full-logits path
    r.on_event = [&got, i](const StreamEvent& ev) {
      if (!ev.done) got[i].push_back(ev.token);
      return true;
    };
    s.submit(std::move(r));
  }
  s.run_until_idle();
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(got[i].size(), static_cast<size_t>(max_tokens));
    EXPECT_EQ(got[i], got[i + 4]) << "request " << i << ": device path vs full logits sampled on the host";
  }
}

}  // namespace vireo::sampling_cases
