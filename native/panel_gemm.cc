// Inference's fp32 products on the CPU: act(x W^T + b) or x W^T + b + residual over a weight packed once into
// panels of 64 output columns, [ceil(N / 64), K, 64], by register-tiled kernels for AVX-512 and AVX2+FMA.
// For AVX2 a panel is four 16-column groups, [4, K, 16], each group's rows contiguous: its kernel covers one group
// at a time, and one group's slice (512 x 16 floats, 32 KB) streams into L1 in order and stays there while every
// row block passes over it. With the AVX-512 layout (a group's 64 bytes every 256) and the row blocks outermost, the
// AVX2 kernel ran at 25 GFLOP/s on one core of an AVX2-only AMD EPYC (Zen 1; its FMA loop peaks at 39) at
// bert-base's 52 rows, and from L1 at 38.7; this order gives 32-34 (2 threads: 50-55 -> 63-67).
//
// Why not oneDNN's prepacked product (mkldnn::_linear_pointwise), which evaluation used before: libtorch builds its
// primitive descriptor, looks it up in oneDNN's cache and wraps the tensors on every call, ~17 us each, 27 calls in
// a MiniLM forward; and at a batch-1 forward's row counts (one sequence: 1 to ~128 rows) its kernels ran at 164-185
// GFLOP/s in place on an AVX-512 EPYC whose 2 cores' FMA peak is ~230. Measured in one process against it (2
// threads, the four products of a layer): MiniLM's at 52 rows 0.86-0.92x the time, at 1 row 0.38-0.60x, at 416 rows
// even, at 1,664 rows 3-6% slower; bert-base's at 52 rows 0.92-0.95x. A whole forward, both ways: node
// scripts/bench/batch1-breakdown.mjs.
//
// Each thread takes whole (panel, rows) tiles: the 64 columns of a panel for a run of rows, K in slices of 512 so a
// slice of the panel (128 KB) stays in L2 while every 6-row block of the run passes over it. Sums run over k in
// order with fused multiply-adds: the same sums as the reference product to float32 rounding (parity tests: 1e-5),
// and the same whichever thread computes a tile. A thread done with its own run of tiles takes the last ones of
// another's (PanelLinear): with a fixed half each, the products of bert-base's batch-1 forward took 148-158 ms on
// the AVX2-only EPYC's 2 cores, 289-301 ms with one core shared with a busy loop; taking tiles, 133-146 and 226-240
// (same process build, alternating runs).
#include "modeling_bert.h"
#include <ATen/Parallel.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>
#if defined(__x86_64__) && defined(__GNUC__)
#define BERT_PANELS_X86 1  // the kernels are x86-64's; elsewhere oneDNN's products run
#include <immintrin.h>
#endif

#ifdef BERT_PANELS_X86
// SLEEF's vector exp (1 ulp) as libtorch_cpu exports it, for the AVX-512 erf below (the AVX2 one has its own,
// inline). Weak: without it GELU runs after the AVX-512 product, unfused.
#pragma GCC push_options
#pragma GCC target("avx512f")
extern "C" __m512 Sleef_expf16_u10avx512f(__m512) __attribute__((weak));
#pragma GCC pop_options
#endif

namespace bert {
namespace {

constexpr int64_t kPanel = 64;   // output columns per panel: 4 AVX-512 or 8 AVX2 registers
constexpr int64_t kSlice = 512;  // k per pass over a panel
constexpr int kRows = 6;         // rows per register tile
// AVX2 tiles prefetch their own weight stream this many k ahead into L1 (past a slice's end: the next slice's or
// group's lines, which come next; a prefetch never faults). On a Zen 3 EPYC (two FMA pipes, twice Zen 1's rate) the
// tiles otherwise waited on the weights' loads: a bert-base batch-1 forward 0.89-0.98x the time without it, MiniLM's
// 0.95x (in one process, alternating); a C++ harness of the panel loop on one core +12-17% at distances 8-32.
constexpr int64_t kL1Ahead = 16;
constexpr int64_t kTilesPerThread = 2;  // at least, where the rows allow (PanelLinear)
constexpr int64_t kChunkRows = 96;      // rows of a tile at most (PanelLinear)

enum class Isa { kNone, kAvx2, kAvx512 };

// ATen's kernel level for this CPU (AVX512 needs AVX-512 F/BW/VL/DQ, AVX2 needs AVX2 and FMA): one rule for every
// vector loop here, which ATEN_CPU_CAPABILITY lowers (the tests' forced-AVX2 and scalar runs).
Isa VectorIsa() {
  static const Isa isa = [] {
#ifdef BERT_PANELS_X86
    const std::string level = at::get_cpu_capability();
    return level == "AVX512" ? Isa::kAvx512 : level == "AVX2" ? Isa::kAvx2 : Isa::kNone;
#else
    return Isa::kNone;
#endif
  }();
  return isa;
}

// The panel products' kernels: VectorIsa's, or none under BERT_TRAINER_NO_PANELS (oneDNN's prepacked products
// instead, for comparisons).
Isa CpuIsa() {
  static const Isa isa = std::getenv("BERT_TRAINER_NO_PANELS") ? Isa::kNone : VectorIsa();
  return isa;
}

// What one tile does at the end of its last slice.
struct Epilogue {
  PanelAct act = PanelAct::kNone;
  const float* residual = nullptr;  // row-major, ld = ldc; nullptr: none
  const float* prefetch = nullptr;  // AVX2: prefetch_n lines 64 bytes apart to bring into L2,
  int64_t prefetch_n = 0;           // one every 2^prefetch_shift k
  int prefetch_shift = 0;
};

#ifdef BERT_PANELS_X86
// erf by Abramowitz and Stegun 7.1.26 (absolute error < 1.5e-7), the form libtorch's vectorized CPU GELU computes:
// erf|x| = 1 - t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) exp(-x^2), t = 1 / (1 + p|x|); SLEEF's erf cost 3x more.
constexpr float kErfP = 0.3275911f, kErfA[] = {0.254829592f, -0.284496736f, 1.421413741f, -1.453152027f, 1.061405429f};

__attribute__((target("avx512f"))) inline __m512 Erf512(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f), ax = _mm512_abs_ps(x);
  const __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(kErfP), ax, one));
  __m512 poly = _mm512_set1_ps(kErfA[4]);
  for (int i = 3; i >= 0; --i) poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(kErfA[i]));
  const __m512 e = Sleef_expf16_u10avx512f(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(x, x)));
  const __m512 y = _mm512_fnmadd_ps(_mm512_mul_ps(poly, t), e, one);  // erf|x|
  const __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(static_cast<int>(0x80000000u)));
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y), sign));
}

// exp(x) for x <= 0, inline (SLEEF's, a call, cost the AVX2 epilogue as much again): 2^n p(r) with n = round(x log2 e),
// r = x - n ln 2 (ln 2 in two parts), p Taylor's to degree 7 (|r| <= ln2 / 2: relative error < 1e-8); x clamped at
// -87, where 2^n is still a normal float and erf's term (or a softmax element) is already under float's resolution.
__attribute__((target("avx2,fma"))) inline __m256 ExpNonPositive256(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);  // in this order a NaN x stays NaN (maxps returns its second operand)
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  for (const float c : {1.0f / 720, 1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
  const __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(two_n));
}

