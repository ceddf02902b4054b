// xgr/kv/copy_on_fork.hpp — CopyOnForkKvCache: the LLM-serving baseline KvPool is measured against.
//
// Every beam owns a private paged KV sequence: the prompt followed by its decode tokens. After the
// prefill writes beam 0's prompt pages, fork() copies them to every other beam; after each decode
// step, reorder() physically copies each new beam's parent's decode tokens into the beam's pages.
// Decode attention then reads B full copies of the prompt KV per request. Memory per request is
// B * ceil((prompt + steps) / page) pages against KvPool's ceil(prompt / page) pages + B * steps
// token slots. It exists so that the engine's "baseline" mode and the benchmarks can show both side
// by side; it is a faithful, not a strawman, per-beam cache: pages are O(1) to allocate and the
// copies are single bandwidth-bound kernels.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "xgr/core/error.hpp"
#include "xgr/core/exec.hpp"
#include "xgr/core/memory.hpp"
#include "xgr/kv/pool.hpp"

namespace xgr {

struct CopyOnForkConfig {
  KvShape shape{};
  std::size_t page_tokens = 64;
  std::size_t pages = 0;
  std::size_t max_requests = 1;
  std::size_t max_prompt_tokens = 0;
  std::size_t max_beams = 1;
  std::size_t max_steps = 1;
};

// Memory accounting of the copy-on-fork cache, the counterpart of KvPoolStats.
struct CopyOnForkStats {
  std::size_t pages = 0;            // pages of the cache
  std::size_t used_pages = 0;       // held by admitted requests: beams x pages per beam each
  std::size_t max_requests = 0;
  std::size_t active_requests = 0;
  std::size_t page_bytes = 0;       // KV bytes of one page (all layers)
  std::size_t kv_bytes = 0;         // the whole allocation of KV
  std::size_t scratch_bytes = 0;    // reorder staging
  std::size_t metadata_bytes = 0;   // page tables, prompt lengths and beam widths
};

// Kernel view: token t of beam b of request `slot` (t < prompt + steps) lives in page
// page_table[(slot * max_beams + b) * pages_per_beam + t / page_tokens], page-major blocks.
template <class T>
struct CopyOnForkView {
  T* kv = nullptr;
  const std::uint32_t* page_table = nullptr;     // [max_requests][max_beams][pages_per_beam]
  const std::uint32_t* prompt_tokens = nullptr;  // [max_requests]
  const std::uint32_t* beam_width = nullptr;     // [max_requests]
  std::uint32_t layers = 0, kv_heads = 0, head_dim = 0;
  std::uint32_t page_tokens = 0, pages = 0, pages_per_beam = 0;
  std::uint32_t max_steps = 0, max_beams = 0;

  XGR_HOST_DEVICE const std::uint32_t* beam_pages(std::size_t slot, std::size_t beam) const noexcept {
    return page_table + (slot * max_beams + beam) * pages_per_beam;
  }
  XGR_HOST_DEVICE T* block(std::uint32_t page, std::size_t layer, std::size_t head, std::size_t kv_index) const noexcept {
    return kv + kv::PageMajor::block(page, layer, head, kv_index, pages, layers, kv_heads) * page_tokens * head_dim;
  }
  XGR_HOST_DEVICE T* token(std::size_t slot, std::size_t beam, std::size_t t, std::size_t layer, std::size_t head,
                           std::size_t kv_index) const noexcept {
    return block(beam_pages(slot, beam)[t / page_tokens], layer, head, kv_index) + (t % page_tokens) * head_dim;
  }
};

template <class T, MemorySpace Space = MemorySpace::device>
class CopyOnForkKvCache {
 public:
  using value_type = T;
  using View = CopyOnForkView<T>;
  static constexpr MemorySpace space = Space;

  // KV bytes one request of (prompt_tokens, beams, steps) costs here.
  [[nodiscard]] static std::size_t request_bytes(const KvShape& shape, std::size_t page_tokens, std::size_t prompt_tokens,
                                                 std::size_t beams, std::size_t steps) {
    const std::size_t token_bytes = 2 * shape.layers * shape.kv_heads * shape.head_dim * sizeof(T);
    return beams * kv::detail::ceil_div(prompt_tokens + steps, page_tokens) * page_tokens * token_bytes;
  }

