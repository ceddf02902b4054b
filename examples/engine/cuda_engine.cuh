// examples/engine/cuda_engine.cuh — the GR engine on the device, several groups in flight.
//
// The same fixed-step loop as engine.hpp (admit, prefill, L beam-search levels, finalize, release),
// with every step on the GPU and no host round-trip between levels: the beam searcher's tokens and
// ancestry feed the next decode step on the device. A group runs as five StreamPipeline stages:
//
//   admit      host    KvPool admission; prompt tokens, positions and per-row metadata packed into
//                      the group's pinned staging buffer
//   prefill    device  batch description and inputs uploaded; the model over the prompts (KV into
//                      the pages); BeamSearcher level 0 on each prompt's last logits
//   decode     device  L - 1 rounds back to back: record the reorder, gather the chosen tokens, one
//                      model step over every beam row (staged attention), BeamSearcher level l;
//                      captured into a CUDA graph per (slot, shape bucket) and replayed afterwards
//   finalize   device  item ids, codes and scores; copied to pinned memory
//   respond    host    responses built, KV released; the group's callback runs
//
// Each pipeline slot owns one Group — its KvPool, beam searcher, activations, cuBLAS handle and
// staging — so `slots` groups can be in flight: while one decodes, the next is admitted and packed,
// and the launcher thread enqueues its kernels. The model weights are shared. BaselineMode runs one
// group at a time, with a prompt KV copy per beam, a full sort and dense masks.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/cuda_model.cuh"
#include "engine/engine.hpp"
#include "xgr/beam/cuda.cuh"
#include "xgr/items/cuda.cuh"
#include "xgr/kv/cuda.cuh"
#include "xgr/pipeline/cuda.cuh"

namespace xgr::engine {

namespace cuda_detail {

// The tokens beam rows chose at `step` and their positions (prompt length + step). Dead rows feed
// token 0: their logits are computed and never read.
__global__ void __launch_bounds__(row_threads) step_inputs_kernel(MatrixView<const std::uint32_t> chosen, const std::uint32_t* trie_nodes,
                                                                  const std::uint32_t* row_prompt_tokens, std::uint32_t step,
                                                                  std::uint32_t rows, std::uint32_t* tokens, std::uint32_t* positions) {
  const std::uint32_t row = blockIdx.x * row_threads + threadIdx.x;
  if (row >= rows) return;
  tokens[row] = trie_nodes[row] == no_trie_node ? 0u : chosen(row, step);
  positions[row] = row_prompt_tokens[row] + step;
}

}  // namespace cuda_detail

struct CudaEngineOptions {
  std::size_t groups_in_flight = 2;  // pipeline slots (BaselineMode always uses 1)
  std::size_t compute_streams = 1;   // streams the groups' kernels share (0: one per group)
  bool decode_graphs = true;         // replay the decode rounds from CUDA graphs (BaselineMode never does)
};

template <class Mode = XgrMode, class T = bfloat16>
class CudaEngine {
  using Cache = typename Mode::template Cache<T, MemorySpace::device>;
  using Searcher = BeamSearcher<exec::cuda, beam::FullVocabLogSoftmax, typename Mode::Select, typename Mode::Filter>;

 public:
  // Called once per group, from the pipeline's completion thread, with the group's responses (in
  // request order) or its error. It must not throw.
  using Done = std::function<void(std::vector<Response>& responses, std::exception_ptr error)>;

  CudaEngine(const CudaModel<T>& model, const ItemTrie& trie, std::vector<std::uint32_t> level_token_offsets, const EngineLimits& limits,
             const CudaEngineOptions& options = {})
      : model_(model),
        limits_(limits),
        levels_(trie.levels()),
        device_trie_(trie, exec::cuda{}),
        beam_config_(detail::beam_config(model.config().vocab_size, limits, std::move(level_token_offsets))),
        decode_graphs_(Mode::decode_graphs && options.decode_graphs && graph_buckets_fit(limits)),
        pipeline_(pipeline_options(options), [&](std::size_t) { return std::make_unique<Group>(*this); }) {
    (void)attention::detail::wgmma::available();  // the one-time probe syncs; keep it out of the stages
    XGR_CUDA_CHECK(cudaDeviceSynchronize());
    build_stages();
    pipeline_.start();
  }

