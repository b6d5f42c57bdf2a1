// ModernBERT as modeling_modernbert.py builds it: "model.embeddings" (tok_embeddings, norm; no positions, no token
// types), "model.layers.N" pre-norm (attn_norm, absent in layer 0; attn.Wqkv, rotary positions on queries and keys
// with the global or local theta, attention over every token or a sliding window, attn.Wo; mlp_norm, mlp.Wi as GeGLU's
// input and gate, mlp.Wo), "model.final_norm"; biases and norm biases only where the config asks. Its heads share
// `head` (dense, classifier_activation, norm) over the pooled first token or the mean of the real tokens
// (classifier_pooling), or over every token; the masked-LM decoder is tied to the word embeddings.
// Weights are initialised as ModernBertPreTrainedModel._init_weights does: truncated normals of per-module widths.
#include <cmath>
#include <stdexcept>
#include "modeling_bert.h"

namespace bert {

namespace {

// The per-module init widths of _init_weights: "in", "out", "embedding", "final_out".
struct Stds {
  double in, out, embedding, final_out, cutoff;
  explicit Stds(const Config& c)
      : in(c.initializer_range), out(c.initializer_range / std::sqrt(2.0 * static_cast<double>(c.num_hidden_layers))), embedding(c.initializer_range),
        final_out(1.0 / std::sqrt(static_cast<double>(c.hidden_size))), cutoff(c.modernbert.initializer_cutoff_factor) {}
};

at::Tensor RotateHalf(const at::Tensor& x) {
  const std::vector<at::Tensor> halves = x.chunk(2, -1);
  return at::cat({-halves[1], halves[0]}, -1);
}

// Rotary embeddings of the token rows' positions: cos and sin, [rows, 1, head_dim] (broadcast over heads).
struct Rotary {
  at::Tensor cos, sin;
  Rotary(const at::Tensor& positions, double theta, int64_t head_dim) {
    // ModernBertRotaryEmbedding.compute_default_rope_parameters and forward, in fp32.
    at::Tensor inv_freq = 1.0 / at::pow(theta, at::arange(0, head_dim, 2, positions.options().dtype(at::kFloat)) / static_cast<double>(head_dim));
    at::Tensor freqs = positions.to(at::kFloat).unsqueeze(1) * inv_freq.unsqueeze(0);
    at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(1);
    cos = emb.cos();
    sin = emb.sin();
  }
  // apply_rotary_pos_emb: in fp32, back to the input's dtype.
  at::Tensor apply(const at::Tensor& x) const {
    const at::Tensor f = x.to(at::kFloat);
    return (f * cos + RotateHalf(f) * sin).to(x.scalar_type());
  }
};

struct ModernBertLayer {
  std::optional<BertLayerNorm> attn_norm;  // nn.Identity in layer 0
  Linear Wqkv, attn_Wo;                    // attn.Wqkv, attn.Wo
  BertLayerNorm mlp_norm;
  Linear Wi, mlp_Wo;                       // mlp.Wi, mlp.Wo
  bool global;
  ModernBertLayer(const Path& p, const Config& c, int64_t index, const Stds& s)
      : attn_norm(index > 0 ? std::optional<BertLayerNorm>(std::in_place, p.sub("attn_norm"), c.hidden_size, c.layer_norm_eps, c.modernbert.norm_bias) : std::nullopt),
        Wqkv(p.sub("attn").sub("Wqkv"), c.hidden_size, 3 * c.hidden_size, c.modernbert.attention_bias, s.in, s.cutoff),
        attn_Wo(p.sub("attn").sub("Wo"), c.hidden_size, c.hidden_size, c.modernbert.attention_bias, s.out, s.cutoff),
        mlp_norm(p.sub("mlp_norm"), c.hidden_size, c.layer_norm_eps, c.modernbert.norm_bias),
        Wi(p.sub("mlp").sub("Wi"), c.hidden_size, 2 * c.intermediate_size, c.modernbert.mlp_bias, s.in, s.cutoff),
        mlp_Wo(p.sub("mlp").sub("Wo"), c.intermediate_size, c.hidden_size, c.modernbert.mlp_bias, s.out, s.cutoff),
        global(c.modernbert.global_layers.at(static_cast<size_t>(index))) {}
};

// The sliding window as create_bidirectional_sliding_window_mask draws it: |position_q - position_k| <= window, from
// the rows' own positions (so padding inside a sequence changes nothing).
at::Tensor Band(const at::Tensor& positions_q, const at::Tensor& positions_k, int64_t window) {
  return (positions_q.unsqueeze(1) - positions_k.unsqueeze(0)).abs().le(window);
}

class ModernBertModel {
 public:
  ModernBertModel(const Path& p, const Config& c, const Stds& s)
      : tok_embeddings(p.sub("embeddings").sub("tok_embeddings").trunc_normal("weight", {c.vocab_size, c.hidden_size}, s.embedding, s.cutoff)),
        embeddings_norm(p.sub("embeddings").sub("norm"), c.hidden_size, c.layer_norm_eps, c.modernbert.norm_bias),
        final_norm([&] {
          for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers.emplace_back(p.sub("layers").sub(i), c, i, s);
          return BertLayerNorm(p.sub("final_norm"), c.hidden_size, c.layer_norm_eps, c.modernbert.norm_bias);
        }()),
        cfg_(c.modernbert), pad_token_id_(c.pad_token_id), heads_(c.num_attention_heads), window_(c.modernbert.local_attention / 2),
        activation_(ActivationOf(c.hidden_act)) {
    if (static_cast<int64_t>(c.modernbert.global_layers.size()) != c.num_hidden_layers) throw std::invalid_argument("layer_types must name every layer");
  }

