// The modules of modeling_bert.h: construction (each parameter registered under its Hugging Face key, initialised
// as BertPreTrainedModel._init_weights does) and forward passes, read top to bottom as modeling_bert.py.
#include "modeling_bert.h"
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <stdexcept>

namespace bert {

VarStore::VarStore(at::Device device, uint64_t seed, double initializer_range)
    : device_(device), gen_(at::make_generator<at::CPUGeneratorImpl>(seed)), std_(initializer_range) {}

at::Tensor VarStore::normal(at::IntArrayRef shape) { return at::empty(shape, at::kFloat).normal_(0, std_, gen_); }

at::Tensor VarStore::trunc_normal(at::IntArrayRef shape, double std, double cutoff) {
  // torch's inverse-CDF method: uniform between the bounds' CDF values, erfinv, scale, clamp.
  const double lo = 0.5 * (1 + std::erf(-cutoff / std::sqrt(2.0))), hi = 0.5 * (1 + std::erf(cutoff / std::sqrt(2.0)));
  at::Tensor t = at::empty(shape, at::kFloat).uniform_(2 * lo - 1, 2 * hi - 1, gen_);
  return t.erfinv_().mul_(std * std::sqrt(2.0)).clamp_(-cutoff * std, cutoff * std);
}

at::Tensor VarStore::add(const std::string& name, const at::Tensor& init, bool decay) {
  if (index_.count(name)) throw std::logic_error("parameter " + name + " registered twice");
  at::Tensor t = init.to(device_).detach().requires_grad_(true);
  index_[name] = params_.size();
  params_.push_back(Param{name, t, decay});
  return t;
}

Param* VarStore::find(const std::string& name) {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &params_[it->second];
}

// libtorch's oneDNN operators for prepacked weights (the ones inductor's frozen CPU graphs call), found through
// the dispatcher: they are registered by libtorch_cpu, not declared in its headers.
static const c10::OperatorHandle* FindOp(const char* name, const char* overload) {
  auto op = c10::Dispatcher::singleton().findOp(c10::OperatorName(name, overload));
  return op ? new c10::OperatorHandle(*op) : nullptr;  // kept for the process
}
struct PackOps {
  const c10::OperatorHandle* reorder = FindOp("mkldnn::_reorder_linear_weight", "");
  const c10::OperatorHandle* linear = FindOp("mkldnn::_linear_pointwise", "");
  const c10::OperatorHandle* linear_binary = FindOp("mkldnn::_linear_pointwise", "binary");
  const c10::OperatorHandle* quantized_prepack = FindOp("quantized::linear_prepack", "");
  const c10::OperatorHandle* quantized_linear = FindOp("quantized::linear_dynamic", "");
};
static const PackOps& Ops() {
  static const PackOps ops;
  return ops;
}

bool TrainOnOneDnn() {
  static const bool ok = [] {
    return CanPackWeights() && at::get_cpu_capability() == "AVX512";
  }();
  return ok;
}

bool CanPackWeights() {
  // BERT_TRAINER_NO_PACK=1: libtorch's own products in evaluation too (for comparisons).
  static const bool ok = at::hasMKLDNN() && Ops().reorder && Ops().linear && Ops().linear_binary && !std::getenv("BERT_TRAINER_NO_PACK");
  return ok;
}

bool CpuHasPackedBf16() {
  static const bool ok = [] {
    const c10::OperatorHandle* check = FindOp("mkldnn::_is_mkldnn_bf16_supported", "");
    if (!CanPackWeights() || !check) return false;
    c10::Stack stack;
    check->callBoxed(&stack);
    return stack.at(0).toBool();
  }();
  return ok;
}

static at::Tensor Call(const c10::OperatorHandle& op, c10::Stack stack) {
  op.callBoxed(&stack);
  return stack.at(0).toTensor();
}

// A Linear without bias (ModernBERT's) passes an undefined tensor: the operators' `Tensor? B` is None then.
static c10::IValue Optional(const at::Tensor& t) { return t.defined() ? c10::IValue(t) : c10::IValue(); }

at::Tensor PackedLinear(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& bias, const char* act, const char* algorithm) {
  return Call(*Ops().linear, {x.contiguous(), packed, Optional(bias), std::string(act), c10::List<std::optional<at::Scalar>>(),
                         *algorithm ? c10::IValue(std::string(algorithm)) : c10::IValue()});
}

at::Tensor PackedLinearAdd(const at::Tensor& x, const at::Tensor& packed, const at::Tensor& bias, const at::Tensor& residual) {
  return Call(*Ops().linear_binary, {x.contiguous(), residual.contiguous(), packed, Optional(bias), std::string("add")});
}

const at::Tensor& WeightCache::Keep(Map& map, const at::Tensor& w, at::ScalarType dtype, Form form) {
  auto it = map.find(w.unsafeGetTensorImpl());
  if (it == map.end() || it->second.version != w._version() || it->second.dtype != dtype) {
    at::Tensor v = w.to(dtype);
    if (form == Form::kBf16Panels) v = PackPanels(v.to(at::kFloat));
    else if (form == Form::kPacked && reorder_) v = panels(dtype) ? PackPanels(v) : Call(*Ops().reorder, {v, c10::IValue()});
    it = map.insert_or_assign(w.unsafeGetTensorImpl(), Kept{v, w._version(), dtype}).first;
  }
  return it->second.value;
}

bool CanQuantize() { return Ops().quantized_prepack && Ops().quantized_linear; }

bool Int8ReduceRange() {
  static const bool reduce = [] {
    if (const char* v = std::getenv("BERT_TRAINER_INT8_REDUCE_RANGE"); v && (std::string(v) == "0" || std::string(v) == "1")) return std::string(v) == "1";
#if defined(__x86_64__) && defined(__GNUC__)
    return !(__builtin_cpu_supports("avx512vnni") || __builtin_cpu_supports("avxvnni"));
#else
    return true;
#endif
  }();
  return reduce;
}

at::Tensor QuantizedLinear(const at::Tensor& x, const c10::IValue& packed) {
  const at::Tensor rows = x.reshape({-1, x.size(-1)}).contiguous();
  c10::Stack stack{rows, packed, Int8ReduceRange()};
  Ops().quantized_linear->callBoxed(&stack);
  std::vector<int64_t> out = x.sizes().vec();
  at::Tensor y = stack.at(0).toTensor();
  out.back() = y.size(-1);
  return y.view(out);
}

// MinMaxObserver(qint8, per_tensor_symmetric).calculate_qparams, in float32 as it computes: the largest magnitude
// over (quant_max - quant_min) / 2, at least float32's eps; zero point 0.
static double WeightScale(const at::Tensor& weight) {
  at::Tensor scale = at::maximum(weight.max().clamp_min(0), weight.min().clamp_max(0).neg()) / 127.5;
  return at::maximum(scale, at::full({}, std::numeric_limits<float>::epsilon(), scale.options())).item<double>();
}

c10::IValue QuantizeLinear(const std::vector<at::Tensor>& weights, const at::Tensor& bias) {
  // libtorch 2.13 warns once that quantized tensors are deprecated: the notice is for Python's torch.ao users; the
  // operators are still those quantize_dynamic runs (CanQuantize says whether a libtorch has them).
  struct Silent : c10::WarningHandler {
    void process(const c10::Warning&) override {}
  } silent;
  c10::WarningUtils::WarningHandlerGuard quiet(&silent);
  std::vector<at::Tensor> parts;
  for (const at::Tensor& part : weights) {
    const at::Tensor w = part.detach().to(at::kFloat).contiguous();
    parts.push_back(at::quantize_per_tensor(w, WeightScale(w), 0, at::kQInt8));
  }
  at::Tensor q = parts[0];
  if (parts.size() > 1) {
    // Parts (query, key, value) stacked as one weight whose rows carry their part's scale: fbgemm dequantizes each
    // output column with its row's scale, so the sums are those of separate products, and the input is quantized
    // once instead of once per part.
    std::vector<at::Tensor> ints, row_scales;
    for (const at::Tensor& part : parts) {
      ints.push_back(part.int_repr());
      row_scales.push_back(at::full({part.size(0)}, part.q_scale(), at::kDouble));
    }
    const at::Tensor all = at::cat(row_scales);
    q = at::_make_per_channel_quantized_tensor(at::cat(ints), all, at::zeros(all.sizes(), at::kLong), 0);
  }
  c10::Stack stack{q, bias.defined() ? c10::IValue(bias.detach().to(at::kFloat).contiguous()) : c10::IValue()};
  Ops().quantized_prepack->callBoxed(&stack);
  return stack.at(0);
}

const c10::IValue& WeightCache::quantized(const at::Tensor& w, const at::Tensor& bias) {
  auto it = quantized_.find(w.unsafeGetTensorImpl());
  if (it == quantized_.end() || it->second.version != w._version())
    it = quantized_.insert_or_assign(w.unsafeGetTensorImpl(), Quantized{QuantizeLinear({w}, bias), w._version()}).first;
  return it->second.packed;
}

const at::Tensor& WeightCache::cast(const at::Tensor& w, at::ScalarType dtype) { return Keep(casts_, w, dtype, Form::kCast); }
const at::Tensor& WeightCache::packed(const at::Tensor& w, at::ScalarType dtype) { return Keep(packs_, w, dtype, Form::kPacked); }
const at::Tensor& WeightCache::bf16_panels(const at::Tensor& w) { return Keep(bf16_panels_, w, at::kBFloat16, Form::kBf16Panels); }

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
    if (padded && cls_real && !pass.keep_padding) {
      for (int64_t i = 0; i < B * S; ++i) {
        if (i % S == 0) cls.push_back(static_cast<int64_t>(keep.size()));
        if (in.attention_mask[i] != 0) keep.push_back(i);
      }
    }
  }
  if (!keep.empty()) {
    const int64_t real = static_cast<int64_t>(keep.size());
    for (int64_t b = 0; b < B; ++b) pass.lengths.push_back((b + 1 < B ? cls[b + 1] : real) - cls[b]);
    // Round the token rows up to a multiple of 32 (64 under autocast) with padding positions (computed, never
    // read) so that a run's products see a few dozen shapes instead of one per batch: oneDNN generates and caches
    // kernels per shape (every bf16 product; evaluation's prepacked fp32 ones), and freed blocks of recurring sizes
    // are reused. With a shape per batch a bf16 3-epoch MRPC run grew by 1 GB; 250 fp32 MiniLM steps of random
    // lengths peaked at 927 MB RSS against 733 MB rounded (glibc's heap fragments).
    // A predicting model's fp32 evaluation computes the real rows alone: no autograd buffers churn its heap, and an
    // evaluation set's batches (never shuffled) repeat their shapes every epoch; 32 extra rows would be up to 8% more
    // work (batch-1 latency). A training model's evaluation rounds as training does: where training's products are
    // oneDNN's it then runs on their primitives (Pass::shares_training_products), elsewhere it makes a few per
    // 32-row bucket instead of a few per batch (MRPC's validation set: 193 primitives, +100 MB at exact counts).
    const size_t multiple = pass.autocast != at::ScalarType::Undefined ? 64 : pass.train || pass.trains ? 32 : 1;
    const size_t target = std::min<size_t>(static_cast<size_t>(B * S), (keep.size() + multiple - 1) / multiple * multiple);
    for (int64_t i = 0; i < B * S && keep.size() < target; ++i)
      if (in.attention_mask[i] == 0) keep.push_back(i);
    if (static_cast<int64_t>(keep.size()) > real) pass.lengths.push_back(static_cast<int64_t>(keep.size()) - real);
  }
  if (padded) pass.mask = ids(in.attention_mask).ne(0).view({B, 1, 1, S});  // no mask without padding: SDPA's fastest kernel
  at::Tensor input_ids = ids(in.input_ids);
  at::Tensor token_type_ids = in.token_type_ids ? ids(in.token_type_ids) : at::zeros({B * S}, longs);
  at::Tensor position_ids;
  if (pass.position_padding_idx >= 0) {
    // RoBERTa: padding_idx + the running count of non-pad tokens, padding_idx itself at pad tokens.
    const int64_t pad = pass.position_padding_idx;
    std::vector<int64_t> pos(static_cast<size_t>(B * S));
    for (int64_t b = 0; b < B; ++b)
      for (int64_t s = 0, count = 0; s < S; ++s) {
        const int64_t i = b * S + s;
        pos[static_cast<size_t>(i)] = in.input_ids[i] != pad ? pad + ++count : pad;
      }
    position_ids = at::tensor(pos, at::kLong).to(device);
  } else {
    position_ids = at::arange(S, longs).repeat({B});
  }
  if (!keep.empty()) {
    pass.index = at::tensor(keep, at::kLong).to(device);  // a copy: autograd keeps the index past this call
    pass.cls = at::tensor(cls, at::kLong).to(device);
    input_ids = input_ids.index_select(0, pass.index);
    token_type_ids = token_type_ids.index_select(0, pass.index);
    position_ids = position_ids.index_select(0, pass.index);
  }
  return {input_ids, token_type_ids, position_ids};
}

