// Token sampler: penalties -> (greedy | top-k -> softmax(temperature) -> min-p -> top-p -> seeded draw).
//
// Determinism: every ordering uses a strict total order (probability/logit descending, then id ascending), so
// std::sort / std::partial_sort give the same sequence on every standard library; the uniform draw is built
// from the raw 64-bit output of std::mt19937_64 (whose sequence is fixed by the standard) instead of the
// implementation-defined std::uniform_real_distribution.
#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace vireo {
namespace {

using Cand = std::pair<float, int32_t>;

// Larger value first; equal values by lower id. A strict total order as long as no value is NaN.
inline bool before(const Cand& a, const Cand& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

// Uniform double in [0, 1) from the top 53 bits of one 64-bit draw.
inline double uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);  // 2^-53
}

}  // namespace

int32_t select_candidates(std::span<const float> row, float margin, int32_t cap, float* values, int32_t* ids) {
  float top = -INFINITY;
  for (float v : row) top = std::max(top, v);  // NaN never wins
  const float floor_l = top - margin;
  int32_t n = 0;
  for (size_t c = 0; c < row.size(); ++c)
    if (row[c] >= floor_l) {
      if (n == cap) return -1;
      values[n] = row[c], ids[n] = static_cast<int32_t>(c), ++n;
    }
  return n == 0 ? -1 : n;
}

int32_t argmax(std::span<const float> logits) {
  int32_t best = 0;
  float best_v = -std::numeric_limits<float>::infinity();
  bool found = false;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float v = logits[i];
    if (std::isnan(v)) continue;
    if (!found || v > best_v) {  // strict '>' keeps the lowest id on ties
      best = static_cast<int32_t>(i);
      best_v = v;
      found = true;
    }
  }
  return best;
}

Sampler::Sampler(const SamplingParams& p, int32_t n_vocab) : p_(p), rng_(p.seed) {
  const size_t n = n_vocab > 0 ? static_cast<size_t>(n_vocab) : 0;
  cand_.reserve(n);
  counts_.assign(n, 0);
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history) {
  const size_t n = logits.size();
  if (n == 0) return 0;
  if (counts_.size() < n) counts_.resize(n, 0);  // only if the caller's vocabulary is larger than declared

  // ---- penalties over the last penalty_last_n tokens ----
  const bool penalize = p_.penalty_last_n != 0 &&
                        (p_.repeat_penalty != 1.0f || p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f);
  if (penalize && !history.empty()) {
    size_t window = history.size();
    if (p_.penalty_last_n > 0) window = std::min(window, static_cast<size_t>(p_.penalty_last_n));
    const std::span<const int32_t> recent = history.subspan(history.size() - window);
    for (int32_t t : recent)
      if (t >= 0 && static_cast<size_t>(t) < n) ++counts_[t];
    for (int32_t t : recent) {
      if (t < 0 || static_cast<size_t>(t) >= n) continue;
      const int32_t c = counts_[t];
      if (c == 0) continue;  // already applied for this token
      float& l = logits[t];
      if (p_.repeat_penalty != 1.0f) l = l > 0.0f ? l / p_.repeat_penalty : l * p_.repeat_penalty;
      l -= static_cast<float>(c) * p_.frequency_penalty + p_.presence_penalty;
      counts_[t] = 0;  // also resets the scratch for the next call
    }
  }

  if (p_.temperature <= 0.0f) return argmax(logits);
  return sample_at(logits, next_uniform());  // one uniform per sampled token, whatever the logits
}

int32_t Sampler::sample_at(std::span<const float> logits, double u) {
  const size_t n = logits.size();
  if (p_.temperature <= 0.0f || n == 0) return argmax(logits);

  // ---- candidates (NaN logits are treated as impossible) ----
  // Tokens whose probability relative to the most likely one is below e^-40 (~4e-18) are left out before any
  // exp or sort: over even a 256K vocabulary they hold less than 1e-12 of the mass, and skipping them makes
  // sampling from a large vocabulary cost a compare per token instead of an exp (or a sort) per token.
  float top = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < n; ++i)
    if (logits[i] > top) top = logits[i];  // NaN never compares greater
  const float floor_l = top - candidate_margin();
  cand_.clear();
  for (size_t i = 0; i < n; ++i) {
    const float v = logits[i];
    if (v >= floor_l) cand_.emplace_back(v, static_cast<int32_t>(i));
  }
  if (cand_.empty()) return argmax(logits);  // every logit NaN
  return draw(u);
}

int32_t Sampler::sample_candidates(std::span<const float> values, std::span<const int32_t> ids) {
  if (values.empty()) return 0;
  if (p_.temperature <= 0.0f) {  // argmax: the first of the largest (ids ascending)
    size_t best = 0;
    for (size_t i = 1; i < values.size(); ++i)
      if (values[i] > values[best]) best = i;
    return ids[best];
  }
  cand_.clear();
  for (size_t i = 0; i < values.size(); ++i) cand_.emplace_back(values[i], ids[i]);
  return draw(next_uniform());
}

double Sampler::next_uniform() {
  if (pending_) {
    pending_ = false;
    return pending_u_;
  }
  return uniform01(rng_);
}

