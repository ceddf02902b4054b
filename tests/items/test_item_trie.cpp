#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "support/errors.hpp"
#include "support/beam_inputs.hpp"
#include "support/random.hpp"
#include "xgr/items/io.hpp"
#include "xgr/items/trie.hpp"

namespace {

using Tuple = std::vector<std::uint32_t>;

Tuple tuple_of(const xgr::ItemTable& table, std::size_t item) {
  return Tuple(table.codes.begin() + static_cast<std::ptrdiff_t>(item * table.levels()),
               table.codes.begin() + static_cast<std::ptrdiff_t>((item + 1) * table.levels()));
}

// The prefix of every node, found by walking the children ranges from the root.
std::vector<Tuple> node_prefixes(const xgr::ItemTrie& trie) {
  const xgr::ItemTrieView view = trie.view();
  std::vector<Tuple> prefixes(trie.node_count());
  std::vector<bool> reached(trie.node_count(), false);
  reached[0] = true;
  for (std::uint32_t node = 0; node < trie.node_count(); ++node) {
    REQUIRE(reached[node]);  // breadth-first numbering: parents come before children
    for (std::uint32_t child = view.children_begin(node); child < view.children_end(node); ++child) {
      REQUIRE(child < trie.node_count());
      REQUIRE(!reached[child]);  // every node has one parent
      reached[child] = true;
      prefixes[child] = prefixes[node];
      prefixes[child].push_back(view.node_code[child]);
    }
  }
  return prefixes;
}

// The catalogue shapes the build must handle: one level to eight, codebooks from 1 to 65536.
std::vector<std::uint32_t> random_codebooks(std::mt19937_64& rng, std::size_t levels) {
  std::vector<std::uint32_t> sizes(levels);
  for (auto& size : sizes) {
    switch (std::uniform_int_distribution<int>(0, 4)(rng)) {
      case 0: size = 1; break;
      case 1: size = std::uniform_int_distribution<std::uint32_t>(2, 8)(rng); break;
      case 2: size = std::uniform_int_distribution<std::uint32_t>(9, 300)(rng); break;
      case 3: size = 65536; break;
      default: size = std::uniform_int_distribution<std::uint32_t>(2, 20)(rng); break;
    }
  }
  return sizes;
}

using xgr::test::error_of;

const std::string& invalid_argument = xgr::test::invalid_argument_error;
const std::string& capacity = xgr::test::capacity_error;

}  // namespace

TEST_CASE("every item is found, and its leaf lists it with its duplicates in table order") {
  std::mt19937_64 rng = xgr::test::make_rng(301);
  for (int trial = 0; trial < 60; ++trial) {
    const std::size_t levels = 1 + static_cast<std::size_t>(trial % 8);
    const std::vector<std::uint32_t> codebooks = random_codebooks(rng, levels);
    const std::size_t items = std::uniform_int_distribution<std::size_t>(1, 2000)(rng);
    const xgr::ItemTable table = xgr::test::random_item_table(rng, codebooks, items, trial % 3 == 0 ? 0.2 : 0.0);
    const xgr::ItemTrie trie = xgr::build_item_trie(table);
    INFO("trial " << trial << ", levels " << levels << ", items " << items);
    CHECK(trie.levels() == levels);
    CHECK(trie.item_count() == items);
    CHECK(std::vector<std::uint32_t>(trie.codebook_sizes().begin(), trie.codebook_sizes().end()) == codebooks);

    std::map<Tuple, std::vector<xgr::ItemId>> ids_of;  // in table order
    for (std::size_t item = 0; item < items; ++item) ids_of[tuple_of(table, item)].push_back(table.item_ids[item]);
    CHECK(trie.leaf_count() == ids_of.size());
    CHECK(trie.report().leaves == ids_of.size());
    CHECK(trie.report().items == items);
    for (const auto& [tuple, ids] : ids_of) {
      const std::uint32_t leaf = trie.find(tuple);
      REQUIRE(leaf != xgr::no_trie_node);
      CHECK(!trie.view().is_internal(leaf));
      const std::span<const xgr::ItemId> listed = trie.items_of(leaf);
      CHECK(std::vector<xgr::ItemId>(listed.begin(), listed.end()) == ids);
    }
    // Tuples that are not in the catalogue are not found.
    for (int probe = 0; probe < 50; ++probe) {
      Tuple tuple(levels);
      for (std::size_t level = 0; level < levels; ++level) {
        tuple[level] = std::uniform_int_distribution<std::uint32_t>(0, codebooks[level] - 1)(rng);
      }
      CHECK((trie.find(tuple) != xgr::no_trie_node) == (ids_of.count(tuple) == 1));
    }
  }
}

