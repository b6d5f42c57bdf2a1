// The modules of modeling_bert.h: construction (each parameter registered under its Hugging Face key, initialised
// as BertPreTrainedModel._init_weights does) and forward passes, read top to bottom as modeling_bert.py.
#include "modeling_bert.h"
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <limits>
#include <mutex>
#include <stdexcept>

namespace bert {

VarStore::VarStore(at::Device device, uint64_t seed, double initializer_range)
    : device_(device), gen_(at::make_generator<at::CPUGeneratorImpl>(seed)), std_(initializer_range) {}

at::Tensor VarStore::normal(at::IntArrayRef shape) { return at::empty(shape, at::kFloat).normal_(0, std_, gen_); }

at::Tensor VarStore::add(const std::string& name, const at::Tensor& init, bool decay) {
  if (index_.count(name)) throw std::logic_error("parameter " + name + " registered twice");
  at::Tensor t = init.to(device_).detach().requires_grad_(true);
  index_[name] = params_.size();
  params_.push_back(Param{name, t, decay, {}});
  return t;
}

Param* VarStore::find(const std::string& name) {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &params_[it->second];
}

const at::Tensor& CastCache::operator()(const at::Tensor& w, at::ScalarType dtype) {
  auto it = casts_.find(w.unsafeGetTensorImpl());
  if (it == casts_.end() || it->second.version != w._version() || it->second.value.scalar_type() != dtype)
    it = casts_.insert_or_assign(w.unsafeGetTensorImpl(), Cast{w.to(dtype), w._version()}).first;
  return it->second.value;
}

std::array<at::Tensor, 3> Unpad(const Batch& in, const at::Device& device, Pass& pass) {
  const int64_t B = in.batch, S = in.seq;
  pass.batch = B;
  pass.seq = S;
  const at::TensorOptions longs = at::TensorOptions().dtype(at::kLong).device(device);
  auto ids = [&](const int32_t* data) { return at::from_blob(const_cast<int32_t*>(data), {B * S}, at::kInt).to(device, at::kLong); };
  std::vector<int64_t> keep, cls;  // flat positions of real tokens; each row's first token among them
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
  if (!keep.empty() && pass.autocast != at::ScalarType::Undefined) {
    // Under autocast the CPU's matrix products run oneDNN kernels generated (and cached) per shape: round the token
    // count up to a multiple of 64 with padding positions (computed, never read), so a run builds a few dozen
    // kernels instead of one per distinct batch; without this a 3-epoch MRPC run slowed down and grew by 1 GB.
    const size_t target = std::min<size_t>(static_cast<size_t>(B * S), (keep.size() + 63) / 64 * 64);
    for (int64_t i = 0; i < B * S && keep.size() < target; ++i)
      if (in.attention_mask[i] == 0) keep.push_back(i);
  }
  if (padded) pass.mask = ids(in.attention_mask).ne(0).view({B, 1, 1, S});  // no mask without padding: SDPA's fastest kernel
  at::Tensor input_ids = ids(in.input_ids);
  at::Tensor token_type_ids = in.token_type_ids ? ids(in.token_type_ids) : at::zeros({B * S}, longs);
  at::Tensor position_ids = at::arange(S, longs).repeat({B});
  if (!keep.empty()) {
    pass.index = at::tensor(keep, at::kLong).to(device);  // a copy: autograd keeps the index past this call
    pass.cls = at::tensor(cls, at::kLong).to(device);
    input_ids = input_ids.index_select(0, pass.index);
    token_type_ids = token_type_ids.index_select(0, pass.index);
    position_ids = position_ids.index_select(0, pass.index);
  }
  return {input_ids, token_type_ids, position_ids};
}

Linear::Linear(const Path& p, int64_t in, int64_t out) : weight(p.normal("weight", {out, in})), bias(p.zeros("bias", {out})) {}

at::Tensor Linear::forward(const at::Tensor& x, const Pass& pass) const {
  // Under autocast in evaluation, a weight's kept cast replaces the cast autocast would make (same values).
  if (pass.casts) return at::linear(x, (*pass.casts)(weight, pass.autocast), (*pass.casts)(bias, pass.autocast));
  return at::linear(x, weight, bias);
}

BertLayerNorm::BertLayerNorm(const Path& p, int64_t dim, double eps)
    : weight(p.ones("weight", {dim})), bias(p.zeros("bias", {dim})), eps(eps) {}

at::Tensor BertLayerNorm::forward(const at::Tensor& x) const { return at::layer_norm(x, {weight.size(0)}, weight, bias, eps); }

static at::Tensor Gelu(const at::Tensor& x) { return at::gelu(x); }  // the exact erf form, as transformers' "gelu"
static at::Tensor GeluTanh(const at::Tensor& x) { return at::gelu(x, "tanh"); }
static at::Tensor QuickGelu(const at::Tensor& x) { return x * at::sigmoid(1.702 * x); }
static at::Tensor Relu(const at::Tensor& x) { return at::relu(x); }
static at::Tensor Silu(const at::Tensor& x) { return at::silu(x); }
static at::Tensor Tanh(const at::Tensor& x) { return at::tanh(x); }

// transformers' ACT2FN names this model implements: the one list (src/config.ts validates config.json against it).
static const std::pair<const char*, Activation> kActivations[] = {
    {"gelu", Gelu}, {"gelu_new", GeluTanh}, {"gelu_pytorch_tanh", GeluTanh}, {"gelu_fast", GeluTanh}, {"quick_gelu", QuickGelu},
    {"relu", Relu}, {"silu", Silu}, {"swish", Silu}, {"tanh", Tanh}};

std::vector<std::string> Activations() {
  std::vector<std::string> names;
  for (const auto& [name, fn] : kActivations) names.push_back(name);
  return names;
}

Activation ActivationOf(const std::string& a) {
  for (const auto& [name, fn] : kActivations)
    if (a == name) return fn;
  throw std::invalid_argument("config: hidden_act '" + a + "' is not supported");
}

// Dropout as torch.nn.functional.dropout computes it (zero with probability p, scale the rest by 1 / (1 - p)), with
// the mask drawn faster on the CPU: libtorch's bernoulli_ draws one mt19937 number per element on one thread, a
// quarter of a MiniLM training forward. Here one 64-bit seed is drawn from the same (the model's) generator and a
// counter-based hash (splitmix64 of seed and position) fills the mask in parallel: the same mask for any thread
// count, and the generator advances one draw per call, so checkpoints and resumes stay exact.
at::Tensor Dropout(const at::Tensor& x, double p, bool train) {
  if (!train || p == 0) return x;
  if (!x.device().is_cpu() || p >= 1) return at::dropout(x, p, true);
  uint64_t seed;
  {
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    seed = gen.get<at::CPUGeneratorImpl>()->random64();
  }
  at::Tensor mask = at::empty(x.sizes(), x.options().requires_grad(false));
  const uint64_t keep_from = static_cast<uint64_t>(std::ceil(p * 16777216.0));  // keep when a 24-bit uniform >= p
  const double scale = 1.0 / (1.0 - p);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, mask.scalar_type(), "bert_dropout_mask", [&] {
    scalar_t* m = mask.data_ptr<scalar_t>();
    const scalar_t kept = static_cast<scalar_t>(scale), dropped = static_cast<scalar_t>(0);
    at::parallel_for(0, mask.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        uint64_t z = seed + static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        m[i] = (z >> 40) >= keep_from ? kept : dropped;
      }
    });
  });
  return x * mask;
}

