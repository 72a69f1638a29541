// Continuous batching: every step is one forward pass over all active sequences.
//
// A step is built as: one decode token for every sequence that has a sampled token waiting, then prompt chunks of
// sequences still in prefill, within the step budget (and within `prefill_chunk` while others decode, so a long
// prompt arriving does not stall the users already streaming). After the pass, each sequence whose row came back
// samples its next token on the host, streams text, and stops on EOS / stop strings / max_tokens / context end.
//
// The KV cache is slotted: a sequence owns one slot while it runs; when it ends its tokens stay in the slot so a
// later request with the same prefix (system prompt, earlier turns) starts after it. A request may also copy the
// longest shared prefix out of any other slot (Backend::kv_copy), so users share a system prompt while running.
#include "runtime/scheduler_impl.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <thread>

namespace vireo {

namespace {
using clock_type = std::chrono::steady_clock;
double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}
size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}
}  // namespace

Scheduler::Impl::Impl(Model& model, const Tokenizer& tok) : model_(model), tok_(tok) {
  slots_.resize(static_cast<size_t>(model.n_slots()));
  step_tokens_ = model.max_batch();
  prefill_chunk_ = std::max(1, model.max_batch() / 2);
  const int32_t rows = std::min(model.max_logit_rows(), model.max_batch());
  logits_.resize(static_cast<size_t>(rows) * model.config().n_vocab);
  batch_.tokens.reserve(static_cast<size_t>(step_tokens_));
  row_owner_.reserve(static_cast<size_t>(rows));
  ids_.reserve(static_cast<size_t>(rows));
  margins_.reserve(static_cast<size_t>(rows));
  cand_counts_.reserve(static_cast<size_t>(rows));
  fallback_rows_.reserve(static_cast<size_t>(rows));
  all_rows_.reserve(static_cast<size_t>(rows));
  cand_vals_.resize(static_cast<size_t>(rows) * kCandidateCap);
  cand_ids_.resize(static_cast<size_t>(rows) * kCandidateCap);
}

uint64_t Scheduler::Impl::submit(GenerateRequest req) {
  const int32_t n_ctx = model_.n_ctx(), n_vocab = model_.config().n_vocab;
  if (req.prompt.empty()) throw std::invalid_argument("empty prompt (no tokens)");
  if (static_cast<int32_t>(req.prompt.size()) >= n_ctx)
    throw std::invalid_argument("prompt is " + std::to_string(req.prompt.size()) + " tokens, the context holds " +
                                std::to_string(n_ctx) + " (use --ctx to raise it)");
  for (int32_t t : req.prompt)
    if (t < 0 || t >= n_vocab) throw std::invalid_argument("token id " + std::to_string(t) + " out of range");
  if (req.opts.max_tokens < 0) throw std::invalid_argument("max_tokens must not be negative");
  if (req.opts.logprobs > 20) throw std::invalid_argument("logprobs: at most 20 alternatives");
  std::lock_guard<std::mutex> lock(mu_);
  if (static_cast<int32_t>(queue_.size()) >= max_queue_)
    throw QueueFullError("the request queue is full (" + std::to_string(max_queue_) + " waiting)");
  auto seq = std::make_unique<Sequence>();
  seq->id = next_id_++;
  seq->req = std::move(req);
  seq->t_submit = clock_type::now();
  const uint64_t id = seq->id;
  queue_.push_back(std::move(seq));
  ++metrics_.requests;
  cv_.notify_one();
  return id;
}

void Scheduler::Impl::cancel(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  cancel_ids_.push_back(id);
  cv_.notify_one();
}

SchedulerMetrics Scheduler::Impl::metrics() const {
  std::lock_guard<std::mutex> lock(mu_);
  SchedulerMetrics m = metrics_;
  m.queued = static_cast<int32_t>(queue_.size());
  m.active = static_cast<int32_t>(active_.size());
  return m;
}

