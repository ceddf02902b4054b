// xgr/kv/pool.hpp — KvPool: shared-prefix + per-beam separated KV cache.
//
// A GR request reads one long prompt and then decodes L tokens with B beams. An LLM-style paged cache
// gives every beam its own copy of the prompt KV (copy-on-fork), so memory and decode traffic grow with
// B * prompt. KvPool stores the prompt once and keeps what differs per beam apart:
//
//   prefix partition   fixed-size pages of prompt KV for all layers. A request owns a page-table row;
//                      pages carry reference counts, so a prompt prefix shared by several requests
//                      (a common system prompt, a user's earlier session) is stored once.
//   beam partition     per admitted request one fixed region of max_steps x max_beams token slots for
//                      the decode tokens, reserved at admission: decode never allocates or fragments.
//   ancestry table     per request [max_steps][max_beams] parent indices. A beam reorder after a step
//                      writes B indices (record_parents), never KV: beam b's decode tokens are found by
//                      walking its parents back to step 0 (at most L <= 8 hops).
//
// Everything is carved from one allocation made in the constructor. Admission and release are O(pages)
// host operations on free stacks; a full pool is a recoverable status (try_admit returns nullopt).
//
// Spaces: KvPool<T, Layout, MemorySpace::host> keeps everything in host memory and is what the host
// attention reference reads. KvPool<T, Layout, MemorySpace::device> keeps KV and metadata on the
// device and mirrors the metadata in pinned memory; publish(exec) uploads the mirror after
// admissions. It is usable from CUDA translation units that include xgr/kv/cuda.cuh.
//
// Lifetime rule (as for any memory a kernel reads): release a request only after the device work that
// reads or writes its KV has completed, and prefill a prefix donor before a sharer's attention reads it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "xgr/core/beam_parents.hpp"
#include "xgr/core/config.hpp"
#include "xgr/core/error.hpp"
#include "xgr/core/exec.hpp"
#include "xgr/core/memory.hpp"