  // The last hidden state of every token row, [rows, hidden] (as BertModel::forward).
  at::Tensor forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass) {
    const double embedding_dropout = cfg_.embedding_dropout, mlp_dropout = cfg_.mlp_dropout;
    at::Tensor h = Dropout(embeddings_norm.forward(EmbeddingRows(tok_embeddings, inputs[0], pad_token_id_, pass)), embedding_dropout, pass.train);
    const int64_t d = h.size(1) / heads_;
    // Positions and masks once per pass: every layer of a kind shares them.
    const Rotary global(inputs[2], cfg_.global_rope_theta, d), local(inputs[2], cfg_.local_rope_theta, d);
    const Masks full = masks(inputs[2], false, pass), window = masks(inputs[2], true, pass);
    for (ModernBertLayer& l : layers) {
      const at::Tensor x = l.attn_norm ? l.attn_norm->forward(h) : h;
      const at::Tensor context = attention(l.Wqkv.forward(x, pass), l.global ? global : local, l.global ? full : window, pass);
      h = h + Dropout(l.attn_Wo.forward(context, pass), pass.attention_dropout, pass.train);  // out_drop
      const std::vector<at::Tensor> input_gate = l.Wi.forward(l.mlp_norm.forward(h), pass).chunk(2, -1);
      h = h + l.mlp_Wo.forward(Dropout(activation_(input_gate[0]) * input_gate[1], mlp_dropout, pass.train), pass);
    }
    return final_norm.forward(h);
  }

  at::Tensor tok_embeddings;  // embeddings.tok_embeddings.weight
  BertLayerNorm embeddings_norm;
  std::vector<ModernBertLayer> layers;
  BertLayerNorm final_norm;

 private:
  // A layer kind's attention masks (true = attend): each sequence's own (the per-sequence CPU path), or the padded
  // layout's (key padding, and the window on local layers); none where nothing is masked.
  struct Masks {
    std::vector<std::optional<at::Tensor>> sequences;
    std::optional<at::Tensor> padded;
  };
  // The CPU fp32 path attends each sequence over its own rows, as BertSelfAttention (see there).
  static bool PerSequence(const Pass& pass, const at::Tensor& t) { return pass.unpadded() && t.device().is_cpu() && pass.autocast == at::ScalarType::Undefined; }

