// BertForSequenceClassification as modeling_bert.py builds it: one struct per module, members named as the
// checkpoint's keys (bert.encoder.layer.0.attention.self.query.weight is
// model.bert.encoder.layer[0].attention.self.query.weight here), each parameter registered once through a Path.
#pragma once
#include <ATen/ATen.h>
#include <array>
#include <optional>
#include <unordered_map>
#include "session.h"
#include "var_store.h"

namespace bert {

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
  bool packs() const { return pack_; }
  void clear() { casts_.clear(); packs_.clear(); }

 private:
  struct Kept { at::Tensor value; int64_t version; at::ScalarType dtype; };
  using Map = std::unordered_map<const c10::TensorImpl*, Kept>;
  const at::Tensor& Keep(Map& map, const at::Tensor& w, at::ScalarType dtype, bool pack);
  bool pack_;
  Map casts_, packs_;
};

// oneDNN's CPU matrix product over a weight WeightCache::packed made: act(x W^T + b), or x W^T + b + residual.
// `act` is a oneDNN post-op name ("none", "gelu", "relu"), `algorithm` its variant ("none" = erf GELU, "tanh").
bool CanPackWeights();  // libtorch was built with oneDNN and registers its prepacked-linear operators
// oneDNN's bf16 products on this CPU: mkldnn::_is_mkldnn_bf16_supported, the check PyTorch makes (AVX-512 BW/VL/DQ
// or AVX-NE-CONVERT, as oneDNN sees the CPU: ONEDNN_MAX_CPU_ISA=AVX2 makes any machine answer as an AVX2-only one).
bool CpuHasPackedBf16();
at::Tensor PackedLinear(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& bias, const char* act = "none",
                        const char* algorithm = "");
at::Tensor PackedLinearAdd(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& bias, const at::Tensor& residual);

// What one forward pass needs besides the weights: the mode, and where the real tokens are.
struct Pass {
  bool train = false;
  double hidden_dropout = 0, attention_dropout = 0, classifier_dropout = 0;
  at::ScalarType autocast = at::ScalarType::Undefined;  // Undefined: fp32
  WeightCache* weights = nullptr;                       // evaluation only
  double label_smoothing = 0;                           // of the classification losses (TrainingArguments.label_smoothing_factor)
  bool keep_padding = false;                            // Unpad keeps the [batch, seq] layout (BertPreTrainedModel::keeps_padding)
  at::ScalarType dtype() const { return autocast == at::ScalarType::Undefined ? at::kFloat : autocast; }  // of products
  // Prepacked products for fp32 wherever oneDNN is there; for bf16 only where oneDNN has bf16 kernels for this CPU
  // (elsewhere its reorder refuses bf16, and autocast's plain products run instead).
  bool packed() const { return weights && weights->packs() && (dtype() == at::kFloat || CpuHasPackedBf16()); }
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
};

// Reads the batch's mask on the host and fills `pass`'s token layout; returns input ids, token type ids and
// position ids of the token rows.
std::array<at::Tensor, 3> Unpad(const Batch& batch, const at::Device& device, Pass& pass);

using Activation = at::Tensor (*)(const at::Tensor&);
Activation ActivationOf(const std::string& hidden_act);  // transformers' ACT2FN names; throws for others
std::vector<std::string> Activations();
struct PostOp { const char* attr; const char* algorithm; };  // oneDNN's post-op equal to an activation
const PostOp* PostOpOf(const std::string& hidden_act);      // nullptr where oneDNN has none; throws as ActivationOf

struct Linear {  // nn.Linear: weight [out, in], bias [out]
  at::Tensor weight, bias;
  Linear(const Path& p, int64_t in, int64_t out);
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
  void drop_cache() { weight_ = bias_ = at::Tensor(); }

 private:
  at::Tensor weight_, bias_;
  std::vector<int64_t> versions_;
  bool packed_ = false;
};

struct BertLayerNorm {  // nn.LayerNorm: weight, bias
  at::Tensor weight, bias;
  double eps;
  BertLayerNorm(const Path& p, int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x) const;
};