namespace xgr {

// A packed [rows][heads][head_dim] argument of the KV and attention functions. Its element type comes
// from the pool, not from the argument (a non-deduced context), so a std::vector<T>, a Buffer's span()
// or a span of T all convert to RowSpan<const T>.
template <class T>
using RowSpan = std::span<std::type_identity_t<T>>;

// The model dimensions a KV cache stores: K and V of `kv_heads` heads of `head_dim` per layer.
struct KvShape {
  std::size_t layers = 1;
  std::size_t kv_heads = 1;
  std::size_t head_dim = 128;
};

// The most decode steps a pool holds: GR decodes L <= 8 codes; the bound keeps the ancestry walk in
// registers.
inline constexpr std::size_t max_kv_steps = 64;

namespace kv {

// Layout policies: where the [page_tokens x head_dim] block of one (page, layer, kv head, K|V) lives in
// the prefix partition, in units of blocks. Every layout keeps a block contiguous, since one block is
// the tile an attention kernel loads (a page of 64 tokens x 128 dims of bf16 = 16 KiB).
struct PageMajor {
  // page -> layer -> head -> {K, V}: a page holds every layer, so one page is one unit of eviction
  // or offload.
  XGR_HOST_DEVICE static constexpr std::size_t block(std::size_t page, std::size_t layer, std::size_t head, std::size_t kv,
                                                     std::size_t /*pages*/, std::size_t layers, std::size_t kv_heads) noexcept {
    return ((page * layers + layer) * kv_heads + head) * 2 + kv;
  }
  static constexpr const char* name = "page-major";
};

struct LayerMajor {
  // layer -> page -> head -> {K, V}: one layer's prompt KV is one contiguous range, what per-layer
  // prefetch or pipelined transfer wants.
  XGR_HOST_DEVICE static constexpr std::size_t block(std::size_t page, std::size_t layer, std::size_t head, std::size_t kv,
                                                     std::size_t pages, std::size_t /*layers*/, std::size_t kv_heads) noexcept {
    return ((layer * pages + page) * kv_heads + head) * 2 + kv;
  }
  static constexpr const char* name = "layer-major";
};

inline constexpr std::size_t key = 0;
inline constexpr std::size_t value = 1;

}  // namespace kv

// Sizes a pool is built for; the constructor allocates exactly bytes_for(config) of KV.
struct KvPoolConfig {
  KvShape shape{};
  std::size_t page_tokens = 64;         // tokens per page: a positive multiple of 64 (the attention key tile)
  std::size_t prefix_pages = 0;         // pages in the prefix partition
  std::size_t max_requests = 1;         // requests in flight = beam regions = page-table rows
  std::size_t max_prompt_tokens = 0;    // longest prompt a request may have (page-table row width)
  std::size_t max_beams = 1;            // beams per request
  std::size_t max_steps = 1;            // decode steps per request (L)
};

// Memory accounting of a pool.
struct KvPoolStats {
  std::size_t prefix_pages = 0;       // pages in the prefix partition
  std::size_t used_pages = 0;         // pages referenced by at least one request
  std::size_t shared_pages = 0;       // of those, pages referenced by more than one request
  std::size_t max_requests = 0;
  std::size_t active_requests = 0;
  std::size_t page_bytes = 0;         // KV bytes of one page (all layers)
  std::size_t beam_region_bytes = 0;  // KV bytes of one request's beam region
  std::size_t kv_bytes = 0;           // the whole allocation of KV
  std::size_t metadata_bytes = 0;     // page tables, lengths and ancestry
};

// A handle to an admitted request. `slot` indexes the page-table row and the beam region; the
// generation makes a stale or twice-released handle an error instead of silently freeing another
// request.
struct KvRequest {
  std::uint32_t slot = 0;
  std::uint32_t generation = 0;
  friend constexpr bool operator==(const KvRequest&, const KvRequest&) = default;
};

// What a request needs. With `share_prefix_with`, the first `shared_tokens` prompt tokens (rounded
// down to whole pages) are the donor's pages, reference-counted, not copied; the donor's prompt must
// hold those tokens. The rest of the prompt gets fresh pages.
struct KvAdmission {
  std::size_t prompt_tokens = 0;
  std::size_t beams = 1;
  std::optional<KvRequest> share_prefix_with{};
  std::size_t shared_tokens = 0;
};

// The view kernels (and the host reference) read: plain pointers and sizes, trivially copyable.
template <class T, class Layout>
struct KvPoolView {
  T* prefix = nullptr;                         // prefix partition
  T* beams = nullptr;                          // beam partition
  const std::uint32_t* page_table = nullptr;   // [max_requests][pages_per_request]
  const std::uint32_t* prompt_tokens = nullptr;// [max_requests]
  const std::uint32_t* shared_tokens = nullptr;// [max_requests]: tokens taken from a donor's pages
  const std::uint32_t* beam_width = nullptr;   // [max_requests]
  std::uint32_t* ancestry = nullptr;           // [max_requests][max_steps][max_beams]
  std::uint32_t layers = 0, kv_heads = 0, head_dim = 0;
  std::uint32_t page_tokens = 0, prefix_pages = 0, pages_per_request = 0;
  std::uint32_t max_steps = 0, max_beams = 0;