// Takes cancellations, then moves waiting requests into free slots.
void Scheduler::Impl::admit() {
  std::vector<uint64_t> cancels;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancels.swap(cancel_ids_);
    for (uint64_t id : cancels) {
      auto it = std::find_if(queue_.begin(), queue_.end(), [&](const auto& s) { return s->id == id; });
      if (it != queue_.end()) {
        auto seq = std::move(*it);
        queue_.erase(it);
        seq->st.stop_reason = "cancelled";
        finished_.push_back(std::move(seq));
      }
    }
  }
  for (uint64_t id : cancels)
    for (auto& seq : active_)
      if (seq->id == id && !seq->done) seq->st.stop_reason = "cancelled", seq->done = true;
  reap();

  while (true) {
    const bool any_free = std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return !s.busy; });
    if (!any_free) break;
    std::unique_ptr<Sequence> seq;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty()) break;
      seq = std::move(queue_.front());
      queue_.pop_front();
    }
    start(std::move(seq));
  }
}

// Chooses a slot for a new sequence and reuses as much of its prompt as the cache already holds.
void Scheduler::Impl::start(std::unique_ptr<Sequence> seq) {
  const std::vector<int32_t>& prompt = seq->req.prompt;
  // At least the last prompt token is always run so its logits are fresh.
  const size_t limit = prompt.size() - 1;
  int32_t best_free = -1, lru_free = -1, best_any = -1;
  size_t best_free_len = 0, best_any_len = 0;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = slots_[i];
    const size_t c = seq->req.opts.reuse_cache ? std::min(limit, common_prefix(s.tokens, prompt)) : 0;
    if (!s.busy) {
      if (best_free < 0 || c > best_free_len) best_free = static_cast<int32_t>(i), best_free_len = c;
      if (lru_free < 0 || s.last_used < slots_[lru_free].last_used) lru_free = static_cast<int32_t>(i);
    }
    if (c > best_any_len) best_any = static_cast<int32_t>(i), best_any_len = c;
  }
  int32_t slot = best_free;
  size_t keep = best_free_len;
  // Another slot holds a longer prefix: copy it into the least recently used free slot.
  if (best_any >= 0 && best_any_len > best_free_len && best_any_len >= kMinCopyTokens) {
    slot = best_free_len > 0 ? best_free : lru_free;
    model_.backend().kv_copy(best_any, slot, static_cast<int32_t>(best_any_len));
    slots_[slot].tokens.assign(slots_[best_any].tokens.begin(),
                               slots_[best_any].tokens.begin() + static_cast<std::ptrdiff_t>(best_any_len));
    keep = best_any_len;
  }
  Slot& s = slots_[slot];
  s.busy = true;
  s.last_used = ++use_clock_;
  s.tokens.resize(keep);
  model_.backend().kv_truncate(slot, static_cast<int32_t>(keep));

  seq->slot = slot;
  seq->n_fed = keep;
  seq->st.prompt_tokens = static_cast<int32_t>(prompt.size());
  seq->st.prompt_computed = static_cast<int32_t>(prompt.size() - keep);
  seq->t_start = clock_type::now();
  seq->sampler.emplace(seq->req.opts.sampling, model_.config().n_vocab);
  seq->decoder.emplace(tok_, seq->req.opts.show_special);
  // Primed with the last prompt token (not emitted): the decoder then knows whether the output starts a text
  // (SPM drops the dummy-prefix space after BOS) or continues one.
  seq->decoder->push(prompt.back());
  seq->stops.emplace(seq->req.opts.stop);
  {
    std::lock_guard<std::mutex> lock(mu_);
    metrics_.prompt_tokens += seq->st.prompt_tokens;
    metrics_.prompt_computed += seq->st.prompt_computed;
    metrics_.prompt_from_cache += static_cast<int64_t>(keep);
  }
  if (seq->req.opts.max_tokens == 0) {  // nothing to generate: finish at once
    seq->st.stop_reason = "length";
    seq->done = true;
  }
  active_.push_back(std::move(seq));
}

