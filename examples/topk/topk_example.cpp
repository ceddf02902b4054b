// topk_example — one beam-search selection step with MaskedTopK.
//
// Four requests, each with its 64 live beams; every beam scores a 4096-token vocabulary. Each beam
// carries its running score (added to every candidate), and a trie-like mask allows each beam only
// some tokens. MaskedTopK picks, per request, the 64 best (beam, token) continuations out of
// 64 x 4096 = 262,144 candidates. The host reference always runs; built as CUDA (XGR_CUDA=ON)
// and run where a GPU exists, the CUDA implementation runs too and must agree bit for bit.
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <random>
#include <vector>

#include <xgr/topk/host.hpp>
#include <xgr/xgr.hpp>
#if defined(__CUDACC__)
#include <xgr/topk/cuda.cuh>
#include <xgr/xgr.cuh>
#endif

int main() {
  constexpr std::size_t requests = 4, beams = 64, vocab = 4096, k = beams;
  constexpr std::size_t rows = requests * beams, words = vocab / 32;
  std::mt19937 rng(7);
  std::normal_distribution<float> logit(0.0f, 2.0f);
  std::uniform_real_distribution<float> beam_score(-12.0f, -2.0f);
  std::bernoulli_distribution allowed(0.05);  // each beam may continue with ~5% of the tokens

  std::vector<xgr::bfloat16> scores(rows * vocab);
  for (auto& s : scores) s = xgr::bfloat16(logit(rng));
  std::vector<float> running(rows);
  for (auto& r : running) r = beam_score(rng);
  std::vector<std::uint32_t> mask(rows * words, 0);
  for (std::size_t row = 0; row < rows; ++row) {
    for (std::size_t token = 0; token < vocab; ++token) {
      if (allowed(rng)) mask[row * words + token / 32] |= 1u << (token % 32);
    }
  }

  xgr::TopKProblem<xgr::bfloat16> problem;
  problem.scores = xgr::matrix_view<const xgr::bfloat16>(std::span<const xgr::bfloat16>(scores), rows, vocab);
  problem.k = k;
  problem.rows_per_group = beams;  // one group = one request's beams, flattened to beams x vocab
  problem.row_offsets = running;
  problem.mask = xgr::TopKMask::bitset(xgr::matrix_view<const std::uint32_t>(std::span<const std::uint32_t>(mask), rows, words));
  const xgr::TopKLimits limits{requests, rows, beams, vocab, k, 0};

  // Sized once; every later step of the search would reuse it.
  xgr::HostWorkspace workspace(xgr::masked_topk_workspace_bytes(xgr::exec::host, limits));
  std::vector<float> values(requests * k);
  std::vector<std::uint32_t> indices(requests * k), counts(requests);
  const xgr::TopKResult result{xgr::matrix_view(values.data(), requests, k), xgr::matrix_view(indices.data(), requests, k), counts};
  xgr::masked_topk(xgr::exec::host, problem, result, limits, workspace);

  for (std::size_t request = 0; request < requests; ++request) {
    std::printf("request %zu: %u continuations; best:", request, counts[request]);
    for (std::size_t slot = 0; slot < 3; ++slot) {
      const std::uint32_t flat = indices[request * k + slot];
      std::printf("  beam %2u token %4u (%.3f)", static_cast<unsigned>(flat / vocab), static_cast<unsigned>(flat % vocab),
                  static_cast<double>(values[request * k + slot]));
    }
    std::printf("\n");
  }

#if defined(__CUDACC__)
  if (xgr::cuda_device_count() == 0) {
    std::printf("CUDA implementation: built, but no CUDA device here\n");
    return 0;
  }
  const auto device_scores = xgr::to_device<xgr::bfloat16>(scores);
  const auto device_running = xgr::to_device<float>(running);
  const auto device_mask = xgr::to_device<std::uint32_t>(mask);
  xgr::TopKProblem<xgr::bfloat16> on_device = problem;
  on_device.scores.data = device_scores.data();
  on_device.row_offsets = device_running.span();
  on_device.mask.bits.data = device_mask.data();
  xgr::DeviceBuffer<float> device_values(requests * k);
  xgr::DeviceBuffer<std::uint32_t> device_indices(requests * k), device_counts(requests);
  xgr::DeviceWorkspace device_workspace(xgr::masked_topk_workspace_bytes(xgr::exec::cuda{}, limits));
  xgr::Stream stream;
  xgr::masked_topk(stream.exec(), on_device,
                   {xgr::matrix_view(device_values.data(), requests, k), xgr::matrix_view(device_indices.data(), requests, k),
                    device_counts.span()},
                   limits, device_workspace);
  stream.synchronize();
  const auto cuda_indices = xgr::to_host<std::uint32_t>(device_indices.span());
  const auto cuda_values = xgr::to_host<float>(device_values.span());
  bool same = true;
  for (std::size_t i = 0; i < requests * k; ++i) same = same && cuda_indices[i] == indices[i] && cuda_values[i] == values[i];
  std::printf("CUDA implementation: %s\n", same ? "identical to the host reference" : "DIFFERS from the host reference");
  return same ? 0 : 1;
#else
  return 0;
#endif
}
