// ELECTRA's discriminator and generator heads as modeling_electra.py builds them: BERT's embeddings at
// embedding_size, "electra.embeddings_project" to the hidden size when they differ, BERT's encoder, no pooler; the
// classification head (dense, GELU, out_proj on the first token) and the generator's masked-LM head
// (generator_predictions: dense to embedding_size, GELU, LayerNorm; generator_lm_head tied to the word embeddings).
#include "modeling_bert.h"

namespace bert {

namespace {

struct ElectraClassificationHead {
  Linear dense, out_proj;
  ElectraClassificationHead(const Path& p, const Config& c)
      : dense(p.sub("dense"), c.hidden_size, c.hidden_size), out_proj(p.sub("out_proj"), c.hidden_size, c.num_labels) {}
  at::Tensor forward(const at::Tensor& first, const Pass& pass) const {
    at::Tensor x = at::gelu(dense.forward(Dropout(first, pass.classifier_dropout, pass.train), pass));
    return out_proj.forward(Dropout(x, pass.classifier_dropout, pass.train), pass);
  }
};

class ElectraForSequenceClassification final : public BertPreTrainedModel {
 public:
  ElectraForSequenceClassification(const Path& root, const Config& c)
      : BertPreTrainedModel(&electra), electra(root.sub("electra"), c, false), classifier(root.sub("classifier"), c), cfg_(c) {}
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    at::Tensor logits = classifier.forward(electra.first_token_states(inputs, pass), pass);
    HeadOutput out{{{"logits", logits}}, {}};
    if (in.labels) out.loss = SequenceClassificationLoss(logits, in, cfg_, pass);
    return out;
  }
  BertModel electra;
  ElectraClassificationHead classifier;

 private:
  Config cfg_;
};

class ElectraForTokenClassification final : public BertPreTrainedModel {
 public:
  ElectraForTokenClassification(const Path& root, const Config& c)
      : BertPreTrainedModel(&electra), electra(root.sub("electra"), c, false), classifier(root.sub("classifier"), c.hidden_size, c.num_labels), nl_(c.num_labels) {}
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    at::Tensor rows = Dropout(electra.forward(inputs, pass), pass.classifier_dropout, pass.train);
    at::Tensor logits = Repad(classifier.forward(rows, pass), pass);
    HeadOutput out{{{"logits", logits.view({in.batch, in.seq, nl_})}}, {}};
    if (in.labels) out.loss = CrossEntropy(logits, IntLabels(in, {in.batch * in.seq}, logits.device()), pass);
    return out;
  }
  BertModel electra;
  Linear classifier;

 private:
  int64_t nl_;
};

class ElectraForQuestionAnswering final : public BertPreTrainedModel {
 public:
  ElectraForQuestionAnswering(const Path& root, const Config& c)
      : BertPreTrainedModel(&electra), electra(root.sub("electra"), c, false), qa_outputs(root.sub("qa_outputs"), c.hidden_size, 2) {}
  bool keeps_padding() const override { return true; }
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    std::vector<at::Tensor> se = qa_outputs.forward(electra.forward(inputs, pass), pass).view({in.batch, in.seq, 2}).unbind(-1);
    HeadOutput out{{{"start_logits", se[0]}, {"end_logits", se[1]}}, {}};
    if (in.labels) out.loss = SpanLoss(se[0], se[1], in);
    return out;
  }
  BertModel electra;
  Linear qa_outputs;
};

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
      return at::linear(LayerNorm.forward(at::gelu(dense.forward(h, pass))), decoder, bias);
    });
  }
  BertModel electra;
  Linear dense;           // generator_predictions.dense
  BertLayerNorm LayerNorm;  // generator_predictions.LayerNorm
  at::Tensor bias;        // generator_lm_head.bias

 private:
  int64_t vocab_;
};

}  // namespace

// ElectraForMultipleChoice (its SequenceSummary) is not built here: src/config.ts lists the heads each family has.
std::unique_ptr<BertPreTrainedModel> BertPreTrainedModel::CreateElectra(const Path& root, const Config& c) {
  const std::string& a = c.architecture;
  if (a == "ElectraForSequenceClassification") return std::make_unique<ElectraForSequenceClassification>(root, c);
  if (a == "ElectraForTokenClassification") return std::make_unique<ElectraForTokenClassification>(root, c);
  if (a == "ElectraForQuestionAnswering") return std::make_unique<ElectraForQuestionAnswering>(root, c);
  if (a == "ElectraForMaskedLM") return std::make_unique<ElectraForMaskedLM>(root, c);
  return nullptr;
}

}  // namespace bert