bool Scheduler::Impl::step() {
  admit();
  if (active_.empty()) return false;
  const auto t0 = clock_type::now();
  batch_.clear();
  row_owner_.clear();
  const int32_t max_rows = static_cast<int32_t>(logits_.size() / model_.config().n_vocab);
  // Decode tokens first: every generating sequence advances by one.
  for (auto& seq : active_) {
    if (seq->done || seq->pending < 0) continue;
    Slot& s = slots_[seq->slot];
    batch_.add(seq->pending, static_cast<int32_t>(s.tokens.size()), seq->slot, true);
    row_owner_.push_back(seq.get());
  }
  const bool decoding = !row_owner_.empty();
  int32_t prefill_budget = step_tokens_ - batch_.size();
  if (decoding) prefill_budget = std::min(prefill_budget, prefill_chunk_);
  for (auto& seq : active_) {
    if (seq->done || seq->pending >= 0 || prefill_budget <= 0) continue;
    if (static_cast<int32_t>(row_owner_.size()) >= max_rows) break;
    const auto& prompt = seq->req.prompt;
    const size_t n = std::min(prompt.size() - seq->n_fed, static_cast<size_t>(prefill_budget));
    const size_t base = slots_[seq->slot].tokens.size();
    for (size_t i = 0; i < n; ++i) {
      const bool last = seq->n_fed + i + 1 == prompt.size();
      batch_.add(prompt[seq->n_fed + i], static_cast<int32_t>(base + i), seq->slot, last);
      if (last) row_owner_.push_back(seq.get());
    }
    seq->chunk = n;
    prefill_budget -= static_cast<int32_t>(n);
  }
  // Greedy rows with nothing else to compute (no penalties, no log-probabilities) need only the argmax, which the
  // backend finds where the logits are: when every row is such, the step reads back 4 bytes a row.
  // Rows sampled without penalties or log-probabilities need only the tokens within the sampler's margin of the
  // largest logit (Sampler::sample_candidates gives the same draws), which the backend collects where the logits
  // are: the step then reads back kilobytes, not rows x n_vocab floats.
  const bool plain = std::all_of(row_owner_.begin(), row_owner_.end(), [](const Sequence* q) {
    return q->req.opts.logprobs < 0 && !q->sampler->has_penalties();
  });
  const bool argmax_only = plain && std::all_of(row_owner_.begin(), row_owner_.end(), [](const Sequence* q) {
    return q->req.opts.sampling.temperature <= 0.0f;
  });
  // A backend that samples on the device draws every plain row there, reading back one id a row.
  const bool on_device = plain && !argmax_only && model_.samples_on_device();
  const bool candidates = plain && !argmax_only && !on_device;
  // A decode step whose every token is chosen on the device may run as a chain of steps there (run_chain).
  const bool decode_only = batch_.size() > 0 && batch_.size() == static_cast<int32_t>(row_owner_.size()) &&
                           std::all_of(active_.begin(), active_.end(), [](const auto& q) { return q->done || q->pending >= 0; });
  int32_t chain = decode_only ? chain_length(argmax_only || on_device) : 1;
  if (chain > 1) {
    chain = run_chain(chain, on_device);
  } else if (batch_.size() > 0) {
    try {
      if (argmax_only) {
        ids_.resize(row_owner_.size());
        model_.forward_argmax(batch_, ids_);
      } else if (on_device) {
        ids_.resize(row_owner_.size());
        device_rows_.resize(row_owner_.size());
        for (size_t r = 0; r < row_owner_.size(); ++r) device_rows_[r] = row_owner_[r]->sampler->device_row();
        model_.forward_sample(batch_, device_rows_, ids_);
      } else if (candidates) {
        const size_t rows = row_owner_.size();
        margins_.resize(rows);
        cand_counts_.resize(rows);
        for (size_t r = 0; r < rows; ++r) margins_[r] = row_owner_[r]->sampler->candidate_margin();
        model_.forward_candidates(batch_, margins_, kCandidateCap, cand_vals_, cand_ids_, cand_counts_);
      } else {
        model_.forward(batch_, logits_);
      }
    } catch (const std::exception& e) {
      fail_all(e.what());
      return true;
    }
    // The step's tokens are now in the KV cache.
    for (auto& seq : active_) {
      if (seq->done) continue;
      Slot& s = slots_[seq->slot];
      if (seq->pending >= 0) {
        s.tokens.push_back(seq->pending);
        seq->pending = -1;
      } else if (seq->chunk > 0) {
        const auto& prompt = seq->req.prompt;
        s.tokens.insert(s.tokens.end(), prompt.begin() + static_cast<std::ptrdiff_t>(seq->n_fed),
                        prompt.begin() + static_cast<std::ptrdiff_t>(seq->n_fed + seq->chunk));
        seq->n_fed += seq->chunk;
        seq->chunk = 0;
      }
    }
    const int32_t V = model_.config().n_vocab;
    if (argmax_only) {
      for (size_t r = 0; r < row_owner_.size(); ++r) row_owner_[r]->next = ids_[r];
    } else if (candidates || on_device) {
      fallback_rows_.clear();
      for (size_t r = 0; r < row_owner_.size(); ++r) {
        Sequence& q = *row_owner_[r];
        if (on_device) {
          if (ids_[r] >= 0) {
            q.next = ids_[r];
            q.sampler->device_row_done();
          } else {
            fallback_rows_.push_back(static_cast<int32_t>(r));  // drawn on the host with the same uniform
          }
          continue;
        }
        const int32_t n = cand_counts_[r];
        if (n > 0) {
          q.next = q.sampler->sample_candidates(
              std::span<const float>(cand_vals_.data() + r * kCandidateCap, static_cast<size_t>(n)),
              std::span<const int32_t>(cand_ids_.data() + r * kCandidateCap, static_cast<size_t>(n)));
        } else {
          fallback_rows_.push_back(static_cast<int32_t>(r));
        }
      }
      if (!fallback_rows_.empty()) {  // too many tokens near the top (a flat distribution): the whole rows
        try {
          all_rows_.resize(row_owner_.size());
          for (size_t r = 0; r < all_rows_.size(); ++r) all_rows_[r] = static_cast<int32_t>(r);
          model_.read_logit_rows(all_rows_, logits_);  // one copy; row r lands at logits_[r]
        } catch (const std::exception& e) {
          fail_all(e.what());
          return true;
        }
        sample_rows(V, &fallback_rows_);
      }
    } else {
      sample_rows(V);
    }
    for (size_t r = 0; r < row_owner_.size(); ++r)
      on_logits(*row_owner_[r], std::span<float>(logits_.data() + r * V, static_cast<size_t>(V)));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (decode_only) {  // the decode step time that bounds the next chains
      const double per_step = seconds_since(t0) / std::max(chain, 1);
      decode_step_seconds_ = decode_step_seconds_ > 0 ? 0.8 * decode_step_seconds_ + 0.2 * per_step : per_step;
    }
    metrics_.steps += std::max(chain, 1);
    metrics_.chains += chain > 1 ? 1 : 0;
    metrics_.step_tokens += static_cast<int64_t>(batch_.size()) * std::max(chain, 1);
    metrics_.busy_seconds += seconds_since(t0);
  }
  reap();
  return true;
}

