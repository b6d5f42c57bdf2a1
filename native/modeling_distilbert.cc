// DistilBERT as modeling_distilbert.py builds it: "distilbert.embeddings" (word and position embeddings, no token
// types; fixed sinusoidal positions with sinusoidal_pos_embds), "distilbert.transformer.layer.N" with its own keys
// (attention.q_lin..out_lin, sa_layer_norm, ffn.lin1/lin2, output_layer_norm; no dropout on the attention's output
// projection), no pooler; its heads: pre_classifier + ReLU + classifier on the first token, classifier per token,
// qa_outputs, and the masked-LM head (vocab_transform, activation, vocab_layer_norm, vocab_projector tied to the word
// embeddings). src/config.ts maps DistilBertConfig's names (dim, n_layers, ...) onto BertConfig's and picks the
// dropout each head reads (seq_classif_dropout, dropout, qa_dropout) as the classifier dropout.
#include "modeling_bert.h"

namespace bert {

namespace {

constexpr EncoderLayout kDistilBertLayout{"transformer",
                                          {"attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin", "sa_layer_norm",
                                           "ffn.lin1", "ffn.lin2", "output_layer_norm", /*attention_output_dropout=*/false},
                                          /*position_padding=*/false};

class DistilBertForSequenceClassification final : public BertPreTrainedModel {
 public:
  // Multiple choice is the same head with one score per choice.
  DistilBertForSequenceClassification(const Path& root, const Config& c, bool multiple_choice)
      : BertPreTrainedModel(&distilbert), distilbert(root.sub("distilbert"), c, false, kDistilBertLayout),
        pre_classifier(root.sub("pre_classifier"), c.hidden_size, c.hidden_size),
        classifier(root.sub("classifier"), c.hidden_size, multiple_choice ? 1 : c.num_labels), cfg_(c), multiple_choice_(multiple_choice) {}
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    at::Tensor pooled = at::relu(pre_classifier.forward(distilbert.first_token_states(inputs, pass), pass));
    at::Tensor logits = classifier.forward(Dropout(pooled, pass.classifier_dropout, pass.train), pass);
    return multiple_choice_ ? ChoiceOutput(logits, in, pass) : ClassOutput(logits, in, cfg_, pass);
  }
  BertModel distilbert;
  Linear pre_classifier, classifier;

 private:
  Config cfg_;
  bool multiple_choice_;
};

class DistilBertForMaskedLM final : public BertPreTrainedModel {
 public:
  DistilBertForMaskedLM(const Path& root, const Config& c)
      : BertPreTrainedModel(&distilbert), distilbert(root.sub("distilbert"), c, false, kDistilBertLayout),
        vocab_transform(root.sub("vocab_transform"), c.hidden_size, c.hidden_size), activation(ActivationOf(c.hidden_act)),
        vocab_layer_norm(root.sub("vocab_layer_norm"), c.hidden_size, 1e-12), bias(root.sub("vocab_projector").zeros("bias", {c.vocab_size})), vocab_(c.vocab_size) {}
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    const at::Tensor& decoder = distilbert.embeddings.word_embeddings;
    return MaskedLmOutput(distilbert.forward(inputs, pass), in, pass, vocab_, [&](const at::Tensor& h) {
      return DecoderLinear(vocab_layer_norm.forward(activation(vocab_transform.forward(h, pass))), decoder, bias, pass);
    });
  }
  BertModel distilbert;
  Linear vocab_transform;
  Activation activation;
  BertLayerNorm vocab_layer_norm;
  at::Tensor bias;  // vocab_projector.bias

 private:
  int64_t vocab_;
};

}  // namespace

std::unique_ptr<BertPreTrainedModel> BertPreTrainedModel::CreateDistilBert(const Path& root, const Config& c) {
  const std::string& a = c.architecture;
  if (a == "DistilBertForSequenceClassification") return std::make_unique<DistilBertForSequenceClassification>(root, c, false);
  if (a == "DistilBertForMultipleChoice") return std::make_unique<DistilBertForSequenceClassification>(root, c, true);
  if (a == "DistilBertForTokenClassification") return TokenClassificationModel(root, c, "distilbert", kDistilBertLayout);
  if (a == "DistilBertForQuestionAnswering") return QuestionAnsweringModel(root, c, "distilbert", kDistilBertLayout, /*dropout=*/true);  // qa_dropout
  if (a == "DistilBertForMaskedLM") return std::make_unique<DistilBertForMaskedLM>(root, c);
  return nullptr;
}

}  // namespace bert
