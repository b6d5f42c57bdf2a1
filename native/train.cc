// Training step pieces (gradient clipping and AdamW written as torch.optim does them) and state I/O by name.
#include <ATen/CPUGeneratorImpl.h>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <unordered_set>
#include "torch_session.h"

namespace bert {

at::ScalarType DtypeOf(const std::string& d) {
  if (d == "F32") return at::kFloat;
  if (d == "F16") return at::kHalf;
  if (d == "BF16") return at::kBFloat16;
  if (d == "F64") return at::kDouble;
  if (d == "I64") return at::kLong;
  if (d == "I32") return at::kInt;
  if (d == "U8") return at::kByte;
  if (d == "BOOL") return at::kBool;
  throw std::invalid_argument("unsupported dtype '" + d + "'");
}

std::string DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "F32";
    case at::kHalf: return "F16";
    case at::kBFloat16: return "BF16";
    case at::kDouble: return "F64";
    case at::kLong: return "I64";
    case at::kInt: return "I32";
    case at::kByte: return "U8";
    case at::kBool: return "BOOL";
    default: throw std::invalid_argument("no safetensors name for this dtype");
  }
}

static std::string ShapeStr(at::IntArrayRef s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// The one copy into the tensor: borrowed bytes (any alignment) -> a fresh tensor.
at::Tensor FromBlob(const Blob& b, const at::Device& device) {
  at::Tensor t = at::empty(b.shape, DtypeOf(b.dtype));
  if (static_cast<size_t>(t.nbytes()) != b.nbytes)
    throw std::invalid_argument("tensor '" + b.name + "': " + std::to_string(b.nbytes) + " bytes for shape " +
                                ShapeStr(b.shape) + " of " + b.dtype);
  if (b.nbytes) std::memcpy(t.data_ptr(), b.data, b.nbytes);
  return device.is_cpu() ? t : t.to(device);
}

Blob ToBlob(const std::string& name, const at::Tensor& t) {
  at::Tensor c = t.detach().to(at::kCPU).contiguous();
  Blob b;
  b.name = name;
  b.dtype = DtypeName(c.scalar_type());
  b.shape = c.sizes().vec();
  b.nbytes = c.nbytes();
  b.owned.resize(b.nbytes);
  if (b.nbytes) std::memcpy(b.owned.data(), c.data_ptr(), b.nbytes);
  return b;
}

LoadReport TorchSession::Load(const std::vector<Blob>& blobs) {
  at::NoGradGuard no_grad;
  LoadReport report;
  std::unordered_set<std::string> seen;
  // Check every shape first so a bad checkpoint leaves the model untouched.
  for (const Blob& b : blobs) {
    auto it = index_.find(b.name);
    if (it == index_.end()) continue;
    const at::Tensor& p = params_[it->second].value;
    if (p.sizes() != at::IntArrayRef(b.shape))
      throw std::invalid_argument("size mismatch for " + b.name + ": the checkpoint has shape " + ShapeStr(b.shape) +
                                  ", the model (from config.json) needs " + ShapeStr(p.sizes()));
    at::ScalarType t = DtypeOf(b.dtype);
    if (!at::isFloatingType(t))
      throw std::invalid_argument("tensor " + b.name + " has dtype " + b.dtype + "; a floating-point dtype is needed");
  }
  for (const Blob& b : blobs) {
    auto it = index_.find(b.name);
    if (it == index_.end()) {
      report.unexpected.push_back(b.name);
      continue;
    }
    params_[it->second].value.copy_(FromBlob(b, at::kCPU));
    seen.insert(b.name);
  }
  for (const auto& p : params_)
    if (!seen.count(p.name)) report.missing.push_back(p.name);
  return report;
}

std::vector<Blob> TorchSession::StateDict() {
  std::vector<Blob> out;
  for (const auto& p : params_) out.push_back(ToBlob(p.name, p.value.to(at::kFloat)));
  return out;
}

void TorchSession::ZeroGrad() {
  for (auto& p : params_) p.value.mutable_grad() = at::Tensor();  // set_to_none, as model.zero_grad() does
}

double TorchSession::OptimizerStep(const StepOptions& o) {
  at::NoGradGuard no_grad;
  std::vector<Param*> with_grad;
  for (auto& p : params_)
    if (p.value.grad().defined()) with_grad.push_back(&p);
  if (with_grad.empty()) throw std::logic_error("optimizerStep: no gradients (call trainStep/forwardBackward first)");

  // torch.nn.utils.clip_grad_norm_: the 2-norm of the per-tensor 2-norms; scale by max_norm / (norm + 1e-6), capped at 1.
  std::vector<at::Tensor> grads;
  for (Param* p : with_grad) grads.push_back(p->value.grad());
  at::Tensor total = at::linalg_vector_norm(at::stack(at::_foreach_norm(grads, 2)), 2);
  if (o.max_grad_norm > 0) at::_foreach_mul_(grads, at::clamp_max(o.max_grad_norm / (total + 1e-6), 1.0));

  // torch.optim.AdamW(fused=True), what the HF Trainer uses by default (adamw_torch_fused): one kernel over the
  // decay group and one over the no-decay group (biases, LayerNorm), amsgrad off.
  ++step_;
  for (bool decay : {true, false}) {
    std::vector<at::Tensor> w, g, m, v, steps;
    for (Param* p : with_grad) {
      if (p->decay != decay) continue;
      if (!p->exp_avg.defined()) {
        p->exp_avg = at::zeros_like(p->value, at::MemoryFormat::Preserve);
        p->exp_avg_sq = at::zeros_like(p->value, at::MemoryFormat::Preserve);
      }
      w.push_back(p->value);
      g.push_back(p->value.grad());
      m.push_back(p->exp_avg);
      v.push_back(p->exp_avg_sq);
      steps.push_back(at::full({}, static_cast<double>(step_), at::TensorOptions().dtype(at::kFloat).device(p->value.device())));
    }
    if (w.empty()) continue;
    at::_fused_adamw_(w, g, m, v, {}, steps, o.lr, o.beta1, o.beta2, decay ? o.weight_decay : 0.0, o.eps,
                      /*amsgrad=*/false, /*maximize=*/false, std::nullopt, std::nullopt);
  }
  ZeroGrad();
  return total.item<double>();
}

std::vector<Blob> TorchSession::OptimizerState() {
  std::vector<Blob> out;
  out.push_back(ToBlob("step", at::tensor({step_}, at::kLong)));
  for (const auto& p : params_) {
    if (!p.exp_avg.defined()) continue;
    out.push_back(ToBlob("state." + p.name + ".exp_avg", p.exp_avg));
    out.push_back(ToBlob("state." + p.name + ".exp_avg_sq", p.exp_avg_sq));
  }
  return out;
}

void TorchSession::LoadOptimizerState(const std::vector<Blob>& blobs) {
  at::NoGradGuard no_grad;
  std::unordered_map<std::string, at::Tensor> m;
  int64_t step = -1;
  for (const Blob& b : blobs) {
    if (b.name == "step") {
      at::Tensor t = FromBlob(b, at::kCPU);
      if (t.numel() != 1) throw std::invalid_argument("optimizer state: 'step' must hold one value");
      step = t.to(at::kLong).item<int64_t>();
      continue;
    }
    m[b.name] = FromBlob(b, at::kCPU);
  }
  if (step < 0) throw std::invalid_argument("optimizer state: no 'step' entry");
  for (auto& p : params_) {
    auto a = m.find("state." + p.name + ".exp_avg"), s = m.find("state." + p.name + ".exp_avg_sq");
    if (a == m.end() || s == m.end()) {
      if (step > 0) throw std::invalid_argument("optimizer state: no moments for " + p.name);
      continue;
    }
    if (a->second.sizes() != p.value.sizes() || s->second.sizes() != p.value.sizes())
      throw std::invalid_argument("optimizer state: shape of " + p.name + " moments does not match the model");
  }
  for (auto& p : params_) {
    auto a = m.find("state." + p.name + ".exp_avg");
    if (a == m.end()) continue;
    p.exp_avg = a->second.to(device_, p.value.scalar_type()).clone();
    p.exp_avg_sq = m["state." + p.name + ".exp_avg_sq"].to(device_, p.value.scalar_type()).clone();
  }
  step_ = step;
}

// Seeds both streams as torch.manual_seed seeds the CPU and CUDA generators.
void TorchSession::Seed(uint64_t seed) {
  cpu_gen_ = at::make_generator<at::CPUGeneratorImpl>(seed);
  if (!device_.is_cpu()) {
    device_gen_ = at::globalContext().defaultGenerator(device_).clone();
    std::lock_guard<std::mutex> lock(device_gen_.mutex());
    device_gen_.set_current_seed(seed);
  }
}

std::vector<Blob> TorchSession::RngState() {
  std::vector<Blob> out{ToBlob("cpu", cpu_gen_.get_state())};
  if (device_gen_.defined()) out.push_back(ToBlob("cuda", device_gen_.get_state()));
  return out;
}

void TorchSession::SetRngState(const std::vector<Blob>& state) {
  for (const Blob& b : state) {
    if (b.name != "cpu" && b.name != "cuda") throw std::invalid_argument("generator state '" + b.name + "': expected cpu or cuda");
    if (b.dtype != "U8" || b.shape.size() != 1) throw std::invalid_argument("generator state '" + b.name + "' must be a 1-D U8 tensor");
  }
  for (const Blob& b : state) {
    at::Tensor t = FromBlob(b, at::Device(at::kCPU));
    // A GPU's state is kept only on a GPU, as Python's Trainer skips its "cuda" entry without one.
    if (b.name == "cpu") cpu_gen_.set_state(t);  // throws c10::Error on a wrong-size state
    else if (device_gen_.defined()) device_gen_.set_state(t);
  }
}

static std::mutex& DropoutMutex() {
  static std::mutex m;  // process-wide, as the default generators are
  return m;
}

DropoutScope::DropoutScope(at::Generator& mine, const at::Device& device)
    : lock_(DropoutMutex()), mine_(mine), global_(at::globalContext().defaultGenerator(device)) {
  std::lock_guard<std::mutex> g(global_.mutex());
  saved_ = global_.get_state();
  global_.set_state(mine_.get_state());
}

DropoutScope::~DropoutScope() {
  try {
    std::lock_guard<std::mutex> g(global_.mutex());
    mine_.set_state(global_.get_state());
    global_.set_state(saved_);
  } catch (...) {  // states of the same generator type always fit; a destructor must not throw
  }
}

}  // namespace bert
