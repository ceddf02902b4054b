// xgr_engine — the reference GR engine.
//
// With no arguments it builds a small deterministic model and catalogue from a seed and serves a
// few synthetic users, printing each one's top items: it runs on any machine, on the GPU when this
// binary was built with CUDA and a GPU is present, on the host reference otherwise. With --model and
// --items it serves an HF-style Qwen2 folder over a catalogue file (see --help).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/engine.hpp"
#include "engine/load.hpp"
#include "engine/model.hpp"
#include "engine/weights.hpp"
#include "xgr/items/io.hpp"

#if defined(__CUDACC__)
#include <atomic>
#include <memory>

#include "engine/cuda_engine.cuh"
#include "engine/cuda_model.cuh"
#endif

namespace {

constexpr const char* usage = R"(xgr_engine — generative recommendation with trie-constrained beam search

usage: xgr_engine [options]

  (no options)          serve synthetic users on a small model and catalogue built from --seed
  --preset gr-small     the default world at benchmark size instead: 8 layers, hidden 1024, 16/4 heads
                        of 128, intermediate 3072, codes 3 x 8192, 10^6 items, histories of 342..683
                        items (prompts of 1026..2049 tokens), 256 beams
  --device D            auto (default: cuda when built with CUDA and a GPU is present), cuda or host
  --dtype T             bf16 (default), fp16 or fp32: weights, activations and KV on the GPU (fp32
                        accumulation); fp32 is the precision path (no tensor cores in attention)
  --groups-in-flight N  CUDA xgr mode: groups running at once (default 2; baseline mode runs 1)
  --streams N           CUDA xgr mode: streams the groups' kernels share (default 1; 0 = one per group)
  --graphs on|off       CUDA xgr mode: replay the decode rounds from CUDA graphs, one per shape
                        bucket (default on; baseline mode never does)
  --model DIR           an HF-style folder: config.json + model.safetensors (Qwen2ForCausalLM)
  --items FILE          the catalogue: an xgr item table (text or binary, see docs/items.md)
  --prompts FILE        one request per line: its prompt as token ids separated by spaces
  --save-default DIR    write the default model (DIR/config.json, DIR/model.safetensors), its
                        catalogue (DIR/items.txt) and prompts (DIR/prompts.txt), then serve them
  --beams B             beam width per request (default 16)
  --mode M              xgr (default): shared-prefix KvPool, early-exit selection, sparse trie filter;
                        baseline: a prompt KV copy per beam (copy-on-fork), full sort, dense masks
  --token-offset N      token id of level 0's code 0 (default 0; tokens below it are special tokens)
  --top N               items printed per request (default 5; 0 prints all)
  --users N             synthetic users (default 4)          --history N   items per history (default 16)
  --history-min N       load mode: fewest items per history (default 1)
  --seed S              seed of the default model, catalogue and users (default 2024)

  Load mode (instead of serving the prompts once):
  --load R1,R2,..       open-loop Poisson arrivals at each rate (requests/s) in turn; each request a
                        random history of --history-min..--history catalogue items and a beam width
                        of --beams or half of it
  --duration S          seconds of arrivals per rate (default 2)    --slo-ms X   latency SLO (default 50)
  --group N             requests per fixed-step group (default 8)   --json FILE  the reports as JSON
  --help                this text

Tokens: the code c of level l is token offset(l) + c, offset(l) = N + the codebook sizes of the
levels before l (N from --token-offset). Output: one line per item, "request R rank K item ID codes C0 C1 .. score S".
)";

struct Options {
  std::string model, items, prompts, save_default, json, mode = "xgr", preset, device = "auto", dtype = "bf16", graphs = "on";
  std::vector<double> load_rates;
  double duration_s = 2.0, slo_ms = 50.0;
  std::size_t group = 8, groups_in_flight = 2, streams = 1;
  std::size_t beams = 16, top = 5, users = 4, history = 16, history_min = 1, token_offset = 0;
  std::uint64_t seed = 2024;
};

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "xgr_engine: %s\n(try --help)\n", message.c_str());
  std::exit(2);
}

