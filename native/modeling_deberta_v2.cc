// DeBERTa-v2 and -v3 as modeling_deberta_v2.py builds them: "deberta.embeddings" (word embeddings of embedding_size,
// absolute positions only with position_biased_input, token types when type_vocab_size > 0, embed_proj without bias
// when embedding_size differs, LayerNorm, padding rows zeroed), "deberta.encoder.layer.N" with BERT's layer keys but
// disentangled self-attention (attention.self.query_proj/key_proj/value_proj; content-to-position and
// position-to-content scores over relative distances, log-bucketed with position_buckets, through the layer's own
// projections with share_att_key or pos_key_proj/pos_query_proj), "deberta.encoder.rel_embeddings" (LayerNorm'd when
// norm_rel_ebd has layer_norm). Heads: the ContextPooler (pooler.dense on the first token) + classifier, classifier
// per token, qa_outputs, and the masked-LM head (legacy cls.predictions, or lm_predictions.lm_head), tied to the word
// embeddings. transformers' DebertaV2ForMaskedLM has no enhanced mask decoder (z_steps is 0): neither has this one.
// Attention runs on the padded [batch, heads, seq, seq] layout, as the relative scores need; every other layer
// works on the real tokens' rows.
#include <limits>
#include <stdexcept>
#include "modeling_bert.h"

namespace bert {

namespace {

// build_relative_position with make_log_bucket_position: [seq, seq] query minus key positions, beyond
// position_buckets / 2 log-bucketed up to max_relative_positions (the same float32 operations, so the same buckets).
at::Tensor RelativePositions(int64_t S, const DebertaConfig& d, const at::Device& device) {
  const at::Tensor ids = at::arange(S, at::TensorOptions().dtype(at::kLong).device(device));
  at::Tensor rel = ids.unsqueeze(1) - ids.unsqueeze(0);
  if (d.position_buckets > 0 && d.max_relative_positions > 0) {
    const int64_t mid = d.position_buckets / 2;
    const at::Tensor sign = at::sign(rel);
    const at::Tensor abs_pos = at::where(rel.lt(mid).logical_and(rel.gt(-mid)), at::scalar_tensor(mid - 1, rel.options()), rel.abs());
    const at::Tensor base = at::log(at::scalar_tensor(static_cast<double>(d.max_relative_positions - 1) / static_cast<double>(mid), at::TensorOptions().dtype(at::kFloat).device(device)));
    const at::Tensor log_pos = at::ceil(at::log(abs_pos / mid) / base * (mid - 1)) + mid;
    rel = at::where(abs_pos.le(mid), rel.to(log_pos.scalar_type()), log_pos * sign).to(at::kLong);
  }
  return rel;
}

at::Scalar Lowest(at::ScalarType t) {  // torch.finfo(dtype).min: what masked scores are filled with
  if (t == at::kBFloat16) return std::numeric_limits<c10::BFloat16>::lowest();
  if (t == at::kHalf) return std::numeric_limits<c10::Half>::lowest();
  return std::numeric_limits<float>::lowest();
}

struct DisentangledSelfAttention {
  Linear query_proj, key_proj, value_proj;
  std::optional<Linear> pos_key_proj, pos_query_proj;  // relative attention without share_att_key
  int64_t heads;
  DebertaConfig d;
  DisentangledSelfAttention(const Path& p, const Config& c)
      : query_proj(p.sub("query_proj"), c.hidden_size, c.hidden_size), key_proj(p.sub("key_proj"), c.hidden_size, c.hidden_size),
        value_proj(p.sub("value_proj"), c.hidden_size, c.hidden_size), heads(c.num_attention_heads), d(c.deberta) {
    if (d.relative_attention && !d.share_att_key) {
      if (d.c2p) pos_key_proj.emplace(p.sub("pos_key_proj"), c.hidden_size, c.hidden_size);
      if (d.p2c) pos_query_proj.emplace(p.sub("pos_query_proj"), c.hidden_size, c.hidden_size);
    }
  }

