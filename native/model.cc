// BertForSequenceClassification as modeling_bert.py defines it, written functionally over named tensors
// (the var_store idea): a parameter's Hugging Face key is how it is found, loaded and saved.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/version.h>
#include <cmath>
#include <optional>
#include <stdexcept>
#include "torch_session.h"

namespace bert {

static at::Device ResolveDevice(const std::string& spec) {
  if (spec == "cpu") return at::Device(at::kCPU);
  bool cuda_ok = torch::cuda::is_available();
  if (spec == "auto") return cuda_ok ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
  if (spec.rfind("cuda", 0) == 0) {
    if (!cuda_ok)
      throw std::invalid_argument("device '" + spec + "' was requested but this libtorch sees no CUDA device "
                                  "(CPU-only build, or no GPU/driver); use device 'cpu' or 'auto'");
    at::Device d(spec);
    if (d.has_index() && d.index() >= static_cast<int64_t>(torch::cuda::device_count()))
      throw std::invalid_argument("device '" + spec + "': only " + std::to_string(torch::cuda::device_count()) +
                                  " CUDA device(s) visible");
    return d.has_index() ? d : at::Device(at::kCUDA, 0);
  }
  throw std::invalid_argument("device '" + spec + "' is not one of auto, cpu, cuda, cuda:N");
}

RuntimeInfo Runtime() {
  RuntimeInfo r;
  r.torch_version = TORCH_VERSION;
  r.cuda_available = torch::cuda::is_available();
  r.cuda_device_count = static_cast<int>(torch::cuda::device_count());
  r.num_threads = at::get_num_threads();
  return r;
}

void SetNumThreads(int n) { at::set_num_threads(n); }

std::unique_ptr<Session> Session::Create(const Options& options) {
  return std::make_unique<TorchSession>(options);
}

TorchSession::TorchSession(const Options& o) : cfg_(o.config), device_(ResolveDevice(o.device)) {
  const Config& c = cfg_;
  if (c.hidden_size % c.num_attention_heads != 0)
    throw std::invalid_argument("config: hidden_size (" + std::to_string(c.hidden_size) +
                                ") is not a multiple of num_attention_heads (" + std::to_string(c.num_attention_heads) + ")");
  Activation(at::zeros({1}));  // rejects an unknown hidden_act before any allocation
  if (o.threads > 0) at::set_num_threads(o.threads);
  Seed(o.seed);

  // Initialise as BertPreTrainedModel._init_weights does, from a seeded generator so runs repeat.
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  const double std = c.initializer_range;
  auto normal = [&](std::vector<int64_t> shape) { return at::empty(shape, at::kFloat).normal_(0, std, gen); };
  auto add = [&](const std::string& name, at::Tensor t, bool decay) {
    index_[name] = params_.size();
    params_.push_back(Param{name, t, decay, {}, {}});
  };
  auto linear = [&](const std::string& n, int64_t out, int64_t in) {
    add(n + ".weight", normal({out, in}), true);
    add(n + ".bias", at::zeros({out}), false);
  };
  auto layer_norm = [&](const std::string& n, int64_t dim) {
    add(n + ".weight", at::ones({dim}), false);
    add(n + ".bias", at::zeros({dim}), false);
  };
  const int64_t H = c.hidden_size;
  at::Tensor word = normal({c.vocab_size, H});
  if (c.pad_token_id >= 0 && c.pad_token_id < c.vocab_size) word[c.pad_token_id].zero_();
  add("bert.embeddings.word_embeddings.weight", word, true);
  add("bert.embeddings.position_embeddings.weight", normal({c.max_position_embeddings, H}), true);
  add("bert.embeddings.token_type_embeddings.weight", normal({c.type_vocab_size, H}), true);
  layer_norm("bert.embeddings.LayerNorm", H);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    std::string p = "bert.encoder.layer." + std::to_string(i) + ".";
    linear(p + "attention.self.query", H, H);
    linear(p + "attention.self.key", H, H);
    linear(p + "attention.self.value", H, H);
    linear(p + "attention.output.dense", H, H);
    layer_norm(p + "attention.output.LayerNorm", H);
    linear(p + "intermediate.dense", c.intermediate_size, H);
    linear(p + "output.dense", H, c.intermediate_size);
    layer_norm(p + "output.LayerNorm", H);
  }
  linear("bert.pooler.dense", H, H);
  linear("classifier", c.num_labels, H);