Linear::Linear(const Path& p, int64_t in, int64_t out, bool with_bias)
    : weight(p.normal("weight", {out, in})), bias(with_bias ? p.zeros("bias", {out}) : at::Tensor()) {}

Linear::Linear(const Path& p, int64_t in, int64_t out, bool with_bias, double std, double cutoff)
    : weight(p.trunc_normal("weight", {out, in}, std, cutoff)), bias(with_bias ? p.zeros("bias", {out}) : at::Tensor()) {}

// y = x W^T + b for CPU fp32 training with `Products`' kernels for the output and the gradients. The weight gradient
// comes out [out, in] as the parameter is laid out, so autograd keeps it without the copy addmm's transposed one needs.
// (A Linear without bias takes the second form: autograd's custom functions take no undefined tensors.)
template <class Products, bool kBias>
struct KernelLinear : public torch::autograd::Function<KernelLinear<Products, kBias>> {
  static at::Tensor Forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
    const at::Tensor rows = x.reshape({-1, x.size(-1)}).contiguous();
    ctx->save_for_backward({rows, weight});
    ctx->saved_data["shape"] = x.sizes().vec();
    std::vector<int64_t> out = x.sizes().vec();
    out.back() = weight.size(0);
    return Products::Output(rows, weight, bias).view(out);
  }
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
    return Forward(ctx, x, weight, bias);
  }
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight) {
    return Forward(ctx, x, weight, at::Tensor());
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& rows = saved[0];
    const at::Tensor& weight = saved[1];
    const at::Tensor dy = grads[0].reshape({-1, weight.size(0)}).contiguous();
    at::Tensor dx, dw;
    if (ctx->needs_input_grad(0)) dx = Products::InputGrad(dy, weight).view(ctx->saved_data["shape"].toIntVector());
    const bool bias_grad = kBias && ctx->needs_input_grad(2);
    at::Tensor db;
    if (ctx->needs_input_grad(1)) dw = Products::WeightGrad(dy, rows, bias_grad ? &db : nullptr);
    else if (bias_grad) db = dy.sum(0);
    if (!kBias) return {dx, dw};
    return {dx, dw, db};
  }
};

// oneDNN's products on the plain weight (reordering it each step would cost what it saves).
struct OneDnnProducts {
  static at::Tensor Output(const at::Tensor& rows, const at::Tensor& weight, const at::Tensor& bias) { return PackedLinear(rows, weight, bias); }
  static at::Tensor InputGrad(const at::Tensor& dy, const at::Tensor& weight) { return PackedLinear(dy, weight.t(), at::Tensor()); }
  static at::Tensor WeightGrad(const at::Tensor& dy, const at::Tensor& rows, at::Tensor* bias_grad) {
    if (bias_grad) *bias_grad = dy.sum(0);
    return at::mm(dy.t(), rows);
  }
};

// The panel products, the weight packed in each pass (it changes every step; a MiniLM layer's four weights pack in
// ~0.8 ms against ~22 ms of their products). On the AVX2-only EPYC at training's 418 rows, MiniLM's four products of
// a layer, 2 threads, alternating runs: the output 25.3 -> 22.2 ms against MKL's x W^T on a quiet machine, 36.8 ->
// 28.3 on a busy one (a thread done with its tiles takes another's where MKL's even split waits for the slowed core);
// the input gradient even when quiet, 34.8 -> 29.1 busy. bert-base's layer: 106 -> 93 and 98 -> 95 ms (quiet).
struct PanelProducts {
  static at::Tensor Output(const at::Tensor& rows, const at::Tensor& weight, const at::Tensor& bias) {
    return PanelLinear(rows, PackPanels(weight), weight.size(0), bias, PanelAct::kNone);
  }
  static at::Tensor InputGrad(const at::Tensor& dy, const at::Tensor& weight) {
    return PanelLinear(dy, PackPanelsTransposed(weight), weight.size(1), at::Tensor(), PanelAct::kNone);
  }
  // dW = dy^T rows as (dy^T) (rows^T)^T: dy transposed, its column sums (the bias gradient) from that pass. Against
  // MKL's dy^T rows and dy.sum(0), at MiniLM's four weight shapes and 300-620 rows, alternating in one process on the
  // AVX2-only EPYC, 4 runs: a layer's 0.69-0.99x the time (the faster the more the host's load slowed a core).
  static at::Tensor WeightGrad(const at::Tensor& dy, const at::Tensor& rows, at::Tensor* bias_grad) {
    return PanelLinear(TransposeRows(dy, bias_grad), PackPanelsTransposed(rows), rows.size(1), at::Tensor(), PanelAct::kNone);
  }
};