  explicit CopyOnForkKvCache(const CopyOnForkConfig& config) : config_(validate(config)) {
    pages_per_beam_ = kv::detail::ceil_div(config_.max_prompt_tokens + config_.max_steps, config_.page_tokens);
    kv_ = Buffer<T, Space>(config_.pages * config_.page_tokens * token_elements());
    table_size_ = config_.max_requests * config_.max_beams * pages_per_beam_ + 2 * config_.max_requests;
    mirror_ = Buffer<std::uint32_t, kv::detail::mirror_space<Space>>(table_size_);
    if constexpr (Space == MemorySpace::device) table_ = Buffer<std::uint32_t, Space>(table_size_);
    std::fill_n(mirror_.data(), table_size_, 0u);
    // Staging for reorder: the parents' decode tokens of one batch are gathered here before being
    // scattered back, since a beam may be both a parent and a child in the same step.
    scratch_ = Buffer<T, Space>(config_.max_requests * config_.max_beams * config_.max_steps * token_elements());
    free_pages_.resize(config_.pages);
    for (std::size_t i = 0; i < config_.pages; ++i) free_pages_[i] = static_cast<std::uint32_t>(config_.pages - 1 - i);
    free_slots_.resize(config_.max_requests);
    for (std::size_t i = 0; i < config_.max_requests; ++i) free_slots_[i] = static_cast<std::uint32_t>(config_.max_requests - 1 - i);
    generation_.assign(config_.max_requests, 0);
    active_.assign(config_.max_requests, false);
  }

  [[nodiscard]] const CopyOnForkConfig& config() const noexcept { return config_; }

  [[nodiscard]] std::optional<KvRequest> try_admit(const KvAdmission& admission) {
    require_argument(admission.prompt_tokens > 0 && admission.prompt_tokens <= config_.max_prompt_tokens,
                     "CopyOnForkKvCache::admit",
                     [&] { return "prompt of " + std::to_string(admission.prompt_tokens) + " tokens; the cache takes 1.." +
                                      std::to_string(config_.max_prompt_tokens); });
    require_argument(admission.beams > 0 && admission.beams <= config_.max_beams, "CopyOnForkKvCache::admit",
                     [&] { return std::to_string(admission.beams) + " beams; the cache takes 1.." +
                                      std::to_string(config_.max_beams); });
    require_argument(!admission.share_prefix_with, "CopyOnForkKvCache::admit", "the per-beam baseline shares no prefixes");
    const std::size_t pages = admission.beams * beam_pages(admission.prompt_tokens);
    if (free_slots_.empty() || free_pages_.size() < pages) return std::nullopt;
    const std::uint32_t slot = free_slots_.back();
    free_slots_.pop_back();
    for (std::size_t b = 0; b < admission.beams; ++b) {
      std::uint32_t* row = mirror_.data() + (slot * config_.max_beams + b) * pages_per_beam_;
      for (std::size_t p = 0; p < beam_pages(admission.prompt_tokens); ++p) {
        row[p] = free_pages_.back();
        free_pages_.pop_back();
      }
    }
    prompt_row()[slot] = static_cast<std::uint32_t>(admission.prompt_tokens);
    beams_row()[slot] = static_cast<std::uint32_t>(admission.beams);
    active_[slot] = true;
    return KvRequest{slot, generation_[slot]};
  }

  KvRequest admit(const KvAdmission& admission) {
    std::optional<KvRequest> request = try_admit(admission);
    if (!request) {
      throw Error(ErrorKind::capacity, "CopyOnForkKvCache::admit",
                  "cache full: " + std::to_string(free_pages_.size()) + " free pages, the request needs " +
                      std::to_string(admission.beams * beam_pages(admission.prompt_tokens)));
    }
    return *request;
  }

  void release(KvRequest request) {
    require_active(request, "CopyOnForkKvCache::release");
    const std::size_t slot = request.slot;
    for (std::size_t b = 0; b < beams_row()[slot]; ++b) {
      const std::uint32_t* row = mirror_.data() + (slot * config_.max_beams + b) * pages_per_beam_;
      for (std::size_t p = 0; p < beam_pages(prompt_row()[slot]); ++p) free_pages_.push_back(row[p]);
    }
    active_[slot] = false;
    ++generation_[slot];
    free_slots_.push_back(request.slot);
  }

  [[nodiscard]] bool is_active(KvRequest request) const noexcept {
    return request.slot < config_.max_requests && active_[request.slot] && generation_[request.slot] == request.generation;
  }

  [[nodiscard]] std::size_t capacity(std::size_t prompt_tokens, std::size_t beams) const {
    require_argument(prompt_tokens > 0 && prompt_tokens <= config_.max_prompt_tokens && beams > 0 && beams <= config_.max_beams,
                     "CopyOnForkKvCache::capacity", "prompt or beams outside the configured maximum");
    return std::min(free_slots_.size(), free_pages_.size() / (beams * beam_pages(prompt_tokens)));
  }
  [[nodiscard]] std::size_t free_pages() const noexcept { return free_pages_.size(); }
  [[nodiscard]] std::size_t kv_bytes() const noexcept { return kv_.bytes(); }

