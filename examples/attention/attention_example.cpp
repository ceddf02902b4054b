// attention_example — how generative-recommendation (GR) decode uses the KV cache.
//
// A GR request reads one long prompt (the user's history) and then decodes a few codes (L = 3 here)
// with B beams. All beams share the prompt, so KvPool stores its K/V once, in pages, and gives each
// request a small beam region for the decode tokens. When beam search reorders beams after a step,
// the cache records B parent indices (kv::record_parents) instead of copying KV; decode attention
// finds a beam's own tokens by walking those parents back to step 0.
//
// Two requests (prompts of 100 and 37 tokens, 8 and 4 beams) go through prefill and 3 decode steps
// of a 2-layer model with random bf16 q/k/v. The host reference always runs. Built as CUDA
// (XGR_CUDA=ON) and run where a GPU exists, the same calls run on a DeviceKvPool and the outputs are
// compared by relative error (tensor cores and the host's double-precision reference round differently).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include <xgr/xgr.hpp>
#if defined(__CUDACC__)
#include <xgr/xgr.cuh>
#endif

namespace {

using bf16 = xgr::bfloat16;
constexpr std::size_t layers = 2, kv_heads = 2, q_heads = 8, head_dim = 64, page = 64, steps = 3;
const xgr::KvShape shape{layers, kv_heads, head_dim};
const xgr::attention::Options options{q_heads};  // 4 query heads share each kv head (GQA)

// One attention call's inputs as a model layer emits them: Q [rows][q_heads][d], K/V [rows][kv_heads][d].
struct Qkv {
  std::vector<bf16> q, k, v;
};

Qkv random_qkv(std::size_t rows, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Qkv x{std::vector<bf16>(rows * q_heads * head_dim), std::vector<bf16>(rows * kv_heads * head_dim),
        std::vector<bf16>(rows * kv_heads * head_dim)};
  for (auto* tensor : {&x.q, &x.k, &x.v}) {
    for (bf16& e : *tensor) e = bf16(normal(rng));
  }
  return x;
}

void print_first(const std::vector<bf16>& out) {  // row 0, query head 0, dims 0..3
  for (std::size_t d = 0; d < 4; ++d) std::printf(" %+.4f", static_cast<double>(xgr::to_float(out[d])));
  std::printf("\n");
}

double mib(std::size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

#if defined(__CUDACC__)
// sqrt(sum (got - want)^2 / sum want^2) over one output tensor.
double relative_error(const std::vector<bf16>& got, const std::vector<bf16>& want) {
  double diff = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double w = xgr::to_float(want[i]), g = xgr::to_float(got[i]);
    diff += (g - w) * (g - w);
    norm += w * w;
  }
  return std::sqrt(diff / norm);
}
#endif

}  // namespace