  Masks masks(const at::Tensor& positions, bool local, const Pass& pass) const {
    Masks m;
    if (PerSequence(pass, positions)) {
      int64_t start = 0;
      for (int64_t b = 0; b < pass.batch; ++b) {
        const int64_t len = pass.lengths[static_cast<size_t>(b)];
        const at::Tensor pos = positions.narrow(0, start, len);
        m.sequences.push_back(local && len - 1 > window_ ? std::optional<at::Tensor>(Band(pos, pos, window_)) : std::nullopt);
        start += len;
      }
      return m;
    }
    const int64_t S = pass.seq;
    m.padded = pass.mask;
    if (local && S - 1 > window_) {
      const at::Tensor pos = at::arange(S, positions.options());
      const at::Tensor band = Band(pos, pos, window_).view({1, 1, S, S});
      m.padded = m.padded ? at::logical_and(*m.padded, band) : band;
    }
    return m;
  }

  // qkv: [rows, 3 * hidden] of the token rows; returns the context, [rows, hidden].
  at::Tensor attention(const at::Tensor& qkv, const Rotary& rope, const Masks& mask, const Pass& pass) const {
    const int64_t rows = qkv.size(0), H = qkv.size(1) / 3, nh = heads_, d = H / nh;
    const std::vector<at::Tensor> parts = qkv.view({rows, 3, nh, d}).unbind(1);  // [rows, heads, head_dim] each
    const at::Tensor q = rope.apply(parts[0]), k = rope.apply(parts[1]), v = parts[2];
    if (PerSequence(pass, qkv)) {
      int64_t start = 0;
      std::vector<at::Tensor> context;
      for (int64_t b = 0; b < pass.batch; ++b) {
        const int64_t len = pass.lengths[static_cast<size_t>(b)];
        auto seq = [&](const at::Tensor& t) { return t.narrow(0, start, len).transpose(0, 1).unsqueeze(0); };  // [1, heads, len, head_dim]
        context.push_back(Attend(seq(q), seq(k), seq(v), mask.sequences[static_cast<size_t>(b)], pass).squeeze(0).transpose(0, 1).reshape({len, H}));
        start += len;
      }
      if (start < rows) context.push_back(at::zeros({rows - start, H}, context.front().options()));  // Unpad's rounding rows
      return at::cat(context);
    }
    const int64_t B = pass.batch, S = pass.seq;
    auto padded = [&](const at::Tensor& t) {
      const at::Tensor all = pass.unpadded() ? at::zeros({B * S, nh, d}, t.options()).index_copy(0, pass.index, t) : t;
      return all.view({B, S, nh, d}).transpose(1, 2);
    };
    const at::Tensor flat = Attend(padded(q), padded(k), padded(v), mask.padded, pass).transpose(1, 2).reshape({B * S, H});
    return pass.unpadded() ? flat.index_select(0, pass.index) : flat;
  }

  ModernBertConfig cfg_;
  int64_t pad_token_id_, heads_, window_;
  Activation activation_;
};

// ModernBertPredictionHead: dense (classifier_bias), classifier_activation, norm.
struct PredictionHead {
  Linear dense;
  Activation act;
  BertLayerNorm norm;
  PredictionHead(const Path& p, const Config& c, const Stds& s)
      : dense(p.sub("dense"), c.hidden_size, c.hidden_size, c.modernbert.classifier_bias, s.out, s.cutoff), act(ActivationOf(c.modernbert.classifier_activation)),
        norm(p.sub("norm"), c.hidden_size, c.layer_norm_eps, c.modernbert.norm_bias) {}
  at::Tensor forward(const at::Tensor& x, const Pass& pass) const { return norm.forward(act(dense.forward(x, pass))); }
};

class ModernBertPreTrained : public BertPreTrainedModel {
 protected:
  ModernBertPreTrained(const Path& root, const Config& c) : BertPreTrainedModel(nullptr), stds(c), model(root.sub("model"), c, stds), head(root.sub("head"), c, stds) {}
  Stds stds;

 public:
  ModernBertModel model;
  PredictionHead head;
};

// Sequence classification and multiple choice: classifier_pooling over the last hidden states, head, dropout, classifier.
class ModernBertForSequenceClassification final : public ModernBertPreTrained {
 public:
  ModernBertForSequenceClassification(const Path& root, const Config& c, bool multiple_choice)
      : ModernBertPreTrained(root, c), classifier(root.sub("classifier"), c.hidden_size, multiple_choice ? 1 : c.num_labels, true, stds.final_out, stds.cutoff),
        cfg_(c), multiple_choice_(multiple_choice), mean_(c.modernbert.classifier_pooling == "mean") {}
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    at::Tensor pooled = Dropout(head.forward(pool(model.forward(inputs, pass), pass), pass), pass.classifier_dropout, pass.train);
    at::Tensor logits = classifier.forward(pooled, pass);
    return multiple_choice_ ? ChoiceOutput(logits, in, pass) : ClassOutput(logits, in, cfg_, pass);
  }
  Linear classifier;

