// The BERT encoder as modeling_bert.py builds it: one struct per module, members named as the checkpoint's keys
// (bert.encoder.layer.0.attention.self.query.weight is model.bert.encoder.layer[0].attention.self.query.weight
// here), each parameter registered once through a Path. The families built on the same post-norm encoder (RoBERTa,
// XLM-RoBERTa, ELECTRA, DistilBERT: modeling_roberta.cc, modeling_electra.cc, modeling_distilbert.cc) use these
// modules under their own keys (EncoderLayout) and add their embeddings' rules and their heads.
#pragma once
#include <ATen/ATen.h>
#include <array>
#include <cmath>
#include <functional>
#include <optional>
#include <unordered_map>
#include "session.h"
#include "var_store.h"

namespace bert {

// Inference's fp32 products over weights packed into 64-column panels (panel_gemm.cc): where ATen's CPU capability
// is AVX512 or AVX2 (ATEN_CPU_CAPABILITY lowers both alike; BERT_TRAINER_NO_PANELS=1 turns them off).
enum class PanelAct { kNone, kGeluErf, kRelu };
bool PanelProductsAvailable();
const char* PanelProductsKernel();  // "avx512", "avx2" or "none"
bool PanelFuses(PanelAct act);  // GELU needs libtorch's vector exp (SLEEF); without it GELU runs after the product
// Whether ATen's kernel level is AVX2 or above, where the AVX2 loops below run (ATEN_CPU_CAPABILITY lowers it).
bool VectorLoops();
// torch.optim.AdamW(fused=True)'s update, as libtorch's fused CPU kernel computes it where VectorLoops (its vector
// path, op for op), of the n rows `rows` of a contiguous fp32 table [*, dim] (dim a multiple of 8) and its moments,
// in place; grads[i] is row i's gradient (dim floats), divided by *grad_scale where that is set, as the kernel's.
struct AdamWRowArgs {
  double lr, beta1, beta2, weight_decay, eps;
  int64_t step;
  const float* grad_scale;
};
void AdamWRows(float* param, float* exp_avg, float* exp_avg_sq, int64_t dim, const int64_t* rows, const float* const* grads, int64_t n,
               const AdamWRowArgs& a);
// The 2-norm of CPU fp32 contiguous tensors' elements together (clip_grad_norm_'s total) in one parallel pass over
// fixed blocks, summed in double in block order: the same result whatever the thread count. (libtorch's norm of a
// whole tensor runs on one thread, its one output: 4-5 ms of a MiniLM step with the other core waiting.)
double TotalNorm(const std::vector<at::Tensor>& tensors);
// GELU's erf form and its gradient over a CPU fp32 tensor with the panel products' vector erf (training's GELU on
// the CPU: GeluErfKernels, where ATen's kernel level is AVX2 or above).
bool GeluErfKernels();
at::Tensor GeluErf(const at::Tensor& x);
at::Tensor GeluErfBackward(const at::Tensor& grad, const at::Tensor& x);
// Softmax of `rows` rows of n floats in place, as libtorch's computes it (minus the row's max, exp, times 1 / sum),
// with the AVX2 loop where ATen's kernel level is AVX2 or above (evaluation's attention).
void SoftmaxRows(float* p, int64_t rows, int64_t n);
// Evaluation's attention for one (sequence, head) pair where AttentionKernels (AVX2-only CPUs): softmax(scale q k^T) v
// of lq queries over lk keys and values of d columns, rows ldq and ldkv apart, into out (rows ldo apart); scratch
// holds k^T and the scores.
bool AttentionKernels();
void AttentionPair(const float* q, int64_t ldq, const float* k, const float* v, int64_t ldkv, int64_t lq, int64_t lk, int64_t d, float scale,
                   float* out, int64_t ldo, std::vector<float>& scratch);
// Training's attention for one pair where AttentionKernels: the same product, the probabilities kept at probs ([lq, lk])
// and, with dropout p > 0 (mask not null), dropout's mask at mask (a byte per element: the sequence's element
// first_index + i * lk + j, DropoutKeeps of seed) and P' multiplied into v; and its backward from dout (rows ldg
// apart) into dq (rows ldq apart), dk and dv (ldkv), mask null where there was no dropout.
void AttentionPairTrain(const float* q, int64_t ldq, const float* k, const float* v, int64_t ldkv, int64_t lq, int64_t lk, int64_t d, float scale,
                        float* probs, uint8_t* mask, uint64_t seed, int64_t first_index, double p, float* out, int64_t ldo,
                        std::vector<float>& scratch);
void AttentionPairBackward(const float* q, int64_t ldq, const float* k, const float* v, int64_t ldkv, int64_t lq, int64_t lk, int64_t d, float scale,
                           const float* probs, const uint8_t* mask, double p, const float* dout, int64_t ldg, float* dq, float* dk, float* dv,
                           std::vector<float>& scratch);
// Sequence classification's last layer, one sequence and head (FirstTokenContext), where FirstTokenKernels (AVX2 and
// up, unless BERT_TRAINER_UNFUSED_ATTENTION=1): u = Wk_h^T (scale q), p = softmax_t(u . x_t), out = Wv_h sum_t p_t x_t
// + bv. wk, wv: the head's d rows of the key and value weights ([d, H]); x: the sequence's [len, H] rows.
bool FirstTokenKernels();
void FirstTokenHead(const float* q, const float* wk, const float* wv, const float* bv, const float* x, int64_t len, int64_t H, int64_t d,
                    float scale, float* out, std::vector<float>& scratch);
at::Tensor PackPanels(const at::Tensor& weight);  // [out, in] -> [ceil(out / 64), in, 64], zero-padded
at::Tensor PackPanelsTransposed(const at::Tensor& weight);  // the panels of weight^T ([in, out]: x W's), without the transpose
// x^T of a [M, N] matrix, contiguous [N, M]; with `column_sums`, x.sum(0) from the same pass (training's bias gradient).
at::Tensor TransposeRows(const at::Tensor& x, at::Tensor* column_sums = nullptr);
// act(x W^T + b), or x W^T + b + residual (act kNone then).
at::Tensor PanelLinear(const at::Tensor& x, const at::Tensor& panels, int64_t out_features, const at::Tensor& bias, PanelAct act,
                       const at::Tensor* residual = nullptr);

// Evaluation's kept copies of the weights, each valid while its parameter's version counter holds (an optimizer
// step or a load bumps it): casts to the autocast dtype (PyTorch casts every weight again on every forward; for
// batch-1 inference those casts cost more than the math) and, on the CPU, each matrix reordered once into oneDNN's
// blocked layout (libtorch's fp32 product repacks the weight inside every call: 1.3-1.8x the time of a prepacked
// product at evaluation's shapes on these CPUs).
class WeightCache {
 public:
  explicit WeightCache(bool pack) : pack_(pack) {}
  const at::Tensor& cast(const at::Tensor& w, at::ScalarType dtype);
  const at::Tensor& packed(const at::Tensor& w, at::ScalarType dtype);  // a [out, in] weight for PackedLinear
  // Whether packed() reorders into oneDNN's blocked layout or hands PackedLinear the plain weight (as training's
  // forward does). A model that trains evaluates on the plain weights: each optimizer step would make the
  // reordered copies stale (a copy of every matrix per evaluation), and its products reuse the primitives
  // training's forward made at the same shapes (oneDNN keeps ~0.25 MB per cached primitive) at 1-5% more time.
  void set_reorder(bool reorder) {
    if (reorder != reorder_) packs_.clear();
    reorder_ = reorder;
  }
  bool reorders() const { return reorder_; }
  // Whether packed() packs `dtype` for PanelLinear (fp32 where the CPU has its kernels) instead of oneDNN's layout.
  bool panels(at::ScalarType dtype) const { return pack_ && reorder_ && dtype == at::kFloat && PanelProductsAvailable(); }
  // Panels of a weight rounded to bf16, for bf16 evaluation on the panel products where Bf16OnPanels.
  const at::Tensor& bf16_panels(const at::Tensor& w);
  // A Linear's weight quantized to int8 and prepacked with its bias for QuantizedLinear.
  const c10::IValue& quantized(const at::Tensor& w, const at::Tensor& bias);
  bool packs() const { return pack_; }
  void clear() { casts_.clear(); packs_.clear(); bf16_panels_.clear(); quantized_.clear(); }