int main() {
  // 1. The pool, sized by plan(): as many requests of (128-token prompt, 8 beams, 3 steps) as 1 MiB
  //    of KV holds. Everything is allocated here, once; admission only pops free lists.
  const xgr::KvPoolConfig config = xgr::HostKvPool<bf16>::plan(shape, 1 << 20, page, 128, 8, steps);
  xgr::HostKvPool<bf16> pool(config);
  const std::vector<xgr::KvAdmission> admissions{{100, 8}, {37, 4}};  // {prompt tokens, beams}; no shared prefix
  std::vector<xgr::KvRequest> requests;
  for (const auto& admission : admissions) requests.push_back(pool.admit(admission));
  const xgr::KvPoolStats stats = pool.stats();
  std::printf("pool: %zu regions, %zu pages of %zu tokens (%zu KiB each), %.2f MiB KV + %zu B metadata\n", stats.max_requests,
              stats.prefix_pages, page, stats.page_bytes / 1024, mib(stats.kv_bytes), stats.metadata_bytes);
  std::printf("admitted prompts of 100 and 37 tokens: %zu pages used (one per 64 tokens, not per beam); room for %zu more "
              "requests of (100 tokens, 8 beams)\n", stats.used_pages, pool.capacity(100, 8));

  // The batch lists the requests in order: rows [token_begin[i], token_begin[i+1]) of a prefill and
  // [beam_begin[i], beam_begin[i+1]) of a decode step belong to request i (the BeamSearcher layout).
  xgr::KvBatch<xgr::MemorySpace::host> batch(requests.size());
  pool.describe(xgr::exec::host, std::span<const xgr::KvRequest>(requests), batch);
  const std::size_t tokens = batch.view().total_tokens, rows = batch.view().total_beams;  // 137 and 12
  const auto beam_begin = batch.beam_begin();

  // 2. Everything the "model" produces, drawn once so that both backends see the same numbers.
  std::mt19937 rng(2025);
  std::vector<Qkv> prompt, step_inputs;  // prompt[layer]; step_inputs[step * layers + layer]
  for (std::size_t layer = 0; layer < layers; ++layer) prompt.push_back(random_qkv(tokens, rng));
  for (std::size_t i = 0; i < steps * layers; ++i) step_inputs.push_back(random_qkv(rows, rng));
  // Beam search's reorder of each step: parents[s][row] is the batch row whose sequence row continues.
  // At step 0 every beam grows from the prompt (its request's first row); later, from a random beam
  // of the same request (a parent in another request is an error).
  std::vector<std::vector<std::uint32_t>> parents(steps, std::vector<std::uint32_t>(rows));
  for (std::size_t s = 0; s < steps; ++s) {
    for (std::size_t r = 0; r + 1 < beam_begin.size(); ++r) {
      std::uniform_int_distribution<std::uint32_t> pick(beam_begin[r], beam_begin[r + 1] - 1);
      for (std::uint32_t row = beam_begin[r]; row < beam_begin[r + 1]; ++row) {
        parents[s][row] = s == 0 ? beam_begin[r] : pick(rng);
      }
    }
  }

  // 3. Prefill: every layer writes its prompt K/V into the pages and attends causally.
  std::vector<std::vector<bf16>> host_outputs;  // every call's output, in order, for the CUDA comparison
  std::vector<bf16> out(tokens * q_heads * head_dim);
  for (std::size_t layer = 0; layer < layers; ++layer) {
    xgr::attention::prefill(xgr::exec::host, pool, batch, layer, options, prompt[layer].q, prompt[layer].k, prompt[layer].v, out);
    host_outputs.push_back(out);
  }
  std::printf("prefill: %zu prompt tokens x %zu layers, out[0][0..3] =", tokens, layers);
  print_first(out);

  // 4. Decode: per step, record the reorder once (it holds for every layer), then per layer write the
  //    new token's K/V into the beam region and attend to prompt + own lineage.
  out.resize(rows * q_heads * head_dim);
  for (std::size_t s = 0; s < steps; ++s) {
    xgr::kv::record_parents(xgr::exec::host, pool, batch, xgr::BeamParents{parents[s], s});
    for (std::size_t layer = 0; layer < layers; ++layer) {
      const Qkv& x = step_inputs[s * layers + layer];
      xgr::kv::write_step(xgr::exec::host, pool, batch, layer, s, x.k, x.v);
      xgr::attention::decode(xgr::exec::host, pool, batch, layer, s, options, x.q, out);
      host_outputs.push_back(out);
    }
    std::printf("step %zu: %zu beam rows, parents recorded (no KV moved), decode out[0][0..3] =", s, rows);
    print_first(out);
  }

  // 5. Why it matters at a realistic shape: a 2048-token prompt, 256 beams, 3 steps, 8 layers of
  //    4 kv heads x 128. A per-beam (copy-on-fork) cache stores the prompt 256 times.
  const xgr::KvShape real{8, 4, 128};
  const std::size_t shared = xgr::HostKvPool<bf16>::request_bytes(real, page, 2048, 256, 3);
  const std::size_t per_beam = xgr::CopyOnForkKvCache<bf16, xgr::MemorySpace::host>::request_bytes(real, page, 2048, 256, 3);
  std::printf("one request (P=2048, B=256, L=3, 8 layers, 4 kv heads, d=128, bf16): KvPool %.1f MiB, copy-on-fork %.1f MiB "
              "(%.0fx more)\n", mib(shared), mib(per_beam), static_cast<double>(per_beam) / static_cast<double>(shared));

#if defined(__CUDACC__)
  if (xgr::cuda_device_count() == 0) {
    std::printf("CUDA backend: built, but no CUDA device here\n");
    return 0;
  }
  // The same calls on a DeviceKvPool: inputs, parents and outputs live in device memory; the pool's
  // metadata is built on the host and published (uploaded) before the first kernel reads it.
  xgr::Stream stream;
  const xgr::exec::cuda exec = stream.exec();
  xgr::DeviceKvPool<bf16> device_pool(config);
  std::vector<xgr::KvRequest> device_requests;
  for (const auto& admission : admissions) device_requests.push_back(device_pool.admit(admission));
  device_pool.publish(exec);
  xgr::KvBatch<xgr::MemorySpace::device> device_batch(device_requests.size());
  device_pool.describe(exec, std::span<const xgr::KvRequest>(device_requests), device_batch);
  // Decode splits long prompts across blocks; its partial results need a workspace, sized once.
  const xgr::attention::DecodeLimits limits{rows, q_heads, head_dim};
  xgr::DeviceWorkspace workspace(xgr::attention::decode_workspace_bytes(limits));

  struct DeviceQkv {
    xgr::DeviceBuffer<bf16> q, k, v;
  };
  auto upload = [](const Qkv& x) {
    return DeviceQkv{xgr::to_device<bf16>(x.q), xgr::to_device<bf16>(x.k), xgr::to_device<bf16>(x.v)};
  };
  std::vector<DeviceQkv> device_prompt, device_steps;  // kept alive until the kernels reading them finish
  for (const Qkv& x : prompt) device_prompt.push_back(upload(x));
  for (const Qkv& x : step_inputs) device_steps.push_back(upload(x));
  std::vector<xgr::DeviceBuffer<std::uint32_t>> device_parents;  // record_parents reads device memory
  for (const auto& p : parents) device_parents.push_back(xgr::to_device<std::uint32_t>(p));
  xgr::DeviceBuffer<bf16> device_out(tokens * q_heads * head_dim);

  double worst = 0.0;
  std::size_t call = 0;
  auto compare = [&](std::size_t elements) {  // wait for the stream, then check this call's output
    stream.synchronize();
    const auto got = xgr::to_host<bf16>(std::span<const bf16>(device_out.data(), elements));
    worst = std::max(worst, relative_error(std::vector<bf16>(got.data(), got.data() + elements), host_outputs[call++]));
  };
  for (std::size_t layer = 0; layer < layers; ++layer) {
    const DeviceQkv& x = device_prompt[layer];
    xgr::attention::prefill(exec, device_pool, device_batch, layer, options, x.q.span(), x.k.span(), x.v.span(),
                            std::span<bf16>(device_out.data(), tokens * q_heads * head_dim));
    compare(tokens * q_heads * head_dim);
  }
  for (std::size_t s = 0; s < steps; ++s) {
    xgr::kv::record_parents(exec, device_pool, device_batch, xgr::BeamParents{std::as_const(device_parents[s]).span(), s});
    for (std::size_t layer = 0; layer < layers; ++layer) {
      const DeviceQkv& x = device_steps[s * layers + layer];
      const std::span<bf16> step_out(device_out.data(), rows * q_heads * head_dim);
      xgr::kv::write_step(exec, device_pool, device_batch, layer, s, x.k.span(), x.v.span());
      xgr::attention::decode(exec, device_pool, device_batch, layer, s, options, x.q.span(), step_out, workspace, limits);
      compare(rows * q_heads * head_dim);
    }
  }
  std::printf("CUDA backend: relative error vs host = %.2e (%zu calls)\n", worst, call);
  return worst <= 1e-2 ? 0 : 1;
#else
  return 0;
#endif
}
