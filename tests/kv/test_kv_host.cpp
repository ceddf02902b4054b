// KvPool, the copy-on-fork baseline and the host attention reference, checked in CI.
//
// Attention outputs are compared with a brute-force causal softmax written here (double, from the
// raw K/V inputs, not through the pool), and decode over KvPool's ancestry with decode over the
// copy-on-fork cache that physically copies KV along the same beam reorders. KV storage is filled
// with NaN before use, so reading a token nobody wrote shows up as NaN.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "support/errors.hpp"
#include "support/random.hpp"
#include "xgr/attention/host.hpp"
#include "xgr/core/dtype.hpp"
#include "xgr/kv/copy_on_fork.hpp"
#include "xgr/kv/host.hpp"
#include "xgr/kv/pool.hpp"

namespace {

using xgr::bfloat16;
using xgr::KvAdmission;
using xgr::KvPoolConfig;
using xgr::KvRequest;
using xgr::KvShape;
using xgr::MemorySpace;
using xgr::test::error_of;

constexpr auto host = xgr::exec::host;
const std::string& invalid_argument = xgr::test::invalid_argument_error;
const std::string& capacity_error = xgr::test::capacity_error;

template <class T, class Layout = xgr::kv::PageMajor>
using Pool = xgr::KvPool<T, Layout, MemorySpace::host>;
template <class T>
using Cow = xgr::CopyOnForkKvCache<T, MemorySpace::host>;
using Batch = xgr::KvBatch<MemorySpace::host>;

std::size_t pages_for(std::size_t tokens, std::size_t page_tokens) { return (tokens + page_tokens - 1) / page_tokens; }

std::size_t pick(std::mt19937_64& rng, std::size_t lo, std::size_t hi) {  // uniform in [lo, hi]
  return std::uniform_int_distribution<std::size_t>(lo, hi)(rng);
}

template <class T>
double value_of(T x) {
  return static_cast<double>(static_cast<float>(x));
}

template <class T>
std::vector<T> random_vector(std::mt19937_64& rng, std::size_t n) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<T> v(n);
  for (T& x : v) x = T(normal(rng));
  return v;
}

template <class T>
void poison(std::span<T> storage) {
  std::fill(storage.begin(), storage.end(), T(std::numeric_limits<float>::quiet_NaN()));
}

template <class T>
bool same_bits(const T* a, const T* b, std::size_t n) {
  return std::memcmp(a, b, n * sizeof(T)) == 0;
}

// ||out - ref|| / ||ref|| accumulated element by element, with a count of NaN outputs.
struct Difference {
  double diff = 0.0, norm = 0.0;
  std::size_t nans = 0;
  void add(double out, double ref) {
    if (std::isnan(out)) ++nans;
    diff += (out - ref) * (out - ref);
    norm += ref * ref;
  }
  [[nodiscard]] double relative() const { return std::sqrt(diff / norm); }
};

// softmax(q . k_n * scale) . v_n over the given vectors, in double: the test's own definition.
template <class T>
std::vector<double> brute_attention(const T* q, const std::vector<const T*>& keys, const std::vector<const T*>& values,
                                    std::size_t dim, double scale) {
  std::vector<double> scores(keys.size());
  double top = -std::numeric_limits<double>::infinity();
  for (std::size_t n = 0; n < keys.size(); ++n) {
    double dot = 0.0;
    for (std::size_t d = 0; d < dim; ++d) dot += value_of(q[d]) * value_of(keys[n][d]);
    scores[n] = dot * scale;
    top = std::max(top, scores[n]);
  }
  std::vector<double> out(dim, 0.0);
  double total = 0.0;
  for (std::size_t n = 0; n < keys.size(); ++n) {
    const double weight = std::exp(scores[n] - top);
    total += weight;
    for (std::size_t d = 0; d < dim; ++d) out[d] += weight * value_of(values[n][d]);
  }
  for (double& x : out) x /= total;
  return out;
}

KvPoolConfig pool_config(KvShape shape, std::size_t page_tokens, std::size_t prefix_pages, std::size_t max_requests,
                         std::size_t max_prompt_tokens, std::size_t max_beams, std::size_t max_steps) {
  return {shape, page_tokens, prefix_pages, max_requests, max_prompt_tokens, max_beams, max_steps};
}

// Packed [rows][heads][dim] row pointer.
template <class T>
const T* row_of(const std::vector<T>& packed, std::size_t row, std::size_t head, std::size_t heads, std::size_t dim) {
  return packed.data() + (row * heads + head) * dim;
}

}  // namespace

// ---- admission and release -------------------------------------------------------------------------

TEST_CASE("capacity predicts how many requests try_admit takes, and stats count their pages") {
  std::mt19937_64 rng = xgr::test::make_rng(801);
  for (int trial = 0; trial < 40; ++trial) {
    const std::size_t page = 64 * pick(rng, 1, 3);
    const KvShape shape{pick(rng, 1, 3), pick(rng, 1, 2), pick(rng, 0, 1) ? 64u : 128u};
    const KvPoolConfig config =
        pool_config(shape, page, pick(rng, 0, 40), pick(rng, 1, 12), pick(rng, 1, 600), pick(rng, 1, 8), pick(rng, 1, 8));
    Pool<bfloat16> pool(config);
    const std::size_t prompt = pick(rng, 1, config.max_prompt_tokens);
    const std::size_t beams = pick(rng, 1, config.max_beams);
    const std::size_t pages = pages_for(prompt, page);
    INFO("trial " << trial << ": page " << page << ", prefix pages " << config.prefix_pages << ", max requests "
                  << config.max_requests << ", prompt " << prompt << ", beams " << beams);

    CHECK(pool.stats().kv_bytes == Pool<bfloat16>::kv_bytes_for(config));
    CHECK(pool.stats().page_bytes == page * 2 * shape.layers * shape.kv_heads * shape.head_dim * sizeof(bfloat16));
    const std::size_t expected = pool.capacity(prompt, beams);
    CHECK(expected == std::min(config.max_requests, config.prefix_pages / pages));

    std::vector<KvRequest> admitted;
    std::set<std::uint32_t> all_pages;
    while (std::optional<KvRequest> request = pool.try_admit({prompt, beams})) {
      admitted.push_back(*request);
      CHECK(pool.is_active(*request));
      CHECK(pool.prompt_tokens(*request) == prompt);
      CHECK(pool.beams(*request) == beams);
      CHECK(pool.shared_tokens(*request) == 0);
      REQUIRE(pool.pages(*request).size() == pages);
      for (std::uint32_t p : pool.pages(*request)) {
        CHECK(p < config.prefix_pages);
        CHECK(all_pages.insert(p).second);  // no page is handed out twice
      }
      const xgr::KvPoolStats stats = pool.stats();
      CHECK(stats.used_pages == admitted.size() * pages);
      CHECK(stats.shared_pages == 0);
      CHECK(stats.active_requests == admitted.size());
      CHECK(pool.capacity(prompt, beams) == expected - admitted.size());
      REQUIRE(admitted.size() <= expected);
    }
    CHECK(admitted.size() == expected);
    CHECK(pool.capacity(prompt, beams) == 0);
    if (admitted.empty()) continue;

    // Release one, and the freed region and pages take exactly one more request.
    const std::size_t victim = pick(rng, 0, admitted.size() - 1);
    pool.release(admitted[victim]);
    CHECK_FALSE(pool.is_active(admitted[victim]));
    CHECK(pool.stats().used_pages == (admitted.size() - 1) * pages);
    CHECK(pool.stats().active_requests == admitted.size() - 1);
    CHECK(pool.capacity(prompt, beams) == 1);
    const KvRequest again = pool.admit({prompt, beams});
    CHECK(pool.is_active(again));
    CHECK(pool.stats().used_pages == admitted.size() * pages);
    CHECK_FALSE(pool.try_admit({prompt, beams}).has_value());

    for (std::size_t i = 0; i < admitted.size(); ++i) {
      if (i != victim) pool.release(admitted[i]);
    }
    pool.release(again);
    CHECK(pool.stats().used_pages == 0);
    CHECK(pool.stats().active_requests == 0);
    CHECK(pool.capacity(prompt, beams) == expected);
  }
}

