// The optimizer as its own object, as torch.optim keeps it: settings given once per run, and per-parameter state
// keyed by the parameter (here its Hugging Face name), separate from the model's variables.
#pragma once
#include <ATen/ATen.h>
#include <map>
#include <string>
#include <utility>
#include <vector>
#include "session.h"
#include "var_store.h"

namespace bert {

// How fused AdamW updates a table whose gradient came as rows: "rows" (only the rows whose moments may not be zero
// take the whole update; the others weight decay alone: LazyTableAdamW) or "dense" (every row, block by block).
const char* TableAdamW();

class Optimizer {
 public:
  explicit Optimizer(const OptimizerOptions& options);
  const OptimizerOptions& options() const { return o_; }
  // Replaces the settings; the state is kept when the new optimizer keeps the same tensors (AdamW fused or not),
  // as changing a param_group's hyperparameters does, and dropped otherwise, as a new torch.optim object starts.
  void Reconfigure(const OptimizerOptions& options);
  // clip_grad_norm_, then the update over the decay and no-decay groups at this learning rate; returns the
  // pre-clip norm as a tensor (reading it waits for the device).
  // `rows`: tables whose gradient came as rows (RowGradient): fused AdamW applies them row by row, the other
  // optimizers take the dense gradient they make (a buffer kept per table, `dense_rows_`).
  at::Tensor Step(std::vector<Param>& params, double lr, const RowGradients& rows);
  // "step", then "state.<parameter>.<torch.optim's key>" per parameter.
  std::vector<std::pair<std::string, at::Tensor>> State() const;
  void LoadState(const std::vector<std::pair<std::string, at::Tensor>>& entries, VarStore& store, const at::Device& device);

 private:
  OptimizerOptions o_;
  int64_t step_ = 0;  // steps taken (bias correction, Adafactor's decay)
  std::map<std::string, std::map<std::string, at::Tensor>> state_;  // by parameter name
  // A table's dense gradient for the optimizers that take gradients whole, kept across steps by parameter name: the
  // rows written the step before (`ids`) are cleared first (they scale a gradient in place, so every other row is
  // still zero), instead of a fresh zero-filled [vocab, dim] tensor per step.
  struct DenseRows {
    at::Tensor buffer, ids;
  };
  std::map<std::string, DenseRows> dense_rows_;
  // Per table updated by rows (fused AdamW), which rows' moments may not be zero (optimizer.cc's LazyTableAdamW).
  std::map<std::string, std::vector<uint8_t>> moment_rows_;
};

}  // namespace bert