std::uint64_t number(const std::string& flag, const char* text) {
  char* end = nullptr;
  const unsigned long long value = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0' || text[0] == '-') fail(flag + " takes a non-negative integer, got '" + text + "'");
  return value;
}

double positive(const std::string& flag, const char* text) {
  char* end = nullptr;
  const double value = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(value > 0.0)) fail(flag + " takes a positive number, got '" + text + "'");
  return value;
}

std::vector<double> rates(const std::string& flag, const char* text) {
  std::vector<double> list;
  std::stringstream fields(text);
  for (std::string word; std::getline(fields, word, ',');) list.push_back(positive(flag, word.c_str()));
  if (list.empty()) fail(flag + " needs at least one rate");
  return list;
}

Options parse(int argc, char** argv) {
  Options o;
  bool beams_given = false, history_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    }
    if (flag.rfind("--", 0) != 0) fail("unexpected argument '" + flag + "'");
    if (i + 1 >= argc) fail("option '" + flag + "' needs a value (or is unknown)");
    const char* value = argv[++i];
    if (flag == "--model") o.model = value;
    else if (flag == "--items") o.items = value;
    else if (flag == "--prompts") o.prompts = value;
    else if (flag == "--save-default") o.save_default = value;
    else if (flag == "--beams") o.beams = number(flag, value), beams_given = true;
    else if (flag == "--top") o.top = number(flag, value);
    else if (flag == "--token-offset") o.token_offset = number(flag, value);
    else if (flag == "--users") o.users = number(flag, value);
    else if (flag == "--history") o.history = number(flag, value), history_given = true;
    else if (flag == "--history-min") o.history_min = number(flag, value);
    else if (flag == "--preset") o.preset = value;
    else if (flag == "--device") o.device = value;
    else if (flag == "--dtype") o.dtype = value;
    else if (flag == "--groups-in-flight") o.groups_in_flight = number(flag, value);
    else if (flag == "--streams") o.streams = number(flag, value);
    else if (flag == "--graphs") o.graphs = value;
    else if (flag == "--seed") o.seed = number(flag, value);
    else if (flag == "--load") o.load_rates = rates(flag, value);
    else if (flag == "--duration") o.duration_s = positive(flag, value);
    else if (flag == "--slo-ms") o.slo_ms = positive(flag, value);
    else if (flag == "--group") o.group = number(flag, value);
    else if (flag == "--json") o.json = value;
    else if (flag == "--mode") o.mode = value;
    else fail("unknown option '" + flag + "'");
  }
  if (o.preset == "gr-small") {
    if (!beams_given) o.beams = 256;
    if (!history_given) o.history = 683;
    if (o.history_min == 1) o.history_min = 342;
  } else if (!o.preset.empty()) {
    fail("--preset takes gr-small, got '" + o.preset + "'");
  }
  if (o.model.empty() != o.items.empty()) fail("--model and --items go together");
  if (!o.model.empty() && !o.preset.empty()) fail("--preset builds its own model; it does not go with --model");
  if (!o.model.empty() && o.prompts.empty()) fail("--model needs --prompts");
  if (o.beams == 0) fail("--beams must be at least 1");
  if (o.group == 0) fail("--group must be at least 1");
  if (o.mode != "xgr" && o.mode != "baseline") fail("--mode is xgr or baseline, got '" + o.mode + "'");
  if (o.history == 0) fail("--history must be at least 1");
  if (o.history_min == 0 || o.history_min > o.history) fail("--history-min must be in 1..--history");
  if (o.device != "auto" && o.device != "cuda" && o.device != "host") fail("--device is auto, cuda or host, got '" + o.device + "'");
#if !defined(__CUDACC__)
  if (o.device == "cuda") fail("--device cuda: this binary was built without CUDA");
#endif
  if (o.dtype != "bf16" && o.dtype != "fp16" && o.dtype != "fp32") fail("--dtype is bf16, fp16 or fp32, got '" + o.dtype + "'");
  if (o.groups_in_flight == 0) fail("--groups-in-flight must be at least 1");
  if (o.graphs != "on" && o.graphs != "off") fail("--graphs is on or off, got '" + o.graphs + "'");
  return o;
}