  for (auto& p : params_) p.value = p.value.to(device_).detach().requires_grad_(true);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    std::string p = "bert.encoder.layer." + std::to_string(i) + ".";
    auto w = [&](const std::string& n) { return P(p + n); };
    layers_.push_back(Layer{w("attention.self.query.weight"), w("attention.self.query.bias"),
                            w("attention.self.key.weight"), w("attention.self.key.bias"),
                            w("attention.self.value.weight"), w("attention.self.value.bias"),
                            w("attention.output.dense.weight"), w("attention.output.dense.bias"),
                            w("attention.output.LayerNorm.weight"), w("attention.output.LayerNorm.bias"),
                            w("intermediate.dense.weight"), w("intermediate.dense.bias"),
                            w("output.dense.weight"), w("output.dense.bias"),
                            w("output.LayerNorm.weight"), w("output.LayerNorm.bias")});
  }
}

const at::Tensor& TorchSession::P(const std::string& name) const { return params_.at(index_.at(name)).value; }

std::vector<std::string> TorchSession::ParameterNames() const {
  std::vector<std::string> names;
  for (const auto& p : params_) names.push_back(p.name);
  return names;
}

int64_t TorchSession::NumParameters() const {
  int64_t n = 0;
  for (const auto& p : params_) n += p.value.numel();
  return n;
}

at::Tensor TorchSession::Activation(const at::Tensor& x) const {
  const std::string& a = cfg_.hidden_act;
  if (a == "gelu") return at::gelu(x);  // the exact erf form, as transformers' "gelu"
  if (a == "gelu_new" || a == "gelu_pytorch_tanh" || a == "gelu_fast") return at::gelu(x, "tanh");
  if (a == "quick_gelu") return x * at::sigmoid(1.702 * x);
  if (a == "relu") return at::relu(x);
  if (a == "silu" || a == "swish") return at::silu(x);
  if (a == "tanh") return at::tanh(x);
  throw std::invalid_argument("config: hidden_act '" + a + "' is not supported (gelu, gelu_new, gelu_pytorch_tanh, "
                              "gelu_fast, quick_gelu, relu, silu, swish, tanh)");
}

static at::Tensor Ids(const int32_t* data, int64_t b, int64_t s, const at::Device& device) {
  return at::from_blob(const_cast<int32_t*>(data), {b, s}, at::kInt).to(device, at::kLong);
}

