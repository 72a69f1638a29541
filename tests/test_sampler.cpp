#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "runtime/sampler.h"

using vireo::Sampler;
using vireo::SamplingParams;
using vireo::StopMatcher;

namespace {

SamplingParams plain(float temperature, uint64_t seed = 1234) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.repeat_penalty = 1.0f;
  p.presence_penalty = 0.0f;
  p.frequency_penalty = 0.0f;
  p.seed = seed;
  return p;
}

std::vector<double> softmax(const std::vector<float>& l, double t) {
  double mx = *std::max_element(l.begin(), l.end());
  std::vector<double> p(l.size());
  double s = 0;
  for (size_t i = 0; i < l.size(); ++i) s += p[i] = std::exp((l[i] - mx) / t);
  for (double& x : p) x /= s;
  return p;
}

// Logits whose softmax (t = 1) is exactly `probs`.
std::vector<float> logits_for(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(static_cast<float>(std::log(p)));
  return l;
}

std::vector<int> histogram(Sampler& s, const std::vector<float>& logits, int draws) {
  std::vector<int> h(logits.size(), 0);
  for (int i = 0; i < draws; ++i) {
    std::vector<float> l = logits;
    int32_t t = s.sample(l, {});
    EXPECT_GE(t, 0);
    EXPECT_LT(t, static_cast<int32_t>(logits.size()));
    ++h[t];
  }
  return h;
}

std::vector<float> random_logits(std::mt19937& g, int n) {
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> l(n);
  for (float& x : l) x = d(g);
  return l;
}

}  // namespace

TEST(Sampler, ArgmaxTiesGoToLowestId) {
  std::vector<float> l = {1.0f, 5.0f, -2.0f, 5.0f, 4.9f};
  EXPECT_EQ(vireo::argmax(l), 1);
  std::vector<float> nan_first = {std::nanf(""), -1.0f, 3.0f, 3.0f};
  EXPECT_EQ(vireo::argmax(nan_first), 2);
}

TEST(Sampler, GreedyPicksArgmax) {
  std::mt19937 g(7);
  for (float t : {0.0f, -1.0f}) {
    SamplingParams p = plain(t);
    p.top_k = 40;  // ignored in greedy mode
    p.top_p = 0.5f;
    Sampler s(p, 100);
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<float> l = random_logits(g, 100);
      const int32_t want = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
      EXPECT_EQ(s.sample(l, {}), want);
    }
    std::vector<float> tie = {0.0f, 2.0f, 2.0f, 1.0f};
    Sampler s4(p, 4);
    EXPECT_EQ(s4.sample(tie, {}), 1);
  }
}

TEST(Sampler, SameSeedSameSequenceDifferentSeedDiffers) {
  std::mt19937 g(11);
  const std::vector<float> base = random_logits(g, 64);
  auto run = [&](uint64_t seed) {
    SamplingParams p;  // defaults: top-k 40, top-p 0.95, min-p 0.05, temperature 0.8
    p.temperature = 1.5f;
    p.min_p = 0.0f;
    p.seed = seed;
    Sampler s(p, 64);
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) {
      std::vector<float> l = base;
      out.push_back(s.sample(l, {}));
    }
    return out;
  };
  const auto a = run(42), b = run(42), c = run(43);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  // The draws are spread (not stuck on one token).
  EXPECT_GT(std::set<int32_t>(a.begin(), a.end()).size(), 5u);

  // reseed() restarts the sequence.
  SamplingParams p;
  p.temperature = 1.5f;
  p.min_p = 0.0f;
  p.seed = 42;
  Sampler s(p, 64);
  for (int i = 0; i < 17; ++i) {
    std::vector<float> l = base;
    s.sample(l, {});
  }
  s.reseed(42);
  std::vector<int32_t> again;
  for (int i = 0; i < 200; ++i) {
    std::vector<float> l = base;
    again.push_back(s.sample(l, {}));
  }
  EXPECT_EQ(again, a);
}