std::vector<std::uint32_t> level_offsets(const xgr::ItemTable& table, std::size_t first) {
  std::vector<std::uint32_t> offsets;
  auto next = static_cast<std::uint32_t>(first);
  for (std::uint32_t size : table.codebook_sizes) {
    offsets.push_back(next);
    next += size;
  }
  return offsets;
}

// The default world: a catalogue of 3 levels x 32 codes, a 2-layer model whose vocabulary is the
// 96 code tokens, and users whose histories are random catalogue items. --preset gr-small scales it
// to the benchmark shape (10^6 items of 3 x 8192 codes, 8 layers of hidden 1024).
struct World {
  xgr::engine::ModelConfig config;
  xgr::engine::ModelWeights weights;
  xgr::ItemTable table;
  std::vector<std::vector<std::uint32_t>> prompts;
};

World default_world(const Options& o) {
  World w;
  std::mt19937_64 rng(o.seed);
  const bool large = o.preset == "gr-small";
  const std::uint32_t codebook = large ? 8192 : 32;
  const std::uint64_t items = large ? 1000000 : 2000;
  w.table.codebook_sizes = {codebook, codebook, codebook};
  std::uniform_int_distribution<std::uint32_t> code(0, codebook - 1);
  for (std::uint64_t item = 0; item < items; ++item) {
    w.table.item_ids.push_back(100000 + item);
    for (int l = 0; l < 3; ++l) w.table.codes.push_back(code(rng));
  }
  w.config.hidden_size = large ? 1024 : 128;
  w.config.intermediate_size = large ? 3072 : 256;
  w.config.num_hidden_layers = large ? 8 : 2;
  w.config.num_attention_heads = large ? 16 : 2;
  w.config.num_key_value_heads = large ? 4 : 1;
  w.config.head_dim = large ? 128 : 64;
  w.config.vocab_size = 3 * codebook + o.token_offset;
  w.config.tie_word_embeddings = true;
  w.config.torch_dtype = "float32";
  // Small weights keep the residual stream of the deeper model in a sane range.
  w.weights = xgr::engine::random_weights(w.config, rng(), large ? 0.02f : 0.2f);
  const std::vector<std::uint32_t> offsets = level_offsets(w.table, o.token_offset);
  std::uniform_int_distribution<std::size_t> pick(0, w.table.size() - 1), length(o.history_min, o.history);
  for (std::size_t u = 0; u < o.users; ++u) {
    std::vector<std::uint32_t> prompt;
    for (std::size_t h = large ? length(rng) : o.history; h > 0; --h) {
      const std::size_t item = pick(rng);
      for (std::size_t l = 0; l < 3; ++l) prompt.push_back(offsets[l] + w.table.codes[item * 3 + l]);
    }
    w.prompts.push_back(std::move(prompt));
  }
  return w;
}

std::vector<std::vector<std::uint32_t>> read_prompts(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot open prompts file '" + path + "'");
  std::vector<std::vector<std::uint32_t>> prompts;
  std::string line;
  for (std::size_t number_line = 1; std::getline(in, line); ++number_line) {
    std::istringstream fields(line);
    std::vector<std::uint32_t> prompt;
    for (std::string word; fields >> word;) {
      char* end = nullptr;
      const unsigned long value = std::strtoul(word.c_str(), &end, 10);
      if (*end != '\0' || word[0] == '-' || value > 0xffffffffUL) fail(path + " line " + std::to_string(number_line) + ": '" + word + "' is not a token id");
      prompt.push_back(static_cast<std::uint32_t>(value));
    }
    if (!prompt.empty()) prompts.push_back(std::move(prompt));
  }
  if (prompts.empty()) fail(path + " holds no prompt");
  return prompts;
}