TEST_CASE("nodes are numbered breadth first, each depth in lexicographic prefix order") {
  std::mt19937_64 rng = xgr::test::make_rng(302);
  for (int trial = 0; trial < 40; ++trial) {
    const std::size_t levels = 1 + static_cast<std::size_t>(trial % 8);
    const std::vector<std::uint32_t> codebooks = random_codebooks(rng, levels);
    const xgr::ItemTable table = xgr::test::random_item_table(rng, codebooks, std::uniform_int_distribution<std::size_t>(1, 1500)(rng), 0.1);
    const xgr::ItemTrie trie = xgr::build_item_trie(table);
    const std::vector<Tuple> prefixes = node_prefixes(trie);
    const std::span<const std::uint32_t> level_begin = trie.level_begin();
    REQUIRE(level_begin.size() == levels + 2);
    CHECK(level_begin[0] == 0);
    CHECK(level_begin[1] == 1);
    CHECK(level_begin[levels + 1] == trie.node_count());
    CHECK(trie.node_code()[0] == 0);
    CHECK(trie.view().first_leaf() == level_begin[levels]);
    for (std::size_t depth = 0; depth <= levels; ++depth) {
      std::set<Tuple> distinct;
      for (std::size_t item = 0; item < table.size(); ++item) {
        const Tuple tuple = tuple_of(table, item);
        distinct.emplace(tuple.begin(), tuple.begin() + static_cast<std::ptrdiff_t>(depth));
      }
      INFO("trial " << trial << ", depth " << depth);
      CHECK(trie.nodes_at_depth(depth) == distinct.size());
      const std::vector<Tuple> in_order(prefixes.begin() + level_begin[depth], prefixes.begin() + level_begin[depth + 1]);
      CHECK(in_order == std::vector<Tuple>(distinct.begin(), distinct.end()));  // sorted, unique, complete
    }
  }
}

TEST_CASE("children are sorted by code and child() finds each code") {
  std::mt19937_64 rng = xgr::test::make_rng(303);
  for (int trial = 0; trial < 30; ++trial) {
    const std::size_t levels = 1 + static_cast<std::size_t>(trial % 4);
    const std::vector<std::uint32_t> codebooks = random_codebooks(rng, levels);
    const xgr::ItemTable table = xgr::test::random_item_table(rng, codebooks, std::uniform_int_distribution<std::size_t>(1, 800)(rng));
    const xgr::ItemTrie trie = xgr::build_item_trie(table);
    const xgr::ItemTrieView view = trie.view();
    const std::vector<Tuple> prefixes = node_prefixes(trie);
    for (std::uint32_t node = 0; node < view.first_leaf(); ++node) {
      const std::size_t depth = prefixes[node].size();
      CHECK(view.child_count(node) >= 1);  // an internal node lies on some item's path
      for (std::uint32_t child = view.children_begin(node) + 1; child < view.children_end(node); ++child) {
        CHECK(view.node_code[child - 1] < view.node_code[child]);
      }
      // Every code of the level (or, for wide codebooks, the children's codes, their neighbours and
      // the codebook's ends), plus codes past the codebook and past 16 bits.
      std::vector<std::uint32_t> probes;
      if (codebooks[depth] <= 300) {
        for (std::uint32_t code = 0; code < codebooks[depth]; ++code) probes.push_back(code);
      } else {
        for (std::uint32_t child = view.children_begin(node); child < view.children_end(node); ++child) {
          for (std::uint32_t near : {view.node_code[child] - 1u, std::uint32_t{view.node_code[child]}, view.node_code[child] + 1u}) {
            probes.push_back(near);
          }
        }
        probes.push_back(0);
        probes.push_back(codebooks[depth] - 1);
      }
      probes.push_back(codebooks[depth]);
      probes.push_back(65536);
      probes.push_back(0xffffffffu);
      for (std::uint32_t code : probes) {
        std::uint32_t want = xgr::no_trie_node;
        for (std::uint32_t child = view.children_begin(node); child < view.children_end(node); ++child) {
          if (view.node_code[child] == code) want = child;
        }
        INFO("node " << node << ", code " << code);
        CHECK(view.child(node, code) == want);
      }
    }
    // Leaves and no_trie_node have no children.
    for (std::uint32_t leaf = view.first_leaf(); leaf < view.node_count(); ++leaf) {
      CHECK(view.child_count(leaf) == 0);
      CHECK(view.child(leaf, view.node_code[leaf]) == xgr::no_trie_node);
    }
    CHECK(view.child_count(xgr::no_trie_node) == 0);
    CHECK(view.child(xgr::no_trie_node, 0) == xgr::no_trie_node);
  }
}