 private:
  struct Kept { at::Tensor value; int64_t version; at::ScalarType dtype; };
  using Map = std::unordered_map<const c10::TensorImpl*, Kept>;
  enum class Form { kCast, kPacked, kBf16Panels };
  const at::Tensor& Keep(Map& map, const at::Tensor& w, at::ScalarType dtype, Form form);
  bool pack_, reorder_ = true;
  Map casts_, packs_, bf16_panels_;
  struct Quantized { c10::IValue packed; int64_t version; };
  std::unordered_map<const c10::TensorImpl*, Quantized> quantized_;
};

// Dynamic int8 quantization as torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8) does
// it: each Linear's weight per tensor, symmetric (scale = max|w| / 127.5, as MinMaxObserver's per_tensor_symmetric),
// packed by libtorch's quantized::linear_prepack; each product quantizes its input over the whole input tensor
// (uint8, 7 or 8 bits: Int8ReduceRange) and returns fp32 (quantized::linear_dynamic, fbgemm).
// Where the CPU has VNNI (AVX512-VNNI, AVX-VNNI; AMX machines have it too) fbgemm's int8 products accumulate in 32
// bits, and each input uses the full 8-bit range (reduce_range=False, as onnxruntime's DynamicQuantizeLinear): on
// MiniLM fine-tuned on MRPC, 0.7696 accuracy against fp32's 0.7672, where the 7-bit range PyTorch always takes gave
// 0.7500. Elsewhere (AVX2 without VNNI) the pairwise 16-bit sums can saturate, so the range is reduced to 7 bits as
// PyTorch's nn.quantized.dynamic.Linear does. BERT_TRAINER_INT8_REDUCE_RANGE=0|1 overrides.
bool Int8ReduceRange();
bool CanQuantize();  // libtorch registers the quantized operators (a CPU build with fbgemm or oneDNN)
// Linear weights (one, or parts stacked along the output: query, key, value) and the bias, quantized and prepacked.
c10::IValue QuantizeLinear(const std::vector<at::Tensor>& weights, const at::Tensor& bias);
at::Tensor QuantizedLinear(const at::Tensor& x, const c10::IValue& packed);

// oneDNN's CPU matrix product over a weight WeightCache::packed made: act(x W^T + b), or x W^T + b + residual.
// `act` is a oneDNN post-op name ("none", "gelu", "relu"), `algorithm` its variant ("none" = erf GELU, "tanh").
bool CanPackWeights();  // libtorch was built with oneDNN and registers its prepacked-linear operators
// oneDNN's bf16 products on this CPU: mkldnn::_is_mkldnn_bf16_supported, the check PyTorch makes (AVX-512 BW/VL/DQ
// or AVX-NE-CONVERT, as oneDNN sees the CPU: ONEDNN_MAX_CPU_ISA=AVX2 makes any machine answer as an AVX2-only one).
bool CpuHasPackedBf16();
at::Tensor PackedLinear(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& bias, const char* act = "none",
                        const char* algorithm = "");
at::Tensor PackedLinearAdd(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& bias, const at::Tensor& residual);

// Training's fp32 products on the CPU through oneDNN where its kernels beat MKL's sgemm at training's shapes (an
// AVX-512 CPU: forward and input gradient 15-20% faster measured at MiniLM's shapes; on AVX2 they are even with MKL's,
// and the panel products beat both: TrainOnPanels). BERT_TRAINER_NO_PACK=1 turns it off with evaluation's prepacking.
bool TrainOnOneDnn();
// Training's fp32 products on the CPU elsewhere, where the AVX2 panel kernels run (PanelProducts): forward and
// input gradient on them, the weight gradient on MKL.
bool TrainOnPanels();
// bf16 autocast's products on the fp32 panel kernels over operands rounded to bf16, where oneDNN has no bf16
// kernels for the CPU (AVX2-only; libtorch's bf16 products are a scalar loop there): training and evaluation.
bool Bf16OnPanels();
// libtorch's CPU tensors through an allocator that keeps freed blocks for reuse (native/cpu_allocator.cc), unless
// BERT_TRAINER_CPU_ALLOCATOR=default; its kept blocks back to glibc; "keeping" or "default".
void InstallCpuAllocator();
void DropKeptCpuBlocks();
const char* CpuAllocatorName();
// The keeping allocator's requests of a keepable size (64 KB-32 MB) so far: {served from kept blocks, from glibc}.
std::array<int64_t, 2> CpuAllocatorCounts();

// The rows of an embedding table a training pass gathers: with `sparse` set, a leaf tensor of the rows (its
// gradient is scattered into the table's gradient after backward by ScatterRowGradients) instead of
// at::embedding's backward, which builds a dense zero-filled [vocab, dim] gradient every step (for MiniLM 47 MB of
// fresh pages: 12 ms of a 300 ms step).
struct GatheredRows {
  at::Tensor weight, ids, rows;
  int64_t padding_idx;
};

// What one forward pass needs besides the weights: the mode, and where the real tokens are.
struct Pass {
  bool train = false;
  bool trains = false;  // the model has an optimizer: a training pass, or an evaluation between training's steps
  double hidden_dropout = 0, attention_dropout = 0, classifier_dropout = 0;
  at::ScalarType autocast = at::ScalarType::Undefined;  // Undefined: fp32
  WeightCache* weights = nullptr;                       // evaluation only
  bool quantized = false;                               // evaluation: every Linear's product in int8 (QuantizedLinear)
  double label_smoothing = 0;                           // of the classification losses (TrainingArguments.label_smoothing_factor)
  bool keep_padding = false;                            // Unpad keeps the [batch, seq] layout (BertPreTrainedModel::keeps_padding)
  // RoBERTa's position ids: padding_idx + 1 + the count of non-pad tokens so far, padding_idx at pad tokens
  // (create_position_ids_from_input_ids); -1: 0, 1, 2... as BERT.
  int64_t position_padding_idx = -1;
  at::ScalarType dtype() const { return autocast == at::ScalarType::Undefined ? at::kFloat : autocast; }  // of products
  // Prepacked products for fp32 wherever oneDNN is there; for bf16 only where oneDNN has bf16 kernels for this CPU
  // (elsewhere its reorder refuses bf16, and autocast's plain products run instead).
  bool packed() const { return weights && weights->packs() && (dtype() == at::kFloat || CpuHasPackedBf16()); }
  // A training model's fp32 evaluation on oneDNN (plain weights: WeightCache::set_reorder): its products take
  // training's shapes (token rows rounded as training rounds them, `trains`; no fused activation or residual) so
  // that they run on the primitives training's forward made. Exact row counts and fused variants gave every
  // evaluation batch four primitives of its own: 193 on MRPC's validation set, ~0.5 MB each, +100 MB of RSS.
  bool shares_training_products() const { return packed() && !weights->reorders() && dtype() == at::kFloat && !quantized; }
  // An inference model's fp32 products on the CPU: PanelLinear over WeightCache::packed's panels.
  bool panels() const { return packed() && !quantized && weights->panels(dtype()); }
  // With dynamic padding a batch is often a third padding; every layer but attention works token by token, so
  // those layers run on the real tokens only ("unpadded"); attention runs per sequence on them (CPU, fp32) or on
  // the padded [batch, seq] layout.
  int64_t batch = 0, seq = 0;
  at::Tensor index;                // flat [batch*seq] positions of the token rows; undefined: all positions, in order
  std::vector<int64_t> lengths;    // row counts of the token rows' runs: each sequence's real tokens (contiguous, in
                                   // order), then Unpad's rounding rows if any; with `index` only
  at::Tensor cls;                  // row of each sequence's first token among them; undefined: row b*seq
  std::optional<at::Tensor> mask;  // [batch, 1, 1, seq] key-padding mask (true = attend); none without padding
  bool unpadded() const { return index.defined(); }
  std::vector<GatheredRows>* gathered = nullptr;  // training on the CPU without data parallelism: EmbeddingRows' leaves
};

// at::linear(x, weight, bias), through oneDNN in fp32 CPU training where TrainOnOneDnn (the same sums, in another
// kernel's order).
at::Tensor TrainingLinear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const Pass& pass);