// t rounded to bf16's precision, kept in fp32 (two casts: under autograd their backward rounds the gradient too).
static at::Tensor RoundBf16(const at::Tensor& t) { return t.defined() ? t.to(at::kBFloat16).to(at::kFloat) : t; }

// x W^T + b on the panels of W rounded to bf16 (`panels`, N its rows), x and b rounded, the result rounded to bf16.
static at::Tensor Bf16PanelLinear(const at::Tensor& x, const at::Tensor& panels, int64_t N, const at::Tensor& bias) {
  return PanelLinear(RoundBf16(x), panels, N, RoundBf16(bias), PanelAct::kNone).to(at::kBFloat16);
}

// bf16 autocast's products where oneDNN has no bf16 kernels for the CPU (Bf16OnPanels: AVX2-only CPUs, where
// libtorch's bf16 matmul falls back to a scalar loop: a MiniLM training step took 5.8 s against fp32's 0.19 s on a
// Zen 3 EPYC, 75% of it in cpublas_gemm_impl): the fp32 panel products over operands rounded to bf16. A product of
// two bf16 values is exact in fp32, and libtorch's bf16 products sum in fp32 and round the sum to bf16 as these do,
// so only the order of the sums differs. The gradients are those of autocast's graph (cast, bf16 product, cast
// back): dx = dy W rounded to bf16, dW = dy^T x rounded, the bias gradient dy's column sums rounded, each handed
// back in its input's dtype by the casts' backward (autograd casts dx to x's dtype).
struct Bf16PanelProducts {
  static at::Tensor Output(const at::Tensor& rows, const at::Tensor& weight, const at::Tensor& bias) {
    return Bf16PanelLinear(rows, PackPanels(RoundBf16(weight)), weight.size(0), bias);
  }
  static at::Tensor InputGrad(const at::Tensor& dy, const at::Tensor& weight) {
    return PanelLinear(dy.to(at::kFloat), PackPanelsTransposed(RoundBf16(weight)), weight.size(1), at::Tensor(), PanelAct::kNone).to(at::kBFloat16);
  }
  static at::Tensor WeightGrad(const at::Tensor& dy, const at::Tensor& rows, at::Tensor* bias_grad) {
    at::Tensor dw = RoundBf16(PanelLinear(TransposeRows(dy, bias_grad), PackPanelsTransposed(RoundBf16(rows)), rows.size(1), at::Tensor(), PanelAct::kNone));
    if (bias_grad) *bias_grad = RoundBf16(*bias_grad);
    return dw;
  }
};

bool Bf16OnPanels() {
  static const bool ok = !CpuHasPackedBf16() && std::string(PanelProductsKernel()) == "avx2";
  return ok;
}

// Whether this pass's bf16 products on x's device run on the panel kernels.
static bool Bf16Panels(const at::Tensor& x, const Pass& pass) { return pass.autocast == at::kBFloat16 && x.device().is_cpu() && Bf16OnPanels(); }

bool TrainOnPanels() {
  // Where training's products are not oneDNN's (TrainOnOneDnn: AVX-512) and the CPU has the AVX2 panel kernels;
  // BERT_TRAINER_NO_PANELS=1 turns them off with inference's.
  static const bool ok = !TrainOnOneDnn() && std::string(PanelProductsKernel()) == "avx2";
  return ok;
}

at::Tensor TrainingLinear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const Pass& pass) {
  if (pass.train && pass.autocast == at::ScalarType::Undefined && x.device().is_cpu() && x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat) {
    if (TrainOnOneDnn())
      return bias.defined() ? KernelLinear<OneDnnProducts, true>::apply(x, weight, bias) : KernelLinear<OneDnnProducts, false>::apply(x, weight);
    if (TrainOnPanels())
      return bias.defined() ? KernelLinear<PanelProducts, true>::apply(x, weight, bias) : KernelLinear<PanelProducts, false>::apply(x, weight);
  }
  if (Bf16Panels(x, pass) && weight.scalar_type() == at::kFloat) {
    if (!at::GradMode::is_enabled()) return Bf16PanelProducts::Output(x, weight, bias);
    return bias.defined() ? KernelLinear<Bf16PanelProducts, true>::apply(x, weight, bias) : KernelLinear<Bf16PanelProducts, false>::apply(x, weight);
  }
  return at::linear(x, weight, bias);
}

at::Tensor DecoderLinear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const Pass& pass) {
  if (pass.quantized) return QuantizedLinear(x, pass.weights->quantized(weight, bias));
  // bf16 where libtorch's bf16 product is its scalar loop: the vocabulary product on the panel kernels (Bf16OnPanels).
  if (Bf16Panels(x, pass)) {
    if (pass.weights && !at::GradMode::is_enabled()) return Bf16PanelLinear(x, pass.weights->bf16_panels(weight), weight.size(0), bias);
    return TrainingLinear(x, weight, bias, pass);
  }
  return at::linear(x, weight, bias);
}

static at::Tensor CastOf(WeightCache& cache, const at::Tensor& t, at::ScalarType dtype) { return t.defined() ? cache.cast(t, dtype) : t; }

at::Tensor Linear::forward(const at::Tensor& x, const Pass& pass) const { return forward(x, pass, nullptr, nullptr); }

at::Tensor Linear::forward(const at::Tensor& x, const Pass& pass, Activation act, const PostOp* post_op) const {
  at::Tensor y;
  if (pass.quantized) {
    y = QuantizedLinear(x, pass.weights->quantized(weight, bias));
  } else if (pass.panels()) {
    const bool fuse = post_op && post_op->panel && PanelFuses(*post_op->panel);
    y = PanelLinear(x, pass.weights->packed(weight, at::kFloat), weight.size(0), bias, fuse ? *post_op->panel : PanelAct::kNone);
    if (fuse) return y;
  } else if (pass.packed()) {
    // Autocast would cast the input to its dtype for the product; the packed product does it here.
    if (pass.shares_training_products()) post_op = nullptr;
    y = PackedLinear(x.to(pass.dtype()), pass.weights->packed(weight, pass.dtype()), CastOf(*pass.weights, bias, pass.dtype()),
                     post_op ? post_op->attr : "none", post_op ? post_op->algorithm : "");
    if (post_op) return y;  // the activation is fused
  } else if (pass.weights && Bf16Panels(x, pass)) {
    y = Bf16PanelLinear(x, pass.weights->bf16_panels(weight), weight.size(0), bias);
  } else if (pass.weights && pass.autocast != at::ScalarType::Undefined) {
    // Under autocast in evaluation, a weight's kept cast replaces the cast autocast would make (same values).
    y = at::linear(x, pass.weights->cast(weight, pass.autocast), CastOf(*pass.weights, bias, pass.autocast));
  } else {
    y = TrainingLinear(x, weight, bias, pass);
  }
  return act ? act(y) : y;
}

at::Tensor Linear::forward_add(const at::Tensor& x, const at::Tensor& residual, const Pass& pass) const {
  if (pass.panels() && residual.scalar_type() == at::kFloat)
    return PanelLinear(x, pass.weights->packed(weight, at::kFloat), weight.size(0), bias, PanelAct::kNone, &residual);
  // fp32 only: under autocast the sum is fp32 (a bf16 product plus an fp32 residual), the fused one would be bf16.
  if (pass.packed() && !pass.quantized && pass.dtype() == at::kFloat && residual.scalar_type() == at::kFloat && !pass.shares_training_products())
    return PackedLinearAdd(x, pass.weights->packed(weight, at::kFloat), bias, residual);
  return forward(x, pass) + residual;
}

