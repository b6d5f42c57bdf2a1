// Parameters by their Hugging Face checkpoint keys, registered the way tch-rs's VarStore does it: a module takes a
// Path ("bert.encoder.layer.3.attention.self"), and `var("weight", ...)` registers "<path>.weight" and returns the
// tensor. A key is therefore written once, by the module that owns the parameter.
#pragma once
#include <ATen/ATen.h>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace bert {

struct Param {
  std::string name;                // the Hugging Face key: the contract for loading and saving
  at::Tensor value;                // on the model's device, requires grad; modules hold the same tensor
  bool decay;                      // AdamW weight decay applies (not biases, not LayerNorm), as the HF Trainer groups them
};

// An embedding table's gradient as the rows training gathered (EmbeddingRows, ScatterRowGradients): each
// backward's ids and their gradients since the last step. Optimizer::Step applies them (fused AdamW row by row,
// with no dense [vocab, dim] gradient at all: MiniLM's is 47 MB).
struct RowGradient {
  std::vector<at::Tensor> ids, rows;
};
using RowGradients = std::unordered_map<const c10::TensorImpl*, RowGradient>;  // by the table's tensor

class VarStore {
 public:
  VarStore(at::Device device, uint64_t seed, double initializer_range);
  std::vector<Param>& params() { return params_; }
  const std::vector<Param>& params() const { return params_; }
  Param* find(const std::string& name);
  const at::Tensor& get(const std::string& name) const { return params_.at(index_.at(name)).value; }

  // Initial values as BertPreTrainedModel._init_weights makes them, from this store's seeded CPU generator.
  at::Tensor normal(at::IntArrayRef shape);
  // torch.nn.init.trunc_normal_(mean 0, std, a=-cutoff*std, b=cutoff*std), as ModernBERT initialises its weights.
  at::Tensor trunc_normal(at::IntArrayRef shape, double std, double cutoff);
  at::Tensor add(const std::string& name, const at::Tensor& init, bool decay);

 private:
  at::Device device_;
  at::Generator gen_;
  double std_;
  std::vector<Param> params_;
  std::unordered_map<std::string, size_t> index_;
};

class Path {
 public:
  Path(VarStore& store, std::string prefix) : store_(store), prefix_(std::move(prefix)) {}
  Path sub(const std::string& name) const { return Path(store_, key(name)); }
  Path sub(int64_t index) const { return sub(std::to_string(index)); }
  // Registers "<path>.<name>" with this initial value and returns the parameter.
  at::Tensor var(const std::string& name, const at::Tensor& init, bool decay) const { return store_.add(key(name), init, decay); }
  at::Tensor normal(const std::string& name, at::IntArrayRef shape, bool decay = true) const { return var(name, store_.normal(shape), decay); }
  at::Tensor trunc_normal(const std::string& name, at::IntArrayRef shape, double std, double cutoff) const {
    return var(name, store_.trunc_normal(shape, std, cutoff), true);
  }
  at::Tensor zeros(const std::string& name, at::IntArrayRef shape) const { return var(name, at::zeros(shape), false); }
  at::Tensor ones(const std::string& name, at::IntArrayRef shape) const { return var(name, at::ones(shape), false); }
  at::Tensor randn(at::IntArrayRef shape) const { return store_.normal(shape); }  // an initial value, not registered

 private:
  std::string key(const std::string& name) const { return prefix_.empty() ? name : prefix_ + "." + name; }
  VarStore& store_;
  std::string prefix_;
};

}  // namespace bert
