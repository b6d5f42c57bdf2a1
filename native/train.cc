// Training step pieces (gradient clipping and AdamW written as torch.optim does them) and state I/O by name.
#include <ATen/CPUGeneratorImpl.h>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <unordered_set>
#ifdef _WIN32
#include <io.h>
#else
#include <unistd.h>
#endif
#include "torch_session.h"

namespace bert {

static bool Fsync(std::FILE* f) {  // the bytes are on disk before the caller renames the file into place
#ifdef _WIN32
  return _commit(_fileno(f)) == 0;
#else
  return fsync(fileno(f)) == 0;
#endif
}

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

// Reads n bytes at offset of file into dst: a checkpoint's tensor goes from disk into its tensor with no copy between.
static void ReadAt(const std::string& file, uint64_t offset, void* dst, size_t n, const std::string& name) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(file.c_str(), "rb"), &std::fclose);
  if (!f) throw std::runtime_error("cannot read " + file + ": " + std::strerror(errno));
#ifdef _WIN32
  const bool seeked = _fseeki64(f.get(), static_cast<int64_t>(offset), SEEK_SET) == 0;
#else
  const bool seeked = fseeko(f.get(), static_cast<off_t>(offset), SEEK_SET) == 0;
#endif
  if (!seeked || std::fread(dst, 1, n, f.get()) != n)
    throw std::runtime_error(file + ": the file ended before tensor " + name + " (truncated or changed while reading?)");
}

// The one copy into the tensor: borrowed bytes (any alignment) or a file range -> a fresh tensor.
at::Tensor FromBlob(const Blob& b, const at::Device& device) {
  at::Tensor t = at::empty(b.shape, DtypeOf(b.dtype));
  if (static_cast<size_t>(t.nbytes()) != b.nbytes)
    throw std::invalid_argument("tensor '" + b.name + "': " + std::to_string(b.nbytes) + " bytes for shape " +
                                ShapeStr(b.shape) + " of " + b.dtype);
  if (b.nbytes && !b.file.empty()) ReadAt(b.file, b.offset, t.data_ptr(), b.nbytes, b.name);
  else if (b.nbytes) std::memcpy(t.data_ptr(), b.data, b.nbytes);
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
    try {  // one tensor at a time, so loading never holds a second copy of the model
      params_[it->second].value.copy_(FromBlob(b, at::kCPU));
    } catch (const std::exception& e) {
      if (seen.empty()) throw;
      throw std::runtime_error(std::string(e.what()) + "; " + std::to_string(seen.size()) +
                               " tensor(s) had already been loaded, so the model now holds a mix: load it again");
    }
    seen.insert(b.name);
  }
  for (const auto& p : params_)
    if (!seen.count(p.name)) report.missing.push_back(p.name);
  return report;
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

std::vector<std::pair<std::string, at::Tensor>> TorchSession::Named(bool optimizer) const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  if (!optimizer) {
    for (const auto& p : params_) out.emplace_back(p.name, p.value.to(at::kFloat));
    return out;
  }
  out.emplace_back("step", at::tensor({step_}, at::kLong));
  for (const auto& p : params_) {
    if (!p.exp_avg.defined()) continue;
    out.emplace_back("state." + p.name + ".exp_avg", p.exp_avg);
    out.emplace_back("state." + p.name + ".exp_avg_sq", p.exp_avg_sq);
  }
  return out;
}

std::vector<Blob> TorchSession::StateDict() {
  std::vector<Blob> out;
  for (const auto& [name, t] : Named(false)) out.push_back(ToBlob(name, t));
  return out;
}

static std::string JsonString(const std::string& s) {
  std::string r = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') r += '\\', r += static_cast<char>(ch);
    else if (ch < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      r += buf;
    } else r += static_cast<char>(ch);
  }
  return r + "\"";
}

void TorchSession::SaveSafetensors(const std::string& file, bool optimizer,
                                   const std::vector<std::pair<std::string, std::string>>& metadata) {
  at::NoGradGuard no_grad;
  auto named = Named(optimizer);
  for (auto& [name, t] : named) t = t.detach().contiguous();  // no copy for the CPU's contiguous parameters
  // Header: {"__metadata__": {...}, name: {dtype, shape, data_offsets}, ...}, padded with spaces to 8 bytes.
  std::string h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    for (size_t i = 0; i < metadata.size(); ++i)
      h += (i ? "," : "") + JsonString(metadata[i].first) + ":" + JsonString(metadata[i].second);
    h += "}";
  }
  uint64_t offset = 0;
  for (const auto& [name, t] : named) {
    std::string shape;
    for (int64_t d : t.sizes()) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    const uint64_t end = offset + t.nbytes();
    h += (h.size() > 1 ? "," : "") + JsonString(name) + ":{\"dtype\":\"" + DtypeName(t.scalar_type()) + "\",\"shape\":[" +
         shape + "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(end) + "]}";
    offset = end;
  }
  h += "}";
  h.append((8 - h.size() % 8) % 8, ' ');

  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(file.c_str(), "wb"), &std::fclose);
  auto fail = [&](int err) { return std::runtime_error("cannot write " + file + ": " + std::strerror(err)); };
  if (!f) throw fail(errno);
  auto put = [&](const void* data, size_t n) {
    if (n && std::fwrite(data, 1, n, f.get()) != n) throw fail(errno);
  };
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));  // little-endian
  put(len, 8);
  put(h.data(), h.size());
  for (const auto& [name, t] : named) {
    at::Tensor c = t.is_cpu() ? t : t.to(at::kCPU);  // a GPU tensor is copied one at a time
    put(c.data_ptr(), c.nbytes());
  }
  if (std::fflush(f.get()) != 0 || !Fsync(f.get())) throw fail(errno);
  if (std::fclose(f.release()) != 0) throw fail(errno);
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