// Pins the exact draw sequence: it depends only on std::mt19937_64 (fixed by the standard) and our own
// uniform conversion, so it must be identical with libstdc++, libc++ and in WASM.
TEST(Sampler, DrawSequenceIsPinned) {
  const std::vector<float> base = logits_for({0.1, 0.2, 0.3, 0.4});
  Sampler s(plain(1.0f, 2024), 4);
  std::vector<int32_t> got;
  for (int i = 0; i < 24; ++i) {
    std::vector<float> l = base;
    got.push_back(s.sample(l, {}));
  }
  // Recomputed independently from the raw engine output.
  std::mt19937_64 eng(2024);
  std::vector<int32_t> want;
  for (int i = 0; i < 24; ++i) {
    const double u = static_cast<double>(eng() >> 11) * 0x1p-53;
    const double cdf[] = {0.1, 0.3, 0.6, 1.0};
    int32_t k = 0;
    while (k < 3 && u >= cdf[k]) ++k;
    want.push_back(k);
  }
  EXPECT_EQ(got, want);
}

TEST(Sampler, FrequenciesMatchSoftmax) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 2.5f, 0.0f, -3.0f};
  for (float t : {1.0f, 0.7f, 2.0f}) {
    Sampler s(plain(t, 99), static_cast<int32_t>(logits.size()));
    const int N = 20000;
    const std::vector<int> h = histogram(s, logits, N);
    const std::vector<double> p = softmax(logits, t);
    double max_diff = 0, chi2 = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      const double f = double(h[i]) / N;
      max_diff = std::max(max_diff, std::abs(f - p[i]));
      const double e = p[i] * N;
      chi2 += (h[i] - e) * (h[i] - e) / e;
    }
    EXPECT_LT(max_diff, 0.01) << "temperature " << t;
    // 7 degrees of freedom: P(chi2 > 24.3) ~ 0.001.
    EXPECT_LT(chi2, 24.3) << "temperature " << t;
  }
}

TEST(Sampler, TopK1EqualsGreedy) {
  std::mt19937 g(5);
  SamplingParams p = plain(1.3f, 3);
  p.top_k = 1;
  Sampler s(p, 200);
  for (int trial = 0; trial < 200; ++trial) {
    std::vector<float> l = random_logits(g, 200);
    const int32_t want = vireo::argmax(l);
    EXPECT_EQ(s.sample(l, {}), want);
  }
}

TEST(Sampler, TopKExcludesTheRest) {
  const std::vector<float> logits = {0.0f, 3.0f, 1.0f, 2.9f, 2.8f, 0.5f};
  SamplingParams p = plain(5.0f, 8);  // high temperature: without top-k everything would show up
  p.top_k = 3;
  Sampler s(p, 6);
  const std::vector<int> h = histogram(s, logits, 5000);
  EXPECT_EQ(h[0] + h[2] + h[5], 0);
  EXPECT_GT(h[1], 0);
  EXPECT_GT(h[3], 0);
  EXPECT_GT(h[4], 0);
}

TEST(Sampler, TopKTiesAreDeterministic) {
  // Five tokens tie for the top; top-k 2 must keep the two lowest ids.
  const std::vector<float> logits = {1.0f, 2.0f, 2.0f, 2.0f, 2.0f, 2.0f};
  SamplingParams p = plain(1.0f, 21);
  p.top_k = 2;
  Sampler s(p, 6);
  const std::vector<int> h = histogram(s, logits, 2000);
  EXPECT_GT(h[1], 0);
  EXPECT_GT(h[2], 0);
  EXPECT_EQ(h[0] + h[3] + h[4] + h[5], 0);
}

