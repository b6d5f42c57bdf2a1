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

// Evaluation under autocast: each weight's cast to the autocast dtype, kept while the weight's version counter
// holds (an optimizer step or a load bumps it). PyTorch casts every weight again on every forward; for batch-1
// inference those casts cost more than the math.
class CastCache {
 public:
  const at::Tensor& operator()(const at::Tensor& w, at::ScalarType dtype);
  void clear() { casts_.clear(); }

 private:
  struct Cast { at::Tensor value; int64_t version; };
  std::unordered_map<const c10::TensorImpl*, Cast> casts_;
};

// What one forward pass needs besides the weights: the mode, and where the real tokens are.
struct Pass {
  bool train = false;
  double hidden_dropout = 0, attention_dropout = 0, classifier_dropout = 0;
  at::ScalarType autocast = at::ScalarType::Undefined;  // Undefined: fp32
  CastCache* casts = nullptr;                           // evaluation under autocast only
  // With dynamic padding a batch is often a third padding; every layer but attention works token by token, so
  // those layers run on the real tokens only ("unpadded"), and attention alone sees the padded [batch, seq] layout.
  int64_t batch = 0, seq = 0;
  at::Tensor index;                // flat [batch*seq] positions of the token rows; undefined: all positions, in order
  at::Tensor cls;                  // row of each sequence's first token among them; undefined: row b*seq
  std::optional<at::Tensor> mask;  // [batch, 1, 1, seq] key-padding mask (true = attend); none without padding
  bool unpadded() const { return index.defined(); }
};

// Reads the batch's mask on the host and fills `pass`'s token layout; returns input ids, token type ids and
// position ids of the token rows.
std::array<at::Tensor, 3> Unpad(const Batch& batch, const at::Device& device, Pass& pass);

struct Linear {  // nn.Linear: weight [out, in], bias [out]
  at::Tensor weight, bias;
  Linear(const Path& p, int64_t in, int64_t out);
  at::Tensor forward(const at::Tensor& x, const Pass& pass) const;
};

struct BertLayerNorm {  // nn.LayerNorm: weight, bias
  at::Tensor weight, bias;
  double eps;
  BertLayerNorm(const Path& p, int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x) const;
};

using Activation = at::Tensor (*)(const at::Tensor&);
Activation ActivationOf(const std::string& hidden_act);  // transformers' ACT2FN names; throws for others
std::vector<std::string> Activations();

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
  at::Tensor forward(const at::Tensor& hidden_states, const Pass& pass);  // the context, [tokens, hidden]
  void drop_cache() { qkv_weight_ = qkv_bias_ = at::Tensor(); }

 private:
  // Query, key and value in one matrix product (the same sums as three). Training concatenates on each forward
  // (autograd must reach the three parameters); evaluation keeps the concatenation (in the autocast dtype) while
  // the parameters' version counters hold: no 3*H*H copy per layer per call.
  at::Tensor qkv_weight_, qkv_bias_;
  std::array<int64_t, 6> versions_{};
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
  at::Tensor forward(const at::Tensor& hidden_states, const Pass& pass) { return output.forward(self.forward(hidden_states, pass), hidden_states, pass); }
};

struct BertIntermediate {
  Linear dense;
  Activation intermediate_act_fn;
  BertIntermediate(const Path& p, const Config& c);
  at::Tensor forward(const at::Tensor& hidden_states, const Pass& pass) const { return intermediate_act_fn(dense.forward(hidden_states, pass)); }
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
  at::Tensor forward(const at::Tensor& hidden_states, const Pass& pass) {
    at::Tensor attention_output = attention.forward(hidden_states, pass);
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
  BertPooler pooler;
  BertModel(const Path& p, const Config& c) : embeddings(p.sub("embeddings"), c), encoder(p.sub("encoder"), c), pooler(p.sub("pooler"), c) {}
  at::Tensor forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass);  // the pooled output, [batch, hidden]
};

struct BertForSequenceClassification {
  BertModel bert;
  Linear classifier;
  BertForSequenceClassification(const Path& root, const Config& c)
      : bert(root.sub("bert"), c), classifier(root.sub("classifier"), c.hidden_size, c.num_labels) {}
  at::Tensor forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass);  // logits, [batch, num_labels]
  void drop_caches();  // the kept evaluation copies (a training step makes them stale)
};

}  // namespace bert