// A masked-LM head's decoder over the (tied) embedding table: at::linear, or int8 in a quantized pass (an
// nn.Linear in transformers, which quantize_dynamic quantizes too).
at::Tensor DecoderLinear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const Pass& pass);

// at::embedding(weight, ids, padding_idx), or in a pass with `gathered` a leaf of the rows recorded there (the
// gradient is the same: padding_idx's rows get none, repeated ids add in order).
at::Tensor EmbeddingRows(const at::Tensor& weight, const at::Tensor& ids, int64_t padding_idx, const Pass& pass);

// Adds each gathered leaf's gradient to its table's: into the gradient autograd made if any (a table tied to an MLM
// decoder), else as rows into `rows` (RowGradient: Optimizer::Step applies them).
void ScatterRowGradients(const std::vector<GatheredRows>& gathered, RowGradients& rows);

// Reads the batch's mask on the host and fills `pass`'s token layout; returns input ids, token type ids and
// position ids of the token rows.
std::array<at::Tensor, 3> Unpad(const Batch& batch, const at::Device& device, Pass& pass);

// softmax(q k^T / sqrt(d) + mask) v over [..., tokens, head_dim] views (mask: true = attend), with the pass's
// attention dropout.
at::Tensor Attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const std::optional<at::Tensor>& mask, const Pass& pass);

