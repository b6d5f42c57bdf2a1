// Internal to model.cc and train.cc: the libtorch-side state of one model.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <array>
#include <mutex>
#include <unordered_map>
#include "session.h"

namespace bert {

struct Param {
  std::string name;  // the Hugging Face checkpoint key: the contract for loading and saving
  at::Tensor value;
  bool decay;        // AdamW weight decay applies (not biases, not LayerNorm), as the HF Trainer groups them
  at::Tensor exp_avg, exp_avg_sq;  // AdamW state, created on the first step
};

struct Layer {  // handles into Param::value, in the order of modeling_bert.py
  at::Tensor q_w, q_b, k_w, k_b, v_w, v_b, ao_w, ao_b, aln_w, aln_b, i_w, i_b, o_w, o_b, oln_w, oln_b;
  // Query, key and value concatenated for one matrix product. Training concatenates on each forward (autograd
  // must reach the three parameters); evaluation reuses this copy (in the autocast dtype under bf16) while the
  // parameters' version counters show no in-place change (optimizer step, load): no 3*H*H copy per layer per call.
  at::Tensor qkv_w, qkv_b;
  std::array<uint32_t, 6> qkv_versions{};
};

class TorchSession : public Session {
 public:
  explicit TorchSession(const Options& options);
  std::string Device() const override { return device_.str(); }
  std::vector<std::string> ParameterNames() const override;
  int64_t NumParameters() const override;
  LoadReport Load(const std::vector<Blob>& blobs) override;
  ForwardResult Forward(const Batch& batch) override;
  double ForwardBackward(const Batch& batch, double loss_scale) override;
  double OptimizerStep(const StepOptions& options) override;
  void ZeroGrad() override;
  std::vector<Blob> StateDict() override;
  void LoadOptimizerState(const std::vector<Blob>& blobs) override;
  void SaveSafetensors(const std::string& file, bool optimizer,
                       const std::vector<std::pair<std::string, std::string>>& metadata) override;
  void SetAutocast(const std::string& dtype) override;
  void Seed(uint64_t seed) override;
  std::vector<Blob> RngState() override;
  void SetRngState(const std::vector<Blob>& state) override;

 private:
  at::Tensor Logits(const Batch& batch, bool train);
  at::Tensor Loss(const at::Tensor& logits, const Batch& batch);
  at::Tensor Activation(const at::Tensor& x) const;
  std::vector<std::pair<std::string, at::Tensor>> Named(bool optimizer) const;  // the weights (StateDict) or the AdamW state, by name
  const at::Tensor& P(const std::string& name) const;

  Config cfg_;
  at::Device device_;
  std::vector<Param> params_;
  std::unordered_map<std::string, size_t> index_;
  std::vector<Layer> layers_;
  int64_t step_ = 0;  // optimizer steps taken (AdamW bias correction)
  at::ScalarType autocast_ = at::ScalarType::Undefined;  // Undefined: fp32
  // Evaluation under autocast: each weight's cast to the autocast dtype, kept while its version counter holds.
  // (PyTorch casts every weight again on every forward; for batch-1 inference those casts cost more than the math.)
  struct Cast { at::Tensor value; uint32_t version; };
  std::unordered_map<const c10::TensorImpl*, Cast> eval_casts_;
  const at::Tensor& EvalCast(const at::Tensor& w);
  void DropEvalCaches();
  // This model's dropout streams. libtorch's dropout and SDPA draw from the process's default generator, so a
  // training forward swaps the model's state in and out (DropoutScope) instead of sharing one stream.
  at::Generator cpu_gen_, device_gen_;  // device_gen_ defined only on a GPU
};

// While alive: torch.autocast(device_type, dtype) on this thread, as Python's context manager enters and leaves it.
class AutocastScope {
 public:
  AutocastScope(at::DeviceType device_type, at::ScalarType dtype);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  at::DeviceType type_;
  bool prev_enabled_;
  at::ScalarType prev_dtype_;
};

// While alive: the default generator of `device` holds `mine`'s state, and no other model's training forward runs.
class DropoutScope {
 public:
  DropoutScope(at::Generator& mine, const at::Device& device);
  ~DropoutScope();
  DropoutScope(const DropoutScope&) = delete;
  DropoutScope& operator=(const DropoutScope&) = delete;

 private:
  std::unique_lock<std::mutex> lock_;
  at::Generator& mine_;
  at::Generator global_;
  at::Tensor saved_;
};

at::ScalarType DtypeOf(const std::string& dtype);
std::string DtypeName(at::ScalarType t);
Blob ToBlob(const std::string& name, const at::Tensor& t);
at::Tensor FromBlob(const Blob& b, const at::Device& device);

}  // namespace bert