  // The first element of the block of `page` for (layer, head, K|V): page_tokens rows of head_dim.
  XGR_HOST_DEVICE T* prefix_block(std::size_t page, std::size_t layer, std::size_t head, std::size_t kv) const noexcept {
    const std::size_t block = Layout::block(page, layer, head, kv, prefix_pages, layers, kv_heads);
    return prefix + block * page_tokens * head_dim;
  }
  // The K or V vector of prompt token `token` of request `slot`.
  XGR_HOST_DEVICE T* prefix_token(std::size_t slot, std::size_t token, std::size_t layer, std::size_t head,
                                  std::size_t kv) const noexcept {
    const std::uint32_t page = page_table[slot * pages_per_request + token / page_tokens];
    return prefix_block(page, layer, head, kv) + (token % page_tokens) * head_dim;
  }
  // The K or V vector of the decode token written at `step` for beam row `beam` of request `slot`.
  // Beam region layout: [slot][layer][head][K|V][step][beam][dim], so a (layer, head) step is one
  // contiguous [max_beams x head_dim] tile.
  XGR_HOST_DEVICE T* beam_token(std::size_t slot, std::size_t step, std::size_t beam, std::size_t layer, std::size_t head,
                                std::size_t kv) const noexcept {
    return beam_tokens(slot, layer, head, kv) + (step * max_beams + beam) * head_dim;
  }
  // The first of the [max_steps][max_beams][head_dim] decode-token elements of (slot, layer, head,
  // K|V): beam_token(slot, step, beam, ...) is this plus (step * max_beams + beam) * head_dim.
  XGR_HOST_DEVICE T* beam_tokens(std::size_t slot, std::size_t layer, std::size_t head, std::size_t kv) const noexcept {
    return beams + (((slot * layers + layer) * kv_heads + head) * 2 + kv) * max_steps * max_beams * head_dim;
  }
  XGR_HOST_DEVICE std::uint32_t* parents(std::size_t slot, std::size_t step) const noexcept {
    return ancestry + (slot * max_steps + step) * max_beams;
  }
};

// The requests one attention call works on, in order, with the offsets of their rows in the packed
// query/output tensors: request i's prompt tokens are rows [token_begin[i], token_begin[i+1]) of a
// prefill, its beams rows [beam_begin[i], beam_begin[i+1]) of a decode step (the BeamSearcher row
// layout). Built by KvPool::describe; device-resident for the CUDA pool.
struct KvBatchView {
  const std::uint32_t* slots = nullptr;
  const std::uint32_t* token_begin = nullptr;
  const std::uint32_t* beam_begin = nullptr;
  std::uint32_t count = 0;
  std::uint32_t max_prompt_tokens = 0;  // longest prompt in the batch
  std::uint32_t max_beams = 0;          // widest request in the batch
  std::uint32_t total_tokens = 0;
  std::uint32_t total_beams = 0;
};

namespace kv::detail {

inline std::size_t ceil_div(std::size_t a, std::size_t b) noexcept { return (a + b - 1) / b; }

// Host <-> device metadata copies; defined in xgr/kv/cuda.cuh (a pool in device memory is usable only
// where that header is included).
template <class T>
void upload(T* device, const T* host, std::size_t count, CUstream_st* stream);
template <class T>
void fill_parents_device(T* ancestry, std::size_t count, CUstream_st* stream);

// Makes `count` metadata words from the host mirror visible to kernels: an upload on exec's stream
// for a device structure; nothing for a host one, whose kernels read the mirror itself.
template <MemorySpace Space, class Exec>
void publish_mirror(Exec exec, std::uint32_t* device, const std::uint32_t* mirror, std::size_t count) {
  if constexpr (Space == MemorySpace::device) {
    static_assert(exec::is_cuda_v<Exec>, "device KV metadata is published on a CUDA stream");
    upload(device, mirror, count, exec.stream);
  } else {
    static_assert(exec::is_host_v<Exec>, "host KV metadata is published on the host");
  }
}

template <MemorySpace Space>
inline constexpr MemorySpace mirror_space = Space == MemorySpace::device ? MemorySpace::pinned : MemorySpace::host;

}  // namespace kv::detail

namespace kv {
// One request of a batch as KvBatch::fill takes it.
struct BatchEntry {
  std::uint32_t slot = 0;
  std::uint32_t prompt_tokens = 0;
  std::uint32_t beams = 0;
};
}  // namespace kv

// A fixed-capacity batch description (see KvBatchView); allocate once with the most requests a call
// will carry, refill with KvPool::describe.
template <MemorySpace Space>
class KvBatch {
 public:
  KvBatch() = default;
  explicit KvBatch(std::size_t max_requests)
      : max_requests_(max_requests), mirror_(3 * max_requests + 2), data_(3 * max_requests + 2) {}