// Attention of each sequence over its own token rows (Pass::lengths' first `batch` runs) as one autograd node
// (attention.cc): the same as Attend over each sequence's [1, heads, len, head_dim] views with the pass's attention
// dropout. qkv: the rows' [tokens, 3 * hidden] (query | key | value) projections, or with first_q ([batch, hidden],
// each sequence's one query) [tokens, 2 * hidden] (key | value). CPU fp32, where libtorch has MKL
// (SequenceAttentionAvailable).
bool SequenceAttentionAvailable();
// BERT_TRAINER_UNFUSED_ATTENTION=1: libtorch's attention operators instead of SequenceAttention and the first-token
// kernels (FirstTokenKernels), the reference the tests compare them to.
bool UnfusedAttention();
at::Tensor SequenceAttention(const at::Tensor& qkv, const at::Tensor& first_q, const std::vector<int64_t>& lengths, int64_t batch,
                             int64_t heads, double attention_dropout);

using Activation = at::Tensor (*)(const at::Tensor&);
Activation ActivationOf(const std::string& hidden_act);  // transformers' ACT2FN names; throws for others
std::vector<std::string> Activations();
struct PostOp {  // oneDNN's post-op equal to an activation, and the panel products' where they have it
  const char* attr;
  const char* algorithm;
  std::optional<PanelAct> panel;
};
const PostOp* PostOpOf(const std::string& hidden_act);      // nullptr where oneDNN has none; throws as ActivationOf