at::Tensor StackedLinear::forward(const at::Tensor& x, const Pass& pass, std::initializer_list<const Linear*> parts) {
  auto cat = [&](at::Tensor Linear::*member) {
    std::vector<at::Tensor> all;
    for (const Linear* l : parts) all.push_back(l->*member);
    return at::cat(all);
  };
  if (pass.train || !pass.weights) return TrainingLinear(x, cat(&Linear::weight), cat(&Linear::bias), pass);
  std::vector<int64_t> versions;
  for (const Linear* l : parts) versions.push_back(l->weight._version()), versions.push_back(l->bias._version());
  if (pass.quantized) {  // each part its own scale, as quantize_dynamic quantizes each nn.Linear (QuantizeLinear)
    if (quantized_.isNone() || versions != quantized_versions_) {
      std::vector<at::Tensor> weights;
      for (const Linear* l : parts) weights.push_back(l->weight);
      quantized_ = QuantizeLinear(weights, cat(&Linear::bias));
      quantized_versions_ = versions;
    }
    return QuantizedLinear(x, quantized_);
  }
  const bool bf16_panels = Bf16Panels(x, pass);
  const bool panels = pass.panels() || bf16_panels, reorder = pass.packed() && pass.weights->reorders() && !panels;
  if (!weight_.defined() || versions != versions_ || dtype_ != pass.dtype() || reordered_ != reorder || panels_ != panels) {
    weight_ = cat(&Linear::weight).to(pass.dtype());  // autocast would cast it to this dtype on each call
    bias_ = cat(&Linear::bias).to(pass.dtype());
    if (reorder) weight_ = Call(*Ops().reorder, {weight_, c10::IValue()});
    if (panels) weight_ = PackPanels(weight_.to(at::kFloat));  // bf16: the rounded weight's panels (Bf16PanelLinear)
    versions_ = versions;
    dtype_ = pass.dtype();
    reordered_ = reorder;
    panels_ = panels;
  }
  if (bf16_panels) return Bf16PanelLinear(x, weight_, bias_.size(0), bias_);
  if (panels) return PanelLinear(x, weight_, bias_.size(0), bias_, PanelAct::kNone);  // the panels pad the rows to 64s
  return pass.packed() ? PackedLinear(x.to(pass.dtype()), weight_, bias_) : at::linear(x, weight_, bias_);
}

BertLayerNorm::BertLayerNorm(const Path& p, int64_t dim, double eps, bool with_bias)
    : weight(p.ones("weight", {dim})), bias(with_bias ? p.zeros("bias", {dim}) : at::Tensor()), eps(eps) {}

at::Tensor BertLayerNorm::forward(const at::Tensor& x) const { return at::layer_norm(x, {weight.size(0)}, weight, bias, eps); }

namespace {
// Training's GELU on the CPU in fp32 with the panel products' vector erf, forward and backward (GeluErf): libtorch's
// gelu_backward computes two exps per element, each a call, and took 9 ms of a 393 ms MiniLM step at MRPC's shapes
// on an AVX2-only EPYC (its forward 4 ms).
struct GeluErfFunction : public torch::autograd::Function<GeluErfFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
    ctx->save_for_backward({x});
    return GeluErf(x);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    return {GeluErfBackward(grads[0], ctx->get_saved_variables()[0])};
  }
};
}  // namespace

// The exact erf form, as transformers' "gelu".
static at::Tensor Gelu(const at::Tensor& x) {
  if (x.requires_grad() && x.is_cpu() && x.scalar_type() == at::kFloat && GeluErfKernels()) return GeluErfFunction::apply(x);
  return at::gelu(x);
}
static at::Tensor GeluTanh(const at::Tensor& x) { return at::gelu(x, "tanh"); }
static at::Tensor QuickGelu(const at::Tensor& x) { return x * at::sigmoid(1.702 * x); }
static at::Tensor Relu(const at::Tensor& x) { return at::relu(x); }
static at::Tensor Silu(const at::Tensor& x) { return at::silu(x); }
static at::Tensor Tanh(const at::Tensor& x) { return at::tanh(x); }

// transformers' ACT2FN names this model implements: the one list (src/config.ts validates config.json against it).
// Beside each, oneDNN's post-op computing the same function (fused into evaluation's products on the CPU), and the
// panel products' epilogue where they have one (elsewhere the activation runs after their product).
static const PostOp kGeluErf{"gelu", "none", PanelAct::kGeluErf}, kGeluTanh{"gelu", "tanh", std::nullopt}, kRelu{"relu", "", PanelAct::kRelu};
static const struct { const char* name; Activation fn; const PostOp* post_op; } kActivations[] = {
    {"gelu", Gelu, &kGeluErf}, {"gelu_new", GeluTanh, &kGeluTanh}, {"gelu_pytorch_tanh", GeluTanh, &kGeluTanh},
    {"gelu_fast", GeluTanh, &kGeluTanh}, {"quick_gelu", QuickGelu, nullptr}, {"relu", Relu, &kRelu},
    {"silu", Silu, nullptr}, {"swish", Silu, nullptr}, {"tanh", Tanh, nullptr}};

std::vector<std::string> Activations() {
  std::vector<std::string> names;
  for (const auto& a : kActivations) names.push_back(a.name);
  return names;
}

static const auto& ActivationEntry(const std::string& name) {
  for (const auto& a : kActivations)
    if (name == a.name) return a;
  throw std::invalid_argument("config: hidden_act '" + name + "' is not supported");
}

Activation ActivationOf(const std::string& name) { return ActivationEntry(name).fn; }
const PostOp* PostOpOf(const std::string& name) { return ActivationEntry(name).post_op; }

// Dropout as torch.nn.functional.dropout computes it (zero with probability p, scale the rest by 1 / (1 - p)), with
// the mask drawn faster on the CPU: libtorch's bernoulli_ draws one mt19937 number per element on one thread, a
// quarter of a MiniLM training forward. Here one 64-bit seed is drawn from the same (the model's) generator and a
// counter-based hash (splitmix64 of seed and position) decides each element in parallel: the same mask for any thread
// count, and the generator advances one draw per call, so checkpoints and resumes stay exact. One pass writes the
// output (x times the kept scale, or times 0, as x * mask computes it) and a byte per element of mask, which the
// backward reads instead of a mask in x's dtype.
uint64_t DropoutSeed() {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return gen.get<at::CPUGeneratorImpl>()->random64();
}

BERT_VECTOR_CLONES void ReadMask(const float* x, float* y, const uint8_t* mask, int64_t begin, int64_t end, float kept) {
  for (int64_t i = begin; i < end; ++i) y[i] = x[i] * (mask[i] ? kept : 0.0f);
}

namespace {
BERT_VECTOR_CLONES void DrawMask(const float* x, float* y, uint8_t* mask, int64_t begin, int64_t end, float kept, uint64_t seed, uint64_t keep_from) {
  for (int64_t i = begin; i < end; ++i) {
    const bool k = DropoutKeeps(seed, i, keep_from);
    mask[i] = k;
    y[i] = x[i] * (k ? kept : 0.0f);
  }
}

// out = in * (keep ? scale : 0), elementwise, with `keep` either drawn (and stored into mask) or read from mask.
template <bool kDraw>
void ApplyMask(const at::Tensor& in, at::Tensor& out, uint8_t* mask, double scale, uint64_t seed, uint64_t keep_from) {
  if (in.scalar_type() == at::kFloat) {  // the same as below, vectorized
    const float* x = in.const_data_ptr<float>();
    float* y = out.data_ptr<float>();
    at::parallel_for(0, in.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
      if constexpr (kDraw) DrawMask(x, y, mask, begin, end, static_cast<float>(scale), seed, keep_from);
      else ReadMask(x, y, mask, begin, end, static_cast<float>(scale));
    });
    return;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, in.scalar_type(), "bert_dropout", [&] {
    const scalar_t* x = in.const_data_ptr<scalar_t>();
    scalar_t* y = out.data_ptr<scalar_t>();
    const scalar_t kept = static_cast<scalar_t>(scale), dropped = static_cast<scalar_t>(0);
    at::parallel_for(0, in.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        bool k;
        if constexpr (kDraw) mask[i] = k = DropoutKeeps(seed, i, keep_from);
        else k = mask[i] != 0;
        y[i] = static_cast<scalar_t>(x[i] * (k ? kept : dropped));
      }
    });
  });
}

struct DropoutFunction : public torch::autograd::Function<DropoutFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, double p, int64_t seed) {
    const at::Tensor in = x.contiguous();
    at::Tensor out = at::empty_like(in), mask = at::empty(in.sizes(), in.options().dtype(at::kByte));
    const double scale = 1.0 / (1.0 - p);
    ApplyMask<true>(in, out, mask.data_ptr<uint8_t>(), scale, static_cast<uint64_t>(seed), DropoutKeepFrom(p));
    ctx->save_for_backward({mask});
    ctx->saved_data["scale"] = scale;
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    at::Tensor mask = ctx->get_saved_variables()[0];
    const at::Tensor g = grads[0].contiguous();
    at::Tensor out = at::empty_like(g);
    ApplyMask<false>(g, out, mask.data_ptr<uint8_t>(), ctx->saved_data["scale"].toDouble(), 0, 0);
    return {out, at::Tensor(), at::Tensor()};
  }
};
}  // namespace