TEST_CASE("child() finds every code of nodes of every fan-out around its search's steps") {
  // child() narrows the range eightfold a round while more than 16 codes remain, then counts the
  // rest: fan-outs at and around those sizes, up to a whole codebook of 65,536, probed with every
  // code of the codebook (and one past it) against a direct map.
  std::mt19937_64 rng = xgr::test::make_rng(305);
  for (const std::uint32_t fan_out : {1u, 2u, 7u, 15u, 16u, 17u, 18u, 23u, 64u, 127u, 128u, 129u, 135u, 1000u, 1031u, 8192u, 65536u}) {
    const std::uint32_t codebook = fan_out == 65536u ? 65536u : std::min<std::uint32_t>(65536u, fan_out * 3 + 5);
    std::vector<std::uint32_t> codes(codebook);
    for (std::uint32_t code = 0; code < codebook; ++code) codes[code] = code;
    std::shuffle(codes.begin(), codes.end(), rng);
    codes.resize(fan_out);
    xgr::ItemTable table;
    table.codebook_sizes = {codebook};
    for (std::uint32_t i = 0; i < fan_out; ++i) {
      table.item_ids.push_back(i);
      table.codes.push_back(codes[i]);
    }
    const xgr::ItemTrie trie = xgr::build_item_trie(table);
    const xgr::ItemTrieView view = trie.view();
    REQUIRE(view.child_count(0) == fan_out);
    std::vector<std::uint32_t> node_of(codebook + 1, xgr::no_trie_node);
    for (std::uint32_t child = view.children_begin(0); child < view.children_end(0); ++child) node_of[view.node_code[child]] = child;
    std::size_t wrong = 0;
    for (std::uint32_t code = 0; code <= codebook; ++code) wrong += view.child(0, code) != node_of[code] ? 1 : 0;
    CHECK_MESSAGE(wrong == 0, "fan-out " << fan_out << ": " << wrong << " codes found wrongly");
  }
}

TEST_CASE("max_children is the largest fan-out at each depth") {
  std::mt19937_64 rng = xgr::test::make_rng(304);
  for (int trial = 0; trial < 20; ++trial) {
    const std::size_t levels = 1 + static_cast<std::size_t>(trial % 5);
    const xgr::ItemTable table = xgr::test::random_item_table(rng, random_codebooks(rng, levels), 700);
    const xgr::ItemTrie trie = xgr::build_item_trie(table);
    const std::vector<Tuple> prefixes = node_prefixes(trie);
    std::vector<std::size_t> most(levels + 1, 0);
    for (std::uint32_t node = 0; node < trie.node_count(); ++node) {
      most[prefixes[node].size()] = std::max<std::size_t>(most[prefixes[node].size()], trie.view().child_count(node));
    }
    for (std::size_t depth = 0; depth <= levels; ++depth) CHECK(trie.max_children(depth) == most[depth]);
    CHECK(trie.max_children(levels) == 0);
  }
}

TEST_CASE("asking for a depth past the leaves is an invalid argument, not an out-of-range crash") {
  std::mt19937_64 rng = xgr::test::make_rng(305);
  const xgr::ItemTrie trie = xgr::build_item_trie(xgr::test::random_item_table(rng, random_codebooks(rng, 3), 50));
  CHECK(trie.nodes_at_depth(3) > 0);
  for (const std::size_t depth : {std::size_t{4}, std::size_t{100}, ~std::size_t{0}}) {
    CHECK(xgr::test::error_of([&] { (void)trie.nodes_at_depth(depth); }) == xgr::test::invalid_argument_error);
    CHECK(xgr::test::error_of([&] { (void)trie.max_children(depth); }) == xgr::test::invalid_argument_error);
  }
}

