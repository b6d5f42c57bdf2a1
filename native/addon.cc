// Node-API binding: one async-worker pattern (Job) runs every heavy call off the JS thread and settles a Promise.
// No torch headers here; no V8/libnode symbols anywhere (Node-API only, context-aware, no mutable globals).
#include <napi.h>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <unistd.h>
#include <cstdio>
#include <thread>
#include "session.h"

namespace {

using bert::Batch;
using bert::Blob;
using bert::Session;

// c10::Error messages carry a C++ backtrace; users need the first part only.
std::string CleanMessage(const char* what) {
  std::string m(what);
  // libtorch appends where it was raised and, for enforce failures, its C++ backtrace ("frame #0: ...").
  for (const char* cut : {"\nException raised from", "Exception raised from ", "\nframe #0"}) {
    size_t i = m.find(cut);
    if (i != std::string::npos) m = m.substr(0, i);
  }
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

// One thread per addon instance runs all libtorch work. libtorch's OpenMP pool belongs to the thread that calls it:
// calls hopping across libuv's pool threads each wake a pool of their own, and on few cores those pools fight.
class Executor {
 public:
  Executor() : thread_([this] { Loop(); }) {}
  ~Executor() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  void Run(const std::function<void()>& fn) {  // blocks the calling (libuv) thread until fn has run here
    std::packaged_task<void()> task(fn);
    auto done = task.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(task));
    }
    cv_.notify_one();
    done.get();  // rethrows what fn threw
  }