// One open-loop experiment. The host engine serves a group and returns; the CUDA engine takes a
// group when one of its slots frees up and answers from its completion thread.
template <class Mode, class MakeRequest>
xgr::engine::LoadReport load_once(xgr::engine::HostEngine<Mode>& engine, const xgr::engine::LoadOptions& options, MakeRequest& make_request) {
  return xgr::engine::run_open_loop(options, make_request, [&](std::span<const xgr::engine::Request> group) { (void)engine.serve(group); });
}

#if defined(__CUDACC__)
template <class Mode, class T, class MakeRequest>
xgr::engine::LoadReport load_once(xgr::engine::CudaEngine<Mode, T>& engine, const xgr::engine::LoadOptions& options, MakeRequest& make_request) {
  std::atomic<std::size_t> failed{0};
  auto submit = [&](auto&& take, auto complete) {
    auto pending = std::make_shared<xgr::engine::PendingGroup>();
    engine.submit([&] {
                    *pending = take();
                    return pending->requests;
                  },
                  [&failed, pending, complete](std::vector<xgr::engine::Response>&, std::exception_ptr error) {
                    if (error) ++failed;
                    complete(*pending);
                  });
  };
  xgr::engine::LoadReport report = xgr::engine::run_open_loop_async(options, make_request, submit);
  if (failed != 0) std::fprintf(stderr, "xgr_engine: %zu groups failed\n", failed.load());
  return report;
}
#endif

// Warm-up, untimed, so that the first use of each code path (kernel variants chosen by shape,
// cuBLAS's heuristics, first touches of memory, the capture of a decode graph) does not land in a
// measured tail latency. The host engine: a group of every size the load can form.
template <class Mode, class MakeRequest>
void warm_up(const Options& o, xgr::engine::HostEngine<Mode>& engine, MakeRequest& make_request) {
  std::fprintf(stderr, "warming up: a group of each size 1..%zu...\n", o.group);
  std::mt19937_64 rng(o.seed ^ 0x5eed);
  for (std::size_t size = 1; size <= o.group; ++size) {
    std::vector<xgr::engine::Request> warm;
    for (std::size_t i = 0; i < size; ++i) warm.push_back(make_request(rng));
    (void)engine.serve(warm);
  }
}

#if defined(__CUDACC__)
// The CUDA engine: a group of every size and every mix of the two beam widths (the decode graph
// buckets the load forms, up to the attention split count of small groups), submitted once per
// slot at a time so that every slot captures its own graphs.
template <class Mode, class T, class MakeRequest>
void warm_up(const Options& o, xgr::engine::CudaEngine<Mode, T>& engine, MakeRequest& make_request) {
  const std::size_t slots = Mode::overlap_groups ? o.groups_in_flight : 1;
  std::fprintf(stderr, "warming up: groups of each size 1..%zu and mix of beam widths, on %zu slots...\n", o.group, slots);
  std::mt19937_64 rng(o.seed ^ 0x5eed);
  for (std::size_t size = 1; size <= o.group; ++size) {
    for (std::size_t wide = 0; wide <= size; ++wide) {
      std::vector<xgr::engine::Request> group;
      for (std::size_t i = 0; i < size; ++i) {
        group.push_back(make_request(rng));
        group.back().beams = i < wide ? o.beams : std::max<std::size_t>(1, o.beams / 2);
      }
      std::exception_ptr failure;
      for (std::size_t s = 0; s < slots; ++s) {
        engine.submit([&] { return group; }, [&failure, s](std::vector<xgr::engine::Response>&, std::exception_ptr error) {
          if (s == 0 && error) failure = error;  // the groups are identical: one's error is every one's
        });
      }
      engine.drain();
      if (failure) std::rethrow_exception(failure);
    }
  }
}
#endif