struct Linear {  // nn.Linear: weight [out, in], bias [out] (undefined: bias=False)
  at::Tensor weight, bias;
  Linear(const Path& p, int64_t in, int64_t out, bool with_bias = true);  // weight ~ N(0, initializer_range)
  Linear(const Path& p, int64_t in, int64_t out, bool with_bias, double std, double cutoff);  // truncated normal
  at::Tensor forward(const at::Tensor& x, const Pass& pass) const;
  // Evaluation on the CPU fuses the activation (act(x W^T + b)) or the residual (x W^T + b + residual) into the
  // product's output; elsewhere these are the separate operations.
  at::Tensor forward(const at::Tensor& x, const Pass& pass, Activation act, const PostOp* post_op) const;
  at::Tensor forward_add(const at::Tensor& x, const at::Tensor& residual, const Pass& pass) const;
};

// Linears over the same input as one matrix product (the same sums as separate ones): query, key and value, or key
// and value. Training concatenates on each forward (autograd must reach the parameters); evaluation keeps the
// concatenation (cast to the autocast dtype, or packed on the CPU) while the parameters' version counters hold.
class StackedLinear {
 public:
  at::Tensor forward(const at::Tensor& x, const Pass& pass, std::initializer_list<const Linear*> parts);
  void drop_cache() { weight_ = bias_ = at::Tensor(); quantized_ = c10::IValue(); }

 private:
  at::Tensor weight_, bias_;
  std::vector<int64_t> versions_;
  bool reordered_ = false;  // weight_ in oneDNN's blocked layout (else the plain concatenation, for either product)
  bool panels_ = false;     // weight_ packed for PanelLinear (WeightCache::panels; bf16: Bf16OnPanels)
  at::ScalarType dtype_ = at::ScalarType::Undefined;  // the pass's product dtype weight_ was made for
  c10::IValue quantized_;  // the parts quantized and stacked (QuantizeLinear), while quantized_versions_ hold
  std::vector<int64_t> quantized_versions_;
};

struct BertLayerNorm {  // nn.LayerNorm: weight, bias (undefined: bias=False)
  at::Tensor weight, bias;
  double eps;
  BertLayerNorm(const Path& p, int64_t dim, double eps, bool with_bias = true);
  at::Tensor forward(const at::Tensor& x) const;
};