// The same erf as Erf512 given e = exp(-x^2), with 1 / (1 + p|x|) from the reciprocal estimate and one Newton step
// (relative error ~1e-7) instead of a division.
__attribute__((target("avx2,fma"))) inline __m256 Erf256(__m256 x, __m256 e) {
  const __m256 one = _mm256_set1_ps(1.0f), sign_bit = _mm256_set1_ps(-0.0f), ax = _mm256_andnot_ps(sign_bit, x);
  const __m256 den = _mm256_fmadd_ps(_mm256_set1_ps(kErfP), ax, one), r0 = _mm256_rcp_ps(den);
  const __m256 t = _mm256_mul_ps(r0, _mm256_fnmadd_ps(den, r0, _mm256_set1_ps(2.0f)));
  __m256 poly = _mm256_set1_ps(kErfA[4]);
  for (int i = 3; i >= 0; --i) poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kErfA[i]));
  const __m256 y = _mm256_fnmadd_ps(_mm256_mul_ps(poly, t), e, one);
  return _mm256_or_ps(y, _mm256_and_ps(sign_bit, x));
}

// erf without exp, for GELU's forward: x P(x^2) / Q(x^2) on |x| <= 4 (erf(4) is 1 in float), a rational fit of degrees
// 6 and 4 in x^2 (least squares with Lawson's reweighting towards minimax; absolute error 6e-8 in exact arithmetic,
// < 4e-7 evaluated in float), 1 / Q by the reciprocal estimate and one Newton step. 21 vector operations against the
// exp form's 37: the GELU epilogue of bert-base's batch-1 intermediate products cost ~2 ms a forward that way.
constexpr float kErfNum[] = {1.1283786296844482f, 0.2140876054763794f, 0.05245388671755791f, 0.004299345891922712f,
                             0.00015569126117043197f, -1.9909914499294246e-06f, 1.9215198321376192e-08f};
constexpr float kErfDen[] = {1.0f, 0.5230578780174255f, 0.12085989117622375f, 0.015564062632620335f, 0.0010995656484737992f};
__attribute__((target("avx2,fma"))) inline __m256 ErfRational256(__m256 x) {
  // NaN stays NaN through every clamp here: min and max return their second operand when either is NaN.
  x = _mm256_min_ps(_mm256_set1_ps(4.0f), _mm256_max_ps(_mm256_set1_ps(-4.0f), x));
  const __m256 t = _mm256_mul_ps(x, x);
  __m256 num = _mm256_set1_ps(kErfNum[6]), den = _mm256_set1_ps(kErfDen[4]);
  for (int i = 5; i >= 0; --i) num = _mm256_fmadd_ps(num, t, _mm256_set1_ps(kErfNum[i]));
  for (int i = 3; i >= 0; --i) den = _mm256_fmadd_ps(den, t, _mm256_set1_ps(kErfDen[i]));
  const __m256 r0 = _mm256_rcp_ps(den), r = _mm256_mul_ps(r0, _mm256_fnmadd_ps(den, r0, _mm256_set1_ps(2.0f)));
  const __m256 y = _mm256_mul_ps(_mm256_mul_ps(x, num), r);
  return _mm256_min_ps(_mm256_set1_ps(1.0f), _mm256_max_ps(_mm256_set1_ps(-1.0f), y));
}

// GELU's erf form, 0.5 x (1 + erf(x / sqrt 2)), and its gradient dy (cdf + x pdf) with pdf = exp(-x^2 / 2) / sqrt(2 pi):
// the exp erf needs is pdf's, so the gradient takes one exp (libtorch's takes two, and calls each).
__attribute__((target("avx2,fma"))) inline __m256 Gelu256(__m256 x) {
  const __m256 half_x = _mm256_mul_ps(_mm256_set1_ps(0.5f), x);
  return _mm256_fmadd_ps(half_x, ErfRational256(_mm256_mul_ps(x, _mm256_set1_ps(static_cast<float>(M_SQRT1_2)))), half_x);
}
__attribute__((target("avx2,fma"))) inline __m256 GeluGrad256(__m256 dy, __m256 x) {
  const __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(static_cast<float>(M_SQRT1_2)));
  const __m256 e = ExpNonPositive256(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(z, z)));
  const __m256 cdf = _mm256_mul_ps(_mm256_set1_ps(0.5f), _mm256_add_ps(_mm256_set1_ps(1.0f), Erf256(z, e)));
  const __m256 pdf = _mm256_mul_ps(e, _mm256_set1_ps(static_cast<float>(0.5 * M_2_SQRTPI * M_SQRT1_2)));
  return _mm256_mul_ps(dy, _mm256_fmadd_ps(x, pdf, cdf));
}

// y = GELU(x) (kGrad false) or dx = GELU'(x) dy (kGrad true, `a` being dy) over [begin, end): 8 at a time, the last
// few through a zero-padded copy.
template <bool kGrad>
__attribute__((target("avx2,fma"))) void GeluLoop(const float* a, const float* x, float* out, int64_t begin, int64_t end) {
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    _mm256_storeu_ps(out + i, kGrad ? GeluGrad256(_mm256_loadu_ps(a + i), v) : Gelu256(v));
  }
  if (i == end) return;
  alignas(32) float ta[8] = {}, tx[8] = {}, to[8];
  const size_t n = static_cast<size_t>(end - i) * sizeof(float);
  std::memcpy(tx, x + i, n);
  if (kGrad) std::memcpy(ta, a + i, n);
  _mm256_store_ps(to, kGrad ? GeluGrad256(_mm256_load_ps(ta), _mm256_load_ps(tx)) : Gelu256(_mm256_load_ps(tx)));
  std::memcpy(out + i, to, n);
}

// torch.optim.AdamW(fused=True) over the rows of a table (AdamWRows): libtorch's fused CPU kernel's vector path, op
// for op (ATen/native/cpu/FusedAdamKernel.cpp, ADAMW; every float op here is one IEEE operation, as its Vectorized
// ones are at AVX2 and AVX-512, with fmadd fused): decay, lerp of the first moment, second moment, denominator, step.
// The kernel's constants, each rounded to float as its Vec(scalar_t(...)) does.
struct AdamWConstants {
  float coeff, decay, beta2, c2, bias2_sqrt, eps, minus_step, scale;
  bool small, scaled, decays;
  explicit AdamWConstants(const AdamWRowArgs& a) {
    const double bias1 = 1 - std::pow(a.beta1, static_cast<double>(a.step)), bias2 = 1 - std::pow(a.beta2, static_cast<double>(a.step));
    const float w = static_cast<float>(1 - a.beta1);
    small = std::fabs(w) < 0.5f;  // lerp's two forms, as the kernel picks them
    coeff = small ? w : w - 1.0f;
    decay = static_cast<float>(1 - a.lr * a.weight_decay);
    beta2 = static_cast<float>(a.beta2);
    c2 = static_cast<float>(1 - a.beta2);
    bias2_sqrt = static_cast<float>(std::sqrt(bias2));
    eps = static_cast<float>(a.eps);
    minus_step = static_cast<float>(-(a.lr / bias1));
    scaled = a.grad_scale != nullptr;
    scale = scaled ? *a.grad_scale : 1.0f;
    decays = a.weight_decay != 0;
  }
};

__attribute__((target("avx2,fma"))) void AdamWRowAvx2(float* p, float* m, float* v, const float* g, int64_t dim, const AdamWConstants& c) {
  const __m256 coeff = _mm256_set1_ps(c.coeff), decay = _mm256_set1_ps(c.decay), beta2 = _mm256_set1_ps(c.beta2), c2 = _mm256_set1_ps(c.c2);
  const __m256 bias2_sqrt = _mm256_set1_ps(c.bias2_sqrt), eps = _mm256_set1_ps(c.eps), minus_step = _mm256_set1_ps(c.minus_step);
  const __m256 scale = _mm256_set1_ps(c.scale);
  for (int64_t d = 0; d < dim; d += 8) {
    __m256 pv = _mm256_loadu_ps(p + d), gv = _mm256_loadu_ps(g + d);
    if (c.scaled) gv = _mm256_div_ps(gv, scale);
    if (c.decays) pv = _mm256_mul_ps(pv, decay);
    __m256 mv = _mm256_loadu_ps(m + d);
    mv = _mm256_fmadd_ps(coeff, _mm256_sub_ps(gv, mv), c.small ? mv : gv);
    const __m256 vv = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + d), beta2), _mm256_mul_ps(_mm256_mul_ps(c2, gv), gv));
    _mm256_storeu_ps(m + d, mv);
    _mm256_storeu_ps(v + d, vv);
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vv), bias2_sqrt), eps);
    _mm256_storeu_ps(p + d, _mm256_add_ps(pv, _mm256_div_ps(_mm256_mul_ps(minus_step, mv), denom)));
  }
}