TEST_CASE("duplicate tuples are reported: duplicate_items and duplicate_leaves") {
  std::mt19937_64 rng = xgr::test::make_rng(305);
  for (int trial = 0; trial < 20; ++trial) {
    const std::size_t levels = 1 + static_cast<std::size_t>(trial % 4);
    const xgr::ItemTable table = xgr::test::random_item_table(rng, levels, 6, 400, 0.25);
    const xgr::ItemTrie trie = xgr::build_item_trie(table);
    std::map<Tuple, std::size_t> count;
    for (std::size_t item = 0; item < table.size(); ++item) ++count[tuple_of(table, item)];
    std::size_t duplicate_items = 0;
    std::vector<std::uint32_t> duplicate_leaves;
    for (const auto& [tuple, n] : count) {
      duplicate_items += n - 1;
      if (n > 1) duplicate_leaves.push_back(trie.find(tuple) - trie.view().first_leaf());
      CHECK(trie.items_of(trie.find(tuple)).size() == n);
    }
    CHECK(duplicate_items > 0);
    CHECK(trie.report().duplicate_items == duplicate_items);
    CHECK(trie.report().duplicate_leaves == duplicate_leaves);  // each leaf once, ascending
  }
  // A catalogue without duplicates reports none.
  const xgr::ItemTable unique = xgr::test::complete_item_table(std::vector<std::uint32_t>{3, 4});
  const xgr::ItemTrie trie = xgr::build_item_trie(unique);
  CHECK(trie.report().duplicate_items == 0);
  CHECK(trie.report().duplicate_leaves.empty());
}

TEST_CASE("item ids default to row indices") {
  const std::vector<std::uint32_t> codebooks{4, 4};
  const std::vector<std::uint32_t> codes{3, 1, 0, 2, 3, 1, 0, 0};
  const xgr::ItemTrie trie = xgr::ItemTrie::build(codebooks, xgr::matrix_view(codes.data(), 4, 2));
  CHECK(trie.leaf_count() == 3);
  const auto ids = [&](Tuple tuple) {
    const auto listed = trie.items_of(trie.find(tuple));
    return std::vector<xgr::ItemId>(listed.begin(), listed.end());
  };
  CHECK(ids({3, 1}) == std::vector<xgr::ItemId>{0, 2});
  CHECK(ids({0, 2}) == std::vector<xgr::ItemId>{1});
  CHECK(ids({0, 0}) == std::vector<xgr::ItemId>{3});
  // Item ids in sorted-tuple order: (0,0) (0,2) (3,1) (3,1).
  CHECK(std::vector<xgr::ItemId>(trie.item_ids().begin(), trie.item_ids().end()) == std::vector<xgr::ItemId>{3, 1, 0, 2});
}

TEST_CASE("an empty catalogue is a root without children") {
  for (std::size_t levels : {std::size_t{1}, std::size_t{3}, std::size_t{8}}) {
    const std::vector<std::uint32_t> codebooks(levels, 16);
    const xgr::ItemTrie trie = xgr::ItemTrie::build(codebooks, xgr::MatrixView<const std::uint32_t>{nullptr, 0, 0, 0});
    INFO("levels " << levels);
    CHECK(trie.node_count() == 1);
    CHECK(trie.leaf_count() == 0);
    CHECK(trie.item_count() == 0);
    CHECK(trie.nodes_at_depth(0) == 1);
    for (std::size_t depth = 1; depth <= levels; ++depth) CHECK(trie.nodes_at_depth(depth) == 0);
    CHECK(trie.max_children(0) == 0);
    CHECK(trie.view().child_count(0) == 0);
    CHECK(trie.view().child(0, 0) == xgr::no_trie_node);
    CHECK(trie.find(Tuple(levels, 0)) == xgr::no_trie_node);
    CHECK(trie.report().duplicate_items == 0);
  }
}

