// The torch-free interface between the Node-API binding (addon.cc) and the libtorch code (torch_session.h).
// Keeping torch out of this header keeps addon.cc a light translation unit.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace bert {

// ModernBERT's own fields (modeling_modernbert.cc), as ModernBertConfig names them; set for model_type modernbert.
struct ModernBertConfig {
  std::vector<bool> global_layers;  // layer_types: full_attention (true) or sliding_attention, per layer
  double global_rope_theta = 0, local_rope_theta = 0;  // rope_parameters' rope_theta of each layer type
  int64_t local_attention = 0;  // the sliding window's width: tokens attend within local_attention / 2 positions
  bool norm_bias = false, attention_bias = false, mlp_bias = false, decoder_bias = false, classifier_bias = false;
  double embedding_dropout = 0, mlp_dropout = 0;  // attention_dropout is attention_probs_dropout_prob
  std::string classifier_pooling, classifier_activation;  // cls | mean; an ACT2FN name
  double initializer_cutoff_factor = 0;
};

// ELECTRA's SequenceSummary (its multiple-choice head), summary_type "first" only.
struct SequenceSummaryConfig {
  bool use_proj = true;    // summary_use_proj: a dense hidden -> hidden
  std::string activation;  // summary_activation; empty: none
  double first_dropout = 0, last_dropout = 0;
};

// DeBERTa-v2/v3's own fields (modeling_deberta_v2.cc), as DebertaV2Config names them; set for model_type deberta-v2.
struct DebertaConfig {
  bool relative_attention = false;
  int64_t att_span = 0;           // relative distances embedded: position_buckets if > 0, else max_relative_positions
  int64_t position_buckets = -1;  // > 0: log-bucketed distances (make_log_bucket_position)
  int64_t max_relative_positions = 0;  // max_relative_positions, or max_position_embeddings when < 1
  bool share_att_key = false, c2p = false, p2c = false;  // pos_att_type
  bool position_biased_input = true, norm_rel_ebd = false;  // absolute positions added; LayerNorm on rel_embeddings
  double pooler_dropout = 0;
  std::string pooler_hidden_act;
  bool legacy = true;  // the masked-LM head as cls.predictions (legacy) or lm_predictions.lm_head
};

// The config fields that change computation, under BertConfig's names (src/config.ts maps each family's own names,
// e.g. DistilBERT's dim and n_layers, onto them). No defaults here: src/config.ts owns them and the binding requires
// every field.
struct Config {
  std::string model_type;  // bert, roberta, xlm-roberta, electra, distilbert: the family's module tree and keys
  int64_t embedding_size;  // ELECTRA's embeddings (projected to hidden_size when they differ); hidden_size elsewhere
  bool sinusoidal_pos_embds;  // DistilBERT: position embeddings initialised sinusoidal
  int64_t vocab_size, hidden_size, num_hidden_layers, num_attention_heads;
  int64_t intermediate_size, max_position_embeddings, type_vocab_size, pad_token_id;  // type_vocab_size 0: no token types
  int64_t num_labels;
  std::string hidden_act;
  double hidden_dropout_prob, attention_probs_dropout_prob, layer_norm_eps;
  double initializer_range;
  double classifier_dropout;  // < 0: use hidden_dropout_prob, as transformers does for None
  std::string problem_type;   // single_label_classification, regression or multi_label_classification
  // The family and head, by transformers' class name: BertForSequenceClassification, RobertaForMaskedLM,
  // DistilBertForQuestionAnswering... (model_type's prefix, then the head).
  std::string architecture;
  ModernBertConfig modernbert;
  DebertaConfig deberta;
  SequenceSummaryConfig summary;
};

// The head of a class name: every family's end alike (RobertaForMaskedLM -> MaskedLM).
inline std::string HeadOf(const std::string& architecture) { return architecture.substr(architecture.find("For") + 3); }

struct Options {
  Config config;
  std::string device;  // cpu | cuda | cuda:N | auto
  uint64_t seed;       // seeds the initialisation of weights no checkpoint provides, and dropout
  int threads;         // intra-op threads; 0 leaves libtorch's default
};