  // x: [batch * seq, hidden] in the padded layout; mask: [batch, 1, seq, seq] (query and key both real) or none;
  // rel: [seq, seq] relative positions; rel_embeddings: [2 * att_span, hidden]. Returns the context, same layout.
  at::Tensor forward(const at::Tensor& x, const std::optional<at::Tensor>& mask, const at::Tensor& rel, const at::Tensor& rel_embeddings, const Pass& pass) const {
    const int64_t B = pass.batch, S = pass.seq, H = x.size(1), nh = heads, dh = H / nh;
    auto split = [&](const at::Tensor& t, int64_t rows) { return t.view({-1, rows, nh, dh}).transpose(1, 2); };  // [n, heads, rows, head_dim]
    const at::Tensor q = split(query_proj.forward(x, pass), S), k = split(key_proj.forward(x, pass), S), v = split(value_proj.forward(x, pass), S);
    const int64_t scale_factor = 1 + (d.c2p ? 1 : 0) + (d.p2c ? 1 : 0);
    const at::Tensor scale = at::sqrt(at::scalar_tensor(static_cast<double>(dh), at::TensorOptions().dtype(at::kFloat).device(x.device())) * scale_factor);
    at::Tensor scores = at::matmul(q, k.transpose(-1, -2) / scale.to(q.scalar_type()));
    if (d.relative_attention && (d.c2p || d.p2c)) {
      const int64_t span = d.att_span;
      const at::Tensor re = Dropout(rel_embeddings.narrow(0, 0, 2 * span), pass.hidden_dropout, pass.train);  // pos_dropout
      at::Tensor rel_att;
      if (d.c2p) {
        const at::Tensor pos_key = split((d.share_att_key ? key_proj : *pos_key_proj).forward(re, pass), 2 * span);  // [1, heads, 2 * span, head_dim]
        const at::Tensor index = at::clamp(rel + span, 0, 2 * span - 1).expand({B, nh, S, S});
        const at::Tensor c2p = at::matmul(q, pos_key.transpose(-1, -2)).gather(-1, index);
        rel_att = c2p / scale.to(c2p.scalar_type());
      }
      if (d.p2c) {
        const at::Tensor pos_query = split((d.share_att_key ? query_proj : *pos_query_proj).forward(re, pass), 2 * span);
        const at::Tensor index = at::clamp(-rel + span, 0, 2 * span - 1).expand({B, nh, S, S});
        const at::Tensor p2c = at::matmul(k, pos_query.transpose(-1, -2)).gather(-1, index).transpose(-1, -2);
        rel_att = rel_att.defined() ? rel_att + p2c / scale.to(p2c.scalar_type()) : p2c / scale.to(p2c.scalar_type());
      }
      scores = scores + rel_att;
    }
    // A padding query has no key: finfo.min everywhere makes its softmax uniform, as transformers' does.
    if (mask) scores = scores.masked_fill(mask->logical_not(), Lowest(scores.scalar_type()));
    const at::Tensor probs = Dropout(at::softmax(scores, -1), pass.attention_dropout, pass.train);
    return at::matmul(probs, v).transpose(1, 2).reshape({B * S, H});
  }
};

struct DebertaV2Layer {
  DisentangledSelfAttention self;
  BertSelfOutput output_attention;  // attention.output
  BertIntermediate intermediate;
  BertOutput output;
  DebertaV2Layer(const Path& p, const Config& c)
      : self(p.sub("attention").sub("self"), c), output_attention(p, c, kBertLayerNames), intermediate(p, c, kBertLayerNames), output(p, c, kBertLayerNames) {}
};

class DebertaV2Model {
 public:
  DebertaV2Model(const Path& p, const Config& c)
      : word_embeddings([&] {
          at::Tensor w = p.randn({c.vocab_size, c.embedding_size});
          if (c.pad_token_id >= 0 && c.pad_token_id < c.vocab_size) w[c.pad_token_id].zero_();
          return p.sub("embeddings").sub("word_embeddings").var("weight", w, true);
        }()),
        position_embeddings(c.deberta.position_biased_input ? p.sub("embeddings").sub("position_embeddings").normal("weight", {c.max_position_embeddings, c.embedding_size}) : at::Tensor()),
        token_type_embeddings(c.type_vocab_size > 0 ? p.sub("embeddings").sub("token_type_embeddings").normal("weight", {c.type_vocab_size, c.embedding_size}) : at::Tensor()),
        embed_proj(c.embedding_size != c.hidden_size ? std::optional<Linear>(std::in_place, p.sub("embeddings").sub("embed_proj"), c.embedding_size, c.hidden_size, false) : std::nullopt),
        embeddings_LayerNorm(p.sub("embeddings").sub("LayerNorm"), c.hidden_size, c.layer_norm_eps),
        layers([&] {
          std::vector<DebertaV2Layer> l;
          l.reserve(static_cast<size_t>(c.num_hidden_layers));
          for (int64_t i = 0; i < c.num_hidden_layers; ++i) l.emplace_back(p.sub("encoder").sub("layer").sub(i), c);
          return l;
        }()),
        rel_embeddings(c.deberta.relative_attention ? p.sub("encoder").sub("rel_embeddings").normal("weight", {2 * c.deberta.att_span, c.hidden_size}) : at::Tensor()),
        rel_LayerNorm(c.deberta.relative_attention && c.deberta.norm_rel_ebd ? std::optional<BertLayerNorm>(std::in_place, p.sub("encoder").sub("LayerNorm"), c.hidden_size, c.layer_norm_eps) : std::nullopt),
        d_(c.deberta), pad_token_id_(c.pad_token_id) {}