// How many decode steps the decode step in batch_ may run as a chain on the device (Backend::end_step_chain), 1 for
// none: only when every row is chosen on the device, nobody waits to be admitted or cancelled (a backend that
// reports a chain's runs only at its end holds the loop for its length), within the time bound once a decode step
// has been timed (there, text arrives chain by chain), and no longer than any row may still run (its token budget,
// the context).
int32_t Scheduler::Impl::chain_length(bool chosen_on_device) {
  if (decode_chain_ < 2 || !chosen_on_device || !model_.chains_steps()) return 1;
  if (chain_max_seconds_ > 0 && decode_step_seconds_ <= 0) return 1;  // not timed yet
  if (someone_waits()) return 1;
  int32_t steps = decode_chain_;
  if (chain_max_seconds_ > 0)
    steps = static_cast<int32_t>(std::min<double>(steps, std::floor(chain_max_seconds_ / decode_step_seconds_)));
  for (const Sequence* q : row_owner_) {
    steps = std::min(steps, q->req.opts.max_tokens - q->st.generated_tokens);
    steps = std::min(steps, model_.n_ctx() - static_cast<int32_t>(slots_[q->slot].tokens.size()));
  }
  return steps;
}

// Runs batch_ (decode tokens only) as a chain of up to `steps` steps on the device and streams each row's ids in
// step order as they come back, as if they had come one step at a time (take_chain_runs). The chain ends early
// when a row stops (EOS, stop string, budget, cancel) or someone waits to be admitted or cancelled; the backend
// still reports the runs it had issued, and a row that stopped ignores the rest of its ids (the keys and values
// they wrote lie past its slot's tokens and are overwritten before use). A sampled row the device could not
// draw (-1) keeps the token it fed to that step as pending, so the next step computes it again, and its
// generator goes back to that draw. Returns the runs done.
int32_t Scheduler::Impl::run_chain(int32_t steps, bool sampled) {
  const size_t rows = row_owner_.size();
  chain_ids_.resize(static_cast<size_t>(steps) * rows);
  chain_rows_.resize(sampled ? chain_ids_.size() : 0);
  if (sampled)
    for (size_t r = 0; r < rows; ++r) row_owner_[r]->sampler->chain_rows(steps, chain_rows_.data() + r, rows);
  chain_cut_.assign(rows, 0);
  chain_taken_ = 0;
  int32_t ran = 0;
  try {
    ran = model_.forward_chain(batch_, steps, chain_rows_, chain_ids_,
                               [this](int32_t done) { return take_chain_runs(done); });
  } catch (const std::exception& e) {
    fail_all(e.what());
    return 0;
  }
  take_chain_runs(ran);  // nothing left where the backend reported every run
  if (sampled && ran < steps)  // generators drew for `steps` runs: back to the runs that happened
    for (size_t r = 0; r < rows; ++r)
      if (!row_owner_[r]->done && !chain_cut_[r]) row_owner_[r]->sampler->chain_keep(ran);
  return ran;
}