TEST_CASE("a full pool is a recoverable status: try_admit returns nullopt, admit throws capacity") {
  const KvShape shape{2, 2, 64};
  SUBCASE("out of regions") {
    Pool<float> pool(pool_config(shape, 64, 100, 2, 128, 4, 3));
    (void)pool.admit({100, 4});
    (void)pool.admit({1, 1});
    std::optional<KvRequest> none;
    CHECK(error_of([&] { none = pool.try_admit({1, 1}); }) == "no error");
    CHECK_FALSE(none.has_value());
    CHECK(error_of([&] { (void)pool.admit({1, 1}); }) == capacity_error);
    CHECK(pool.stats().active_requests == 2);
    CHECK(pool.stats().used_pages == 3);  // a failed admission takes nothing
  }
  SUBCASE("out of pages") {
    Pool<float> pool(pool_config(shape, 64, 5, 4, 256, 4, 3));
    const KvRequest first = pool.admit({256, 2});  // 4 pages
    CHECK_FALSE(pool.try_admit({65, 1}).has_value());  // needs 2, 1 free
    CHECK(error_of([&] { (void)pool.admit({65, 1}); }) == capacity_error);
    CHECK(pool.stats().used_pages == 4);
    CHECK(pool.stats().active_requests == 1);
    const KvRequest small = pool.admit({64, 1});  // 1 page still fits
    CHECK(pool.stats().used_pages == 5);
    pool.release(first);
    CHECK(pool.try_admit({65, 1}).has_value());
    pool.release(small);
  }
}

TEST_CASE("random admissions, sharing and releases keep the page accounting exact") {
  std::mt19937_64 rng = xgr::test::make_rng(802);
  for (int trial = 0; trial < 10; ++trial) {
    const std::size_t page = 64 * pick(rng, 1, 2);
    const KvPoolConfig config = pool_config({1, 1, 64}, page, pick(rng, 1, 30), pick(rng, 1, 8), pick(rng, 1, 500), 4, 2);
    Pool<float> pool(config);
    struct Active {
      KvRequest request;
      std::size_t prompt = 0;
      std::vector<std::uint32_t> pages;
    };
    std::vector<Active> active;
    const auto page_counts = [&] {
      std::map<std::uint32_t, std::size_t> refs;
      for (const Active& a : active) {
        for (std::uint32_t p : a.pages) ++refs[p];
      }
      return refs;
    };
    for (int op = 0; op < 300; ++op) {
      INFO("trial " << trial << ", operation " << op);
      const std::map<std::uint32_t, std::size_t> refs = page_counts();
      const std::size_t free_pages = config.prefix_pages - refs.size();
      if (active.empty() || std::bernoulli_distribution(0.55)(rng)) {
        KvAdmission admission{pick(rng, 1, config.max_prompt_tokens), pick(rng, 1, 4)};
        const Active* donor = nullptr;
        if (!active.empty() && std::bernoulli_distribution(0.5)(rng)) {
          donor = &active[pick(rng, 0, active.size() - 1)];
          admission.share_prefix_with = donor->request;
          admission.shared_tokens = pick(rng, 0, std::min(admission.prompt_tokens, donor->prompt));
        }
        const std::size_t pages = pages_for(admission.prompt_tokens, page);
        const std::size_t shared = admission.shared_tokens / page;
        const bool fits = active.size() < config.max_requests && free_pages >= pages - shared;
        const std::optional<KvRequest> request = pool.try_admit(admission);
        REQUIRE(request.has_value() == fits);
        if (request) {
          const std::span<const std::uint32_t> got = pool.pages(*request);
          REQUIRE(got.size() == pages);
          CHECK(pool.shared_tokens(*request) == shared * page);
          for (std::size_t p = 0; p < pages; ++p) {
            if (p < shared) {
              CHECK(got[p] == donor->pages[p]);
            } else {
              CHECK(refs.count(got[p]) == 0);  // a fresh page
            }
          }
          active.push_back({*request, admission.prompt_tokens, {got.begin(), got.end()}});
        }
      } else {
        const std::size_t victim = pick(rng, 0, active.size() - 1);
        pool.release(active[victim].request);
        CHECK_FALSE(pool.is_active(active[victim].request));
        active.erase(active.begin() + static_cast<std::ptrdiff_t>(victim));
      }
      const std::map<std::uint32_t, std::size_t> now = page_counts();
      const xgr::KvPoolStats stats = pool.stats();
      CHECK(stats.used_pages == now.size());
      CHECK(stats.shared_pages == static_cast<std::size_t>(std::count_if(now.begin(), now.end(), [](const auto& e) {
              return e.second > 1;
            })));
      CHECK(stats.active_requests == active.size());
      for (const Active& a : active) {
        CHECK(pool.is_active(a.request));
        const std::span<const std::uint32_t> got = pool.pages(a.request);
        CHECK(std::equal(got.begin(), got.end(), a.pages.begin(), a.pages.end()));
      }
    }
  }
}

TEST_CASE("released, stale and never-admitted handles are invalid arguments") {
  Pool<float> pool(pool_config({1, 1, 64}, 64, 10, 3, 128, 2, 2));
  const KvRequest first = pool.admit({100, 2});
  pool.release(first);
  CHECK(error_of([&] { pool.release(first); }) == invalid_argument);  // released twice

  const KvRequest second = pool.admit({100, 2});
  CHECK(error_of([&] { pool.release(first); }) == invalid_argument);
  CHECK(error_of([&] { pool.release({second.slot, second.generation + 7}); }) == invalid_argument);
  CHECK(pool.is_active(second));  // the failed releases freed nothing
  CHECK(pool.stats().used_pages == 2);

  const std::uint32_t unused = (second.slot + 1) % 3;
  CHECK(error_of([&] { pool.release({unused, 0}); }) == invalid_argument);  // never admitted
  CHECK(error_of([&] { pool.release({3, 0}); }) == invalid_argument);       // no such slot
  CHECK(error_of([&] { pool.release({~0u, 0}); }) == invalid_argument);

  CHECK(error_of([&] { (void)pool.pages(first); }) == invalid_argument);
  CHECK(error_of([&] { (void)pool.prompt_tokens(first); }) == invalid_argument);
  CHECK(error_of([&] { (void)pool.shared_tokens(first); }) == invalid_argument);
  CHECK(error_of([&] { (void)pool.beams(first); }) == invalid_argument);
  Batch batch(2);
  const std::vector<KvRequest> stale_batch{second, first};
  CHECK(error_of([&] { pool.describe(host, std::span<const KvRequest>(stale_batch), batch); }) == invalid_argument);
  const std::vector<KvRequest> too_many{second, second, second};
  CHECK(error_of([&] { pool.describe(host, std::span<const KvRequest>(too_many), batch); }) == invalid_argument);

  pool.release(second);
  CHECK(pool.stats().used_pages == 0);
  CHECK(pool.stats().active_requests == 0);

  // A pool of one region reuses its slot: the old handle is stale and must not free the new request.
  Pool<float> single(pool_config({1, 1, 64}, 64, 2, 1, 128, 2, 2));
  const KvRequest old = single.admit({128, 1});
  single.release(old);
  const KvRequest reused = single.admit({64, 2});
  REQUIRE(reused.slot == old.slot);
  CHECK(reused.generation != old.generation);
  CHECK_FALSE(single.is_active(old));
  CHECK(error_of([&] { single.release(old); }) == invalid_argument);
  CHECK(single.is_active(reused));
  CHECK(single.stats().used_pages == 1);
  CHECK(single.stats().active_requests == 1);
  single.release(reused);
}

