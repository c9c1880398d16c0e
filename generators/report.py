"""`tessera report`: measured cycles of the reference GEMM and of layers (RTL), per run-time
mode, plus the last board build."""

import json
import pathlib

from tessera.generators.regress import REFERENCE_GEMM, run_regression


__all__ = ["make_report", "last_build", "check_report", "report_cases", "report_layers",
           "load_layers_file", "REPORT_LAYERS", "ReportError", "PLOT_MARKER"]


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


#: The default layers of `tessera report` besides the reference GEMM: (name, layer, input).
REPORT_LAYERS = (
    ("conv3x3", {"type": "Conv2d", "in_channels": 16, "out_channels": 16, "kernel": [3, 3],
                 "stride": [1, 1], "padding": [1, 1]}, [1, 16, 12, 12]),
    ("dense", {"type": "Dense", "in_features": 256, "out_features": 64}, [16, 256]),
)


def _modes(cfg):
    return cfg.pe.modes or (None,)


def report_cases(cfg, *, plot=None, sizes=None):
    """The GEMM cases `make_report` runs: the reference GEMM in every run-time mode, plus a
    size sweep for a plot."""
    m, n, k = REFERENCE_GEMM
    cases = []
    for mode in _modes(cfg):
        sfx = "" if mode is None else f"@{mode}"
        case = {"name": f"reference_64{sfx}", "m": m, "n": n, "k": k, "kind": "random",
                "seed": 7}
        if mode is not None:
            case["mode"] = mode
        cases.append(case)
    sweep = sizes or ([8, 16, 32, 64, 128] if plot else [])
    for s in sweep:
        if s != 64:
            cases.append({"name": f"square_{s}", "m": s, "n": s, "k": s, "kind": "random",
                          "seed": s})
    return cases


def report_layers(cfg, layers=None):
    """The layer cases `make_report` runs, in every run-time mode: ``layers`` (a list of
    ``(name, layer dict, input shape)``) or `REPORT_LAYERS`; refused with one line naming the
    layer if the engine does not run its type."""
    from tessera.sim.layers import layer_from_dict
    out = []
    for mode in _modes(cfg):
        sfx = "" if mode is None else f"@{mode}"
        for i, (name, layer, shape) in enumerate(layers or REPORT_LAYERS):
            lay = layer_from_dict(layer)
            if lay.type not in cfg.engine.layer_types:
                raise ValueError(f"report: layer {name!r} is a {lay.type}; the "
                                 f"{cfg.engine.name} engine runs "
                                 f"{', '.join(cfg.engine.layer_types)}")
            lay.out_shape(tuple(shape))
            case = {"name": f"{name}{sfx}", "layer": lay.to_dict(), "input": list(shape),
                    "kind": "random", "seed": 300 + i}
            if mode is not None:
                case["mode"] = mode
            out.append(case)
    return out


def load_layers_file(path):
    """Layers from a TOML file: ``[[layer]]`` tables with ``name``, ``input`` (the input
    shape) and the layer's own keys (``type = "Conv2d"``, ``in_channels``, ...)."""
    import tomllib
    with open(path, "rb") as f:
        data = tomllib.load(f)
    entries = data.get("layer")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: no [[layer]] tables; each needs type, input and the "
                         f"layer's keys")
    out = []
    for i, e in enumerate(entries):
        e = dict(e)
        name = e.pop("name", f"layer{i}")
        if "input" not in e:
            raise ValueError(f"{path}: layer {name!r} has no input shape (input = [N, C, H, W] "
                             f"or [N, features])")
        shape = e.pop("input")
        out.append((name, e, shape))
    return out


def _out_dir(cfg):
    return pathlib.Path(f"build/report/{cfg.core.name}-{cfg.digest()}")