at::Tensor Dropout(const at::Tensor& x, double p, bool train) {
  if (!train || p == 0) return x;
  if (!x.device().is_cpu() || p >= 1) return at::dropout(x, p, true);
  return DropoutFunction::apply(x, p, static_cast<int64_t>(DropoutSeed()));
}

at::Tensor EmbeddingRows(const at::Tensor& weight, const at::Tensor& ids, int64_t padding_idx, const Pass& pass) {
  if (!pass.gathered || !weight.requires_grad()) return at::embedding(weight, ids, padding_idx);  // gathered: training only
  at::Tensor rows = at::embedding(weight.detach(), ids).requires_grad_(true);
  pass.gathered->push_back({weight, ids, rows, padding_idx});
  return rows;
}

void ScatterRowGradients(const std::vector<GatheredRows>& gathered, RowGradients& row_grads) {
  at::NoGradGuard no_grad;
  for (const GatheredRows& g : gathered) {
    at::Tensor rows_grad = g.rows.grad(), ids = g.ids;
    if (!rows_grad.defined()) continue;
    if (g.padding_idx >= 0) {  // as at::embedding's backward: no gradient for padding_idx
      const at::Tensor keep = ids.ne(g.padding_idx).nonzero().squeeze(1);
      ids = ids.index_select(0, keep);
      rows_grad = rows_grad.index_select(0, keep);
    }
    at::Tensor& grad = const_cast<at::Tensor&>(g.weight).mutable_grad();
    if (grad.defined()) {
      grad.index_add_(0, ids, rows_grad);  // a tied decoder's dense gradient
      continue;
    }
    RowGradient& r = row_grads[g.weight.unsafeGetTensorImpl()];
    r.ids.push_back(ids);
    r.rows.push_back(rows_grad);
  }
}

// DistilBERT's create_sinusoidal_embeddings: sin at even dimensions, cos at odd, of pos / 10000^(2*(j/2)/dim).
static at::Tensor SinusoidalPositions(int64_t n, int64_t dim) {
  at::Tensor out = at::zeros({n, dim}, at::kFloat);
  auto o = out.accessor<float, 2>();
  for (int64_t pos = 0; pos < n; ++pos)
    for (int64_t j = 0; j < dim; ++j) {
      const double angle = static_cast<double>(pos) / std::pow(10000.0, 2.0 * static_cast<double>(j / 2) / static_cast<double>(dim));
      o[pos][j] = static_cast<float>(j % 2 == 0 ? std::sin(angle) : std::cos(angle));
    }
  return out;
}

BertEmbeddings::BertEmbeddings(const Path& p, const Config& c, bool position_padding)
    : word_embeddings([&] {
        at::Tensor w = p.sub("word_embeddings").randn({c.vocab_size, c.embedding_size});
        if (c.pad_token_id >= 0 && c.pad_token_id < c.vocab_size) w[c.pad_token_id].zero_();  // as nn.Embedding(padding_idx)
        return p.sub("word_embeddings").var("weight", w, true);
      }()),
      position_embeddings([&] {
        const Path pp = p.sub("position_embeddings");
        // Trained afterwards, as transformers' DistilBERT does today (its requires_grad=False does not survive _init_weights).
        if (c.sinusoidal_pos_embds) return pp.var("weight", SinusoidalPositions(c.max_position_embeddings, c.embedding_size), true);
        at::Tensor w = pp.randn({c.max_position_embeddings, c.embedding_size});
        if (position_padding && c.pad_token_id >= 0 && c.pad_token_id < c.max_position_embeddings) w[c.pad_token_id].zero_();
        return pp.var("weight", w, true);
      }()),
      token_type_embeddings(c.type_vocab_size > 0 ? p.sub("token_type_embeddings").normal("weight", {c.type_vocab_size, c.embedding_size}) : at::Tensor()),
      LayerNorm(p.sub("LayerNorm"), c.embedding_size, c.layer_norm_eps),
      pad_token_id(c.pad_token_id), position_padding(position_padding) {}

at::Tensor BertEmbeddings::forward(const at::Tensor& input_ids, const at::Tensor& token_type_ids, const at::Tensor& position_ids, const Pass& pass) const {
  at::Tensor e = EmbeddingRows(word_embeddings, input_ids, pad_token_id, pass) + at::embedding(position_embeddings, position_ids, position_padding ? pad_token_id : -1);
  if (token_type_embeddings.defined()) e = e + at::embedding(token_type_embeddings, token_type_ids);
  return Dropout(LayerNorm.forward(e), pass.hidden_dropout, pass.train);
}

BertSelfAttention::BertSelfAttention(const Path& p, const Config& c, const LayerNames& n)
    : query(p.sub(n.query), c.hidden_size, c.hidden_size), key(p.sub(n.key), c.hidden_size, c.hidden_size),
      value(p.sub(n.value), c.hidden_size, c.hidden_size), num_attention_heads(c.num_attention_heads) {}

at::Tensor Attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const std::optional<at::Tensor>& mask, const Pass& pass) {
  if (pass.train && pass.attention_dropout > 0 && q.device().is_cpu()) {
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
    if (Bf16Panels(q, pass)) {
      // The same under bf16 autocast where its bf16 products are libtorch's scalar loop (Bf16OnPanels; MiniLM's
      // step spent a third of its time in them here): the operators in fp32, autocast held off, each result rounded
      // to bf16 where the bf16 operator rounds it (a bf16 product sums in fp32 and rounds the sum, as these do). The
      // casts' backward rounds the gradients where the bf16 graph's operators do.
      c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
      at::Tensor scores = RoundBf16(at::matmul(RoundBf16(q.to(at::kFloat) * scale), k.to(at::kFloat).transpose(-2, -1)));
      if (mask) scores = scores.masked_fill(mask->logical_not(), -std::numeric_limits<double>::infinity());
      return RoundBf16(at::matmul(RoundBf16(Dropout(RoundBf16(at::softmax(scores, -1)), pass.attention_dropout, true)), v.to(at::kFloat))).to(at::kBFloat16);
    }
    // SDPA's math path, written out so its dropout is Dropout's (the same computation, a faster mask).
    at::Tensor scores = at::matmul(q * scale, k.transpose(-2, -1));
    if (mask) scores = scores.masked_fill(mask->logical_not(), -std::numeric_limits<double>::infinity());
    return at::matmul(Dropout(at::softmax(scores, -1), pass.attention_dropout, true), v);
  }
  return at::scaled_dot_product_attention(q, k, v, mask, pass.attention_dropout, false);
}

