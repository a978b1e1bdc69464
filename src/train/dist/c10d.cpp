// The C shim over libtorch's c10d that `tch` lacks (tch-rs #936): a TCPStore rendezvous, a Gloo
// or NCCL process group, and the collectives the trainer uses, on the `at::Tensor`s tch shares
// (a tch `Tensor` is an `at::Tensor*`). Every entry point catches C++ exceptions and returns the
// message (malloc'd, freed by the caller) instead of unwinding into Rust.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef QS_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <cstdlib>
#include <cstring>

struct qs_group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
};
struct qs_work {
  c10::intrusive_ptr<c10d::Work> work;
};

static char* dup(const std::string& s) {
  char* p = static_cast<char*>(std::malloc(s.size() + 1));
  std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

// Runs `f`, turning an exception into an error message (null on success).
template <class F>
static char* guard(F f) {
  try {
    f();
    return nullptr;
  } catch (const std::exception& e) {
    return dup(e.what());
  } catch (...) {
    return dup("unknown C++ exception in c10d");
  }
}

extern "C" {

// Joins the job's rendezvous at host:port and creates the process group. `server`: this process
// hosts the TCPStore (rank 0 when torchrun does not host it); `prefix` namespaces the keys (the
// agent store's `/worker/attempt_N`); `backend`: "gloo" or "nccl"; `device`: the CUDA index (NCCL).
char* qs_group_new(const char* host, int port, int server, const char* prefix, int rank,
                   int world, const char* backend, int device, int64_t timeout_ms,
                   qs_group** out) {
  return guard([&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(port);
    opts.isServer = server != 0;
    if (server) opts.numWorkers = world;
    opts.waitWorkers = false;
    opts.timeout = timeout;
    c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(host, opts);
    store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix) + "qwen3-sft/", store);
    auto g = new qs_group{store, {}};
    if (std::strcmp(backend, "gloo") == 0) {
      auto o = c10d::ProcessGroupGloo::Options::create_default(timeout);
      g->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, o);
    } else {
#ifdef QS_NCCL
      auto o = c10::make_intrusive<c10d::ProcessGroupNCCL::Options>();
      o->timeout = timeout;
      auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, o);
      pg->setBoundDeviceId(at::Device(at::kCUDA, device));
      g->backend = pg;
#else
      delete g;
      throw std::runtime_error("this build has no NCCL (built without the CUDA and NCCL headers)");
#endif
    }
    *out = g;
  });
}

void qs_group_free(qs_group* g) { delete g; }

static qs_work* work(c10::intrusive_ptr<c10d::Work> w) { return new qs_work{std::move(w)}; }

// Sum over ranks, in place.
char* qs_all_reduce(qs_group* g, at::Tensor* t, qs_work** out) {
  return guard([&] {
    std::vector<at::Tensor> ts{*t};
    *out = work(g->backend->allreduce(ts));
  });
}

// `in` holds world equal chunks; rank r receives the sum of everyone's chunk r in `out`.
char* qs_reduce_scatter(qs_group* g, at::Tensor* out_t, at::Tensor* in, qs_work** out) {
  return guard([&] { *out = work(g->backend->_reduce_scatter_base(*out_t, *in)); });
}

// `out` (world chunks) receives every rank's `in`, in rank order.
char* qs_all_gather(qs_group* g, at::Tensor* out_t, at::Tensor* in, qs_work** out) {
  return guard([&] { *out = work(g->backend->_allgather_base(*out_t, *in)); });
}

char* qs_broadcast(qs_group* g, at::Tensor* t, int root, qs_work** out) {
  return guard([&] {
    std::vector<at::Tensor> ts{*t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    *out = work(g->backend->broadcast(ts, o));
  });
}

// Waits for `w` (at most `timeout_ms`) and frees it.
char* qs_work_wait(qs_work* w, int64_t timeout_ms) {
  char* err = guard([&] {
    if (!w->work->wait(std::chrono::milliseconds(timeout_ms)))
      throw std::runtime_error("collective did not complete");
  });
  delete w;
  return err;
}

// The job's store: `key` set to `value`.
char* qs_store_set(qs_group* g, const char* key, const char* value) {
  return guard([&] {
    std::string v(value);
    g->store->set(key, std::vector<uint8_t>(v.begin(), v.end()));
  });
}

// `key`'s value (malloc'd) in `value`, or null when no rank has set it.
char* qs_store_get(qs_group* g, const char* key, char** value) {
  return guard([&] {
    *value = nullptr;
    if (!g->store->check({key})) return;
    auto v = g->store->get(key);
    *value = dup(std::string(v.begin(), v.end()));
  });
}

// Frees a tensor's gradient (autograd allocates a new one on the next backward): ZeRO-2 keeps
// only its shard of each gradient.
void qs_clear_grad(at::Tensor* t) { t->mutable_grad() = at::Tensor(); }

// Gives `t` the gradient `g` (a rank that ran no micro-batch contributes zeros).
void qs_set_grad(at::Tensor* t, at::Tensor* g) { t->mutable_grad() = *g; }

}  // extern "C"
