"""Ternary engine cycles on the RTL: dense utilization, run-length cycles against sparsity.

Two parts (``--part``, default both), merged into ``benchmarks/results/ternary_cycles.json``
and rendered into ``benchmarks/results/ternary_cycles.{md,png}``. Every figure is a cocotb +
Verilator run of the generated core (`tessera.generators.regress.run_regression`), bit-exact
against the decoded-weight matmul and cycle-equal to the engine twin, host transfers excluded.

``dense``
    The ``ternary`` preset on layers that fit: utilization = ideal (M N K / (inputs x outputs))
    over the measured cycles.

``rle``
    One TTQ-ternarized layer (M x K x N = 64 x 256 x 64, Gaussian weights, threshold chosen to
    give sparsity 0, 10, ..., 90 %, scales from the weights; bounded-ReLU 8-bit activations) on
    the ``ternary-rle`` preset, against the bound non-zero weights x M / inputs (one entry per
    cycle for ``inputs`` rows), and the same layer on the dense preset; the crossover is the
    sparsity where run-length needs fewer cycles than dense (linear interpolation).

Usage::

    .venv/bin/python benchmarks/ternary_cycles.py [--part dense|rle|all]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
JSON_PATH = RESULTS / "ternary_cycles.json"
LAYER = (64, 64, 256)                   # M, N, K
SPARSITIES = [i / 10 for i in range(10)]


def _regress(preset, cases, tag):
    from tessera.generators.config import load_config
    from tessera.generators.regress import run_regression
    cfg = load_config(preset)
    s = run_regression(cfg, cases=cases, test_filter="test_gemm",
                       out_dir=ROOT / "build" / "bench" / f"ternary-{tag}",
                       progress=lambda m: print("  " + m, flush=True))
    bad = [g for g in s["gemms"] if g["mismatches"] or g["cycles"] != g["golden_cycles"]]
    if not s["ok"] or bad:
        raise SystemExit(f"{preset}: the RTL run failed: {bad or s['tests']}")
    return cfg, {g["case"]: g for g in s["gemms"]}


def ttq_layer(m, n, k, sparsity, seed=0):
    """Activations (bounded-ReLU 8-bit codes) and TTQ ternary weights of a given sparsity."""
    from tessera.sim.engines.tree import TernaryB
    from tessera.sim.ternary import TernaryFormat, quantize_act, ternarize
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((k, n))
    # TTQ's per-layer threshold t * max|w|, t placed at the sparsity quantile of |w|.
    t = float(np.quantile(np.abs(w), sparsity) / np.abs(w).max()) if sparsity else 0.0
    tw = ternarize(w, t, per_channel=False)
    fmt = TernaryFormat(act_bits=8, scale_bits=12, scale_frac=8, per_channel=False)
    wp = np.array([fmt.encode_scale(float(x)) for x in tw.wp])
    wn = np.array([fmt.encode_scale(float(x)) for x in tw.wn])
    a = quantize_act(rng.uniform(-0.2, 1.2, (m, k)), 8)
    return np.asarray(a, dtype=np.uint64), TernaryB(tw.codes, wp, wn)


def part_dense():
    from tessera.generators.config import load_config
    from tessera.sim.workloads import save_operands
    cfg = load_config("ternary")
    layers = [(64, 64, 256), (64, 64, 64), (16, 64, 1024), (256, 32, 128)]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        for i, (m, n, k) in enumerate(layers):
            a, b = ttq_layer(m, n, k, 0.5, seed=i)
            path = Path(tmp) / f"dense{i}.npz"
            save_operands(cfg, path, a, b)
            cases.append({"name": f"dense_{m}x{n}x{k}", "m": m, "n": n, "k": k,
                          "kind": "ttq", "seed": i, "operands": str(path)})
        cfg, res = _regress("ternary", cases, "dense")
    for c in cases:
        g = res[c["name"]]
        out.append({"layer": f"{c['m']}x{c['n']}x{c['k']}", "cycles": g["cycles"],
                    "ideal": g["ideal_cycles"], "utilization": g["utilization"],
                    "runs": g["runs"]})
        print(json.dumps(out[-1]), flush=True)
    return {"preset": "ternary", "inputs": cfg.array.inputs, "outputs": cfg.array.outputs,
            "layers": out}


def part_rle():
    from tessera.generators.config import load_config
    from tessera.sim.workloads import save_operands
    m, n, k = LAYER
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        for s in SPARSITIES:
            a, b = ttq_layer(m, n, k, s, seed=1)
            path = Path(tmp) / f"rle{int(100 * s)}.npz"
            save_operands(load_config("ternary-rle"), path, a, b)
            cases.append({"name": f"s{int(round(100 * s)):02d}", "m": m, "n": n, "k": k,
                          "kind": "ttq", "seed": 1, "operands": str(path),
                          "nonzeros": b.nonzeros})
        cfg_r, rle = _regress("ternary-rle", cases, "rle")
        cfg_d, dense = _regress("ternary", cases, "rle-dense")
    P = cfg_r.array.inputs
    for c in cases:
        g, d = rle[c["name"]], dense[c["name"]]
        bound = c["nonzeros"] * m / P
        rows.append({"target_sparsity": int(c["name"][1:]) / 100,
                     "sparsity": 1 - c["nonzeros"] / (n * k), "nonzeros": c["nonzeros"],
                     "rle_cycles": g["cycles"], "bound": bound,
                     "rle_over_bound": g["cycles"] / bound if bound else None,
                     "rle_runs": g["runs"], "dense_cycles": d["cycles"]})
        print(json.dumps(rows[-1]), flush=True)
    cross = None
    for lo, hi in zip(rows, rows[1:]):
        dl, dh = lo["rle_cycles"] - lo["dense_cycles"], hi["rle_cycles"] - hi["dense_cycles"]
        if dl > 0 >= dh:
            cross = lo["sparsity"] + (hi["sparsity"] - lo["sparsity"]) * dl / (dl - dh)
            break
    return {"layer": f"{m}x{n}x{k}", "rle_preset": "ternary-rle", "lanes": P,
            "dense_preset": "ternary", "dense_inputs": cfg_d.array.inputs,
            "dense_outputs": cfg_d.array.outputs, "rows": rows, "crossover_sparsity": cross,
            "max_rle_over_bound": max(r["rle_over_bound"] for r in rows if r["rle_over_bound"])}


def render(res):
    lines = ["# Ternary engine cycles (RTL, cocotb + Verilator)", "",
             "From `benchmarks/ternary_cycles.py`; every run bit-exact against the decoded-weight "
             "matmul and cycle-equal to the engine twin; host transfers excluded.", ""]
    if "dense" in res:
        d = res["dense"]
        lines += [f"## Dense: `{d['preset']}` ({d['inputs']} inputs x {d['outputs']} trees)", "",
                  "| layer M x N x K | RUNs | cycles | ideal | utilization |", "|---|---|---|---|---|"]
        lines += [f"| {r['layer']} | {r['runs']} | {r['cycles']} | {r['ideal']:.0f} | "
                  f"{100 * r['utilization']:.2f} % |" for r in d["layers"]]
        lines.append("")
    if "rle" in res:
        r = res["rle"]
        lines += [f"## Run-length: `{r['rle_preset']}` ({r['lanes']} rows per entry) on a "
                  f"TTQ layer {r['layer']}", "",
                  f"Bound = non-zero weights x M / {r['lanes']}. Dense = the same layer on "
                  f"`{r['dense_preset']}` ({r['dense_inputs']} x {r['dense_outputs']}).", "",
                  "| sparsity | non-zeros | RLE cycles | bound | RLE / bound | dense cycles |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {100 * x['sparsity']:.1f} % | {x['nonzeros']} | {x['rle_cycles']} | "
                  f"{x['bound']:.0f} | {x['rle_over_bound']:.3f} | {x['dense_cycles']} |"
                  for x in r["rows"]]
        cross = r["crossover_sparsity"]
        lines += ["", f"Largest RLE / bound: {r['max_rle_over_bound']:.3f}. Crossover (run-length "
                  f"beats dense): " + (f"{100 * cross:.1f} % sparsity" if cross is not None
                                       else "none in 0..90 %"), ""]
    (RESULTS / "ternary_cycles.md").write_text("\n".join(lines))
    if "rle" in res:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        rows = res["rle"]["rows"]
        x = [100 * r["sparsity"] for r in rows]
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        ax.plot(x, [r["rle_cycles"] for r in rows], "o-", label="run-length (RTL)")
        ax.plot(x, [r["bound"] for r in rows], "--", label="bound: non-zeros / decode rate")
        ax.plot(x, [r["dense_cycles"] for r in rows], "s-", label="dense (RTL)")
        ax.set_xlabel("weight sparsity (%)")
        ax.set_ylabel("cycles")
        ax.set_title(f"TTQ layer {res['rle']['layer']}")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / "ternary_cycles.png", dpi=120)
        plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("dense", "rle", "all"), default="all")
    args = ap.parse_args(argv)
    res = json.loads(JSON_PATH.read_text()) if JSON_PATH.is_file() else {}
    if args.part in ("dense", "all"):
        res["dense"] = part_dense()
    if args.part in ("rle", "all"):
        res["rle"] = part_rle()
    RESULTS.mkdir(parents=True, exist_ok=True)
    JSON_PATH.write_text(json.dumps(res, indent=1) + "\n")
    render(res)
    print(f"wrote {JSON_PATH} and ternary_cycles.md/.png")


if __name__ == "__main__":
    sys.exit(main())