TEST_CASE("a single level, eight levels and codebooks of 65536 build correctly") {
  {  // L = 1, codebook 65536, the extreme codes included.
    const std::vector<std::uint32_t> codebooks{65536};
    const std::vector<std::uint32_t> codes{65535, 0, 40000, 65535, 1};
    const std::vector<xgr::ItemId> ids{10, 11, 12, 13, 0xffffffffffffffffull};
    const xgr::ItemTrie trie = xgr::ItemTrie::build(codebooks, xgr::matrix_view(codes.data(), 5, 1), ids);
    CHECK(trie.leaf_count() == 4);
    CHECK(trie.max_children(0) == 4);
    CHECK(std::vector<std::uint16_t>(trie.node_code().begin() + 1, trie.node_code().end()) ==
          std::vector<std::uint16_t>{0, 1, 40000, 65535});
    const auto listed = trie.items_of(trie.find(Tuple{65535}));
    CHECK(std::vector<xgr::ItemId>(listed.begin(), listed.end()) == std::vector<xgr::ItemId>{10, 13});
    CHECK(trie.items_of(trie.find(Tuple{1}))[0] == 0xffffffffffffffffull);
    CHECK(trie.find(Tuple{65536}) == xgr::no_trie_node);
    CHECK(trie.find(Tuple{2}) == xgr::no_trie_node);
  }
  {  // L = 8, every level its own codebook, one 65536 wide.
    const std::vector<std::uint32_t> codebooks{2, 3, 65536, 1, 5, 2, 7, 3};
    std::mt19937_64 rng = xgr::test::make_rng(306);
    const xgr::ItemTable table = xgr::test::random_item_table(rng, codebooks, 3000, 0.01);
    const xgr::ItemTrie trie = xgr::build_item_trie(table);
    CHECK(trie.levels() == 8);
    CHECK(trie.nodes_at_depth(1) <= 2);
    CHECK(trie.nodes_at_depth(4) == trie.nodes_at_depth(3));  // a codebook of one: no branching
    for (std::size_t item = 0; item < table.size(); ++item) {
      const std::uint32_t leaf = trie.find(tuple_of(table, item));
      REQUIRE(leaf != xgr::no_trie_node);
      const auto listed = trie.items_of(leaf);
      CHECK(std::find(listed.begin(), listed.end(), table.item_ids[item]) != listed.end());
    }
  }
}

TEST_CASE("bad catalogues throw invalid_argument") {
  const std::vector<std::uint32_t> codes{1, 2, 3, 0};  // two items of two levels
  const auto build = [&](std::vector<std::uint32_t> codebooks, std::size_t cols, std::vector<xgr::ItemId> ids = {}) {
    return error_of([&] { (void)xgr::ItemTrie::build(codebooks, xgr::matrix_view(codes.data(), 4 / cols, cols), ids); });
  };
  CHECK(build({4, 3}, 2) == "no error");
  CHECK(build({4, 2}, 2) == invalid_argument);  // code 2 at level 1 is not below 2
  CHECK(build({3, 3}, 2) == invalid_argument);  // code 3 at level 0
  CHECK(build({}, 2) == invalid_argument);      // levels 0
  CHECK(build(std::vector<std::uint32_t>(9, 4), 2) == invalid_argument);  // levels 9
  CHECK(build({4, 0}, 2) == invalid_argument);      // codebook 0
  CHECK(build({4, 65537}, 2) == invalid_argument);  // codebook above 65536
  CHECK(build({4, 65536}, 2) == "no error");
  CHECK(build({4, 4, 4}, 2) == invalid_argument);  // rows of 2 codes for 3 levels
  CHECK(build({4, 3}, 2, {7}) == invalid_argument);  // 1 id for 2 items
  CHECK(build({4, 3}, 2, {7, 8, 9}) == invalid_argument);
  CHECK(build({4, 3}, 2, {7, 8}) == "no error");
  try {
    (void)xgr::ItemTrie::build(std::vector<std::uint32_t>{4, 2}, xgr::matrix_view(codes.data(), 2, 2),
                               std::vector<xgr::ItemId>{1001, 1002});
    FAIL("a code out of range was accepted");
  } catch (const xgr::Error& error) {
    // The message names the item, the level, the code and the codebook.
    const std::string what = error.what();
    CHECK(what.find("item 1001") != std::string::npos);
    CHECK(what.find("code 2 at level 1") != std::string::npos);
  }

  // A table whose code array does not match its shape.
  xgr::ItemTable table{{4, 4}, {1, 2}, {0, 1, 2}};
  CHECK(error_of([&] { (void)xgr::build_item_trie(table); }) == invalid_argument);

  // Lookups with the wrong shape or on a non-leaf.
  table.codes.push_back(3);
  const xgr::ItemTrie trie = xgr::build_item_trie(table);
  CHECK(error_of([&] { (void)trie.find(Tuple{0}); }) == invalid_argument);
  CHECK(error_of([&] { (void)trie.find(Tuple{0, 1, 2}); }) == invalid_argument);
  CHECK(error_of([&] { (void)trie.items_of(0); }) == invalid_argument);  // the root
  CHECK(error_of([&] { (void)trie.items_of(static_cast<std::uint32_t>(trie.node_count())); }) == invalid_argument);
  CHECK(error_of([&] { (void)trie.items_of(trie.find(Tuple{2, 3})); }) == "no error");
}