  [[nodiscard]] std::size_t levels() const noexcept { return levels_; }
  [[nodiscard]] const EngineLimits& limits() const noexcept { return limits_; }
  [[nodiscard]] PipelineStats stats() const { return pipeline_.stats(); }

  // Serves requests in groups of at most max_group_requests, several groups in flight, and returns
  // when all are done. Every request must fit the limits (Error(invalid_argument) names the first
  // that does not, before any is served); a group's failure is rethrown after the others finished.
  [[nodiscard]] std::vector<Response> serve(std::span<const Request> requests) {
    for (std::size_t i = 0; i < requests.size(); ++i) {
      detail::validate_request(requests[i], i, limits_, model_.config().vocab_size, "CudaEngine::serve");
    }
    std::vector<Response> responses(requests.size());
    std::mutex mutex;
    std::exception_ptr first_error;
    for (std::size_t begin = 0; begin < requests.size(); begin += limits_.max_group_requests) {
      const std::size_t end = std::min(requests.size(), begin + limits_.max_group_requests);
      submit([&, begin, end] { return std::vector<Request>(requests.begin() + static_cast<std::ptrdiff_t>(begin),
                                                           requests.begin() + static_cast<std::ptrdiff_t>(end)); },
             [&, begin](std::vector<Response>& group, std::exception_ptr error) {
               const std::lock_guard lock(mutex);
               if (error && !first_error) first_error = error;
               std::move(group.begin(), group.end(), responses.begin() + static_cast<std::ptrdiff_t>(begin));
             });
    }
    pipeline_.drain();
    if (first_error) std::rethrow_exception(first_error);
    return responses;
  }

  // Starts one group asynchronously: waits for a free slot, then calls take() to get the group's
  // requests (so a caller forming groups from a queue takes what arrived while every slot was busy),
  // and calls done once it is served. A request outside the limits fails the group (done gets the
  // error; submit rethrows it too).
  template <class Take>
  void submit(Take&& take, Done done) {
    pipeline_.submit([&](Slot& slot, const BatchInfo&) {
      Group& group = *slot;
      group.done = std::move(done);
      group.requests = take();
      require_argument(!group.requests.empty() && group.requests.size() <= limits_.max_group_requests, "CudaEngine::submit",
                       [&] { return "a group holds 1.." + std::to_string(limits_.max_group_requests) + " requests, got " +
                                        std::to_string(group.requests.size()); });
      for (std::size_t i = 0; i < group.requests.size(); ++i) {
        detail::validate_request(group.requests[i], i, limits_, model_.config().vocab_size, "CudaEngine::submit");
      }
    });
  }

  // Waits until every submitted group is done.
  void drain() { pipeline_.drain(); }

 private:
  // Everything one group in flight touches.
  struct Group {
    explicit Group(const CudaEngine& engine)
        : cache(detail::cache_config<Mode>(engine.model_.kv_shape(), engine.levels_, engine.limits_)),
          batch(engine.limits_.max_group_requests),
          searcher(exec::cuda{}, engine.device_trie_, engine.beam_config_),
          forward(engine.model_, max_rows(engine.limits_), engine.limits_.max_group_requests, max_beam_rows(engine.limits_)),
          decode_limits{max_beam_rows(engine.limits_), engine.model_.config().num_attention_heads, engine.model_.config().head_dim},
          staging(2 * max_rows(engine.limits_) + engine.limits_.max_group_requests + max_beam_rows(engine.limits_)),
          inputs(staging.size()),
          step_tokens(max_beam_rows(engine.limits_)),
          step_positions(max_beam_rows(engine.limits_)),
          codes(max_beam_rows(engine.limits_) * engine.levels_),
          item_counts(max_beam_rows(engine.limits_)),
          counts(engine.limits_.max_group_requests),
          scores(max_beam_rows(engine.limits_)),
          item_ids(max_beam_rows(engine.limits_)),
          host_codes(codes.size()),
          host_item_counts(item_counts.size()),
          host_counts(counts.size()),
          host_scores(scores.size()),
          host_item_ids(item_ids.size()) {
      if constexpr (!Mode::copy_on_fork) attention_workspace.reserve(attention::decode_workspace_bytes(decode_limits));
    }