  [[nodiscard]] std::size_t max_requests() const noexcept { return max_requests_; }
  [[nodiscard]] const KvBatchView& view() const noexcept { return view_; }
  [[nodiscard]] std::size_t count() const noexcept { return view_.count; }
  // Host-visible copies of the offsets (valid after describe).
  [[nodiscard]] std::span<const std::uint32_t> slots() const noexcept { return {mirror_.data(), view_.count}; }
  [[nodiscard]] std::span<const std::uint32_t> token_begin() const noexcept {
    return {mirror_.data() + max_requests_, view_.count + 1};
  }
  [[nodiscard]] std::span<const std::uint32_t> beam_begin() const noexcept {
    return {mirror_.data() + 2 * max_requests_ + 1, view_.count + 1};
  }

  // Fills the batch from `count` entries entry_of(i) -> kv::BatchEntry, and uploads it on exec's stream
  // when the batch lives on the device. KvPool::describe and CopyOnForkKvCache::describe call it.
  template <class Exec, class EntryOf>
  void fill(Exec exec, std::size_t count, EntryOf&& entry_of) {
    require_argument(count <= max_requests_, "KvBatch::fill",
                     [&] { return std::to_string(count) + " requests, the batch holds at most " +
                                      std::to_string(max_requests_); });
    std::uint32_t* slots = mirror_.data();
    std::uint32_t* token_begin = slots + max_requests_;
    std::uint32_t* beam_begin = token_begin + max_requests_ + 1;
    KvBatchView view{};
    token_begin[0] = 0;
    beam_begin[0] = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const kv::BatchEntry entry = entry_of(i);
      slots[i] = entry.slot;
      token_begin[i + 1] = token_begin[i] + entry.prompt_tokens;
      beam_begin[i + 1] = beam_begin[i] + entry.beams;
      view.max_prompt_tokens = std::max(view.max_prompt_tokens, entry.prompt_tokens);
      view.max_beams = std::max(view.max_beams, entry.beams);
    }
    view.count = static_cast<std::uint32_t>(count);
    view.total_tokens = token_begin[count];
    view.total_beams = beam_begin[count];
    kv::detail::publish_mirror<Space>(exec, data_.data(), mirror_.data(), mirror_.size());
    const std::uint32_t* base = Space == MemorySpace::device ? data_.data() : mirror_.data();
    view.slots = base;
    view.token_begin = base + max_requests_;
    view.beam_begin = base + 2 * max_requests_ + 1;
    view_ = view;
  }

 private:
  std::size_t max_requests_ = 0;
  Buffer<std::uint32_t, kv::detail::mirror_space<Space>> mirror_;
  Buffer<std::uint32_t, Space> data_;
  KvBatchView view_{};
};

template <class T, class Layout = kv::PageMajor, MemorySpace Space = MemorySpace::device>
class KvPool {
  static_assert(Space != MemorySpace::pinned, "KvPool lives in host or device memory");

 public:
  using value_type = T;
  using layout = Layout;
  using View = KvPoolView<T, Layout>;
  static constexpr MemorySpace space = Space;

  // Bytes of KV the pool allocates for `config` (metadata excluded).
  [[nodiscard]] static std::size_t kv_bytes_for(const KvPoolConfig& config) {
    return (prefix_elements(config) + beam_elements(config)) * sizeof(T);
  }
  // The KV bytes one request of (prompt_tokens, beams, steps) costs: its pages plus its beam region.
  [[nodiscard]] static std::size_t request_bytes(const KvShape& shape, std::size_t page_tokens, std::size_t prompt_tokens,
                                                 std::size_t beams, std::size_t steps) {
    const std::size_t token_bytes = 2 * shape.layers * shape.kv_heads * shape.head_dim * sizeof(T);
    return kv::detail::ceil_div(prompt_tokens, page_tokens) * page_tokens * token_bytes + steps * beams * token_bytes;
  }
  // The config that fills `budget_bytes` of KV with requests of one shape (prompt, beams, steps):
  // what a server sizes its pool from.
  [[nodiscard]] static KvPoolConfig plan(const KvShape& shape, std::size_t budget_bytes, std::size_t page_tokens,
                                         std::size_t prompt_tokens, std::size_t beams, std::size_t steps) {
    KvPoolConfig config{shape, page_tokens, 0, 1, prompt_tokens, beams, steps};
    validate(config);
    const std::size_t per_request = request_bytes(shape, page_tokens, prompt_tokens, beams, steps);
    if (budget_bytes < per_request) {
      throw Error(ErrorKind::capacity, "KvPool::plan",
                  std::to_string(budget_bytes) + " bytes hold no request of " + std::to_string(per_request) + " bytes");
    }
    config.max_requests = budget_bytes / per_request;
    config.prefix_pages = config.max_requests * kv::detail::ceil_div(prompt_tokens, page_tokens);
    return config;
  }

