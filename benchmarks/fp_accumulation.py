"""Numerical study: accumulation precision of FP8 dot products (swamping and chunking).

Dot products of FP8 (E4M3, E5M2) inputs are accumulated bit-exactly with the golden model
:mod:`tessera.sim.fp` (fused multiply-add per product, one accumulator rounding per step) in

* plain FP16 (IEEE binary16, RNE),
* chunk-based FP16 (spec/float.md 2.2) with chunk length CL in {16, 64, 256},
* plain and CL=64 chunked DLFloat16 (1-6-9, RNU),
* exact accumulation (``pe.accumulate = "exact"``: the exact sum of the products, rounded once
  into FP16 or DLFloat16, :func:`tessera.sim.fp.exact_mac`),
* plain FP32,

and compared with the float64 dot product of the same quantized inputs. Data sets:
``normal`` (a, b ~ N(0,1)), ``relu`` (a = max(0, N(0,1)) activations, b ~ N(0,1) weights) and
``relu_pos`` (ReLU activations times |N(0,1)|: all products >= 0, the worst case for swamping,
as in a sum of squares or a first layer with non-negative weights).

Usage::

    .venv/bin/python benchmarks/fp_accumulation.py [--quick] [--trials N] [--seed S]

Writes ``benchmarks/results/fp_accumulation.{json,md,png}`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tessera.hdl.arith.formats import FORMATS  # noqa: E402
from tessera.sim import fp  # noqa: E402

LENGTHS = (64, 256, 1024, 4096)
INPUTS = ("fp8_e4m3", "fp8_e5m2")
DATASETS = ("normal", "relu", "relu_pos")
#: label -> (accumulator format, chunk length, None (round every step) or "exact")
ACCUMULATORS = {
    "fp16": ("fp16", None),
    "fp16 CL16": ("fp16", 16),
    "fp16 CL64": ("fp16", 64),
    "fp16 CL256": ("fp16", 256),
    "fp16 exact": ("fp16", "exact"),
    "dlfloat16": ("dlfloat16", None),
    "dlfloat16 CL64": ("dlfloat16", 64),
    "dlfloat16 exact": ("dlfloat16", "exact"),
    "fp32": ("fp32", None),
}


def make_data(kind: str, rng: np.random.Generator, trials: int, n: int):
    """Float64 activations and weights of one data set, shape (trials, n) each."""
    a = rng.standard_normal((trials, n))
    b = rng.standard_normal((trials, n))
    if kind == "relu":
        a = np.maximum(a, 0.0)
    elif kind == "relu_pos":
        a, b = np.maximum(a, 0.0), np.abs(b)
    elif kind != "normal":
        raise ValueError(f"data set must be one of {DATASETS}, not {kind!r}")
    return a, b


def run(trials: int, lengths, seed: int, log=print) -> dict:
    """Run the study; return a JSON-friendly dict of results."""
    n_max = max(lengths)
    out = {"trials": trials, "lengths": list(lengths), "seed": seed,
           "accumulators": {k: {"format": f, "chunk": c} for k, (f, c) in ACCUMULATORS.items()},
           "product_rounding": "exact_fused", "results": []}
    for fin in INPUTS:
        for kind in DATASETS:
            rng = np.random.default_rng([seed, INPUTS.index(fin), DATASETS.index(kind)])
            xa, xb = make_data(kind, rng, trials, n_max)
            a, b = fp.encode(fin, xa), fp.encode(fin, xb)
            prods = fp.decode(fin, a) * fp.decode(fin, b)      # exact in float64
            ref = {L: prods[:, :L].sum(axis=1) for L in lengths}  # float64 reference
            for label, (facc, chunk) in ACCUMULATORS.items():
                t0 = time.time()
                if chunk is None:
                    codes = fp.mac(fin, a, b, facc, checkpoints=lengths)
                elif chunk == "exact":
                    codes = fp.exact_mac(fin, a, b, facc, checkpoints=lengths)
                else:
                    codes = fp.chunk_mac(fin, a, b, facc, chunk=chunk, checkpoints=lengths)
                vals = fp.decode(facc, codes)
                for i, L in enumerate(lengths):
                    r = ref[L]
                    with np.errstate(divide="ignore", invalid="ignore"):
                        rel = np.abs(vals[:, i] - r) / np.abs(r)
                    rel = rel[np.abs(r) > 0]
                    out["results"].append({
                        "input": fin, "data": kind, "acc": label, "length": L,
                        "median_rel_err": float(np.median(rel)),
                        "p95_rel_err": float(np.percentile(rel, 95)),
                        "max_rel_err": float(np.max(rel)),
                        "n_nonfinite": int(np.sum(~np.isfinite(vals[:, i]))),
                    })
                log(f"  {fin:9s} {kind:8s} {label:15s} done in {time.time() - t0:5.1f} s")
    out["swamping_check"] = swamping_check()
    return out


def swamping_check() -> dict:
    """spec/float.md 2.2: 4096 products 1.0 * 1.0 (sequential FP16 stalls at 2048)."""
    one = np.full(4096, 0x38)                                  # 1.0 in fp8_e4m3
    res = {}
    for facc in ("fp16", "dlfloat16"):
        res[f"{facc} sequential"] = float(fp.decode(facc, fp.mac("fp8_e4m3", one, one, facc)))
        res[f"{facc} CL64"] = float(fp.decode(facc, fp.chunk_mac("fp8_e4m3", one, one, facc,
                                                                 chunk=64)))
        res[f"{facc} exact"] = float(fp.decode(facc, fp.exact_mac("fp8_e4m3", one, one, facc)))
    return res


def _fmt_err(x: float) -> str:
    return f"{x:.2e}"


def markdown(res: dict) -> str:
    lengths = res["lengths"]
    lines = [
        "# FP8 dot-product accumulation: relative error vs float64",
        "",
        f"Generated by `benchmarks/fp_accumulation.py` ({res['trials']} trials per cell, "
        f"seed {res['seed']}). Inputs quantized to FP8 (RNE); each product is exact and added "
        "with one accumulator rounding (fused), except in the `exact` rows, where the exact "
        "sum of all N products is rounded once. Error = |acc - dot64| / |dot64|, where dot64 "
        "is the float64 dot product of the same quantized inputs (exact for E4M3, whose "
        "sums need at most 48 bits; for E5M2 within float64's own rounding, orders of "
        "magnitude below the errors shown). Cells: median / 95th percentile.",
        "",
    ]
    for fin in INPUTS:
        for kind in DATASETS:
            lines += [f"## {fin}, data `{kind}`", "",
                      "| accumulator | " + " | ".join(f"N={L}" for L in lengths) + " |",
                      "|---|" + "---|" * len(lengths)]
            for label in res["accumulators"]:
                cells = []
                for L in lengths:
                    r = next(x for x in res["results"] if x["input"] == fin
                             and x["data"] == kind and x["acc"] == label and x["length"] == L)
                    cells.append(f"{_fmt_err(r['median_rel_err'])} / "
                                 f"{_fmt_err(r['p95_rel_err'])}")
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
            lines.append("")
    sc = res["swamping_check"]
    lines += ["## Deterministic swamping check (spec/float.md 2.2)", "",
              "4096 products 1.0 x 1.0:", "",
              "| accumulation | result |", "|---|---|"]
    lines += [f"| {k} | {v:g} |" for k, v in sc.items()]
    lines.append("")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(INPUTS), len(DATASETS), figsize=(4.2 * len(DATASETS),
                                                                  3.6 * len(INPUTS)),
                             sharex=True, squeeze=False)
    for i, fin in enumerate(INPUTS):
        for j, kind in enumerate(DATASETS):
            ax = axes[i][j]
            for label in res["accumulators"]:
                pts = [(x["length"], x["median_rel_err"], x["p95_rel_err"])
                       for x in res["results"] if x["input"] == fin and x["data"] == kind
                       and x["acc"] == label]
                L, med, p95 = zip(*pts)
                line, = ax.loglog(L, med, marker="o", label=label)
                ax.loglog(L, p95, ls=":", color=line.get_color())
            ax.set_title(f"{fin}, {kind}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            if i == len(INPUTS) - 1:
                ax.set_xlabel("dot-product length N")
            if j == 0:
                ax.set_ylabel("relative error (median; p95 dotted)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer trials and lengths up to 1024 (about 20 s)")
    ap.add_argument("--trials", type=int, default=None, help="trials per cell (default 500, "
                    "100 with --quick)")
    ap.add_argument("--seed", type=int, default=2018)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    trials = args.trials or (100 if args.quick else 500)
    if trials < 2:
        ap.error(f"--trials must be >= 2, not {trials}")
    lengths = LENGTHS[:3] if args.quick else LENGTHS
    print(f"fp_accumulation: {trials} trials, lengths {lengths}, formats "
          f"{', '.join(FORMATS[f].describe() for f in ('fp16', 'dlfloat16'))}")
    t0 = time.time()
    res = run(trials, lengths, args.seed)
    res["quick"] = bool(args.quick)
    res["seconds"] = round(time.time() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / "fp_accumulation"
    md = markdown(res)
    # write to temporaries first so that no half-written result is left behind
    for suffix, text in ((".json", json.dumps(res, indent=1)), (".md", md)):
        tmp = stem.with_suffix(suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, stem.with_suffix(suffix))
    tmp = stem.with_name(stem.name + ".tmp.png")
    plot(res, tmp)
    os.replace(tmp, stem.with_suffix(".png"))
    print(md)
    print(f"wrote {stem}.json, .md, .png in {res['seconds']} s")
    ok = all(math.isclose(v, 4096 if ("CL64" in k or "exact" in k) else 2048) for k, v in
             res["swamping_check"].items())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