    static std::size_t max_rows(const EngineLimits& l) { return l.max_group_requests * std::max(l.max_prompt_tokens, l.max_beams); }
    static std::size_t max_beam_rows(const EngineLimits& l) { return l.max_group_requests * l.max_beams; }

    // Staging layout: tokens [max_rows] | positions [max_rows] | last_rows [max_requests] |
    // row_prompt_tokens [max_beam_rows]; uploaded as one copy.
    std::uint32_t* staged(std::size_t part, const EngineLimits& l) { return staging.data() + offset(part, l); }
    const std::uint32_t* uploaded(std::size_t part, const EngineLimits& l) const { return inputs.data() + offset(part, l); }
    static std::size_t offset(std::size_t part, const EngineLimits& l) {
      const std::size_t sizes[] = {max_rows(l), max_rows(l), l.max_group_requests};
      std::size_t at = 0;
      for (std::size_t p = 0; p < part; ++p) at += sizes[p];
      return at;
    }

    Cache cache;
    KvBatch<MemorySpace::device> batch;
    Searcher searcher;
    CudaForward<T> forward;
    attention::DecodeLimits decode_limits;
    DeviceWorkspace attention_workspace;
    PinnedBuffer<std::uint32_t> staging;
    DeviceBuffer<std::uint32_t> inputs, step_tokens, step_positions, codes, item_counts, counts;
    DeviceBuffer<float> scores;
    DeviceBuffer<ItemId> item_ids;
    PinnedBuffer<std::uint32_t> host_codes, host_item_counts, host_counts;
    PinnedBuffer<float> host_scores;
    PinnedBuffer<ItemId> host_item_ids;

    std::vector<Request> requests;
    std::vector<KvRequest> admitted;
    std::vector<std::uint32_t> widths;
    std::vector<Response> responses;
    Done done;
  };
  using Slot = std::unique_ptr<Group>;
  enum Part : std::size_t { tokens_part, positions_part, last_rows_part, row_prompt_part };

  static PipelineOptions pipeline_options(const CudaEngineOptions& options) {
    PipelineOptions p;
    p.slots = Mode::overlap_groups ? std::max<std::size_t>(1, options.groups_in_flight) : 1;
    p.lanes = {{"compute", Mode::overlap_groups ? options.compute_streams : 1}, {"copy", 0}};
    p.launcher_thread = Mode::overlap_groups;
    return p;
  }

  void build_stages() {
    const StageId admit = pipeline_.add_host_stage("admit", [this](Slot& g, const BatchInfo&) { stage_admit(*g); });
    const StageId prefill =
        pipeline_.add_device_stage("prefill", [this](Slot& g, const BatchInfo&, exec::cuda e) { stage_prefill(*g, e); }, {.lane = 0});
    pipeline_.connect(admit, prefill);
    StageId last = prefill;
    if (levels_ > 1) {
      DeviceStageOptions<Slot> decode_options{.lane = 0, .rounds = static_cast<int>(levels_ - 1)};
      if (decode_graphs_) decode_options.graph_bucket = [this](const Slot& g) { return decode_bucket(*g); };
      const StageId decode = pipeline_.add_device_stage(
          "decode", [this](Slot& g, const BatchInfo& info, exec::cuda e) { stage_decode(*g, static_cast<std::size_t>(info.round) + 1, e); },
          decode_options);
      pipeline_.connect(prefill, decode);
      last = decode;
    }
    const StageId finalize =
        pipeline_.add_device_stage("finalize", [this](Slot& g, const BatchInfo&, exec::cuda e) { stage_finalize(*g, e); }, {.lane = 0});
    pipeline_.connect(last, finalize);
    const StageId respond = pipeline_.add_host_stage("respond", [this](Slot& g, const BatchInfo&) { stage_respond(*g); });
    pipeline_.connect(finalize, respond);
    pipeline_.on_complete([this](Slot& g, const BatchInfo&, std::exception_ptr error) { complete(*g, error); });
  }