// Open-loop load at each rate: random histories of the catalogue's items, beam widths B or B/2.
template <class Engine>
int run_load(const Options& o, const World& world, Engine& engine) {
  const std::vector<std::uint32_t> offsets = level_offsets(world.table, o.token_offset);
  const std::size_t levels = world.table.levels();
  auto make_request = [&](std::mt19937_64& rng) {
    std::uniform_int_distribution<std::size_t> length(o.history_min, o.history), item(0, world.table.size() - 1);
    xgr::engine::Request request;
    for (std::size_t h = length(rng); h > 0; --h) {
      const std::size_t i = item(rng);
      for (std::size_t l = 0; l < levels; ++l) request.prompt_tokens.push_back(offsets[l] + world.table.codes[i * levels + l]);
    }
    request.beams = rng() % 2 == 0 ? o.beams : std::max<std::size_t>(1, o.beams / 2);
    return request;
  };
  warm_up(o, engine, make_request);
  std::vector<xgr::engine::LoadReport> reports;
  std::fputs(xgr::engine::report_table_header().c_str(), stdout);
  for (std::size_t i = 0; i < o.load_rates.size(); ++i) {
    const xgr::engine::LoadOptions options{o.load_rates[i], o.duration_s, o.slo_ms, o.group, o.seed + i};
    reports.push_back(load_once(engine, options, make_request));
    std::fputs(xgr::engine::report_table_row(reports.back()).c_str(), stdout);
    std::fflush(stdout);
  }
  if (!o.json.empty()) {
    std::ofstream out(o.json);
    out << xgr::engine::report_json(reports);
    if (!out) throw xgr::Error(xgr::ErrorKind::io, "xgr_engine --json", "cannot write " + o.json);
  }
  if constexpr (requires { engine.stats().graph_launches; }) {
    const auto stats = engine.stats();
    std::printf("decode rounds: %llu groups replayed from CUDA graphs, %llu launched plainly; %llu graphs captured, %llu not capturable\n",
                static_cast<unsigned long long>(stats.graph_launches), static_cast<unsigned long long>(stats.device_launches),
                static_cast<unsigned long long>(stats.graph_captures), static_cast<unsigned long long>(stats.graph_fallbacks));
  }
  return 0;
}

// Serves the prompts once and prints each request's items, or runs the load experiment.
template <class Engine>
int serve(const Options& o, const World& world, Engine& engine) {
  if (!o.load_rates.empty()) return run_load(o, world, engine);
  std::vector<xgr::engine::Request> requests;
  for (const auto& prompt : world.prompts) requests.push_back({prompt, o.beams});
  const std::vector<xgr::engine::Response> responses = engine.serve(requests);
  for (std::size_t r = 0; r < responses.size(); ++r) {
    const auto& items = responses[r].items;
    const std::size_t shown = o.top == 0 ? items.size() : std::min(o.top, items.size());
    for (std::size_t k = 0; k < shown; ++k) {
      std::printf("request %zu rank %zu item %llu codes", r, k + 1, static_cast<unsigned long long>(items[k].item));
      for (std::uint32_t c : items[k].codes) std::printf(" %u", c);
      std::printf(" score %.6f\n", static_cast<double>(items[k].score));
    }
  }
  return 0;
}

#if defined(__CUDACC__)
bool use_cuda(const Options& o) {
  if (o.device == "host") return false;
  if (xgr::cuda_device_count() > 0) return true;
  if (o.device == "cuda") fail("--device cuda: no GPU is visible");
  return false;
}

template <class T>
int serve_on_gpu(const Options& o, const World& world, const xgr::ItemTrie& trie, const std::vector<std::uint32_t>& offsets,
                 const xgr::engine::EngineLimits& limits) {
  cudaDeviceProp properties{};
  XGR_CUDA_CHECK(cudaGetDeviceProperties(&properties, 0));
  std::printf("running on %s (%s, %s mode%s)\n", properties.name, o.dtype.c_str(), o.mode.c_str(),
              o.mode == "xgr" && o.graphs == "on" ? ", decode graphs" : "");
  const xgr::engine::CudaModel<T> model(world.config, world.weights);
  const xgr::engine::CudaEngineOptions options{o.groups_in_flight, o.streams, o.graphs == "on"};
  if (o.mode == "baseline") {
    xgr::engine::CudaEngine<xgr::engine::BaselineMode, T> engine(model, trie, offsets, limits, options);
    return serve(o, world, engine);
  }
  xgr::engine::CudaEngine<xgr::engine::XgrMode, T> engine(model, trie, offsets, limits, options);
  return serve(o, world, engine);
}