TEST(Sampler, TopPExcludesTail) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 (shuffled ids so sorting matters).
  const std::vector<float> logits = logits_for({0.15, 0.5, 0.05, 0.3});
  {
    SamplingParams p = plain(1.0f, 17);
    p.top_p = 0.75f;  // needs 0.5 + 0.3
    Sampler s(p, 4);
    const std::vector<int> h = histogram(s, logits, 5000);
    EXPECT_EQ(h[0], 0);
    EXPECT_EQ(h[2], 0);
    EXPECT_GT(h[1], 0);
    EXPECT_GT(h[3], 0);
    // Renormalized: 0.5/0.8 and 0.3/0.8.
    EXPECT_NEAR(h[1] / 5000.0, 0.625, 0.025);
  }
  {
    SamplingParams p = plain(1.0f, 18);
    p.top_p = 0.9f;  // 0.5 + 0.3 + 0.15
    Sampler s(p, 4);
    const std::vector<int> h = histogram(s, logits, 5000);
    EXPECT_EQ(h[2], 0);
    EXPECT_GT(h[0], 0);
  }
  {
    SamplingParams p = plain(1.0f, 19);
    p.top_p = 0.0f;  // keeps at least one: the most likely
    Sampler s(p, 4);
    const std::vector<int> h = histogram(s, logits, 1000);
    EXPECT_EQ(h[1], 1000);
  }
}

TEST(Sampler, MinPExcludesUnlikely) {
  const std::vector<float> logits = logits_for({0.15, 0.5, 0.05, 0.3});
  {
    SamplingParams p = plain(1.0f, 23);
    p.min_p = 0.2f;  // threshold 0.1: drops only the 0.05 token
    Sampler s(p, 4);
    const std::vector<int> h = histogram(s, logits, 5000);
    EXPECT_EQ(h[2], 0);
    EXPECT_GT(h[0], 0);
    EXPECT_GT(h[1], 0);
    EXPECT_GT(h[3], 0);
  }
  {
    SamplingParams p = plain(1.0f, 24);
    p.min_p = 0.5f;  // threshold 0.25: keeps 0.5 and 0.3
    Sampler s(p, 4);
    const std::vector<int> h = histogram(s, logits, 5000);
    EXPECT_EQ(h[0] + h[2], 0);
    EXPECT_NEAR(h[1] / 5000.0, 0.625, 0.025);
  }
  {
    // min-p is relative to the tempered distribution: at temperature 0.5 the probabilities are squared.
    SamplingParams p = plain(0.5f, 25);
    p.min_p = 0.2f;  // tempered p ~ {0.0625, 0.69, 0.0069, 0.25} -> ratio to max: 0.09, 1, 0.01, 0.36
    Sampler s(p, 4);
    const std::vector<int> h = histogram(s, logits, 5000);
    EXPECT_EQ(h[0] + h[2], 0);
  }
}

TEST(Sampler, TopKThenMinPThenTopPCombined) {
  const std::vector<float> logits = logits_for({0.02, 0.4, 0.01, 0.25, 0.2, 0.12});
  SamplingParams p = plain(1.0f, 31);
  p.top_k = 4;      // keeps 0.4, 0.25, 0.2, 0.12
  p.min_p = 0.35f;  // threshold 0.14: drops 0.12
  p.top_p = 0.7f;   // over {0.4, 0.25, 0.2}/0.85: 0.47, 0.76 -> keeps two
  Sampler s(p, 6);
  const std::vector<int> h = histogram(s, logits, 5000);
  EXPECT_GT(h[1], 0);
  EXPECT_GT(h[3], 0);
  EXPECT_EQ(h[0] + h[2] + h[4] + h[5], 0);
}

TEST(Sampler, NanAndInfLogitsAreNeverSampled) {
  std::vector<float> logits = {std::nanf(""), 1.0f, -INFINITY, 1.0f, std::nanf("")};
  Sampler s(plain(1.0f, 5), 5);
  const std::vector<int> h = histogram(s, logits, 2000);
  EXPECT_EQ(h[0] + h[2] + h[4], 0);
  EXPECT_GT(h[1], 0);
  EXPECT_GT(h[3], 0);
  std::vector<float> all_neg_inf(4, -INFINITY);
  EXPECT_EQ(s.sample(all_neg_inf, {}), 0);
}