// ---- Attention's products in evaluation (AttentionPair): tiles of R rows x 16 columns with any row strides ----
// c = alpha a b over k_len, b's rows ldb apart; kMask: only the lanes of m0, m1 of b are read and of c written (a
// head's last columns where its size is not a multiple of 16).
template <int R, bool kMask>
__attribute__((target("avx2,fma"))) void SmallTile256(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t k_len, float* c, int64_t ldc,
                                                      float alpha, __m256i m0, __m256i m1) {
  __m256 acc[R][2];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < k_len; ++k) {
    const float* bk = b + k * ldb;
    const __m256 b0 = kMask ? _mm256_maskload_ps(bk, m0) : _mm256_loadu_ps(bk), b1 = kMask ? _mm256_maskload_ps(bk + 8, m1) : _mm256_loadu_ps(bk + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_broadcast_ss(a + r * lda + k);
      acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
    }
  }
  const __m256 s = _mm256_set1_ps(alpha);
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    const __m256 v0 = _mm256_mul_ps(acc[r][0], s), v1 = _mm256_mul_ps(acc[r][1], s);
    if (kMask) {
      _mm256_maskstore_ps(c + r * ldc, m0, v0);
      _mm256_maskstore_ps(c + r * ldc + 8, m1, v1);
    } else {
      _mm256_storeu_ps(c + r * ldc, v0);
      _mm256_storeu_ps(c + r * ldc + 8, v1);
    }
  }
}

using SmallTileFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t, float, __m256i, __m256i);
SmallTileFn SmallTileFor(int rows, bool mask) {
  static constexpr SmallTileFn full[] = {nullptr, SmallTile256<1, false>, SmallTile256<2, false>, SmallTile256<3, false>,
                                         SmallTile256<4, false>, SmallTile256<5, false>, SmallTile256<6, false>};
  static constexpr SmallTileFn masked[] = {nullptr, SmallTile256<1, true>, SmallTile256<2, true>, SmallTile256<3, true>,
                                           SmallTile256<4, true>, SmallTile256<5, true>, SmallTile256<6, true>};
  return mask ? masked[rows] : full[rows];
}

// Softmax of `rows` rows of n, `ld` apart, in place, 8 lanes at a time (the row's max subtracted, so
// ExpNonPositive256's domain). The last partial vector's lanes past n enter as -inf (~0 to the sum, then exactly 0):
// where the rows have room for a whole last vector (ld past n / 8 * 8 + 8: AttentionPair's padded score rows) it is
// read and written whole, and those lanes come out 0; otherwise through masked loads and stores, which on Zen 1 cost
// ~40% of a 52-key row's softmax.
__attribute__((target("avx2,fma"))) void SoftmaxRowsAvx2(float* p, int64_t rows, int64_t n, int64_t ld) {
  const int64_t full = n / 8 * 8, tail = n - full;
  const bool room = ld >= full + 8;
  alignas(32) int32_t lanes[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  const __m256i mask = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lanes + 8 - tail));
  const __m256 keep = _mm256_castsi256_ps(mask), minus_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t r = 0; r < rows; ++r, p += ld) {
    const __m256 last = tail ? _mm256_blendv_ps(minus_inf, room ? _mm256_loadu_ps(p + full) : _mm256_maskload_ps(p + full, mask), keep) : minus_inf;
    __m256 mx = last;
    for (int64_t j = 0; j < full; j += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(p + j));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
    const __m256 m = _mm256_broadcastss_ps(m4);
    __m256 sum = _mm256_setzero_ps();
    for (int64_t j = 0; j < full; j += 8) {
      const __m256 e = ExpNonPositive256(_mm256_sub_ps(_mm256_loadu_ps(p + j), m));
      _mm256_storeu_ps(p + j, e);
      sum = _mm256_add_ps(sum, e);
    }
    __m256 e_last = _mm256_setzero_ps();
    if (tail) {
      e_last = _mm256_and_ps(ExpNonPositive256(_mm256_sub_ps(last, m)), keep);
      sum = _mm256_add_ps(sum, e_last);
    }
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps(sum, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_shuffle_ps(s4, s4, 1));
    const __m256 inv = _mm256_set1_ps(1.0f / _mm_cvtss_f32(s4));
    for (int64_t j = 0; j < full; j += 8) _mm256_storeu_ps(p + j, _mm256_mul_ps(_mm256_loadu_ps(p + j), inv));
    if (tail) {
      if (room) _mm256_storeu_ps(p + full, _mm256_mul_ps(e_last, inv));
      else _mm256_maskstore_ps(p + full, mask, _mm256_mul_ps(e_last, inv));
    }
  }
}

// ---- AVX-512: a tile of R rows x 64 columns in 4R registers ----
template <int R>
__attribute__((target("avx512f"))) void Tile512(const float* a, int64_t lda, const float* b, int64_t k_len, float* c, int64_t ldc,
                                                 const float* bias, bool first, bool last, const Epilogue& ep) {
  __m512 acc[R][4];
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j)
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r)
      acc[r][j] = first ? (bias ? _mm512_loadu_ps(bias + 16 * j) : _mm512_setzero_ps()) : _mm512_loadu_ps(c + r * ldc + 16 * j);
  for (int64_t k = 0; k < k_len; ++k) {
    const float* bk = b + k * kPanel;
    const __m512 b0 = _mm512_load_ps(bk), b1 = _mm512_load_ps(bk + 16), b2 = _mm512_load_ps(bk + 32), b3 = _mm512_load_ps(bk + 48);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(a[r * lda + k]);
      acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(x, b2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(x, b3, acc[r][3]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) _mm512_storeu_ps(c + r * ldc + 16 * j, acc[r][j]);
  // The epilogue runs over the stored tile (in L1): inside the store loop it made GCC keep the accumulators in memory.
  if (last && (ep.act != PanelAct::kNone || ep.residual))
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < 4; ++j) {
        float* out = c + r * ldc + 16 * j;
        __m512 v = _mm512_loadu_ps(out);
        if (ep.act == PanelAct::kRelu) v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), v, _mm512_setzero_ps());  // NaN stays
        if (ep.act == PanelAct::kGeluErf)  // 0.5 x (1 + erf(x / sqrt 2))
          v = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v),
                            _mm512_add_ps(_mm512_set1_ps(1.0f), Erf512(_mm512_mul_ps(v, _mm512_set1_ps(static_cast<float>(M_SQRT1_2))))));
        if (ep.residual) v = _mm512_add_ps(v, _mm512_loadu_ps(ep.residual + r * ldc + 16 * j));
        _mm512_storeu_ps(out, v);
      }
}