// The context of each sequence's first token over the sequence's rows x (runs of `lengths`, in order) without the
// keys and values of every row: per head h, q_h . k_j = (Wk_h^T q_h) . x_j + q_h . bk_h, the last term the same for
// every key (softmax drops it), and sum_j p_j v_j = Wv_h (sum_j p_j x_j) + bv_h, the p_j summing to 1. Two [heads,
// hidden] matrix-vector products a sequence against the [rows, 2 hidden] key-value product: bert-base's last layer at
// batch 1 then costs what one row's does. `q` is [batch, hidden], the first tokens' queries with their bias.
static at::Tensor FirstTokenContext(const at::Tensor& x, const at::Tensor& q, const Linear& key, const Linear& value,
                                    const std::vector<int64_t>& lengths, int64_t nh) {
  const int64_t B = q.size(0), H = q.size(1), d = H / nh;
  if (FirstTokenKernels() && x.scalar_type() == at::kFloat && q.scalar_type() == at::kFloat && key.weight.scalar_type() == at::kFloat &&
      value.weight.scalar_type() == at::kFloat && (!value.bias.defined() || value.bias.scalar_type() == at::kFloat)) {
    // The same per (sequence, head) in one parallel region over the heads, each head's weight rows read once for every
    // sequence: the operators' form (a dozen calls, MKL's matrix-vector products) took 0.54-0.87 ms of bert-base's
    // batch-1 forward on an AVX2-only EPYC (this form 0.29), for ~5 MB of weights to read.
    const at::Tensor xs = x.contiguous(), qs = q.contiguous(), wk = key.weight.contiguous(), wv = value.weight.contiguous();
    const at::Tensor bv = value.bias.defined() ? value.bias.contiguous() : at::Tensor();
    at::Tensor out = at::empty({B, H}, xs.options());
    std::vector<int64_t> starts(static_cast<size_t>(B), 0);
    for (int64_t b = 1; b < B; ++b) starts[static_cast<size_t>(b)] = starts[static_cast<size_t>(b - 1)] + lengths[static_cast<size_t>(b - 1)];
    const float *xp = xs.const_data_ptr<float>(), *qp = qs.const_data_ptr<float>(), *wkp = wk.const_data_ptr<float>(), *wvp = wv.const_data_ptr<float>();
    const float* bvp = bv.defined() ? bv.const_data_ptr<float>() : nullptr;
    float* op = out.data_ptr<float>();
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
    at::parallel_for(0, nh, 1, [&](int64_t h0, int64_t h1) {
      std::vector<float> scratch;
      for (int64_t h = h0; h < h1; ++h)
        for (int64_t b = 0; b < B; ++b)
          FirstTokenHead(qp + b * H + h * d, wkp + h * d * H, wvp + h * d * H, bvp ? bvp + h * d : nullptr, xp + starts[static_cast<size_t>(b)] * H,
                         lengths[static_cast<size_t>(b)], H, d, scale, op + b * H + h * d, scratch);
    });
    return out;
  }
  // u[h, b] = Wk_h^T q_{b,h} / sqrt(d): the scores' scale (SDPA's default) on the query side, as SDPA's math path puts it
  const at::Tensor u = at::bmm(q.view({B, nh, d}).transpose(0, 1) * (1.0 / std::sqrt(static_cast<double>(d))), key.weight.view({nh, d, H}));
  std::vector<at::Tensor> sums;
  int64_t row = 0;
  for (int64_t b = 0; b < B; ++b) {
    const at::Tensor xb = x.narrow(0, row, lengths[static_cast<size_t>(b)]);
    row += lengths[static_cast<size_t>(b)];
    sums.push_back(at::mm(at::softmax(at::mm(u.select(1, b), xb.t()), -1), xb));  // [heads, hidden]: sum_j p_j x_j
  }
  const at::Tensor context = at::bmm(at::stack(sums, 1), value.weight.view({nh, d, H}).transpose(1, 2));  // [heads, batch, d]
  const at::Tensor out = context.transpose(0, 1).reshape({B, H});
  return value.bias.defined() ? out + value.bias : out;
}

at::Tensor BertSelfAttention::forward(const at::Tensor& x, const Pass& pass, const at::Tensor* first_tokens) {
  const int64_t B = pass.batch, S = pass.seq, H = query.weight.size(0), nh = num_attention_heads, d = H / nh;
  const bool cpu_fp32 = x.device().is_cpu() && pass.autocast == at::ScalarType::Undefined;
  // Each sequence's rows among the token rows: unpadded runs, or `batch` runs of `seq` rows where there is no padding.
  const auto runs = [&] { return pass.unpadded() ? pass.lengths : std::vector<int64_t>(static_cast<size_t>(B), S); };
  if (first_tokens && cpu_fp32 && !pass.train && !at::GradMode::is_enabled() && (pass.unpadded() || !pass.mask))
    return FirstTokenContext(x, query.forward(*first_tokens, pass), key, value, runs(), nh);
  // Projections of the token rows: query, key and value, or with first_tokens key and value (the queries: theirs).
  const int64_t n = first_tokens ? 2 : 3;
  const at::Tensor rows = first_tokens ? kv_.forward(x, pass, {&key, &value}) : qkv_.forward(x, pass, {&query, &key, &value});
  const at::Tensor first_rows = first_tokens ? query.forward(*first_tokens, pass) : at::Tensor();  // [batch, hidden]
  const at::Tensor first_q = first_tokens ? first_rows.view({B, 1, nh, d}).transpose(1, 2) : at::Tensor();
  // Each sequence attends over its own rows (contiguous among the token rows): no padded positions computed, no mask,
  // no copies into and out of the [batch, seq] layout; half the time of the padded form on MRPC's batches. Where
  // libtorch has MKL one node does this for every sequence (CPU fp32): for unpadded rows, and for an evaluation batch
  // without padding (batch 1 always: `batch` runs of `seq` rows), where SDPA's flash kernel would call MKL once per
  // head and block from inside its own parallel loop: ~540 OpenMP regions (and a futex wake each) per MiniLM forward
  // at batch 1, against ~56 this way. (Training keeps Attend there: its dropout draws one mask per batch, the node one
  // per sequence.)
  const bool evaluation_without_padding = !pass.unpadded() && !pass.mask && !pass.train;
  if (cpu_fp32 && (pass.unpadded() || evaluation_without_padding) && pass.attention_dropout < 1 && SequenceAttentionAvailable())
    return SequenceAttention(rows, first_rows, runs(), B, nh, pass.attention_dropout);
  // split and unbind, not slices: a slice's backward fills a zero tensor of the whole per slice, these concatenate once.
  if (pass.unpadded() && cpu_fp32) {
    // Without MKL, the operators per sequence. fp32 only: under autocast each sequence's length would be a new shape
    // for oneDNN's bf16 kernels, which it generates and keeps per shape (a bf16 3-epoch MRPC run took 267 s with it,
    // 240 s without).
    const std::vector<at::Tensor> seqs = rows.split_with_sizes(pass.lengths, 0);  // then any rounding rows: never read
    std::vector<at::Tensor> context;
    for (int64_t b = 0; b < B; ++b) {
      // n x [1, heads, len, head_dim]: 4-d, or SDPA leaves its fused CPU kernel for the math path's dozen operators
      const std::vector<at::Tensor> h = seqs[b].view({1, -1, n, nh, d}).permute({2, 0, 3, 1, 4}).unbind(0);
      const at::Tensor q = first_tokens ? first_q.narrow(0, b, 1) : h[0];
      context.push_back(Attend(q, h[n - 2], h[n - 1], std::nullopt, pass).transpose(1, 2).reshape({-1, H}));
    }
    if (static_cast<int64_t>(seqs.size()) > B && !first_tokens) context.push_back(at::zeros({seqs[B].size(0), H}, rows.options()));
    return at::cat(context);
  }
  // Elsewhere attention works on the padded [batch, heads, seq, head_dim] layout, padding masked.
  at::Tensor padded = rows;
  if (pass.unpadded()) padded = at::zeros({B * S, n * H}, rows.options()).index_copy(0, pass.index, rows);
  const std::vector<at::Tensor> h = padded.view({B, S, n, nh, d}).permute({2, 0, 3, 1, 4}).unbind(0);
  const at::Tensor context = Attend(first_tokens ? first_q : h[0], h[n - 2], h[n - 1], pass.mask, pass);
  if (first_tokens) return context.view({B, H});  // [batch, heads, 1, head_dim]: already each sequence's row
  const at::Tensor flat = context.transpose(1, 2).reshape({B * S, H});
  return pass.unpadded() ? flat.index_select(0, pass.index) : flat;
}

BertSelfOutput::BertSelfOutput(const Path& p, const Config& c, const LayerNames& n)
    : dense(p.sub(n.attention_dense), c.hidden_size, c.hidden_size), LayerNorm(p.sub(n.attention_norm), c.hidden_size, c.layer_norm_eps),
      dropout(n.attention_output_dropout) {}

// BertSelfOutput and BertOutput compute the same thing (as in modeling_bert.py): LayerNorm(dropout(dense(h)) + input).
static at::Tensor DenseDropoutAddNorm(const Linear& dense, const BertLayerNorm& norm, const at::Tensor& hidden_states,
                                      const at::Tensor& input_tensor, const Pass& pass, bool dropout = true) {
  if (!pass.train) return norm.forward(dense.forward_add(hidden_states, input_tensor, pass));
  return norm.forward(Dropout(dense.forward(hidden_states, pass), dropout ? pass.hidden_dropout : 0.0, pass.train) + input_tensor);
}

at::Tensor BertSelfOutput::forward(const at::Tensor& hidden_states, const at::Tensor& input_tensor, const Pass& pass) const {
  return DenseDropoutAddNorm(dense, LayerNorm, hidden_states, input_tensor, pass, dropout);
}

BertIntermediate::BertIntermediate(const Path& p, const Config& c, const LayerNames& n)
    : dense(p.sub(n.intermediate), c.hidden_size, c.intermediate_size), intermediate_act_fn(ActivationOf(c.hidden_act)),
      post_op(PostOpOf(c.hidden_act)) {}

