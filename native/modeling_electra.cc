// ELECTRA's discriminator and generator heads as modeling_electra.py builds them: BERT's embeddings at
// embedding_size, "electra.embeddings_project" to the hidden size when they differ, BERT's encoder, no pooler; the
// classification head (dense, GELU, out_proj on the first token) and the generator's masked-LM head
// (generator_predictions: dense to embedding_size, GELU, LayerNorm; generator_lm_head tied to the word embeddings);
// multiple choice through its SequenceSummary.
#include "modeling_bert.h"

namespace bert {

namespace {

at::Tensor Gelu(const at::Tensor& x) { return at::gelu(x); }  // ELECTRA's heads use the erf GELU whatever hidden_act says

// ElectraGeneratorPredictions, then generator_lm_head (weight: the word embeddings; its own bias).
class ElectraForMaskedLM final : public BertPreTrainedModel {
 public:
  ElectraForMaskedLM(const Path& root, const Config& c)
      : BertPreTrainedModel(&electra), electra(root.sub("electra"), c, false),
        dense(root.sub("generator_predictions").sub("dense"), c.hidden_size, c.embedding_size),
        LayerNorm(root.sub("generator_predictions").sub("LayerNorm"), c.embedding_size, c.layer_norm_eps),
        bias(root.sub("generator_lm_head").zeros("bias", {c.vocab_size})), vocab_(c.vocab_size) {}
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    const at::Tensor& decoder = electra.embeddings.word_embeddings;
    return MaskedLmOutput(electra.forward(inputs, pass), in, pass, vocab_, [&](const at::Tensor& h) {
      return DecoderLinear(LayerNorm.forward(at::gelu(dense.forward(h, pass))), decoder, bias, pass);
    });
  }
  BertModel electra;
  Linear dense;           // generator_predictions.dense
  BertLayerNorm LayerNorm;  // generator_predictions.LayerNorm
  at::Tensor bias;        // generator_lm_head.bias

 private:
  int64_t vocab_;
};

// ElectraForMultipleChoice: the SequenceSummary of the first token (first dropout, sequence_summary.summary,
// summary_activation, last dropout), then classifier to one score per choice.
class ElectraForMultipleChoice final : public BertPreTrainedModel {
 public:
  ElectraForMultipleChoice(const Path& root, const Config& c)
      : BertPreTrainedModel(&electra), electra(root.sub("electra"), c, false),
        summary(c.summary.use_proj ? std::optional<Linear>(std::in_place, root.sub("sequence_summary").sub("summary"), c.hidden_size, c.hidden_size) : std::nullopt),
        classifier(root.sub("classifier"), c.hidden_size, 1), activation_(c.summary.activation.empty() ? nullptr : ActivationOf(c.summary.activation)), s_(c.summary) {}
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    const double first_p = pass.train ? s_.first_dropout : 0.0, last_p = pass.train ? s_.last_dropout : 0.0;
    at::Tensor x = Dropout(electra.first_token_states(inputs, pass), first_p, pass.train);
    if (summary) x = summary->forward(x, pass);
    if (activation_) x = activation_(x);
    return ChoiceOutput(classifier.forward(Dropout(x, last_p, pass.train), pass), in, pass);
  }
  BertModel electra;
  std::optional<Linear> summary;  // sequence_summary.summary
  Linear classifier;

 private:
  Activation activation_;
  SequenceSummaryConfig s_;
};

}  // namespace

std::unique_ptr<BertPreTrainedModel> BertPreTrainedModel::CreateElectra(const Path& root, const Config& c) {
  const std::string& a = c.architecture;
  if (a == "ElectraForSequenceClassification") return ClassificationHeadModel(root, c, "electra", {}, Gelu);  // ElectraClassificationHead
  if (a == "ElectraForTokenClassification") return TokenClassificationModel(root, c, "electra", {});
  if (a == "ElectraForQuestionAnswering") return QuestionAnsweringModel(root, c, "electra", {}, false);
  if (a == "ElectraForMaskedLM") return std::make_unique<ElectraForMaskedLM>(root, c);
  if (a == "ElectraForMultipleChoice") return std::make_unique<ElectraForMultipleChoice>(root, c);
  return nullptr;
}

}  // namespace bert