  explicit KvPool(const KvPoolConfig& config) : config_(validate(config)) {
    pages_per_request_ = kv::detail::ceil_div(config_.max_prompt_tokens, config_.page_tokens);
    kv_ = Buffer<T, Space>(prefix_elements(config_) + beam_elements(config_));
    metadata_size_ = config_.max_requests * (pages_per_request_ + 3);
    mirror_ = Buffer<std::uint32_t, kv::detail::mirror_space<Space>>(metadata_size_);
    if constexpr (Space == MemorySpace::device) metadata_ = Buffer<std::uint32_t, Space>(metadata_size_);
    ancestry_ = Buffer<std::uint32_t, Space>(config_.max_requests * config_.max_steps * config_.max_beams);
    std::fill_n(mirror_.data(), metadata_size_, 0u);
    if constexpr (Space == MemorySpace::host) std::fill_n(ancestry_.data(), ancestry_.size(), no_parent);
    if constexpr (Space == MemorySpace::device) kv::detail::fill_parents_device(ancestry_.data(), ancestry_.size(), nullptr);

    page_refs_.assign(config_.prefix_pages, 0);
    free_pages_.resize(config_.prefix_pages);
    for (std::size_t i = 0; i < config_.prefix_pages; ++i) free_pages_[i] = static_cast<std::uint32_t>(config_.prefix_pages - 1 - i);
    free_slots_.resize(config_.max_requests);
    for (std::size_t i = 0; i < config_.max_requests; ++i) free_slots_[i] = static_cast<std::uint32_t>(config_.max_requests - 1 - i);
    generation_.assign(config_.max_requests, 0);
    active_.assign(config_.max_requests, false);
    owned_pages_.assign(config_.max_requests, 0);
  }

  KvPool(const KvPool&) = delete;
  KvPool& operator=(const KvPool&) = delete;
  KvPool(KvPool&&) noexcept = default;
  KvPool& operator=(KvPool&&) noexcept = default;

  [[nodiscard]] const KvPoolConfig& config() const noexcept { return config_; }
  [[nodiscard]] std::size_t pages_per_request() const noexcept { return pages_per_request_; }

  // Admits a request, or returns nullopt when the pool has no free region or too few free pages (a
  // recoverable status: retry after a release). Bad admissions (prompt or beams over the configured
  // maximum, an inactive donor, more shared tokens than the donor holds) are Error(invalid_argument).
  [[nodiscard]] std::optional<KvRequest> try_admit(const KvAdmission& admission) {
    validate(admission);
    const std::size_t pages = kv::detail::ceil_div(admission.prompt_tokens, config_.page_tokens);
    const std::size_t shared = admission.share_prefix_with ? admission.shared_tokens / config_.page_tokens : 0;
    if (free_slots_.empty() || free_pages_.size() < pages - shared) return std::nullopt;

    const std::uint32_t slot = free_slots_.back();
    free_slots_.pop_back();
    std::uint32_t* row = page_row(slot);
    for (std::size_t p = 0; p < shared; ++p) {
      row[p] = page_row(admission.share_prefix_with->slot)[p];
      if (++page_refs_[row[p]] == 2) ++shared_pages_;
    }
    for (std::size_t p = shared; p < pages; ++p) {
      row[p] = free_pages_.back();
      free_pages_.pop_back();
      page_refs_[row[p]] = 1;
    }
    used_pages_ += pages - shared;
    owned_pages_[slot] = static_cast<std::uint32_t>(pages);
    prompt_row()[slot] = static_cast<std::uint32_t>(admission.prompt_tokens);
    shared_row()[slot] = static_cast<std::uint32_t>(shared * config_.page_tokens);
    beams_row()[slot] = static_cast<std::uint32_t>(admission.beams);
    active_[slot] = true;
    return KvRequest{slot, generation_[slot]};
  }