  // The last hidden state of every token row, [rows, hidden] (as BertModel::forward).
  at::Tensor forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass) const {
    const int64_t B = pass.batch, S = pass.seq;
    at::Tensor e = EmbeddingRows(word_embeddings, inputs[0], pad_token_id_, pass);
    if (position_embeddings.defined()) e = e + at::embedding(position_embeddings, inputs[2]);
    if (token_type_embeddings.defined()) e = e + at::embedding(token_type_embeddings, inputs[1]);
    if (embed_proj) e = embed_proj->forward(e, pass);
    e = embeddings_LayerNorm.forward(e);
    // Padding rows are zeroed (the unpadded rows are real tokens, but for Unpad's rounding rows, which nothing reads).
    const std::optional<at::Tensor> key_mask = pass.mask;  // [batch, 1, 1, seq]
    if (!pass.unpadded() && key_mask) e = e * key_mask->view({B * S, 1}).to(e.scalar_type());
    at::Tensor h = Dropout(e, pass.hidden_dropout, pass.train);

    std::optional<at::Tensor> mask;  // get_attention_mask: query and key both real
    if (key_mask) mask = at::logical_and(*key_mask, key_mask->view({B, 1, S, 1}));
    const at::Tensor rel = d_.relative_attention ? RelativePositions(S, d_, h.device()) : at::Tensor();
    const at::Tensor re = !rel_embeddings.defined() ? at::Tensor() : rel_LayerNorm ? rel_LayerNorm->forward(rel_embeddings) : rel_embeddings;
    for (const DebertaV2Layer& l : layers) {
      const at::Tensor padded = pass.unpadded() ? at::zeros({B * S, h.size(1)}, h.options()).index_copy(0, pass.index, h) : h;
      at::Tensor context = l.self.forward(padded, mask, rel, re, pass);
      if (pass.unpadded()) context = context.index_select(0, pass.index);
      const at::Tensor attention_output = l.output_attention.forward(context, h, pass);
      h = l.output.forward(l.intermediate.forward(attention_output, pass), attention_output, pass);
    }
    return h;
  }

  at::Tensor word_embeddings, position_embeddings, token_type_embeddings;
  std::optional<Linear> embed_proj;
  BertLayerNorm embeddings_LayerNorm;
  std::vector<DebertaV2Layer> layers;
  at::Tensor rel_embeddings;
  std::optional<BertLayerNorm> rel_LayerNorm;  // encoder.LayerNorm

 private:
  DebertaConfig d_;
  int64_t pad_token_id_;
};

class DebertaV2PreTrained : public BertPreTrainedModel {
 protected:
  DebertaV2PreTrained(const Path& root, const Config& c) : BertPreTrainedModel(nullptr), deberta(root.sub("deberta"), c) {}