 private:
  void Loop() {
    for (;;) {
      std::packaged_task<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::packaged_task<void()>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

Executor& ExecutorOf(Napi::Env env);
Napi::Function GroupClass(Napi::Env env);

// C++ exceptions become the same JS errors on the JS thread and in async jobs: std::invalid_argument a TypeError,
// std::range_error / std::out_of_range a RangeError, anything else (libtorch, I/O) an Error; messages lose
// libtorch's C++ backtrace.
enum class ErrorKind { kType, kRange, kPlain };
ErrorKind KindOf(const std::exception& e) {
  if (dynamic_cast<const std::range_error*>(&e) || dynamic_cast<const std::out_of_range*>(&e)) return ErrorKind::kRange;
  if (dynamic_cast<const std::invalid_argument*>(&e)) return ErrorKind::kType;
  return ErrorKind::kPlain;
}
Napi::Value JsError(Napi::Env env, ErrorKind kind, const std::string& message) {
  if (kind == ErrorKind::kType) return Napi::TypeError::New(env, message).Value();
  if (kind == ErrorKind::kRange) return Napi::RangeError::New(env, message).Value();
  return Napi::Error::New(env, message).Value();
}

// A heavy call: `exec` runs on the instance's torch thread (a libuv worker waits for it, so the JS thread never
// blocks), `done` builds the JS result on the JS thread.
class Job : public Napi::AsyncWorker {
 public:
  Job(Napi::Env env, std::function<void()> exec, std::function<Napi::Value(Napi::Env)> done,
      std::vector<Napi::Value> keep_alive = {})
      : Napi::AsyncWorker(env, "bert-addon"), deferred_(Napi::Promise::Deferred::New(env)),
        exec_(std::move(exec)), done_(std::move(done)) {
    for (auto& v : keep_alive)
      if (v.IsObject()) refs_.push_back(Napi::Persistent(v.As<Napi::Object>()));  // typed arrays stay alive
  }
  static Napi::Promise Run(Napi::Env env, std::function<void()> exec, std::function<Napi::Value(Napi::Env)> done,
                           std::vector<Napi::Value> keep_alive = {}) {
    auto* job = new Job(env, std::move(exec), std::move(done), std::move(keep_alive));
    job->executor_ = &ExecutorOf(env);
    Napi::Promise p = job->deferred_.Promise();
    job->Queue();
    return p;
  }

 protected:
  void Execute() override {
    try {
      executor_->Run(exec_);
    } catch (const std::exception& e) {
      kind_ = KindOf(e);
      SetError(CleanMessage(e.what()));
    } catch (...) {
      SetError("unknown native error");
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(done_ ? done_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(JsError(Env(), kind_, e.Message())); }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<void()> exec_;
  std::function<Napi::Value(Napi::Env)> done_;
  std::vector<Napi::ObjectReference> refs_;
  Executor* executor_ = nullptr;
  ErrorKind kind_ = ErrorKind::kPlain;
};

// The native object a JS handle owns: set when the job that made it finishes, taken by dispose()/destroy(); each job
// holds its own reference, so taking it frees the object once the last queued job is done.
template <typename T>
class Held {
 public:
  explicit Held(const char* gone) : gone_(gone) {}
  std::shared_ptr<T> Get() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!p_) throw std::logic_error(gone_);
    return p_;
  }
  void Set(std::shared_ptr<T> p) {
    std::lock_guard<std::mutex> lock(mu_);
    p_ = std::move(p);
  }
  // Frees the object on the torch thread, after the jobs queued before this call.
  // `after` runs there too, once this reference is dropped.
  Napi::Value Release(const Napi::CallbackInfo& info, void (*after)() = nullptr) {
    std::shared_ptr<T> p;
    {
      std::lock_guard<std::mutex> lock(mu_);
      p.swap(p_);
    }
    return Job::Run(info.Env(), [p, after]() mutable { p.reset(); if (after) after(); }, nullptr, {info.This()});
  }

 private:
  std::mutex mu_;
  std::shared_ptr<T> p_;
  const char* gone_;
};

// Every method of a handle: validate on the JS thread, then run on a worker; errors become rejected Promises.
template <typename Fn>
Napi::Value Guard(const Napi::CallbackInfo& info, Fn fn) {
  Napi::Env env = info.Env();
  try {
    return fn(env);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    auto d = Napi::Promise::Deferred::New(env);
    d.Reject(JsError(env, KindOf(e), CleanMessage(e.what())));
    return d.Promise();
  }
}

// src/ validates and fills every field (each default lives there, once); here a missing field is a bug, not a default.
Napi::Value Required(const Napi::Object& o, const char* key, bool (Napi::Value::*is)() const, const char* what) {
  Napi::Value v = o.Get(key);
  if (!(v.*is)()) throw std::invalid_argument(std::string(key) + " must be " + what);
  return v;
}
int64_t GetInt(const Napi::Object& o, const char* key) { return Required(o, key, &Napi::Value::IsNumber, "a number").As<Napi::Number>().Int64Value(); }
double GetNum(const Napi::Object& o, const char* key) { return Required(o, key, &Napi::Value::IsNumber, "a number").As<Napi::Number>().DoubleValue(); }
bool GetBool(const Napi::Object& o, const char* key) { return Required(o, key, &Napi::Value::IsBoolean, "a boolean").As<Napi::Boolean>().Value(); }
std::string GetStr(const Napi::Object& o, const char* key) { return Required(o, key, &Napi::Value::IsString, "a string").As<Napi::String>().Utf8Value(); }

bert::Config ParseConfig(const Napi::Object& c) {
  bert::Config k{};
  k.model_type = GetStr(c, "model_type");
  k.embedding_size = GetInt(c, "embedding_size");
  k.sinusoidal_pos_embds = GetBool(c, "sinusoidal_pos_embds");
  k.vocab_size = GetInt(c, "vocab_size");
  k.hidden_size = GetInt(c, "hidden_size");
  k.num_hidden_layers = GetInt(c, "num_hidden_layers");
  k.num_attention_heads = GetInt(c, "num_attention_heads");
  k.intermediate_size = GetInt(c, "intermediate_size");
  k.max_position_embeddings = GetInt(c, "max_position_embeddings");
  k.type_vocab_size = GetInt(c, "type_vocab_size");
  k.pad_token_id = GetInt(c, "pad_token_id");
  k.num_labels = GetInt(c, "num_labels");
  k.hidden_act = GetStr(c, "hidden_act");
  k.hidden_dropout_prob = GetNum(c, "hidden_dropout_prob");
  k.attention_probs_dropout_prob = GetNum(c, "attention_probs_dropout_prob");
  k.layer_norm_eps = GetNum(c, "layer_norm_eps");
  k.initializer_range = GetNum(c, "initializer_range");
  k.classifier_dropout = GetNum(c, "classifier_dropout");  // < 0: transformers' None
  k.problem_type = GetStr(c, "problem_type");
  k.architecture = GetStr(c, "architecture");
  if (k.model_type == "modernbert") {
    const Napi::Object m = Required(c, "modernbert", &Napi::Value::IsObject, "an object").As<Napi::Object>();
    const Napi::Array layers = Required(m, "global_layers", &Napi::Value::IsArray, "an array").As<Napi::Array>();
    for (uint32_t i = 0; i < layers.Length(); ++i) k.modernbert.global_layers.push_back(layers.Get(i).ToBoolean().Value());
    k.modernbert.global_rope_theta = GetNum(m, "global_rope_theta");
    k.modernbert.local_rope_theta = GetNum(m, "local_rope_theta");
    k.modernbert.local_attention = GetInt(m, "local_attention");
    k.modernbert.norm_bias = GetBool(m, "norm_bias");
    k.modernbert.attention_bias = GetBool(m, "attention_bias");
    k.modernbert.mlp_bias = GetBool(m, "mlp_bias");
    k.modernbert.decoder_bias = GetBool(m, "decoder_bias");
    k.modernbert.classifier_bias = GetBool(m, "classifier_bias");
    k.modernbert.embedding_dropout = GetNum(m, "embedding_dropout");
    k.modernbert.mlp_dropout = GetNum(m, "mlp_dropout");
    k.modernbert.classifier_pooling = GetStr(m, "classifier_pooling");
    k.modernbert.classifier_activation = GetStr(m, "classifier_activation");
    k.modernbert.initializer_cutoff_factor = GetNum(m, "initializer_cutoff_factor");
  }
  if (k.model_type == "electra") {
    const Napi::Object m = Required(c, "summary", &Napi::Value::IsObject, "an object").As<Napi::Object>();
    k.summary.use_proj = GetBool(m, "use_proj");
    k.summary.activation = GetStr(m, "activation");
    k.summary.first_dropout = GetNum(m, "first_dropout");
    k.summary.last_dropout = GetNum(m, "last_dropout");
  }
  if (k.model_type == "deberta-v2") {
    const Napi::Object m = Required(c, "deberta", &Napi::Value::IsObject, "an object").As<Napi::Object>();
    k.deberta.relative_attention = GetBool(m, "relative_attention");
    k.deberta.att_span = GetInt(m, "att_span");
    k.deberta.position_buckets = GetInt(m, "position_buckets");
    k.deberta.max_relative_positions = GetInt(m, "max_relative_positions");
    k.deberta.share_att_key = GetBool(m, "share_att_key");
    k.deberta.c2p = GetBool(m, "c2p");
    k.deberta.p2c = GetBool(m, "p2c");
    k.deberta.position_biased_input = GetBool(m, "position_biased_input");
    k.deberta.norm_rel_ebd = GetBool(m, "norm_rel_ebd");
    k.deberta.pooler_dropout = GetNum(m, "pooler_dropout");
    k.deberta.pooler_hidden_act = GetStr(m, "pooler_hidden_act");
    k.deberta.legacy = GetBool(m, "legacy");
  }
  return k;
}

const int32_t* Int32Data(const Napi::Object& o, const char* key, size_t n, bool required) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) {
    if (required) throw std::invalid_argument(std::string(key) + " is required");
    return nullptr;
  }
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    throw std::invalid_argument(std::string(key) + " must be an Int32Array");
  auto a = v.As<Napi::Int32Array>();
  if (a.ElementLength() != n)
    throw std::invalid_argument(std::string(key) + " has " + std::to_string(a.ElementLength()) + " elements, expected " +
                                std::to_string(n));
  return a.Data();
}

// Validates again what src/model.ts validated: an out-of-range id must never reach a kernel (on CUDA it aborts).
Batch ParseBatch(const Napi::Object& o, const bert::Config& cfg, std::vector<Napi::Value>& keep) {
  Batch b;
  b.batch = GetInt(o, "batch");
  b.seq = GetInt(o, "seq");
  if (b.batch <= 0 || b.seq <= 0) throw std::invalid_argument("batch and seq must be positive");
  if (b.seq > cfg.max_position_embeddings)
    throw std::range_error("seq " + std::to_string(b.seq) + " exceeds max_position_embeddings " + std::to_string(cfg.max_position_embeddings));
  const size_t n = static_cast<size_t>(b.batch * b.seq);
  b.input_ids = Int32Data(o, "inputIds", n, true);
  b.attention_mask = Int32Data(o, "attentionMask", n, false);
  b.token_type_ids = Int32Data(o, "tokenTypeIds", n, false);
  // The one scan of every id (src/model.ts checks types and lengths only): an id outside its table would read
  // outside it on the CPU and abort the process on CUDA.
  auto scan = [n](const int32_t* a, const char* name, int64_t limit) {
    if (a)
      for (size_t i = 0; i < n; ++i)
        if (a[i] < 0 || a[i] >= limit)
          throw std::range_error("batch." + std::string(name) + "[" + std::to_string(i) + "] = " + std::to_string(a[i]) +
                                 " is outside [0, " + std::to_string(limit) + ")");
  };
  scan(b.input_ids, "inputIds", cfg.vocab_size);
  if (cfg.type_vocab_size == 0) b.token_type_ids = nullptr;  // a family without token types (DistilBERT) ignores them
  scan(b.token_type_ids, "tokenTypeIds", cfg.type_vocab_size);
  scan(b.attention_mask, "attentionMask", 2);
  keep.push_back(o.Get("inputIds"));
  keep.push_back(o.Get("attentionMask"));
  keep.push_back(o.Get("tokenTypeIds"));
  const std::string& arch = cfg.architecture;
  const std::string head = bert::HeadOf(arch);
  if (head == "MultipleChoice") {
    b.num_choices = GetInt(o, "numChoices");
    if (b.num_choices < 1 || b.batch % b.num_choices != 0)
      throw std::invalid_argument("numChoices must divide the batch's rows (examples * choices), got " + std::to_string(b.num_choices) + " for " + std::to_string(b.batch));
  }
  Napi::Value labels = o.Get("labels");
  if (!labels.IsUndefined() && !labels.IsNull()) {
    if (!labels.IsTypedArray()) throw std::invalid_argument("labels must be an Int32Array or Float32Array");
    auto t = labels.As<Napi::TypedArray>();
    // What each head reads: its labels per row, the range of each, and whether they are classes.
    const bool seq_cls = head == "SequenceClassification";
    const bool multi = seq_cls && cfg.problem_type == "multi_label_classification";
    const bool regression = seq_cls && cfg.problem_type == "regression";
    int64_t count = b.batch, limit = cfg.num_labels;
    if (multi || (regression && cfg.num_labels > 1)) count = b.batch * cfg.num_labels;
    if (head == "TokenClassification" || head == "MaskedLM") count = b.batch * b.seq;
    if (head == "MaskedLM") limit = cfg.vocab_size;
    if (head == "QuestionAnswering") count = b.batch * 2, limit = -1;  // positions: clamped to seq and ignored past it
    if (head == "MultipleChoice") count = b.batch / b.num_choices, limit = b.num_choices;
    b.labels_per_row = count / b.batch > 0 ? count / b.batch : 1;
    if (t.ElementLength() != static_cast<size_t>(count))
      throw std::invalid_argument("labels has " + std::to_string(t.ElementLength()) + " elements, expected " + std::to_string(count));
    if (t.TypedArrayType() == napi_float32_array) {
      if (!regression && !multi) throw std::invalid_argument("labels must be an Int32Array of class ids for " + arch + " (" + cfg.problem_type + ")");
      b.labels_float = true;
      b.labels = labels.As<Napi::Float32Array>().Data();
    } else if (t.TypedArrayType() == napi_int32_array) {
      if (regression) throw std::invalid_argument("labels must be a Float32Array for regression");
      const int32_t* y = labels.As<Napi::Int32Array>().Data();
      for (int64_t i = 0; i < count; ++i)
        if (!multi && limit > 0 && y[i] != -100 && (y[i] < 0 || y[i] >= limit))
          throw std::range_error("batch.labels[" + std::to_string(i) + "] = " + std::to_string(y[i]) + " is outside [0, " +
                                 std::to_string(limit) + ") (or -100 to ignore)");
      b.labels = y;
    } else {
      throw std::invalid_argument("labels must be an Int32Array or Float32Array");
    }
    keep.push_back(labels);
  }
  return b;
}

std::vector<Blob> ParseBlobs(const Napi::Value& v, std::vector<Napi::Value>& keep) {
  if (!v.IsArray()) throw std::invalid_argument("tensors must be an array");
  auto arr = v.As<Napi::Array>();
  std::vector<Blob> blobs;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    Napi::Object o = arr.Get(i).As<Napi::Object>();
    Blob b;
    b.name = GetStr(o, "name");
    b.dtype = GetStr(o, "dtype");
    Napi::Value shape = o.Get("shape");
    if (!shape.IsArray()) throw std::invalid_argument("tensor " + b.name + ": shape must be an array");
    auto s = shape.As<Napi::Array>();
    for (uint32_t j = 0; j < s.Length(); ++j) b.shape.push_back(s.Get(j).As<Napi::Number>().Int64Value());
    if (o.Get("file").IsString()) {  // left in its file: read on the worker thread, straight into the tensor
      b.file = o.Get("file").As<Napi::String>().Utf8Value();
      const double offset = GetNum(o, "offset"), nbytes = GetNum(o, "nbytes");
      if (!(offset >= 0 && nbytes >= 0)) throw std::invalid_argument("tensor " + b.name + ": offset and nbytes must be >= 0");
      b.offset = static_cast<uint64_t>(offset);
      b.nbytes = static_cast<size_t>(nbytes);
      blobs.push_back(std::move(b));
      continue;
    }
    Napi::Value data = o.Get("data");
    if (!data.IsTypedArray()) throw std::invalid_argument("tensor " + b.name + ": data must be a Uint8Array (or file, offset, nbytes)");
    auto u = data.As<Napi::TypedArray>();
    b.data = static_cast<const uint8_t*>(u.ArrayBuffer().Data()) + u.ByteOffset();
    b.nbytes = u.ByteLength();
    keep.push_back(data);
    blobs.push_back(std::move(b));
  }
  return blobs;
}