  void stage_admit(Group& g) {
    g.admitted.clear();
    g.widths.clear();
    std::uint32_t* tokens = g.staged(tokens_part, limits_);
    std::uint32_t* positions = g.staged(positions_part, limits_);
    std::uint32_t* last_rows = g.staged(last_rows_part, limits_);
    std::uint32_t* row_prompt = g.staged(row_prompt_part, limits_);
    std::size_t token = 0, row = 0;
    for (std::size_t i = 0; i < g.requests.size(); ++i) {
      const Request& request = g.requests[i];
      // The cache is sized for a full group of the largest requests: admission cannot fail here.
      g.admitted.push_back(g.cache.admit({request.prompt_tokens.size(), request.beams}));
      g.widths.push_back(static_cast<std::uint32_t>(request.beams));
      for (std::size_t t = 0; t < request.prompt_tokens.size(); ++t, ++token) {
        tokens[token] = request.prompt_tokens[t];
        positions[token] = static_cast<std::uint32_t>(t);
      }
      last_rows[i] = static_cast<std::uint32_t>(token - 1);
      for (std::size_t b = 0; b < request.beams; ++b) row_prompt[row++] = static_cast<std::uint32_t>(request.prompt_tokens.size());
    }
  }

  void stage_prefill(Group& g, exec::cuda e) {
    g.cache.describe(e, std::span<const KvRequest>(g.admitted), g.batch);
    g.cache.publish(e);
    copy_async(g.inputs.span(), std::span<const std::uint32_t>(g.staging.data(), g.staging.size()), e.stream);
    g.forward.prefill(e, g.cache, g.batch, g.uploaded(tokens_part, limits_), g.uploaded(positions_part, limits_),
                      g.uploaded(last_rows_part, limits_));
    if constexpr (Mode::copy_on_fork) kv::fork(e, g.cache, g.batch);  // every beam its own prompt copy
    g.searcher.begin(e, g.widths);
    g.searcher.step(e, logits(g));
  }

  // Level `level` >= 1: the tokens chosen at level - 1 go through the model at decode step level - 1.
  void stage_decode(Group& g, std::size_t level, exec::cuda e) {
    const std::size_t step = level - 1;
    // Level 0 ran in prefill. A capture that failed part-way may have run host steps; start over.
    if (level == 1) g.searcher.resume_at(1);
    if constexpr (Mode::copy_on_fork) {
      kv::reorder(e, g.cache, g.batch, g.searcher.parents(step));  // copies the parents' decode KV
    } else {
      kv::record_parents(e, g.cache, g.batch, g.searcher.parents(step));  // B indices, no KV moves
    }
    const auto rows = static_cast<std::uint32_t>(g.batch.view().total_beams);
    cuda_detail::step_inputs_kernel<<<(rows + cuda_detail::row_threads - 1) / cuda_detail::row_threads, cuda_detail::row_threads, 0, e.stream>>>(
        g.searcher.tokens(), g.searcher.trie_nodes().data(), g.uploaded(row_prompt_part, limits_), static_cast<std::uint32_t>(step), rows,
        g.step_tokens.data(), g.step_positions.data());
    XGR_CUDA_CHECK_LAUNCH();
    const attention::Options options = g.forward.options();
    g.forward.decode(e, rows, g.step_tokens.data(), g.step_positions.data(),
                     [&](std::size_t layer, std::span<const T> q, std::span<const T> k, std::span<const T> v, std::span<T> out) {
                       kv::write_step(e, g.cache, g.batch, layer, step, k, v);
                       if constexpr (Mode::copy_on_fork) {
                         attention::decode(e, g.cache, g.batch, layer, step, options, q, out);
                       } else {
                         attention::decode(e, g.cache, g.batch, layer, step, options, q, out, g.attention_workspace, g.decode_limits);
                       }
                     });
    g.searcher.step(e, logits(g));
  }