// A batch as the collator produces it: int32 arrays of batch*seq, labels int32 (classes) or float32.
struct Batch {
  const int32_t* input_ids = nullptr;
  const int32_t* attention_mask = nullptr;  // may be null: all ones
  const int32_t* token_type_ids = nullptr;  // may be null: all zeros
  const void* labels = nullptr;             // may be null: no loss
  bool labels_float = false;
  // Labels per row of the batch: 1 (a class or score), num_labels (multi-label, multi-output regression), seq
  // (token classification and masked LM: one per position, -100 ignored), 2 (question answering: start and end
  // positions); multiple choice: one per example, an example being num_choices rows.
  int64_t labels_per_row = 1;
  int64_t batch = 0, seq = 0;
  int64_t num_choices = 0;                  // multiple choice: rows per example (batch is examples * num_choices)
};

struct Blob {  // a tensor crossing the boundary as raw bytes
  std::string name;
  std::string dtype;  // F32 F16 BF16 F64 I64 U8
  std::vector<int64_t> shape;
  std::vector<uint8_t> owned;            // filled when native hands data out
  const uint8_t* data = nullptr;         // set when JS hands data in (borrowed)
  std::string file;                      // or: the bytes are in this file at offset (read straight into the tensor)
  uint64_t offset = 0;
  size_t nbytes = 0;
};

struct LoadReport {
  std::vector<std::string> missing;     // model parameters no blob provided (kept as initialised)
  std::vector<std::string> unexpected;  // blobs that match no parameter
};

