// Server counters and latency histograms in the Prometheus text format (GET /metrics).
#pragma once
#include <array>
#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

#include "vireo/vireo.h"

namespace vireo::server {

// A cumulative histogram with fixed bucket bounds (seconds).
class Histogram {
 public:
  static constexpr std::array<double, 14> kBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                     0.25,  0.5,    1.0,   2.5,  5.0,   10.0, 30.0};
  void observe(double v) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < kBounds.size(); ++i)
      if (v <= kBounds[i]) ++counts_[i];
    ++count_;
    sum_ += v;
  }
  void write(std::string& out, const char* name, const char* help) const {
    std::lock_guard<std::mutex> lock(mu_);
    char buf[160];
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " histogram\n";
    for (size_t i = 0; i < kBounds.size(); ++i) {
      std::snprintf(buf, sizeof buf, "%s_bucket{le=\"%g\"} %llu\n", name, kBounds[i],
                    static_cast<unsigned long long>(counts_[i]));
      out += buf;
    }
    std::snprintf(buf, sizeof buf, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                  static_cast<unsigned long long>(count_), name, sum_, name, static_cast<unsigned long long>(count_));
    out += buf;
  }

 private:
  mutable std::mutex mu_;
  std::array<uint64_t, kBounds.size()> counts_{};
  uint64_t count_ = 0;
  double sum_ = 0;
};

struct Metrics {
  std::atomic<int64_t> requests{0}, completed{0}, rejected{0}, bad_requests{0}, unauthorized{0}, server_errors{0},
      disconnects{0}, prompt_tokens{0}, generated_tokens{0};
  Histogram ttft, itl;

  std::string prometheus(const SchedulerMetrics& s, int open_streams) const {
    std::string out;
    auto counter = [&](const char* name, const char* help, int64_t v) {
      out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name + " " +
             std::to_string(v) + "\n";
    };
    auto gauge = [&](const char* name, const char* help, double v) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%g", v);
      out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n" + name + " " + buf + "\n";
    };
    counter("vireo_requests_total", "Generation requests received.", requests.load());
    counter("vireo_requests_completed_total", "Generation requests answered.", completed.load());
    counter("vireo_requests_rejected_total", "Requests refused because the queue was full.", rejected.load());
    counter("vireo_requests_bad_total", "Requests answered with a 4xx error.", bad_requests.load());
    counter("vireo_requests_unauthorized_total", "Requests with a wrong or missing API key.", unauthorized.load());
    counter("vireo_server_errors_total", "Requests answered with a 5xx error.", server_errors.load());
    counter("vireo_client_disconnects_total", "Streams whose client left before the end.", disconnects.load());
    counter("vireo_prompt_tokens_total", "Prompt tokens of finished requests.", prompt_tokens.load());
    counter("vireo_prompt_tokens_computed_total", "Prompt tokens run through the model (the rest came from the prefix cache).", s.prompt_computed);
    counter("vireo_prompt_tokens_cached_total", "Prompt tokens reused from the prefix cache.", s.prompt_from_cache);
    counter("vireo_generated_tokens_total", "Tokens generated.", s.generated);
    counter("vireo_steps_total", "Forward passes run.", s.steps);
    counter("vireo_step_tokens_total", "Tokens in all forward passes.", s.step_tokens);
    counter("vireo_decode_chains_total", "Decode steps run back to back on the device, ids read back once.", s.chains);
    gauge("vireo_busy_seconds_total", "Seconds spent in forward passes and sampling.", s.busy_seconds);
    gauge("vireo_queue_depth", "Requests waiting for a slot.", s.queued);
    gauge("vireo_active_sequences", "Requests running in the batch.", s.active);
    gauge("vireo_open_streams", "Streaming responses in progress.", open_streams);
    ttft.write(out, "vireo_time_to_first_token_seconds", "Time from request arrival to its first token.");
    itl.write(out, "vireo_inter_token_latency_seconds", "Time between consecutive tokens of a request.");
    return out;
  }
};

}  // namespace vireo::server
