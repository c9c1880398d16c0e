"""Numerical study: plain fixed point, FPEC and BiScaled on long-tailed tensors.

For code widths W (sign included) of 4, 6 and 8 bits, dot products of two tensors of one
kind are computed bit-exactly by the golden models (`tessera.sim.fpec`,
`tessera.sim.biscaled`) and compared with the float64 dot product of the unquantized data:

* ``fxp``: plain fixed point, W bits, the fraction bits chosen so the tensor's largest
  magnitude fits (what a single scale must do);
* ``fxp+2``: plain fixed point with W + 2 bits (the storage FPEC uses);
* ``fpec``: W computation bits + EZB + EDB (EMB 0, threshold LSB/4), compensated MAC;
* ``biscaled``: W bits, scale-wide = the ``fxp`` format, scale-fine with the fraction bits
  that make the histogram tail threshold fit, block 64 index lists.

Data: Laplace (b = 1), signed log-normal (sigma = 1), and the weights and activations of a
64-32-10 ReLU network trained here (NumPy SGD) on scikit-learn's bundled digits (no download):
layer 1 (pixels x W1) and layer 2 (hidden activations x W2).

Reported per case: relative error ``mean |approx - exact| / mean |exact|``, the fraction of
elements compensated (FPEC, EZB = 0) or scale-wide (BiScaled), and effective bits per element
(BiScaled: codes + per-block counts and indices).

Usage::

    .venv/bin/python benchmarks/approx_study.py [--quick]

Writes ``benchmarks/results/approx_study.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tessera.hdl.arith.fixed import FixedFormat  # noqa: E402
from tessera.sim.biscaled import BiScaledFormat, biscaled_dot_codes, tail_threshold  # noqa: E402
from tessera.sim.fpec import FpecFormat, fpec_dot_value  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
WIDTHS = (4, 6, 8)


def fit_frac_bits(x, bits):
    """Largest fraction-bit count whose ``bits``-wide signed range holds ``max |x|``."""
    top = float(np.max(np.abs(x)))
    top = top if top > 0 else 1.0
    return (bits - 1) - math.ceil(math.log2(top + 1e-300) + 1e-12) if top >= 1e-300 else 0


def fixed_for(x, bits):
    fb = fit_frac_bits(x, bits)
    return FixedFormat(bits - 1 - fb, fb)


def digits_tensors(seed, epochs):
    from sklearn.datasets import load_digits
    d = load_digits()
    rng = np.random.default_rng(seed)
    x = d.data / 16.0
    y = np.eye(10)[d.target]
    w1 = rng.normal(0, 1 / 8, (64, 32))
    w2 = rng.normal(0, 1 / math.sqrt(32), (32, 10))
    for _ in range(epochs):
        for i in range(0, len(x), 32):
            xb, yb = x[i:i + 32], y[i:i + 32]
            h = np.maximum(xb @ w1, 0)
            z = h @ w2
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            g2 = (p - yb) / len(xb)
            g1 = (g2 @ w2.T) * (h > 0)
            w2 -= 0.5 * h.T @ g2
            w1 -= 0.5 * xb.T @ g1
    h = np.maximum(x @ w1, 0)
    acc = float(np.mean(np.argmax(h @ w2, axis=1) == d.target))
    return {"digits_l1": (x[:400], w1), "digits_l2": (h[:400], w2)}, acc


def synthetic(kind, rng, n, k):
    if kind == "laplace":
        return rng.laplace(0, 1, (n, k)), rng.laplace(0, 1, (k, n))
    def signed_lognormal(shape):
        return rng.lognormal(0, 1, shape) * rng.choice([-1, 1], shape)
    return signed_lognormal((n, k)), signed_lognormal((k, n))


def study_pair(x, w, bits):
    """x: M x K, w: K x N -> metrics per method."""
    exact = x @ w
    scale = float(np.mean(np.abs(exact))) or 1.0
    out = {}
    fx, fw = fixed_for(x, bits), fixed_for(w, bits)
    out["fxp"] = {"rel_err": float(np.mean(np.abs(
        fx.value(fx.quantize_int(x)) @ fw.value(fw.quantize_int(w)) - exact)) / scale),
        "bits": bits}
    fx2, fw2 = fixed_for(x, bits + 2), fixed_for(w, bits + 2)
    out["fxp+2"] = {"rel_err": float(np.mean(np.abs(
        fx2.value(fx2.quantize_int(x)) @ fw2.value(fw2.quantize_int(w)) - exact)) / scale),
        "bits": bits + 2}
    px, pw = FpecFormat(fx), FpecFormat(fw)
    cx, cw = px.quantize(x), pw.quantize(w)
    got = fpec_dot_value(px, pw, cx[:, None, :], cw.T[None, :, :])
    out["fpec"] = {"rel_err": float(np.mean(np.abs(got - exact)) / scale), "bits": bits + 2,
                   "compensated": 0.5 * (px.compensated_fraction(cx)
                                         + pw.compensated_fraction(cw))}
    res = {}
    for name, t, f in (("x", x, fx), ("w", w.T, fw)):
        thr = tail_threshold(t)
        fine_fb = max(f.frac_bits + 1, fit_frac_bits(np.array([thr]), bits))
        bf = BiScaledFormat(bits, fine_fb, f.frac_bits)
        codes, sw = bf.encode(t, threshold=thr)
        res[name] = (bf, codes, sw, bf.store(codes, sw))
    (bx, cx_, sx, stx), (bw, cw_, sw_, stw) = res["x"], res["w"]
    _, tot = biscaled_dot_codes(bx, bw, cx_[:, None, :], sx[:, None, :], cw_[None, :, :],
                                sw_[None, :, :])
    got = tot * 2.0 ** -(bx.fine_frac_bits + bw.fine_frac_bits)
    n = stx.codes.size + stw.codes.size
    out["biscaled"] = {"rel_err": float(np.mean(np.abs(got - exact)) / scale),
                       "bits": (stx.storage_bits + stw.storage_bits) / n,
                       "wide": (int(sx.sum()) + int(sw_.sum())) / n,
                       "d": [bx.d, bw.d]}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    n, k = (32, 256) if args.quick else (96, 256)
    cases = {kind: synthetic(kind, rng, n, k) for kind in ("laplace", "lognormal")}
    dig, acc = digits_tensors(args.seed, 3 if args.quick else 20)
    cases.update(dig)
    results = {"digits_test_accuracy_float": acc, "cases": []}
    for name, (x, w) in cases.items():
        for bits in WIDTHS:
            r = study_pair(x, w, bits)
            results["cases"].append({"data": name, "W": bits, **r})
            print(name, bits, {m: round(v["rel_err"], 4) for m, v in r.items()}, flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "approx_study.json").write_text(json.dumps(results, indent=1) + "\n")
    head = ("| data | W | fxp (W) | fxp (W+2) | FPEC (W+2 bits) | compensated | BiScaled | "
            "scale-wide | BiScaled eff. bits |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for c in results["cases"]:
        lines.append(f"| {c['data']} | {c['W']} | {c['fxp']['rel_err']:.4f} | "
                     f"{c['fxp+2']['rel_err']:.4f} | {c['fpec']['rel_err']:.4f} | "
                     f"{100 * c['fpec']['compensated']:.1f} % | {c['biscaled']['rel_err']:.4f} | "
                     f"{100 * c['biscaled']['wide']:.2f} % | {c['biscaled']['bits']:.2f} |")
    lines.append("")
    lines.append(f"Relative error = mean |approx - exact| / mean |exact| over the dot products; "
                 f"digits network float test accuracy {acc:.3f}.")
    (RESULTS / "approx_study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    # matplotlib is a dependency (pyproject.toml): a failure here is a real failure.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(cases), figsize=(4 * len(cases), 3.2), sharey=True)
    for ax, name in zip(axes, cases):
        rows = [c for c in results["cases"] if c["data"] == name]
        for method in ("fxp", "fxp+2", "fpec", "biscaled"):
            ax.semilogy([c["W"] for c in rows], [c[method]["rel_err"] for c in rows],
                        marker="o", label=method)
        ax.set_title(name)
        ax.set_xlabel("W (code bits)")
    axes[0].set_ylabel("relative error of dot products")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "approx_study.png", dpi=110)


if __name__ == "__main__":
    main()
