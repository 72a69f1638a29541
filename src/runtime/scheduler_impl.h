// Internal state of the continuous-batching scheduler (see scheduler.cpp).
#pragma once
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"
#include "vireo/vireo.h"

namespace vireo {

struct Scheduler::Impl {
  Impl(Model& model, const Tokenizer& tok);

  // A request while it runs.
  struct Sequence {
    uint64_t id = 0;
    GenerateRequest req;
    int32_t slot = -1;
    size_t n_fed = 0;      // prompt tokens in the slot's cache
    size_t chunk = 0;      // prompt tokens in the current step
    int32_t pending = -1;  // sampled token not yet run through the model
    bool done = false, first_token_seen = false;
    std::optional<Sampler> sampler;
    std::optional<StreamDecoder> decoder;
    std::optional<StopMatcher> stops;
    GenerateStats st;
    int32_t next = -1;                // this step's sampled token
    float chosen_logprob = 0;
    std::vector<TokenLogprob> top;    // this step's alternatives (when logprobs are asked for)
    std::chrono::steady_clock::time_point t_submit, t_start, t_first;
  };
  // A KV-cache slot: the tokens whose keys/values it holds, in order (kept after its sequence ends).
  struct Slot {
    std::vector<int32_t> tokens;
    bool busy = false;
    uint64_t last_used = 0;
  };
  // A shared prefix shorter than this is recomputed rather than copied between slots.
  static constexpr size_t kMinCopyTokens = 4;

  uint64_t submit(GenerateRequest req);
  void cancel(uint64_t id);
  bool step();
  void run_until_idle();
  void serve(const std::atomic<bool>& stop);
  SchedulerMetrics metrics() const;
  // For Engine::logits_all: what slot 0 holds after it ran a sequence outside the scheduler.
  void reset_slot(int32_t slot, std::vector<int32_t> tokens);

  void admit();
  void start(std::unique_ptr<Sequence> seq);
  struct LogprobScratch {
    std::vector<float> logits;
    std::vector<std::pair<float, int32_t>> cand;
    float lse = 0;
  };
  void sample_rows(int32_t n_vocab, const std::vector<int32_t>* only = nullptr);  // all rows, or those listed
  void on_logits(Sequence& seq, std::span<float> logits);
  void reap();
  int32_t chain_length(bool chosen_on_device);
  int32_t run_chain(int32_t steps, bool sampled);
  bool take_chain_runs(int32_t done);
  bool someone_waits();
  void fail_all(const std::string& what);
  void log_softmax_top(std::span<const float> logits, int32_t k, std::vector<TokenLogprob>& top,
                       LogprobScratch& scratch);

  Model& model_;
  const Tokenizer& tok_;
  std::vector<Slot> slots_;
  std::vector<std::unique_ptr<Sequence>> active_, finished_;
  uint64_t use_clock_ = 0;
  int32_t step_tokens_ = 0, prefill_chunk_ = 0;
  Batch batch_;
  std::vector<Sequence*> row_owner_;  // sequence of each logits row of the step
  std::vector<float> logits_;
  std::vector<int32_t> ids_;          // argmax of each row, in greedy-only steps
  // Sampling candidates of each row (Backend::end_step_candidates), at most kCandidateCap a row.
  static constexpr int32_t kCandidateCap = 2048;
  std::vector<DeviceSampleRow> device_rows_;  // per row, for a backend that samples on the device
  std::vector<float> margins_, cand_vals_;
  std::vector<int32_t> cand_ids_, cand_counts_, fallback_rows_, all_rows_;
  int32_t decode_chain_ = 1;
  double chain_max_seconds_ = 0;      // a chain's time bound (0: none)
  double decode_step_seconds_ = 0;    // moving average of a decode step's time (0: none timed yet)
  std::vector<int32_t> chain_ids_;            // a chain's ids, step by step, rows within a step
  std::vector<DeviceSampleRow> chain_rows_;   // the same layout
  std::vector<uint8_t> chain_cut_;            // rows whose chain ended at a draw the device could not make
  int32_t chain_taken_ = 0;                   // runs of the chain in flight streamed so far
  std::vector<LogprobScratch> scratch_ = std::vector<LogprobScratch>(1);  // one per sampling thread

  // Shared with submitting threads.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> queue_;
  std::vector<uint64_t> cancel_ids_;
  uint64_t next_id_ = 1;
  int32_t max_queue_ = 1024;
  int32_t step_delay_ms_ = 0;
  SchedulerMetrics metrics_;
};

}  // namespace vireo