// Streams runs chain_taken_ .. done - 1 of the chain in flight; true while it may go on: every row still runs and
// nobody waits to be admitted or cancelled.
bool Scheduler::Impl::take_chain_runs(int32_t done) {
  const size_t rows = row_owner_.size();
  for (; chain_taken_ < done; ++chain_taken_) {
    const int32_t s = chain_taken_;
    for (size_t r = 0; r < rows; ++r) {
      Sequence& q = *row_owner_[r];
      if (q.done || chain_cut_[r]) continue;
      const int32_t id = chain_ids_[static_cast<size_t>(s) * rows + r];
      if (id < 0) {
        q.sampler->chain_keep(s);
        chain_cut_[r] = 1;
        continue;
      }
      slots_[q.slot].tokens.push_back(q.pending);  // the token step s ran is now in the KV cache
      q.pending = -1;
      q.next = id;
      on_logits(q, {});
    }
  }
  for (size_t r = 0; r < rows; ++r)
    if (row_owner_[r]->done || chain_cut_[r]) return false;
  return !someone_waits();
}

// A request waits to be admitted or cancelled (a chain then ends, or does not start).
bool Scheduler::Impl::someone_waits() {
  std::lock_guard<std::mutex> lock(mu_);
  return !queue_.empty() || !cancel_ids_.empty();
}

// Samples every row's next token (and log-probabilities when asked). Rows are independent, so with many rows
// over a large vocabulary (each a pass of exp over up to V logits) the work is split over a few threads.
void Scheduler::Impl::sample_rows(int32_t V, const std::vector<int32_t>* only) {
  const size_t rows = only ? only->size() : row_owner_.size();
  auto one = [&](size_t i, LogprobScratch& scratch) {
    const size_t r = only ? static_cast<size_t>((*only)[i]) : i;
    Sequence& seq = *row_owner_[r];
    std::span<float> logits(logits_.data() + r * V, static_cast<size_t>(V));
    const GenerateOptions& o = seq.req.opts;
    if (o.logprobs >= 0) {
      log_softmax_top(logits, o.logprobs, seq.top, scratch);  // before penalties change the logits
      seq.next = seq.sampler->sample(logits, slots_[seq.slot].tokens);
      seq.chosen_logprob = scratch.logits[static_cast<size_t>(seq.next)] - scratch.lse;
    } else {
      seq.next = seq.sampler->sample(logits, slots_[seq.slot].tokens);
    }
  };
  const size_t hw = std::max(1u, std::thread::hardware_concurrency());
  const size_t workers = std::min({hw, rows / 4, static_cast<size_t>(16)});
  if (workers < 2 || static_cast<int64_t>(rows) * V < (1 << 20)) {
    for (size_t r = 0; r < rows; ++r) one(r, scratch_[0]);
    return;
  }
  if (scratch_.size() < workers) scratch_.resize(workers);
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (size_t w = 1; w < workers; ++w)
    pool.emplace_back([&, w] {
      for (size_t r = w; r < rows; r += workers) one(r, scratch_[w]);
    });
  for (size_t r = 0; r < rows; r += workers) one(r, scratch_[0]);
  for (auto& t : pool) t.join();
}

