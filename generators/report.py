"""`tessera report`: measured cycles of the reference GEMM (RTL) plus the last board build."""

import json
import pathlib

from tessera.generators.regress import REFERENCE_GEMM, run_regression


__all__ = ["make_report", "last_build"]


def last_build(cfg, root="build/fpga"):
    """The newest ``build_result.json`` of this core on any board, or None."""
    found = []
    for board in ("icebreaker", "ulx3s-85f"):
        p = pathlib.Path(root) / f"{cfg.core.name}-{board}" / "build_result.json"
        if p.is_file():
            found.append((p.stat().st_mtime, p))
    if not found:
        return None
    return json.loads(max(found)[1].read_text())


def make_report(cfg, *, progress=print, plot=None, sizes=None):
    """Run the reference GEMM on the core's RTL (cocotb + Verilator) and gather the figures.

    Returns a dict with ``cycles``, ``ideal_cycles``, ``utilization`` (ideal / measured, host
    transfers excluded) and, when the core has been built for a board, ``luts``, ``dsps``,
    ``brams``, ``fmax_mhz`` from nextpnr. With ``plot``, also measures a sweep of square GEMM
    sizes and writes a utilization plot there.
    """
    m, n, k = REFERENCE_GEMM
    cases = [{"name": "reference_64", "m": m, "n": n, "k": k, "kind": "random", "seed": 7}]
    sweep = sizes or ([8, 16, 32, 64, 128] if plot else [])
    for s in sweep:
        if s != 64:
            cases.append({"name": f"square_{s}", "m": s, "n": s, "k": s, "kind": "random",
                          "seed": s})
    summary = run_regression(cfg, cases=cases, test_filter="test_gemm", progress=progress,
                             out_dir=pathlib.Path(f"build/report/{cfg.core.name}-{cfg.digest()}"))
    if not summary["ok"]:
        bad = [t["name"] for t in summary["tests"] if t["status"] == "failed"]
        raise RuntimeError(f"reference GEMM failed on the RTL: {bad}")
    ref = next(g for g in summary["gemms"] if g["case"] == "reference_64")
    rep = {
        "config": cfg.core.name,
        "gemm": f"{m}x{n}x{k}",
        "pes": cfg.pes,
        "cycles": ref["cycles"],
        "ideal_cycles": ref["ideal_cycles"],
        "utilization": ref["ideal_cycles"] / ref["cycles"],
        "runs": ref["runs"],
    }
    b = last_build(cfg)
    if b:
        rep.update({"board": b["board"], "luts": b["luts"], "dsps": b["dsps"],
                    "brams": b["brams"], "fmax_mhz": b["fmax_mhz"]})
    if plot:
        pts = sorted((g["m"], g["ideal_cycles"] / g["cycles"]) for g in summary["gemms"])
        rep["sweep"] = [{"size": s, "utilization": u} for s, u in pts]
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], "o-")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("square GEMM size M=N=K")
        ax.set_ylabel("utilization (%)")
        ax.set_title(f"{cfg.core.name}: measured RTL cycles vs ideal")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        fig.savefig(plot, dpi=120)
        rep["plot"] = str(plot)
    return rep