BertEmbeddings::BertEmbeddings(const Path& p, const Config& c)
    : word_embeddings([&] {
        at::Tensor w = p.sub("word_embeddings").randn({c.vocab_size, c.hidden_size});
        if (c.pad_token_id >= 0 && c.pad_token_id < c.vocab_size) w[c.pad_token_id].zero_();  // as nn.Embedding(padding_idx)
        return p.sub("word_embeddings").var("weight", w, true);
      }()),
      position_embeddings(p.sub("position_embeddings").normal("weight", {c.max_position_embeddings, c.hidden_size})),
      token_type_embeddings(p.sub("token_type_embeddings").normal("weight", {c.type_vocab_size, c.hidden_size})),
      LayerNorm(p.sub("LayerNorm"), c.hidden_size, c.layer_norm_eps),
      pad_token_id(c.pad_token_id) {}

at::Tensor BertEmbeddings::forward(const at::Tensor& input_ids, const at::Tensor& token_type_ids, const at::Tensor& position_ids, const Pass& pass) const {
  at::Tensor e = at::embedding(word_embeddings, input_ids, pad_token_id) + at::embedding(token_type_embeddings, token_type_ids) +
                 at::embedding(position_embeddings, position_ids);
  return Dropout(LayerNorm.forward(e), pass.hidden_dropout, pass.train);
}

BertSelfAttention::BertSelfAttention(const Path& p, const Config& c)
    : query(p.sub("query"), c.hidden_size, c.hidden_size), key(p.sub("key"), c.hidden_size, c.hidden_size),
      value(p.sub("value"), c.hidden_size, c.hidden_size), num_attention_heads(c.num_attention_heads) {}