at::Tensor TorchSession::Logits(const Batch& in, bool train) {
  const Config& c = cfg_;
  const int64_t B = in.batch, S = in.seq, H = c.hidden_size, nh = c.num_attention_heads, hd = H / nh;
  const at::TensorOptions longs = at::TensorOptions().dtype(at::kLong).device(device_);

  // Padding. With dynamic padding a batch is often a third padding; every layer but attention works token by
  // token, so those layers run on the real tokens only ("unpadded") and attention alone sees the padded layout.
  // Results for real tokens are the same computation; padded positions never reach the logits.
  std::vector<int64_t> keep, cls;  // flat indices of real tokens; each row's [CLS] among them
  bool padded = false;
  if (in.attention_mask) {
    for (int64_t i = 0, n = B * S; i < n && !padded; ++i) padded = in.attention_mask[i] == 0;
    bool cls_real = true;
    for (int64_t b = 0; b < B; ++b) cls_real = cls_real && in.attention_mask[b * S] != 0;
    if (padded && cls_real) {
      for (int64_t i = 0; i < B * S; ++i) {
        if (i % S == 0) cls.push_back(static_cast<int64_t>(keep.size()));
        if (in.attention_mask[i] != 0) keep.push_back(i);
      }
    }
  }
  if (!keep.empty() && autocast_ != at::ScalarType::Undefined) {
    // Under autocast the CPU's matrix products run oneDNN kernels generated (and cached) per shape: round the token
    // count up to a multiple of 64 with padding positions (computed, never read), so a run builds a few dozen
    // kernels instead of one per distinct batch; without this a 3-epoch MRPC run slowed down and grew by 1 GB.
    const size_t target = std::min<size_t>(static_cast<size_t>(B * S), (keep.size() + 63) / 64 * 64);
    for (int64_t i = 0; i < B * S && keep.size() < target; ++i)
      if (in.attention_mask[i] == 0) keep.push_back(i);
  }
  const bool unpad = !keep.empty();
  // Key-padding mask (True = attend). No mask without padding, so SDPA can use its fastest kernel.
  std::optional<at::Tensor> mask;
  if (padded) mask = Ids(in.attention_mask, B, S, device_).ne(0).view({B, 1, 1, S});

  at::Tensor ids = Ids(in.input_ids, B, S, device_).view(-1);
  at::Tensor types = in.token_type_ids ? Ids(in.token_type_ids, B, S, device_).view(-1) : at::zeros({B * S}, longs);
  at::Tensor positions = at::arange(S, longs).repeat({B});
  at::Tensor index;
  if (unpad) {
    index = at::tensor(keep, at::kLong).to(device_);  // a copy: autograd keeps the index past this call
    ids = ids.index_select(0, index);
    types = types.index_select(0, index);
    positions = positions.index_select(0, index);
  }

  if (train) DropEvalCaches();  // this step's update makes them stale; they are not kept through training
  // Under autocast in evaluation, a weight's kept cast replaces the cast autocast would make (same values).
  const bool cast = !train && autocast_ != at::ScalarType::Undefined;
  auto linear = [&](const at::Tensor& in, const at::Tensor& w, const at::Tensor& b) {
    return cast ? at::linear(in, EvalCast(w), EvalCast(b)) : at::linear(in, w, b);
  };
  const double p_hidden = train ? c.hidden_dropout_prob : 0.0;
  const double p_attn = train ? c.attention_probs_dropout_prob : 0.0;
  // x: [tokens, H], tokens = the real ones (unpadded) or all B*S.
  at::Tensor x = at::embedding(P("bert.embeddings.word_embeddings.weight"), ids, c.pad_token_id) +
                 at::embedding(P("bert.embeddings.token_type_embeddings.weight"), types) +
                 at::embedding(P("bert.embeddings.position_embeddings.weight"), positions);
  x = at::layer_norm(x, {H}, P("bert.embeddings.LayerNorm.weight"), P("bert.embeddings.LayerNorm.bias"), c.layer_norm_eps);
  x = at::dropout(x, p_hidden, train);

  for (Layer& L : layers_) {
    // Query, key and value in one matrix product (the same sums as three).
    at::Tensor qkv;
    if (train) {
      qkv = at::linear(x, at::cat({L.q_w, L.k_w, L.v_w}), at::cat({L.q_b, L.k_b, L.v_b}));
    } else {
      const std::array<uint32_t, 6> v{L.q_w._version(), L.k_w._version(), L.v_w._version(),
                                      L.q_b._version(), L.k_b._version(), L.v_b._version()};
      const at::ScalarType dtype = autocast_ == at::ScalarType::Undefined ? at::kFloat : autocast_;
      if (!L.qkv_w.defined() || v != L.qkv_versions || L.qkv_w.scalar_type() != dtype) {
        L.qkv_w = at::cat({L.q_w, L.k_w, L.v_w}).to(dtype);  // autocast would cast it to this dtype on each call
        L.qkv_b = at::cat({L.q_b, L.k_b, L.v_b}).to(dtype);
        L.qkv_versions = v;
      }
      qkv = at::linear(x, L.qkv_w, L.qkv_b);
    }
    if (unpad) qkv = at::zeros({B * S, 3 * H}, qkv.options()).index_copy(0, index, qkv);
    qkv = qkv.view({B, S, 3, nh, hd}).permute({2, 0, 3, 1, 4});
    at::Tensor ctx = at::scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], mask, p_attn, false);
    ctx = ctx.transpose(1, 2).reshape({B * S, H});
    if (unpad) ctx = ctx.index_select(0, index);
    at::Tensor a = at::dropout(linear(ctx, L.ao_w, L.ao_b), p_hidden, train);
    at::Tensor x1 = at::layer_norm(a + x, {H}, L.aln_w, L.aln_b, c.layer_norm_eps);
    at::Tensor h = Activation(linear(x1, L.i_w, L.i_b));
    at::Tensor o = at::dropout(linear(h, L.o_w, L.o_b), p_hidden, train);
    x = at::layer_norm(o + x1, {H}, L.oln_w, L.oln_b, c.layer_norm_eps);
  }
  at::Tensor first = unpad ? x.index_select(0, at::tensor(cls, at::kLong).to(device_))
                           : x.view({B, S, H}).select(1, 0);
  at::Tensor pooled = at::tanh(linear(first, P("bert.pooler.dense.weight"), P("bert.pooler.dense.bias")));
  const double p_cls = train ? (c.classifier_dropout >= 0 ? c.classifier_dropout : c.hidden_dropout_prob) : 0.0;
  pooled = at::dropout(pooled, p_cls, train);
  return linear(pooled, P("classifier.weight"), P("classifier.bias"));
}