// Where a family keeps each module of an encoder layer (relative to the layer), and how the layer differs.
struct LayerNames {
  const char *query, *key, *value, *attention_dense, *attention_norm, *intermediate, *output_dense, *output_norm;
  bool attention_output_dropout;  // dropout on the attention's output projection (not in DistilBERT)
};
inline constexpr LayerNames kBertLayerNames{"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                                            "attention.output.LayerNorm", "intermediate.dense", "output.dense", "output.LayerNorm", true};

// A family's encoder: where its parts are under the base model's prefix.
struct EncoderLayout {
  const char* encoder = "encoder";  // the layers are <encoder>.layer.N (DistilBERT: transformer)
  LayerNames layer = kBertLayerNames;
  bool position_padding = false;    // RoBERTa's position ids and padding rows (Pass::position_padding_idx)
};

// Word, position and (when type_vocab_size > 0) token type embeddings of embedding_size, summed, LayerNorm, dropout.
struct BertEmbeddings {
  at::Tensor word_embeddings, position_embeddings, token_type_embeddings;  // "<name>.weight"; no token types: undefined
  BertLayerNorm LayerNorm;
  int64_t pad_token_id;
  bool position_padding;  // RoBERTa: the position embeddings' padding_idx is pad_token_id too
  BertEmbeddings(const Path& p, const Config& c, bool position_padding);
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& token_type_ids, const at::Tensor& position_ids, const Pass& pass) const;
};

struct BertSelfAttention {
  Linear query, key, value;
  int64_t num_attention_heads;
  BertSelfAttention(const Path& p, const Config& c, const LayerNames& n);
  // The context, [tokens, hidden]; with `first_tokens` ([batch, hidden], each sequence's first token among
  // hidden_states) only theirs: their queries against every token's keys and values, [batch, hidden].
  at::Tensor forward(const at::Tensor& hidden_states, const Pass& pass, const at::Tensor* first_tokens = nullptr);
  void drop_cache() { qkv_.drop_cache(); kv_.drop_cache(); }

 private:
  StackedLinear qkv_, kv_;
};

struct BertSelfOutput {
  Linear dense;
  BertLayerNorm LayerNorm;
  bool dropout;
  BertSelfOutput(const Path& p, const Config& c, const LayerNames& n);
  at::Tensor forward(const at::Tensor& hidden_states, const at::Tensor& input_tensor, const Pass& pass) const;
};

// The attention block and the feed-forward block are registered under the layer's path with LayerNames' keys.
struct BertAttention {
  BertSelfAttention self;
  BertSelfOutput output;
  BertAttention(const Path& layer, const Config& c, const LayerNames& n) : self(layer, c, n), output(layer, c, n) {}
  at::Tensor forward(const at::Tensor& hidden_states, const Pass& pass, const at::Tensor* first_tokens = nullptr) {
    return output.forward(self.forward(hidden_states, pass, first_tokens), first_tokens ? *first_tokens : hidden_states, pass);
  }
};

struct BertIntermediate {
  Linear dense;
  Activation intermediate_act_fn;
  const PostOp* post_op;  // intermediate_act_fn as oneDNN fuses it, or nullptr
  BertIntermediate(const Path& layer, const Config& c, const LayerNames& n);
  at::Tensor forward(const at::Tensor& hidden_states, const Pass& pass) const { return dense.forward(hidden_states, pass, intermediate_act_fn, post_op); }
};

struct BertOutput {
  Linear dense;
  BertLayerNorm LayerNorm;
  BertOutput(const Path& layer, const Config& c, const LayerNames& n);
  at::Tensor forward(const at::Tensor& hidden_states, const at::Tensor& input_tensor, const Pass& pass) const;
};

struct BertLayer {
  BertAttention attention;
  BertIntermediate intermediate;
  BertOutput output;
  BertLayer(const Path& p, const Config& c, const LayerNames& n) : attention(p, c, n), intermediate(p, c, n), output(p, c, n) {}
  // With `first_tokens`, the layer's output for those tokens alone (BertSelfAttention::forward).
  at::Tensor forward(const at::Tensor& hidden_states, const Pass& pass, const at::Tensor* first_tokens = nullptr) {
    at::Tensor attention_output = attention.forward(hidden_states, pass, first_tokens);
    return output.forward(intermediate.forward(attention_output, pass), attention_output, pass);
  }
};

struct BertEncoder {
  std::vector<BertLayer> layer;
  BertEncoder(const Path& p, const Config& c, const LayerNames& n);
};

struct BertPooler {
  Linear dense;
  BertPooler(const Path& p, const Config& c) : dense(p.sub("dense"), c.hidden_size, c.hidden_size) {}
  at::Tensor forward(const at::Tensor& first_token, const Pass& pass) const { return at::tanh(dense.forward(first_token, pass)); }
};

