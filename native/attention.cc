// Attention of each sequence over its own token rows on the CPU in fp32: one autograd node in training, one
// parallel region of (sequence, head) pairs in evaluation (EvaluationAttention).
//
// Written with libtorch's operators, each sequence of each layer is a dozen operators forward and more backward
// (views, the scaled product, softmax, dropout, the context product, the copies between the rows' and the heads'
// layouts) with an autograd node each: for MiniLM on MRPC's batches, ~20 ms of a ~150 ms training step, a third of
// it products. Here one node computes every (sequence, head) pair's products straight from and into the token
// rows' [tokens, 3 * hidden] layout with MKL's batched products, softmax with libtorch's kernel, and dropout's mask
// drawn as Dropout draws it: one seed per sequence from the same generator, element (head, query, key) of the
// sequence's [heads, queries, keys] probabilities, so the result and the generator's stream are those of the
// per-sequence operators. On AVX2-only CPUs (AttentionKernels) training's pairs run panel_gemm.cc's register tiles
// instead of MKL, one task per pair start to end (AttentionPairTrain, AttentionPairBackward).
#include "modeling_bert.h"
#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/custom_function.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>
#include <cstdlib>
#include <vector>

// MKL's batched products, which libtorch_cpu exports where it is built with MKL (x86-64 wheels): one call runs
// every (sequence, head) pair's product, MKL spreading them over its threads. Weak: where a libtorch has no MKL this
// is null and attention takes the per-sequence operators.
extern "C" void cblas_sgemm_batch(int layout, const int* transa, const int* transb, const int* m, const int* n, const int* k,
                                  const float* alpha, const float** a, const int* lda, const float** b, const int* ldb,
                                  const float* beta, float** c, const int* ldc, int group_count, const int* group_size)
    __attribute__((weak));

namespace bert {

// Softmax's backward through dropout (modeling_bert.h), the row's sum in 16 partial sums.
BERT_VECTOR_CLONES void SoftmaxDropoutBackward(float* r, const float* pd, const float* pr, int64_t rows, int64_t n) {
  constexpr int64_t kLanes = 16;  // partial sums the compiler keeps in vector registers
  for (int64_t i = 0; i < rows; ++i, pd += n, pr += n, r += n) {
    float part[kLanes] = {};
    int64_t j = 0;
    for (; j + kLanes <= n; j += kLanes)
      for (int64_t l = 0; l < kLanes; ++l) part[l] += pd[j + l] * r[j + l];
    float sum = 0;
    for (; j < n; ++j) sum += pd[j] * r[j];
    for (int64_t l = 0; l < kLanes; ++l) sum += part[l];
    for (j = 0; j < n; ++j) r[j] = pd[j] * r[j] - pr[j] * sum;
  }
}

namespace {

// Row-major products C = alpha op(A) op(B), in groups of equal shapes (a sequence's heads), for one
// cblas_sgemm_batch call.
class GemmBatch {
 public:
  // `count` products of one shape; a(i), b(i), c(i): the operands of the i-th.
  template <class A, class B, class C>
  void add(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, int64_t lda, int64_t ldb, int64_t ldc, int64_t count,
           const A& a, const B& b, const C& c) {
    ta_.push_back(ta ? kTrans : kNoTrans);
    tb_.push_back(tb ? kTrans : kNoTrans);
    for (auto [v, x] : {std::pair{&m_, m}, {&n_, n}, {&k_, k}, {&lda_, lda}, {&ldb_, ldb}, {&ldc_, ldc}, {&size_, count}})
      v->push_back(static_cast<int>(x));
    alpha_.push_back(alpha);
    beta_.push_back(0.0f);
    for (int64_t i = 0; i < count; ++i) {
      a_.push_back(a(i));
      b_.push_back(b(i));
      c_.push_back(c(i));
    }
  }
  void run() {
    cblas_sgemm_batch(kRowMajor, ta_.data(), tb_.data(), m_.data(), n_.data(), k_.data(), alpha_.data(), a_.data(), lda_.data(),
                      b_.data(), ldb_.data(), beta_.data(), c_.data(), ldc_.data(), static_cast<int>(size_.size()), size_.data());
  }