DeviceSampleRow Sampler::device_row() {
  DeviceSampleRow r;
  r.temperature = p_.temperature;
  if (p_.temperature <= 0.0f) return r;  // greedy: no draw
  r.top_p = p_.top_p, r.min_p = p_.min_p, r.top_k = p_.top_k, r.margin = candidate_margin();
  if (!pending_) pending_u_ = uniform01(rng_), pending_ = true;
  r.uniform = static_cast<float>(pending_u_);
  if (r.uniform >= 1.0f) r.uniform = std::nextafter(1.0f, 0.0f);  // rounding to float must not reach 1
  return r;
}

void Sampler::chain_rows(int32_t steps, DeviceSampleRow* out, size_t stride) {
  chain_rng_ = rng_;
  chain_pending_ = pending_, chain_pending_u_ = pending_u_;
  for (int32_t s = 0; s < steps; ++s) {
    out[static_cast<size_t>(s) * stride] = device_row();
    device_row_done();
  }
}

void Sampler::chain_keep(int32_t used) {
  rng_ = chain_rng_;
  pending_ = chain_pending_, pending_u_ = chain_pending_u_;
  if (p_.temperature <= 0.0f) return;  // greedy rows draw nothing
  for (int32_t s = 0; s < used; ++s) next_uniform();
}

// top-k, temperature softmax, min-p, top-p and the draw at u over cand_ (token order ascending on entry).
int32_t Sampler::draw(double u) {
  bool sorted = false;

  // ---- top-k ----
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < cand_.size()) {
    const auto mid = cand_.begin() + p_.top_k;
    std::partial_sort(cand_.begin(), mid, cand_.end(), before);
    cand_.erase(mid, cand_.end());  // no reallocation: capacity is kept
    sorted = true;
  }

  // ---- softmax with temperature (probabilities replace logits in cand_, unnormalized: max is 1) ----
  float max_l = -std::numeric_limits<float>::infinity();
  for (const Cand& c : cand_) max_l = std::max(max_l, c.first);
  if (max_l == -std::numeric_limits<float>::infinity()) return cand_.front().second;  // nothing is possible: argmax
  const float inv_t = 1.0f / p_.temperature;
  for (Cand& c : cand_) c.first = std::exp((c.first - max_l) * inv_t);  // float: within 1 ulp, ~3x faster

  // ---- min-p: drop p < min_p * p_max (p_max is 1 here; the top token always stays) ----
  if (p_.min_p > 0.0f) {
    const float thr = p_.min_p;
    auto keep_end = std::remove_if(cand_.begin(), cand_.end(), [thr](const Cand& c) { return c.first < thr; });
    if (keep_end == cand_.begin()) {  // only possible if min_p > 1: keep the most likely token
      for (Cand& c : cand_)
        if (c.first == 1.0f) {
          std::swap(cand_.front(), c);
          break;
        }
      keep_end = cand_.begin() + 1;
    }
    cand_.erase(keep_end, cand_.end());  // remove_if keeps the relative order, so a sorted list stays sorted
  }

  // ---- top-p over the renormalized remaining set: smallest prefix with cumulative >= top_p ----
  if (p_.top_p < 1.0f) {
    if (!sorted) {
      std::sort(cand_.begin(), cand_.end(), before);
      sorted = true;
    }
    double total = 0.0;
    for (const Cand& c : cand_) total += c.first;
    const double target = static_cast<double>(p_.top_p) * total;
    double cum = 0.0;
    size_t keep = cand_.size();
    for (size_t i = 0; i < cand_.size(); ++i) {
      cum += cand_[i].first;
      if (cum >= target) {
        keep = i + 1;
        break;
      }
    }
    cand_.resize(std::max<size_t>(keep, 1));
  }

  // ---- renormalize and draw ----
  double total = 0.0;
  for (const Cand& c : cand_) total += c.first;
  const double r = u * total;
  double cum = 0.0;
  for (const Cand& c : cand_) {
    cum += c.first;
    if (r < cum) return c.second;
  }
  // Rounding left r at or past the last boundary: take the last candidate with nonzero probability.
  for (size_t i = cand_.size(); i-- > 0;)
    if (cand_[i].first > 0.0f) return cand_[i].second;
  return cand_.front().second;
}

// ---- StopMatcher ----

std::string StopMatcher::push(const std::string& piece, bool* stopped) {
  if (stopped) *stopped = false;
  pending_ += piece;

  // Earliest complete stop string in the pending text.
  size_t hit = std::string::npos;
  for (const std::string& s : stops_) {
    if (s.empty()) continue;
    const size_t at = pending_.find(s);
    if (at < hit) hit = at;
  }
  if (hit != std::string::npos) {
    std::string out = pending_.substr(0, hit);
    pending_.clear();
    if (stopped) *stopped = true;
    return out;
  }

  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    const size_t max_len = std::min(pending_.size(), s.empty() ? size_t(0) : s.size() - 1);
    for (size_t len = max_len; len > hold; --len) {
      if (pending_.compare(pending_.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopMatcher::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace vireo