struct BertEmbeddings {
  at::Tensor word_embeddings, position_embeddings, token_type_embeddings;  // "<name>.weight"
  BertLayerNorm LayerNorm;
  int64_t pad_token_id;
  BertEmbeddings(const Path& p, const Config& c);
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& token_type_ids, const at::Tensor& position_ids, const Pass& pass) const;
};

struct BertSelfAttention {
  Linear query, key, value;
  int64_t num_attention_heads;
  BertSelfAttention(const Path& p, const Config& c);
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
  BertSelfOutput(const Path& p, const Config& c);
  at::Tensor forward(const at::Tensor& hidden_states, const at::Tensor& input_tensor, const Pass& pass) const;
};

struct BertAttention {
  BertSelfAttention self;
  BertSelfOutput output;
  BertAttention(const Path& p, const Config& c) : self(p.sub("self"), c), output(p.sub("output"), c) {}
  at::Tensor forward(const at::Tensor& hidden_states, const Pass& pass, const at::Tensor* first_tokens = nullptr) {
    return output.forward(self.forward(hidden_states, pass, first_tokens), first_tokens ? *first_tokens : hidden_states, pass);
  }
};

struct BertIntermediate {
  Linear dense;
  Activation intermediate_act_fn;
  const PostOp* post_op;  // intermediate_act_fn as oneDNN fuses it, or nullptr
  BertIntermediate(const Path& p, const Config& c);
  at::Tensor forward(const at::Tensor& hidden_states, const Pass& pass) const { return dense.forward(hidden_states, pass, intermediate_act_fn, post_op); }
};

struct BertOutput {
  Linear dense;
  BertLayerNorm LayerNorm;
  BertOutput(const Path& p, const Config& c);
  at::Tensor forward(const at::Tensor& hidden_states, const at::Tensor& input_tensor, const Pass& pass) const;
};

struct BertLayer {
  BertAttention attention;
  BertIntermediate intermediate;
  BertOutput output;
  BertLayer(const Path& p, const Config& c) : attention(p.sub("attention"), c), intermediate(p.sub("intermediate"), c), output(p.sub("output"), c) {}
  // With `first_tokens`, the layer's output for those tokens alone (BertSelfAttention::forward).
  at::Tensor forward(const at::Tensor& hidden_states, const Pass& pass, const at::Tensor* first_tokens = nullptr) {
    at::Tensor attention_output = attention.forward(hidden_states, pass, first_tokens);
    return output.forward(intermediate.forward(attention_output, pass), attention_output, pass);
  }
};

struct BertEncoder {
  std::vector<BertLayer> layer;
  BertEncoder(const Path& p, const Config& c);
};

struct BertPooler {
  Linear dense;
  BertPooler(const Path& p, const Config& c) : dense(p.sub("dense"), c.hidden_size, c.hidden_size) {}
  at::Tensor forward(const at::Tensor& first_token, const Pass& pass) const { return at::tanh(dense.forward(first_token, pass)); }
};

struct BertModel {
  BertEmbeddings embeddings;
  BertEncoder encoder;
  std::optional<BertPooler> pooler;  // add_pooling_layer: the heads that read the pooled output have one
  BertModel(const Path& p, const Config& c, bool add_pooling_layer)
      : embeddings(p.sub("embeddings"), c), encoder(p.sub("encoder"), c) {
    if (add_pooling_layer) pooler.emplace(p.sub("pooler"), c);
  }
  // The last hidden state of every token row, [rows, hidden]: the real tokens (and Unpad's rounding rows) when
  // the pass is unpadded, else every position of [batch * seq].
  at::Tensor forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass);
  // The pooled output, [batch, hidden]. Only the first tokens' states reach the pooler, and the last layer mixes
  // tokens only through keys and values: it computes those for every token and the rest for the first tokens.
  at::Tensor pooled(const std::array<at::Tensor, 3>& inputs, const Pass& pass);
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
  virtual ~BertPreTrainedModel() = default;
  virtual HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& batch) = 0;
  // Question answering reads logits at every position, padding included (transformers' loss does): no unpadding.
  virtual bool keeps_padding() const { return false; }
  BertModel& base() { return *bert_; }
  void drop_caches();  // the kept evaluation copies (a training step makes them stale)

 protected:
  explicit BertPreTrainedModel(BertModel* bert) : bert_(bert) {}
  BertModel* bert_;
};

}  // namespace bert