TEST(Sampler, PenaltiesFollowTheFormula) {
  const std::vector<float> base = {2.0f, -1.0f, 0.5f, -0.25f, 3.0f, 0.0f};
  // Token 4 occurs only outside the window of 5; tokens 0 (x2), 1 (x1), 3 (x2) inside. Out-of-range ids ignored.
  const std::vector<int32_t> history = {4, 4, 0, 1, 3, 0, 3, 99, -5};
  SamplingParams p = plain(0.0f);
  p.repeat_penalty = 1.25f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.125f;
  p.penalty_last_n = 7;  // {0, 1, 3, 0, 3, 99, -5}
  Sampler s(p, 6);
  std::vector<float> l = base;
  s.sample(l, history);
  auto pen = [&](float x, int count) {
    if (count == 0) return x;
    x = x > 0 ? x / 1.25f : x * 1.25f;
    return x - count * 0.125f - 0.5f;
  };
  EXPECT_FLOAT_EQ(l[0], pen(2.0f, 2));
  EXPECT_FLOAT_EQ(l[1], pen(-1.0f, 1));
  EXPECT_FLOAT_EQ(l[2], 0.5f);
  EXPECT_FLOAT_EQ(l[3], pen(-0.25f, 2));
  EXPECT_FLOAT_EQ(l[4], 3.0f);
  EXPECT_FLOAT_EQ(l[5], 0.0f);

  // A second call with the same history gives the same result (the scratch counts were reset).
  std::vector<float> l2 = base;
  s.sample(l2, history);
  EXPECT_EQ(l, l2);

  // -1: whole history; token 4 now counts twice.
  p.penalty_last_n = -1;
  Sampler all(p, 6);
  std::vector<float> l3 = base;
  all.sample(l3, history);
  EXPECT_FLOAT_EQ(l3[4], pen(3.0f, 2));
  EXPECT_FLOAT_EQ(l3[0], pen(2.0f, 2));

  // 0: off.
  p.penalty_last_n = 0;
  Sampler off(p, 6);
  std::vector<float> l4 = base;
  off.sample(l4, history);
  EXPECT_EQ(l4, base);
}

TEST(Sampler, RepeatPenaltyAloneChangesGreedyChoice) {
  SamplingParams p = plain(0.0f);
  p.repeat_penalty = 2.0f;
  Sampler s(p, 3);
  std::vector<float> l = {1.0f, 1.5f, -0.5f};
  const std::vector<int32_t> hist = {1};
  EXPECT_EQ(s.sample(l, hist), 0);  // 1.5 / 2 = 0.75 < 1.0
  EXPECT_FLOAT_EQ(l[1], 0.75f);
  EXPECT_FLOAT_EQ(l[0], 1.0f);
}

TEST(Sampler, PresenceFrequencyShiftDistribution) {
  // With equal logits and a presence penalty on token 0, it is drawn exp(-1) times as often as token 1.
  SamplingParams p = plain(1.0f, 77);
  p.presence_penalty = 1.0f;
  Sampler s(p, 2);
  const std::vector<int32_t> hist = {0, 0, 0};
  int c0 = 0;
  const int N = 20000;
  for (int i = 0; i < N; ++i) {
    std::vector<float> l = {0.0f, 0.0f};
    c0 += s.sample(l, hist) == 0;
  }
  const double want = std::exp(-1.0) / (1.0 + std::exp(-1.0));
  EXPECT_NEAR(double(c0) / N, want, 0.01);
}

// ---- StopMatcher ----

namespace {
struct StopRun {
  std::string out;
  bool stopped = false;
  size_t stopped_at_piece = size_t(-1);
};
StopRun feed(StopMatcher& m, const std::vector<std::string>& pieces) {
  StopRun r;
  for (size_t i = 0; i < pieces.size(); ++i) {
    bool st = false;
    r.out += m.push(pieces[i], &st);
    if (st) {
      r.stopped = true;
      r.stopped_at_piece = i;
      return r;
    }
  }
  r.out += m.flush();
  return r;
}
}  // namespace

TEST(StopMatcher, NoStopPassesEverythingThrough) {
  StopMatcher m({"</s>"});
  bool st = true;
  EXPECT_EQ(m.push("hello ", &st), "hello ");
  EXPECT_FALSE(st);
  EXPECT_EQ(m.push("world", &st), "world");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, StopSplitAcrossPieces) {
  StopMatcher m({"</s>"});
  bool st = false;
  EXPECT_EQ(m.push("the end<", &st), "the end");
  EXPECT_FALSE(st);
  EXPECT_EQ(m.push("/", &st), "");
  EXPECT_FALSE(st);
  EXPECT_EQ(m.push("s>trailing", &st), "");
  EXPECT_TRUE(st);
}