TEST_CASE("bad admissions are invalid arguments, not a full pool") {
  Pool<bfloat16> pool(pool_config({1, 2, 128}, 64, 20, 4, 100, 4, 3));
  const KvRequest donor = pool.admit({64, 1});
  const auto admit = [&](KvAdmission admission) { return error_of([&] { (void)pool.try_admit(admission); }); };
  CHECK(admit({0, 1}) == invalid_argument);    // empty prompt
  CHECK(admit({101, 1}) == invalid_argument);  // above max_prompt_tokens
  CHECK(admit({50, 0}) == invalid_argument);   // no beams
  CHECK(admit({50, 5}) == invalid_argument);   // above max_beams
  CHECK(admit({50, 1, std::nullopt, 10}) == invalid_argument);  // shared tokens without a donor
  CHECK(admit({100, 1, donor, 65}) == invalid_argument);        // more than the donor's prompt
  CHECK(admit({50, 1, donor, 60}) == invalid_argument);         // more than the own prompt
  CHECK(admit({100, 1, KvRequest{3, 0}, 10}) == invalid_argument);  // a donor never admitted
  CHECK(error_of([&] { (void)pool.admit({0, 1}); }) == invalid_argument);
  CHECK(error_of([&] { (void)pool.capacity(0, 1); }) == invalid_argument);
  CHECK(error_of([&] { (void)pool.capacity(101, 1); }) == invalid_argument);
  CHECK(error_of([&] { (void)pool.capacity(50, 5); }) == invalid_argument);
  CHECK(pool.stats().active_requests == 1);
  CHECK(pool.stats().used_pages == 1);

  CHECK(admit({100, 1, donor, 64}) == "no error");  // the whole donor prompt
  pool.release(donor);
  CHECK(admit({100, 1, donor, 64}) == invalid_argument);  // a released donor
}

TEST_CASE("bad pool configurations are invalid arguments") {
  const KvPoolConfig good = pool_config({2, 2, 64}, 64, 8, 2, 128, 4, 3);
  const auto construct = [](const KvPoolConfig& config) { return error_of([&] { Pool<bfloat16> pool(config); }); };
  CHECK(construct(good) == "no error");
  KvPoolConfig c = good;
  c.shape.head_dim = 96;
  CHECK(construct(c) == invalid_argument);
  c = good;
  c.shape.head_dim = 0;
  CHECK(construct(c) == invalid_argument);
  c = good;
  c.shape.layers = 0;
  CHECK(construct(c) == invalid_argument);
  c = good;
  c.shape.kv_heads = 0;
  CHECK(construct(c) == invalid_argument);
  c = good;
  c.page_tokens = 48;
  CHECK(construct(c) == invalid_argument);
  c.page_tokens = 0;
  CHECK(construct(c) == invalid_argument);
  c.page_tokens = 96;
  CHECK(construct(c) == invalid_argument);
  c = good;
  c.max_steps = 65;
  CHECK(construct(c) == invalid_argument);
  c.max_steps = 64;
  CHECK(construct(c) == "no error");
  c.max_steps = 0;
  CHECK(construct(c) == invalid_argument);
  c = good;
  c.max_requests = 0;
  CHECK(construct(c) == invalid_argument);
  c = good;
  c.max_beams = 0;
  CHECK(construct(c) == invalid_argument);
  // A request's decode tokens are indexed by step * max_beams + beam in 32 bits.
  c = good;
  c.max_steps = 64;
  c.max_beams = std::size_t{1} << 26;
  CHECK(construct(c) == invalid_argument);
  c = good;
  c.max_prompt_tokens = 0;
  CHECK(construct(c) == invalid_argument);

  CHECK(error_of([&] { (void)Pool<float>::plan({1, 1, 96}, 1 << 20, 64, 100, 4, 3); }) == invalid_argument);
  CHECK(error_of([&] { (void)Pool<float>::plan({1, 1, 64}, 1 << 20, 48, 100, 4, 3); }) == invalid_argument);
  CHECK(error_of([&] { (void)Pool<float>::plan({1, 1, 64}, 1 << 20, 64, 100, 4, 65); }) == invalid_argument);

  const xgr::CopyOnForkConfig cow_good{{2, 2, 64}, 64, 16, 2, 128, 4, 3};
  const auto construct_cow = [](const xgr::CopyOnForkConfig& config) { return error_of([&] { Cow<bfloat16> cow(config); }); };
  CHECK(construct_cow(cow_good) == "no error");
  xgr::CopyOnForkConfig d = cow_good;
  d.shape.head_dim = 96;
  CHECK(construct_cow(d) == invalid_argument);
  d = cow_good;
  d.page_tokens = 48;
  CHECK(construct_cow(d) == invalid_argument);
  d = cow_good;
  d.max_steps = 0;
  CHECK(construct_cow(d) == invalid_argument);
  d = cow_good;
  d.max_prompt_tokens = 0;
  CHECK(construct_cow(d) == invalid_argument);
}

// ---- prefix sharing ---------------------------------------------------------------------------------

TEST_CASE("a shared prefix is the donor's whole pages, reference-counted until its last user leaves") {
  Pool<bfloat16> pool(pool_config({2, 2, 64}, 64, 12, 4, 320, 2, 2));
  const KvRequest a = pool.admit({256, 2});
  const KvRequest b = pool.admit({300, 2, a, 200});  // 200 tokens round down to 3 pages
  const std::span<const std::uint32_t> pa = pool.pages(a);
  const std::span<const std::uint32_t> pb = pool.pages(b);
  REQUIRE(pa.size() == 4);
  REQUIRE(pb.size() == 5);
  CHECK(std::equal(pb.begin(), pb.begin() + 3, pa.begin()));
  for (std::size_t p = 3; p < 5; ++p) CHECK(std::find(pa.begin(), pa.end(), pb[p]) == pa.end());
  CHECK(pool.shared_tokens(a) == 0);
  CHECK(pool.shared_tokens(b) == 192);
  CHECK(pool.prompt_tokens(b) == 300);
  CHECK(pool.stats().used_pages == 6);
  CHECK(pool.stats().shared_pages == 3);
  CHECK(pool.stats().active_requests == 2);

  const std::vector<std::uint32_t> b_pages(pb.begin(), pb.end());
  pool.release(a);
  CHECK(pool.stats().used_pages == 5);  // A's own last page is free, the shared three stay
  CHECK(pool.stats().shared_pages == 0);
  CHECK(pool.stats().active_requests == 1);
  const std::span<const std::uint32_t> still = pool.pages(b);
  CHECK(std::equal(still.begin(), still.end(), b_pages.begin(), b_pages.end()));

  // The 7 free pages never include B's: a new request of 5 pages gets others.
  CHECK(pool.capacity(320, 1) == 1);
  const KvRequest c = pool.admit({320, 1});
  for (std::uint32_t p : pool.pages(c)) CHECK(std::find(b_pages.begin(), b_pages.end(), p) == b_pages.end());
  pool.release(c);

  pool.release(b);
  CHECK(pool.stats().used_pages == 0);
  CHECK(pool.stats().shared_pages == 0);
  CHECK(pool.stats().active_requests == 0);
  CHECK(pool.capacity(320, 1) == 2);
}

