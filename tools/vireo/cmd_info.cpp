// vireo info: what a GGUF file holds and the memory it needs at a given context.
#include <cinttypes>
#include <map>

#include "common.h"
#include "gguf/gguf.h"
#include "model/model.h"

namespace vireo::cli {

void add_info_command(CLI::App& app) {
  struct Args {
    std::string file;
    int ctx = 0;
    int batch = 512;
    bool kv_f32 = false;
    bool all_metadata = false;
    bool no_tensors = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("info", "show architecture, hyper-parameters, tensors and memory needs");
  cmd->add_option("file", args->file, "GGUF file")->required()->check(CLI::ExistingFile);
  cmd->add_option("-c,--ctx", args->ctx, "context length for the memory estimate (0: the model's, capped at 4096)");
  cmd->add_option("-b,--batch", args->batch, "prefill batch for the memory estimate");
  cmd->add_flag("--kv-f32", args->kv_f32, "estimate with an f32 KV cache");
  cmd->add_flag("--metadata", args->all_metadata, "print every metadata key");
  cmd->add_flag("--no-tensors", args->no_tensors, "omit the tensor table");
  cmd->callback([args] {
    GgufFile f = GgufFile::open(args->file);
    std::printf("file:        %s\n", args->file.c_str());
    std::printf("gguf:        v%u, %zu tensors, %zu metadata keys, alignment %" PRIu64 ", %s\n", f.version(),
                f.tensors().size(), f.metadata().size(), f.alignment(), human_bytes(double(f.file_size())).c_str());
    if (args->all_metadata)
      for (const auto& [k, v] : f.metadata()) std::printf("  %-44s %s\n", k.c_str(), gguf_value_to_string(v).c_str());

    int64_t weights = 0;
    std::map<std::string, std::pair<int, int64_t>> by_type;
    for (const auto& t : f.tensors()) {
      weights += t.n_bytes();
      auto& e = by_type[std::string(dtype_name(t.type))];
      e.first++;
      e.second += t.n_bytes();
    }
    ModelConfig c;
    try {
      c = ModelConfig::from_gguf(f);
    } catch (const std::exception& e) {
      std::printf("model:       not runnable (%s)\n", e.what());
      return;
    }
    std::printf("arch:        %s%s%s\n", c.arch.c_str(), c.name.empty() ? "" : "  name: ", c.name.c_str());
    std::printf("dims:        vocab %d, dim %d, layers %d, heads %d (kv %d, head dim %d), ffn %d\n", c.n_vocab, c.dim,
                c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim);
    std::printf("rope:        base %g, dim %d, %s%s; rms eps %g; train ctx %d; output %s\n", c.rope_base, c.rope_dim,
                c.rope_mode == RopeMode::Neox ? "neox" : "normal",
                f.find_tensor("rope_freqs.weight") ? ", frequency factors" : "", c.norm_eps, c.ctx_train,
                c.tied_output ? "tied to token_embd" : "separate");
    int64_t params = 0;
    for (const auto& t : f.tensors()) params += t.n_elements();
    std::printf("params:      %.3f B; weights %s (", params / 1e9, human_bytes(double(weights)).c_str());
    bool first = true;
    for (const auto& [name, e] : by_type) {
      std::printf("%s%d %s", first ? "" : ", ", e.first, name.c_str());
      first = false;
    }
    std::printf(")\n");

    const int64_t ctx = args->ctx > 0 ? args->ctx : std::min(c.ctx_train > 0 ? c.ctx_train : 2048, 4096);
    const int64_t kvd = int64_t(c.n_kv_heads) * c.head_dim, qd = int64_t(c.n_heads) * c.head_dim;
    const int64_t kv = 2 * int64_t(c.n_layers) * ctx * kvd * (args->kv_f32 ? 4 : 2);
    const int64_t m = std::min<int64_t>(args->batch, ctx);
    const int64_t acts = 4 * m * (4 * int64_t(c.dim) + 2 * qd + 2 * kvd + 2 * int64_t(c.ffn_dim) + c.n_vocab);
    std::printf("memory:      at ctx %" PRId64 ": weights %s + KV cache %s (%s) + activations %s = %s\n", ctx,
                human_bytes(double(weights)).c_str(), human_bytes(double(kv)).c_str(), args->kv_f32 ? "f32" : "f16",
                human_bytes(double(acts)).c_str(), human_bytes(double(weights + kv + acts)).c_str());

    if (args->no_tensors) return;
    std::printf("\n%-36s %-6s %-22s %12s\n", "tensor", "type", "shape", "bytes");
    for (const auto& t : f.tensors()) {
      std::string shape;
      for (auto d : t.shape) shape += (shape.empty() ? "" : " x ") + std::to_string(d);
      std::printf("%-36s %-6s %-22s %12" PRId64 "\n", t.name.c_str(), std::string(dtype_name(t.type)).c_str(),
                  shape.c_str(), t.n_bytes());
    }
  });
}

}  // namespace vireo::cli