def check_report(cfg, *, plot=None, sizes=None, layers=None):
    """What `make_report` can decide before it runs anything (work folder, plot path, the
    layers); returns the GEMM cases it would run."""
    from tessera.generators.emit import check_output_file
    from tessera.generators.regress import check_regression
    cases = report_cases(cfg, plot=plot, sizes=sizes)
    check_regression(cfg, cases=cases + report_layers(cfg, layers), out_dir=_out_dir(cfg))
    if plot:
        check_output_file(plot, marker=PLOT_MARKER, what="plot file")
    return cases


def make_report(cfg, *, progress=print, plot=None, sizes=None, layers=None, keep=None):
    """Run the reference GEMM and the report layers on the core's RTL (cocotb + Verilator), in
    every run-time mode, and gather the figures.

    Returns a dict with ``rows`` (one per workload and mode: the mapping as GEMM shapes, RUNs,
    measured cycles, ideal cycles at the engine's peak rate in that mode, utilization = ideal /
    measured, host transfers excluded, and the bytes each way), the reference GEMM's
    ``cycles``, ``ideal_cycles`` and ``utilization`` (first mode) and, when the core has been
    built for a board, ``luts``, ``dsps``, ``brams``, ``fmax_mhz`` from nextpnr. With ``plot``,
    also measures a sweep of square GEMM sizes and writes a utilization plot there. With
    ``keep``, all but the ``keep`` newest report folders, simulation runs and builds of this core
    are removed afterwards.
    """
    m, n, k = REFERENCE_GEMM
    cases = check_report(cfg, plot=plot, sizes=sizes, layers=layers)
    lcases = report_layers(cfg, layers)
    summary = run_regression(cfg, cases=cases, layers=lcases,
                             test_filter="test_gemm|test_layer", progress=progress,
                             out_dir=_out_dir(cfg), keep=keep)
    if keep is not None:
        from tessera.generators.regress import prune_work_folders
        prune_work_folders(_out_dir(cfg).parent, keep, exclude=_out_dir(cfg))
    if not summary["ok"]:
        bad = [t for t in summary["tests"] if t["status"] == "failed"]
        first = bad[0] if bad else {"name": "?", "message": ""}
        why = (first["message"] or "").strip().splitlines()
        raise ReportError(f"report: {first['name']} failed on the RTL of {cfg.core.name}"
                          + (f": {why[0]}" if why else "")
                          + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
                          + f"; JUnit: {summary['junit']}")
    from tessera.sim.layers import describe
    rows = []
    for g in summary["gemms"]:
        if not g["case"].startswith("reference_64"):
            continue
        rows.append({"workload": f"GEMM {m}x{n}x{k}", "mode": g.get("mode"),
                     "mapping": [[g["m"], g["n"], g["k"]]], "runs": g["runs"],
                     "cycles": g["cycles"], "ideal_cycles": g["ideal_cycles"],
                     "utilization": g["ideal_cycles"] / g["cycles"]})
    for g in summary["layers"]:
        rows.append({"workload": f"{describe(g['layer'])} on "
                                 f"{'x'.join(str(d) for d in g['input'])}",
                     "mode": g.get("mode"), "mapping": g["gemms"], "runs": g["runs"],
                     "cycles": g["cycles"], "ideal_cycles": g["ideal_cycles"],
                     "utilization": g["utilization"], "bytes_to_core": g["bytes_to_core"],
                     "bytes_from_core": g["bytes_from_core"]})
    ref = rows[0]
    rep = {
        "config": cfg.core.name,
        "gemm": f"{m}x{n}x{k}",
        "pes": cfg.pes,
        "cycles": ref["cycles"],
        "ideal_cycles": ref["ideal_cycles"],
        "utilization": ref["utilization"],
        "runs": ref["runs"],
        "rows": rows,
    }
    b = last_build(cfg)
    if b:
        rep.update({"board": b["board"], "luts": b["luts"], "dsps": b["dsps"],
                    "brams": b["brams"], "fmax_mhz": b["fmax_mhz"]})
    if plot:
        pts = sorted((g["m"], g["ideal_cycles"] / g["cycles"]) for g in summary["gemms"]
                     if g.get("mode") is None or g["case"].startswith("square")
                     or g["mode"] == _modes(cfg)[0])
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