TEST_CASE("write_prompt leaves shared tokens to the donor, and a sharer reads them through its page table") {
  std::mt19937_64 rng = xgr::test::make_rng(803);
  const KvShape shape{2, 2, 64};
  const std::size_t dim = shape.head_dim, heads = shape.kv_heads;
  Pool<bfloat16> pool(pool_config(shape, 64, 12, 4, 320, 2, 2));
  poison(pool.kv_storage());
  const KvRequest a = pool.admit({256, 1});
  const KvRequest b = pool.admit({300, 1, a, 200});
  Batch batch_a(1), batch_b(1), both(2);
  const std::vector<KvRequest> only_a{a}, only_b{b}, a_then_b{a, b};
  pool.describe(host, std::span<const KvRequest>(only_a), batch_a);
  pool.describe(host, std::span<const KvRequest>(only_b), batch_b);
  pool.describe(host, std::span<const KvRequest>(a_then_b), both);

  std::vector<std::vector<bfloat16>> ka, va, kb, vb;
  for (std::size_t layer = 0; layer < shape.layers; ++layer) {
    ka.push_back(random_vector<bfloat16>(rng, 256 * heads * dim));
    va.push_back(random_vector<bfloat16>(rng, 256 * heads * dim));
    kb.push_back(random_vector<bfloat16>(rng, 300 * heads * dim));
    vb.push_back(random_vector<bfloat16>(rng, 300 * heads * dim));
    xgr::kv::write_prompt(host, pool, batch_a, layer, std::span<const bfloat16>(ka[layer]), std::span<const bfloat16>(va[layer]));
  }
  for (std::size_t layer = 0; layer < shape.layers; ++layer) {
    xgr::kv::write_prompt(host, pool, batch_b, layer, std::span<const bfloat16>(kb[layer]), std::span<const bfloat16>(vb[layer]));
  }
  const auto view = pool.view();
  std::size_t wrong_a = 0, wrong_b = 0;
  for (std::size_t layer = 0; layer < shape.layers; ++layer) {
    for (std::size_t h = 0; h < heads; ++h) {
      for (std::size_t t = 0; t < 300; ++t) {
        if (t < 256) {  // A keeps everything it wrote
          wrong_a += !same_bits(view.prefix_token(a.slot, t, layer, h, xgr::kv::key), row_of(ka[layer], t, h, heads, dim), dim);
          wrong_a += !same_bits(view.prefix_token(a.slot, t, layer, h, xgr::kv::value), row_of(va[layer], t, h, heads, dim), dim);
        }
        // B reads A's tokens below 192 and its own above.
        const auto& k_source = t < 192 ? ka[layer] : kb[layer];
        const auto& v_source = t < 192 ? va[layer] : vb[layer];
        wrong_b += !same_bits(view.prefix_token(b.slot, t, layer, h, xgr::kv::key), row_of(k_source, t, h, heads, dim), dim);
        wrong_b += !same_bits(view.prefix_token(b.slot, t, layer, h, xgr::kv::value), row_of(v_source, t, h, heads, dim), dim);
      }
    }
  }
  CHECK(wrong_a == 0);
  CHECK(wrong_b == 0);

  // Prefill of both in one batch: B's queries attend to A's keys below 192.
  const std::size_t q_heads = 4, group = q_heads / heads, layer = 1;
  const xgr::attention::Options options{q_heads};
  std::vector<bfloat16> k(ka[layer]), v(va[layer]);
  k.insert(k.end(), kb[layer].begin(), kb[layer].end());
  v.insert(v.end(), vb[layer].begin(), vb[layer].end());
  const std::vector<bfloat16> q = random_vector<bfloat16>(rng, 556 * q_heads * dim);
  std::vector<bfloat16> out(q.size());
  xgr::attention::prefill(host, pool, both, layer, options, std::span<const bfloat16>(q), std::span<const bfloat16>(k),
                          std::span<const bfloat16>(v), std::span<bfloat16>(out));
  Difference difference;
  for (std::size_t t = 0; t < 300; ++t) {
    for (std::size_t h = 0; h < q_heads; ++h) {
      std::vector<const bfloat16*> keys, values;
      for (std::size_t n = 0; n <= t; ++n) {
        const std::size_t source = n < 192 ? n : 256 + n;  // A's rows, then B's rows of the packed input
        keys.push_back(row_of(k, source, h / group, heads, dim));
        values.push_back(row_of(v, source, h / group, heads, dim));
      }
      const std::vector<double> ref =
          brute_attention(row_of(q, 256 + t, h, q_heads, dim), keys, values, dim, 1.0 / std::sqrt(static_cast<double>(dim)));
      const bfloat16* got = row_of(out, 256 + t, h, q_heads, dim);
      for (std::size_t d = 0; d < dim; ++d) difference.add(value_of(got[d]), ref[d]);
    }
  }
  CHECK(difference.nans == 0);
  CHECK(difference.relative() < 1e-2);
}

// ---- sizing ----------------------------------------------------------------------------------------

TEST_CASE("plan fills a KV budget with whole requests of one shape") {
  std::mt19937_64 rng = xgr::test::make_rng(804);
  for (int trial = 0; trial < 200; ++trial) {
    const KvShape shape{pick(rng, 1, 40), pick(rng, 1, 8), pick(rng, 0, 1) ? 64u : 128u};
    const std::size_t page = 64 * pick(rng, 1, 4);
    const std::size_t prompt = pick(rng, 1, 4096), beams = pick(rng, 1, 256), steps = pick(rng, 1, 8);
    const std::size_t per_request = Pool<bfloat16>::request_bytes(shape, page, prompt, beams, steps);
    const std::size_t budget = per_request * pick(rng, 1, 200) + pick(rng, 0, per_request - 1);
    INFO("trial " << trial << ": prompt " << prompt << ", beams " << beams << ", steps " << steps << ", page " << page);
    const KvPoolConfig config = Pool<bfloat16>::plan(shape, budget, page, prompt, beams, steps);
    CHECK(config.max_requests == budget / per_request);
    CHECK(Pool<bfloat16>::kv_bytes_for(config) <= budget);
    CHECK(Pool<bfloat16>::kv_bytes_for(config) + per_request > budget);  // no room for another
    CHECK(config.max_prompt_tokens == prompt);
    CHECK(config.max_beams == beams);
    CHECK(config.max_steps == steps);
    CHECK(config.prefix_pages == config.max_requests * pages_for(prompt, page));
  }
  // Small plans, built: the pool takes exactly max_requests requests of the planned shape.
  for (int trial = 0; trial < 10; ++trial) {
    const KvShape shape{pick(rng, 1, 2), 1, 64};
    const std::size_t prompt = pick(rng, 1, 300), beams = pick(rng, 1, 8), steps = pick(rng, 1, 4);
    const std::size_t per_request = Pool<float>::request_bytes(shape, 64, prompt, beams, steps);
    const std::size_t budget = per_request * pick(rng, 1, 12) + pick(rng, 0, per_request - 1);
    const KvPoolConfig config = Pool<float>::plan(shape, budget, 64, prompt, beams, steps);
    Pool<float> pool(config);
    CHECK(pool.stats().kv_bytes <= budget);
    CHECK(pool.capacity(prompt, beams) == config.max_requests);
    std::size_t admitted = 0;
    while (pool.try_admit({prompt, beams})) ++admitted;
    CHECK(admitted == config.max_requests);
  }
  // A budget under one request plans nothing rather than a pool over budget.
  const std::size_t one = Pool<float>::request_bytes({1, 1, 64}, 64, 100, 4, 3);
  CHECK(error_of([&] { (void)Pool<float>::plan({1, 1, 64}, one - 1, 64, 100, 4, 3); }) == capacity_error);
}

