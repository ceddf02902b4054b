// xgr_beam_replay — replays recorded logits through xgr::BeamSearcher: the C++ half of the HF oracle.
//
// tests/oracle/hf_beam_oracle.py runs HF transformers' constrained beam search, records the raw
// logits of every step, and asks this tool what xgr's BeamSearcher selects from the same logits.
// Because HF's running beams after each step are sorted best first — exactly xgr's beam slots —
// HF's logits row r * B + j of step l is the row of xgr's slot j of request r at step l, as long as
// both searches make the same selections; any divergence shows up as different results.
//
//   xgr_beam_replay --items ITEMS --logits LOGITS [--exec host|cuda] [--expect FILE]
//   xgr_beam_replay --make-fixture DIR
//
// ITEMS is an item table (xgr/items/io.hpp, text or binary). LOGITS is the little-endian file
// described in tests/oracle/README.md. The result goes to stdout in the text format described there
// (identical for --exec host and --exec cuda: the contract is bit-identical selections and scores).
// --expect FILE compares the output with FILE instead and reports the first differing line.
// --make-fixture writes the tiny deterministic catalogue and logits of tests/oracle/fixture/.
//
// Exit codes: 0 success (or output equal to --expect), 1 output differs from --expect,
// 2 bad usage or input, 77 --exec cuda without a CUDA device (or a build without CUDA).
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <iterator>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <xgr/beam/host.hpp>
#include <xgr/items/io.hpp>
#include <xgr/xgr.hpp>
#if defined(__CUDACC__)
#include <xgr/beam/cuda.cuh>
#include <xgr/items/cuda.cuh>
#include <xgr/xgr.cuh>
#endif

namespace {

constexpr int exit_differs = 1;
constexpr int exit_usage = 2;
constexpr int exit_skip = 77;

constexpr char logits_magic[8] = {'X', 'G', 'R', 'L', 'O', 'G', 'I', 'T'};
constexpr std::uint32_t logits_version = 1;

// A recorded search: levels steps of (requests x beam_width) rows x vocab float32 logits.
struct LogitsFile {
  std::uint32_t levels = 0;
  std::uint32_t requests = 0;
  std::uint32_t beam_width = 0;
  std::uint32_t vocab = 0;
  std::vector<std::uint32_t> level_token_offsets;
  std::vector<float> logits;  // step-major: step, row (= request * beam_width + slot), token

  [[nodiscard]] std::size_t rows() const { return std::size_t{requests} * beam_width; }
  [[nodiscard]] std::size_t step_elements() const { return rows() * vocab; }
  [[nodiscard]] xgr::MatrixView<const float> step(std::size_t level) const {
    return xgr::matrix_view(logits.data() + level * step_elements(), rows(), vocab);
  }
};

[[noreturn]] void bad_logits(const std::string& path, const std::string& reason) {
  throw xgr::Error(xgr::ErrorKind::io, "read_logits(" + path + ")", reason);
}

template <class T>
void write_le(std::ostream& out, T value) {
  xgr::items::detail::write_le(out, value);
}

LogitsFile read_logits(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) bad_logits(path, "cannot open the file");
  const auto file_bytes = static_cast<std::uint64_t>(in.tellg());
  in.seekg(0);
  char magic[8] = {};
  if (!in.read(magic, 8) || std::memcmp(magic, logits_magic, 8) != 0) bad_logits(path, "not an xgr logits file (magic XGRLOGIT)");
  LogitsFile file;
  std::uint32_t version = 0;
  using xgr::items::detail::read_le;
  if (!read_le(in, version) || version != logits_version) bad_logits(path, "unsupported version " + std::to_string(version));
  if (!read_le(in, file.levels) || !read_le(in, file.requests) || !read_le(in, file.beam_width) || !read_le(in, file.vocab)) {
    bad_logits(path, "truncated header");
  }
  if (file.levels == 0 || file.levels > xgr::max_item_levels || file.requests == 0 || file.beam_width == 0 ||
      file.vocab == 0 || file.vocab > (1u << 24)) {
    bad_logits(path, "implausible header: levels " + std::to_string(file.levels) + ", requests " + std::to_string(file.requests) +
                         ", beam width " + std::to_string(file.beam_width) + ", vocab " + std::to_string(file.vocab));
  }
  file.level_token_offsets.resize(file.levels);
  for (auto& offset : file.level_token_offsets) {
    if (!read_le(in, offset)) bad_logits(path, "truncated header");
  }
  const std::uint64_t header_bytes = 8 + 4 * 5 + 4 * std::uint64_t{file.levels};
  const std::uint64_t values = std::uint64_t{file.levels} * file.requests * file.beam_width * file.vocab;
  if (file_bytes != header_bytes + 4 * values) {
    bad_logits(path, "the header announces " + std::to_string(values) + " float32 logits (" +
                         std::to_string(header_bytes + 4 * values) + " bytes in all), the file has " +
                         std::to_string(file_bytes) + " bytes");
  }
  file.logits.resize(values);
  for (float& value : file.logits) {
    std::uint32_t bits = 0;
    if (!read_le(in, bits)) bad_logits(path, "truncated data");
    std::memcpy(&value, &bits, sizeof value);
  }
  return file;
}

