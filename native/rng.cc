// Each model's own dropout streams (CPU, and its GPU's), seeded, saved and restored; and the scope that lends a
// model's stream to libtorch's default generator for one training forward.
#include <ATen/CPUGeneratorImpl.h>
#include <stdexcept>
#include "torch_session.h"

namespace bert {

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