TEST_CASE("copy-on-fork costs at least B/2 times KvPool's memory per request at P=2048, B=256, L=3") {
  for (std::size_t page : {64, 128, 256}) {
    for (const KvShape shape : {KvShape{1, 1, 64}, KvShape{32, 8, 128}, KvShape{4, 2, 64}}) {
      const std::size_t pool_bytes = Pool<bfloat16>::request_bytes(shape, page, 2048, 256, 3);
      const std::size_t cow_bytes = Cow<bfloat16>::request_bytes(shape, page, 2048, 256, 3);
      INFO("page " << page << ", layers " << shape.layers << ", kv heads " << shape.kv_heads << ", head_dim " << shape.head_dim);
      CHECK(cow_bytes / pool_bytes >= 256 / 2);
    }
  }
  // And with two beams or more (steps <= 8 < page / 2) KvPool never costs more than copy-on-fork. With one
  // beam it may: its decode slots sit outside the prompt's last, partly empty page.
  std::mt19937_64 rng = xgr::test::make_rng(805);
  for (int trial = 0; trial < 200; ++trial) {
    const KvShape shape{1, 1, 64};
    const std::size_t page = 64 * pick(rng, 1, 4), prompt = pick(rng, 1, 5000), beams = pick(rng, 2, 512), steps = pick(rng, 1, 8);
    INFO("page " << page << ", prompt " << prompt << ", beams " << beams << ", steps " << steps);
    CHECK(Pool<float>::request_bytes(shape, page, prompt, beams, steps) <= Cow<float>::request_bytes(shape, page, prompt, beams, steps));
  }
}

TEST_CASE("copy-on-fork stats count every beam's pages of every admitted request") {
  std::mt19937_64 rng = xgr::test::make_rng(806);
  for (int trial = 0; trial < 50; ++trial) {
    const KvShape shape{pick(rng, 1, 3), pick(rng, 1, 4), rng() % 2 ? std::size_t{64} : std::size_t{128}};
    xgr::CopyOnForkConfig config;
    config.shape = shape;
    config.page_tokens = 64 * pick(rng, 1, 2);
    config.pages = pick(rng, 20, 200);
    config.max_requests = pick(rng, 1, 6);
    config.max_prompt_tokens = pick(rng, 1, 300);
    config.max_beams = pick(rng, 1, 8);
    config.max_steps = pick(rng, 1, 4);
    Cow<float> cache(config);
    INFO("trial " << trial);
    const std::size_t page_bytes = config.page_tokens * 2 * shape.layers * shape.kv_heads * shape.head_dim * sizeof(float);
    CHECK(cache.stats().pages == config.pages);
    CHECK(cache.stats().page_bytes == page_bytes);
    CHECK(cache.stats().kv_bytes == config.pages * page_bytes);
    CHECK(cache.stats().kv_bytes == cache.kv_bytes());
    CHECK(cache.stats().scratch_bytes == config.max_requests * config.max_beams * config.max_steps * page_bytes / config.page_tokens);
    CHECK(cache.stats().metadata_bytes > 0);
    std::vector<std::pair<KvRequest, std::size_t>> admitted;  // handle, pages it holds
    std::size_t expected_pages = 0;
    for (int op = 0; op < 30; ++op) {
      if (!admitted.empty() && rng() % 3 == 0) {
        const std::size_t victim = rng() % admitted.size();
        cache.release(admitted[victim].first);
        expected_pages -= admitted[victim].second;
        admitted.erase(admitted.begin() + static_cast<std::ptrdiff_t>(victim));
      } else {
        const std::size_t prompt = pick(rng, 1, config.max_prompt_tokens), beams = pick(rng, 1, config.max_beams);
        if (const std::optional<KvRequest> request = cache.try_admit({prompt, beams})) {
          const std::size_t pages = beams * pages_for(prompt + config.max_steps, config.page_tokens);
          admitted.emplace_back(*request, pages);
          expected_pages += pages;
        }
      }
      const xgr::CopyOnForkStats stats = cache.stats();
      CHECK(stats.used_pages == expected_pages);
      CHECK(stats.used_pages + cache.free_pages() == config.pages);
      CHECK(stats.active_requests == admitted.size());
      CHECK(stats.max_requests == config.max_requests);
    }
  }
}

// ---- host attention ----------------------------------------------------------------------------------

namespace {

struct PrefillCase {
  std::size_t q_heads = 4, kv_heads = 1, head_dim = 64, page_tokens = 64;
  float softmax_scale = 0.0f;
};

// Every prompt of `prompts` in one batch, prefilled into layer 1 of a two-layer pool, against the
// brute force over the raw inputs.
template <class T, class Layout>
void check_prefill(std::mt19937_64& rng, const PrefillCase& c, const std::vector<std::size_t>& prompts, double tolerance) {
  const KvShape shape{2, c.kv_heads, c.head_dim};
  const std::size_t dim = c.head_dim, group = c.q_heads / c.kv_heads, layer = 1;
  std::size_t pages = 0, total = 0;
  for (std::size_t p : prompts) {
    pages += pages_for(p, c.page_tokens);
    total += p;
  }
  Pool<T, Layout> pool(pool_config(shape, c.page_tokens, pages + 3, prompts.size() + 1,
                                   *std::max_element(prompts.begin(), prompts.end()), 1, 1));
  poison(pool.kv_storage());
  const KvRequest spare = pool.admit({1, 1});  // slots and pages in the batch do not start at 0
  std::vector<KvRequest> requests;
  for (std::size_t p : prompts) requests.push_back(pool.admit({p, 1}));
  pool.release(spare);
  std::reverse(requests.begin(), requests.end());
  Batch batch(requests.size());
  pool.describe(host, std::span<const KvRequest>(requests), batch);
  REQUIRE(batch.view().total_tokens == total);

  const std::vector<T> q = random_vector<T>(rng, total * c.q_heads * dim);
  const std::vector<T> k = random_vector<T>(rng, total * c.kv_heads * dim);
  const std::vector<T> v = random_vector<T>(rng, total * c.kv_heads * dim);
  std::vector<T> out(q.size(), T(std::numeric_limits<float>::quiet_NaN()));
  xgr::attention::prefill(host, pool, batch, layer, xgr::attention::Options{c.q_heads, c.softmax_scale}, std::span<const T>(q),
                          std::span<const T>(k), std::span<const T>(v), std::span<T>(out));

  const double scale = c.softmax_scale != 0.0f ? static_cast<double>(c.softmax_scale) : 1.0 / std::sqrt(static_cast<double>(dim));
  for (std::size_t i = 0; i < requests.size(); ++i) {
    const std::size_t begin = batch.token_begin()[i], length = batch.token_begin()[i + 1] - begin;
    INFO("prompt of " << length << " tokens, q_heads " << c.q_heads << ", kv_heads " << c.kv_heads << ", head_dim " << dim
                      << ", page " << c.page_tokens << ", " << Layout::name);
    Difference difference;
    for (std::size_t t = 0; t < length; ++t) {
      for (std::size_t h = 0; h < c.q_heads; ++h) {
        std::vector<const T*> keys, values;
        for (std::size_t n = 0; n <= t; ++n) {
          keys.push_back(row_of(k, begin + n, h / group, c.kv_heads, dim));
          values.push_back(row_of(v, begin + n, h / group, c.kv_heads, dim));
        }
        const std::vector<double> ref = brute_attention(row_of(q, begin + t, h, c.q_heads, dim), keys, values, dim, scale);
        const T* got = row_of(out, begin + t, h, c.q_heads, dim);
        for (std::size_t d = 0; d < dim; ++d) difference.add(value_of(got[d]), ref[d]);
      }
    }
    CHECK(difference.nans == 0);
    CHECK(difference.relative() < tolerance);
  }
}

}  // namespace

