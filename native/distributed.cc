// Data parallelism on libtorch's own c10d, set up the way torch.distributed.init_process_group and
// torch.nn.parallel.DistributedDataParallel set it up: a TCPStore rendezvous, a Gloo (CPU) or NCCL (CUDA) backend,
// rank 0's weights broadcast, and c10d's Reducer all-reducing gradient buckets from autograd hooks while backward
// is still running.
#include "torch_session.h"
#ifdef BERT_ADDON_DISTRIBUTED
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#ifdef BERT_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef BERT_HAVE_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <type_traits>

namespace bert {

std::vector<std::string> DistributedBackends() {
  std::vector<std::string> b;
#ifdef BERT_HAVE_GLOO
  b.push_back("gloo");
#endif
#ifdef BERT_HAVE_NCCL
  b.push_back("nccl");
#endif
  return b;
}

namespace {

using Backend = c10d::ProcessGroup::BackendType;

// The store's listening socket, bound to MASTER_ADDR's address only. TCPStore's own server listens on every
// interface, and the store has no authentication: a single-machine job (MASTER_ADDR 127.0.0.1) must not be
// reachable from the network, and a multi-machine job is reachable on the address it names and no other.
int ListenOn(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0)
    throw std::invalid_argument("MASTER_ADDR " + host + " does not resolve: " + gai_strerror(rc));
  int err = 0;
  for (addrinfo* a = found; a; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) { err = errno; continue; }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) {
      freeaddrinfo(found);
      return fd;  // TCPStore's server takes it over (masterListenFd)
    }
    err = errno;
    close(fd);
  }
  freeaddrinfo(found);
  throw std::runtime_error("the rendezvous store cannot listen on " + host + ":" + service + ": " + std::strerror(err));
}

class TorchProcessGroup : public ProcessGroup {
 public:
  TorchProcessGroup(const DistributedOptions& o) : device_(o.device), rank_(o.rank), world_(o.world_size) {
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(o.master_port);
    so.isServer = o.rank == 0 && !o.agent_store;  // else rank 0 hosts the store, as with torchrun's static rendezvous
    so.numWorkers = static_cast<size_t>(o.world_size);
    so.waitWorkers = !o.agent_store;
    so.timeout = timeout;
    if (so.isServer) so.masterListenFd = ListenOn(o.master_addr, static_cast<int>(o.master_port));
    c10::intrusive_ptr<c10d::Store> tcp = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
    store_ = tcp;
    if (!o.store_prefix.empty()) store_ = c10::make_intrusive<c10d::PrefixStore>(o.store_prefix, tcp);
    group_ = c10::make_intrusive<c10d::ProcessGroup>(store_, static_cast<int>(o.rank), static_cast<int>(o.world_size));
    if (device_.is_cpu()) {
#ifdef BERT_HAVE_GLOO
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      // As torch.distributed: GLOO_SOCKET_IFNAME names the interface; otherwise the address this host resolves to
      // (loopback when every rank is on this machine).
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      const bool local = o.master_addr == "127.0.0.1" || o.master_addr == "localhost" || o.master_addr == "::1";
      opts->devices.push_back(ifname && *ifname ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                              : local           ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                                : c10d::ProcessGroupGloo::createDefaultDevice());
      auto gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, static_cast<int>(o.rank), static_cast<int>(o.world_size), opts);
      group_->setBackend(c10::kCPU, Backend::GLOO, gloo);
      group_->setDefaultBackend(Backend::GLOO);
      backend_ = "gloo";
#else
      throw std::invalid_argument("this build of the addon has no Gloo backend (it was compiled without gloo headers), so it cannot train on the CPU in several processes");
#endif
    } else {
#ifdef BERT_HAVE_NCCL
      c10::cuda::set_device(device_.index());  // NCCL's communicator and every kernel on this rank's GPU only
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      auto nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(store_, static_cast<int>(o.rank), static_cast<int>(o.world_size), opts);
      group_->setBackend(c10::kCUDA, Backend::NCCL, nccl);
      group_->setDefaultBackend(Backend::NCCL);
      backend_ = "nccl";
#else
      throw std::invalid_argument("this build of the addon has no NCCL backend, so it cannot train on CUDA devices in several processes");
#endif
    }
  }
  // As destroy_process_group(): the backend's threads and communicators are shut down, not left to process exit.
  ~TorchProcessGroup() override {
    try {
      group_->shutdown();
    } catch (...) {  // a peer already gone: nothing left to shut down cleanly
    }
  }
  std::string Backend() const override { return backend_; }
  int64_t Rank() const override { return rank_; }
  int64_t WorldSize() const override { return world_; }
  void AllReduce(std::vector<double>& values, const std::string& op) override {
    c10d::AllreduceOptions ao;
    ao.reduceOp = op == "sum" ? c10d::ReduceOp::SUM : op == "max" ? c10d::ReduceOp::MAX : op == "min" ? c10d::ReduceOp::MIN
                : throw std::invalid_argument("op must be one of sum, max, min");
    at::Tensor t = at::from_blob(values.data(), {static_cast<int64_t>(values.size())}, at::kDouble).to(device_, /*non_blocking=*/false, /*copy=*/true);
    std::vector<at::Tensor> ts{t};
    group_->allreduce(ts, ao)->wait();
    at::Tensor back = t.to(at::kCPU);
    std::copy(back.data_ptr<double>(), back.data_ptr<double>() + back.numel(), values.begin());
  }
  const c10::intrusive_ptr<c10d::ProcessGroup>& group() const { return group_; }
  const at::Device& device() const { return device_; }

 private:
  at::Device device_;
  int64_t rank_, world_;
  std::string backend_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
};

