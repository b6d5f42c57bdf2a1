// The optimizer step as the HF Trainer takes it: clip_grad_norm_, then the optimizer TrainingArguments.optim names
// over the decay and no-decay groups (biases and LayerNorm weights get no weight decay), then zero_grad(set_to_none);
// and the optimizer state read back from a checkpoint. Each optimizer computes what its PyTorch / transformers class
// computes: torch.optim.AdamW (fused, or the plain form), torch.optim.SGD, transformers.Adafactor.
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <unordered_map>
#include <stdexcept>
#include "optimizer.h"
#include "torch_session.h"

namespace bert {

namespace {

using State = std::map<std::string, at::Tensor>;
struct Slot {  // a parameter and its state in the optimizer
  Param* p;
  State* state;
};

at::Tensor& StateOf(const Slot& s, const char* key) {
  at::Tensor& t = (*s.state)[key];
  if (!t.defined()) t = at::zeros_like(s.p->value, at::MemoryFormat::Preserve);
  return t;
}

// A table's gradient summed per distinct row: `ids` sorted, `sum` [ids, dim] (the rows added in the order they came,
// as index_add_ into a dense gradient adds them).
struct SummedRows {
  at::Tensor ids, sum;
};
using RowSums = std::unordered_map<const Param*, SummedRows>;

SummedRows SumRows(const RowGradient& r) {
  const at::Tensor ids = at::cat(r.ids), rows = at::cat(r.rows);
  const auto [unique, inverse, counts] = at::_unique2(ids, /*sorted=*/true, /*return_inverse=*/true, /*return_counts=*/false);
  return {unique, at::zeros({unique.size(0), rows.size(1)}, rows.options()).index_add_(0, inverse, rows)};
}

// Whether fused AdamW updates a table's rows with moments only (TableAdamW); BERT_TRAINER_DENSE_TABLE_ADAMW=1 updates
// every row (block by block): for comparisons.
bool TableRows() {
  static const bool rows = VectorLoops() && !std::getenv("BERT_TRAINER_DENSE_TABLE_ADAMW");
  return rows;
}

// A table's rows whose moments may not be zero: the rows with a gradient since the state was made or loaded. Every
// other row has zero moments and, its gradient zero, the fused update keeps them zero and moves the row by weight
// decay alone (its step is -lr / bias1 * 0 / eps), so only these rows take the whole update: in place, with
// AdamWRows (libtorch's kernel's arithmetic), where the CPU runs its vector loops and a row is whole vectors of 16.
// MiniLM's optimizer step (step-micro, AVX2-only EPYC, 2/3 of the table's rows with moments): 35.4 -> 22.3 ms.
bool LazyTableAdamW(const Slot& s, const SummedRows& rows, const OptimizerOptions& o, double lr, double weight_decay, int64_t step,
                    const at::Tensor& grad_scale, std::vector<uint8_t>& moment_rows) {
  const at::Tensor& table = s.p->value;
  const int64_t n = table.size(0), dim = table.size(1);
  const float* scale = grad_scale.defined() ? grad_scale.const_data_ptr<float>() : nullptr;
  // A NaN norm makes a NaN scale, and 0 / NaN every row's gradient: the dense update then, as PyTorch's. Rows of 16s:
  // the table then has no elements in libtorch's scalar tail (its vectors are 8 or 16 floats), only its vector path.
  if (!TableRows() || !table.is_cpu() || table.scalar_type() != at::kFloat || !table.is_contiguous() || dim % 16 != 0 || (scale && std::isnan(*scale)))
    return false;
  at::Tensor& exp_avg = StateOf(s, "exp_avg");
  at::Tensor& exp_avg_sq = StateOf(s, "exp_avg_sq");
  if (!exp_avg.is_contiguous() || !exp_avg_sq.is_contiguous()) return false;
  if (static_cast<int64_t>(moment_rows.size()) != n) {  // from the state (a fresh one is zeros)
    const at::Tensor nonzero = exp_avg.ne(0).any(1).logical_or(exp_avg_sq.ne(0).any(1)).to(at::kByte).contiguous();
    moment_rows.assign(nonzero.const_data_ptr<uint8_t>(), nonzero.const_data_ptr<uint8_t>() + n);
  }
  const int64_t* id = rows.ids.const_data_ptr<int64_t>();
  const int64_t ids = rows.ids.size(0);
  for (int64_t k = 0; k < ids; ++k) moment_rows[static_cast<size_t>(id[k])] = 1;
  const at::Tensor sum = rows.sum.to(at::kFloat).contiguous();
  const std::vector<float> zero(static_cast<size_t>(dim), 0.0f);
  std::vector<int64_t> update, decay;
  std::vector<const float*> grads;
  for (int64_t r = 0, k = 0; r < n; ++r) {
    if (!moment_rows[static_cast<size_t>(r)]) {
      if (weight_decay != 0) decay.push_back(r);
      continue;
    }
    const bool has = k < ids && id[k] == r;
    update.push_back(r);
    grads.push_back(has ? sum.const_data_ptr<float>() + k * dim : zero.data());
    if (has) ++k;
  }
  AdamWRows(table.data_ptr<float>(), exp_avg.data_ptr<float>(), exp_avg_sq.data_ptr<float>(), dim, update.data(), grads.data(),
            static_cast<int64_t>(update.size()), {lr, o.beta1, o.beta2, weight_decay, o.eps, step, scale});
  if (!decay.empty()) {  // p * (1 - lr * wd) in float, the kernel's one operation on such a row
    const float factor = static_cast<float>(1 - lr * weight_decay);
    float* p = table.data_ptr<float>();
    at::parallel_for(0, static_cast<int64_t>(decay.size()), 256, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        for (float *x = p + decay[static_cast<size_t>(i)] * dim, *e = x + dim; x < e; ++x) *x *= factor;
    });
  }
  return true;
}

// torch.optim.AdamW(fused=True), the Trainer's default (adamw_torch_fused): one kernel per group, amsgrad off.
// `grad_scale` (clipping's 1 / coefficient, or undefined): the kernel divides each gradient by it as it reads it and
// stores the result back, so the gradients end clipped as clip_grad_norm_ leaves them, one pass over them fewer.
// A table in `row_sums` takes LazyTableAdamW where it can; else the same kernel a block of rows at a time, with a
// block's gradient that is zero but for its rows among the ids: element by element the dense update (every row's
// moments decay, every row moves), from a 1.5 MB block instead of a dense gradient read and written back whole.
void FusedAdamW(const std::vector<Slot>& group, const OptimizerOptions& o, double lr, double weight_decay, int64_t step, const at::Tensor& grad_scale,
                const RowSums& row_sums, std::map<std::string, std::vector<uint8_t>>& moment_rows) {
  std::vector<at::Tensor> w, g, m, v, steps;
  const std::optional<at::Tensor> scale = grad_scale.defined() ? std::optional<at::Tensor>(grad_scale) : std::nullopt;
  for (const Slot& s : group) {
    const at::Tensor t = at::full({}, static_cast<double>(step), at::TensorOptions().dtype(at::kFloat).device(s.p->value.device()));
    const auto rows = row_sums.find(s.p);
    if (rows == row_sums.end()) {
      moment_rows.erase(s.p->name);  // a dense update: any row's moments may be set
      w.push_back(s.p->value);
      g.push_back(s.p->value.grad());
      m.push_back(StateOf(s, "exp_avg"));
      v.push_back(StateOf(s, "exp_avg_sq"));
      steps.push_back(t);
      continue;
    }
    if (LazyTableAdamW(s, rows->second, o, lr, weight_decay, step, grad_scale, moment_rows[s.p->name])) continue;
    moment_rows.erase(s.p->name);
    const at::Tensor& table = s.p->value;
    const at::Tensor exp_avg = StateOf(s, "exp_avg"), exp_avg_sq = StateOf(s, "exp_avg_sq");
    const int64_t n = table.size(0), block = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, table.size(1)));
    at::Tensor zeros = at::zeros({std::min(n, block), table.size(1)}, table.options());
    const at::Tensor& ids = rows->second.ids;
    const int64_t* id = ids.const_data_ptr<int64_t>();
    for (int64_t r0 = 0, k = 0; r0 < n; r0 += block) {
      const int64_t len = std::min(block, n - r0), k0 = k;
      while (k < ids.size(0) && id[k] < r0 + len) ++k;
      at::Tensor grad = zeros.narrow(0, 0, len);
      const at::Tensor at_rows = k > k0 ? ids.slice(0, k0, k) - r0 : at::Tensor();
      if (at_rows.defined()) grad.index_copy_(0, at_rows, rows->second.sum.slice(0, k0, k));
      at::_fused_adamw_({table.narrow(0, r0, len)}, {grad}, {exp_avg.narrow(0, r0, len)}, {exp_avg_sq.narrow(0, r0, len)}, {}, {t}, lr,
                        o.beta1, o.beta2, weight_decay, o.eps, /*amsgrad=*/false, /*maximize=*/false, scale, std::nullopt);
      if (at_rows.defined()) grad.index_fill_(0, at_rows, 0);  // zero again for the next block
    }
  }
  if (!w.empty())
    at::_fused_adamw_(w, g, m, v, {}, steps, lr, o.beta1, o.beta2, weight_decay, o.eps, /*amsgrad=*/false, /*maximize=*/false, scale, std::nullopt);
}