TEST_CASE("prefill is causal softmax attention over the prompt, with grouped query heads") {
  std::mt19937_64 rng = xgr::test::make_rng(806);
  const std::vector<std::size_t> fixed{1, 63, 64, 65, 130};
  const std::vector<PrefillCase> cases{{4, 1, 64, 64}, {8, 2, 128, 64}, {4, 1, 128, 128}, {8, 2, 64, 192, 0.3f}, {2, 2, 64, 64}};
  for (const PrefillCase& c : cases) {
    std::vector<std::size_t> random_prompts{pick(rng, 1, 200), pick(rng, 1, 200)};
    check_prefill<bfloat16, xgr::kv::PageMajor>(rng, c, fixed, 1e-2);
    check_prefill<bfloat16, xgr::kv::LayerMajor>(rng, c, random_prompts, 1e-2);
    check_prefill<float, xgr::kv::PageMajor>(rng, c, random_prompts, 1e-5);
    check_prefill<float, xgr::kv::LayerMajor>(rng, c, fixed, 1e-5);
  }
}

namespace {

struct DecodeCase {
  std::size_t layers = 2, kv_heads = 2, head_dim = 64, q_heads = 4, page_tokens = 64, steps = 3;
  std::vector<std::size_t> prompts, beams;
};

// A KvPool (ancestry indices) and a CopyOnForkKvCache (physical copies) fed the same prompts, beam
// reorders and step tokens: their decode outputs must agree, and both equal the brute force over the
// lineage the test tracks itself.
template <class T, class Layout>
void check_reorder_equivalence(std::mt19937_64& rng, const DecodeCase& c, double tolerance) {
  const KvShape shape{c.layers, c.kv_heads, c.head_dim};
  const std::size_t n = c.prompts.size(), dim = c.head_dim, group = c.q_heads / c.kv_heads;
  const std::size_t max_prompt = *std::max_element(c.prompts.begin(), c.prompts.end());
  const std::size_t max_beams = *std::max_element(c.beams.begin(), c.beams.end());
  std::size_t prefix_pages = 0, cow_pages = 0;
  for (std::size_t i = 0; i < n; ++i) {
    prefix_pages += pages_for(c.prompts[i], c.page_tokens);
    cow_pages += c.beams[i] * pages_for(c.prompts[i] + c.steps, c.page_tokens);
  }
  Pool<T, Layout> pool(pool_config(shape, c.page_tokens, prefix_pages, n, max_prompt, max_beams, c.steps));
  Cow<T> cow({shape, c.page_tokens, cow_pages, n, max_prompt, max_beams, c.steps});
  poison(pool.kv_storage());
  poison(cow.kv_storage());
  // Admitted last to first, so that batch position i is not slot i.
  std::vector<KvRequest> in_pool(n), in_cow(n);
  for (std::size_t i = n; i-- > 0;) {
    in_pool[i] = pool.admit({c.prompts[i], c.beams[i]});
    in_cow[i] = cow.admit({c.prompts[i], c.beams[i]});
  }
  CHECK(cow.free_pages() == 0);
  Batch pool_batch(n), cow_batch(n);
  pool.describe(host, std::span<const KvRequest>(in_pool), pool_batch);
  cow.describe(host, std::span<const KvRequest>(in_cow), cow_batch);
  const std::vector<std::uint32_t> token_begin(pool_batch.token_begin().begin(), pool_batch.token_begin().end());
  const std::vector<std::uint32_t> beam_begin(pool_batch.beam_begin().begin(), pool_batch.beam_begin().end());
  REQUIRE(std::equal(token_begin.begin(), token_begin.end(), cow_batch.token_begin().begin()));
  REQUIRE(std::equal(beam_begin.begin(), beam_begin.end(), cow_batch.beam_begin().begin()));
  const std::size_t total_tokens = token_begin[n], total_beams = beam_begin[n];
  std::vector<std::size_t> request_of(total_beams);
  for (std::size_t i = 0; i < n; ++i) std::fill(request_of.begin() + beam_begin[i], request_of.begin() + beam_begin[i + 1], i);

  const xgr::attention::Options options{c.q_heads};
  const double scale = 1.0 / std::sqrt(static_cast<double>(dim));
  std::vector<std::vector<T>> prompt_k, prompt_v;
  for (std::size_t layer = 0; layer < c.layers; ++layer) {
    prompt_k.push_back(random_vector<T>(rng, total_tokens * c.kv_heads * dim));
    prompt_v.push_back(random_vector<T>(rng, total_tokens * c.kv_heads * dim));
    const std::vector<T> q = random_vector<T>(rng, total_tokens * c.q_heads * dim);
    std::vector<T> out(q.size());
    xgr::attention::prefill(host, pool, pool_batch, layer, options, std::span<const T>(q), std::span<const T>(prompt_k[layer]),
                            std::span<const T>(prompt_v[layer]), std::span<T>(out));
    xgr::kv::write_prompt(host, cow, cow_batch, layer, std::span<const T>(prompt_k[layer]), std::span<const T>(prompt_v[layer]));
  }
  xgr::kv::fork(host, cow, cow_batch);

  // lineage[row][s]: the batch row whose step-s token beam row `row` decoded (the test's own ancestry).
  std::vector<std::vector<std::uint32_t>> lineage(total_beams);
  std::vector<std::vector<std::vector<T>>> step_k(c.steps), step_v(c.steps);  // [step][layer]
  for (std::size_t s = 0; s < c.steps; ++s) {
    std::vector<std::uint32_t> parents(total_beams);
    std::vector<bool> dead(total_beams, false);
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint32_t begin = beam_begin[i], end = beam_begin[i + 1];
      for (std::uint32_t row = begin; row < end; ++row) {
        parents[row] = s == 0 ? begin : static_cast<std::uint32_t>(pick(rng, begin, end - 1));
      }
      if (s > 0 && end - begin >= 2) parents[end - 1] = parents[begin];  // a parent with two children
      if (s + 1 == c.steps && end - begin >= 3) {  // a dead row at the last step, not compared
        parents[begin + 1] = xgr::no_parent;
        dead[begin + 1] = true;
      }
    }
    const xgr::BeamParents reordering{std::span<const std::uint32_t>(parents), s};
    xgr::kv::record_parents(host, pool, pool_batch, reordering);
    xgr::kv::reorder(host, cow, cow_batch, reordering);
    std::vector<std::vector<std::uint32_t>> next(total_beams);
    for (std::uint32_t row = 0; row < total_beams; ++row) {
      if (!dead[row]) next[row] = lineage[parents[row]];
      next[row].push_back(row);
    }
    lineage = std::move(next);

    for (std::size_t layer = 0; layer < c.layers; ++layer) {
      step_k[s].push_back(random_vector<T>(rng, total_beams * c.kv_heads * dim));
      step_v[s].push_back(random_vector<T>(rng, total_beams * c.kv_heads * dim));
      xgr::kv::write_step(host, pool, pool_batch, layer, s, std::span<const T>(step_k[s][layer]), std::span<const T>(step_v[s][layer]));
      xgr::kv::write_step(host, cow, cow_batch, layer, s, std::span<const T>(step_k[s][layer]), std::span<const T>(step_v[s][layer]));
    }
    for (std::size_t layer = 0; layer < c.layers; ++layer) {
      const std::vector<T> q = random_vector<T>(rng, total_beams * c.q_heads * dim);
      std::vector<T> out_pool(q.size()), out_cow(q.size());
      xgr::attention::decode(host, pool, pool_batch, layer, s, options, std::span<const T>(q), std::span<T>(out_pool));
      xgr::attention::decode(host, cow, cow_batch, layer, s, options, std::span<const T>(q), std::span<T>(out_cow));
      INFO("step " << s << ", layer " << layer << ", q_heads " << c.q_heads << ", kv_heads " << c.kv_heads << ", head_dim " << dim
                   << ", page " << c.page_tokens << ", " << Layout::name);
      Difference pool_vs_ref, cow_vs_pool;
      for (std::uint32_t row = 0; row < total_beams; ++row) {
        if (dead[row]) continue;
        const std::size_t i = request_of[row];
        REQUIRE(lineage[row].size() == s + 1);
        for (std::size_t h = 0; h < c.q_heads; ++h) {
          const std::size_t kv_head = h / group;
          std::vector<const T*> keys, values;
          for (std::size_t t = 0; t < c.prompts[i]; ++t) {
            keys.push_back(row_of(prompt_k[layer], token_begin[i] + t, kv_head, c.kv_heads, dim));
            values.push_back(row_of(prompt_v[layer], token_begin[i] + t, kv_head, c.kv_heads, dim));
          }
          for (std::size_t j = 0; j <= s; ++j) {
            keys.push_back(row_of(step_k[j][layer], lineage[row][j], kv_head, c.kv_heads, dim));
            values.push_back(row_of(step_v[j][layer], lineage[row][j], kv_head, c.kv_heads, dim));
          }
          const std::vector<double> ref = brute_attention(row_of(q, row, h, c.q_heads, dim), keys, values, dim, scale);
          const T* from_pool = row_of(out_pool, row, h, c.q_heads, dim);
          const T* from_cow = row_of(out_cow, row, h, c.q_heads, dim);
          for (std::size_t d = 0; d < dim; ++d) {
            pool_vs_ref.add(value_of(from_pool[d]), ref[d]);
            cow_vs_pool.add(value_of(from_cow[d]), value_of(from_pool[d]));
          }
        }
      }
      CHECK(pool_vs_ref.nans == 0);
      CHECK(cow_vs_pool.nans == 0);
      CHECK(pool_vs_ref.relative() < tolerance);
      CHECK(cow_vs_pool.relative() <= 1e-6);
    }
  }
}

}  // namespace