// ---- AVX2+FMA: a tile of R rows x 16 columns (one of a panel's four groups) in 2R registers ----
template <int R>
__attribute__((target("avx2,fma"))) void Tile256(const float* a, int64_t lda, const float* b, int64_t k_len, float* c, int64_t ldc,
                                                 const float* bias, bool first, bool last, const Epilogue& ep) {
  __m256 acc[R][2];
#pragma GCC unroll 2
  for (int j = 0; j < 2; ++j)
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r)
      acc[r][j] = first ? (bias ? _mm256_loadu_ps(bias + 8 * j) : _mm256_setzero_ps()) : _mm256_loadu_ps(c + r * ldc + 8 * j);
  for (int64_t k = 0; k < k_len; ++k) {
    if ((k & ((int64_t{1} << ep.prefetch_shift) - 1)) == 0 && (k >> ep.prefetch_shift) < ep.prefetch_n)
      _mm_prefetch(reinterpret_cast<const char*>(ep.prefetch + (k >> ep.prefetch_shift) * 16), _MM_HINT_T1);
    _mm_prefetch(reinterpret_cast<const char*>(b + (k + kL1Ahead) * 16), _MM_HINT_T0);
    const __m256 b0 = _mm256_load_ps(b + k * 16), b1 = _mm256_load_ps(b + k * 16 + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_broadcast_ss(a + r * lda + k);
      acc[r][0] = _mm256_fmadd_ps(x, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(x, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int j = 0; j < 2; ++j) _mm256_storeu_ps(c + r * ldc + 8 * j, acc[r][j]);
  if (last && (ep.act != PanelAct::kNone || ep.residual))
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < 2; ++j) {
        float* out = c + r * ldc + 8 * j;
        __m256 v = _mm256_loadu_ps(out);
        if (ep.act == PanelAct::kRelu) v = _mm256_blendv_ps(v, _mm256_setzero_ps(), _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
        if (ep.act == PanelAct::kGeluErf) v = Gelu256(v);
        if (ep.residual) v = _mm256_add_ps(v, _mm256_loadu_ps(ep.residual + r * ldc + 8 * j));
        _mm256_storeu_ps(out, v);
      }
}

using TileFn = void (*)(const float*, int64_t, const float*, int64_t, float*, int64_t, const float*, bool, bool, const Epilogue&);

TileFn TileFor(Isa isa, int rows) {
  static constexpr TileFn k512[] = {nullptr, Tile512<1>, Tile512<2>, Tile512<3>, Tile512<4>, Tile512<5>, Tile512<6>};
  static constexpr TileFn k256[] = {nullptr, Tile256<1>, Tile256<2>, Tile256<3>, Tile256<4>, Tile256<5>, Tile256<6>};
  return isa == Isa::kAvx512 ? k512[rows] : k256[rows];
}

// Rows of block `block` when `rows` are cut into ceil(rows / 6) blocks of as even a size as can be: 49 rows as 4 of 6
// and 5 of 5 rather than 8 of 6 and 1 of 1, whose two accumulators leave the FMA units waiting on their latency (a
// 1-row block cost two rows' time on Zen 1).
inline int BlockRows(int64_t rows, int64_t block) {
  const int64_t blocks = (rows + kRows - 1) / kRows, base = rows / blocks;
  return static_cast<int>(base + (block < rows % blocks ? 1 : 0));
}

// Rows [m0, m1) of one panel: K slice by slice, each slice over every 6-row block. A panel that runs past N (its last
// columns are zero weights) computes into `scratch` and copies the real columns out, adding the residual there.
void PanelRows(Isa isa, const float* x, int64_t K, const float* panel, int64_t n0, int64_t N, const float* bias, float* y,
               int64_t m0, int64_t m1, const Epilogue& ep, std::vector<float>& scratch, const float* next_panel) {
  const int64_t cols = std::min<int64_t>(kPanel, N - n0), rows = m1 - m0;
  const bool whole = cols == kPanel;
  float* c = y + m0 * N + n0;
  int64_t ldc = N;
  Epilogue tile_ep = ep;
  if (tile_ep.residual) tile_ep.residual += m0 * N + n0;
  std::vector<float> padded_bias;
  if (!whole) {
    scratch.assign(static_cast<size_t>(rows * kPanel), 0.0f);
    c = scratch.data();
    ldc = kPanel;
    tile_ep.residual = nullptr;
    if (bias) {
      padded_bias.assign(kPanel, 0.0f);
      std::memcpy(padded_bias.data(), bias + n0, static_cast<size_t>(cols) * sizeof(float));
    }
  }
  const float* b = whole ? (bias ? bias + n0 : nullptr) : (bias ? padded_bias.data() : nullptr);
  const int64_t slices = std::max<int64_t>(1, (K + kSlice - 1) / kSlice);
  for (int64_t s = 0; s < slices; ++s) {
    const int64_t k0 = s * kSlice, k_len = std::min(kSlice, K - k0);
    const bool first = s == 0, last = s + 1 == slices;
    if (isa == Isa::kAvx512) {
      for (int64_t r = 0, block = 0; r < rows; r += BlockRows(rows, block), ++block) {
        const int n = BlockRows(rows, block);
        TileFor(isa, n)(x + (m0 + r) * K + k0, K, panel + k0 * kPanel, k_len, c + r * ldc, ldc, b, first, last,
                        Epilogue{tile_ep.act, tile_ep.residual ? tile_ep.residual + r * ldc : nullptr});
      }
      continue;
    }
    // AVX2: group by group, every row block over one group's slice (32 KB, contiguous: it stays in L1). Meanwhile
    // the row blocks prefetch the next group's slice (or the next panel's first) into L2 between them (3-5% on Zen 1,
    // where the first block over a slice otherwise waited on memory), each block its share spread evenly over its k:
    // a line per k in a burst at each block's start filled the core's outstanding misses and stalled the tile (bert-base
    // batch-1 forward 0.92-0.94x the time spread on a Zen 3 EPYC, in one process, alternating).
    const int64_t blocks = (rows + kRows - 1) / kRows;
    for (int g = 0; g < 4; ++g) {
      const bool end = g == 3 && last;
      const int64_t next_k0 = end ? 0 : g < 3 ? k0 : k0 + kSlice, next_g = g < 3 ? g + 1 : 0;
      const int64_t next_len = end && !next_panel ? 0 : std::min(kSlice, K - next_k0);  // a line (16 floats) per k
      const float* next = (end ? next_panel : panel) + next_g * K * 16 + next_k0 * 16;
      const int64_t per_block = (next_len + blocks - 1) / blocks;
      for (int64_t r = 0, block = 0; r < rows; r += BlockRows(rows, block), ++block) {
        const int n = BlockRows(rows, block);
        const int64_t p0 = std::min(next_len, block * per_block), p1 = std::min(next_len, p0 + per_block), pn = std::min(p1 - p0, k_len);
        int shift = 0;
        while (pn > 0 && (pn << (shift + 1)) <= k_len) ++shift;
        TileFor(isa, n)(x + (m0 + r) * K + k0, K, panel + g * K * 16 + k0 * 16, k_len, c + r * ldc + 16 * g, ldc, b ? b + 16 * g : nullptr, first, last,
                        Epilogue{tile_ep.act, tile_ep.residual ? tile_ep.residual + r * ldc + 16 * g : nullptr, next + p0 * 16, pn, shift});
      }
    }
  }
  if (!whole)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j)
        y[(m0 + r) * N + n0 + j] = scratch[static_cast<size_t>(r * kPanel + j)] + (ep.residual ? ep.residual[(m0 + r) * N + n0 + j] : 0.0f);
}

#else
void PanelRows(Isa, const float*, int64_t, const float*, int64_t, int64_t, const float*, float*, int64_t, int64_t, const Epilogue&,
               std::vector<float>&, const float*) {}  // never called: CpuIsa() is kNone
#endif  // BERT_PANELS_X86

}  // namespace

bool PanelProductsAvailable() { return CpuIsa() != Isa::kNone; }

const char* PanelProductsKernel() { return CpuIsa() == Isa::kAvx512 ? "avx512" : CpuIsa() == Isa::kAvx2 ? "avx2" : "none"; }

bool PanelFuses(PanelAct act) {
  if (act != PanelAct::kGeluErf) return true;
#ifdef BERT_PANELS_X86
  return CpuIsa() == Isa::kAvx512 ? Sleef_expf16_u10avx512f != nullptr : CpuIsa() == Isa::kAvx2;
#else
  return false;
#endif
}