  // As try_admit, but a full pool is Error(capacity).
  KvRequest admit(const KvAdmission& admission) {
    std::optional<KvRequest> request = try_admit(admission);
    if (!request) {
      throw Error(ErrorKind::capacity, "KvPool::admit",
                  "pool full: " + std::to_string(free_slots_.size()) + " free regions, " + std::to_string(free_pages_.size()) +
                      " free pages, prompt of " + std::to_string(admission.prompt_tokens) + " tokens needs " +
                      std::to_string(kv::detail::ceil_div(admission.prompt_tokens, config_.page_tokens)));
    }
    return *request;
  }

  // Frees the request's region and drops its page references. A handle that is not active (released
  // twice, never admitted, or from another generation) is Error(invalid_argument).
  void release(KvRequest request) {
    require_active(request, "KvPool::release");
    const std::uint32_t* row = page_row(request.slot);
    for (std::size_t p = 0; p < owned_pages_[request.slot]; ++p) {
      const std::uint32_t refs = --page_refs_[row[p]];
      if (refs == 1) --shared_pages_;
      if (refs == 0) {
        free_pages_.push_back(row[p]);
        --used_pages_;
      }
    }
    owned_pages_[request.slot] = 0;
    active_[request.slot] = false;
    ++generation_[request.slot];
    free_slots_.push_back(request.slot);
  }

  [[nodiscard]] bool is_active(KvRequest request) const noexcept {
    return request.slot < config_.max_requests && active_[request.slot] && generation_[request.slot] == request.generation;
  }

  // How many more requests of this shape (without prefix sharing) fit now.
  [[nodiscard]] std::size_t capacity(std::size_t prompt_tokens, std::size_t beams) const {
    validate(KvAdmission{prompt_tokens, beams});
    const std::size_t pages = kv::detail::ceil_div(prompt_tokens, config_.page_tokens);
    return std::min(free_slots_.size(), free_pages_.size() / pages);
  }

  [[nodiscard]] KvPoolStats stats() const noexcept {
    KvPoolStats s;
    s.prefix_pages = config_.prefix_pages;
    s.used_pages = used_pages_;
    s.shared_pages = shared_pages_;
    s.max_requests = config_.max_requests;
    s.active_requests = config_.max_requests - free_slots_.size();
    s.page_bytes = config_.page_tokens * token_bytes();
    s.beam_region_bytes = config_.max_steps * config_.max_beams * token_bytes();
    s.kv_bytes = kv_.bytes();
    s.metadata_bytes = (metadata_size_ * (Space == MemorySpace::device ? 2 : 1)) * sizeof(std::uint32_t) + ancestry_.bytes();
    return s;
  }

  // Host-side answers about an active request (from the mirror).
  [[nodiscard]] std::size_t prompt_tokens(KvRequest request) const {
    require_active(request, "KvPool::prompt_tokens");
    return prompt_row()[request.slot];
  }
  [[nodiscard]] std::size_t shared_tokens(KvRequest request) const {
    require_active(request, "KvPool::shared_tokens");
    return shared_row()[request.slot];
  }
  [[nodiscard]] std::size_t beams(KvRequest request) const {
    require_active(request, "KvPool::beams");
    return beams_row()[request.slot];
  }
  [[nodiscard]] std::span<const std::uint32_t> pages(KvRequest request) const {
    require_active(request, "KvPool::pages");
    return {page_row(request.slot), kv::detail::ceil_div(prompt_row()[request.slot], config_.page_tokens)};
  }

