// The three merge algorithms: SentencePiece BPE by score, byte-level BPE by merge rank, Gemma 4 BPE by merge rank.
// All work on a doubly linked list of symbols with a binary heap of candidate pairs; stale heap entries are
// recognised and skipped when popped, so each encode is O(n log n) in the piece length.
#include <algorithm>

#include "tokenizer/tokenizer_impl.h"

namespace vireo {
namespace {

// ---- merge-rank BPE (gpt2, gemma4) ----

struct BSym {
  int32_t id;  // StrIndex id of the symbol text; -1 unknown; -2 dead (merged into its left neighbour)
  uint32_t begin, end;
  int32_t prev, next;
};
struct BCand {
  int32_t rank, left, lid, rid;
};
struct BCandLess {  // std heap is a max-heap: "less" means lower priority (higher rank, then further right)
  bool operator()(const BCand& a, const BCand& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

struct BpeScratch {
  std::vector<BSym> syms;
  std::vector<BCand> heap;
  std::vector<Span> words;
  std::string enc;
};
BpeScratch& bpe_scratch() {
  thread_local BpeScratch s;
  return s;
}

inline void bpe_try_add(const PairMap& merges, const std::vector<BSym>& syms, std::vector<BCand>& heap,
                        int32_t l) {
  const BSym& L = syms[size_t(l)];
  if (L.next < 0 || L.id < 0) return;
  const BSym& R = syms[size_t(L.next)];
  if (R.id < 0) return;
  const PairMap::Val* v = merges.find(L.id, R.id);
  if (!v) return;
  heap.push_back({v->rank, l, L.id, R.id});
  std::push_heap(heap.begin(), heap.end(), BCandLess{});
}

void bpe_merge(const PairMap& merges, std::vector<BSym>& syms, std::vector<BCand>& heap) {
  heap.clear();
  for (int32_t i = 0; i + 1 < int32_t(syms.size()); ++i) bpe_try_add(merges, syms, heap, i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), BCandLess{});
    const BCand c = heap.back();
    heap.pop_back();
    BSym& L = syms[size_t(c.left)];
    if (L.id != c.lid || L.next < 0) continue;
    BSym& R = syms[size_t(L.next)];
    if (R.id != c.rid) continue;
    const PairMap::Val* v = merges.find(c.lid, c.rid);
    L.id = v->result;
    L.end = R.end;
    L.next = R.next;
    if (R.next >= 0) syms[size_t(R.next)].prev = c.left;
    R.id = -2;
    if (L.prev >= 0) bpe_try_add(merges, syms, heap, L.prev);
    bpe_try_add(merges, syms, heap, c.left);
  }
}

// ---- SentencePiece BPE by score ----

struct SSym {
  uint32_t begin, len;
  int32_t prev, next;
};
struct SCand {
  float score;
  int32_t left, right;
  uint32_t size;
};
struct SCandLess {  // highest score first, then leftmost
  bool operator()(const SCand& a, const SCand& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581

// Calls f(word) for the words of U+2581-escaped text: a word starts at a U+2581 that follows another character,
// except a character listed in `join` (one that some token contains right before a U+2581).
template <class F>
void for_each_word(std::string_view text, const std::vector<std::string>& join, F&& f) {
  size_t start = 0, prev = 0;
  bool prev_space = false;
  for (size_t i = 0; i < text.size();) {
    size_t len = std::min(utf8_len_lead(static_cast<unsigned char>(text[i])), text.size() - i);
    bool sp = len == 3 && text.compare(i, 3, kSpace) == 0;
    if (sp && i > 0 && !prev_space) {
      std::string_view pc = text.substr(prev, i - prev);
      bool joined = false;
      for (const auto& j : join) joined = joined || pc == j;
      if (!joined) {
        f(text.substr(start, i - start));
        start = i;
      }
    }
    prev_space = sp;
    prev = i;
    i += len;
  }
  if (start < text.size()) f(text.substr(start));
}

// Remembers the ids of each distinct word of one long input, so that repeated words are merged once.
// Open addressing over views into the input (valid for the call).
class WordCache {
 public:
  explicit WordCache(size_t text_size) : on_(text_size >= 1024) {
    if (on_) slots_.assign(1024, Slot{});
  }
  template <class F>
  void emit(std::string_view word, std::vector<int32_t>& out, F&& encode_word) {
    if (!on_ || word.size() > 64) {
      encode_word(word, out);
      return;
    }
    const uint64_t h = tok_hash(word.data(), word.size());
    size_t mask = slots_.size() - 1, i = h & mask;
    for (;; i = (i + 1) & mask) {
      Slot& sl = slots_[i];
      if (!sl.data) break;
      if (sl.hash == h && sl.len == word.size() && std::memcmp(sl.data, word.data(), word.size()) == 0) {
        for (uint32_t k = 0; k < sl.n; ++k) {
          int32_t v = out[sl.first + k];
          out.push_back(v);
        }
        return;
      }
    }
    const size_t b = out.size();
    encode_word(word, out);
    slots_[i] = Slot{word.data(), h, uint32_t(word.size()), uint32_t(b), uint32_t(out.size() - b)};
    if (++used_ * 2 > slots_.size()) grow();
  }

 private:
  struct Slot {
    const char* data = nullptr;
    uint64_t hash = 0;
    uint32_t len = 0, first = 0, n = 0;
  };
  void grow() {
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    const size_t mask = slots_.size() - 1;
    for (const Slot& sl : old) {
      if (!sl.data) continue;
      size_t i = sl.hash & mask;
      while (slots_[i].data) i = (i + 1) & mask;
      slots_[i] = sl;
    }
  }
  bool on_;
  size_t used_ = 0;
  std::vector<Slot> slots_;
};

}  // namespace

void Tokenizer::Impl::encode_spm(const Tokenizer& t, std::string_view text, std::vector<int32_t>& out) const {
  if (!split_words) {
    spm_word(t, text, out);
    return;
  }
  WordCache cache(text.size());
  for_each_word(text, join_before_space, [&](std::string_view w) {
    cache.emit(w, out, [&](std::string_view x, std::vector<int32_t>& o) { spm_word(t, x, o); });
  });
}

void Tokenizer::Impl::spm_word(const Tokenizer& t, std::string_view text, std::vector<int32_t>& out) const {
  thread_local std::vector<SSym> syms;
  thread_local std::vector<SCand> heap;
  syms.clear();
  heap.clear();
  const int32_t nv = t.n_vocab();
  for (size_t i = 0; i < text.size();) {
    size_t len = std::min(utf8_len_lead(static_cast<unsigned char>(text[i])), text.size() - i);
    int32_t k = int32_t(syms.size());
    syms.push_back({uint32_t(i), uint32_t(len), k - 1, -1});
    if (k > 0) syms[size_t(k - 1)].next = k;
    i += len;
  }
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const uint32_t size = syms[size_t(l)].len + syms[size_t(r)].len;
    int32_t id = index.find(text.substr(syms[size_t(l)].begin, size));
    if (id < 0 || id >= nv) return;
    heap.push_back({t.scores_[size_t(id)], l, r, size});
    std::push_heap(heap.begin(), heap.end(), SCandLess{});
  };
  for (int32_t i = 1; i < int32_t(syms.size()); ++i) try_add(i - 1, i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), SCandLess{});
    const SCand c = heap.back();
    heap.pop_back();
    SSym& L = syms[size_t(c.left)];
    SSym& R = syms[size_t(c.right)];
    if (L.len == 0 || R.len == 0 || L.len + R.len != c.size) continue;
    L.len += R.len;
    R.len = 0;
    L.next = R.next;
    if (R.next >= 0) syms[size_t(R.next)].prev = c.left;
    try_add(L.prev, c.left);
    try_add(c.left, L.next);
  }
  for (int32_t i = syms.empty() ? -1 : 0; i >= 0; i = syms[size_t(i)].next) {
    std::string_view piece = text.substr(syms[size_t(i)].begin, syms[size_t(i)].len);
    int32_t id = index.find(piece);
    if (id >= 0 && id < nv)
      out.push_back(id);
    else
      push_byte_fallback(t, piece, out);
  }
}