// torch.optim.AdamW without fused kernels (adamw_torch): decoupled decay, the moments, then
// p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps), as its foreach path orders the arithmetic.
void PlainAdamW(const std::vector<Slot>& group, const OptimizerOptions& o, double lr, double weight_decay, int64_t step) {
  std::vector<at::Tensor> w, g, m, v;
  for (const Slot& s : group) {
    w.push_back(s.p->value);
    g.push_back(s.p->value.grad());
    m.push_back(StateOf(s, "exp_avg"));
    v.push_back(StateOf(s, "exp_avg_sq"));
  }
  if (weight_decay != 0) at::_foreach_mul_(w, 1 - lr * weight_decay);
  at::_foreach_lerp_(m, g, 1 - o.beta1);
  at::_foreach_mul_(v, o.beta2);
  at::_foreach_addcmul_(v, g, g, 1 - o.beta2);
  const double bias1 = 1 - std::pow(o.beta1, static_cast<double>(step)), bias2 = 1 - std::pow(o.beta2, static_cast<double>(step));
  std::vector<at::Tensor> denom = at::_foreach_sqrt(v);
  at::_foreach_div_(denom, std::sqrt(bias2));
  at::_foreach_add_(denom, o.eps);
  at::_foreach_addcdiv_(w, m, denom, -lr / bias1);
}

