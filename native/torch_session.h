// Internal to the libtorch translation units: one model's libtorch-side state, and the scopes a pass runs under.
#pragma once
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <chrono>
#include <memory>
#include <mutex>
#include "modeling_bert.h"
#include "optimizer.h"
#include "session.h"
#include "var_store.h"

namespace c10d { class Reducer; }

namespace bert {

class TorchSession : public Session {
 public:
  explicit TorchSession(const Options& options);
  std::string Device() const override { return device_.str(); }
  std::vector<std::string> ParameterNames() const override;
  int64_t NumParameters() const override;
  LoadReport Load(const std::vector<Blob>& blobs) override;                    // checkpoint.cc
  ForwardResult Forward(const Batch& batch) override;
  double ForwardBackward(const Batch& batch, double loss_scale, bool sync) override;
  void SetOptimizer(const OptimizerOptions& options) override;                 // optimizer.cc
  double OptimizerStep(double lr) override;                                    // optimizer.cc
  void ZeroGrad() override;                                                    // optimizer.cc
  std::vector<Blob> StateDict() override;                                      // checkpoint.cc
  void LoadOptimizerState(const std::vector<Blob>& blobs) override;            // optimizer.cc
  void SaveSafetensors(const std::string& file, State what,
                       const std::vector<std::pair<std::string, std::string>>& metadata) override;  // checkpoint.cc
  void SetAutocast(const std::string& dtype) override;
  void SetLabelSmoothing(double epsilon) override;
  void SetQuantization(const std::string& mode) override;
  void Seed(uint64_t seed) override;                                           // rng.cc
  std::vector<Blob> RngState() override;                                       // rng.cc
  void SetRngState(const std::vector<Blob>& state) override;                   // rng.cc
  void Distribute(const std::shared_ptr<ProcessGroup>& group, int64_t bucket_cap_bytes) override;  // distributed.cc
  PhaseTimes Times() const override { return times_; }

 private:
  Pass MakePass(bool train);
  std::vector<std::pair<std::string, at::Tensor>> Named(State what) const;  // the tensors of one kind of state, by name

  Config cfg_;
  at::Device device_;
  VarStore store_;
  std::unique_ptr<BertPreTrainedModel> model_;  // the encoder and its head (Config::architecture)
  std::unique_ptr<Optimizer> optimizer_;  // its settings and state (SetOptimizer)
  at::ScalarType autocast_ = at::ScalarType::Undefined;  // Undefined: fp32
  double label_smoothing_ = 0;
  bool quantized_ = false;  // SetQuantization("int8")
  PhaseTimes times_;
  // BERT_TRAINER_PROFILE=<file>: libtorch's profiler records one whole training step (forward, backward, optimizer)
  // as a Chrome trace: the step numbered BERT_TRAINER_PROFILE_STEP (default 20), so that warm-up is past.
  std::shared_ptr<void> profile_;
  WeightCache weights_{device_.is_cpu() && CanPackWeights()};
  // The word embeddings' gradients as the rows training gathered since the last step (EmbeddingRows,
  // ScatterRowGradients; Optimizer::Step applies them): CPU training without data parallelism (the Reducer's hooks
  // wait for every parameter's gradient from autograd).
  RowGradients row_grads_;
  // This model's dropout streams. libtorch's dropout and SDPA draw from the process's default generator, so a
  // training forward swaps the model's state in and out (DropoutScope) instead of sharing one stream.
  at::Generator cpu_gen_, device_gen_;  // device_gen_ defined only on a GPU
  // Data parallelism (distributed.cc): the group, and the Reducer whose autograd hooks all-reduce gradients.
  std::shared_ptr<ProcessGroup> group_;
  std::shared_ptr<c10d::Reducer> reducer_;
  void ArmReducer();  // between a forward and the backward that all-reduces, as DDP's forward ends
  friend class DropoutScope;
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

std::vector<std::string> DistributedBackends();  // distributed.cc

// Phase timings (PhaseTimes).
using Clock = std::chrono::steady_clock;
inline double MsSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Tensors across the boundary (checkpoint.cc): safetensors dtype names, and raw bytes <-> tensors.
at::ScalarType DtypeOf(const std::string& dtype);
std::string DtypeName(at::ScalarType t);
Blob ToBlob(const std::string& name, const at::Tensor& t);
at::Tensor FromBlob(const Blob& b, const at::Device& device);

}  // namespace bert