TEST(StopMatcher, TextBeforeStopInSamePieceIsEmitted) {
  StopMatcher m({"STOP"});
  const StopRun r = feed(m, {"abc", "deSTOPxyz", "never"});
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.stopped_at_piece, 1u);
  EXPECT_EQ(r.out, "abcde");
}

TEST(StopMatcher, PartialPrefixThatFailsIsReleased) {
  StopMatcher m({"\nUser:"});
  bool st = false;
  EXPECT_EQ(m.push("Hi\nUs", &st), "Hi");
  EXPECT_FALSE(st);
  EXPECT_EQ(m.push("ually", &st), "\nUsually");
  EXPECT_FALSE(st);
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, HeldPrefixReleasedOnFlush) {
  StopMatcher m({"###"});
  bool st = false;
  EXPECT_EQ(m.push("x##", &st), "x");
  EXPECT_FALSE(st);
  EXPECT_EQ(m.flush(), "##");
  EXPECT_EQ(m.flush(), "");
}

TEST(StopMatcher, OverlappingSelfPrefix) {
  // "aab": after "aaa" the held part must be "aa" (the longest suffix that is a prefix), then "b" completes it.
  StopMatcher m({"aab"});
  const StopRun r = feed(m, {"a", "a", "a", "b", "c"});
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.out, "a");
}

TEST(StopMatcher, MultipleStopStringsEarliestWins) {
  {
    StopMatcher m({"world", "lo w"});
    const StopRun r = feed(m, {"hel", "lo world"});
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.out, "hel");
  }
  {
    StopMatcher m({"<|end|>", "\n\n"});
    bool st = false;
    EXPECT_EQ(m.push("line\n", &st), "line");  // "\n" could start "\n\n"
    EXPECT_EQ(m.push("<|en", &st), "\n");       // "<|en" could start "<|end|>"
    EXPECT_FALSE(st);
    EXPECT_EQ(m.push("d|>", &st), "");
    EXPECT_TRUE(st);
  }
  {
    // Held back for the longer candidate, then the shorter one completes.
    StopMatcher m({"abcd", "bc"});
    const StopRun r = feed(m, {"xab", "c"});
    EXPECT_TRUE(r.stopped);
    EXPECT_EQ(r.out, "xa");
  }
}

TEST(StopMatcher, StopAtStart) {
  StopMatcher m({"<eos>"});
  const StopRun r = feed(m, {"<eos>", "more"});
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.stopped_at_piece, 0u);
  EXPECT_EQ(r.out, "");
  StopMatcher m2({"<eos>"});
  const StopRun r2 = feed(m2, {"<", "e", "o", "s", ">"});
  EXPECT_TRUE(r2.stopped);
  EXPECT_EQ(r2.out, "");
}

TEST(StopMatcher, EmptyStopListAndEmptyStopString) {
  StopMatcher m({});
  EXPECT_EQ(feed(m, {"a", "b"}).out, "ab");
  StopMatcher m2({""});
  const StopRun r = feed(m2, {"a", "b"});
  EXPECT_FALSE(r.stopped);
  EXPECT_EQ(r.out, "ab");
}

TEST(StopMatcher, RandomSplitsAgreeWithWholeText) {
  std::mt19937 g(3);
  const std::vector<std::string> stops = {"</s>", "\n\nQ:", "ababc"};
  const std::string alphabet = "ab<>/s\nQ:c ";
  for (int trial = 0; trial < 500; ++trial) {
    std::string text;
    const int len = 5 + int(g() % 40);
    for (int i = 0; i < len; ++i) text += alphabet[g() % alphabet.size()];
    // Reference: cut at the earliest stop in the whole text.
    size_t cut = std::string::npos;
    for (const auto& s : stops) cut = std::min(cut, text.find(s));
    std::vector<std::string> pieces;
    for (size_t i = 0; i < text.size();) {
      const size_t n = 1 + g() % 4;
      pieces.push_back(text.substr(i, n));
      i += n;
    }
    StopMatcher m(stops);
    const StopRun r = feed(m, pieces);
    EXPECT_EQ(r.stopped, cut != std::string::npos) << text;
    EXPECT_EQ(r.out, cut == std::string::npos ? text : text.substr(0, cut)) << text;
  }
}