bool VectorLoops() { return VectorIsa() != Isa::kNone; }  // the AVX2 loops, which AVX-512 CPUs run too

bool GeluErfKernels() { return VectorLoops(); }

void SoftmaxRows(float* p, int64_t rows, int64_t n) {
#ifdef BERT_PANELS_X86
  if (VectorIsa() != Isa::kNone) return SoftmaxRowsAvx2(p, rows, n, n);
#endif
  for (int64_t r = 0; r < rows; ++r, p += n) {
    float mx = -std::numeric_limits<float>::infinity(), sum = 0;
    for (int64_t j = 0; j < n; ++j) mx = std::max(mx, p[j]);
    for (int64_t j = 0; j < n; ++j) sum += (p[j] = std::exp(p[j] - mx));
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < n; ++j) p[j] *= inv;
  }
}

void AdamWRows(float* param, float* exp_avg, float* exp_avg_sq, int64_t dim, const int64_t* rows, const float* const* grads, int64_t n,
               const AdamWRowArgs& a) {
  TORCH_CHECK(VectorIsa() != Isa::kNone && dim % 8 == 0, "AdamWRows: no kernel for this CPU or row size");
#ifdef BERT_PANELS_X86
  const AdamWConstants c(a);
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t o = rows[i] * dim;
      AdamWRowAvx2(param + o, exp_avg + o, exp_avg_sq + o, grads[i], dim, c);
    }
  });
#else
  (void)param, (void)exp_avg, (void)exp_avg_sq, (void)rows, (void)grads, (void)n, (void)a;
#endif
}

#ifdef BERT_PANELS_X86
// Squares summed in double, 16 floats a step into four accumulators (memory-bound: the conversions cost nothing).
static __attribute__((target("avx2,fma"))) double SumOfSquaresAvx2(const float* x, int64_t n) {
  __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    const __m256d a0 = _mm256_cvtps_pd(_mm256_castps256_ps128(a)), a1 = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
    const __m256d b0 = _mm256_cvtps_pd(_mm256_castps256_ps128(b)), b1 = _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1));
    acc[0] = _mm256_fmadd_pd(a0, a0, acc[0]);
    acc[1] = _mm256_fmadd_pd(a1, a1, acc[1]);
    acc[2] = _mm256_fmadd_pd(b0, b0, acc[2]);
    acc[3] = _mm256_fmadd_pd(b1, b1, acc[3]);
  }
  double lanes[4];
  _mm256_storeu_pd(lanes, _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3])));
  double s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  for (; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}
#endif

double TotalNorm(const std::vector<at::Tensor>& tensors) {
  constexpr int64_t kBlock = 1 << 15;  // floats per task
  struct Task {
    const float* x;
    int64_t n;
  };
  std::vector<Task> tasks;
  for (const at::Tensor& t : tensors) {
    TORCH_CHECK(t.is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(), "TotalNorm: CPU fp32 contiguous tensors only");
    const float* x = t.const_data_ptr<float>();
    for (int64_t o = 0; o < t.numel(); o += kBlock) tasks.push_back({x + o, std::min(kBlock, t.numel() - o)});
  }
  std::vector<double> sums(tasks.size());
  at::parallel_for(0, static_cast<int64_t>(tasks.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const Task& t = tasks[static_cast<size_t>(i)];
      double s = 0;
#ifdef BERT_PANELS_X86
      if (VectorIsa() != Isa::kNone) s = SumOfSquaresAvx2(t.x, t.n);
      else
#endif
        for (int64_t j = 0; j < t.n; ++j) s += static_cast<double>(t.x[j]) * t.x[j];
      sums[static_cast<size_t>(i)] = s;
    }
  });
  double total = 0;
  for (const double s : sums) total += s;
  return std::sqrt(total);
}

at::Tensor GeluErf(const at::Tensor& x) {
  TORCH_CHECK(GeluErfKernels() && x.is_cpu() && x.scalar_type() == at::kFloat, "GeluErf: no kernel for this CPU or tensor");
  const at::Tensor in = x.contiguous();
  at::Tensor y = at::empty_like(in);
#ifdef BERT_PANELS_X86
  const float* xp = in.const_data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, in.numel(), 1 << 14, [&](int64_t begin, int64_t end) { GeluLoop<false>(nullptr, xp, yp, begin, end); });
#endif
  return y;
}

at::Tensor GeluErfBackward(const at::Tensor& grad, const at::Tensor& x) {
  TORCH_CHECK(GeluErfKernels() && x.is_cpu() && x.scalar_type() == at::kFloat && grad.sizes() == x.sizes(), "GeluErfBackward: no kernel for this CPU or tensor");
  const at::Tensor g = grad.to(at::kFloat).contiguous(), in = x.contiguous();
  at::Tensor dx = at::empty_like(in);
#ifdef BERT_PANELS_X86
  const float *gp = g.const_data_ptr<float>(), *xp = in.const_data_ptr<float>();
  float* dp = dx.data_ptr<float>();
  at::parallel_for(0, in.numel(), 1 << 14, [&](int64_t begin, int64_t end) { GeluLoop<true>(gp, xp, dp, begin, end); });
#endif
  return dx;
}

#ifdef BERT_PANELS_X86
// dst[k * ld + j] = src[j * lds + k] for 8 rows j and 8 k: an 8 x 8 transpose in registers.
__attribute__((target("avx2"))) void Transpose8x8(const float* src, int64_t lds, float* dst, int64_t ld) {
  __m256 r[8], t[8];
  for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(src + j * lds);
  for (int j = 0; j < 8; j += 2) t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]), t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
  for (int j = 0; j < 8; j += 4) {
    r[j] = _mm256_shuffle_ps(t[j], t[j + 2], 0x44), r[j + 1] = _mm256_shuffle_ps(t[j], t[j + 2], 0xEE);
    r[j + 2] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0x44), r[j + 3] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    _mm256_storeu_ps(dst + j * ld, _mm256_permute2f128_ps(r[j], r[j + 4], 0x20));
    _mm256_storeu_ps(dst + (j + 4) * ld, _mm256_permute2f128_ps(r[j], r[j + 4], 0x31));
  }
}

// TransposeRows' 16 columns from j0 for rows [0, M / 8 * 8): two 8 x 8 blocks per 8 rows, and the column sums (when
// `sums`) over those rows into sums[j0, j0 + 16). Returns the rows done.
static __attribute__((target("avx2"))) int64_t TransposeBlock16(const float* src, int64_t M, int64_t N, int64_t j0, float* dst, float* sums) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t r = 0;
  for (; r + 8 <= M; r += 8) {
    const float* block = src + r * N + j0;
    Transpose8x8(block, N, dst + j0 * M + r, M);
    Transpose8x8(block + 8, N, dst + (j0 + 8) * M + r, M);
    if (sums)
      for (int j = 0; j < 8; ++j) s0 = _mm256_add_ps(s0, _mm256_loadu_ps(block + j * N)), s1 = _mm256_add_ps(s1, _mm256_loadu_ps(block + j * N + 8));
  }
  if (sums) _mm256_storeu_ps(sums + j0, s0), _mm256_storeu_ps(sums + j0 + 8, s1);
  return r;
}
#endif