 private:
  static constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;  // CBLAS_LAYOUT, CBLAS_TRANSPOSE
  std::vector<int> ta_, tb_, m_, n_, k_, lda_, ldb_, ldc_, size_;
  std::vector<float> alpha_, beta_;
  std::vector<const float*> a_, b_;
  std::vector<float*> c_;
};

// Where sequence b's rows are: its queries (rows q_off.. of the queries, q_len of them), its keys and values (rows
// k_off.. of the key/value rows) and its probabilities in the flat buffer of all of them (p_off).
struct Layout {
  int64_t batch, heads;
  std::vector<int64_t> q_off, q_len, k_off, k_len, p_off;
  int64_t probs = 0, key_rows = 0;
  Layout(const std::vector<int64_t>& lengths, int64_t batch, int64_t heads, bool first_tokens) : batch(batch), heads(heads) {
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t L = lengths[static_cast<size_t>(b)];
      k_off.push_back(key_rows);
      k_len.push_back(L);
      q_off.push_back(first_tokens ? b : key_rows);
      q_len.push_back(first_tokens ? 1 : L);
      p_off.push_back(probs);
      probs += heads * q_len.back() * L;
      key_rows += L;
    }
  }
};

// fn(t, scratch) for every (sequence, head) pair t of `lay`, the costliest first, each thread taking the next from a
// shared counter: with a fixed half each, the thread with the longer sequences kept the other waiting.
template <class F>
void ForEachPair(const Layout& lay, const F& fn) {
  const int64_t n = lay.batch * lay.heads;
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  const auto cost = [&](int64_t t) { return lay.q_len[t / lay.heads] * lay.k_len[t / lay.heads]; };
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return cost(a) > cost(b); });
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(at::get_num_threads(), n), 1, [&](int64_t, int64_t) {
    std::vector<float> scratch;
    for (int64_t i; (i = next.fetch_add(1)) < n;) fn(order[static_cast<size_t>(i)], scratch);
  });
}

// Where the operands are: queries, keys and values as column blocks of row-major matrices.
struct Operands {
  const float *q, *k, *v;
  int64_t ldq, ldkv;
};

Operands OperandsOf(const at::Tensor& qkv, const at::Tensor& first_q, int64_t hidden) {
  const float* base = qkv.const_data_ptr<float>();
  if (first_q.numel() > 0) return {first_q.const_data_ptr<float>(), base, base + hidden, hidden, 2 * hidden};
  return {base, base + hidden, base + 2 * hidden, 3 * hidden, 3 * hidden};
}

BERT_VECTOR_CLONES void DropRange(float* o, const float* in, int64_t n, uint64_t seed, uint64_t keep_from, float scale) {
  for (int64_t i = 0; i < n; ++i) o[i] = in[i] * (DropoutKeeps(seed, i, keep_from) ? scale : 0.0f);
}

// P' = P * keep / (1 - p) for every pair at once: `probs` and `out` in Layout's flat order; element e of sequence b
// is its element e - p_off[b] of [heads, queries, keys], the index Dropout's mask uses.
void DropInto(float* out, const std::vector<at::Tensor>& probs, const Layout& lay, const std::vector<int64_t>& seeds, double p) {
  const uint64_t keep_from = DropoutKeepFrom(p);
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  at::parallel_for(0, lay.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const float* in = probs[static_cast<size_t>(b)].const_data_ptr<float>();
      float* o = out + lay.p_off[b];
      const uint64_t seed = static_cast<uint64_t>(seeds[static_cast<size_t>(b)]);
      const int64_t n = lay.heads * lay.q_len[b] * lay.k_len[b];
      DropRange(o, in, n, seed, keep_from, scale);
    }
  });
}