TEST_CASE("decode through recorded parents equals decode over physically reordered KV") {
  std::mt19937_64 rng = xgr::test::make_rng(807);
  const std::vector<DecodeCase> cases{
      {2, 2, 64, 4, 64, 3, {70, 129, 1}, {5, 3, 4}},
      {1, 1, 128, 8, 128, 4, {64, 200}, {6, 2}},
      {2, 2, 128, 2, 64, 2, {65}, {3}},
  };
  for (const DecodeCase& c : cases) {
    check_reorder_equivalence<bfloat16, xgr::kv::PageMajor>(rng, c, 1e-2);
    check_reorder_equivalence<float, xgr::kv::LayerMajor>(rng, c, 1e-5);
  }
  // Random shapes.
  for (int trial = 0; trial < 4; ++trial) {
    DecodeCase c;
    c.kv_heads = pick(rng, 1, 2);
    c.q_heads = c.kv_heads * pick(rng, 1, 4);
    c.head_dim = pick(rng, 0, 1) ? 64 : 128;
    c.page_tokens = 64 * pick(rng, 1, 2);
    c.steps = pick(rng, 1, 8);
    for (std::size_t i = 0, count = pick(rng, 1, 3); i < count; ++i) {
      c.prompts.push_back(pick(rng, 1, 150));
      c.beams.push_back(pick(rng, 1, 8));
    }
    check_reorder_equivalence<bfloat16, xgr::kv::LayerMajor>(rng, c, 1e-2);
  }
}

TEST_CASE("a parent row outside its request is an invalid argument") {
  const KvShape shape{1, 1, 64};
  Pool<float> pool(pool_config(shape, 64, 4, 2, 64, 4, 3));
  Cow<float> cow({shape, 64, 16, 2, 64, 4, 3});
  std::vector<KvRequest> in_pool{pool.admit({10, 3}), pool.admit({20, 2})};
  std::vector<KvRequest> in_cow{cow.admit({10, 3}), cow.admit({20, 2})};
  Batch pool_batch(2), cow_batch(2);
  pool.describe(host, std::span<const KvRequest>(in_pool), pool_batch);
  cow.describe(host, std::span<const KvRequest>(in_cow), cow_batch);  // rows [0, 3) and [3, 5)
  const auto record = [&](std::vector<std::uint32_t> parents, std::size_t level) {
    return error_of([&] { xgr::kv::record_parents(host, pool, pool_batch, {std::span<const std::uint32_t>(parents), level}); });
  };
  const auto reorder = [&](std::vector<std::uint32_t> parents, std::size_t level) {
    return error_of([&] { xgr::kv::reorder(host, cow, cow_batch, {std::span<const std::uint32_t>(parents), level}); });
  };
  CHECK(record({0, 0, 2, 3, 4}, 1) == "no error");
  CHECK(record({0, xgr::no_parent, 2, 4, 4}, 1) == "no error");
  CHECK(record({0, 3, 2, 3, 4}, 1) == invalid_argument);  // request 0's row names request 1's
  CHECK(record({0, 1, 2, 2, 4}, 1) == invalid_argument);  // request 1's row names request 0's
  CHECK(record({0, 1, 2, 3, 5}, 1) == invalid_argument);  // past the batch
  CHECK(record({0, 1, 2, 3}, 1) == invalid_argument);     // a row short
  CHECK(record({0, 1, 2, 3, 4}, 3) == invalid_argument);  // step >= max_steps
  // A bad row in a later request is found before the earlier requests' rows are written.
  CHECK(record({1, 1, 1, 3, 3}, 2) == "no error");
  CHECK(record({0, 0, 0, 3, 2}, 2) == invalid_argument);
  const std::uint32_t* level_two = pool.view().parents(in_pool[0].slot, 2);
  CHECK(std::vector<std::uint32_t>(level_two, level_two + 3) == std::vector<std::uint32_t>{1, 1, 1});
  CHECK(reorder({0, 0, 2, 3, 4}, 1) == "no error");
  CHECK(reorder({0, 3, 2, 3, 4}, 1) == invalid_argument);
  CHECK(reorder({0, 1, 2, 2, 4}, 1) == invalid_argument);
  CHECK(reorder({0, 1, 2, 3}, 1) == invalid_argument);
  CHECK(reorder({0, 1, 2, 3, 4}, 3) == invalid_argument);
}

// ---- argument errors -----------------------------------------------------------------------------------