// The loss BertForSequenceClassification picks for its problem_type.
at::Tensor TorchSession::Loss(const at::Tensor& logits, const Batch& in) {
  const int64_t B = in.batch, nl = cfg_.num_labels;
  if (cfg_.problem_type == "regression") {
    at::Tensor y = at::from_blob(const_cast<void*>(in.labels), {B, in.labels_per_row}, at::kFloat).to(device_).clone();  // own the data: autograd may keep it
    return nl == 1 ? at::mse_loss(logits.squeeze(), y.squeeze()) : at::mse_loss(logits, y);
  }
  if (cfg_.problem_type == "multi_label_classification") {
    at::Tensor y = in.labels_float
        ? at::from_blob(const_cast<void*>(in.labels), {B, nl}, at::kFloat).to(device_).clone()
        : at::from_blob(const_cast<void*>(in.labels), {B, nl}, at::kInt).to(device_, at::kFloat);
    return at::binary_cross_entropy_with_logits(logits, y);
  }
  at::Tensor y = at::from_blob(const_cast<void*>(in.labels), {B}, at::kInt).to(device_, at::kLong);
  return at::cross_entropy_loss(logits.view({-1, nl}), y.view(-1));  // ignore_index -100 as in PyTorch
}

const at::Tensor& TorchSession::EvalCast(const at::Tensor& w) {
  auto it = eval_casts_.find(w.unsafeGetTensorImpl());
  if (it == eval_casts_.end() || it->second.version != w._version() || it->second.value.scalar_type() != autocast_)
    it = eval_casts_.insert_or_assign(w.unsafeGetTensorImpl(), Cast{w.to(autocast_), w._version()}).first;
  return it->second.value;
}

void TorchSession::DropEvalCaches() {
  eval_casts_.clear();
  for (Layer& L : layers_) L.qkv_w = L.qkv_b = at::Tensor();
}

AutocastScope::AutocastScope(at::DeviceType t, at::ScalarType dtype)
    : type_(t), prev_enabled_(at::autocast::is_autocast_enabled(t)), prev_dtype_(at::autocast::get_autocast_dtype(t)) {
  at::autocast::set_autocast_enabled(t, true);
  at::autocast::set_autocast_dtype(t, dtype);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();  // the casts of parameters kept for one pass
  at::autocast::set_autocast_enabled(type_, prev_enabled_);
  at::autocast::set_autocast_dtype(type_, prev_dtype_);
}

void TorchSession::SetAutocast(const std::string& dtype) {
  if (dtype == "bf16") autocast_ = at::kBFloat16;
  else if (dtype.empty() || dtype == "no") autocast_ = at::ScalarType::Undefined;
  else throw std::invalid_argument("mixed precision '" + dtype + "' is not one of no, bf16");
}

ForwardResult TorchSession::Forward(const Batch& batch) {
  c10::InferenceMode guard;
  std::optional<AutocastScope> autocast;
  if (autocast_ != at::ScalarType::Undefined) autocast.emplace(device_.type(), autocast_);
  at::Tensor logits = Logits(batch, false);
  ForwardResult r;
  if (batch.labels) {
    r.loss = Loss(logits, batch).item<double>();
    r.has_loss = true;
  }
  autocast.reset();
  at::Tensor cpu = logits.to(at::kCPU, at::kFloat).contiguous();
  r.logits.assign(cpu.data_ptr<float>(), cpu.data_ptr<float>() + cpu.numel());
  return r;
}

double TorchSession::ForwardBackward(const Batch& batch, double loss_scale) {
  // Only the forward draws random numbers (backward reuses the saved masks), so only it holds the scope.
  const Config& c = cfg_;
  const bool dropout = c.hidden_dropout_prob > 0 || c.attention_probs_dropout_prob > 0 || c.classifier_dropout > 0;
  at::Tensor loss;
  {
    // The forward and the loss run under autocast (the model computes its loss inside forward in transformers);
    // backward runs outside it, as the Trainer's accelerator.backward does.
    std::optional<AutocastScope> autocast;
    if (autocast_ != at::ScalarType::Undefined) autocast.emplace(device_.type(), autocast_);
    at::Tensor logits;
    {
      std::optional<DropoutScope> scope;
      if (dropout) scope.emplace(device_.is_cpu() ? cpu_gen_ : device_gen_, device_);
      logits = Logits(batch, true);
    }
    loss = Loss(logits, batch);
  }
  (loss_scale == 1.0 ? loss : loss * loss_scale).backward();
  return loss.item<double>();
}

}  // namespace bert