  // Makes admissions visible to kernels: uploads the metadata mirror on exec's stream (device pool)
  // or does nothing (host pool). Call it after admitting and before the first kernel that reads the
  // new requests.
  template <class Exec>
  void publish(Exec exec) {
    kv::detail::publish_mirror<Space>(exec, metadata_.data(), mirror_.data(), metadata_size_);
  }

  // Fills `batch` with `requests` in order (and uploads it on exec's stream for a device pool).
  template <class Exec>
  void describe(Exec exec, std::span<const KvRequest> requests, KvBatch<Space>& batch) const {
    batch.fill(exec, requests.size(), [&](std::size_t i) {
      require_active(requests[i], "KvPool::describe");
      const std::uint32_t slot = requests[i].slot;
      return kv::BatchEntry{slot, prompt_row()[slot], beams_row()[slot]};
    });
  }

  [[nodiscard]] View view() noexcept {
    View v;
    v.prefix = kv_.data();
    v.beams = kv_.data() + prefix_elements(config_);
    const std::uint32_t* metadata = Space == MemorySpace::device ? metadata_.data() : mirror_.data();
    v.page_table = metadata;
    v.prompt_tokens = metadata + config_.max_requests * pages_per_request_;
    v.shared_tokens = v.prompt_tokens + config_.max_requests;
    v.beam_width = v.shared_tokens + config_.max_requests;
    v.ancestry = ancestry_.data();
    v.layers = static_cast<std::uint32_t>(config_.shape.layers);
    v.kv_heads = static_cast<std::uint32_t>(config_.shape.kv_heads);
    v.head_dim = static_cast<std::uint32_t>(config_.shape.head_dim);
    v.page_tokens = static_cast<std::uint32_t>(config_.page_tokens);
    v.prefix_pages = static_cast<std::uint32_t>(config_.prefix_pages);
    v.pages_per_request = static_cast<std::uint32_t>(pages_per_request_);
    v.max_steps = static_cast<std::uint32_t>(config_.max_steps);
    v.max_beams = static_cast<std::uint32_t>(config_.max_beams);
    return v;
  }

  // The raw KV allocation (tests fill it with random values; kernels go through view()).
  [[nodiscard]] std::span<T> kv_storage() noexcept { return kv_.span(); }

 private:
  static std::size_t prefix_elements(const KvPoolConfig& c) {
    return c.prefix_pages * c.page_tokens * 2 * c.shape.layers * c.shape.kv_heads * c.shape.head_dim;
  }
  static std::size_t beam_elements(const KvPoolConfig& c) {
    return c.max_requests * c.max_steps * c.max_beams * 2 * c.shape.layers * c.shape.kv_heads * c.shape.head_dim;
  }
  [[nodiscard]] std::size_t token_bytes() const noexcept {
    return 2 * config_.shape.layers * config_.shape.kv_heads * config_.shape.head_dim * sizeof(T);
  }

  static const KvPoolConfig& validate(const KvPoolConfig& c) {
    const char* op = "KvPool";
    require_argument(c.shape.layers > 0 && c.shape.kv_heads > 0, op, "layers and kv_heads must be positive");
    require_argument(c.shape.head_dim == 64 || c.shape.head_dim == 128, op,
                     [&] { return "head_dim is " + std::to_string(c.shape.head_dim) +
                                      "; the attention kernels support 64 and 128"; });
    require_argument(c.page_tokens > 0 && c.page_tokens % 64 == 0, op,
                     [&] { return "page_tokens is " + std::to_string(c.page_tokens) +
                                      "; it must be a positive multiple of 64 (the key tile)"; });
    require_argument(c.max_requests > 0 && c.max_beams > 0 && c.max_steps > 0, op,
                     "max_requests, max_beams and max_steps must be positive");
    require_argument(c.max_steps <= max_kv_steps, op,
                     [&] { return "max_steps is " + std::to_string(c.max_steps) + "; the ancestry walk supports up to " +
                                      std::to_string(max_kv_steps) + " decode steps"; });
    require_argument(c.max_prompt_tokens > 0, op, "max_prompt_tokens must be positive");
    require_argument(c.max_requests < no_parent && c.prefix_pages < no_parent && c.max_steps * c.max_beams < no_parent, op,
                     "sizes must fit 32-bit indices");
    return c;
  }