void Tokenizer::Impl::encode_bpe(const Tokenizer& t, std::string_view text, std::vector<int32_t>& out) const {
  BpeScratch& s = bpe_scratch();
  // Pre-tokenize valid UTF-8 runs; a byte that is not valid UTF-8 becomes a word of its own.
  s.words.clear();
  size_t run = 0;
  auto flush_run = [&](size_t end) {
    if (end <= run) return;
    size_t first = s.words.size();
    pretok->split(text.substr(run, end - run), s.words);
    for (size_t k = first; k < s.words.size(); ++k) {
      s.words[k].begin += run;
      s.words[k].end += run;
    }
  };
  for (size_t i = 0; i < text.size();) {
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t n = utf8_valid_len(text, i);
    if (n) {
      i += n;
      continue;
    }
    flush_run(i);
    s.words.push_back({i, i + 1});
    run = ++i;
  }
  flush_run(text.size());

  WordCache cache(text.size());
  for (const Span& w : s.words) {
    cache.emit(text.substr(w.begin, w.end - w.begin), out,
               [&](std::string_view word, std::vector<int32_t>& o) { bpe_word(t, word, o); });
  }
}

void Tokenizer::Impl::bpe_word(const Tokenizer& t, std::string_view word, std::vector<int32_t>& out) const {
  BpeScratch& s = bpe_scratch();
  const int32_t nv = t.n_vocab();
  if (ignore_merges) {
    s.enc.clear();
    for (unsigned char c : word) s.enc += byte_chr[c];
    int32_t id = index.find(s.enc);
    if (id >= 0 && id < nv) {
      out.push_back(id);
      return;
    }
  }
  s.syms.clear();
  for (size_t k = 0; k < word.size(); ++k) {
    int32_t id = byte_sym[static_cast<unsigned char>(word[k])];
    s.syms.push_back({id, uint32_t(k), uint32_t(k + 1), int32_t(k) - 1, k + 1 < word.size() ? int32_t(k + 1) : -1});
  }
  if (s.syms.size() > 1) bpe_merge(merges, s.syms, s.heap);
  for (int32_t i = 0; i >= 0; i = s.syms[size_t(i)].next) {
    const BSym& sym = s.syms[size_t(i)];
    if (sym.id >= 0 && sym.id < nv) {
      out.push_back(sym.id);
    } else {
      for (uint32_t k = sym.begin; k < sym.end; ++k) {
        int32_t id = byte_sym[static_cast<unsigned char>(word[k])];
        if (id >= 0 && id < nv) out.push_back(id);
      }
    }
  }
}