// ---- Allowed sets ---------------------------------------------------------------------------------

TEST_CASE("allowed_tokens lists each row's child tokens in code order; dead and leaf rows are empty") {
  std::mt19937_64 rng = xgr::test::make_rng(307);
  for (int trial = 0; trial < 30; ++trial) {
    const std::size_t levels = 1 + static_cast<std::size_t>(trial % 4);
    const xgr::ItemTable table =
        xgr::test::random_item_table(rng, random_codebooks(rng, levels), std::uniform_int_distribution<std::size_t>(0, 600)(rng));
    const xgr::ItemTrie trie = xgr::build_item_trie(table);
    const xgr::ItemTrieView view = trie.view();
    // Rows: any node (internal or leaf) or no_trie_node.
    std::vector<std::uint32_t> rows(std::uniform_int_distribution<std::size_t>(0, 200)(rng));
    for (auto& node : rows) {
      node = std::bernoulli_distribution(0.15)(rng) ? xgr::no_trie_node
                                                    : std::uniform_int_distribution<std::uint32_t>(
                                                          0, static_cast<std::uint32_t>(trie.node_count() - 1))(rng);
    }
    const std::uint32_t token_offset = std::uniform_int_distribution<std::uint32_t>(0, 1000)(rng);
    std::vector<std::uint32_t> want_ptr{0}, want_columns;
    for (std::uint32_t node : rows) {
      if (node != xgr::no_trie_node && node < view.first_leaf()) {
        for (std::uint32_t child = trie.child_begin()[node]; child < trie.child_begin()[node + 1]; ++child) {
          want_columns.push_back(token_offset + trie.node_code()[child]);
        }
      }
      want_ptr.push_back(static_cast<std::uint32_t>(want_columns.size()));
    }
    CHECK(xgr::allowed_token_count(view, rows) == want_columns.size());
    std::vector<std::uint32_t> row_ptr(rows.size() + 1, 0xdeadbeefu);
    std::vector<std::uint32_t> columns(want_columns.size() + 3, 0xdeadbeefu);
    xgr::allowed_tokens(xgr::exec::host, view, rows, token_offset, row_ptr, columns);
    CHECK(row_ptr == want_ptr);
    CHECK(std::vector<std::uint32_t>(columns.begin(), columns.begin() + static_cast<std::ptrdiff_t>(want_columns.size())) == want_columns);
    CHECK(std::all_of(columns.end() - 3, columns.end(), [](std::uint32_t c) { return c == 0xdeadbeefu; }));  // nothing past the total

    // Exactly sized buffers work; one column short is a capacity error; a short row_ptr is invalid.
    std::vector<std::uint32_t> exact(want_columns.size());
    CHECK(error_of([&] { xgr::allowed_tokens(xgr::exec::host, view, rows, token_offset, row_ptr, exact); }) == "no error");
    if (!want_columns.empty()) {
      std::vector<std::uint32_t> short_columns(want_columns.size() - 1);
      CHECK(error_of([&] { xgr::allowed_tokens(xgr::exec::host, view, rows, token_offset, row_ptr, short_columns); }) == capacity);
    }
    std::vector<std::uint32_t> short_ptr(rows.size());
    CHECK(error_of([&] { xgr::allowed_tokens(xgr::exec::host, view, rows, token_offset, short_ptr, columns); }) == invalid_argument);
  }
}