int serve_on_gpu(const Options& o, const World& world, const xgr::ItemTrie& trie, const std::vector<std::uint32_t>& offsets,
                 const xgr::engine::EngineLimits& limits) {
  if (o.dtype == "fp16") return serve_on_gpu<xgr::half>(o, world, trie, offsets, limits);
  if (o.dtype == "fp32") return serve_on_gpu<float>(o, world, trie, offsets, limits);
  return serve_on_gpu<xgr::bfloat16>(o, world, trie, offsets, limits);
}
#else
bool use_cuda(const Options&) { return false; }  // parse() rejected --device cuda

int serve_on_gpu(const Options&, const World&, const xgr::ItemTrie&, const std::vector<std::uint32_t>&, const xgr::engine::EngineLimits&) {
  return 1;  // unreachable: use_cuda is false without CUDA
}
#endif

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
#if defined(__CUDACC__)
  // Load every kernel when the context is created instead of at its first launch, which would
  // otherwise stall whichever group first takes a new code path (unless the user chose otherwise).
  setenv("CUDA_MODULE_LOADING", "EAGER", 0);
#endif
  try {
    World world;
    if (o.model.empty()) {
      if (!o.preset.empty()) std::fprintf(stderr, "building the %s model and catalogue...\n", o.preset.c_str());
      world = default_world(o);
      std::printf("default model: %zu layers, hidden %zu, %zu/%zu heads of %zu, vocab %zu; catalogue of %zu items (seed %llu)\n",
                  world.config.num_hidden_layers, world.config.hidden_size, world.config.num_attention_heads, world.config.num_key_value_heads,
                  world.config.head_dim, world.config.vocab_size, world.table.size(), static_cast<unsigned long long>(o.seed));
      if (!o.save_default.empty()) {
        xgr::engine::save_model_folder(o.save_default, world.config, world.weights);
        xgr::save_item_table(o.save_default + "/items.txt", world.table, xgr::ItemFileFormat::text);
        std::ofstream prompts(o.save_default + "/prompts.txt");
        for (const auto& prompt : world.prompts) {
          for (std::size_t t = 0; t < prompt.size(); ++t) prompts << (t ? " " : "") << prompt[t];
          prompts << "\n";
        }
        std::printf("saved to %s (config.json, model.safetensors, items.txt, prompts.txt)\n", o.save_default.c_str());
      }
    } else {
      xgr::engine::LoadedModel loaded = xgr::engine::load_model_folder(o.model);
      world.config = std::move(loaded.config);
      world.weights = std::move(loaded.weights);
      world.table = xgr::load_item_table(o.items);
      world.prompts = read_prompts(o.prompts);
    }
    const xgr::ItemTrie trie = xgr::build_item_trie(world.table);
    std::size_t longest = 1;
    for (const auto& prompt : world.prompts) longest = std::max(longest, prompt.size());
    if (!o.load_rates.empty()) longest = std::max(longest, o.history * world.table.levels());
    const xgr::engine::EngineLimits limits{o.group, o.beams, longest, 64};
    const std::vector<std::uint32_t> offsets = level_offsets(world.table, o.token_offset);
    if (use_cuda(o)) return serve_on_gpu(o, world, trie, offsets, limits);
    std::printf("running on the host reference (%s mode)\n", o.mode.c_str());
    const xgr::engine::HostModel model(world.config, std::move(world.weights));
    if (o.mode == "baseline") {
      xgr::engine::HostEngine<xgr::engine::BaselineMode> engine(model, trie, offsets, limits);
      return serve(o, world, engine);
    }
    xgr::engine::HostEngine<xgr::engine::XgrMode> engine(model, trie, offsets, limits);
    return serve(o, world, engine);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "xgr_engine: %s\n", error.what());
    return 1;
  }
  return 0;
}
