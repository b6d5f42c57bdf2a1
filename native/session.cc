// One model's session: device, construction, and the forward passes (evaluation; training with its loss and
// backward) with autocast and dropout scopes around them.
#include <ATen/Version.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/version.h>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <optional>
#include <stdexcept>
#include "torch_session.h"
#include <torch/csrc/autograd/profiler_legacy.h>

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
  throw std::invalid_argument("device '" + spec + "' is not one of auto, cpu, cuda, cuda:N");  // src/model.ts checks first
}

RuntimeInfo Runtime() {
  RuntimeInfo r;
  r.torch_version = TORCH_VERSION;
  r.cuda_available = torch::cuda::is_available();
  r.cuda_device_count = static_cast<int>(torch::cuda::device_count());
  r.num_threads = at::get_num_threads();
  r.activations = Activations();
  r.distributed_backends = DistributedBackends();
  r.cpu_capability = at::get_cpu_capability();
  r.packed_bf16 = CpuHasPackedBf16();
  r.int8_reduce_range = Int8ReduceRange();
  r.panel_products = PanelProductsKernel();
  r.training_products = TrainOnOneDnn() ? "onednn" : TrainOnPanels() ? "panels" : "libtorch";
  r.bf16_products = CpuHasPackedBf16() ? "onednn" : Bf16OnPanels() ? "panels" : "libtorch";
  r.table_adamw = TableAdamW();
  r.cpu_allocator = CpuAllocatorName();
  r.cpu_allocator_counts = CpuAllocatorCounts();
  return r;
}

void ReleaseKeptMemory() { DropKeptCpuBlocks(); }

std::vector<double> PanelProductRates(const std::vector<std::array<int64_t, 3>>& shapes, int threads, int repeats) {
  std::vector<double> rates;
  for (const auto& [m, k, n] : shapes)
    if (m < 1 || k < 1 || n < 1) throw std::invalid_argument("panelProductRates: shapes must be positive [m, k, n]");
  if (std::string(PanelProductsKernel()) == "none") return rates;
  struct Threads {  // the process's setting again however this ends
    int before = at::get_num_threads();
    ~Threads() { at::set_num_threads(before); }
  } restore;
  at::set_num_threads(threads);
  for (const auto& [m, k, n] : shapes) {
    const at::Tensor x = at::randn({m, k}), w = at::randn({n, k});
    const auto run = [&] { PanelLinear(x, PackPanels(w), n, at::Tensor(), PanelAct::kNone); };
    run();  // warm: the first call allocates and faults its pages in
    double best = std::numeric_limits<double>::infinity();
    for (int r = 0; r < repeats; ++r) {
      const auto t = std::chrono::steady_clock::now();
      run();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count());
    }
    rates.push_back(2.0 * static_cast<double>(m * k * n) / best / 1e9);
  }
  return rates;
}

std::unique_ptr<Session> Session::Create(const Options& options) { return std::make_unique<TorchSession>(options); }

TorchSession::TorchSession(const Options& o)
    : cfg_(o.config), device_(ResolveDevice(o.device)), store_(device_, o.seed, o.config.initializer_range) {
  InstallCpuAllocator();  // before the first tensor of any session
  if (o.threads > 0) at::set_num_threads(o.threads);
  // Attention stays off cuDNN's backend on a GPU (process-wide, as torch.backends.cuda.enable_cudnn_sdp(False)):
  // it builds a plan for every new shape, 0.55 s per new batch shape of a bf16 bert-base train step on an H100
  // against 0.03 s without it, at the same steady-state speed (scripts/gpu/bf16_probe.mjs; MRPC's dynamic padding
  // makes hundreds of shapes). BERT_TRAINER_SDPA_CUDNN=1 lets libtorch choose it again.
  if (const char* v = std::getenv("BERT_TRAINER_SDPA_CUDNN"); device_.is_cuda() && !(v && std::string(v) == "1")) at::globalContext().setSDPUseCuDNN(false);
  Seed(o.seed);
  model_ = BertPreTrainedModel::Create(Path(store_, ""), cfg_);
}

std::vector<std::string> TorchSession::ParameterNames() const {
  std::vector<std::string> names;
  for (const auto& p : store_.params()) names.push_back(p.name);
  return names;
}

int64_t TorchSession::NumParameters() const {
  int64_t n = 0;
  for (const auto& p : store_.params()) n += p.value.numel();
  return n;
}

Pass TorchSession::MakePass(bool train) {
  const Config& c = cfg_;
  Pass pass;
  pass.train = train;
  pass.trains = train || optimizer_ != nullptr;
  pass.hidden_dropout = train ? c.hidden_dropout_prob : 0.0;
  pass.attention_dropout = train ? c.attention_probs_dropout_prob : 0.0;
  pass.classifier_dropout = train ? (c.classifier_dropout >= 0 ? c.classifier_dropout : c.hidden_dropout_prob) : 0.0;
  pass.autocast = autocast_;
  pass.label_smoothing = label_smoothing_;
  pass.keep_padding = model_->keeps_padding();
  pass.position_padding_idx = model_->position_padding_idx();
  if (!train) {
    weights_.set_reorder(!(optimizer_ && TrainOnOneDnn()));  // a training model: plain weights (WeightCache::set_reorder)
    pass.weights = &weights_;
  }
  if (!train && quantized_) {
    pass.quantized = true;
    pass.keep_padding = true;  // padding rows count in each product's quantization range, as in PyTorch's padded batch
  }
  return pass;
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
  if (dtype == "bf16" && quantized_) throw std::invalid_argument("int8 quantization computes in fp32: it cannot be combined with bf16");  // src/model.ts checks first
  if (dtype == "bf16") autocast_ = at::kBFloat16;
  else if (dtype == "no") autocast_ = at::ScalarType::Undefined;
  else throw std::invalid_argument("mixed precision '" + dtype + "' is not one of no, bf16");  // src/model.ts checks first
}

