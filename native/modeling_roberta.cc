// RoBERTa and XLM-RoBERTa as modeling_roberta.py / modeling_xlm_roberta.py build them (the same modules; the class
// names differ): BERT's encoder under "roberta.", position ids counted from padding_idx + 1 over the non-pad tokens,
// and RoBERTa's heads: the classification head (dense, tanh, out_proj on <s>, no pooler) and lm_head (dense, GELU,
// layer_norm, decoder tied to the word embeddings, lm_head.bias).
#include "modeling_bert.h"

namespace bert {

namespace {

constexpr EncoderLayout kRobertaLayout{"encoder", kBertLayerNames, /*position_padding=*/true};
at::Tensor Tanh(const at::Tensor& x) { return at::tanh(x); }

// RobertaLMHead: dense, GELU (always the erf form, whatever hidden_act says), layer_norm, then the decoder tied to
// the word embeddings with lm_head.bias.
struct RobertaLMHead {
  Linear dense;
  BertLayerNorm layer_norm;
  at::Tensor bias;
  RobertaLMHead(const Path& p, const Config& c)
      : dense(p.sub("dense"), c.hidden_size, c.hidden_size), layer_norm(p.sub("layer_norm"), c.hidden_size, c.layer_norm_eps), bias(p.zeros("bias", {c.vocab_size})) {}
  at::Tensor forward(const at::Tensor& h, const at::Tensor& decoder_weight, const Pass& pass) const {
    return DecoderLinear(layer_norm.forward(at::gelu(dense.forward(h, pass))), decoder_weight, bias, pass);
  }
};

class RobertaForMaskedLM final : public BertPreTrainedModel {
 public:
  RobertaForMaskedLM(const Path& root, const Config& c)
      : BertPreTrainedModel(&roberta), roberta(root.sub("roberta"), c, false, kRobertaLayout), lm_head(root.sub("lm_head"), c), vocab_(c.vocab_size) {}
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    const at::Tensor& decoder = roberta.embeddings.word_embeddings;
    return MaskedLmOutput(roberta.forward(inputs, pass), in, pass, vocab_, [&](const at::Tensor& h) { return lm_head.forward(h, decoder, pass); });
  }
  BertModel roberta;
  RobertaLMHead lm_head;

 private:
  int64_t vocab_;
};

// RobertaForMultipleChoice reads the pooled output, as BERT's does, with hidden_dropout_prob's dropout.
class RobertaForMultipleChoice final : public BertPreTrainedModel {
 public:
  RobertaForMultipleChoice(const Path& root, const Config& c)
      : BertPreTrainedModel(&roberta), roberta(root.sub("roberta"), c, true, kRobertaLayout), classifier(root.sub("classifier"), c.hidden_size, 1) {}
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    return ChoiceOutput(classifier.forward(Dropout(roberta.pooled(inputs, pass), pass.hidden_dropout, pass.train), pass), in, pass);
  }
  BertModel roberta;
  Linear classifier;
};

}  // namespace

std::unique_ptr<BertPreTrainedModel> BertPreTrainedModel::CreateRoberta(const Path& root, const Config& c) {
  const std::string prefix = c.model_type == "xlm-roberta" ? "XLMRoberta" : "Roberta";
  const std::string& a = c.architecture;
  if (a == prefix + "ForSequenceClassification") return ClassificationHeadModel(root, c, "roberta", kRobertaLayout, Tanh);  // RobertaClassificationHead
  if (a == prefix + "ForTokenClassification") return TokenClassificationModel(root, c, "roberta", kRobertaLayout);
  if (a == prefix + "ForQuestionAnswering") return QuestionAnsweringModel(root, c, "roberta", kRobertaLayout, false);
  if (a == prefix + "ForMaskedLM") return std::make_unique<RobertaForMaskedLM>(root, c);
  if (a == prefix + "ForMultipleChoice") return std::make_unique<RobertaForMultipleChoice>(root, c);
  return nullptr;
}

}  // namespace bert
