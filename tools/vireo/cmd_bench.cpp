// vireo bench: prefill and decode speed (median of repeats), time to first token and roofline %.
//
// Roofline % = decode tok/s x weight bytes read per token / measured read bandwidth: how close decode comes to
// the memory limit that bounds it. Batched (--parallel): the same per decode step (all sequences' tokens share one
// read of the weights).
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>

#include "backend/cpu/membw.h"
#if defined(VIREO_HAVE_CUDA)
#include "backend/cuda/cuda_backend.h"
#endif
#include "common.h"

namespace vireo::cli {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

int bench_threads(const LoadArgs& la) {
  return la.threads > 0 ? la.threads : static_cast<int>(std::thread::hardware_concurrency());
}

// Read bandwidth of the device the model runs on: given (GB/s), the GPU's (CUDA), else the host's (measured).
double device_bandwidth(const LoadArgs& la, Engine& engine, double given_gbs) {
  double bw = given_gbs * 1e9;
#if defined(VIREO_HAVE_CUDA)
  if (bw <= 0 && la.device.rfind("cuda", 0) == 0)  // the GPU's memory, not the host's
    bw = cuda_read_bandwidth(la.device.size() > 5 ? std::atoi(la.device.c_str() + 5) : 0,
                             static_cast<double>(engine.weight_bytes_per_token()));
#endif
  if (bw <= 0) bw = cpu::measure_read_bandwidth(bench_threads(la), static_cast<double>(engine.weight_bytes_per_token()));
  return bw;
}

struct ParallelRun {
  double prefill_tok_s = 0;   // prompt tokens / time until every sequence had its first token
  double decode_tok_s = 0;    // tokens generated after that / the time they took
  double total_tok_s = 0;     // all generated tokens / wall time
  double steps = 0;
};

// N sequences submitted at once; the scheduler prefills them in step-budget chunks and decodes them together.
ParallelRun run_parallel_once(Engine& engine, int n_seq, int p, int n, std::mt19937& rng) {
  using clock = std::chrono::steady_clock;
  std::uniform_int_distribution<int32_t> tok(1, engine.n_vocab() - 1);
  Scheduler& s = engine.scheduler();
  const auto m0 = s.metrics();
  int started = 0;
  int64_t generated = 0, after_start = 0;
  clock::time_point t_all_started{};
  for (int i = 0; i < n_seq; ++i) {
    GenerateRequest r;
    r.prompt.resize(static_cast<size_t>(std::max(1, p)));
    for (auto& t : r.prompt) t = tok(rng);
    r.opts.sampling.temperature = 0;
    r.opts.ignore_eos = true;
    r.opts.reuse_cache = false;
    r.opts.max_tokens = n;
    r.on_event = [&, first = true](const StreamEvent& ev) mutable {
      if (ev.done) return true;
      ++generated;
      if (started == n_seq) ++after_start;
      if (first) {
        first = false;
        if (++started == n_seq) t_all_started = clock::now();
      }
      return true;
    };
    s.submit(std::move(r));
  }
  const auto t0 = clock::now();
  s.run_until_idle();
  const auto t1 = clock::now();
  ParallelRun out;
  const double all = std::chrono::duration<double>(t1 - t0).count();
  const double pre = std::chrono::duration<double>(t_all_started - t0).count();
  out.prefill_tok_s = pre > 0 ? double(n_seq) * p / pre : 0;
  out.decode_tok_s = all > pre ? double(after_start) / (all - pre) : 0;
  out.total_tok_s = double(generated) / all;
  out.steps = double(s.metrics().steps - m0.steps);
  return out;
}

// Decode of N sequences reads the weights once per step for N tokens: the weight-stream figure is decode steps
// per second x weight bytes / bandwidth (the KV cache reads, which grow with N and the context, are not counted).
void run_parallel_bench(const LoadArgs& la, int p, int n, int reps, const std::vector<int>& counts, bool json,
                        double given_gbs) {
  auto engine = load_engine(la, json);
  const double bw = device_bandwidth(la, *engine, given_gbs);
  const double bytes = static_cast<double>(engine->weight_bytes_per_token());
  std::mt19937 rng(1234);
  run_parallel_once(*engine, counts.front(), p, std::min(n, 8), rng);  // warm-up
  nlohmann::json rows = nlohmann::json::array();
  if (!json)
    std::printf("%-10s %8s %6s %6s %16s %16s %16s %8s %9s\n", "device", "seqs", "pp", "tg", "prefill tok/s",
                "decode tok/s", "total tok/s", "steps", "weights%");
  for (int c : counts) {
    std::vector<double> pre, dec, tot;
    double steps = 0;
    for (int r = 0; r < std::max(1, reps); ++r) {
      const ParallelRun run = run_parallel_once(*engine, c, p, n, rng);
      pre.push_back(run.prefill_tok_s);
      dec.push_back(run.decode_tok_s);
      tot.push_back(run.total_tok_s);
      steps = run.steps;
    }
    const double pm = median(pre), dm = median(dec), tm = median(tot);
    const double weight_pct = bw > 0 ? dm / c * bytes / bw * 100 : 0;
    if (json)
      rows.push_back({{"sequences", c}, {"prefill_tok_s", pm}, {"decode_tok_s", dm}, {"total_tok_s", tm},
                      {"steps", steps}, {"weight_stream_pct", weight_pct}, {"decode_runs", dec}});
    else
      std::printf("%-10s %8d %6d %6d %16.1f %16.1f %16.1f %8.0f %8.1f%%\n", la.device.c_str(), c, p, n, pm, dm, tm,
                  steps, weight_pct);
  }
  if (json) {
    nlohmann::json j = {{"model", la.model},         {"device", la.device},
                        {"n_prompt", p},              {"n_gen", n},
                        {"repetitions", reps},        {"memory_bytes", engine->memory_bytes()},
                        {"weight_bytes_per_token", bytes}, {"bandwidth_gb_s", bw / 1e9},
                        {"parallel", rows}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("decode tok/s: tokens generated after every sequence had its first token, over that time; "
                "weights%%: decode steps/s x %s of weights / %.1f GB/s measured (KV cache reads not counted); "
                "memory: %s\n",
                human_bytes(bytes).c_str(), bw / 1e9, human_bytes(double(engine->memory_bytes())).c_str());
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  struct Args {
    LoadArgs load;
    int p = 512;
    int n = 128;
    int reps = 3;
    bool json = false;
    double bandwidth_gbs = 0;
    std::vector<int> parallel;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("bench", "measure prefill and decode speed");
  args->load.add_to(cmd);
  cmd->add_option("-p,--n-prompt", args->p, "prompt tokens for the prefill test (0: skip)");
  cmd->add_option("-n,--n-gen", args->n, "tokens for the decode test (0: skip)");
  cmd->add_option("-r,--repetitions", args->reps, "repeats (the median is reported)");
  cmd->add_flag("--json", args->json, "print one JSON object on stdout instead of a table");
  cmd->add_option("--bandwidth", args->bandwidth_gbs, "memory bandwidth in GB/s (default: measured once)");
  cmd->add_option("--parallel", args->parallel,
                  "batched mode: for each count N, N sequences of -p prompt and -n new tokens at once "
                  "(continuous batching); reports aggregate tok/s")
      ->delimiter(',')
      ->check(CLI::Range(1, 4096));
  cmd->callback([args] {
    const Args& a = *args;
    LoadArgs la = a.load;
    la.ctx = std::max(la.ctx, a.p + a.n + 16);
    if (!a.parallel.empty()) {
      la.slots = *std::max_element(a.parallel.begin(), a.parallel.end());
      run_parallel_bench(la, a.p, a.n, a.reps, a.parallel, a.json, a.bandwidth_gbs);
      return;
    }
    auto engine = load_engine(la, a.json);
    const int threads = bench_threads(la);
    const double bw = device_bandwidth(la, *engine, a.bandwidth_gbs);

    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> tok(1, engine->n_vocab() - 1);
    GenerateOptions g;
    g.sampling.temperature = 0;
    g.ignore_eos = true;
    g.reuse_cache = false;

    std::vector<double> pp, tg, ttft;
    Engine::DeviceCounters dc{};  // device work over the counted decode runs
    for (int r = 0; r < a.reps + 1; ++r) {  // the first round warms caches and pages, and is not counted
      if (a.p > 0) {
        std::vector<int32_t> prompt(static_cast<size_t>(a.p));
        for (auto& t : prompt) t = tok(rng);
        g.max_tokens = 1;
        GenerateStats st = engine->generate_tokens(prompt, g, {});
        if (r > 0) {
          pp.push_back(a.p / st.prompt_seconds);
          ttft.push_back(st.ttft_seconds);
        }
      }
      if (a.n > 0) {
        g.max_tokens = a.n + 1;  // the first token comes from the prompt's step; n more are decode steps
        const Engine::DeviceCounters c0 = engine->device_counters();
        GenerateStats st = engine->generate_tokens({tok(rng)}, g, {});
        const Engine::DeviceCounters c1 = engine->device_counters();
        if (r > 0) {
          tg.push_back((st.generated_tokens - 1) / st.decode_seconds);
          dc.steps += c1.steps - c0.steps;  // the one-token prompt's step has the shape of a decode step
          dc.submits += c1.submits - c0.submits;
          dc.dispatches += c1.dispatches - c0.dispatches;
          dc.encode_seconds += c1.encode_seconds - c0.encode_seconds;
          dc.wait_seconds += c1.wait_seconds - c0.wait_seconds;
        }
      }
    }
    const double pp_med = median(pp), tg_med = median(tg), ttft_med = median(ttft);
    const double bytes = static_cast<double>(engine->weight_bytes_per_token());
    const double roofline = bw > 0 ? tg_med * bytes / bw * 100 : 0;

    if (a.json) {
      nlohmann::json j = {{"model", a.load.model},
                          {"device", a.load.device},
                          {"threads", threads},
                          {"n_prompt", a.p},
                          {"n_gen", a.n},
                          {"repetitions", a.reps},
                          {"prefill_tok_s", pp_med},
                          {"decode_tok_s", tg_med},
                          {"ttft_ms", ttft_med * 1e3},
                          {"weight_bytes_per_token", bytes},
                          {"bandwidth_gb_s", bw / 1e9},
                          {"roofline_pct", roofline},
                          {"memory_bytes", engine->memory_bytes()},
                          {"dispatches_per_token", dc.steps > 0 ? double(dc.dispatches) / dc.steps : 0.0},
                          {"submits_per_token", dc.steps > 0 ? double(dc.submits) / dc.steps : 0.0},
                          {"encode_ms_per_token", dc.steps > 0 ? 1e3 * dc.encode_seconds / dc.steps : 0.0},
                          {"wait_ms_per_token", dc.steps > 0 ? 1e3 * dc.wait_seconds / dc.steps : 0.0},
                          {"prefill_runs", pp},
                          {"decode_runs", tg}};
      std::printf("%s\n", j.dump(2).c_str());
      return;
    }
    std::printf("%-10s %-8s %8s %14s %14s %10s %10s\n", "device", "threads", "test", "tok/s (median)", "runs",
                "roofline", "ttft ms");
    if (a.p > 0)
      std::printf("%-10s %-8d %8s %14.1f %14zu %10s %10.1f\n", a.load.device.c_str(), threads,
                  ("pp" + std::to_string(a.p)).c_str(), pp_med, pp.size(), "-", ttft_med * 1e3);
    if (a.n > 0)
      std::printf("%-10s %-8d %8s %14.1f %14zu %9.1f%% %10s\n", a.load.device.c_str(), threads,
                  ("tg" + std::to_string(a.n)).c_str(), tg_med, tg.size(), roofline, "-");
    std::printf("weights read per token: %s; measured read bandwidth: %.1f GB/s; memory: %s\n",
                human_bytes(bytes).c_str(), bw / 1e9, human_bytes(double(engine->memory_bytes())).c_str());
    if (a.bandwidth_gbs <= 0 && la.device == "webgpu")
      std::printf("note: the roofline uses the host's memory bandwidth (right for a CPU adapter such as lavapipe); "
                  "for a GPU adapter give its bandwidth with --bandwidth GB/s\n");
    if (dc.steps > 0)  // devices that count their work (WebGPU)
      std::printf("device work per decode token: %.1f dispatches, %.2f queue submits; host time per token: "
                  "%.3f ms recording and submitting, %.3f ms waiting for the device\n",
                  double(dc.dispatches) / dc.steps, double(dc.submits) / dc.steps,
                  1e3 * dc.encode_seconds / dc.steps, 1e3 * dc.wait_seconds / dc.steps);
  });
}

}  // namespace vireo::cli