at::Tensor BertSelfAttention::forward(const at::Tensor& x, const Pass& pass) {
  const int64_t B = pass.batch, S = pass.seq, H = query.weight.size(0), nh = num_attention_heads;
  at::Tensor qkv;
  if (pass.train) {
    qkv = at::linear(x, at::cat({query.weight, key.weight, value.weight}), at::cat({query.bias, key.bias, value.bias}));
  } else {
    const std::array<int64_t, 6> v{query.weight._version(), key.weight._version(), value.weight._version(),
                                   query.bias._version(), key.bias._version(), value.bias._version()};
    const at::ScalarType dtype = pass.autocast == at::ScalarType::Undefined ? at::kFloat : pass.autocast;
    if (!qkv_weight_.defined() || v != versions_ || qkv_weight_.scalar_type() != dtype) {
      qkv_weight_ = at::cat({query.weight, key.weight, value.weight}).to(dtype);  // autocast would cast it to this dtype on each call
      qkv_bias_ = at::cat({query.bias, key.bias, value.bias}).to(dtype);
      versions_ = v;
    }
    qkv = at::linear(x, qkv_weight_, qkv_bias_);
  }
  if (pass.unpadded()) qkv = at::zeros({B * S, 3 * H}, qkv.options()).index_copy(0, pass.index, qkv);
  // unbind, not qkv[0..2]: select's backward fills a zero tensor of all three per slice, unbind's stacks once.
  const std::vector<at::Tensor> q_k_v = qkv.view({B, S, 3, nh, H / nh}).permute({2, 0, 3, 1, 4}).unbind(0);
  const at::Tensor &q = q_k_v[0], &k = q_k_v[1], &v = q_k_v[2];
  at::Tensor context;
  if (pass.train && pass.attention_dropout > 0 && x.device().is_cpu()) {
    // SDPA's math path, written out so its dropout is Dropout's (the same computation, a faster mask).
    at::Tensor scores = at::matmul(q * (1.0 / std::sqrt(static_cast<double>(H / nh))), k.transpose(-2, -1));
    if (pass.mask) scores = scores.masked_fill(pass.mask->logical_not(), -std::numeric_limits<double>::infinity());
    context = at::matmul(Dropout(at::softmax(scores, -1), pass.attention_dropout, true), v);
  } else {
    context = at::scaled_dot_product_attention(q, k, v, pass.mask, pass.attention_dropout, false);
  }
  context = context.transpose(1, 2).reshape({B * S, H});
  return pass.unpadded() ? context.index_select(0, pass.index) : context;
}

BertSelfOutput::BertSelfOutput(const Path& p, const Config& c)
    : dense(p.sub("dense"), c.hidden_size, c.hidden_size), LayerNorm(p.sub("LayerNorm"), c.hidden_size, c.layer_norm_eps) {}

// BertSelfOutput and BertOutput compute the same thing (as in modeling_bert.py): LayerNorm(dropout(dense(h)) + input).
static at::Tensor DenseDropoutAddNorm(const Linear& dense, const BertLayerNorm& norm, const at::Tensor& hidden_states,
                                      const at::Tensor& input_tensor, const Pass& pass) {
  return norm.forward(Dropout(dense.forward(hidden_states, pass), pass.hidden_dropout, pass.train) + input_tensor);
}

at::Tensor BertSelfOutput::forward(const at::Tensor& hidden_states, const at::Tensor& input_tensor, const Pass& pass) const {
  return DenseDropoutAddNorm(dense, LayerNorm, hidden_states, input_tensor, pass);
}

BertIntermediate::BertIntermediate(const Path& p, const Config& c)
    : dense(p.sub("dense"), c.hidden_size, c.intermediate_size), intermediate_act_fn(ActivationOf(c.hidden_act)) {}

BertOutput::BertOutput(const Path& p, const Config& c)
    : dense(p.sub("dense"), c.intermediate_size, c.hidden_size), LayerNorm(p.sub("LayerNorm"), c.hidden_size, c.layer_norm_eps) {}

at::Tensor BertOutput::forward(const at::Tensor& hidden_states, const at::Tensor& input_tensor, const Pass& pass) const {
  return DenseDropoutAddNorm(dense, LayerNorm, hidden_states, input_tensor, pass);
}

BertEncoder::BertEncoder(const Path& p, const Config& c) {
  layer.reserve(static_cast<size_t>(c.num_hidden_layers));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layer.emplace_back(p.sub("layer").sub(i), c);
}

at::Tensor BertModel::forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass) {
  at::Tensor hidden_states = embeddings.forward(inputs[0], inputs[1], inputs[2], pass);  // [tokens, hidden]
  for (BertLayer& l : encoder.layer) hidden_states = l.forward(hidden_states, pass);
  at::Tensor first_token = pass.unpadded() ? hidden_states.index_select(0, pass.cls)
                                           : hidden_states.view({pass.batch, pass.seq, -1}).select(1, 0);
  return pooler.forward(first_token, pass);
}

at::Tensor BertForSequenceClassification::forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass) {
  at::Tensor pooled_output = Dropout(bert.forward(inputs, pass), pass.classifier_dropout, pass.train);
  return classifier.forward(pooled_output, pass);
}

void BertForSequenceClassification::drop_caches() {
  for (BertLayer& l : bert.encoder.layer) l.attention.self.drop_cache();
}

}  // namespace bert