// The base model of every family here (BertModel, RobertaModel, ElectraModel, DistilBertModel): embeddings,
// ELECTRA's projection when its embeddings are smaller than the hidden size, the layers, BERT's pooler if asked.
struct BertModel {
  BertEmbeddings embeddings;
  std::optional<Linear> embeddings_project;  // ELECTRA: embedding_size -> hidden_size
  BertEncoder encoder;
  std::optional<BertPooler> pooler;  // add_pooling_layer: the heads that read the pooled output have one
  EncoderLayout layout;
  BertModel(const Path& p, const Config& c, bool add_pooling_layer, const EncoderLayout& layout = {});
  // The last hidden state of every token row, [rows, hidden]: the real tokens (and Unpad's rounding rows) when
  // the pass is unpadded, else every position of [batch * seq].
  at::Tensor forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass);
  // The last hidden state of each sequence's first token, [batch, hidden]: the last layer mixes tokens only through
  // keys and values, so it computes those for every token and the rest for the first tokens alone.
  at::Tensor first_token_states(const std::array<at::Tensor, 3>& inputs, const Pass& pass);
  // The pooled output, [batch, hidden]: the pooler over first_token_states.
  at::Tensor pooled(const std::array<at::Tensor, 3>& inputs, const Pass& pass);

 private:
  at::Tensor embed(const std::array<at::Tensor, 3>& inputs, const Pass& pass);
};

// What a head gives back: its outputs by transformers' ModelOutput names (logits; start_logits, end_logits) with
// their shapes, and the loss when the batch has labels (each head owns its loss, as in modeling_bert.py).
struct HeadOutput {
  std::vector<std::pair<std::string, at::Tensor>> outputs;
  at::Tensor loss;  // undefined without labels
};

// An encoder with one head, chosen by Config::architecture. Heads that read only the pooled output keep the
// first-token shortcut; token-level heads read every real token's state.
class BertPreTrainedModel {
 public:
  static std::unique_ptr<BertPreTrainedModel> Create(const Path& root, const Config& c);  // throws for unknown names
  // The families' own constructors (modeling_<family>.cc): nullptr when the architecture is not theirs.
  static std::unique_ptr<BertPreTrainedModel> CreateBert(const Path& root, const Config& c);
  static std::unique_ptr<BertPreTrainedModel> CreateRoberta(const Path& root, const Config& c);
  static std::unique_ptr<BertPreTrainedModel> CreateElectra(const Path& root, const Config& c);
  static std::unique_ptr<BertPreTrainedModel> CreateDistilBert(const Path& root, const Config& c);
  static std::unique_ptr<BertPreTrainedModel> CreateModernBert(const Path& root, const Config& c);
  static std::unique_ptr<BertPreTrainedModel> CreateDebertaV2(const Path& root, const Config& c);
  virtual ~BertPreTrainedModel() = default;
  virtual HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& batch) = 0;
  // Question answering reads logits at every position, padding included (transformers' loss does): no unpadding.
  virtual bool keeps_padding() const { return false; }
  int64_t position_padding_idx() const { return bert_ && bert_->layout.position_padding ? bert_->embeddings.pad_token_id : -1; }
  virtual void drop_caches();  // the kept evaluation copies (a training step makes them stale)

 protected:
  explicit BertPreTrainedModel(BertModel* bert) : bert_(bert) {}
  BertModel* bert_;  // the BERT-layout encoder; nullptr for families with their own (ModernBERT, DeBERTa)
};

// The heads whose modules and computation are the same in every family, over the base model at `base` (bert,
// roberta, electra, distilbert) with the family's layout (modeling_bert.cc):
// - token classification: dropout (classifier_dropout), `classifier` per token;
// - question answering: `qa_outputs` per position (DistilBERT first applies its qa_dropout: `dropout`);
// - RoBERTa's and ELECTRA's sequence classification: dropout, `classifier.dense`, `activation` (tanh; GELU),
//   dropout, `classifier.out_proj`, on the first token's last state (no pooler).
std::unique_ptr<BertPreTrainedModel> TokenClassificationModel(const Path& root, const Config& c, const char* base, const EncoderLayout& layout);
std::unique_ptr<BertPreTrainedModel> QuestionAnsweringModel(const Path& root, const Config& c, const char* base, const EncoderLayout& layout, bool dropout);
std::unique_ptr<BertPreTrainedModel> ClassificationHeadModel(const Path& root, const Config& c, const char* base, const EncoderLayout& layout, Activation activation);

