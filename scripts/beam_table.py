#!/usr/bin/env python3
"""Turns the beam-step benchmark results (the JSON of `xgr_benchmarks --benchmark_out=...`, or the
console log of `xgr_benchmarks --benchmark_filter=beam/`) plus the JSON of
benchmarks/torch/beam_step_anchor.py into the markdown table of docs/benchmarks/beam.md.

    python3 scripts/beam_table.py xgr_benchmarks.json [torch_beam.json] > table.md
    python3 scripts/beam_table.py benchmarks.log [torch_beam.json] > table.md

One line per default-policy row (dtype, level, shape): the device time (the step's launches back
to back, as replayed from a CUDA graph) and the host-paced time; the baselines (full sort, dense mask, no
early exit: their own benchmark rows, level 1) and the PyTorch step are joined by shape.
"""
import json
import re
import sys

NAME = re.compile(r"^beam/step/(\w+)/level:(\d+)/policy:(\w+)/req:(\d+)/beams:(\d+)/C:(\d+)/items:(\d+)")
BASELINES = ("full_sort", "dense_mask", "no_early_exit")


def number(text: str) -> float:
    """Google Benchmark's console numbers: 123, 1.5k, 2.3M, 4.1G, 7T (and m, u, n for small ones)."""
    scale = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "m": 1e-3, "u": 1e-6, "n": 1e-9}
    text = text.rstrip("/s")
    if text and text[-1] in scale:
        return float(text[:-1]) * scale[text[-1]]
    return float(text)


def key_of(name: str):
    match = NAME.match(name)
    if not match:
        return None
    dtype, level, policy, req, beams, codebook, items = match.groups()
    return dtype, int(level), policy, int(req), int(beams), int(codebook), int(items)


def read_json(data: dict) -> dict:
    rows = {}
    for bench in data.get("benchmarks", []):
        key = key_of(bench.get("name", ""))
        if key is None or bench.get("aggregate_name"):
            continue
        if bench.get("error_occurred"):
            rows[key] = {"error": bench.get("error_message", "error")}
        else:
            rows[key] = {name: bench[name] for name in ("median_us", "host_paced_us", "floor_us", "x_floor", "live_rows") if name in bench}
    return rows


def read_log(lines) -> dict:
    rows = {}
    columns = []
    for line in lines:
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "Benchmark":
            columns = fields[4:]  # Benchmark Time CPU Iterations <counters...>
            continue
        key = key_of(fields[0])
        if key is None:
            continue
        rest = line.strip()[len(fields[0]):].strip()
        if "ERROR OCCURRED" in rest or "ERROR" in rest.split(":")[0]:
            rows[key] = {"error": rest.split("ERROR OCCURRED:", 1)[-1].strip().strip("'")}
            continue
        # name, time, unit, cpu, unit, iterations, counters in header order
        values = fields[6:]
        try:
            rows[key] = {name: number(value) for name, value in zip(columns, values)}
        except ValueError:
            rows[key] = {"error": "unparsed: " + rest}
    return rows


def read_bench(path: str) -> dict:
    with open(path) as f:
        text = f.read()
    try:
        return read_json(json.loads(text))
    except json.JSONDecodeError:
        return read_log(text.splitlines())


def read_torch(path: str):
    exact, by_shape = {}, {}
    if path is None:
        return exact, by_shape, None
    with open(path) as f:
        data = json.load(f)
    for row in data["rows"]:
        shape = (row["level"], row["requests"], row["beams"], row["codebook"])
        exact[shape + (row["items"],)] = row
        by_shape.setdefault(shape, row)
    return exact, by_shape, data


def cell(value, digits=1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rows = read_bench(sys.argv[1])
    torch_exact, torch_by_shape, torch_data = read_torch(sys.argv[2] if len(sys.argv) > 2 else None)
    if torch_data:
        print(f"PyTorch anchor: {torch_data.get('device')}, torch {torch_data.get('torch')}\n")

    print("| dtype | level | req | beams | C | items | xgr µs | host-paced µs | floor µs | × floor | full sort µs | dense mask µs | "
          "no early exit µs | torch step µs | × vs torch step | torch.topk µs | × vs torch.topk |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    defaults = sorted((k for k in rows if k[2] == "default"), key=lambda k: (k[0] != "f32", k[0], k[1], k[5], k[6], k[3], k[4]))
    borrowed = False
    batched = []
    for key in defaults:
        dtype, level, _, req, beams, codebook, items = key
        row = rows[key]
        shape_cells = f"| {dtype} | {level} | {req} | {beams} | {codebook} | {items:,} |"
        baseline_cells = []
        for policy in BASELINES:
            other = rows.get((dtype, level, policy, req, beams, codebook, items))
            if other is None:
                baseline_cells.append("–")
            elif "error" in other:
                baseline_cells.append("error")
            else:
                baseline_cells.append(cell(other.get("median_us"), 0 if other.get("median_us", 0) >= 1000 else 1))
        if "error" in row:
            print(f"{shape_cells} error: {row['error']} | | | | {' | '.join(baseline_cells)} | | | | |")
            continue
        median = row.get("median_us")
        anchor = torch_exact.get((level, req, beams, codebook, items)) if dtype == "f32" else None
        mark = ""
        if anchor is None and dtype == "f32":
            anchor = torch_by_shape.get((level, req, beams, codebook))
            if anchor is not None:
                mark, borrowed = "*", True
        step = anchor["torch_step_us"] if anchor else None
        topk = anchor["torch_topk_us"] if anchor else None
        vs_step = step / median if step and median else None
        vs_topk = topk / median if topk and median else None
        if req >= 8 and median:
            batched.append((row.get("x_floor"), vs_topk, key))
        print(f"{shape_cells} {cell(median)} | {cell(row.get('host_paced_us'))} | {cell(row.get('floor_us'))} | {cell(row.get('x_floor'))} | "
              f"{' | '.join(baseline_cells)} | {cell(step, 0)}{mark} | {cell(vs_step)} | {cell(topk, 0)}{mark} | {cell(vs_topk)} |")

    if borrowed:
        print("\n\\* PyTorch measured with the mask of another catalogue size of the same shape (its time does not "
              "depend on the mask's contents beyond the data of the top-k).")
    errors = [k for k, v in rows.items() if "error" in v]
    if errors:
        print(f"\n{len(errors)} row(s) reported an error: " + "; ".join("/".join(map(str, k)) for k in errors[:10]))
    if batched:
        floors = [x for x, _, _ in batched if x is not None]
        topks = [v for _, v, _ in batched if v is not None]
        print(f"\nBatched rows (req >= 8): {len(batched)}; × floor {min(floors):.2f} – {max(floors):.2f}, "
              f"{sum(x <= 1.5 for x in floors)} within 1.5× (DESIGN §4 target)"
              + (f"; × vs torch.topk {min(topks):.1f} – {max(topks):.1f}, {sum(v >= 10 for v in topks)} at ≥ 10×" if topks else "")
              + ".")


if __name__ == "__main__":
    main()