 public:
  DebertaV2Model deberta;
};

// Sequence classification and multiple choice: ContextPooler (dropout pooler_dropout, pooler.dense, pooler_hidden_act
// on the first token), dropout (cls_dropout, else hidden_dropout_prob), classifier.
class DebertaV2ForSequenceClassification final : public DebertaV2PreTrained {
 public:
  DebertaV2ForSequenceClassification(const Path& root, const Config& c, bool multiple_choice)
      : DebertaV2PreTrained(root, c), pooler_dense(root.sub("pooler").sub("dense"), c.hidden_size, c.hidden_size),
        classifier(root.sub("classifier"), c.hidden_size, multiple_choice ? 1 : c.num_labels), act_(ActivationOf(c.deberta.pooler_hidden_act)),
        pooler_dropout_(c.deberta.pooler_dropout), cfg_(c), multiple_choice_(multiple_choice) {}
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    const at::Tensor first = Dropout(FirstTokenRows(deberta.forward(inputs, pass), pass), pooler_dropout_, pass.train);
    at::Tensor logits = classifier.forward(Dropout(act_(pooler_dense.forward(first, pass)), pass.classifier_dropout, pass.train), pass);
    return multiple_choice_ ? ChoiceOutput(logits, in, pass) : ClassOutput(logits, in, cfg_, pass);
  }
  Linear pooler_dense, classifier;

 private:
  Activation act_;
  double pooler_dropout_;
  Config cfg_;
  bool multiple_choice_;
};

// Token classification (dropout, classifier) and question answering (qa_outputs, no dropout) at every position.
class DebertaV2ForTokens final : public DebertaV2PreTrained {
 public:
  DebertaV2ForTokens(const Path& root, const Config& c, bool question_answering)
      : DebertaV2PreTrained(root, c), classifier(root.sub(question_answering ? "qa_outputs" : "classifier"), c.hidden_size, c.num_labels), qa_(question_answering) {
    if (qa_ && c.num_labels != 2) throw std::invalid_argument(c.architecture + " needs num_labels 2 (start and end), got " + std::to_string(c.num_labels));
  }
  bool keeps_padding() const override { return qa_; }
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    at::Tensor rows = deberta.forward(inputs, pass);
    if (!qa_) rows = Dropout(rows, pass.classifier_dropout, pass.train);
    return PositionOutput(Repad(classifier.forward(rows, pass), pass), in, pass, qa_);
  }
  Linear classifier;  // classifier or qa_outputs

 private:
  bool qa_;
};

// The masked-LM head over the word embeddings: legacy cls.predictions (transform.dense to embedding_size, hidden_act,
// transform.LayerNorm, decoder tied to the word embeddings with cls.predictions.bias) or lm_predictions.lm_head
// (dense, hidden_act, LayerNorm, then the word embeddings' transpose and its bias).
class DebertaV2ForMaskedLM final : public DebertaV2PreTrained {
 public:
  DebertaV2ForMaskedLM(const Path& root, const Config& c)
      : DebertaV2PreTrained(root, c), head_(c.deberta.legacy ? root.sub("cls").sub("predictions") : root.sub("lm_predictions").sub("lm_head")),
        dense(c.deberta.legacy ? head_.sub("transform").sub("dense") : head_.sub("dense"), c.hidden_size, c.deberta.legacy ? c.embedding_size : c.hidden_size),
        act(ActivationOf(c.hidden_act)),
        LayerNorm(c.deberta.legacy ? head_.sub("transform").sub("LayerNorm") : head_.sub("LayerNorm"), c.deberta.legacy ? c.embedding_size : c.hidden_size, c.layer_norm_eps),
        bias(head_.zeros("bias", {c.vocab_size})), vocab_(c.vocab_size) {
    if (!c.deberta.legacy && c.embedding_size != c.hidden_size) throw std::invalid_argument("DebertaV2ForMaskedLM with legacy false needs embedding_size equal to hidden_size");
  }
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    return MaskedLmOutput(deberta.forward(inputs, pass), in, pass, vocab_, [&](const at::Tensor& h) {
      return DecoderLinear(LayerNorm.forward(act(dense.forward(h, pass))), deberta.word_embeddings, bias, pass);
    });
  }

 private:
  Path head_;

 public:
  Linear dense;
  Activation act;
  BertLayerNorm LayerNorm;
  at::Tensor bias;

 private:
  int64_t vocab_;
};

}  // namespace

std::unique_ptr<BertPreTrainedModel> BertPreTrainedModel::CreateDebertaV2(const Path& root, const Config& c) {
  return CreateHeads<DebertaV2ForSequenceClassification, DebertaV2ForTokens, DebertaV2ForMaskedLM>("DebertaV2", root, c);
}

}  // namespace bert