TEST_CASE("allowed_mask sets exactly the allowed bits and clears the rest of each row") {
  std::mt19937_64 rng = xgr::test::make_rng(308);
  for (int trial = 0; trial < 30; ++trial) {
    const std::size_t levels = 1 + static_cast<std::size_t>(trial % 4);
    const std::vector<std::uint32_t> codebooks(levels, std::uniform_int_distribution<std::uint32_t>(1, 200)(rng));
    const xgr::ItemTable table = xgr::test::random_item_table(rng, codebooks, std::uniform_int_distribution<std::size_t>(0, 500)(rng));
    const xgr::ItemTrie trie = xgr::build_item_trie(table);
    const xgr::ItemTrieView view = trie.view();
    std::vector<std::uint32_t> rows(std::uniform_int_distribution<std::size_t>(1, 100)(rng));
    for (auto& node : rows) {
      node = std::bernoulli_distribution(0.15)(rng) ? xgr::no_trie_node
                                                    : std::uniform_int_distribution<std::uint32_t>(
                                                          0, static_cast<std::uint32_t>(trie.node_count() - 1))(rng);
    }
    const std::uint32_t token_offset = std::uniform_int_distribution<std::uint32_t>(0, 100)(rng);
    const std::size_t words = (token_offset + codebooks[0] + 31) / 32 + std::uniform_int_distribution<std::size_t>(0, 2)(rng);
    const std::size_t stride = words + 1;  // a padding word per row, which must stay untouched
    std::vector<std::uint32_t> mask((rows.size() + 1) * stride, 0xa5a5a5a5u);  // plus a row past the last
    xgr::allowed_mask(xgr::exec::host, view, rows, token_offset, xgr::matrix_view(mask.data(), rows.size() + 1, words, stride));
    for (std::size_t row = 0; row < rows.size(); ++row) {
      std::vector<std::uint32_t> want(words, 0);
      const std::uint32_t node = rows[row];
      if (node != xgr::no_trie_node && node < view.first_leaf()) {
        for (std::uint32_t child = trie.child_begin()[node]; child < trie.child_begin()[node + 1]; ++child) {
          const std::uint32_t token = token_offset + trie.node_code()[child];
          want[token / 32] |= 1u << (token % 32);
        }
      }
      INFO("row " << row << ", node " << node);
      CHECK(std::vector<std::uint32_t>(mask.begin() + static_cast<std::ptrdiff_t>(row * stride),
                                       mask.begin() + static_cast<std::ptrdiff_t>(row * stride + words)) == want);
      CHECK(mask[row * stride + words] == 0xa5a5a5a5u);
    }
    for (std::size_t word = 0; word < stride; ++word) CHECK(mask[rows.size() * stride + word] == 0xa5a5a5a5u);

    // Too few rows, or a row too short for an allowed token.
    CHECK(error_of([&] {
            xgr::allowed_mask(xgr::exec::host, view, rows, token_offset, xgr::matrix_view(mask.data(), rows.size() - 1, words, stride));
          }) == invalid_argument);
  }
  // The root of a one-level catalogue whose codes reach past the mask row.
  const std::vector<std::uint32_t> codebooks{100};
  const std::vector<std::uint32_t> codes{5, 70};
  const xgr::ItemTrie trie = xgr::ItemTrie::build(codebooks, xgr::matrix_view(codes.data(), 2, 1));
  std::vector<std::uint32_t> mask(2);
  const std::vector<std::uint32_t> root{0};
  CHECK(error_of([&] { xgr::allowed_mask(xgr::exec::host, trie.view(), root, 0, xgr::matrix_view(mask.data(), 1, 2)); }) ==
        invalid_argument);
  std::vector<std::uint32_t> wide(3);
  xgr::allowed_mask(xgr::exec::host, trie.view(), root, 0, xgr::matrix_view(wide.data(), 1, 3));
  CHECK(wide == std::vector<std::uint32_t>{1u << 5, 0u, 1u << 6});
}
