// Token sampling on the host: penalties, then temperature, then top-k / top-p / min-p filtering, then a
// seeded draw. temperature <= 0 means greedy (argmax, ties to the lowest id).
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "vireo/vireo.h"

namespace vireo {

// SamplingParams is public: include/vireo/vireo.h


class Sampler {
 public:
  Sampler(const SamplingParams& p, int32_t n_vocab);
  // Picks a token from logits (modified in place by penalties). `history` is every token so far.
  int32_t sample(std::span<float> logits, std::span<const int32_t> history);
  // The same choice (same draws from the same seed) from only the tokens whose logit is at least
  // max - candidate_margin(), ids ascending, when no penalty applies: what a GPU can send back instead of a whole
  // vocabulary of logits.
  int32_t sample_candidates(std::span<const float> values, std::span<const int32_t> ids);
  // sample() without penalties, at a given uniform draw u in [0, 1) instead of the generator's next one.
  int32_t sample_at(std::span<const float> logits, double u);
  // For a backend that samples on the device (Backend::end_step_sample): this row's settings, with the uniform
  // of the next draw taken from the generator now (one per sampled token, as sample() takes it). Until
  // device_row_done(), the next sample() or sample_candidates() uses that same uniform: a row the device hands
  // back is drawn on the host as the device would have drawn it.
  DeviceSampleRow device_row();
  void device_row_done() { pending_ = false; }
  // For a chain of decode steps (Backend::end_step_chain): the rows of the next `steps` draws, out[s * stride].
  // The generator moves past all of them; chain_keep(used) puts it back after the first `used`, for a chain cut
  // short at a row the device could not draw (that draw is then made again, on the host or the device).
  void chain_rows(int32_t steps, DeviceSampleRow* out, size_t stride);
  void chain_keep(int32_t used);
  float candidate_margin() const { return p_.temperature > 0.0f ? 40.0f * p_.temperature : 0.0f; }
  bool has_penalties() const {
    return p_.penalty_last_n != 0 &&
           (p_.repeat_penalty != 1.0f || p_.presence_penalty != 0.0f || p_.frequency_penalty != 0.0f);
  }
  void reseed(uint64_t seed) { rng_.seed(seed); }
  const SamplingParams& params() const { return p_; }

 private:
  SamplingParams p_;
  int32_t draw(double u);
  double next_uniform();
  std::mt19937_64 rng_;
  bool pending_ = false;  // device_row() took pending_u_ from the generator
  double pending_u_ = 0;
  std::mt19937_64 chain_rng_;  // the generator before chain_rows(), with its pending draw
  bool chain_pending_ = false;
  double chain_pending_u_ = 0;
  // Scratch reused across calls (no allocation per token after the first).
  std::vector<std::pair<float, int32_t>> cand_;
  std::vector<int32_t> counts_;
};

int32_t argmax(std::span<const float> logits);

// The tokens of one logits row whose logit is at least (row max - margin), ids ascending, into values/ids (at
// most `cap`). Returns how many, or -1 when more than `cap` (or none) qualify. What Backend::end_step_candidates
// returns per row when a backend picks candidates on the host.
int32_t select_candidates(std::span<const float> row, float margin, int32_t cap, float* values, int32_t* ids);

// Stop-string matcher for streamed text: holds back text that could still become a stop string.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Appends `piece`; returns the text safe to emit now. Sets *stopped when a stop string completed
  // (the stop string itself and anything after it are not emitted).
  std::string push(const std::string& piece, bool* stopped);
  // Text still held back (emit it at the end when generation stops for another reason).
  std::string flush();

 private:
  std::vector<std::string> stops_;
  std::string pending_;
};

}  // namespace vireo