// Streams the token sampled for `seq` and decides whether it goes on.
void Scheduler::Impl::on_logits(Sequence& seq, std::span<float>) {
  const GenerateOptions& o = seq.req.opts;
  Slot& slot = slots_[seq.slot];
  StreamEvent ev;
  ev.top = std::move(seq.top);
  const int32_t next = seq.next;
  const auto now = clock_type::now();
  if (seq.st.generated_tokens == 0 && !seq.first_token_seen) {
    seq.first_token_seen = true;
    seq.t_first = now;
    seq.st.ttft_seconds = std::chrono::duration<double>(now - seq.t_submit).count();
    seq.st.prompt_seconds = std::chrono::duration<double>(now - seq.t_start).count();
  }
  if (!o.ignore_eos && tok_.is_eog(next)) {
    seq.st.stop_reason = "eos";
    seq.done = true;
    return;
  }
  ++seq.st.generated_tokens;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++metrics_.generated;
  }
  bool stopped = false;
  const std::string text = seq.stops->push(seq.decoder->push(next), &stopped);
  ev.text = text;
  ev.token = next;
  if (o.logprobs >= 0) {
    ev.chosen.token = next;
    ev.chosen.logprob = seq.chosen_logprob;
    if (o.logprobs == 0) ev.top.clear();
  }
  if (seq.req.on_event && !seq.req.on_event(ev)) {
    seq.st.stop_reason = "cancelled";
    seq.done = true;
    return;
  }
  if (stopped) {
    seq.st.stop_reason = "stop";
    seq.done = true;
  } else if (seq.st.generated_tokens >= o.max_tokens) {
    seq.st.stop_reason = "length";  // the last token needs no forward pass
    seq.done = true;
  } else if (static_cast<int32_t>(slot.tokens.size()) >= model_.n_ctx()) {
    seq.st.stop_reason = "context";
    seq.done = true;
  } else {
    seq.pending = next;
  }
}

// Log-softmax of the raw logits; keeps the k most likely tokens in `top` (most likely first), and the logits and
// normalizer in `scratch` for the chosen token's log-probability.
void Scheduler::Impl::log_softmax_top(std::span<const float> logits, int32_t k, std::vector<TokenLogprob>& top,
                                      LogprobScratch& scratch) {
  float mx = -INFINITY;
  for (float v : logits) mx = std::max(mx, v);
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v - mx));
  scratch.lse = mx + static_cast<float>(std::log(sum));
  scratch.logits.assign(logits.begin(), logits.end());
  top.clear();
  if (k <= 0) return;
  auto& cand = scratch.cand;
  cand.clear();
  for (int32_t i = 0; i < static_cast<int32_t>(logits.size()); ++i) cand.push_back({logits[i], i});
  const size_t kk = std::min(static_cast<size_t>(k), cand.size());
  std::partial_sort(cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(kk), cand.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  for (size_t i = 0; i < kk; ++i) top.push_back({cand[i].second, cand[i].first - scratch.lse});
}

