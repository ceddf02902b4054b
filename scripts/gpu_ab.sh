#!/usr/bin/env bash
# A/B of xgr's headers on one GPU machine: xgr_benchmarks built against the headers of BASE_REF and
# against the working tree's (or XGR_AB_NEW_REF's), both from the working tree's benchmark sources,
# run in alternating rounds; each row keeps its best round (scripts/ab_table.py). This is how the
# kernel changes in docs/benchmarks/ were measured.
#
# Usage: scripts/gpu_ab.sh BASE_REF BENCH_FILTER [OUTPUT_DIR]
#
#   XGR_AB_NEW_REF      headers to compare against BASE_REF (default: the working tree)
#                       Either ref may also be a directory holding an include/ tree (e.g. a branch
#                       extracted with `git archive BRANCH include | tar -x -C DIR`), for a clone
#                       that lacks the branch.
#   XGR_AB_NEW_FLAGS    extra nvcc flags for the new build only (e.g. -DNAME=VALUE to pick a variant
#                       of the change; default none)
#   XGR_AB_EXTRA_REFS   more sides, space-separated refs or directories (e.g. the first commit of a
#                       branch and the branch itself), built and run in the same alternating rounds;
#                       the table gets a ratio column for each (default none)
#   XGR_AB_BENCH        benchmark sources besides main.cu and bench_copy.cu (default: bench_attention;
#                       e.g. "bench_topk bench_beam")
#   XGR_AB_ROUNDS       alternating rounds (default 3)
#   XGR_AB_ARCH         nvcc -gencode (default arch=compute_90a,code=sm_90a)
#   XGR_AB_BUILD_ONLY=1 build both and stop (for machines without a GPU)
#
# Writes to OUTPUT_DIR (default build/gpu-ab): base.log and new.log (every round's console output),
# ab.md (the table), build_*.log. Environment variables of the benchmarks pass through, e.g.
# XGR_BENCH_STAGED_ONLY=1 to time staged decode alone.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
base_ref=$1
filter=$2
out=${3:-build/gpu-ab}
new_ref=${XGR_AB_NEW_REF:-}
benches=${XGR_AB_BENCH:-bench_attention}
rounds=${XGR_AB_ROUNDS:-3}
arch=${XGR_AB_ARCH:-arch=compute_90a,code=sm_90a}
mkdir -p "$out"
out=$(cd "$out" && pwd)
trees=$(mktemp -d)
trap 'rm -rf "$trees"' EXIT

# A tree per side: the ref's include/ (or the working tree's), the working tree's benchmarks/ and tests/.
make_tree() {  # make_tree NAME REF
  local tree=$trees/$1
  mkdir -p "$tree"
  if [ -n "$2" ] && [ -d "$2/include" ]; then
    cp -r "$2/include" "$tree/"
  elif [ -n "$2" ]; then
    git rev-parse --verify --quiet "$2^{commit}" > /dev/null || { echo "gpu_ab: no commit or include/ directory '$2'" >&2; exit 2; }
    git archive "$2" include | tar -x -C "$tree"
  else
    cp -r include "$tree/"
  fi
  cp -r benchmarks tests "$tree/"
}

build() {  # build NAME [EXTRA_FLAGS]: objects in parallel, then link
  local tree=$trees/$1 flags pids=() objects=()
  flags="-std=c++20 -O3 -lineinfo -gencode $arch ${2:-} -I$tree/include -I$tree/tests -I$tree/benchmarks"
  for source in main bench_copy $benches; do
    nvcc $flags -c "$tree/benchmarks/$source.cu" -o "$tree/$source.o" > "$out/build_$1_$source.log" 2>&1 &
    pids+=($!)
    objects+=("$tree/$source.o")
  done
  local failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  if [ $failed = 1 ]; then
    echo "gpu_ab: the $1 build failed; see $out/build_$1_*.log" >&2
    return 1
  fi
  nvcc -gencode "$arch" "${objects[@]}" -o "$tree/xgr_benchmarks" -lbenchmark -lpthread -lcublas > "$out/build_$1_link.log" 2>&1
}

read -r -a extra_refs <<< "${XGR_AB_EXTRA_REFS:-}"
sides=(base new)
make_tree base "$base_ref"
make_tree new "$new_ref"
for i in "${!extra_refs[@]}"; do
  make_tree "extra$((i + 1))" "${extra_refs[$i]}"
  sides+=("extra$((i + 1))")
done
build base & build_pids=($!)
build new "${XGR_AB_NEW_FLAGS:-}" & build_pids+=($!)
for side in "${sides[@]:2}"; do
  build "$side" & build_pids+=($!)
done
status=0
for pid in "${build_pids[@]}"; do wait "$pid" || status=1; done
[ $status = 0 ] || exit 1
echo "gpu_ab: built base ($base_ref) and new (${new_ref:-working tree}${XGR_AB_NEW_FLAGS:+ with $XGR_AB_NEW_FLAGS})${XGR_AB_EXTRA_REFS:+ and $XGR_AB_EXTRA_REFS}"
[ "${XGR_AB_BUILD_ONLY:-0}" = 1 ] && exit 0

for side in "${sides[@]}"; do : > "$out/$side.log"; done
for round in $(seq "$rounds"); do
  for side in "${sides[@]}"; do
    if ! "$trees/$side/xgr_benchmarks" --benchmark_filter="$filter" >> "$out/$side.log" 2>&1; then
      echo "gpu_ab: the $side benchmarks failed or found no GPU; see $out/$side.log" >&2
      exit 1
    fi
  done
  echo "gpu_ab: round $round of $rounds done"
done
# The table names each side by the commit its ref resolved to here, so that a record never depends on
# what a symbolic ref (HEAD, a branch) meant in this clone.
name_of() { if [ -d "$1/include" ]; then echo "directory"; else git rev-parse --short "$1^{commit}"; fi; }
base_name="$base_ref ($(name_of "$base_ref"))"
new_name=${new_ref:+"$new_ref ($(name_of "$new_ref"))"}
new_name="${new_name:-working tree}${XGR_AB_NEW_FLAGS:+ $XGR_AB_NEW_FLAGS}"
names="$base_name,$new_name"
for ref in "${extra_refs[@]}"; do names+=",$ref ($(name_of "$ref"))"; done
logs=()
for side in "${sides[@]}"; do logs+=("$out/$side.log"); done
python3 scripts/ab_table.py "${logs[@]}" --names "$names" | tee "$out/ab.md"