void write_logits(const std::string& path, const LogitsFile& file) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw xgr::Error(xgr::ErrorKind::io, "write_logits", "cannot create " + path);
  out.write(logits_magic, 8);
  write_le(out, logits_version);
  write_le(out, file.levels);
  write_le(out, file.requests);
  write_le(out, file.beam_width);
  write_le(out, file.vocab);
  for (std::uint32_t offset : file.level_token_offsets) write_le(out, offset);
  for (float value : file.logits) {
    std::uint32_t bits = 0;
    std::memcpy(&bits, &value, sizeof bits);
    write_le(out, bits);
  }
  if (!out.flush()) throw xgr::Error(xgr::ErrorKind::io, "write_logits", "writing " + path + " failed");
}

// What the searcher did, copied to the host: per step the live beams and, per slot, the parent row,
// the chosen token and the running score; then the final results.
struct StepTrace {
  std::vector<std::uint32_t> live;      // requests
  std::vector<std::uint32_t> ancestry;  // slots: parent row
  std::vector<std::uint32_t> tokens;    // slots: the token chosen at this step
  std::vector<float> scores;            // slots
};

struct Trace {
  std::vector<std::uint32_t> row_begin;
  std::vector<StepTrace> steps;
  std::vector<std::uint32_t> counts;       // requests
  std::vector<std::uint32_t> codes;        // slots x levels
  std::vector<float> scores;               // slots
  std::vector<xgr::ItemId> item_ids;       // slots
  std::vector<std::uint32_t> item_counts;  // slots
};

xgr::BeamConfig make_config(const LogitsFile& file) {
  xgr::BeamConfig config;
  config.max_requests = file.requests;
  config.max_beam_width = file.beam_width;
  config.vocab = file.vocab;
  config.level_token_offsets = file.level_token_offsets;
  return config;
}

void size_results(Trace& trace, std::size_t slots, std::size_t requests, std::size_t levels) {
  trace.counts.assign(requests, 0);
  trace.codes.assign(slots * levels, 0);
  trace.scores.assign(slots, 0.0f);
  trace.item_ids.assign(slots, 0);
  trace.item_counts.assign(slots, 0);
}