// torch.optim.SGD (dampening 0, not Nesterov): weight decay added to the gradient, then the momentum buffer
// (the first step's is the gradient itself), then p -= lr * buffer.
void Sgd(const std::vector<Slot>& group, const OptimizerOptions& o, double lr, double weight_decay) {
  for (const Slot& s : group) {
    Param* p = s.p;
    at::Tensor d = weight_decay != 0 ? p->value.grad().add(p->value, weight_decay) : p->value.grad();
    if (o.momentum != 0) {
      at::Tensor& buf = (*s.state)["momentum_buffer"];
      if (!buf.defined()) buf = d.clone();
      else buf.mul_(o.momentum).add_(d);
      d = buf;
    }
    p->value.add_(d, -lr);
  }
}

// transformers.Adafactor as the Trainer makes it for optim="adafactor" (scale_parameter=False,
// relative_step=False, warmup_init=False, beta1=None, eps=(1e-30, 1e-3), clip_threshold=1.0, decay_rate=-0.8):
// second moments factored into row and column means for matrices, the update clipped to RMS 1, then scaled by lr.
void Adafactor(const std::vector<Slot>& group, const OptimizerOptions& /*o*/, double lr, double weight_decay, int64_t step) {
  constexpr double kEps = 1e-30, kClip = 1.0, kDecay = -0.8;
  const double beta2t = 1.0 - std::pow(static_cast<double>(step), kDecay);
  auto rms = [](const at::Tensor& t) { return t.norm(2) / std::sqrt(static_cast<double>(t.numel())); };
  for (const Slot& s : group) {
    Param* p = s.p;
    const at::Tensor& grad = p->value.grad();
    at::Tensor update = grad * grad + kEps;
    if (p->value.dim() >= 2) {
      at::Tensor& row = (*s.state)["exp_avg_sq_row"];
      at::Tensor& col = (*s.state)["exp_avg_sq_col"];
      if (!row.defined()) {
        row = at::zeros(update.mean(-1).sizes(), grad.options());
        col = at::zeros(update.mean(-2).sizes(), grad.options());
      }
      row.mul_(beta2t).add_(update.mean(-1), 1.0 - beta2t);
      col.mul_(beta2t).add_(update.mean(-2), 1.0 - beta2t);
      at::Tensor r = (row / row.mean(-1, /*keepdim=*/true)).rsqrt_().unsqueeze(-1);
      at::Tensor c = col.unsqueeze(-2).rsqrt();
      update = (r * c).mul_(grad);
    } else {
      at::Tensor& v = StateOf(s, "exp_avg_sq");
      v.mul_(beta2t).add_(update, 1.0 - beta2t);
      update = v.rsqrt().mul_(grad);
    }
    update.div_((rms(update) / kClip).clamp_(1.0));
    update.mul_(lr);
    if (weight_decay != 0) p->value.add_(p->value, -weight_decay * lr);
    p->value.add_(-update);
  }
}