BertOutput::BertOutput(const Path& p, const Config& c, const LayerNames& n)
    : dense(p.sub(n.output_dense), c.intermediate_size, c.hidden_size), LayerNorm(p.sub(n.output_norm), c.hidden_size, c.layer_norm_eps) {}

at::Tensor BertOutput::forward(const at::Tensor& hidden_states, const at::Tensor& input_tensor, const Pass& pass) const {
  return DenseDropoutAddNorm(dense, LayerNorm, hidden_states, input_tensor, pass);
}

BertEncoder::BertEncoder(const Path& p, const Config& c, const LayerNames& n) {
  layer.reserve(static_cast<size_t>(c.num_hidden_layers));
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layer.emplace_back(p.sub("layer").sub(i), c, n);
}

BertModel::BertModel(const Path& p, const Config& c, bool add_pooling_layer, const EncoderLayout& layout)
    : embeddings(p.sub("embeddings"), c, layout.position_padding), encoder(p.sub(layout.encoder), c, layout.layer), layout(layout) {
  if (c.embedding_size != c.hidden_size) embeddings_project.emplace(p.sub("embeddings_project"), c.embedding_size, c.hidden_size);
  if (add_pooling_layer) pooler.emplace(p.sub("pooler"), c);
}

at::Tensor BertModel::embed(const std::array<at::Tensor, 3>& inputs, const Pass& pass) {
  at::Tensor e = embeddings.forward(inputs[0], inputs[1], inputs[2], pass);  // [tokens, embedding_size]
  return embeddings_project ? embeddings_project->forward(e, pass) : e;
}

at::Tensor BertModel::forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass) {
  at::Tensor hidden_states = embed(inputs, pass);  // [tokens, hidden]
  for (BertLayer& l : encoder.layer) hidden_states = l.forward(hidden_states, pass);
  return hidden_states;
}

at::Tensor BertModel::first_token_states(const std::array<at::Tensor, 3>& inputs, const Pass& pass) {
  // Dynamic quantization ranges each product's input over all its rows: the last layer runs whole, as PyTorch's does.
  if (pass.quantized) return FirstTokenRows(forward(inputs, pass), pass);
  at::Tensor hidden_states = embed(inputs, pass);
  if (encoder.layer.empty()) return FirstTokenRows(hidden_states, pass);
  for (size_t i = 0; i + 1 < encoder.layer.size(); ++i) hidden_states = encoder.layer[i].forward(hidden_states, pass);
  // The same logits and gradients as the whole last layer's, for a sixth less of a 6-layer model's work.
  const at::Tensor first = FirstTokenRows(hidden_states, pass);
  return encoder.layer.back().forward(hidden_states, pass, &first);
}

at::Tensor BertModel::pooled(const std::array<at::Tensor, 3>& inputs, const Pass& pass) {
  if (!pooler) throw std::logic_error("this model has no pooler");
  return pooler->forward(first_token_states(inputs, pass), pass);
}

void BertPreTrainedModel::drop_caches() {
  if (bert_)
    for (BertLayer& l : bert_->encoder.layer) l.attention.self.drop_cache();
}

// Host class labels (int32) as an int64 device tensor of `shape`; a copy: autograd may keep it.
at::Tensor IntLabels(const Batch& in, std::vector<int64_t> shape, const at::Device& device) {
  return at::from_blob(const_cast<void*>(in.labels), shape, at::kInt).to(device, at::kLong);
}

// Token rows back to their [batch * seq] positions: zeros where no real token is (padding), as no loss or
// prediction reads those positions. `rows` is [rows, n] in pass.index order.
at::Tensor Repad(const at::Tensor& rows, const Pass& pass) {
  if (!pass.unpadded()) return rows;
  int64_t real = 0;
  for (int64_t b = 0; b < pass.batch; ++b) real += pass.lengths[static_cast<size_t>(b)];
  return at::zeros({pass.batch * pass.seq, rows.size(1)}, rows.options()).index_copy(0, pass.index.narrow(0, 0, real), rows.narrow(0, 0, real));
}

// Cross-entropy as torch computes it for every classification head: mean over the rows whose label is not -100,
// label smoothing as the Trainer's LabelSmoother.
at::Tensor CrossEntropy(const at::Tensor& logits, const at::Tensor& labels, const Pass& pass) {
  return at::cross_entropy_loss(logits, labels, {}, at::Reduction::Mean, -100, pass.label_smoothing);
}

// The loss every family's ForSequenceClassification picks for its problem_type.
at::Tensor SequenceClassificationLoss(const at::Tensor& logits, const Batch& in, const Config& c, const Pass& pass) {
  const int64_t B = in.batch, nl = c.num_labels;
  const at::Device device = logits.device();
  if (c.problem_type == "regression") {
    at::Tensor y = at::from_blob(const_cast<void*>(in.labels), {B, in.labels_per_row}, at::kFloat).to(device).clone();
    return nl == 1 ? at::mse_loss(logits.squeeze(), y.squeeze()) : at::mse_loss(logits, y);
  }
  if (c.problem_type == "multi_label_classification") {
    at::Tensor y = in.labels_float ? at::from_blob(const_cast<void*>(in.labels), {B, nl}, at::kFloat).to(device).clone()
                                   : at::from_blob(const_cast<void*>(in.labels), {B, nl}, at::kInt).to(device, at::kFloat);
    return at::binary_cross_entropy_with_logits(logits, y);
  }
  return CrossEntropy(logits.view({-1, nl}), IntLabels(in, {B}, device), pass);
}

at::Tensor SpanLoss(const at::Tensor& start_logits, const at::Tensor& end_logits, const Batch& in) {
  const int64_t S = in.seq;
  // As modeling_bert.py: positions outside the sequence are clamped to seq and ignored.
  at::Tensor pos = IntLabels(in, {in.batch, 2}, start_logits.device()).clamp(0, S);
  auto ce = [&](const at::Tensor& l, const at::Tensor& y) { return at::cross_entropy_loss(l.to(at::kFloat), y, {}, at::Reduction::Mean, S, 0.0); };
  return (ce(start_logits, pos.select(1, 0)) + ce(end_logits, pos.select(1, 1))) / 2;
}

at::Tensor FirstTokenRows(const at::Tensor& rows, const Pass& pass) {
  return pass.unpadded() ? rows.index_select(0, pass.cls) : rows.view({pass.batch, pass.seq, -1}).select(1, 0);
}

HeadOutput ClassOutput(const at::Tensor& logits, const Batch& in, const Config& c, const Pass& pass) {
  HeadOutput out{{{"logits", logits}}, {}};
  if (in.labels) out.loss = SequenceClassificationLoss(logits, in, c, pass);
  return out;
}

HeadOutput ChoiceOutput(const at::Tensor& scores, const Batch& in, const Pass& pass) {
  at::Tensor logits = scores.view({-1, in.num_choices});
  HeadOutput out{{{"logits", logits}}, {}};
  if (in.labels) out.loss = CrossEntropy(logits, IntLabels(in, {logits.size(0)}, logits.device()), pass);
  return out;
}

HeadOutput PositionOutput(const at::Tensor& logits, const Batch& in, const Pass& pass, bool question_answering) {
  if (question_answering) {
    std::vector<at::Tensor> se = logits.view({in.batch, in.seq, 2}).unbind(-1);  // start_logits, end_logits: [batch, seq]
    HeadOutput out{{{"start_logits", se[0]}, {"end_logits", se[1]}}, {}};
    if (in.labels) out.loss = SpanLoss(se[0], se[1], in);
    return out;
  }
  HeadOutput out{{{"logits", logits.view({in.batch, in.seq, logits.size(1)})}}, {}};
  if (in.labels) out.loss = CrossEntropy(logits, IntLabels(in, {in.batch * in.seq}, logits.device()), pass);
  return out;
}

HeadOutput MaskedLmOutput(const at::Tensor& rows, const Batch& in, const Pass& pass, int64_t vocab,
                          const std::function<at::Tensor(const at::Tensor&)>& head) {
  if (!in.labels) {
    at::Tensor logits = Repad(head(rows), pass);
    return {{{"logits", logits.view({in.batch, in.seq, vocab})}}, {}};
  }
  // With labels, the vocabulary product (the head's largest by far) runs for the labelled positions only: the
  // loss reads nothing else, so it equals transformers' loss over every position. logits: [labelled, vocab].
  at::Tensor y = IntLabels(in, {in.batch * in.seq}, rows.device());
  if (pass.unpadded()) y = y.index_select(0, pass.index);
  at::Tensor keep = y.ne(-100).nonzero().squeeze(1);
  at::Tensor logits = head(rows.index_select(0, keep));
  HeadOutput out{{{"logits", logits}}, {}};
  out.loss = CrossEntropy(logits, y.index_select(0, keep), pass);  // NaN with no labelled position, as torch's mean
  return out;
}