void Tokenizer::Impl::encode_gemma4(const Tokenizer& t, std::string_view text, std::vector<int32_t>& out) const {
  const int32_t nv = t.n_vocab();
  WordCache cache(text.size());
  for (size_t pos = 0; pos < text.size();) {
    // Pieces: runs of newlines and runs of anything else.
    const bool nl = text[pos] == '\n';
    size_t end = pos;
    while (end < text.size() && (text[end] == '\n') == nl) ++end;
    std::string_view piece = text.substr(pos, end - pos);
    pos = end;
    if (nl) {
      int32_t id = index.find(piece);
      if (id >= 0 && id < nv) {
        out.push_back(id);
        continue;
      }
    }
    auto word = [&](std::string_view w, std::vector<int32_t>& o) { merge_word(t, w, o); };
    if (split_words)
      for_each_word(piece, join_before_space, [&](std::string_view w) { cache.emit(w, out, word); });
    else
      word(piece, out);
  }
}

void Tokenizer::Impl::merge_word(const Tokenizer& t, std::string_view piece, std::vector<int32_t>& out) const {
  BpeScratch& s = bpe_scratch();
  const int32_t nv = t.n_vocab();
  s.syms.clear();
  for (size_t k = 0; k < piece.size();) {
    size_t len = std::min(utf8_len_lead(static_cast<unsigned char>(piece[k])), piece.size() - k);
    int32_t i = int32_t(s.syms.size());
    s.syms.push_back({index.find(piece.substr(k, len)), uint32_t(k), uint32_t(k + len), i - 1, -1});
    if (i > 0) s.syms[size_t(i - 1)].next = i;
    k += len;
  }
  if (s.syms.size() > 1) bpe_merge(merges, s.syms, s.heap);
  for (int32_t i = 0; i >= 0; i = s.syms[size_t(i)].next) {
    const BSym& sym = s.syms[size_t(i)];
    if (sym.id >= 0 && sym.id < nv)
      out.push_back(sym.id);
    else
      push_byte_fallback(t, piece.substr(sym.begin, sym.end - sym.begin), out);
  }
}

}  // namespace vireo
