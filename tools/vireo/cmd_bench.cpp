// vireo bench: prefill and decode speed (median of repeats), time to first token and roofline %.
//
// Roofline % = decode tok/s x weight bytes read per token / measured read bandwidth: how close decode comes to
// the memory limit that bounds it.
#include <nlohmann/json.hpp>

#include <algorithm>
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

}  // namespace

void add_bench_command(CLI::App& app) {
  struct Args {
    LoadArgs load;
    int p = 512;
    int n = 128;
    int reps = 3;
    bool json = false;
    double bandwidth_gbs = 0;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("bench", "measure prefill and decode speed");
  args->load.add_to(cmd);
  cmd->add_option("-p,--n-prompt", args->p, "prompt tokens for the prefill test (0: skip)");
  cmd->add_option("-n,--n-gen", args->n, "tokens for the decode test (0: skip)");
  cmd->add_option("-r,--repetitions", args->reps, "repeats (the median is reported)");
  cmd->add_flag("--json", args->json, "print one JSON object on stdout instead of a table");
  cmd->add_option("--bandwidth", args->bandwidth_gbs, "memory bandwidth in GB/s (default: measured once)");
  cmd->callback([args] {
    const Args& a = *args;
    LoadArgs la = a.load;
    la.ctx = std::max(la.ctx, a.p + a.n + 16);
    auto engine = load_engine(la, a.json);
    const int threads = la.threads > 0 ? la.threads : static_cast<int>(std::thread::hardware_concurrency());

    double bw = a.bandwidth_gbs * 1e9;
#if defined(VIREO_HAVE_CUDA)
    if (bw <= 0 && la.device.rfind("cuda", 0) == 0)  // the GPU's memory, not the host's
      bw = cuda_read_bandwidth(la.device.size() > 5 ? std::atoi(la.device.c_str() + 5) : 0,
                               static_cast<double>(engine->weight_bytes_per_token()));
#endif
    if (bw <= 0) bw = cpu::measure_read_bandwidth(threads, static_cast<double>(engine->weight_bytes_per_token()));

    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> tok(1, engine->n_vocab() - 1);
    GenerateOptions g;
    g.sampling.temperature = 0;
    g.ignore_eos = true;
    g.reuse_cache = false;

    std::vector<double> pp, tg, ttft;
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
        GenerateStats st = engine->generate_tokens({tok(rng)}, g, {});
        if (r > 0) tg.push_back((st.generated_tokens - 1) / st.decode_seconds);
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
  });
}

}  // namespace vireo::cli