Napi::Array BlobsToJs(Napi::Env env, const std::vector<Blob>& blobs) {
  Napi::Array out = Napi::Array::New(env, blobs.size());
  for (size_t i = 0; i < blobs.size(); ++i) {
    const Blob& b = blobs[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", b.name);
    o.Set("dtype", b.dtype);
    Napi::Array shape = Napi::Array::New(env, b.shape.size());
    for (size_t j = 0; j < b.shape.size(); ++j) shape.Set(j, Napi::Number::New(env, static_cast<double>(b.shape[j])));
    o.Set("shape", shape);
    // A copy, not an external buffer: Electron's V8 sandbox forbids external buffers.
    o.Set("data", Napi::Buffer<uint8_t>::Copy(env, b.owned.data(), b.owned.size()));
    out.Set(i, o);
  }
  return out;
}

Napi::Array Strings(Napi::Env env, const std::vector<std::string>& v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) a.Set(i, v[i]);
  return a;
}

// A c10d process group (one per process, shared by its models): init() does the rendezvous, allReduce() reduces
// a Float64Array in place on every rank. Its collectives run on the same torch thread as the models' passes, in the
// order JS issues them: every rank issues the same sequence.
class Group : public Napi::ObjectWrap<Group> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ProcessGroup", {
        InstanceMethod<&Group::Init>("init"),
        InstanceMethod<&Group::AllReduce>("allReduce"),
        InstanceMethod<&Group::Destroy>("destroy"),
    });
  }
  explicit Group(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Group>(info) {}
  std::shared_ptr<bert::ProcessGroup> Live() { return group_.Get(); }

 private:
  Napi::Value Init(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      Napi::Object o = info[0].As<Napi::Object>();
      bert::DistributedOptions d{};
      d.master_addr = GetStr(o, "masterAddr");
      d.master_port = GetInt(o, "masterPort");
      d.rank = GetInt(o, "rank");
      d.world_size = GetInt(o, "worldSize");
      d.timeout_s = GetNum(o, "timeoutSeconds");
      d.device = GetStr(o, "device");
      d.agent_store = Required(o, "agentStore", &Napi::Value::IsBoolean, "a boolean").As<Napi::Boolean>().Value();
      d.store_prefix = GetStr(o, "storePrefix");
      return Job::Run(env, [this, d] { group_.Set(bert::ProcessGroup::Create(d)); }, [this](Napi::Env env) -> Napi::Value { return Napi::String::New(env, Live()->Backend()); }, {info.This()});
    });
  }

  Napi::Value AllReduce(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto g = Live();
      if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
        throw std::invalid_argument("values must be a Float64Array");
      auto arr = info[0].As<Napi::Float64Array>();
      auto values = std::make_shared<std::vector<double>>(arr.Data(), arr.Data() + arr.ElementLength());
      const std::string op = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "sum";
      auto ref = std::make_shared<Napi::Reference<Napi::Float64Array>>(Napi::Persistent(arr));
      return Job::Run(env, [g, values, op] { g->AllReduce(*values, op); }, [values, ref](Napi::Env env) -> Napi::Value {
        std::copy(values->begin(), values->end(), ref->Value().Data());
        return env.Undefined();
      }, {info.This()});
    });
  }

  // Drops this handle's reference; the group's connections close once the last job holding it has finished.
  Napi::Value Destroy(const Napi::CallbackInfo& info) { return group_.Release(info); }

  Held<bert::ProcessGroup> group_{"the process group is destroyed (or was never initialised)"};
};