TEST_CASE("wrong tensor sizes, head counts, layers and steps are invalid arguments") {
  const KvShape shape{2, 2, 64};
  const std::size_t dim = 64, q_heads = 4, prompt = 70, beams = 3;
  Pool<bfloat16> pool(pool_config(shape, 64, 4, 2, 100, 4, 3));
  Cow<bfloat16> cow({shape, 64, 8, 2, 100, 4, 3});
  std::fill(pool.kv_storage().begin(), pool.kv_storage().end(), bfloat16(0.0f));
  std::fill(cow.kv_storage().begin(), cow.kv_storage().end(), bfloat16(0.0f));
  const std::vector<KvRequest> in_pool{pool.admit({prompt, beams})}, in_cow{cow.admit({prompt, beams})};
  Batch pool_batch(1), cow_batch(1);
  pool.describe(host, std::span<const KvRequest>(in_pool), pool_batch);
  cow.describe(host, std::span<const KvRequest>(in_cow), cow_batch);

  using Tensor = std::vector<bfloat16>;
  const auto tensor = [&](std::size_t rows, std::size_t heads) { return Tensor(rows * heads * dim, bfloat16(0.5f)); };
  const auto c = [](const Tensor& t) { return std::span<const bfloat16>(t); };
  const Tensor q = tensor(prompt, q_heads), k = tensor(prompt, 2), v = tensor(prompt, 2);
  const Tensor q_step = tensor(beams, q_heads), k_step = tensor(beams, 2), v_step = tensor(beams, 2);
  Tensor out = tensor(prompt, q_heads), out_step = tensor(beams, q_heads);
  Tensor short_q(q.begin(), q.end() - 1), short_k(k.begin(), k.end() - 1), short_step_q(q_step.begin(), q_step.end() - 1);
  Tensor short_step_k(k_step.begin(), k_step.end() - 1);
  Tensor long_out = tensor(prompt + 1, q_heads), long_out_step = tensor(beams + 1, q_heads);
  const xgr::attention::Options options{q_heads};
  const std::vector<std::uint32_t> parents{0, 0, 1};

  SUBCASE("prefill") {
    const auto prefill = [&](const xgr::attention::Options& o, std::size_t layer, const Tensor& qq, const Tensor& kk,
                             const Tensor& vv, Tensor& oo) {
      return error_of([&] { xgr::attention::prefill(host, pool, pool_batch, layer, o, c(qq), c(kk), c(vv), std::span<bfloat16>(oo)); });
    };
    CHECK(prefill(options, 0, q, k, v, out) == "no error");
    CHECK(prefill(options, 1, q, k, v, out) == "no error");
    CHECK(prefill(options, 0, short_q, k, v, out) == invalid_argument);
    CHECK(prefill(options, 0, q, short_k, v, out) == invalid_argument);
    CHECK(prefill(options, 0, q, k, short_k, out) == invalid_argument);
    CHECK(prefill(options, 0, q, k, v, long_out) == invalid_argument);
    CHECK(prefill({3}, 0, tensor(prompt, 3), k, v, out) == invalid_argument);  // 3 query heads over 2 kv heads
    CHECK(prefill({0}, 0, q, k, v, out) == invalid_argument);
    CHECK(prefill({q_heads, std::numeric_limits<float>::infinity()}, 0, q, k, v, out) == invalid_argument);
    CHECK(prefill(options, 2, q, k, v, out) == invalid_argument);  // layer out of range
  }
  SUBCASE("write_prompt, write_step and decode on KvPool") {
    CHECK(error_of([&] { xgr::kv::write_prompt(host, pool, pool_batch, 0, c(k), c(v)); }) == "no error");
    CHECK(error_of([&] { xgr::kv::write_prompt(host, pool, pool_batch, 0, c(short_k), c(v)); }) == invalid_argument);
    CHECK(error_of([&] { xgr::kv::write_prompt(host, pool, pool_batch, 0, c(k), c(short_k)); }) == invalid_argument);
    CHECK(error_of([&] { xgr::kv::write_prompt(host, pool, pool_batch, 2, c(k), c(v)); }) == invalid_argument);
    CHECK(error_of([&] { xgr::kv::write_prompt(host, pool, pool_batch, 0, c(k_step), c(v_step)); }) == invalid_argument);

    CHECK(error_of([&] { xgr::kv::record_parents(host, pool, pool_batch, {std::span<const std::uint32_t>(parents), 0}); }) == "no error");
    CHECK(error_of([&] { xgr::kv::write_step(host, pool, pool_batch, 1, 2, c(k_step), c(v_step)); }) == "no error");
    CHECK(error_of([&] { xgr::kv::write_step(host, pool, pool_batch, 0, 0, c(short_step_k), c(v_step)); }) == invalid_argument);
    CHECK(error_of([&] { xgr::kv::write_step(host, pool, pool_batch, 0, 0, c(k_step), c(short_step_k)); }) == invalid_argument);
    CHECK(error_of([&] { xgr::kv::write_step(host, pool, pool_batch, 2, 0, c(k_step), c(v_step)); }) == invalid_argument);
    CHECK(error_of([&] { xgr::kv::write_step(host, pool, pool_batch, 0, 3, c(k_step), c(v_step)); }) == invalid_argument);
    CHECK(error_of([&] { xgr::kv::write_step(host, pool, pool_batch, 0, 0, c(k), c(v)); }) == invalid_argument);

    const auto decode = [&](const xgr::attention::Options& o, std::size_t layer, std::size_t step, const Tensor& qq, Tensor& oo) {
      return error_of([&] { xgr::attention::decode(host, pool, pool_batch, layer, step, o, c(qq), std::span<bfloat16>(oo)); });
    };
    CHECK(decode(options, 1, 0, q_step, out_step) == "no error");
    CHECK(decode(options, 0, 0, short_step_q, out_step) == invalid_argument);
    CHECK(decode(options, 0, 0, q_step, long_out_step) == invalid_argument);
    CHECK(decode({3}, 0, 0, tensor(beams, 3), out_step) == invalid_argument);
    CHECK(decode({0}, 0, 0, q_step, out_step) == invalid_argument);
    CHECK(decode(options, 2, 0, q_step, out_step) == invalid_argument);
    CHECK(decode(options, 0, 3, q_step, out_step) == invalid_argument);
  }
  SUBCASE("write_prompt, write_step and decode on the copy-on-fork cache") {
    CHECK(error_of([&] { xgr::kv::write_prompt(host, cow, cow_batch, 0, c(k), c(v)); }) == "no error");
    CHECK(error_of([&] { xgr::kv::write_prompt(host, cow, cow_batch, 0, c(short_k), c(v)); }) == invalid_argument);
    CHECK(error_of([&] { xgr::kv::write_prompt(host, cow, cow_batch, 0, c(k), c(short_k)); }) == invalid_argument);
    CHECK(error_of([&] { xgr::kv::write_prompt(host, cow, cow_batch, 2, c(k), c(v)); }) == invalid_argument);
    CHECK(error_of([&] { xgr::kv::write_step(host, cow, cow_batch, 1, 2, c(k_step), c(v_step)); }) == "no error");
    CHECK(error_of([&] { xgr::kv::write_step(host, cow, cow_batch, 0, 0, c(short_step_k), c(v_step)); }) == invalid_argument);
    CHECK(error_of([&] { xgr::kv::write_step(host, cow, cow_batch, 0, 0, c(k_step), c(short_step_k)); }) == invalid_argument);
    CHECK(error_of([&] { xgr::kv::write_step(host, cow, cow_batch, 2, 0, c(k_step), c(v_step)); }) == invalid_argument);
    CHECK(error_of([&] { xgr::kv::write_step(host, cow, cow_batch, 0, 3, c(k_step), c(v_step)); }) == invalid_argument);

    const auto decode = [&](const xgr::attention::Options& o, std::size_t layer, std::size_t step, const Tensor& qq, Tensor& oo) {
      return error_of([&] { xgr::attention::decode(host, cow, cow_batch, layer, step, o, c(qq), std::span<bfloat16>(oo)); });
    };
    CHECK(decode(options, 1, 0, q_step, out_step) == "no error");
    CHECK(decode(options, 0, 0, short_step_q, out_step) == invalid_argument);
    CHECK(decode(options, 0, 0, q_step, long_out_step) == invalid_argument);
    CHECK(decode({3}, 0, 0, tensor(beams, 3), out_step) == invalid_argument);
    CHECK(decode(options, 2, 0, q_step, out_step) == invalid_argument);
    CHECK(decode(options, 0, 3, q_step, out_step) == invalid_argument);
  }
  SUBCASE("copy-on-fork admissions") {
    CHECK(error_of([&] { (void)cow.try_admit({0, 1}); }) == invalid_argument);
    CHECK(error_of([&] { (void)cow.try_admit({101, 1}); }) == invalid_argument);
    CHECK(error_of([&] { (void)cow.try_admit({10, 5}); }) == invalid_argument);
    CHECK(error_of([&] { (void)cow.try_admit({10, 1, in_cow[0], 0}); }) == invalid_argument);  // the baseline shares nothing
    CHECK_FALSE(cow.try_admit({100, 4}).has_value());  // 8 pages, 6 taken
    CHECK(error_of([&] { (void)cow.admit({100, 4}); }) == capacity_error);
    cow.release(in_cow[0]);
    CHECK(error_of([&] { cow.release(in_cow[0]); }) == invalid_argument);
  }
}