// Optimizers that keep the same state tensors (a checkpoint of one resumes the other).
std::string StateFamily(const std::string& optim) {
  if (optim == "adamw_torch_fused" || optim == "adamw_torch") return "adamw";
  if (optim == "sgd" || optim == "adafactor") return optim;
  throw std::invalid_argument("optim '" + optim + "' is not one of adamw_torch_fused, adamw_torch, sgd, adafactor");  // src/model.ts checks first
}

}  // namespace

const char* TableAdamW() { return TableRows() ? "rows" : "dense"; }

Optimizer::Optimizer(const OptimizerOptions& options) : o_(options) { StateFamily(o_.optim); }

void Optimizer::Reconfigure(const OptimizerOptions& options) {
  if (options.optim != o_.optim) moment_rows_.clear();  // another optimizer may set any row's moments
  if (StateFamily(options.optim) != StateFamily(o_.optim)) {
    state_.clear();
    step_ = 0;
  }
  o_ = options;
}

at::Tensor Optimizer::Step(std::vector<Param>& params, double lr, const RowGradients& rows) {
  const bool fused = o_.optim == "adamw_torch_fused";
  std::vector<Param*> with_grad;
  RowSums row_sums;
  for (auto& p : params) {
    const auto r = rows.find(p.value.unsafeGetTensorImpl());
    if (r != rows.end() && !r->second.ids.empty()) {
      SummedRows summed = SumRows(r->second);
      if (fused) {
        row_sums[&p] = std::move(summed);
      } else {
        DenseRows& d = dense_rows_[p.name];
        if (!d.buffer.defined()) d.buffer = at::zeros_like(p.value);
        else if (d.ids.defined()) d.buffer.index_fill_(0, d.ids, 0);
        d.buffer.index_copy_(0, summed.ids, summed.sum);
        d.ids = summed.ids;
        p.value.mutable_grad() = d.buffer;
      }
    }
    if (p.value.grad().defined() || row_sums.count(&p)) with_grad.push_back(&p);
  }
  if (with_grad.empty()) throw std::logic_error("optimizerStep: no gradients (call trainStep/forwardBackward first)");

  // torch.nn.utils.clip_grad_norm_: the 2-norm of the per-tensor 2-norms; scale by max_norm / (norm + 1e-6), capped at 1.
  // A table's gradient given as rows has the norm of its summed rows (every other row is zero).
  std::vector<at::Tensor> grads;
  for (Param* p : with_grad) grads.push_back(row_sums.count(p) ? row_sums.at(p).sum : p->value.grad());
  const bool cpu_fp32 = std::all_of(grads.begin(), grads.end(), [](const at::Tensor& g) {
    return g.is_cpu() && g.scalar_type() == at::kFloat && g.is_contiguous();
  });
  at::Tensor total = cpu_fp32 ? at::scalar_tensor(TotalNorm(grads), at::kFloat)  // in parallel (libtorch's: one thread)
                              : at::linalg_vector_norm(at::stack(at::_foreach_norm(grads, 2)), 2);
  // The fused AdamW applies the clipping as it reads the gradients (its grad_scale divides: by 1 / coefficient, the
  // same gradients to within one rounding); the other optimizers get them multiplied first, as clip_grad_norm_ does.
  at::Tensor unscale;
  if (o_.max_grad_norm > 0) {
    const at::Tensor coefficient = at::clamp_max(o_.max_grad_norm / (total + 1e-6), 1.0);
    if (fused) {
      unscale = coefficient.reciprocal().to(at::kFloat);
    } else {
      at::_foreach_mul_(grads, coefficient);
      // Multiplying by a NaN coefficient wrote NaN into the rows thought zero.
      if (!dense_rows_.empty() && !std::isfinite(total.item<double>())) dense_rows_.clear();
    }
  }

  ++step_;
  for (bool decay : {true, false}) {
    std::vector<Slot> group;
    for (Param* p : with_grad)
      if (p->decay == decay) group.push_back({p, &state_[p->name]});
    if (group.empty()) continue;
    const double wd = decay ? o_.weight_decay : 0.0;
    if (fused) FusedAdamW(group, o_, lr, wd, step_, unscale, row_sums, moment_rows_);
    else if (o_.optim == "adamw_torch") PlainAdamW(group, o_, lr, wd, step_);
    else if (o_.optim == "sgd") Sgd(group, o_, lr, wd);
    else Adafactor(group, o_, lr, wd, step_);
  }
  return total;
}

