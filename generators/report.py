"""`tessera report`: measured cycles of the reference GEMM (RTL) plus the last board build."""

import json
import pathlib

from tessera.generators.regress import REFERENCE_GEMM, run_regression


__all__ = ["make_report", "last_build", "check_report", "report_cases", "ReportError",
           "PLOT_MARKER"]


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


#: Put into every PNG `tessera report --plot` writes (its ``Software`` text chunk): an existing
#: file is replaced only if it carries this mark.
PLOT_MARKER = b"tessera report"


class ReportError(RuntimeError):
    """The reference GEMM failed on the RTL; the message names the failing test and why."""


def report_cases(cfg, *, plot=None, sizes=None):
    """The GEMM cases `make_report` runs: the reference GEMM, plus a size sweep for a plot."""
    m, n, k = REFERENCE_GEMM
    cases = [{"name": "reference_64", "m": m, "n": n, "k": k, "kind": "random", "seed": 7}]
    sweep = sizes or ([8, 16, 32, 64, 128] if plot else [])
    for s in sweep:
        if s != 64:
            cases.append({"name": f"square_{s}", "m": s, "n": s, "k": s, "kind": "random",
                          "seed": s})
    return cases


def _out_dir(cfg):
    return pathlib.Path(f"build/report/{cfg.core.name}-{cfg.digest()}")


def check_report(cfg, *, plot=None, sizes=None):
    """What `make_report` can decide before it runs anything (work folder, plot path);
    returns the cases it would run."""
    from tessera.generators.emit import check_output_file
    from tessera.generators.regress import check_regression
    cases = report_cases(cfg, plot=plot, sizes=sizes)
    check_regression(cfg, cases=cases, out_dir=_out_dir(cfg))
    if plot:
        check_output_file(plot, marker=PLOT_MARKER, what="plot file")
    return cases


def make_report(cfg, *, progress=print, plot=None, sizes=None):
    """Run the reference GEMM on the core's RTL (cocotb + Verilator) and gather the figures.

    Returns a dict with ``cycles``, ``ideal_cycles``, ``utilization`` (ideal / measured, host
    transfers excluded) and, when the core has been built for a board, ``luts``, ``dsps``,
    ``brams``, ``fmax_mhz`` from nextpnr. With ``plot``, also measures a sweep of square GEMM
    sizes and writes a utilization plot there (a new file, or one tessera wrote).
    """
    m, n, k = REFERENCE_GEMM
    cases = check_report(cfg, plot=plot, sizes=sizes)
    summary = run_regression(cfg, cases=cases, test_filter="test_gemm", progress=progress,
                             out_dir=_out_dir(cfg))
    if not summary["ok"]:
        bad = [t for t in summary["tests"] if t["status"] == "failed"]
        first = bad[0] if bad else {"name": "?", "message": ""}
        why = (first["message"] or "").strip().splitlines()
        raise ReportError(f"report: {first['name']} failed on the RTL of {cfg.core.name}"
                          + (f": {why[0]}" if why else "")
                          + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
                          + f"; JUnit: {summary['junit']}")
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
        import io
        from tessera.generators.emit import write_output_file
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, metadata={"Software": PLOT_MARKER.decode()})
        plt.close(fig)
        write_output_file(plot, buf.getvalue(), marker=PLOT_MARKER, what="plot file")
        rep["plot"] = str(plot)
    return rep