Trace run_host(const xgr::ItemTrie& trie, const LogitsFile& file) {
  const xgr::BeamConfig config = make_config(file);
  xgr::BeamSearcher searcher(xgr::exec::host, trie, config);
  const std::vector<std::uint32_t> widths(file.requests, file.beam_width);
  searcher.begin(xgr::exec::host, widths);
  Trace trace;
  trace.row_begin.assign(searcher.row_begin().begin(), searcher.row_begin().end());
  const std::size_t slots = searcher.slot_count();
  for (std::size_t level = 0; level < file.levels; ++level) {
    searcher.step(xgr::exec::host, file.step(level));
    StepTrace step;
    step.live.assign(searcher.live_beams().begin(), searcher.live_beams().end());
    step.ancestry.assign(searcher.ancestry(level).begin(), searcher.ancestry(level).end());
    step.scores.assign(searcher.beam_scores().begin(), searcher.beam_scores().end());
    const xgr::MatrixView<const std::uint32_t> tokens = searcher.tokens();
    for (std::size_t row = 0; row < slots; ++row) step.tokens.push_back(tokens(row, level));
    trace.steps.push_back(std::move(step));
  }
  size_results(trace, slots, file.requests, file.levels);
  searcher.finalize(xgr::exec::host, xgr::BeamResults{xgr::matrix_view(trace.codes.data(), slots, file.levels),
                                                      trace.scores, trace.item_ids, trace.item_counts, trace.counts});
  return trace;
}

#if defined(__CUDACC__)
template <class T>
std::vector<T> download(std::span<const T> device) {
  const auto host = xgr::to_host(device);
  return std::vector<T>(host.data(), host.data() + host.size());
}

Trace run_cuda(const xgr::ItemTrie& trie, const LogitsFile& file) {
  xgr::Stream stream;
  const xgr::exec::cuda exec = stream.exec();
  const xgr::DeviceItemTrie device_trie(trie, exec);
  const xgr::BeamConfig config = make_config(file);
  xgr::BeamSearcher<xgr::exec::cuda> searcher(exec, device_trie, config);
  const auto device_logits = xgr::to_device(std::span<const float>(file.logits));
  const std::vector<std::uint32_t> widths(file.requests, file.beam_width);
  searcher.begin(exec, widths);
  Trace trace;
  trace.row_begin.assign(searcher.row_begin().begin(), searcher.row_begin().end());
  const std::size_t slots = searcher.slot_count();
  for (std::size_t level = 0; level < file.levels; ++level) {
    const xgr::MatrixView<const float> logits =
        xgr::matrix_view(device_logits.data() + level * file.step_elements(), file.rows(), file.vocab);
    searcher.step(exec, logits);
    stream.synchronize();  // the state copies below run on another stream
    StepTrace step;
    step.live = download(searcher.live_beams());
    step.ancestry = download(searcher.ancestry(level));
    step.scores = download(searcher.beam_scores());
    const xgr::MatrixView<const std::uint32_t> tokens = searcher.tokens();
    const std::vector<std::uint32_t> all_tokens = download(std::span<const std::uint32_t>(tokens.data, tokens.extent()));
    for (std::size_t row = 0; row < slots; ++row) step.tokens.push_back(all_tokens[row * tokens.row_stride + level]);
    trace.steps.push_back(std::move(step));
  }
  xgr::DeviceBuffer<std::uint32_t> codes(slots * file.levels), item_counts(slots), counts(file.requests);
  xgr::DeviceBuffer<float> scores(slots);
  xgr::DeviceBuffer<xgr::ItemId> item_ids(slots);
  searcher.finalize(exec, xgr::BeamResults{xgr::matrix_view(codes.data(), slots, file.levels), scores.span(), item_ids.span(),
                                           item_counts.span(), counts.span()});
  stream.synchronize();
  trace.counts = download(std::span<const std::uint32_t>(counts.span()));
  trace.codes = download(std::span<const std::uint32_t>(codes.span()));
  trace.scores = download(std::span<const float>(scores.span()));
  trace.item_ids = download(std::span<const xgr::ItemId>(item_ids.span()));
  trace.item_counts = download(std::span<const std::uint32_t>(item_counts.span()));
  return trace;
}
#endif