std::vector<std::pair<std::string, at::Tensor>> Optimizer::State() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  out.emplace_back("step", at::tensor({step_}, at::kLong));
  for (const auto& [name, entries] : state_)
    for (const auto& [key, t] : entries) out.emplace_back("state." + name + "." + key, t);
  return out;
}

// The state a checkpoint holds, checked against the model and this optimizer before any is taken.
void Optimizer::LoadState(const std::vector<std::pair<std::string, at::Tensor>>& entries, VarStore& store, const at::Device& device) {
  std::map<std::string, std::map<std::string, at::Tensor>> by_param;
  int64_t step = -1;
  for (const auto& [name, t] : entries) {
    if (name == "step") {
      if (t.numel() != 1) throw std::invalid_argument("optimizer state: 'step' must hold one value");
      step = t.to(at::kLong).item<int64_t>();
      continue;
    }
    const size_t dot = name.rfind('.');
    if (name.rfind("state.", 0) != 0 || dot == std::string::npos || dot < 6)
      throw std::invalid_argument("optimizer state: unexpected entry '" + name + "'");
    by_param[name.substr(6, dot - 6)][name.substr(dot + 1)] = t;
  }
  if (step < 0) throw std::invalid_argument("optimizer state: no 'step' entry");
  const std::string family = StateFamily(o_.optim);
  for (auto& [name, keyed] : by_param) {
    Param* p = store.find(name);
    if (!p) throw std::invalid_argument("optimizer state for '" + name + "', which is not a parameter of this model");
    const auto shape = p->value.sizes().vec();
    for (auto& [key, t] : keyed) {
      std::vector<int64_t> want = shape;
      const bool known = family == "adamw" ? (key == "exp_avg" || key == "exp_avg_sq")
                         : family == "sgd" ? key == "momentum_buffer"
                                           : (key == "exp_avg_sq_row" || key == "exp_avg_sq_col" || key == "exp_avg_sq");
      if (!known) throw std::invalid_argument("optimizer state: entry '" + key + "' for " + name + " is not " + o_.optim + " state");
      if (key == "exp_avg_sq_row") want.pop_back();
      else if (key == "exp_avg_sq_col") want.erase(want.end() - 2);
      if (t.sizes().vec() != want) throw std::invalid_argument("optimizer state: shape of " + name + " " + key + " does not match the model");
      t = t.to(device, p->value.scalar_type()).clone();
    }
  }
  state_ = std::move(by_param);
  moment_rows_.clear();
  step_ = step;
}


void TorchSession::ZeroGrad() {
  for (auto& p : store_.params()) p.value.mutable_grad() = at::Tensor();  // set_to_none, as model.zero_grad() does
  row_grads_.clear();
}

void TorchSession::SetOptimizer(const OptimizerOptions& options) {
  if (optimizer_) optimizer_->Reconfigure(options);
  else optimizer_ = std::make_unique<Optimizer>(options);
}

double TorchSession::OptimizerStep(double lr) {
  at::NoGradGuard no_grad;
  const auto t0 = Clock::now();
  if (!optimizer_) throw std::logic_error("optimizerStep: no optimizer (call setOptimizer first)");  // src/model.ts sets one first
  at::Tensor total = optimizer_->Step(store_.params(), lr, row_grads_);
  ZeroGrad();
  const double norm = total.item<double>();  // waits for the device's work, so the time below is the step's
  times_.optimizer_ms += MsSince(t0);
  ++times_.optimizer_calls;
  profile_.reset();  // a step being profiled ends here: the trace file is written
  return norm;
}

void TorchSession::LoadOptimizerState(const std::vector<Blob>& blobs) {
  at::NoGradGuard no_grad;
  if (!optimizer_) throw std::logic_error("loadOptimizerState: no optimizer (call setOptimizer first)");
  std::vector<std::pair<std::string, at::Tensor>> entries;
  for (const Blob& b : blobs) entries.emplace_back(b.name, FromBlob(b, at::kCPU));
  optimizer_->LoadState(entries, store_, device_);
}

}  // namespace bert