// c10d::Reducer's constructor gained `bucket_bytes_cap_list` (and `batched_grad_copy`) in libtorch 2.13; the
// GPU machines' older libtorch has the 11-argument form. R is a template parameter so only the form this
// libtorch has is compiled.
template <typename R = c10d::Reducer>
std::shared_ptr<R> NewReducer(std::vector<at::Tensor> params, std::vector<std::vector<size_t>> buckets,
                              c10::intrusive_ptr<c10d::ProcessGroup> group, int64_t bucket_cap, int64_t first_bucket_cap) {
  std::vector<bool> sparse(params.size(), false);
  if constexpr (std::is_constructible_v<R, std::vector<at::Tensor>, std::vector<std::vector<size_t>>, c10::intrusive_ptr<c10d::ProcessGroup>,
                                        std::vector<bool>, int64_t, bool, bool, std::unordered_map<size_t, std::string>, int64_t, bool, bool,
                                        std::vector<int64_t>>) {
    return std::make_shared<R>(std::move(params), std::move(buckets), std::move(group), std::move(sparse), bucket_cap,
                               /*find_unused_parameters=*/false, /*gradient_as_bucket_view=*/false, std::unordered_map<size_t, std::string>{},
                               first_bucket_cap, /*skip_all_reduce_unused_params=*/false, /*use_python_reducer=*/false,
                               std::vector<int64_t>{first_bucket_cap, bucket_cap});
  } else {
    return std::make_shared<R>(std::move(params), std::move(buckets), std::move(group), std::move(sparse), bucket_cap,
                               false, false, std::unordered_map<size_t, std::string>{}, first_bucket_cap, false, false);
  }
}

}  // namespace

std::shared_ptr<ProcessGroup> ProcessGroup::Create(const DistributedOptions& o) {
  if (o.world_size < 1 || o.rank < 0 || o.rank >= o.world_size)
    throw std::invalid_argument("rank " + std::to_string(o.rank) + " is outside world size " + std::to_string(o.world_size));  // src/distributed.ts checks first
  if (o.master_port < 1 || o.master_port > 65535) throw std::invalid_argument("master port must be in 1..65535");
  return std::make_shared<TorchProcessGroup>(o);
}

void TorchSession::Distribute(const std::shared_ptr<ProcessGroup>& group, int64_t bucket_cap_bytes) {
  auto* g = dynamic_cast<TorchProcessGroup*>(group.get());
  if (!g) throw std::invalid_argument("not a process group of this addon");
  if (g->device().type() != device_.type())
    throw std::invalid_argument("the model is on " + device_.str() + " but the process group's collectives run on " + g->device().str());
  if (reducer_) throw std::logic_error("the model is already distributed");
  std::vector<at::Tensor> params;
  for (const Param& p : store_.params()) params.push_back(p.value);
  // As DDP's constructor: same parameter count, shapes and dtypes on every rank, then rank 0's values everywhere.
  c10d::verify_params_across_processes(g->group(), params, std::nullopt);
  {
    at::NoGradGuard no_grad;
    c10d::broadcast_coalesced(g->group(), params, /*buffer_size=*/250u << 20, /*rank=*/0);
  }
  // DDP's bucketing: a small first bucket, then bucket_cap_mb each, in reverse registration order so that the
  // buckets fill in the order backward produces gradients (the classifier's first, the embeddings' last).
  constexpr int64_t kFirstBucket = 1 << 20;  // torch.distributed's _DEFAULT_FIRST_BUCKET_BYTES
  auto assignment = c10d::compute_bucket_assignment_by_size(params, {static_cast<size_t>(kFirstBucket), static_cast<size_t>(bucket_cap_bytes)});
  std::vector<std::vector<size_t>> buckets = std::get<0>(assignment);
  std::reverse(buckets.begin(), buckets.end());
  reducer_ = NewReducer(params, std::move(buckets), g->group(), bucket_cap_bytes, kFirstBucket);
  group_ = group;
}

void TorchSession::ArmReducer() {
  reducer_->rebuild_buckets();  // after the first backward: once, in the order gradients actually arrived (DDP's too)
  reducer_->prepare_for_backward({});
}

}  // namespace bert

#else  // built with -DBERT_ADDON_DISTRIBUTED=OFF: one process only

namespace bert {
std::vector<std::string> DistributedBackends() { return {}; }
std::shared_ptr<ProcessGroup> ProcessGroup::Create(const DistributedOptions&) {
  throw std::invalid_argument("this build of the addon has no c10d support (built with BERT_ADDON_DISTRIBUTED=OFF)");
}
void TorchSession::Distribute(const std::shared_ptr<ProcessGroup>&, int64_t) { throw std::logic_error("no c10d support in this build"); }
void TorchSession::ArmReducer() {}
}  // namespace bert

#endif