  // O(1): counted from the free lists.
  [[nodiscard]] CopyOnForkStats stats() const noexcept {
    CopyOnForkStats s;
    s.pages = config_.pages;
    s.used_pages = config_.pages - free_pages_.size();
    s.max_requests = config_.max_requests;
    s.active_requests = config_.max_requests - free_slots_.size();
    s.page_bytes = config_.page_tokens * token_elements() * sizeof(T);
    s.kv_bytes = kv_.bytes();
    s.scratch_bytes = scratch_.bytes();
    s.metadata_bytes = table_size_ * sizeof(std::uint32_t);
    return s;
  }

  template <class Exec>
  void publish(Exec exec) {
    kv::detail::publish_mirror<Space>(exec, table_.data(), mirror_.data(), table_size_);
  }

  // The batch description has the same meaning as for KvPool (beam rows in BeamSearcher layout).
  template <class Exec>
  void describe(Exec exec, std::span<const KvRequest> requests, KvBatch<Space>& batch) const {
    batch.fill(exec, requests.size(), [&](std::size_t i) {
      require_active(requests[i], "CopyOnForkKvCache::describe");
      const std::uint32_t slot = requests[i].slot;
      return kv::BatchEntry{slot, prompt_row()[slot], beams_row()[slot]};
    });
  }

  [[nodiscard]] View view() noexcept {
    View v;
    v.kv = kv_.data();
    const std::uint32_t* table = Space == MemorySpace::device ? table_.data() : mirror_.data();
    v.page_table = table;
    v.prompt_tokens = table + config_.max_requests * config_.max_beams * pages_per_beam_;
    v.beam_width = v.prompt_tokens + config_.max_requests;
    v.layers = static_cast<std::uint32_t>(config_.shape.layers);
    v.kv_heads = static_cast<std::uint32_t>(config_.shape.kv_heads);
    v.head_dim = static_cast<std::uint32_t>(config_.shape.head_dim);
    v.page_tokens = static_cast<std::uint32_t>(config_.page_tokens);
    v.pages = static_cast<std::uint32_t>(config_.pages);
    v.pages_per_beam = static_cast<std::uint32_t>(pages_per_beam_);
    v.max_steps = static_cast<std::uint32_t>(config_.max_steps);
    v.max_beams = static_cast<std::uint32_t>(config_.max_beams);
    return v;
  }

  [[nodiscard]] std::span<T> kv_storage() noexcept { return kv_.span(); }
  [[nodiscard]] T* scratch() noexcept { return scratch_.data(); }

 private:
  [[nodiscard]] std::size_t beam_pages(std::size_t prompt_tokens) const noexcept {
    return kv::detail::ceil_div(prompt_tokens + config_.max_steps, config_.page_tokens);
  }
  [[nodiscard]] std::size_t token_elements() const noexcept {
    return 2 * config_.shape.layers * config_.shape.kv_heads * config_.shape.head_dim;
  }
  static const CopyOnForkConfig& validate(const CopyOnForkConfig& c) {
    const char* op = "CopyOnForkKvCache";
    require_argument(c.shape.layers > 0 && c.shape.kv_heads > 0 && (c.shape.head_dim == 64 || c.shape.head_dim == 128), op,
                     "layers and kv_heads must be positive and head_dim 64 or 128");
    require_argument(c.page_tokens > 0 && c.page_tokens % 64 == 0, op, "page_tokens must be a positive multiple of 64");
    require_argument(c.max_requests > 0 && c.max_beams > 0 && c.max_steps > 0 && c.max_prompt_tokens > 0, op,
                     "max_requests, max_beams, max_steps and max_prompt_tokens must be positive");
    return c;
  }
  void require_active(KvRequest request, const char* op) const {
    require_argument(is_active(request), op,
                     [&] { return "request (slot " + std::to_string(request.slot) +
                                      ") is not active: released twice or never admitted"; });
  }
  std::uint32_t* prompt_row() noexcept { return mirror_.data() + config_.max_requests * config_.max_beams * pages_per_beam_; }
  const std::uint32_t* prompt_row() const noexcept {
    return mirror_.data() + config_.max_requests * config_.max_beams * pages_per_beam_;
  }
  std::uint32_t* beams_row() noexcept { return prompt_row() + config_.max_requests; }
  const std::uint32_t* beams_row() const noexcept { return prompt_row() + config_.max_requests; }

  CopyOnForkConfig config_;
  std::size_t pages_per_beam_ = 0;
  std::size_t table_size_ = 0;
  Buffer<T, Space> kv_;
  Buffer<std::uint32_t, kv::detail::mirror_space<Space>> mirror_;
  Buffer<std::uint32_t, Space> table_;
  Buffer<T, Space> scratch_;
  std::vector<std::uint32_t> free_pages_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<std::uint32_t> generation_;
  std::vector<bool> active_;
};

}  // namespace xgr
