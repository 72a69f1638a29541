#include <stdexcept>

#include "model/model.h"

namespace vireo {

ModelConfig ModelConfig::from_gguf(const GgufFile& f) {
  ModelConfig c;
  const GgufValue* arch = f.find("general.architecture");
  if (!arch) throw std::runtime_error("not a model file: no general.architecture (vocab-only GGUF?)");
  c.arch = arch->as_string();
  if (c.arch != "llama" && c.arch != "qwen2")
    throw std::runtime_error("unsupported architecture '" + c.arch + "' (supported: llama, qwen2)");
  c.name = f.get_string("general.name", "");
  const std::string a = c.arch + ".";
  auto need = [&](const std::string& key) -> int64_t {
    const GgufValue* v = f.find(a + key);
    if (!v) throw std::runtime_error("missing metadata key '" + a + key + "'");
    return v->as_int();
  };
  c.dim = static_cast<int32_t>(need("embedding_length"));
  c.n_layers = static_cast<int32_t>(need("block_count"));
  c.n_heads = static_cast<int32_t>(need("attention.head_count"));
  c.n_kv_heads = static_cast<int32_t>(f.get_int(a + "attention.head_count_kv", c.n_heads));
  c.ffn_dim = static_cast<int32_t>(need("feed_forward_length"));
  c.ctx_train = static_cast<int32_t>(f.get_int(a + "context_length", 2048));
  c.norm_eps = static_cast<float>(f.get_float(a + "attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_base = static_cast<float>(f.get_float(a + "rope.freq_base", 10000.0));
  if (c.dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.ffn_dim <= 0 || c.dim > (1 << 20) ||
      c.n_layers > 4096 || c.n_heads > 4096 || c.ffn_dim > (1 << 22))
    throw std::runtime_error("absurd hyper-parameters in " + c.arch + " metadata");
  if (c.dim % c.n_heads != 0) throw std::runtime_error("embedding_length is not a multiple of head_count");
  if (c.n_heads % c.n_kv_heads != 0) throw std::runtime_error("head_count is not a multiple of head_count_kv");
  c.head_dim = static_cast<int32_t>(f.get_int(a + "attention.key_length", c.dim / c.n_heads));
  c.rope_dim = static_cast<int32_t>(f.get_int(a + "rope.dimension_count", c.head_dim));
  if (c.rope_dim <= 0 || c.rope_dim > c.head_dim || c.rope_dim % 2 != 0)
    throw std::runtime_error("bad rope.dimension_count");
  c.rope_mode = c.arch == "qwen2" ? RopeMode::Neox : RopeMode::Normal;
  c.qkv_bias = c.arch == "qwen2";

  const GgufTensorInfo* emb = f.find_tensor("token_embd.weight");
  if (!emb || emb->shape.size() != 2) throw std::runtime_error("missing or malformed tensor 'token_embd.weight'");
  if (emb->shape[0] != c.dim) throw std::runtime_error("token_embd.weight rows do not match embedding_length");
  c.n_vocab = static_cast<int32_t>(emb->shape[1]);
  c.tied_output = f.find_tensor("output.weight") == nullptr;
  return c;
}

}  // namespace vireo