// Finishes sequences marked done: flush held-back text, send the final event, free the slot.
void Scheduler::Impl::reap() {
  for (size_t i = 0; i < active_.size();) {
    Sequence& seq = *active_[i];
    if (!seq.done) {
      ++i;
      continue;
    }
    Slot& s = slots_[seq.slot];
    s.busy = false;
    s.last_used = ++use_clock_;
    if (seq.pending >= 0) seq.pending = -1;  // sampled but never fed: not in the cache
    finished_.push_back(std::move(active_[i]));
    active_.erase(active_.begin() + static_cast<std::ptrdiff_t>(i));
  }
  for (auto& seq_ptr : finished_) {
    Sequence& seq = *seq_ptr;
    GenerateStats& st = seq.st;
    std::string rest;
    if (seq.decoder && (st.stop_reason == "length" || st.stop_reason == "eos" || st.stop_reason == "context")) {
      bool ignored = false;
      rest = seq.stops->push(seq.decoder->flush(), &ignored);
      rest += seq.stops->flush();
    }
    if (seq.first_token_seen && st.generated_tokens > 0)
      st.decode_seconds = std::chrono::duration<double>(clock_type::now() - seq.t_first).count();
    if (seq.first_token_seen == false && st.stop_reason != "cancelled" && st.stop_reason != "error")
      st.prompt_seconds = seconds_since(seq.t_start);
    StreamEvent ev;
    ev.text = rest;
    ev.done = true;
    ev.stats = &st;
    if (seq.req.on_event) seq.req.on_event(ev);
    std::lock_guard<std::mutex> lock(mu_);
    if (st.stop_reason == "cancelled") ++metrics_.cancelled;
    else if (st.stop_reason == "error") ++metrics_.failed;
    else ++metrics_.finished;
  }
  finished_.clear();
}

void Scheduler::Impl::fail_all(const std::string& what) {
  for (auto& seq : active_) {
    seq->st.stop_reason = "error";
    seq->st.error = what;
    seq->done = true;
    // The slot's cache may be half-written: forget it.
    slots_[seq->slot].tokens.clear();
    seq->chunk = 0;
  }
}

void Scheduler::Impl::run_until_idle() {
  while (true) {
    if (!step()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty() && cancel_ids_.empty()) return;
    }
  }
}

void Scheduler::Impl::serve(const std::atomic<bool>& stop) {
  while (!stop.load()) {
    if (step()) {
      if (step_delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(step_delay_ms_));
      continue;
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return !queue_.empty() || !cancel_ids_.empty(); });
  }
  // Shutting down: everything still queued or running ends as cancelled (each stream gets its final event).
  std::vector<uint64_t> ids;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& s : queue_) ids.push_back(s->id);
  }
  for (auto& s : active_) ids.push_back(s->id);
  for (uint64_t id : ids) cancel(id);
  admit();
}

void Scheduler::Impl::reset_slot(int32_t slot, std::vector<int32_t> tokens) {
  slots_.at(static_cast<size_t>(slot)).tokens = std::move(tokens);
}

// ---- public wrapper ----
uint64_t Scheduler::submit(GenerateRequest req) { return impl_->submit(std::move(req)); }
void Scheduler::cancel(uint64_t id) { impl_->cancel(id); }
bool Scheduler::step() { return impl_->step(); }
void Scheduler::run_until_idle() { impl_->run_until_idle(); }
void Scheduler::serve(const std::atomic<bool>& stop) { impl_->serve(stop); }
SchedulerMetrics Scheduler::metrics() const { return impl_->metrics(); }
int32_t Scheduler::n_slots() const { return static_cast<int32_t>(impl_->slots_.size()); }
void Scheduler::set_max_queue(int32_t n) {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  impl_->max_queue_ = std::max(0, n);
}
void Scheduler::set_step_delay_ms(int32_t ms) { impl_->step_delay_ms_ = std::max(0, ms); }
void Scheduler::set_decode_chain(int32_t steps, double max_ms) {
  Impl& s = *impl_;
  s.decode_chain_ = std::max(1, steps);
  s.chain_max_seconds_ = std::max(0.0, max_ms) / 1e3;
  const size_t rows = s.row_owner_.capacity(), n = rows * static_cast<size_t>(s.decode_chain_);
  s.chain_ids_.reserve(n);
  if (s.model_.samples_on_device()) s.chain_rows_.reserve(n);
  s.chain_cut_.reserve(rows);
}
void Scheduler::set_step_budget(int32_t step_tokens, int32_t prefill_chunk) {
  impl_->step_tokens_ = std::clamp(step_tokens, 1, impl_->model_.max_batch());
  impl_->prefill_chunk_ = std::clamp(prefill_chunk, 1, impl_->step_tokens_);
}

}  // namespace vireo