 private:
  // [batch, hidden]: the first token's state ("cls"; multiple choice takes the first real one, attention_mask.argmax),
  // or the mean over each sequence's real tokens ("mean").
  at::Tensor pool(const at::Tensor& rows, const Pass& pass) const {
    const int64_t B = pass.batch, S = pass.seq;
    if (!mean_) {
      // The first row, unless padding comes first in a multiple-choice row (then Unpad keeps the padded layout).
      if (!multiple_choice_ || pass.unpadded() || !pass.mask) return FirstTokenRows(rows, pass);
      const at::Tensor h = rows.view({B, S, -1});
      return h.gather(1, pass.mask->view({B, S}).to(at::kInt).argmax(-1).view({B, 1, 1}).expand({B, 1, h.size(2)})).squeeze(1);
    }
    if (pass.unpadded()) {
      std::vector<int64_t> lengths(pass.lengths.begin(), pass.lengths.begin() + B);  // without Unpad's rounding rows
      int64_t real = 0;
      for (int64_t n : lengths) real += n;
      std::vector<at::Tensor> means;
      for (const at::Tensor& s : rows.narrow(0, 0, real).split_with_sizes(lengths, 0)) means.push_back(s.sum(0) / static_cast<double>(s.size(0)));
      return at::stack(means);
    }
    const at::Tensor h = rows.view({B, S, -1});
    if (!pass.mask) return h.mean(1);
    const at::Tensor m = pass.mask->view({B, S}).to(h.scalar_type()).unsqueeze(-1);
    return (h * m).sum(1) / m.sum(1);
  }
  Config cfg_;
  bool multiple_choice_, mean_;
};

// Token classification and question answering: head, dropout, classifier at every position.
class ModernBertForTokens final : public ModernBertPreTrained {
 public:
  ModernBertForTokens(const Path& root, const Config& c, bool question_answering)
      : ModernBertPreTrained(root, c), classifier(root.sub("classifier"), c.hidden_size, c.num_labels, true, stds.final_out, stds.cutoff),
        qa_(question_answering) {
    if (qa_ && c.num_labels != 2) throw std::invalid_argument(c.architecture + " needs num_labels 2 (start and end), got " + std::to_string(c.num_labels));
  }
  bool keeps_padding() const override { return qa_; }  // as QuestionAnswering: logits at every position
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    at::Tensor rows = Dropout(head.forward(model.forward(inputs, pass), pass), pass.classifier_dropout, pass.train);
    return PositionOutput(Repad(classifier.forward(rows, pass), pass), in, pass, qa_);
  }
  Linear classifier;

 private:
  bool qa_;
};

// ModernBertForMaskedLM: head, then the decoder tied to the word embeddings (decoder.bias when decoder_bias).
class ModernBertForMaskedLM final : public ModernBertPreTrained {
 public:
  ModernBertForMaskedLM(const Path& root, const Config& c)
      : ModernBertPreTrained(root, c), bias(c.modernbert.decoder_bias ? root.sub("decoder").zeros("bias", {c.vocab_size}) : at::Tensor()), vocab_(c.vocab_size) {}
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    return MaskedLmOutput(model.forward(inputs, pass), in, pass, vocab_,
                          [&](const at::Tensor& h) { return DecoderLinear(head.forward(h, pass), model.tok_embeddings, bias, pass); });
  }
  at::Tensor bias;  // decoder.bias

 private:
  int64_t vocab_;
};

}  // namespace

std::unique_ptr<BertPreTrainedModel> BertPreTrainedModel::CreateModernBert(const Path& root, const Config& c) {
  return CreateHeads<ModernBertForSequenceClassification, ModernBertForTokens, ModernBertForMaskedLM>("ModernBert", root, c);
}

}  // namespace bert