namespace {

class BertForSequenceClassification final : public BertPreTrainedModel {
 public:
  BertForSequenceClassification(const Path& root, const Config& c)
      : BertPreTrainedModel(&bert), bert(root.sub("bert"), c, true), classifier(root.sub("classifier"), c.hidden_size, c.num_labels), cfg_(c) {}
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    at::Tensor pooled_output = Dropout(bert.pooled(inputs, pass), pass.classifier_dropout, pass.train);
    return ClassOutput(classifier.forward(pooled_output, pass), in, cfg_, pass);
  }
  BertModel bert;
  Linear classifier;

 private:
  Config cfg_;
};

class TokenClassification final : public BertPreTrainedModel {
 public:
  TokenClassification(const Path& root, const Config& c, const char* base, const EncoderLayout& layout)
      : BertPreTrainedModel(&encoder), encoder(root.sub(base), c, false, layout), classifier(root.sub("classifier"), c.hidden_size, c.num_labels) {}
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    at::Tensor rows = Dropout(encoder.forward(inputs, pass), pass.classifier_dropout, pass.train);
    return PositionOutput(Repad(classifier.forward(rows, pass), pass), in, pass, false);
  }
  BertModel encoder;
  Linear classifier;
};

class QuestionAnswering final : public BertPreTrainedModel {
 public:
  QuestionAnswering(const Path& root, const Config& c, const char* base, const EncoderLayout& layout, bool dropout)
      : BertPreTrainedModel(&encoder), encoder(root.sub(base), c, false, layout), qa_outputs(root.sub("qa_outputs"), c.hidden_size, c.num_labels), dropout_(dropout) {
    if (c.num_labels != 2) throw std::invalid_argument(c.architecture + " needs num_labels 2 (start and end), got " + std::to_string(c.num_labels));
  }
  bool keeps_padding() const override { return true; }
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    at::Tensor rows = Dropout(encoder.forward(inputs, pass), dropout_ ? pass.classifier_dropout : 0.0, pass.train);
    return PositionOutput(qa_outputs.forward(rows, pass), in, pass, true);  // every position: keeps_padding
  }
  BertModel encoder;
  Linear qa_outputs;

 private:
  bool dropout_;
};

class FirstTokenClassification final : public BertPreTrainedModel {
 public:
  FirstTokenClassification(const Path& root, const Config& c, const char* base, const EncoderLayout& layout, Activation activation)
      : BertPreTrainedModel(&encoder), encoder(root.sub(base), c, false, layout), dense(root.sub("classifier").sub("dense"), c.hidden_size, c.hidden_size),
        out_proj(root.sub("classifier").sub("out_proj"), c.hidden_size, c.num_labels), activation_(activation), cfg_(c) {}
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    at::Tensor x = Dropout(encoder.first_token_states(inputs, pass), pass.classifier_dropout, pass.train);
    x = Dropout(activation_(dense.forward(x, pass)), pass.classifier_dropout, pass.train);
    return ClassOutput(out_proj.forward(x, pass), in, cfg_, pass);
  }
  BertModel encoder;
  Linear dense, out_proj;  // classifier.dense, classifier.out_proj

 private:
  Activation activation_;
  Config cfg_;
};

// cls.predictions: transform (dense, activation, LayerNorm), then the decoder, whose weight is the word embeddings
// (tied as transformers ties them: one tensor, gradients from both uses) and whose bias is cls.predictions.bias.
struct BertLMPredictionHead {
  Linear transform_dense;
  Activation transform_act_fn;
  BertLayerNorm transform_LayerNorm;
  at::Tensor bias;
  BertLMPredictionHead(const Path& p, const Config& c)
      : transform_dense(p.sub("transform").sub("dense"), c.hidden_size, c.hidden_size), transform_act_fn(ActivationOf(c.hidden_act)),
        transform_LayerNorm(p.sub("transform").sub("LayerNorm"), c.hidden_size, c.layer_norm_eps), bias(p.zeros("bias", {c.vocab_size})) {}
  at::Tensor forward(const at::Tensor& h, const at::Tensor& decoder_weight, const Pass& pass) const {
    at::Tensor t = transform_LayerNorm.forward(transform_dense.forward(h, pass, transform_act_fn, nullptr));
    return DecoderLinear(t, decoder_weight, bias, pass);
  }
};

class BertForMaskedLM final : public BertPreTrainedModel {
 public:
  BertForMaskedLM(const Path& root, const Config& c)
      : BertPreTrainedModel(&bert), bert(root.sub("bert"), c, false), predictions(root.sub("cls").sub("predictions"), c), vocab_(c.vocab_size) {}
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    const at::Tensor& decoder = bert.embeddings.word_embeddings;
    return MaskedLmOutput(bert.forward(inputs, pass), in, pass, vocab_, [&](const at::Tensor& h) { return predictions.forward(h, decoder, pass); });
  }
  BertModel bert;
  BertLMPredictionHead predictions;

 private:
  int64_t vocab_;
};

class BertForMultipleChoice final : public BertPreTrainedModel {
 public:
  BertForMultipleChoice(const Path& root, const Config& c)
      : BertPreTrainedModel(&bert), bert(root.sub("bert"), c, true), classifier(root.sub("classifier"), c.hidden_size, 1) {}
  HeadOutput forward(const std::array<at::Tensor, 3>& inputs, const Pass& pass, const Batch& in) override {
    // The choices of each example are rows of the batch ([examples * choices, seq], as transformers flattens them).
    at::Tensor pooled_output = Dropout(bert.pooled(inputs, pass), pass.classifier_dropout, pass.train);
    return ChoiceOutput(classifier.forward(pooled_output, pass), in, pass);
  }
  BertModel bert;
  Linear classifier;
};

}  // namespace

std::unique_ptr<BertPreTrainedModel> TokenClassificationModel(const Path& root, const Config& c, const char* base, const EncoderLayout& layout) {
  return std::make_unique<TokenClassification>(root, c, base, layout);
}
std::unique_ptr<BertPreTrainedModel> QuestionAnsweringModel(const Path& root, const Config& c, const char* base, const EncoderLayout& layout, bool dropout) {
  return std::make_unique<QuestionAnswering>(root, c, base, layout, dropout);
}
std::unique_ptr<BertPreTrainedModel> ClassificationHeadModel(const Path& root, const Config& c, const char* base, const EncoderLayout& layout, Activation activation) {
  return std::make_unique<FirstTokenClassification>(root, c, base, layout, activation);
}

std::unique_ptr<BertPreTrainedModel> BertPreTrainedModel::CreateBert(const Path& root, const Config& c) {
  const std::string& a = c.architecture;
  if (a == "BertForSequenceClassification") return std::make_unique<BertForSequenceClassification>(root, c);
  if (a == "BertForTokenClassification") return TokenClassificationModel(root, c, "bert", {});
  if (a == "BertForQuestionAnswering") return QuestionAnsweringModel(root, c, "bert", {}, false);
  if (a == "BertForMaskedLM") return std::make_unique<BertForMaskedLM>(root, c);
  if (a == "BertForMultipleChoice") return std::make_unique<BertForMultipleChoice>(root, c);
  return nullptr;
}

std::unique_ptr<BertPreTrainedModel> BertPreTrainedModel::Create(const Path& root, const Config& c) {
  std::unique_ptr<BertPreTrainedModel> m;
  if (c.model_type == "bert") m = CreateBert(root, c);
  else if (c.model_type == "roberta" || c.model_type == "xlm-roberta") m = CreateRoberta(root, c);
  else if (c.model_type == "electra") m = CreateElectra(root, c);
  else if (c.model_type == "distilbert") m = CreateDistilBert(root, c);
  else if (c.model_type == "modernbert") m = CreateModernBert(root, c);
  else if (c.model_type == "deberta-v2") m = CreateDebertaV2(root, c);
  else throw std::invalid_argument("model_type '" + c.model_type + "' is not one of bert, roberta, xlm-roberta, electra, distilbert, modernbert, deberta-v2");  // src/config.ts checks first
  if (!m) throw std::invalid_argument("architecture '" + c.architecture + "' is not a " + c.model_type + " head this addon builds");
  return m;
}

}  // namespace bert