void TorchSession::SetQuantization(const std::string& mode) {
  if (mode != "int8" && mode != "none") throw std::invalid_argument("quantization '" + mode + "' is not one of none, int8");  // src/model.ts checks first
  const bool on = mode == "int8";
  if (on && !device_.is_cpu()) throw std::invalid_argument("int8 quantization runs on the CPU only (this model is on " + device_.str() + ")");
  if (on && !CanQuantize()) throw std::runtime_error("this libtorch has no quantized operators (quantized::linear_dynamic)");
  if (on && autocast_ != at::ScalarType::Undefined) throw std::invalid_argument("int8 quantization computes in fp32: it cannot be combined with bf16");
  quantized_ = on;
}

void TorchSession::SetLabelSmoothing(double epsilon) {
  if (!(epsilon >= 0 && epsilon < 1)) throw std::range_error("label smoothing must be in [0, 1)");  // src/model.ts checks first
  const std::string head = HeadOf(cfg_.architecture);
  if (epsilon > 0 && (head == "QuestionAnswering" || (head == "SequenceClassification" && cfg_.problem_type != "single_label_classification")))
    throw std::invalid_argument("label smoothing applies to class labels only, not to " + cfg_.architecture + " (" + cfg_.problem_type + ")");
  label_smoothing_ = epsilon;
}

ForwardResult TorchSession::Forward(const Batch& batch) {
  c10::InferenceMode guard;
  std::optional<AutocastScope> autocast;
  if (autocast_ != at::ScalarType::Undefined) autocast.emplace(device_.type(), autocast_);
  Pass pass = MakePass(false);
  HeadOutput out = model_->forward(Unpad(batch, device_, pass), pass, batch);
  ForwardResult r;
  if (out.loss.defined()) {
    r.loss = out.loss.item<double>();
    r.has_loss = true;
  }
  autocast.reset();
  for (const auto& [name, t] : out.outputs) {
    at::Tensor cpu = t.to(at::kCPU, at::kFloat).contiguous();
    r.outputs.push_back({name, cpu.sizes().vec(), std::vector<float>(cpu.data_ptr<float>(), cpu.data_ptr<float>() + cpu.numel())});
  }
  return r;
}

double TorchSession::ForwardBackward(const Batch& batch, double loss_scale, bool sync) {
  const Config& c = cfg_;
  if (const char* file = std::getenv("BERT_TRAINER_PROFILE"); file && *file && !profile_) {
    const char* step = std::getenv("BERT_TRAINER_PROFILE_STEP");
    if (times_.optimizer_calls + 1 == (step ? std::atoll(step) : 20))
      profile_ = std::make_shared<torch::autograd::profiler::RecordProfile>(std::string(file));  // ends with this step's optimizer step
  }
  const auto t0 = Clock::now();
  const bool dropout = c.hidden_dropout_prob > 0 || c.attention_probs_dropout_prob > 0 || c.classifier_dropout > 0;
  // This step's update makes the evaluation copies stale; they are not kept through training.
  weights_.clear();
  model_->drop_caches();
  at::Tensor loss;
  std::vector<GatheredRows> gathered;
  {
    // The forward and the loss run under autocast (the model computes its loss inside forward in transformers);
    // backward runs outside it, as the Trainer's accelerator.backward does.
    std::optional<AutocastScope> autocast;
    if (autocast_ != at::ScalarType::Undefined) autocast.emplace(device_.type(), autocast_);
    Pass pass = MakePass(true);
    if (device_.is_cpu() && !reducer_) pass.gathered = &gathered;
    {
      // Only the forward draws random numbers (backward reuses the saved masks), so only it holds the scope.
      std::optional<DropoutScope> scope;
      if (dropout) scope.emplace(device_.is_cpu() ? cpu_gen_ : device_gen_, device_);
      loss = model_->forward(Unpad(batch, device_, pass), pass, batch).loss;
    }
  }
  times_.forward_ms += MsSince(t0);  // (on a GPU: the host's time to issue the forward; its kernels may still run)
  const auto t1 = Clock::now();
  if (reducer_ && sync) ArmReducer();  // else no_sync: gradients accumulate locally until the step's last micro-batch
  (loss_scale == 1.0 ? loss : loss * loss_scale).backward();
  ScatterRowGradients(gathered, row_grads_);
  const double value = loss.item<double>();
  times_.backward_ms += MsSince(t1);
  ++times_.forward_backward_calls;
  return value;
}

}  // namespace bert