  // Whether decode_bucket's fields fit their bits for every group these limits allow.
  static bool graph_buckets_fit(const EngineLimits& l) {
    return l.max_group_requests < (1u << 16) && l.max_beams < (1u << 16) && l.max_group_requests * l.max_beams < (1u << 24);
  }

  // The decode rounds' CUDA-graph bucket: every value their kernel arguments carry that differs from
  // group to group. The rest lives in the group's device memory, written before the rounds run:
  // prompt lengths and page tables (KvPool metadata), each request's rows and width (the batch
  // description, the searcher's row layout), the chosen tokens. What remains by value is the request
  // count, the beam rows (GEMM sizes, grids), the widest request (the selection's k, grids) and the
  // staged attention's prompt split count (a function of rows and, for small groups only, of the
  // longest prompt). Prompt lengths do not enter, so with a few beam widths groups fall into few
  // buckets: sizes 1..n times the mixes of widths.
  [[nodiscard]] std::uint64_t decode_bucket(const Group& g) const {
    const KvBatchView& b = g.batch.view();
    const ModelConfig& c = model_.config();
    const int splits = attention::decode_splits(b, c.num_key_value_heads, c.num_attention_heads / c.num_key_value_heads,
                                                g.decode_limits.max_splits);
    return std::uint64_t{b.count} | std::uint64_t{b.max_beams} << 16 | std::uint64_t{b.total_beams} << 32 |
           static_cast<std::uint64_t>(splits) << 56;
  }

  void stage_finalize(Group& g, exec::cuda e) {
    // A decode stage replayed from a graph ran its searcher steps without calling step().
    if (decode_graphs_) g.searcher.resume_at(levels_);
    const std::size_t rows = g.batch.view().total_beams, requests = g.requests.size();
    g.searcher.finalize(e, {MatrixView<std::uint32_t>{g.codes.data(), rows, levels_, levels_}, g.scores.span().first(rows),
                            g.item_ids.span().first(rows), g.item_counts.span().first(rows), g.counts.span().first(requests)});
    copy_async(g.host_codes.span().first(rows * levels_), std::span<const std::uint32_t>(g.codes.data(), rows * levels_), e.stream);
    copy_async(g.host_scores.span().first(rows), std::span<const float>(g.scores.data(), rows), e.stream);
    copy_async(g.host_item_ids.span().first(rows), std::span<const ItemId>(g.item_ids.data(), rows), e.stream);
    copy_async(g.host_item_counts.span().first(rows), std::span<const std::uint32_t>(g.item_counts.data(), rows), e.stream);
    copy_async(g.host_counts.span().first(requests), std::span<const std::uint32_t>(g.counts.data(), requests), e.stream);
  }

  void stage_respond(Group& g) {
    const std::size_t rows = g.batch.view().total_beams, requests = g.requests.size();
    g.responses.clear();
    detail::collect_responses(requests, levels_, g.searcher.row_begin(), {g.host_counts.data(), requests}, {g.host_codes.data(), rows * levels_},
                              {g.host_scores.data(), rows}, {g.host_item_ids.data(), rows}, {g.host_item_counts.data(), rows}, g.responses);
  }

  // Runs for every group, failed or not: the group's KV goes back to its cache before the slot is reused.
  void complete(Group& g, std::exception_ptr error) noexcept {
    for (const KvRequest& request : g.admitted) {
      if (g.cache.is_active(request)) g.cache.release(request);
    }
    g.admitted.clear();
    if (error) g.responses.clear();
    if (g.done) g.done(g.responses, error);
    g.done = nullptr;
  }

  MatrixView<const float> logits(Group& g) const {
    return matrix_view<const float>(g.forward.logits(), g.batch.view().total_beams, model_.config().vocab_size);
  }

  const CudaModel<T>& model_;
  EngineLimits limits_;
  std::size_t levels_;
  DeviceItemTrie device_trie_;
  BeamConfig beam_config_;
  bool decode_graphs_;
  StreamPipeline<Slot, exec::cuda> pipeline_;
};

}  // namespace xgr::engine
