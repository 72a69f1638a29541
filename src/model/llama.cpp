// The Llama-family forward pass (Llama 2/3/3.x, TinyLlama, Mistral-style; Qwen2 adds q/k/v biases and NeoX RoPE).
//
// One step takes n tokens (of one or several sequences) to the logits of the tokens that asked for them.
// Shapes: d = dim, hd = head_dim, nh/nkv = query/key-value heads, f = ffn_dim, V = n_vocab, r = logit rows.
#include "model/model.h"

#include <cmath>

namespace vireo {

void Model::build_step(int32_t n, int32_t r) {
  Backend& be = *backend_;
  const ModelConfig& c = cfg_;
  Act x = b_.x.with_rows(n);      // [n, d]      the residual stream
  Act xb = b_.xb.with_rows(n);    // [n, d]      normalized input of a block
  Act q = b_.q.with_rows(n);      // [n, nh*hd]
  Act k = b_.k.with_rows(n);      // [n, nkv*hd]
  Act v = b_.v.with_rows(n);      // [n, nkv*hd]
  Act att = b_.att.with_rows(n);  // [n, nh*hd]  attention output, heads concatenated
  Act hb = b_.hb.with_rows(n);    // [n, f]
  Act hb2 = b_.hb2.with_rows(n);  // [n, f]
  Act out = b_.ffn_out.with_rows(n);  // [n, d]  output of the last block, not yet added to x

  RopeParams rope_q{c.n_heads, c.head_dim, c.rope_dim, c.rope_base, c.rope_mode, w_.rope_freqs};
  RopeParams rope_k = rope_q;
  rope_k.n_heads = c.n_kv_heads;

  be.embed(w_.tok_embd, x);  // x = token_embd[tokens]
  for (int32_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w_.layers[l];

    // ---- attention: x += Wo · attention(rope(Wq·norm(x)), rope(Wk·norm(x)), Wv·norm(x)) ----
    if (l == 0)
      be.rmsnorm(x, L.attn_norm, c.norm_eps, xb);
    else
      be.add_rmsnorm(x, out, L.attn_norm, c.norm_eps, xb);  // x += previous FFN output, xb = norm(x)
    const Backend::MatmulTarget qkv[] = {{L.wq, q}, {L.wk, k}, {L.wv, v}};
    be.matmuls(xb, qkv);  // q = xb · Wqᵀ, k = xb · Wkᵀ, v = xb · Wvᵀ
    if (c.qkv_bias) {
      be.add_bias(q, L.bq);
      be.add_bias(k, L.bk);
      be.add_bias(v, L.bv);
    }
    be.rope(q, rope_q);
    be.rope(k, rope_k);
    be.kv_store(l, k, v);  // the cache now holds this step's keys/values at their positions
    be.attention(q, att, {l, c.n_heads, c.n_kv_heads, c.head_dim, 1.0f / std::sqrt(float(c.head_dim))});
    be.matmul(L.wo, att, out);  // out = att · Woᵀ   [n, d]

    // ---- feed-forward (SwiGLU): x += W_down · (silu(W_gate·norm(x)) * (W_up·norm(x))) ----
    be.add_rmsnorm(x, out, L.ffn_norm, c.norm_eps, xb);  // x += attention output, xb = norm(x)
    const Backend::MatmulTarget gate_up[] = {{L.w_gate, hb}, {L.w_up, hb2}};
    be.matmuls(xb, gate_up);       // hb = xb · W_gateᵀ, hb2 = xb · W_upᵀ  [n, f]
    be.swiglu(hb, hb2, hb);        // hb  = silu(hb) * hb2
    be.matmul(L.w_down, hb, out);  // out = hb · W_downᵀ  [n, d]
  }

  // ---- logits for the r rows that want them ----
  be.add_rmsnorm(x, out, w_.output_norm, c.norm_eps, xb);  // final residual add, xb = norm(x)  [n, d]
  Act sel = b_.logits_in.with_rows(r);                      // [r, d]
  be.gather_logit_rows(xb, sel);
  be.matmul(w_.output, sel, b_.logits.with_rows(r));        // [r, V]
}

}  // namespace vireo