// Panels of an [N, K] operand (the product's output columns by its inner dimension) in one pass, a (panel, group) per
// task: fill(n0, real, dst, ld) writes the `real` (<= 16) columns from n0 for every k at dst + k * ld; zero past N.
// AVX2's group-major layout or AVX-512's [K, 64] (see the file's head).
template <class Fill>
static at::Tensor Pack(int64_t N, int64_t K, const Fill& fill) {
  const int64_t panels = (N + kPanel - 1) / kPanel;
  at::Tensor out = at::empty({panels, K, kPanel}, at::kFloat);  // at::empty is 64-byte aligned
  float* o = out.data_ptr<float>();
  const bool groups = CpuIsa() == Isa::kAvx2;
  at::parallel_for(0, panels * 4, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t p = t / 4, g = t % 4, n0 = p * kPanel + g * 16, real = std::max<int64_t>(0, std::min<int64_t>(16, N - n0));
      float* dst = groups ? o + p * K * kPanel + g * K * 16 : o + p * K * kPanel + g * 16;
      const int64_t ld = groups ? 16 : kPanel;
      if (real > 0) fill(n0, real, dst, ld);
      if (real < 16)
        for (int64_t k = 0; k < K; ++k) std::fill(dst + k * ld + real, dst + k * ld + 16, 0.0f);
    }
  });
  return out;
}

at::Tensor PackPanels(const at::Tensor& weight) {
  const at::Tensor w = weight.detach().to(at::kFloat).contiguous();
  const int64_t N = w.size(0), K = w.size(1);
  const float* src = w.const_data_ptr<float>();
  // dst[k][j] = w[n0 + j][k]: a transpose, 8 x 8 blocks in registers where the CPU has AVX2 (5x faster than a float at
  // a time: training packs every weight on every forward: PanelProducts in modeling_bert.cc).
  return Pack(N, K, [&](int64_t n0, int64_t real, float* dst, int64_t ld) {
    int64_t k = 0;
#ifdef BERT_PANELS_X86
    if (real == 16 && VectorIsa() != Isa::kNone)
      for (; k + 8 <= K; k += 8) {
        Transpose8x8(src + n0 * K + k, K, dst + k * ld, ld);
        Transpose8x8(src + (n0 + 8) * K + k, K, dst + k * ld + 8, ld);
      }
#endif
    for (; k < K; ++k)
      for (int64_t j = 0; j < real; ++j) dst[k * ld + j] = src[(n0 + j) * K + k];
  });
}

at::Tensor PackPanelsTransposed(const at::Tensor& weight) {
  const at::Tensor w = weight.detach().to(at::kFloat).contiguous();
  const int64_t N = w.size(1), K = w.size(0);  // panels of w^T: [in, out]
  const float* src = w.const_data_ptr<float>();
  // dst[k][j] = w^T[n0 + j][k] = w[k][n0 + j]: 16 consecutive floats of one row (a fixed-size copy where whole).
  return Pack(N, K, [&](int64_t n0, int64_t real, float* dst, int64_t ld) {
    if (real == 16)
      for (int64_t k = 0; k < K; ++k) std::memcpy(dst + k * ld, src + k * N + n0, 16 * sizeof(float));
    else
      for (int64_t k = 0; k < K; ++k) std::memcpy(dst + k * ld, src + k * N + n0, static_cast<size_t>(real) * sizeof(float));
  });
}

at::Tensor TransposeRows(const at::Tensor& x, at::Tensor* column_sums) {
  const at::Tensor in = x.detach().to(at::kFloat).contiguous();
  const int64_t M = in.size(0), N = in.size(1);
  at::Tensor out = at::empty({N, M}, in.options());
  if (column_sums) *column_sums = at::empty({N}, in.options());
  const float* src = in.const_data_ptr<float>();
  float* dst = out.data_ptr<float>();
  float* sums = column_sums ? column_sums->data_ptr<float>() : nullptr;
  // A task per 16 columns (a cache line of each row): down the rows 8 at a time, each 8 x 8 block transposed in
  // registers, the column sums added row by row in order (the sums a loop over the rows makes).
  at::parallel_for(0, (N + 15) / 16, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t j0 = t * 16, cols = std::min<int64_t>(16, N - j0);
      int64_t r = 0;
#ifdef BERT_PANELS_X86
      if (cols == 16 && VectorIsa() != Isa::kNone) r = TransposeBlock16(src, M, N, j0, dst, sums);
#endif
      if (sums && r == 0) std::fill(sums + j0, sums + j0 + cols, 0.0f);
      for (; r < M; ++r)
        for (int64_t j = 0; j < cols; ++j) {
          const float v = src[r * N + j0 + j];
          dst[(j0 + j) * M + r] = v;
          if (sums) sums[j0 + j] += v;
        }
    }
  });
  return out;
}

#ifdef BERT_PANELS_X86
namespace {
// dst[c * ldd + r] = src[r * lds + c] for rows x cols: 8 x 8 blocks in registers, the edges one at a time.
void TransposeSmall(const float* src, int64_t rows, int64_t cols, int64_t lds, float* dst, int64_t ldd) {
  const int64_t r8 = rows / 8 * 8, c8 = cols / 8 * 8;
  for (int64_t r = 0; r < r8; r += 8)
    for (int64_t c = 0; c < c8; c += 8) Transpose8x8(src + r * lds + c, lds, dst + c * ldd + r, ldd);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = r < r8 ? c8 : 0; c < cols; ++c) dst[c * ldd + r] = src[r * lds + c];
}

// c (rows x d, ldc) = alpha a b over k_len: a row-major (lda), b's rows ldb apart (d columns): SmallTile256's
// blocks of up to 6 rows, 16 columns a tile, the last masked where d is not a multiple of 16.
__attribute__((target("avx2,fma"))) void SmallProduct(const float* a, int64_t lda, const float* b, int64_t ldb, int64_t k_len, float* c, int64_t ldc,
                                                      int64_t rows, int64_t d, float alpha) {
  const int last = static_cast<int>(d - (d - 1) / 16 * 16);
  const __m256i all = _mm256_set1_epi32(-1), lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(last), lane), m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(last - 8), lane);
  for (int64_t r = 0, block = 0; r < rows; r += BlockRows(rows, block), ++block) {
    const int n = BlockRows(rows, block);
    for (int64_t g = 0; g < d; g += 16) {
      const bool partial = g + 16 > d;
      SmallTileFor(n, partial)(a + r * lda, lda, b + g, ldb, k_len, c + r * ldc + g, ldc, alpha, partial ? m0 : all, partial ? m1 : all);
    }
  }
}

// x^T of a head's [len, d] rows (ld apart) into [d, len16], zero past len: the 16-column groups of scores-like
// products (q k^T, dO v^T) read it as rows.
void HeadTransposed(const float* x, int64_t ld, int64_t len, int64_t d, float* xt, int64_t len16) {
  TransposeSmall(x, len, d, ld, xt, len16);
  for (int64_t c = 0; c < d; ++c) std::fill(xt + c * len16 + len, xt + (c + 1) * len16, 0.0f);
}

// c (rows x len16, rows len16 apart) = alpha a xt over d: a row-major (lda), xt a head transposed (HeadTransposed):
// every 16-column group whole (xt is zero past len). Scores-like products: q k^T, dO v^T.
__attribute__((target("avx2,fma"))) void ByTransposedHead(const float* a, int64_t lda, const float* xt, int64_t len16, int64_t d, float* c, int64_t rows,
                                                          float alpha) {
  const __m256i all = _mm256_set1_epi32(-1);
  for (int64_t r = 0, block = 0; r < rows; r += BlockRows(rows, block), ++block) {
    const int n = BlockRows(rows, block);
    for (int64_t g = 0; g < len16; g += 16) SmallTileFor(n, false)(a + r * lda, lda, xt + g, len16, d, c + r * len16 + g, len16, alpha, all, all);
  }
}

// softmax(scale q k^T) of one pair into scratch: [lq, lk16] rows (returned), after k^T ([d, lk16]).
__attribute__((target("avx2,fma"))) float* PairProbabilities(const float* q, int64_t ldq, const float* k, int64_t ldkv, int64_t lq, int64_t lk, int64_t d,
                                                             float scale, std::vector<float>& scratch) {
  const int64_t lk16 = (lk + 15) / 16 * 16;
  scratch.resize(static_cast<size_t>((d + lq) * lk16));
  float* kt = scratch.data();
  float* p = kt + d * lk16;
  HeadTransposed(k, ldkv, lk, d, kt, lk16);
  ByTransposedHead(q, ldq, kt, lk16, d, p, lq, scale);
  SoftmaxRowsAvx2(p, lq, lk, lk16);
  return p;
}