// Evaluation's attention (no gradient, no dropout): each thread takes whole (sequence, head) pairs and runs their
// scores, softmax and context back to back, MKL's products serial inside the one parallel region, instead of three
// regions (the two batched products and softmax's) whose fixed costs weigh at batch 1. Batch-1 forwards on an
// AVX2-only EPYC's 2 cores, alternating runs: MiniLM 54.4 -> 55.5 sequences/s, bert-base 7.96 -> 7.99-8.16.
// On AVX2-only CPUs each pair runs AttentionPair instead (panel_gemm.cc: k transposed once, then 6 x 16 register
// tiles for both products, softmax between, no MKL call): MKL's products took ~3 ms of a ~100 ms bert-base forward
// there (~29 GFLOP/s: its fixed costs at 50 x 50 x 64). Alternating processes, 4-5 pairs of 80 sequences: MiniLM
// +2.8%, bert-base +1.1%. (An earlier register-tiled loop, over k's rows in place, was slower than MKL.)
at::Tensor EvaluationAttention(const at::Tensor& qkv_in, const at::Tensor& first_q_in, const std::vector<int64_t>& lengths, int64_t batch,
                               int64_t heads) {
  RECORD_FUNCTION("bert::evaluation_attention", std::vector<c10::IValue>());
  const bool first = first_q_in.numel() > 0;
  const at::Tensor qkv = qkv_in.contiguous(), first_q = first_q_in.contiguous();
  const int64_t hidden = qkv.size(1) / (first ? 2 : 3), d = hidden / heads;
  const Layout lay(lengths, batch, heads, first);
  const Operands o = OperandsOf(qkv, first_q, hidden);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  const int64_t rows = first ? batch : qkv.size(0);
  at::Tensor out = at::empty({rows, hidden}, qkv.options());
  if (!first && rows > lay.key_rows) out.narrow(0, lay.key_rows, rows - lay.key_rows).zero_();
  float* y = out.data_ptr<float>();
  if (AttentionKernels()) {
    at::parallel_for(0, batch * heads, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> scratch;
      for (int64_t t = begin; t < end; ++t) {
        const int64_t b = t / heads, h = t % heads;
        AttentionPair(o.q + lay.q_off[b] * o.ldq + h * d, o.ldq, o.k + lay.k_off[b] * o.ldkv + h * d, o.v + lay.k_off[b] * o.ldkv + h * d, o.ldkv,
                      lay.q_len[b], lay.k_len[b], d, scale, y + lay.q_off[b] * hidden + h * d, hidden, scratch);
      }
    });
    return out;
  }
  at::Tensor scores = at::empty({lay.probs}, qkv.options());
  float* s = scores.data_ptr<float>();
  at::parallel_for(0, batch * heads, 1, [&](int64_t begin, int64_t end) {
    GemmBatch qk, pv;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / heads, h = t % heads, Lq = lay.q_len[b], Lk = lay.k_len[b];
      float* P = s + lay.p_off[b] + h * Lq * Lk;
      qk.add(false, true, Lq, Lk, d, scale, o.ldq, o.ldkv, Lk, 1, [&](int64_t) { return o.q + lay.q_off[b] * o.ldq + h * d; },
             [&](int64_t) { return o.k + lay.k_off[b] * o.ldkv + h * d; }, [&](int64_t) { return P; });
      pv.add(false, false, Lq, d, Lk, 1.0f, Lk, o.ldkv, hidden, 1, [&](int64_t) { return P; },
             [&](int64_t) { return o.v + lay.k_off[b] * o.ldkv + h * d; }, [&](int64_t) { return y + lay.q_off[b] * hidden + h * d; });
    }
    qk.run();
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / heads, h = t % heads, Lq = lay.q_len[b], Lk = lay.k_len[b];
      SoftmaxRows(s + lay.p_off[b] + h * Lq * Lk, Lq, Lk);
    }
    pv.run();
  });
  return out;
}