struct NamedOutput {  // one of a head's outputs (transformers' ModelOutput field name), fp32, row-major
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct ForwardResult {
  std::vector<NamedOutput> outputs;
  double loss = 0;
  bool has_loss = false;
};

struct OptimizerOptions {  // given once per run (the learning rate goes with each step); src/model.ts owns the defaults
  // TrainingArguments.optim: adamw_torch_fused, adamw_torch, sgd or adafactor
  std::string optim;
  double beta1, beta2, eps, weight_decay;
  double momentum;       // sgd
  double max_grad_norm;  // <= 0: no clipping
};

class ProcessGroup;

// Wall time this session has spent in each phase of training, since it was made (the benchmark's per-phase
// roofline; forward includes the loss, backward the gradient all-reduce it waits for under data parallelism).
struct PhaseTimes {
  double forward_ms = 0, backward_ms = 0, optimizer_ms = 0;
  int64_t forward_backward_calls = 0, optimizer_calls = 0;
};

class Session {
 public:
  static std::unique_ptr<Session> Create(const Options& options);
  virtual ~Session() = default;
  virtual std::string Device() const = 0;
  virtual std::vector<std::string> ParameterNames() const = 0;
  virtual int64_t NumParameters() const = 0;
  virtual LoadReport Load(const std::vector<Blob>& blobs) = 0;
  virtual ForwardResult Forward(const Batch& batch) = 0;                // eval mode, no grad
  // Train mode, grads accumulate. Under data parallelism `sync` says this backward all-reduces the gradients (the
  // last micro-batch of an optimizer step); false is DDP's no_sync.
  virtual double ForwardBackward(const Batch& batch, double loss_scale, bool sync) = 0;
  virtual void SetOptimizer(const OptimizerOptions& options) = 0;       // before the first step (or to change settings)
  virtual double OptimizerStep(double lr) = 0;                          // clip, the optimizer, zero grads; returns grad norm
  virtual void ZeroGrad() = 0;
  virtual std::vector<Blob> StateDict() = 0;           // F32, Hugging Face names
  virtual void LoadOptimizerState(const std::vector<Blob>& blobs) = 0;  // into the optimizer SetOptimizer made
  // The one writer of checkpoint tensors: StateDict() (kModel), the optimizer state (kOptimizer: step, and
  // state.<parameter>.<torch.optim's key> per parameter) or the dropout generators (kRng: "cpu", "cuda") as a safetensors file, straight from
  // the tensors, then fsynced: no copy is made, so a checkpoint does not raise peak memory.
  enum class State { kModel, kOptimizer, kRng };
  virtual void SaveSafetensors(const std::string& file, State what,
                               const std::vector<std::pair<std::string, std::string>>& metadata) = 0;
  // Mixed precision for forward passes (and the loss), as torch.autocast: "bf16" or "no" (fp32). Parameters,
  // gradients and AdamW state stay fp32, as with the HF Trainer's --bf16.
  virtual void SetAutocast(const std::string& dtype) = 0;
  // Label smoothing of the single-label cross-entropy (TrainingArguments.label_smoothing_factor; 0: none).
  virtual void SetLabelSmoothing(double epsilon) = 0;
  // Evaluation's Linear products: "int8" (dynamic quantization, as torch quantize_dynamic; CPU, fp32 only) or
  // "none". Training is unaffected.
  virtual void SetQuantization(const std::string& mode) = 0;
  // The model's own dropout generators (CPU, and the model's CUDA device if any): two models never share a stream.
  virtual void Seed(uint64_t seed) = 0;
  virtual std::vector<Blob> RngState() = 0;             // U8 blobs named "cpu" and, on a GPU, "cuda"
  virtual void SetRngState(const std::vector<Blob>& state) = 0;
  // Data parallelism as torch.nn.parallel.DistributedDataParallel sets it up: rank 0's weights broadcast to every
  // rank, then c10d's Reducer all-reduces averaged gradients in buckets of `bucket_cap_bytes` during backward.
  virtual void Distribute(const std::shared_ptr<ProcessGroup>& group, int64_t bucket_cap_bytes) = 0;
  virtual PhaseTimes Times() const = 0;
};

// A c10d process group (PyTorch's distributed engine, the one torch.distributed drives): rendezvous through a
// TCPStore at master_addr:master_port, then Gloo for CPU tensors or NCCL for CUDA tensors.
struct DistributedOptions {
  std::string master_addr;
  int64_t master_port, rank, world_size;
  double timeout_s;    // every rendezvous and collective fails after this long (TrainingArguments.ddp_timeout)
  std::string device;  // where collectives run: "cpu" (Gloo) or "cuda:N" (NCCL)
  // Under torchrun its agent already hosts the store (TORCHELASTIC_USE_AGENT_STORE): every rank joins as a client,
  // and keys live under a per-restart prefix, as torch.distributed does it there.
  bool agent_store = false;
  std::string store_prefix;
};

class ProcessGroup {
 public:
  static std::shared_ptr<ProcessGroup> Create(const DistributedOptions& options);
  virtual ~ProcessGroup() = default;
  virtual std::string Backend() const = 0;
  virtual int64_t Rank() const = 0;
  virtual int64_t WorldSize() const = 0;
  virtual void AllReduce(std::vector<double>& values, const std::string& op) = 0;  // in place; op: sum, max, min
};

// Process-wide facts and settings of the libtorch in use.
struct RuntimeInfo {
  std::string torch_version;
  bool cuda_available = false;
  int cuda_device_count = 0;
  int num_threads = 0;
  std::vector<std::string> activations;  // hidden_act values the model implements
  std::vector<std::string> distributed_backends;  // c10d backends this build has: gloo, nccl
  std::string cpu_capability;  // ATen's kernels for this CPU: AVX512, AVX2, DEFAULT (ATEN_CPU_CAPABILITY lowers it)
  bool packed_bf16 = false;    // bf16 evaluation on oneDNN's prepacked weights (else autocast's plain products)
  bool int8_reduce_range = true;  // int8 quantization's inputs in 7 bits (no VNNI) or 8 (Int8ReduceRange)
  std::string panel_products;     // inference's fp32 product kernels: avx512, avx2, or none (oneDNN's then)
  std::string training_products;  // CPU fp32 training's products: onednn (forward, input gradient), panels (AVX2: all three), libtorch
  std::string bf16_products;      // CPU bf16 autocast's products: onednn, panels (Bf16OnPanels: rounded operands), libtorch
  std::string cpu_allocator;      // "keeping" (freed blocks kept for reuse: native/cpu_allocator.cc) or "default" (libtorch's)
  std::array<int64_t, 2> cpu_allocator_counts{};  // keeping: keepable requests so far, {reused, fresh}
  std::string table_adamw;        // fused AdamW over an embedding table's row gradients: rows (lazy) or dense (optimizer.h)
};
RuntimeInfo Runtime();
// The CPU allocator's kept free blocks back to the system (native/cpu_allocator.cc), after a model is disposed.
void ReleaseKeptMemory();

// GFLOP/s of the panel products as a training pass runs them (TrainOnPanels: x [m, k] times a weight [n, k] packed in
// the same call), the best of `repeats`, on `threads` threads, per {m, k, n}; empty where the CPU has no panel kernel.
// The roofline workload's peak counts them beside libtorch's matmul: its rate at the step's shapes alone would be
// lower than the products the step runs.
std::vector<double> PanelProductRates(const std::vector<std::array<int64_t, 3>>& shapes, int threads, int repeats);

}  // namespace bert