class Model : public Napi::ObjectWrap<Model> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Model", {
        InstanceMethod<&Model::Init>("init"),
        InstanceMethod<&Model::Load>("load"),
        InstanceMethod<&Model::Forward>("forward"),
        InstanceMethod<&Model::ForwardBackward>("forwardBackward"),
        InstanceMethod<&Model::SetOptimizer>("setOptimizer"),
        InstanceMethod<&Model::OptimizerStep>("optimizerStep"),
        InstanceMethod<&Model::ZeroGrad>("zeroGrad"),
        InstanceMethod<&Model::StateDict>("stateDict"),
        InstanceMethod<&Model::LoadOptimizerState>("loadOptimizerState"),
        InstanceMethod<&Model::SaveSafetensors>("saveSafetensors"),
        InstanceMethod<&Model::SetAutocast>("setAutocast"),
        InstanceMethod<&Model::SetLabelSmoothing>("setLabelSmoothing"),
        InstanceMethod<&Model::SetQuantization>("setQuantization"),
        InstanceMethod<&Model::Seed>("seed"),
        InstanceMethod<&Model::RngState>("rngState"),
        InstanceMethod<&Model::SetRngState>("setRngState"),
        InstanceMethod<&Model::Distribute>("distribute"),
        InstanceMethod<&Model::PhaseTimes>("phaseTimes"),
        InstanceMethod<&Model::Dispose>("dispose"),
    });
  }
  explicit Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info) {}
  // A model never disposed is freed when V8 collects its handle; V8 only knows to collect it if it is told how
  // much native memory the handle holds (else 30 forgotten bert-base models stay resident).
  ~Model() override { Account(Env(), -accounted_); }

 private:
  // fp32 tensors the session holds: weights from init, gradients after the first backward, the two AdamW
  // moments after the first optimizer step. Called on the JS thread only.
  void Account(Napi::Env env, int64_t delta) {
    if (delta == 0) return;
    accounted_ += delta;
    Napi::MemoryManagement::AdjustExternalMemory(env, delta);
  }
  void AccountOnce(Napi::Env env, bool& done, int copies) {
    if (done) return;
    done = true;
    Account(env, copies * param_bytes_);
  }

  std::shared_ptr<Session> Live() { return session_.Get(); }

  Napi::Value Init(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      Napi::Object o = info[0].As<Napi::Object>();
      auto opts = std::make_shared<bert::Options>();
      opts->config = ParseConfig(o.Get("config").As<Napi::Object>());
      opts->device = GetStr(o, "device");
      opts->seed = static_cast<uint64_t>(GetNum(o, "seed"));
      opts->threads = static_cast<int>(GetInt(o, "threads"));
      config_ = opts->config;
      return Job::Run(env, [this, opts] { session_.Set(Session::Create(*opts)); }, [this](Napi::Env env) -> Napi::Value {
        auto s = Live();
        param_bytes_ = s->NumParameters() * 4;
        AccountOnce(env, weights_counted_, 1);
        Napi::Object r = Napi::Object::New(env);
        r.Set("device", s->Device());
        r.Set("numParameters", Napi::Number::New(env, static_cast<double>(s->NumParameters())));
        r.Set("parameterNames", Strings(env, s->ParameterNames()));
        return r;
      }, {info.This()});
    });
  }

  Napi::Value Load(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      std::vector<Napi::Value> keep{info.This()};
      auto blobs = std::make_shared<std::vector<Blob>>(ParseBlobs(info[0], keep));
      auto report = std::make_shared<bert::LoadReport>();
      return Job::Run(env, [s, blobs, report] { *report = s->Load(*blobs); },
                      [report](Napi::Env env) -> Napi::Value {
                        Napi::Object r = Napi::Object::New(env);
                        r.Set("missing", Strings(env, report->missing));
                        r.Set("unexpected", Strings(env, report->unexpected));
                        return r;
                      }, keep);
    });
  }

  Napi::Value Forward(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      std::vector<Napi::Value> keep{info.This()};
      Batch b = ParseBatch(info[0].As<Napi::Object>(), config_, keep);
      auto out = std::make_shared<bert::ForwardResult>();
      return Job::Run(env, [s, b, out] { *out = s->Forward(b); }, [out](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        Napi::Array outputs = Napi::Array::New(env, out->outputs.size());
        for (size_t i = 0; i < out->outputs.size(); ++i) {
          const bert::NamedOutput& o = out->outputs[i];
          Napi::Object t = Napi::Object::New(env);
          t.Set("name", o.name);
          Napi::Array shape = Napi::Array::New(env, o.shape.size());
          for (size_t k = 0; k < o.shape.size(); ++k) shape.Set(static_cast<uint32_t>(k), Napi::Number::New(env, static_cast<double>(o.shape[k])));
          t.Set("shape", shape);
          auto data = Napi::Float32Array::New(env, o.data.size());
          std::copy(o.data.begin(), o.data.end(), data.Data());
          t.Set("data", data);
          outputs.Set(static_cast<uint32_t>(i), t);
        }
        r.Set("outputs", outputs);
        if (out->has_loss) r.Set("loss", out->loss);
        return r;
      }, keep);
    });
  }

  Napi::Value ForwardBackward(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      std::vector<Napi::Value> keep{info.This()};
      Batch b = ParseBatch(info[0].As<Napi::Object>(), config_, keep);
      if (!b.labels) throw std::invalid_argument("labels are required for a training step");
      double scale = info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 1.0;
      bool sync = info[2].IsBoolean() ? info[2].As<Napi::Boolean>().Value() : true;
      auto loss = std::make_shared<double>(0);
      return Job::Run(env, [s, b, scale, sync, loss] { *loss = s->ForwardBackward(b, scale, sync); },
                      [this, loss](Napi::Env env) -> Napi::Value {
                        AccountOnce(env, grads_counted_, 1);
                        return Napi::Number::New(env, *loss);
                      }, keep);
    });
  }

  Napi::Value SetOptimizer(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      Napi::Object o = info[0].As<Napi::Object>();
      bert::OptimizerOptions oo{};
      oo.optim = GetStr(o, "optim");
      oo.momentum = GetNum(o, "momentum");
      oo.beta1 = GetNum(o, "beta1");
      oo.beta2 = GetNum(o, "beta2");
      oo.eps = GetNum(o, "eps");
      oo.weight_decay = GetNum(o, "weightDecay");
      oo.max_grad_norm = GetNum(o, "maxGradNorm");
      return Job::Run(env, [s, oo] { s->SetOptimizer(oo); }, nullptr, {info.This()});
    });
  }

  Napi::Value OptimizerStep(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      if (!info[0].IsNumber()) throw std::invalid_argument("optimizerStep(lr): lr must be a number");
      const double lr = info[0].As<Napi::Number>().DoubleValue();
      auto norm = std::make_shared<double>(0);
      return Job::Run(env, [s, lr, norm] { *norm = s->OptimizerStep(lr); },
                      [this, norm](Napi::Env env) -> Napi::Value {
                        AccountOnce(env, moments_counted_, 2);
                        return Napi::Number::New(env, *norm);
                      }, {info.This()});
    });
  }

  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      return Job::Run(env, [s] { s->ZeroGrad(); }, nullptr, {info.This()});
    });
  }

  Napi::Value StateDict(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      auto out = std::make_shared<std::vector<Blob>>();
      return Job::Run(env, [s, out] { *out = s->StateDict(); },
                      [out](Napi::Env env) -> Napi::Value { return BlobsToJs(env, *out); }, {info.This()});
    });
  }

  Napi::Value LoadOptimizerState(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      std::vector<Napi::Value> keep{info.This()};
      auto blobs = std::make_shared<std::vector<Blob>>(ParseBlobs(info[0], keep));
      return Job::Run(env, [s, blobs] { s->LoadOptimizerState(*blobs); }, nullptr, keep);
    });
  }

  // saveSafetensors(file, 'model' | 'optimizer', metadata: Record<string, string>)
  Napi::Value SaveSafetensors(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      if (!info[0].IsString()) throw std::invalid_argument("file must be a string");
      const std::string file = info[0].As<Napi::String>().Utf8Value(), kind = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
      using State = bert::Session::State;
      State what = kind == "model" ? State::kModel : kind == "optimizer" ? State::kOptimizer : kind == "rng" ? State::kRng
                 : throw std::invalid_argument("what must be 'model', 'optimizer' or 'rng'");
      std::vector<std::pair<std::string, std::string>> metadata;
      if (info[2].IsObject()) {
        Napi::Object m = info[2].As<Napi::Object>();
        Napi::Array keys = m.GetPropertyNames();
        for (uint32_t i = 0; i < keys.Length(); ++i) {
          Napi::Value k = keys.Get(i), v = m.Get(k);
          if (!v.IsString()) throw std::invalid_argument("metadata values must be strings");
          metadata.emplace_back(k.ToString().Utf8Value(), v.As<Napi::String>().Utf8Value());
        }
      }
      return Job::Run(env, [s, file, what, metadata] { s->SaveSafetensors(file, what, metadata); }, nullptr, {info.This()});
    });
  }

  Napi::Value SetAutocast(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      if (!info[0].IsString()) throw std::invalid_argument("mixed precision must be a string");
      std::string dtype = info[0].As<Napi::String>().Utf8Value();
      return Job::Run(env, [s, dtype] { s->SetAutocast(dtype); }, nullptr, {info.This()});
    });
  }

  Napi::Value SetLabelSmoothing(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      if (!info[0].IsNumber()) throw std::invalid_argument("label smoothing must be a number");
      const double eps = info[0].As<Napi::Number>().DoubleValue();
      return Job::Run(env, [s, eps] { s->SetLabelSmoothing(eps); }, nullptr, {info.This()});
    });
  }

  Napi::Value SetQuantization(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      if (!info[0].IsString()) throw std::invalid_argument("quantization must be a string");
      std::string mode = info[0].As<Napi::String>().Utf8Value();
      return Job::Run(env, [s, mode] { s->SetQuantization(mode); }, nullptr, {info.This()});
    });
  }

  Napi::Value Seed(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      uint64_t seed = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
      return Job::Run(env, [s, seed] { s->Seed(seed); }, nullptr, {info.This()});
    });
  }

  Napi::Value RngState(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      auto out = std::make_shared<std::vector<Blob>>();
      return Job::Run(env, [s, out] { *out = s->RngState(); },
                      [out](Napi::Env env) -> Napi::Value { return BlobsToJs(env, *out); }, {info.This()});
    });
  }

  Napi::Value SetRngState(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      std::vector<Napi::Value> keep{info.This()};
      auto blobs = std::make_shared<std::vector<Blob>>(ParseBlobs(info[0], keep));
      return Job::Run(env, [s, blobs] { s->SetRngState(*blobs); }, nullptr, keep);
    });
  }

  Napi::Value PhaseTimes(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      auto t = std::make_shared<bert::PhaseTimes>();
      return Job::Run(env, [s, t] { *t = s->Times(); }, [t](Napi::Env env) -> Napi::Value {
        Napi::Object r = Napi::Object::New(env);
        r.Set("forwardMs", t->forward_ms);
        r.Set("backwardMs", t->backward_ms);
        r.Set("optimizerMs", t->optimizer_ms);
        r.Set("forwardBackwardCalls", Napi::Number::New(env, static_cast<double>(t->forward_backward_calls)));
        r.Set("optimizerCalls", Napi::Number::New(env, static_cast<double>(t->optimizer_calls)));
        return r;
      }, {info.This()});
    });
  }

  // distribute(group, bucketCapBytes): DDP's setup (broadcast from rank 0, c10d Reducer); a collective.
  Napi::Value Distribute(const Napi::CallbackInfo& info) {
    return Guard(info, [&](Napi::Env env) -> Napi::Value {
      auto s = Live();
      if (!info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(GroupClass(env)))
        throw std::invalid_argument("group must be a ProcessGroup");
      auto g = Napi::ObjectWrap<Group>::Unwrap(info[0].As<Napi::Object>())->Live();
      const int64_t cap = GetInt(info[1].As<Napi::Object>(), "bucketCapBytes");
      if (cap < 1) throw std::invalid_argument("bucketCapBytes must be >= 1");
      return Job::Run(env, [s, g, cap] { s->Distribute(g, cap); }, nullptr, {info.This(), info[0]});
    });
  }

  // Drops this handle's reference; the session is freed once the last queued job holding it has finished.
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    Account(info.Env(), -accounted_);
    return session_.Release(info, &bert::ReleaseKeptMemory);  // the blocks its tensors left in the CPU allocator too
  }

  int64_t param_bytes_ = 0, accounted_ = 0;
  bool weights_counted_ = false, grads_counted_ = false, moments_counted_ = false;
  Held<Session> session_{"the model is disposed (or was never initialised)"};
  bert::Config config_;
};

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports) {
    DefineAddon(exports, {
        InstanceValue("Model", Model::Define(env), napi_enumerable),
        InstanceValue("ProcessGroup", GroupCtor(env), napi_enumerable),
        InstanceMethod<&Addon::RuntimeInfo>("runtime", napi_enumerable),
        InstanceMethod<&Addon::ExitNow>("exitNow", napi_enumerable),
        InstanceMethod<&Addon::PanelProductRates>("panelProductRates", napi_enumerable),
    });
  }

 private:
  // Ends the process at once with `code`. process.exit() joins libuv's thread pool, so it waits for a native call
  // in progress (a rendezvous waiting for peers, an allocation that swaps) for as long as that call takes; an
  // interrupt that has nothing to save must not. Node's stdout/stderr writes to files and pipes are synchronous.
  Napi::Value ExitNow(const Napi::CallbackInfo& info) {
    const int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
    std::fflush(nullptr);
    _exit(code);
  }
  Napi::Value RuntimeInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bert::RuntimeInfo r = bert::Runtime();
    Napi::Object o = Napi::Object::New(env);
    o.Set("torchVersion", r.torch_version);
    o.Set("cudaAvailable", r.cuda_available);
    o.Set("cudaDeviceCount", r.cuda_device_count);
    o.Set("numThreads", r.num_threads);
    o.Set("activations", Strings(env, r.activations));
    o.Set("distributedBackends", Strings(env, r.distributed_backends));
    o.Set("cpuCapability", r.cpu_capability);
    o.Set("packedBf16", r.packed_bf16);
    o.Set("int8ReduceRange", r.int8_reduce_range);
    o.Set("panelProducts", r.panel_products);
    o.Set("trainingProducts", r.training_products);
    o.Set("bf16Products", r.bf16_products);
    o.Set("tableAdamW", r.table_adamw);
    o.Set("cpuAllocator", r.cpu_allocator);
    Napi::Object counts = Napi::Object::New(env);
    counts.Set("reused", Napi::Number::New(env, static_cast<double>(r.cpu_allocator_counts[0])));
    counts.Set("fresh", Napi::Number::New(env, static_cast<double>(r.cpu_allocator_counts[1])));
    o.Set("cpuAllocatorCounts", counts);
    // What V8 counts as external memory (adjusted by 0: a read); models add their native size to it.
    o.Set("v8ExternalMemory", Napi::Number::New(env, static_cast<double>(Napi::MemoryManagement::AdjustExternalMemory(env, 0))));
    return o;
  }
  // panelProductRates(shapes: [m, k, n][], threads, repeats): Promise<number[]> (bert::PanelProductRates).
  Napi::Value PanelProductRates(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto shapes = std::make_shared<std::vector<std::array<int64_t, 3>>>();
    if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsNumber() || !info[2].IsNumber())
      throw Napi::TypeError::New(env, "panelProductRates(shapes, threads, repeats): an array of [m, k, n] and two numbers");
    const Napi::Array a = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
      const Napi::Value v = a.Get(i);
      if (!v.IsArray() || v.As<Napi::Array>().Length() != 3) throw Napi::TypeError::New(env, "panelProductRates: each shape is [m, k, n]");
      std::array<int64_t, 3> s{};
      for (uint32_t j = 0; j < 3; ++j) s[j] = v.As<Napi::Array>().Get(j).ToNumber().Int64Value();
      shapes->push_back(s);
    }
    const int threads = info[1].As<Napi::Number>().Int32Value(), repeats = info[2].As<Napi::Number>().Int32Value();
    if (threads < 1 || repeats < 1) throw Napi::RangeError::New(env, "panelProductRates: threads and repeats must be at least 1");
    auto rates = std::make_shared<std::vector<double>>();
    return Job::Run(env, [=] { *rates = bert::PanelProductRates(*shapes, threads, repeats); }, [rates](Napi::Env e) {
      Napi::Array out = Napi::Array::New(e, rates->size());
      for (uint32_t i = 0; i < rates->size(); ++i) out.Set(i, (*rates)[i]);
      return out;
    });
  }
  Napi::Function GroupCtor(Napi::Env env) {
    Napi::Function f = Group::Define(env);
    group_class = Napi::Persistent(f);
    return f;
  }

 public:
  Executor executor;
  Napi::FunctionReference group_class;  // to recognise a ProcessGroup handed to Model.distribute
};

Executor& ExecutorOf(Napi::Env env) { return env.GetInstanceData<Addon>()->executor; }
Napi::Function GroupClass(Napi::Env env) { return env.GetInstanceData<Addon>()->group_class.Value(); }

}  // namespace

NODE_API_ADDON(Addon)
