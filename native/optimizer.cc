// The optimizer step as the HF Trainer's default (adamw_torch_fused) takes it: clip_grad_norm_, fused AdamW over the
// decay and no-decay groups, zero_grad(set_to_none); and the AdamW state read back from a checkpoint.
#include <stdexcept>
#include <unordered_map>
#include "torch_session.h"

namespace bert {

void TorchSession::ZeroGrad() {
  for (auto& p : store_.params()) p.value.mutable_grad() = at::Tensor();  // set_to_none, as model.zero_grad() does
}

double TorchSession::OptimizerStep(const StepOptions& o) {
  at::NoGradGuard no_grad;
  std::vector<Param*> with_grad;
  for (auto& p : store_.params())
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
  for (auto& p : store_.params()) {
    auto a = m.find("state." + p.name + ".exp_avg"), s = m.find("state." + p.name + ".exp_avg_sq");
    if (a == m.end() || s == m.end()) {
      if (step > 0) throw std::invalid_argument("optimizer state: no moments for " + p.name);
      continue;
    }
    if (a->second.sizes() != p.value.sizes() || s->second.sizes() != p.value.sizes())
      throw std::invalid_argument("optimizer state: shape of " + p.name + " moments does not match the model");
  }
  for (auto& p : store_.params()) {
    auto a = m.find("state." + p.name + ".exp_avg");
    if (a == m.end()) continue;
    p.exp_avg = a->second.to(device_, p.value.scalar_type()).clone();
    p.exp_avg_sq = m["state." + p.name + ".exp_avg_sq"].to(device_, p.value.scalar_type()).clone();
  }
  step_ = step;
}

}  // namespace bert