// What a GPU sends back instead of all logits: the tokens within candidate_margin() of the largest. Sampling
// from them must give exactly the tokens sampling from the whole row gives, draw after draw, for every setting.
// A chain's rows are the next draws in order, the same uniforms device_row() gives one at a time; chain_keep(s)
// winds the generator back so that the draw after the first s is the chain's row s again (a chain cut short), also
// when a device_row() was pending before the chain.
TEST(Sampler, ChainRowsAreTheNextDrawsAndCanBeCutShort) {
  SamplingParams p;
  p.temperature = 0.8f, p.top_k = 30, p.seed = 21;
  for (const bool pending_before : {false, true}) {
    SCOPED_TRACE(pending_before ? "a draw pending before the chain" : "no draw pending");
    Sampler one(p, 100), chain(p, 100);
    if (pending_before) one.device_row(), chain.device_row();
    std::vector<float> singles;
    for (int s = 0; s < 6; ++s) {
      singles.push_back(one.device_row().uniform);
      one.device_row_done();
    }
    std::vector<vireo::DeviceSampleRow> rows(12);
    chain.chain_rows(6, rows.data() + 1, 2);  // every other row, as a chain's rows of one sequence lie
    for (int s = 0; s < 6; ++s) {
      EXPECT_EQ(rows[1 + 2 * s].uniform, singles[s]) << "row " << s;
      EXPECT_EQ(rows[1 + 2 * s].top_k, 30);
    }
    EXPECT_NE(chain.device_row().uniform, singles[5]);  // past the chain
    chain.chain_keep(2);
    EXPECT_EQ(chain.device_row().uniform, singles[2]);
    chain.device_row_done();
    EXPECT_EQ(chain.device_row().uniform, singles[3]);
  }
  SamplingParams g;  // greedy: no draws, nothing to wind back
  g.temperature = 0;
  Sampler greedy(g, 100);
  vireo::DeviceSampleRow r[3];
  greedy.chain_rows(3, r, 1);
  for (const auto& row : r) EXPECT_EQ(row.temperature, 0.f);
  greedy.chain_keep(1);
}

TEST(Sampler, CandidatesGiveTheSameDrawsAsFullLogits) {
  std::mt19937 rng(5);
  std::normal_distribution<float> wide(0.f, 12.f);  // wide enough that the margin leaves tokens out
  const int V = 3000;
  struct Case { float t; int k; float p, minp; };
  const std::vector<Case> cases = {{0.f, 0, 1.f, 0.f}, {0.7f, 0, 1.f, 0.f}, {1.3f, 40, 1.f, 0.f},
                                   {1.f, 0, 0.9f, 0.f}, {0.8f, 0, 1.f, 0.05f}, {0.1f, 5, 0.5f, 0.1f}};
  for (const Case& c : cases) {
    SamplingParams p;
    p.temperature = c.t, p.top_k = c.k, p.top_p = c.p, p.min_p = c.minp, p.seed = 99;
    Sampler full(p, V), cand(p, V);
    size_t kept_total = 0;
    for (int draw = 0; draw < 200; ++draw) {
      std::vector<float> logits(V);
      for (auto& v : logits) v = wide(rng);
      if (draw % 7 == 0) logits[draw % V] = NAN;
      float top = -INFINITY;
      for (float v : logits) if (v > top) top = v;
      std::vector<float> vals;
      std::vector<int32_t> ids;
      for (int i = 0; i < V; ++i)
        if (logits[i] >= top - cand.candidate_margin()) vals.push_back(logits[i]), ids.push_back(i);
      kept_total += ids.size();
      std::vector<float> copy = logits;
      ASSERT_EQ(full.sample(copy, {}), cand.sample_candidates(vals, ids)) << "t=" << c.t << " draw " << draw;
    }
    if (c.t > 0 && c.t < 1.f) EXPECT_LT(kept_total, 200u * V) << "the margin should leave tokens out";
  }
}