void append(std::string& out, const char* format, auto... values) {
  char line[256];
  const int length = std::snprintf(line, sizeof line, format, values...);
  out.append(line, static_cast<std::size_t>(length > 0 ? length : 0));
}

// The text format of tests/oracle/README.md. Scores print with 9 significant digits, enough to
// give back the exact float. Only live slots are printed.
std::string format_trace(const Trace& trace, const LogitsFile& file) {
  std::string out = "xgr-beam-replay 1\n";
  append(out, "batch requests %u beam_width %u levels %u vocab %u\n", file.requests, file.beam_width, file.levels, file.vocab);
  for (std::size_t level = 0; level < trace.steps.size(); ++level) {
    const StepTrace& step = trace.steps[level];
    for (std::size_t request = 0; request < file.requests; ++request) {
      const std::uint32_t first_row = trace.row_begin[request];
      append(out, "step %zu request %zu live %u\n", level, request, step.live[request]);
      for (std::uint32_t slot = 0; slot < step.live[request]; ++slot) {
        const std::uint32_t row = first_row + slot;
        append(out, "slot %u parent %u token %u score %.9g\n", slot, step.ancestry[row] - first_row, step.tokens[row],
               static_cast<double>(step.scores[row]));
      }
    }
  }
  for (std::size_t request = 0; request < file.requests; ++request) {
    const std::uint32_t first_row = trace.row_begin[request];
    append(out, "result request %zu count %u\n", request, trace.counts[request]);
    for (std::uint32_t slot = 0; slot < trace.counts[request]; ++slot) {
      const std::uint32_t row = first_row + slot;
      append(out, "beam %u codes", slot);
      for (std::size_t level = 0; level < file.levels; ++level) append(out, " %u", trace.codes[row * file.levels + level]);
      append(out, " score %.9g item %llu items %u\n", static_cast<double>(trace.scores[row]),
             static_cast<unsigned long long>(trace.item_ids[row]), trace.item_counts[row]);
    }
  }
  return out;
}

