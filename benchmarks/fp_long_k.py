"""FP accumulation across RUNs: long-K GEMMs on the floating-point presets, on the RTL.

K is split into RUNs of at most the scratchpad depth; the FP-add combiner rounds each RUN's
result into the accumulator format and adds it to C. For each case the script records the RTL
cycles against the golden model's, the mismatches against the independent reference
(`tessera.sim.fpref`), and the accuracy against the exact dot product (float64 of the decoded
operands) next to the same GEMM with the whole K in one sequential accumulation (the twin, no
split), so the numerical cost of splitting is visible. Writes
benchmarks/results/fp_long_k.{json,md}.

    .venv/bin/python benchmarks/fp_long_k.py [--presets fp8 dlfloat]
"""

import argparse
import json
import pathlib
import time

import numpy as np

from tessera.generators.config import load_config
from tessera.generators.regress import run_regression
from tessera.sim import fp
from tessera.sim.workloads import gemm_operands

OUT = pathlib.Path(__file__).resolve().parent / "results"


def _rel_err(codes, fmt, exact):
    got = fp.decode(fmt, np.asarray(codes, dtype=np.uint32))
    ok = np.isfinite(got) & np.isfinite(exact) & (exact != 0)
    return float(np.median(np.abs(got[ok] - exact[ok]) / np.abs(exact[ok]))) if ok.any() else None


def measure(preset, progress):
    cfg = load_config(preset)
    depth = min(cfg.memory.a_depth, cfg.memory.b_depth)
    R, C = cfg.rows, cfg.cols
    cases = [{"name": f"k{mult}x", "m": R, "n": C, "k": mult * depth + 3, "kind": "relu",
              "seed": 40 + mult} for mult in (2, 4)]
    t0 = time.monotonic()
    s = run_regression(cfg, cases=cases, test_filter="test_gemm", progress=progress,
                       out_dir=pathlib.Path(f"build/bench/fp_long_k-{cfg.digest()}"))
    rows = []
    for g, spec in zip(s["gemms"], cases):
        a, b = gemm_operands(cfg, spec["m"], spec["n"], spec["k"], kind=spec["kind"],
                             seed=spec["seed"])
        fi, fa = cfg.pe.fmt_in, cfg.pe.fmt_acc
        exact = fp.decode(fi, a.astype(np.uint32)) @ fp.decode(fi, b.astype(np.uint32))
        whole = cfg.pe.twin().tile(a.T, b)          # one RUN holding all of K
        split = cfg.pe.reference(a, b, k_split=g["k_split"])
        rows.append({"preset": preset, "case": g["case"], "m": g["m"], "n": g["n"], "k": g["k"],
                     "k_split": g["k_split"], "runs": g["runs"], "cycles": g["cycles"],
                     "golden_cycles": g["golden_cycles"], "mismatches": g["mismatches"],
                     "median_rel_err_split": _rel_err(split, fa, exact),
                     "median_rel_err_one_run": _rel_err(whole, fa, exact)})
    return rows, round(time.monotonic() - t0, 1), s["ok"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["fp8", "dlfloat"])
    args = ap.parse_args()
    results, ok = [], True
    for p in args.presets:
        rows, secs, good = measure(p, progress=lambda m: print(m, flush=True))
        print(f"[fp_long_k] {p}: {len(rows)} cases in {secs}s", flush=True)
        results += rows
        ok &= good
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "fp_long_k.json").write_text(json.dumps({"results": results, "ok": ok}, indent=1))
    lines = ["| preset | M×N×K | RUNs (K per RUN) | RTL cycles | = golden | mismatches vs "
             "reference | median rel. error, split | one RUN (no split) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| `{r['preset']}` | {r['m']}×{r['n']}×{r['k']} | {r['runs']} "
                     f"({r['k_split']}) | {r['cycles']} | "
                     f"{'yes' if r['cycles'] == r['golden_cycles'] else 'NO'} | "
                     f"{r['mismatches']} | {r['median_rel_err_split']:.2e} | "
                     f"{r['median_rel_err_one_run']:.2e} |")
    (OUT / "fp_long_k.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