  void validate(const KvAdmission& a) const {
    const char* op = "KvPool::admit";
    require_argument(a.prompt_tokens > 0 && a.prompt_tokens <= config_.max_prompt_tokens, op,
                     [&] { return "prompt of " + std::to_string(a.prompt_tokens) + " tokens; the pool takes 1.." +
                                      std::to_string(config_.max_prompt_tokens); });
    require_argument(a.beams > 0 && a.beams <= config_.max_beams, op,
                     [&] { return std::to_string(a.beams) + " beams; the pool takes 1.." + std::to_string(config_.max_beams); });
    if (a.share_prefix_with) {
      require_argument(is_active(*a.share_prefix_with), op, "the prefix donor is not an active request");
      const std::size_t donor_tokens = prompt_row()[a.share_prefix_with->slot];
      require_argument(a.shared_tokens <= a.prompt_tokens && a.shared_tokens <= donor_tokens, op,
                       [&] { return std::to_string(a.shared_tokens) + " shared tokens, but the prompt has " +
                                        std::to_string(a.prompt_tokens) + " and the donor " + std::to_string(donor_tokens); });
    } else {
      require_argument(a.shared_tokens == 0, op, "shared_tokens without a donor");
    }
  }

  void require_active(KvRequest request, const char* op) const {
    require_argument(is_active(request), op,
                     [&] { return "request (slot " + std::to_string(request.slot) + ", generation " +
                                      std::to_string(request.generation) +
                                      ") is not active: released twice, never admitted, or from another pool"; });
  }

  std::uint32_t* page_row(std::size_t slot) noexcept { return mirror_.data() + slot * pages_per_request_; }
  const std::uint32_t* page_row(std::size_t slot) const noexcept { return mirror_.data() + slot * pages_per_request_; }
  std::uint32_t* prompt_row() noexcept { return mirror_.data() + config_.max_requests * pages_per_request_; }
  const std::uint32_t* prompt_row() const noexcept { return mirror_.data() + config_.max_requests * pages_per_request_; }
  std::uint32_t* shared_row() noexcept { return prompt_row() + config_.max_requests; }
  const std::uint32_t* shared_row() const noexcept { return prompt_row() + config_.max_requests; }
  std::uint32_t* beams_row() noexcept { return shared_row() + config_.max_requests; }
  const std::uint32_t* beams_row() const noexcept { return shared_row() + config_.max_requests; }

  KvPoolConfig config_;
  std::size_t pages_per_request_ = 0;
  std::size_t metadata_size_ = 0;
  Buffer<T, Space> kv_;
  Buffer<std::uint32_t, kv::detail::mirror_space<Space>> mirror_;  // page tables | prompt | shared | beams
  Buffer<std::uint32_t, Space> metadata_;                          // device copy (device pools only)
  Buffer<std::uint32_t, Space> ancestry_;
  std::vector<std::uint32_t> page_refs_;
  std::vector<std::uint32_t> free_pages_;
  std::vector<std::uint32_t> free_slots_;
  std::vector<std::uint32_t> generation_;
  std::vector<bool> active_;
  std::vector<std::uint32_t> owned_pages_;
  std::size_t used_pages_ = 0;    // pages with a reference
  std::size_t shared_pages_ = 0;  // pages with more than one
};

template <class T, class Layout = kv::PageMajor>
using HostKvPool = KvPool<T, Layout, MemorySpace::host>;
template <class T, class Layout = kv::PageMajor>
using DeviceKvPool = KvPool<T, Layout, MemorySpace::device>;

}  // namespace xgr