__attribute__((target("avx2,fma"))) void AttentionPairAvx2(const float* q, int64_t ldq, const float* k, const float* v, int64_t ldkv, int64_t lq,
                                                           int64_t lk, int64_t d, float scale, float* out, int64_t ldo, std::vector<float>& scratch) {
  const float* p = PairProbabilities(q, ldq, k, ldkv, lq, lk, d, scale, scratch);
  SmallProduct(p, (lk + 15) / 16 * 16, v, ldkv, lk, out, ldo, lq, d, 1.0f);
}

// Training's forward for one (sequence, head) pair: AttentionPairAvx2's probabilities, P kept
// ([lq, lk] at probs), with dropout its mask kept (element first_index + i * lk + j of the sequence's, a byte each at
// mask: a quarter of P' in memory) and P' = P mask / (1 - p), then P' v.
__attribute__((target("avx2,fma"))) void AttentionPairTrainAvx2(const float* q, int64_t ldq, const float* k, const float* v, int64_t ldkv, int64_t lq,
                                                                int64_t lk, int64_t d, float scale, float* probs, uint8_t* mask, uint64_t seed,
                                                                int64_t first_index, uint64_t keep_from, float drop_scale, float* out, int64_t ldo,
                                                                std::vector<float>& scratch) {
  const int64_t lk16 = (lk + 15) / 16 * 16;
  float* p = PairProbabilities(q, ldq, k, ldkv, lq, lk, d, scale, scratch);
  for (int64_t i = 0; i < lq; ++i) {
    float* row = p + i * lk16;
    std::memcpy(probs + i * lk, row, static_cast<size_t>(lk) * sizeof(float));
    if (mask) {
      const int64_t base = first_index + i * lk;
      uint8_t* keep = mask + i * lk;
      for (int64_t j = 0; j < lk; ++j) row[j] = row[j] * ((keep[j] = DropoutKeeps(seed, base + j, keep_from)) ? drop_scale : 0.0f);
    }
  }
  SmallProduct(p, lk16, v, ldkv, lk, out, ldo, lq, d, 1.0f);
}

// Its backward: P' again from P and the mask (the forward's operations), dP' = dO v^T; dS = P' dP' - P rowsum(P' dP')
// (softmax's backward through dropout); dq = scale dS k, dk = scale dS^T q, dv = P'^T dO. dq's rows are ldq apart,
// dk's and dv's ldkv (the layout of q, k and v).
__attribute__((target("avx2,fma"))) void AttentionPairBackwardAvx2(const float* q, int64_t ldq, const float* k, const float* v, int64_t ldkv,
                                                                   int64_t lq, int64_t lk, int64_t d, float scale, const float* probs,
                                                                   const uint8_t* mask, float drop_scale, const float* dout, int64_t ldg,
                                                                   float* dq, float* dk, float* dv, std::vector<float>& scratch) {
  const int64_t lk16 = (lk + 15) / 16 * 16;
  scratch.resize(static_cast<size_t>(d * lk16 + lq * lk16 + lk * lq + (mask ? lq * lk : 0)));
  float* vt = scratch.data();
  float* ds = vt + d * lk16;  // dP', then dS: [lq, lk16]
  float* t = ds + lq * lk16;  // P'^T, then dS^T: [lk, lq]
  float* dropped = t + lk * lq;
  if (mask) ReadMask(probs, dropped, mask, 0, lq * lk, drop_scale);
  const float* pd = mask ? dropped : probs;
  HeadTransposed(v, ldkv, lk, d, vt, lk16);
  ByTransposedHead(dout, ldg, vt, lk16, d, ds, lq, 1.0f);
  TransposeSmall(pd, lq, lk, lk, t, lq);
  SmallProduct(t, lq, dout, ldg, lq, dv, ldkv, lk, d, 1.0f);
  for (int64_t i = 0; i < lq; ++i) SoftmaxDropoutBackward(ds + i * lk16, pd + i * lk, probs + i * lk, 1, lk);
  SmallProduct(ds, lk16, k, ldkv, lk, dq, ldq, lq, d, scale);
  TransposeSmall(ds, lq, lk, lk16, t, lq);
  SmallProduct(t, lq, q, ldq, lq, dk, ldkv, lk, d, scale);
}
}  // namespace
#endif

#ifdef BERT_PANELS_X86
namespace {
// a . b over n floats: four 8-lane accumulators, the tail one at a time.
__attribute__((target("avx2,fma"))) float DotAvx2(const float* a, const float* b, int64_t n) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int j = 0; j < 4; ++j) acc[j] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8 * j), _mm256_loadu_ps(b + i + 8 * j), acc[j]);
  for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc[0]);
  float lanes[8];
  _mm256_storeu_ps(lanes, _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  float sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// y += sum over the `rows` rows r of w (ld apart) of a[r] w_r, four rows a pass (y stays in L1; w streams).
__attribute__((target("avx2,fma"))) void WeightedRowsAvx2(const float* a, const float* w, int64_t ld, int64_t rows, int64_t n, float* y) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float* w0 = w + r * ld;
    const __m256 a0 = _mm256_set1_ps(a[r]), a1 = _mm256_set1_ps(a[r + 1]), a2 = _mm256_set1_ps(a[r + 2]), a3 = _mm256_set1_ps(a[r + 3]);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      __m256 v = _mm256_loadu_ps(y + i);
      v = _mm256_fmadd_ps(a0, _mm256_loadu_ps(w0 + i), v);
      v = _mm256_fmadd_ps(a1, _mm256_loadu_ps(w0 + ld + i), v);
      v = _mm256_fmadd_ps(a2, _mm256_loadu_ps(w0 + 2 * ld + i), v);
      v = _mm256_fmadd_ps(a3, _mm256_loadu_ps(w0 + 3 * ld + i), v);
      _mm256_storeu_ps(y + i, v);
    }
    for (; i < n; ++i) y[i] += a[r] * w0[i] + a[r + 1] * w0[ld + i] + a[r + 2] * w0[2 * ld + i] + a[r + 3] * w0[3 * ld + i];
  }
  for (; r < rows; ++r) {
    const float* wr = w + r * ld;
    const __m256 ar = _mm256_set1_ps(a[r]);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(ar, _mm256_loadu_ps(wr + i), _mm256_loadu_ps(y + i)));
    for (; i < n; ++i) y[i] += a[r] * wr[i];
  }
}
}  // namespace
#endif

bool FirstTokenKernels() { return VectorLoops() && !UnfusedAttention(); }

void FirstTokenHead(const float* q, const float* wk, const float* wv, const float* bv, const float* x, int64_t len, int64_t H, int64_t d,
                    float scale, float* out, std::vector<float>& scratch) {
  TORCH_CHECK(FirstTokenKernels(), "FirstTokenHead: no kernel for this CPU");
#ifdef BERT_PANELS_X86
  scratch.assign(static_cast<size_t>(2 * H + d + len), 0.0f);
  float *u = scratch.data(), *s = u + H, *qs = s + H, *p = qs + d;
  for (int64_t c = 0; c < d; ++c) qs[c] = q[c] * scale;  // the scale on the query side, as the operators' form takes it
  WeightedRowsAvx2(qs, wk, H, d, H, u);                   // u = Wk_h^T (scale q_h)
  for (int64_t t = 0; t < len; ++t) p[t] = DotAvx2(u, x + t * H, H);
  SoftmaxRowsAvx2(p, 1, len, len);
  WeightedRowsAvx2(p, x, H, len, H, s);  // s = sum_t p_t x_t
  for (int64_t c = 0; c < d; ++c) out[c] = DotAvx2(wv + c * H, s, H) + (bv ? bv[c] : 0.0f);
#else
  (void)q, (void)wk, (void)wv, (void)bv, (void)x, (void)len, (void)H, (void)d, (void)scale, (void)out, (void)scratch;
#endif
}