// A family whose sequence classification and multiple choice are one class (constructed with multiple_choice),
// and token classification and question answering another (with question_answering): ModernBERT's and DeBERTa's.
template <class Sequence, class Tokens, class MaskedLM>
std::unique_ptr<BertPreTrainedModel> CreateHeads(const std::string& prefix, const Path& root, const Config& c) {
  const std::string& a = c.architecture;
  if (a == prefix + "ForSequenceClassification") return std::make_unique<Sequence>(root, c, false);
  if (a == prefix + "ForMultipleChoice") return std::make_unique<Sequence>(root, c, true);
  if (a == prefix + "ForTokenClassification") return std::make_unique<Tokens>(root, c, false);
  if (a == prefix + "ForQuestionAnswering") return std::make_unique<Tokens>(root, c, true);
  if (a == prefix + "ForMaskedLM") return std::make_unique<MaskedLM>(root, c);
  return nullptr;
}

// What the heads of every family share (modeling_bert.cc).
at::Tensor Dropout(const at::Tensor& x, double p, bool train);
// Dropout's mask: one seed per call from the default CPU generator, and whether element i of the tensor it applies
// to is kept (a counter-based hash of seed and i: any thread count draws the same mask).
uint64_t DropoutSeed();
// Elementwise loops compiled for AVX-512 and AVX2 besides the baseline, the loader picking one by the CPU (the
// mask's hash is 64-bit products, which only vectorize there).
#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define BERT_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BERT_VECTOR_CLONES
#endif
inline uint64_t DropoutKeepFrom(double p) { return static_cast<uint64_t>(std::ceil(p * 16777216.0)); }
inline bool DropoutKeeps(uint64_t seed, int64_t i, uint64_t keep_from) {
  uint64_t z = seed + static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (z >> 40) >= keep_from;  // keep when a 24-bit uniform >= p
}
// y = x * (mask ? kept : 0) over [begin, end): dropout's backward, and P' again from P in attention's backward.
void ReadMask(const float* x, float* y, const uint8_t* mask, int64_t begin, int64_t end, float kept);
// Softmax's backward through dropout, `rows` rows of n: dP' in r, dS = P' * dP' - P * rowsum(P' * dP') out (pd: P',
// pr: P).
void SoftmaxDropoutBackward(float* r, const float* pd, const float* pr, int64_t rows, int64_t n);
at::Tensor IntLabels(const Batch& in, std::vector<int64_t> shape, const at::Device& device);  // int32 host labels, int64 on device
at::Tensor Repad(const at::Tensor& rows, const Pass& pass);  // token rows back to [batch * seq] (zeros at padding)
at::Tensor CrossEntropy(const at::Tensor& logits, const at::Tensor& labels, const Pass& pass);  // ignore -100, label smoothing
// The losses of a sequence-classification head for the config's problem_type (regression, multi-label, single-label).
at::Tensor SequenceClassificationLoss(const at::Tensor& logits, const Batch& in, const Config& c, const Pass& pass);
// Question answering's loss: start and end positions clamped to seq and ignored there, the mean of both.
at::Tensor SpanLoss(const at::Tensor& start_logits, const at::Tensor& end_logits, const Batch& in);
// Each sequence's first token row among the pass's token rows (Unpad's layout), [batch, hidden].
at::Tensor FirstTokenRows(const at::Tensor& rows, const Pass& pass);
// The outputs of the pooled heads from their scores: sequence classification's logits and the loss of the config's
// problem_type; multiple choice's one score per row as [examples, choices] with its cross-entropy.
HeadOutput ClassOutput(const at::Tensor& logits, const Batch& in, const Config& c, const Pass& pass);
HeadOutput ChoiceOutput(const at::Tensor& scores, const Batch& in, const Pass& pass);
// The outputs of the per-position heads from their scores, [batch * seq, n] (padding rows included): token
// classification's logits [batch, seq, n] with cross-entropy, or question answering's start and end logits with the
// span loss.
HeadOutput PositionOutput(const at::Tensor& logits, const Batch& in, const Pass& pass, bool question_answering);
// A masked-LM head's loss and logits: with labels the vocabulary product runs for the labelled rows only (`head` maps
// hidden rows to vocabulary logits); without, every position's logits, [batch, seq, vocab].
HeadOutput MaskedLmOutput(const at::Tensor& rows, const Batch& in, const Pass& pass, int64_t vocab,
                          const std::function<at::Tensor(const at::Tensor&)>& head);

}  // namespace bert