// Compares the output with an expected file line by line; prints the first difference.
int compare_with(const std::string& output, const std::string& expected_path) {
  std::ifstream in(expected_path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "xgr_beam_replay: cannot open the expected output %s\n", expected_path.c_str());
    return exit_usage;
  }
  const std::string expected((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream got_lines(output), want_lines(expected);
  std::string got, want;
  for (std::size_t line = 1;; ++line) {
    const bool more_got = static_cast<bool>(std::getline(got_lines, got));
    const bool more_want = static_cast<bool>(std::getline(want_lines, want));
    if (!more_got && !more_want) break;
    if (!want.empty() && want.back() == '\r') want.pop_back();
    if (more_got != more_want || got != want) {
      std::fprintf(stderr, "xgr_beam_replay: output differs from %s at line %zu\n  expected: %s\n  got:      %s\n",
                   expected_path.c_str(), line, more_want ? want.c_str() : "<end of file>",
                   more_got ? got.c_str() : "<end of output>");
      return exit_differs;
    }
  }
  std::printf("xgr_beam_replay: output equals %s\n", expected_path.c_str());
  return 0;
}

// ---- the fixture of tests/oracle/fixture/ ------------------------------------------------------
//
// Deterministic on every platform: integer arithmetic only (splitmix64), logits are multiples of
// 1/4 so that many candidates of a row tie exactly and the lower-index tie break is exercised.
// L = 3 levels of codebook 4; tokens 0..1 are special (never allowed), level l code c is token
// 2 + 4 l + c, tokens 14..15 are outside every level (they only enter the softmax). Level 0 uses
// only 3 codes, so step 0 keeps 3 < B = 4 beams; two items share a tuple (a duplicate leaf).
struct SplitMix64 {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  std::uint32_t below(std::uint32_t bound) { return static_cast<std::uint32_t>(next() % bound); }
};

int make_fixture(const std::string& directory) {
  SplitMix64 random{20261124};
  xgr::ItemTable table;
  table.codebook_sizes = {4, 4, 4};
  for (std::uint32_t item = 0; item < 24; ++item) {
    table.item_ids.push_back(100 + 3 * item);
    table.codes.push_back(random.below(3));
    table.codes.push_back(random.below(4));
    table.codes.push_back(random.below(4));
  }
  table.item_ids.push_back(999);  // a duplicate of the first item's tuple
  table.codes.insert(table.codes.end(), table.codes.begin(), table.codes.begin() + 3);
  xgr::save_item_table(directory + "/items.txt", table, xgr::ItemFileFormat::text);

  LogitsFile file;
  file.levels = 3;
  file.requests = 2;
  file.beam_width = 4;
  file.vocab = 16;
  file.level_token_offsets = {2, 6, 10};
  file.logits.resize(file.levels * file.step_elements());
  for (float& logit : file.logits) logit = static_cast<float>(static_cast<int>(random.below(25)) - 12) / 4.0f;
  write_logits(directory + "/logits.bin", file);
  std::printf("xgr_beam_replay: wrote %s/items.txt and %s/logits.bin\n", directory.c_str(), directory.c_str());
  return 0;
}

void usage() {
  std::fprintf(stderr,
               "usage: xgr_beam_replay --items ITEMS --logits LOGITS [--exec host|cuda] [--expect FILE]\n"
               "       xgr_beam_replay --make-fixture DIR\n"
               "Replays recorded logits through xgr::BeamSearcher (see tests/oracle/README.md).\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string items_path, logits_path, exec = "host", expect_path, fixture_directory;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      usage();
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "xgr_beam_replay: %s needs a value\n", flag.c_str());
      usage();
      return exit_usage;
    }
    const std::string value = argv[++i];
    if (flag == "--items") {
      items_path = value;
    } else if (flag == "--logits") {
      logits_path = value;
    } else if (flag == "--exec") {
      exec = value;
    } else if (flag == "--expect") {
      expect_path = value;
    } else if (flag == "--make-fixture") {
      fixture_directory = value;
    } else {
      std::fprintf(stderr, "xgr_beam_replay: unknown option %s\n", flag.c_str());
      usage();
      return exit_usage;
    }
  }
  try {
    if (!fixture_directory.empty()) return make_fixture(fixture_directory);
    if (items_path.empty() || logits_path.empty() || (exec != "host" && exec != "cuda")) {
      usage();
      return exit_usage;
    }
    const xgr::ItemTable table = xgr::load_item_table(items_path);
    const xgr::ItemTrie trie = xgr::build_item_trie(table);
    const LogitsFile file = read_logits(logits_path);
    if (file.levels != trie.levels()) {
      std::fprintf(stderr, "xgr_beam_replay: the logits file has %u steps, the catalogue %zu levels\n", file.levels, trie.levels());
      return exit_usage;
    }
    std::fprintf(stderr, "xgr_beam_replay: %zu items (%zu distinct tuples), %u requests x %u beams, vocab %u, exec %s\n",
                 trie.item_count(), trie.leaf_count(), file.requests, file.beam_width, file.vocab, exec.c_str());
    Trace trace;
    if (exec == "host") {
      trace = run_host(trie, file);
    } else {
#if defined(__CUDACC__)
      if (xgr::cuda_device_count() == 0) {
        std::fprintf(stderr, "xgr_beam_replay: --exec cuda, but no CUDA device here (skipped)\n");
        return exit_skip;
      }
      trace = run_cuda(trie, file);
#else
      std::fprintf(stderr, "xgr_beam_replay: --exec cuda needs a build with XGR_CUDA=ON (skipped)\n");
      return exit_skip;
#endif
    }
    const std::string output = format_trace(trace, file);
    if (!expect_path.empty()) return compare_with(output, expect_path);
    std::fwrite(output.data(), 1, output.size(), stdout);
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "xgr_beam_replay: %s\n", error.what());
    return exit_usage;
  }
}