bool AttentionKernels() { return CpuIsa() == Isa::kAvx2; }

void AttentionPair(const float* q, int64_t ldq, const float* k, const float* v, int64_t ldkv, int64_t lq, int64_t lk, int64_t d, float scale,
                   float* out, int64_t ldo, std::vector<float>& scratch) {
  TORCH_CHECK(AttentionKernels(), "AttentionPair: no kernel for this CPU");
#ifdef BERT_PANELS_X86
  AttentionPairAvx2(q, ldq, k, v, ldkv, lq, lk, d, scale, out, ldo, scratch);
#else
  (void)q, (void)ldq, (void)k, (void)v, (void)ldkv, (void)lq, (void)lk, (void)d, (void)scale, (void)out, (void)ldo, (void)scratch;
#endif
}

void AttentionPairTrain(const float* q, int64_t ldq, const float* k, const float* v, int64_t ldkv, int64_t lq, int64_t lk, int64_t d, float scale,
                        float* probs, uint8_t* mask, uint64_t seed, int64_t first_index, double p, float* out, int64_t ldo,
                        std::vector<float>& scratch) {
  TORCH_CHECK(AttentionKernels(), "AttentionPairTrain: no kernel for this CPU");
#ifdef BERT_PANELS_X86
  AttentionPairTrainAvx2(q, ldq, k, v, ldkv, lq, lk, d, scale, probs, mask, seed, first_index, DropoutKeepFrom(p), static_cast<float>(1.0 / (1.0 - p)),
                         out, ldo, scratch);
#else
  (void)q, (void)ldq, (void)k, (void)v, (void)ldkv, (void)lq, (void)lk, (void)d, (void)scale, (void)probs, (void)mask, (void)seed,
      (void)first_index, (void)p, (void)out, (void)ldo, (void)scratch;
#endif
}

void AttentionPairBackward(const float* q, int64_t ldq, const float* k, const float* v, int64_t ldkv, int64_t lq, int64_t lk, int64_t d, float scale,
                           const float* probs, const uint8_t* mask, double p, const float* dout, int64_t ldg, float* dq, float* dk, float* dv,
                           std::vector<float>& scratch) {
  TORCH_CHECK(AttentionKernels(), "AttentionPairBackward: no kernel for this CPU");
#ifdef BERT_PANELS_X86
  AttentionPairBackwardAvx2(q, ldq, k, v, ldkv, lq, lk, d, scale, probs, mask, static_cast<float>(1.0 / (1.0 - p)), dout, ldg, dq, dk, dv, scratch);
#else
  (void)q, (void)ldq, (void)k, (void)v, (void)ldkv, (void)lq, (void)lk, (void)d, (void)scale, (void)probs, (void)mask, (void)p, (void)dout, (void)ldg,
      (void)dq, (void)dk, (void)dv, (void)scratch;
#endif
}

at::Tensor PanelLinear(const at::Tensor& x, const at::Tensor& panels, int64_t out_features, const at::Tensor& bias, PanelAct act,
                       const at::Tensor* residual) {
  const Isa isa = CpuIsa();
  TORCH_CHECK(isa != Isa::kNone && PanelFuses(act), "PanelLinear: no kernel for this CPU or activation");
  const int64_t K = panels.size(1), N = out_features;
  TORCH_CHECK(x.size(-1) == K && x.scalar_type() == at::kFloat && panels.size(0) * kPanel >= N && panels.is_contiguous() &&
                  reinterpret_cast<uintptr_t>(panels.data_ptr()) % 64 == 0, "PanelLinear: shapes");
  const at::Tensor rows = x.reshape({-1, K}).contiguous();
  const int64_t M = rows.size(0);
  std::vector<int64_t> shape = x.sizes().vec();
  shape.back() = N;
  at::Tensor y = at::empty({M, N}, rows.options());
  at::Tensor res, b;
  if (residual) res = residual->reshape({M, N}).to(at::kFloat).contiguous();
  if (bias.defined()) b = bias.to(at::kFloat).contiguous();
  const float* xp = rows.data_ptr<float>();
  const float* pp = panels.data_ptr<float>();
  const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
  float* yp = y.data_ptr<float>();
  const Epilogue ep{act, res.defined() ? res.data_ptr<float>() : nullptr};
  const int64_t P = panels.size(0);
  // Tiles: each panel's rows in `chunks` runs, enough tiles for every thread when the panels alone are too few.
  const int64_t threads = at::get_num_threads();
  // and at most kChunkRows rows each: a run's slice of x (rows x 512 floats) then stays in L2 while the panel's four
  // groups pass over it (training's 418 rows in one run streamed it from memory four times: 33 against 55 GFLOP/s).
  const int64_t chunks = std::max<int64_t>((M + kChunkRows - 1) / kChunkRows,
                                           std::max<int64_t>(1, std::min<int64_t>((kTilesPerThread * threads + P - 1) / P, (M + 47) / 48)));
  const int64_t per_chunk = (M + chunks - 1) / chunks, tiles = P * chunks;
  // Each thread owns a contiguous run of tiles (consecutive panels: it prefetches the next while on one) and, its own
  // done, takes the last tiles of another's: a core slowed by other work (a busy machine, an app's other threads)
  // then ends with fewer tiles instead of making the others wait for it at the region's end. A run is [front, back)
  // in one atomic word: the owner advances front, a thief lowers back, each by compare-and-swap.
  const int64_t workers = std::min(threads, tiles);
  std::vector<std::atomic<uint64_t>> runs(static_cast<size_t>(std::max<int64_t>(workers, 1)));
  for (int64_t w = 0; w < workers; ++w) runs[static_cast<size_t>(w)].store(static_cast<uint64_t>(w * tiles / workers) << 32 | static_cast<uint64_t>((w + 1) * tiles / workers));
  auto take = [&](int64_t w, bool front) -> int64_t {  // a tile of run w, or -1 when it is empty
    std::atomic<uint64_t>& run = runs[static_cast<size_t>(w)];
    uint64_t v = run.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t f = v >> 32, b = v & 0xffffffffu;
      if (f >= b) return -1;
      const uint64_t next = front ? (f + 1) << 32 | b : f << 32 | (b - 1);
      if (run.compare_exchange_weak(v, next, std::memory_order_relaxed)) return static_cast<int64_t>(front ? f : b - 1);
    }
  };
  auto tile = [&](int64_t t, int64_t next_t, std::vector<float>& scratch) {
    const int64_t p = t / chunks, m0 = (t % chunks) * per_chunk, m1 = std::min(M, m0 + per_chunk);
    const float* np = next_t >= 0 && next_t < tiles ? pp + (next_t / chunks) * K * kPanel : nullptr;
    if (m0 < m1) PanelRows(isa, xp, K, pp + p * K * kPanel, p * kPanel, N, bp, yp, m0, m1, ep, scratch, np);
  };
  if (M > 0)
    at::parallel_for(0, workers, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> scratch;
      for (int64_t w = begin; w < end; ++w) {
        const int64_t run_end = (w + 1) * tiles / workers;
        for (int64_t t = take(w, true); t >= 0; t = take(w, true)) tile(t, t + 1 < run_end ? t + 1 : -1, scratch);
        for (int64_t o = 1; o < workers; ++o)
          for (int64_t t = take((w + o) % workers, false); t >= 0; t = take((w + o) % workers, false)) tile(t, -1, scratch);
      }
    });
  return y.view(shape);
}

}  // namespace bert
