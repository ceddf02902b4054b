#!/usr/bin/env bash
# Runs the CUDA tests under compute-sanitizer, each test case under each tool in a process of its
# own, several at a time, and writes one line per run to OUT/summary.txt. On a GPU machine:
#
#   scripts/sanitize.sh OUT [TEST_BINARY...]     (default build/cuda/tests/xgr_cuda_tests)
#
#   XGR_SANITIZE_TOOLS    tools to run (default "memcheck racecheck synccheck")
#   XGR_SANITIZE_JOBS     runs at a time (default 8)
#   XGR_SANITIZE_TIMEOUT  seconds per run (default 600); racecheck slows shared-memory-heavy kernels
#                         by 100x or more, so a whole binary under it does not fit a short limit
#   XGR_SANITIZE_CASES    doctest wildcard over test case names (default "*")
#   XGR_TEST_TIME_SCALE   passed to the tests (default 100): their deadlock watchdogs' limits
#                         times this, so that a slowed run is not taken for a deadlock
#
# API errors are not reported: the tests provoke some on purpose (an allocation too large, a sync
# during capture) and check them; an unexpected one throws and fails its test case. A line reads
# "clean", "N errors" / "N hazards", "test failed" or "timed out"; OUT/<tool>/<case>.txt holds the
# sanitizer's output. Exit status 0 only if every run is clean.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/sanitize.sh OUT [TEST_BINARY...]}
shift
binaries=("$@")
[ ${#binaries[@]} -eq 0 ] && binaries=(build/cuda/tests/xgr_cuda_tests)
tools=${XGR_SANITIZE_TOOLS:-memcheck racecheck synccheck}
jobs=${XGR_SANITIZE_JOBS:-8}
limit=${XGR_SANITIZE_TIMEOUT:-600}
cases=${XGR_SANITIZE_CASES:-*}
export XGR_TEST_TIME_SCALE=${XGR_TEST_TIME_SCALE:-100}
command -v compute-sanitizer > /dev/null || { echo "compute-sanitizer not found" >&2; exit 2; }
mkdir -p "$out"
runs="$out/runs.txt"
: > "$runs"
for binary in "${binaries[@]}"; do
  [ -x "$binary" ] || { echo "$binary: not an executable" >&2; exit 2; }
  # doctest splits filters at commas: a '?' matches the comma of a name instead.
  "$binary" --list-test-cases --no-version=true -tc="$cases" 2>/dev/null |
    sed -n 's/^\(.*\S\)\s*$/\1/p' | grep -v '^\[doctest\]\|^=\+$\|^xgr ' | while IFS= read -r name; do
    for tool in $tools; do printf '%s\t%s\t%s\n' "$tool" "$binary" "${name//,/?}" >> "$runs"; done
  done
done
echo "$(wc -l < "$runs") runs, $jobs at a time, up to ${limit}s each"

run_one() {
  local tool=$1 binary=$2 filter=$3 out=$4 limit=$5
  local file
  file="$out/$tool/$(printf '%s' "$filter" | tr -c 'A-Za-z0-9_-' '_' | cut -c1-80).txt"
  mkdir -p "$out/$tool"
  local options=(--tool "$tool" --report-api-errors no --print-limit 50)
  [ "$tool" = racecheck ] && options+=(--racecheck-report hazard)
  timeout "$limit" compute-sanitizer "${options[@]}" "$binary" -tc="$filter" > "$file" 2>&1
  local status=$? verdict
  local summary
  summary=$(grep -E "(ERROR|RACECHECK) SUMMARY" "$file" | grep -v "not printed" | tail -1)
  if [ $status -eq 124 ]; then
    verdict="timed out"
  elif grep -q "Status: FAILURE" "$file"; then
    verdict="test failed"
  elif printf '%s' "$summary" | grep -qE "SUMMARY: 0 (errors|hazards)"; then
    verdict="clean"
  elif [ -n "$summary" ]; then
    verdict=$(printf '%s' "$summary" | sed 's/.*SUMMARY: //')
  else
    verdict="no summary (exit $status)"
  fi
  printf '%-10s %-24s %s\n' "$tool" "$verdict" "$filter"
}
export -f run_one
tr '\n' '\0' < "$runs" | xargs -0 -P "$jobs" -I{} bash -c 'IFS=$'"'"'\t'"'"' read -r t b f <<< "$1"; run_one "$t" "$b" "$f" "$2" "$3"' _ {} "$out" "$limit" |
  tee "$out/summary.txt"
sort -o "$out/summary.txt" "$out/summary.txt"
! grep -qv "^\S\+\s\+clean\s" "$out/summary.txt"