struct SequenceAttentionFunction : public torch::autograd::Function<SequenceAttentionFunction> {
  // qkv: [tokens, 3 * hidden] (query | key | value), or with first_q ([batch, hidden], each sequence's one query)
  // [tokens, 2 * hidden] (key | value); without, first_q is empty. Returns the context: [tokens, hidden] (rows past
  // the sequences' zero), or [batch, hidden] with first_q.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& qkv_in, const at::Tensor& first_q_in,
                            std::vector<int64_t> lengths, int64_t batch, int64_t heads, double p) {
    RECORD_FUNCTION("bert::sequence_attention", std::vector<c10::IValue>());  // profiles show the forward's own loops
    const bool first = first_q_in.numel() > 0;
    const at::Tensor qkv = qkv_in.contiguous(), first_q = first_q_in.contiguous();
    const int64_t hidden = qkv.size(1) / (first ? 2 : 3), d = hidden / heads;
    const Layout lay(lengths, batch, heads, first);
    const Operands o = OperandsOf(qkv, first_q, hidden);
    std::vector<int64_t> seeds;
    if (p > 0)
      for (int64_t b = 0; b < batch; ++b) seeds.push_back(static_cast<int64_t>(DropoutSeed()));
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
    const int64_t rows = first ? batch : qkv.size(0);
    ctx->saved_data["lengths"] = lengths;
    ctx->saved_data["seeds"] = seeds;
    ctx->saved_data["batch"] = batch;
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["p"] = p;
    if (AttentionKernels()) {
      // AVX2-only CPUs: each (sequence, head) pair start to end in one task (panel_gemm.cc's register tiles), P and
      // dropout's mask (a byte an element: no second pass drawing it) kept for the backward. MKL's batched products ran
      // at ~45 GFLOP/s on these shapes, with passes zeroing each output and packing each operand: ~6% of a MiniLM
      // step's samples, ~4% this way. Zen 3 EPYC, MiniLM, MRPC-like batches of 8, 2 threads, alternating processes (24 chunks of 3 steps):
      // steps 0.966x and 0.974x the time; bert-base's 0.994x (10 chunks of 2).
      at::Tensor probs = at::empty({lay.probs}, qkv.options()), mask = at::empty({p > 0 ? lay.probs : 0}, qkv.options().dtype(at::kByte));
      at::Tensor out = at::empty({rows, hidden}, qkv.options());
      if (!first && rows > lay.key_rows) out.narrow(0, lay.key_rows, rows - lay.key_rows).zero_();
      float *pp = probs.data_ptr<float>(), *y = out.data_ptr<float>();
      uint8_t* mp = p > 0 ? mask.data_ptr<uint8_t>() : nullptr;
      ForEachPair(lay, [&](int64_t t, std::vector<float>& scratch) {
        const int64_t b = t / heads, h = t % heads, Lq = lay.q_len[b], Lk = lay.k_len[b], at_pair = lay.p_off[b] + h * Lq * Lk;
        AttentionPairTrain(o.q + lay.q_off[b] * o.ldq + h * d, o.ldq, o.k + lay.k_off[b] * o.ldkv + h * d, o.v + lay.k_off[b] * o.ldkv + h * d, o.ldkv,
                           Lq, Lk, d, scale, pp + at_pair, mp ? mp + at_pair : nullptr, p > 0 ? static_cast<uint64_t>(seeds[static_cast<size_t>(b)]) : 0,
                           h * Lq * Lk, p, y + lay.q_off[b] * hidden + h * d, hidden, scratch);
      });
      ctx->save_for_backward({qkv, first_q, probs, mask});
      ctx->saved_data["kernels"] = true;
      return out;
    }
    // Scores S = Q K^T / sqrt(d) of every pair, in Layout's flat order.
    at::Tensor scores = at::empty({lay.probs}, qkv.options());
    float* s = scores.data_ptr<float>();
    GemmBatch qk;
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t Lq = lay.q_len[b], Lk = lay.k_len[b];
      qk.add(false, true, Lq, Lk, d, scale, o.ldq, o.ldkv, Lk, heads, [&](int64_t h) { return o.q + lay.q_off[b] * o.ldq + h * d; },
             [&](int64_t h) { return o.k + lay.k_off[b] * o.ldkv + h * d; }, [&](int64_t h) { return s + lay.p_off[b] + h * Lq * Lk; });
    }
    qk.run();
    std::vector<at::Tensor> probs;  // per sequence: libtorch's softmax over its [heads * queries, keys] scores
    for (int64_t b = 0; b < batch; ++b)
      probs.push_back(at::_softmax(scores.narrow(0, lay.p_off[b], heads * lay.q_len[b] * lay.k_len[b]).view({-1, lay.k_len[b]}), 1, false));
    if (p > 0) DropInto(s, probs, lay, seeds, p);  // the scores' buffer takes the probabilities after dropout
    // The context O = P' V, into each sequence's rows at each head's columns.
    at::Tensor out = at::empty({rows, hidden}, qkv.options());
    if (!first && rows > lay.key_rows) out.narrow(0, lay.key_rows, rows - lay.key_rows).zero_();
    float* y = out.data_ptr<float>();
    GemmBatch pv;
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t Lq = lay.q_len[b], Lk = lay.k_len[b];
      const float* P = p > 0 ? s + lay.p_off[b] : probs[static_cast<size_t>(b)].const_data_ptr<float>();
      pv.add(false, false, Lq, d, Lk, 1.0f, Lk, o.ldkv, hidden, heads, [&](int64_t h) { return P + h * Lq * Lk; },
             [&](int64_t h) { return o.v + lay.k_off[b] * o.ldkv + h * d; }, [&](int64_t h) { return y + lay.q_off[b] * hidden + h * d; });
    }
    pv.run();
    std::vector<at::Tensor> saved{qkv, first_q};
    saved.insert(saved.end(), probs.begin(), probs.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["kernels"] = false;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    const at::Tensor &qkv = saved[0], &first_q = saved[1];
    const std::vector<at::Tensor> probs(saved.begin() + 2, saved.end());
    const bool first = first_q.numel() > 0;
    const std::vector<int64_t> lengths = ctx->saved_data["lengths"].toIntVector(), seeds = ctx->saved_data["seeds"].toIntVector();
    const int64_t batch = ctx->saved_data["batch"].toInt(), heads = ctx->saved_data["heads"].toInt();
    const double p = ctx->saved_data["p"].toDouble();
    const int64_t hidden = qkv.size(1) / (first ? 2 : 3), d = hidden / heads;
    const Layout lay(lengths, batch, heads, first);
    const Operands o = OperandsOf(qkv, first_q, hidden);
    const at::Tensor dy = grads[0].contiguous();
    at::Tensor dqkv = at::empty_like(qkv), dfirst_q = first ? at::empty_like(first_q) : at::Tensor();
    if (qkv.size(0) > lay.key_rows) dqkv.narrow(0, lay.key_rows, qkv.size(0) - lay.key_rows).zero_();
    // Gradients land where their operands are: the columns of the query, key and value blocks.
    float* dk = dqkv.data_ptr<float>() + (first ? 0 : hidden);
    float* dv = dk + hidden;
    float* dq = first ? dfirst_q.data_ptr<float>() : dqkv.data_ptr<float>();
    const float* g = dy.const_data_ptr<float>();
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
    if (ctx->saved_data["kernels"].toBool()) {
      const float* pp = saved[2].const_data_ptr<float>();
      const uint8_t* mp = p > 0 ? saved[3].const_data_ptr<uint8_t>() : nullptr;
      ForEachPair(lay, [&](int64_t t, std::vector<float>& scratch) {
        const int64_t b = t / heads, h = t % heads, Lq = lay.q_len[b], Lk = lay.k_len[b], at_pair = lay.p_off[b] + h * Lq * Lk;
        const int64_t kv = lay.k_off[b] * o.ldkv + h * d, q = lay.q_off[b] * o.ldq + h * d;
        AttentionPairBackward(o.q + q, o.ldq, o.k + kv, o.v + kv, o.ldkv, Lq, Lk, d, scale, pp + at_pair, mp ? mp + at_pair : nullptr, p,
                              g + lay.q_off[b] * hidden + h * d, hidden, dq + q, dk + kv, dv + kv, scratch);
      });
      return {dqkv, dfirst_q, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    }
    // The probabilities after dropout P', as the forward multiplied them into the values; and dP' = dO V^T.
    at::Tensor dropped = p > 0 ? at::empty({lay.probs}, qkv.options()) : at::Tensor(), ds = at::empty({lay.probs}, qkv.options());
    if (p > 0) DropInto(dropped.data_ptr<float>(), probs, lay, seeds, p);
    const auto P = [&](int64_t b) { return p > 0 ? dropped.const_data_ptr<float>() + lay.p_off[b] : probs[static_cast<size_t>(b)].const_data_ptr<float>(); };
    float* dS = ds.data_ptr<float>();
    GemmBatch first_products;
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t Lq = lay.q_len[b], Lk = lay.k_len[b];
      const float* dO = g + lay.q_off[b] * hidden;
      const float* V = o.v + lay.k_off[b] * o.ldkv;
      const float* Pb = P(b);
      first_products.add(true, false, Lk, d, Lq, 1.0f, Lk, hidden, o.ldkv, heads, [&](int64_t h) { return Pb + h * Lq * Lk; },  // dV = P'^T dO
                         [&](int64_t h) { return dO + h * d; }, [&](int64_t h) { return dv + lay.k_off[b] * o.ldkv + h * d; });
      first_products.add(false, true, Lq, Lk, d, 1.0f, hidden, o.ldkv, Lk, heads, [&](int64_t h) { return dO + h * d; },  // dP' = dO V^T
                         [&](int64_t h) { return V + h * d; }, [&](int64_t h) { return dS + lay.p_off[b] + h * Lq * Lk; });
    }
    first_products.run();
    // Softmax's backward through dropout.
    at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t Lk = lay.k_len[b], n = heads * lay.q_len[b];
        const float *pd = P(b), *pr = probs[static_cast<size_t>(b)].const_data_ptr<float>();
        SoftmaxDropoutBackward(dS + lay.p_off[b], pd, pr, n, Lk);
      }
    });
    GemmBatch last_products;
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t Lq = lay.q_len[b], Lk = lay.k_len[b];
      const int64_t kv = lay.k_off[b] * o.ldkv, q = lay.q_off[b] * o.ldq;
      const float* dSb = dS + lay.p_off[b];
      last_products.add(false, false, Lq, d, Lk, scale, Lk, o.ldkv, o.ldq, heads, [&](int64_t h) { return dSb + h * Lq * Lk; },  // dQ = dS K / sqrt(d)
                        [&](int64_t h) { return o.k + kv + h * d; }, [&](int64_t h) { return dq + q + h * d; });
      last_products.add(true, false, Lk, d, Lq, scale, Lk, o.ldq, o.ldkv, heads, [&](int64_t h) { return dSb + h * Lq * Lk; },  // dK = dS^T Q / sqrt(d)
                        [&](int64_t h) { return o.q + q + h * d; }, [&](int64_t h) { return dk + kv + h * d; });
    }
    last_products.run();
    return {dqkv, dfirst_q, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

// Read on every call: test/model.test.ts sets and clears it within one process.
bool UnfusedAttention() { return std::getenv("BERT_TRAINER_UNFUSED_ATTENTION") != nullptr; }

bool SequenceAttentionAvailable() { return cblas_sgemm_batch != nullptr && !UnfusedAttention(); }

at::Tensor SequenceAttention(const at::Tensor& qkv, const at::Tensor& first_q, const std::vector<int64_t>& lengths, int64_t batch,
                             int64_t heads, double attention_dropout) {
  if (attention_dropout == 0 && !at::GradMode::is_enabled())
    return EvaluationAttention(qkv, first_q.defined() ? first_q : at::empty({0}, qkv.options()), lengths, batch, heads);
  // An autograd Function's inputs are defined tensors: no first queries are an empty one.
  return SequenceAttentionFunction::apply(qkv, first_q.defined() ? first_q : at::empty({0}, qkv.options()), lengths, batch, heads, attention_dropout);
}

}  // namespace bert
