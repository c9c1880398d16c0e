"""The analytic performance model (`tessera.sim.perf.predict`) against RTL cycle counts.

For every config in ``CONFIGS`` (presets, and presets with other array shapes, scratchpad
depths, accumulate modes, epilogues and FEIE modes: every engine and PE kind of the registry),
a seeded random set of layers (``Dense`` and ``Conv2d``: varied shapes, strides, paddings,
depthwise groups, K split over accumulating RUNs where the stores are small; a run-time mode
per layer for kinds with modes; the on-chip epilogue on some layers of cores that build one)
runs on the core's Verilated RTL (`tessera.sim.vsim.VerilatorCore`: one Verilator build per
config, reused for all its layers) through the host driver (`run_layer`, codes). The RTL's
cycles of a layer are the sum of its RUNs' STATUS cycle counts (host transfers excluded). The
model predicts each layer from its shape and, for the data-dependent engines, the non-zero
counts of its operands (run-length ternary weights, FEIE activations). Error =
(predicted - RTL) / RTL per point.

Also measured: the model's wall time on whole networks (the digits MLP and CNN, a VGG-style
stack) per engine, and bytes over the host link (predicted against what the driver sent and
received on the RTL; the RTL run polls STATUS more often than the one poll per RUN the model
counts, so only the data bytes are compared).

Writes ``benchmarks/results/perf_model.{json,md,png}``.

Usage::

    .venv/bin/python benchmarks/perf_model.py [--configs a,b] [--points N] [--jobs N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
JSON_PATH = RESULTS / "perf_model.json"
MD_PATH = RESULTS / "perf_model.md"
PNG_PATH = RESULTS / "perf_model.png"
BOUND = 2.0          # per cent, every point
#: Zero fractions of the skipped operand on the data-dependent engines, point by point.
SPARSITY = (0.0, 0.5, 0.8, 0.95)
STATUS_REPLY = 7     # bytes of a STATUS answer (tessera.hdl.ctrl.protocol.STATUS_BYTES)

#: (name, preset, {section: {key: value}}): every engine, PE kind and accumulate mode; array
#: shapes and scratchpad depths varied (small depths force K splits and many RUNs).
CONFIGS = [
    ("int8-4x4", "int8-4x4", {}),
    ("int-2x8-d32", "int8-4x4", {"array": {"rows": 2, "cols": 8},
                                 "memory": {"a_depth": 32, "b_depth": 32, "c_depth": 64}}),
    ("int-8x3-d128", "int8-4x4", {"array": {"rows": 8, "cols": 3},
                                  "pe": {"acc_bits": 24},
                                  "memory": {"a_depth": 128, "b_depth": 64, "c_depth": 256}}),
    ("int-requant-3x5", "int8-requant", {"array": {"rows": 3, "cols": 5},
                                         "memory": {"a_depth": 64, "b_depth": 48,
                                                    "c_depth": 64, "p_depth": 16}}),
    ("fp8-step-chunk", "fp8", {}),
    ("fp8-exact-2x3-epi", "fp8", {"array": {"rows": 2, "cols": 3},
                                  "pe": {"accumulate": "exact", "chunk": 0, "stages": 5,
                                         "combine_stages": 4},
                                  "memory": {"a_depth": 48, "b_depth": 48, "c_depth": 32,
                                             "p_depth": 16}}),
    ("dlfloat-step", "dlfloat", {"memory": {"a_depth": 96, "b_depth": 96, "c_depth": 128}}),
    ("bitfusion-8x8", "bitfusion", {}),
    ("bitfusion-3x2-d64", "bitfusion", {"array": {"rows": 3, "cols": 2},
                                        "memory": {"a_depth": 64, "b_depth": 64,
                                                   "c_depth": 64}}),
    ("multiprec-8x8", "multiprec", {}),
    ("multiprec-2x4-d64", "multiprec", {"array": {"rows": 2, "cols": 4},
                                        "memory": {"a_depth": 64, "b_depth": 64,
                                                   "c_depth": 64, "p_depth": 16}}),
    ("fpec-2x2", "fpec", {}),
    ("biscaled-2x2", "biscaled", {}),
    ("biscaled-3x3-epi", "biscaled", {"array": {"rows": 3, "cols": 3},
                                      "memory": {"a_depth": 32, "b_depth": 32, "c_depth": 32,
                                                 "p_depth": 16}}),
    ("ternary-dense-16x2", "ternary", {}),
    ("ternary-dense-8x3-epi", "ternary", {"array": {"inputs": 8, "outputs": 3},
                                          "memory": {"a_depth": 32, "b_depth": 48,
                                                     "c_depth": 64, "p_depth": 16}}),
    ("ternary-rle-16", "ternary-rle", {}),
    ("ternary-rle-4-z3", "ternary-rle", {"array": {"inputs": 4, "z_bits": 3, "scales": 32},
                                         "memory": {"a_depth": 64, "b_depth": 128,
                                                    "c_depth": 64}}),
    ("feie-4x3", "feie", {}),
    ("feie-2x3-dense-drain2", "feie", {"array": {"tiles": 2, "pes": 3, "kmax": 3,
                                                 "zero_skip": False, "drain": 2},
                                "memory": {"a_depth": 256, "b_depth": 16, "c_depth": 64}}),
]


def say(msg, _t0=time.monotonic()):
    print(f"[{time.monotonic() - _t0:7.1f}s] {msg}", flush=True)


def make_config(name, preset, over):
    from tessera.generators.config import config_from_dict, load_config
    d = load_config(preset).to_dict()
    for sec, vals in over.items():
        d[sec].update(vals)
    d["core"]["boards"] = []
    if over:
        d["core"]["name"] = "tessera_pm_" + name.replace("-", "_")
    return config_from_dict(d, source=f"preset:{preset} + {over}" if over else f"preset:{preset}")


def shape_text(cfg):
    a = cfg.array
    if cfg.engine.name == "systolic":
        s = f"{a.rows}x{a.cols}"
    elif cfg.engine.name == "tree":
        s = f"{a.encoding} {a.inputs}x{a.outputs}" + (f" z{a.z_bits}" if not a.dense else "")
    else:
        s = f"{a.tiles}x{a.pes} k{a.kmax}{'' if a.zero_skip else ' dense'}"
    m = cfg.memory
    return s + f", A/B/C {m.a_depth}/{m.b_depth}/{m.c_depth}" + \
        (f", P {m.p_depth}" if getattr(m, "p_depth", 0) else "")


def kind_text(cfg):
    pe = cfg.pe
    if pe.name == "fpmac":
        return f"fpmac {pe.input_format}/{pe.acc_format} {pe.accumulate}" + \
            (f" chunk {pe.chunk}" if pe.chunk else "")
    return pe.name


def epilogue_dict(cfg, mode):
    """Scalar epilogue parameters from the engine's own layer cases (any channel count)."""
    for c in cfg.engine.layer_cases(quick=False):
        e = c.get("epilogue")
        if e and c.get("mode") in (None, mode):
            return {k: (v[0] if np.ndim(v) == 1 else v) for k, v in e.items()}
    return None


def data_dependent(cfg):
    """Whether the core's cycles follow the operands' zeros (FEIE activations, run-length
    ternary weights)."""
    return cfg.engine.name == "feie" or (cfg.engine.name == "tree" and not cfg.array.dense)


def layer_set(cfg, n, seed):
    """``n`` seeded random (layer, input shape, mode, epilogue, sparsity) points for this core
    (four more, and a sparsity from `SPARSITY` per point, on the data-dependent engines; FEIE
    Dense layers up to 100 rows, so the mapper's last row of 64 is short)."""
    from tessera.sim.layers import Conv2d, Dense
    rng = np.random.default_rng(seed)
    eng = cfg.engine.name
    dd = data_dependent(cfg)
    n = n + 4 if dd else n
    modes = [m for m in cfg.pe.regress_modes()]
    has_epi = cfg.engine.epilogue() is not None
    kmax = cfg.array.kmax if eng == "feie" else 5
    pes = cfg.array.pes if eng == "feie" else 7
    out = []
    while len(out) < n:
        i = len(out)
        mode = modes[int(rng.integers(len(modes)))]
        epi = has_epi and i % 3 == 1
        if i % 3 == 0:
            layer = Dense(int(rng.integers(4, 260)), int(rng.integers(2, 40)))
            rows = int(rng.integers(1, 101 if eng == "feie" else 13))
            shape = (rows, layer.in_features)
        else:
            k = int(rng.choice([1, 3, 3, 5]))
            s = int(rng.choice([1, 1, 2]))
            if k > kmax or -(-k // s) > pes:
                k, s = min(3, kmax), 1
            cin = int(rng.integers(1, 17))
            dw = rng.random() < 0.2
            cout = cin if dw else int(rng.integers(1, 21))
            hw = int(rng.integers(max(k, 3), 11))
            layer = Conv2d(cin, cout, kernel=k, stride=s, padding=int(rng.integers(0, k)),
                           groups=cin if dw else 1)
            shape = (int(rng.integers(1, 3)), cin, hw, int(rng.integers(max(k, 3), 11)))
        out.append((layer, shape, mode, epi, SPARSITY[i % len(SPARSITY)] if dd else 0.0))
    return out


def sparsify(cfg, x, w, sparsity, rng):
    """Zero a ``sparsity`` fraction of the operand whose zeros the engine skips: FEIE's
    activations, the run-length engine's ternary weights."""
    if not sparsity:
        return x, w
    if cfg.engine.name == "feie":
        return np.where(rng.random(np.shape(x)) < sparsity, 0, x).astype(np.uint64), w
    from tessera.sim.engines.tree import TernaryB
    codes = np.where(rng.random(w.codes.shape) < sparsity, 0, w.codes)
    return x, TernaryB(codes, w.wp, w.wn)


def describe(layer, shape):
    from tessera.sim.layers import Dense
    if isinstance(layer, Dense):
        return f"Dense {layer.in_features}->{layer.out_features} x{shape[0]}"
    dw = " dw" if layer.groups > 1 else ""
    return (f"Conv{layer.kernel[0]}x{layer.kernel[1]}{dw} s{layer.stride[0]} "
            f"p{layer.padding[0]} {layer.in_channels}->{layer.out_channels} "
            f"{shape[0]}x{shape[2]}x{shape[3]}")


class _GoldenCore:
    """Stands in for `VerilatorCore` with ``--golden`` (the point set on the golden core)."""

    class build:
        rebuilt = False

    def __init__(self, cfg, **_):
        from tessera.sim.core import GoldenCore, GoldenTransport
        self.transport = GoldenTransport(GoldenCore(cfg))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def run_config(name, preset, over, n_points, seed, jobs, golden=False):
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.lowering import run_layer
    from tessera.sim.perf import predict
    from tessera.sim.vsim import VerilatorCore
    import warnings
    cfg = make_config(name, preset, over)
    points = layer_set(cfg, n_points, seed)
    rows = []
    t0 = time.monotonic()
    core_cls = _GoldenCore if golden else VerilatorCore
    with core_cls(cfg, progress=lambda m: say(f"  {name}: {m}"), jobs=jobs,
                       recv_timeout_s=600.0) as core:
        build_s = time.monotonic() - t0
        say(f"{name}: core ready in {build_s:.0f} s "
            f"({'rebuilt' if core.build.rebuilt else 'cached'})")
        drv = TesseraDriver(core.transport, cfg)
        asyncio.run(drv.connect())
        for i, (layer, shape, mode, epi, sp) in enumerate(points):
            x, w = cfg.engine.layer_operands(layer, list(shape), kind="random",
                                             seed=seed * 1000 + i, mode=mode)
            x, w = sparsify(cfg, x, w, sp, np.random.default_rng(seed * 1000 + i))
            kw = {}
            if epi:
                kw["epilogue"] = epilogue_dict(cfg, mode)
            ts = time.monotonic()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, st = asyncio.run(run_layer(drv, layer, x, w, raw=True, mode=mode, **kw))
            sim_s = time.monotonic() - ts
            pr = predict(layer, cfg, input_shape=shape, mode=mode, epilogue=epi, x=x, w=w)
            lp = pr.layers[0]
            err = 100.0 * (pr.cycles - st.cycles) / st.cycles
            rows.append({"config": name, "engine": cfg.engine.name, "kind": kind_text(cfg),
                         "shape": shape_text(cfg), "layer": describe(layer, shape),
                         "mode": mode, "epilogue": bool(epi), "sparsity": sp,
                         "runs": st.runs,
                         "runs_predicted": pr.runs, "rtl_cycles": int(st.cycles),
                         "predicted": int(pr.cycles), "error_pct": err,
                         "terms": lp.terms, "model_ms": pr.model_s * 1e3, "sim_s": sim_s,
                         "bytes_to_core": st.bytes_out, "bytes_from_core": st.bytes_in,
                         "bytes_to_core_pred": lp.bytes_to_core,
                         "bytes_from_core_pred": lp.bytes_from_core})
            say(f"  {name} [{i + 1}/{len(points)}] {describe(layer, shape)}"
                f"{' @' + mode if mode else ''}{' +epi' if epi else ''}"
                f"{f' sparsity {sp:.2f}' if sp else ''}: RTL {st.cycles} "
                f"({st.runs} RUNs), model {pr.cycles} ({err:+.2f} %), {sim_s:.1f} s")
    return rows, {"config": name, "preset": preset, "overrides": over,
                  "engine": cfg.engine.name, "kind": kind_text(cfg), "shape": shape_text(cfg),
                  "build_s": build_s, "rebuilt": bool(core.build.rebuilt),
                  "wall_s": time.monotonic() - t0}


# -- model time on whole networks ------------------------------------------------------------
def networks():
    from tessera.sim.layers import Conv2d, Dense, Flatten, MaxPool2d
    mlp = [(Dense(64, 64), (50, 64)), (Dense(64, 10), (50, 64))]
    cnn = [(Conv2d(1, 8, kernel=3, padding=1), (50, 1, 8, 8)),
           (Conv2d(8, 16, kernel=3, padding=1), (50, 8, 8, 8)),
           (MaxPool2d(2), (50, 16, 8, 8)), (Flatten(), (50, 16, 4, 4)),
           (Dense(256, 10), (50, 256))]
    vgg, c, hw = [], 3, 32
    for cout, reps in ((16, 2), (32, 2), (64, 3), (64, 3)):
        for _ in range(reps):
            vgg.append((Conv2d(c, cout, kernel=3, padding=1), (1, c, hw, hw)))
            c = cout
        vgg.append((MaxPool2d(2), (1, c, hw, hw)))
        hw //= 2
    vgg += [(Flatten(), (1, c, hw, hw)), (Dense(c * hw * hw, 64), (1, c * hw * hw)),
            (Dense(64, 10), (1, 64))]
    return {"digits MLP (batch 50)": mlp, "digits CNN (batch 50)": cnn,
            "VGG-style 32x32 (13 layers)": vgg}


def model_times(configs):
    from tessera.sim.perf import Link, predict
    out = []
    for name, preset, over in configs:
        cfg = make_config(name, preset, over)
        link = Link.for_config(cfg)
        for net, layers in networks().items():
            pr = predict(layers, cfg, link=link)            # warm (imports)
            ts = []
            for _ in range(5):
                t0 = time.perf_counter()
                pr = predict(layers, cfg, link=link)
                ts.append(time.perf_counter() - t0)
            out.append({"config": name, "engine": cfg.engine.name, "network": net,
                        "layers": len(layers), "runs": pr.runs, "cycles": pr.cycles,
                        "model_ms": 1e3 * float(np.median(ts)),
                        "link_s": pr.link_s, "compute_s": pr.compute_s})
    return out


# -- output ---------------------------------------------------------------------------------
def write_md(data):
    pts = data["points"]
    worst = max(pts, key=lambda r: abs(r["error_pct"])) if pts else None
    errs = np.array([abs(r["error_pct"]) for r in pts]) if pts else np.zeros(1)
    lines = ["# Performance model against the RTL", "",
             f"`benchmarks/perf_model.py`: `tessera.sim.perf.predict` against the Verilated RTL's "
             f"RUN cycle counts (sum of STATUS cycles per layer), {len(pts)} (layer, config) "
             f"points on {len(data['configs'])} configs. Bound: {BOUND} % on every point.", ""]
    if data.get("note"):
        lines += [data["note"], ""]
    if worst:
        lines += [f"**Worst point: {abs(worst['error_pct']):.2f} %** ({worst['config']}, "
                  f"{worst['layer']}: RTL {worst['rtl_cycles']}, model {worst['predicted']}). "
                  f"Mean |error| {errs.mean():.3f} %, points exact: "
                  f"{int((errs == 0).sum())}/{len(pts)}, within {BOUND} %: "
                  f"{int((errs <= BOUND).sum())}/{len(pts)}.", "",
                  "Worst by engine: " + ", ".join(
                      f"{e} {max(abs(r['error_pct']) for r in pts if r['engine'] == e):.2f} % "
                      f"({sum(1 for r in pts if r['engine'] == e)} points)"
                      for e in ("systolic", "tree", "feie") if any(r["engine"] == e for r in pts))
                  + ".", ""]
    polls = [(r["bytes_to_core"] - r["bytes_to_core_pred"],
              r["bytes_from_core"] - r["bytes_from_core_pred"]) for r in pts]
    same = sum(1 for a, b in polls if a == b == 0)
    only_polls = sum(1 for a, b in polls if a >= 0 and b == a * (STATUS_REPLY))
    lines += [f"Host bytes (the driver's count on the RTL against the model's): equal on {same}/"
              f"{len(pts)} points; on {only_polls}/{len(pts)} the difference is only extra "
              f"STATUS polls (1 byte out, {STATUS_REPLY} back each: the RTL harness polls every "
              f"64 cycles, the model counts one poll per RUN).", ""]
    lines += ["## Per config", "", "| config | engine | kind | shape | points | RUNs | "
              "max abs err % | mean abs err % | Verilator build |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in data["configs"]:
        cp = [r for r in pts if r["config"] == c["config"]]
        if not cp:
            continue
        e = [abs(r["error_pct"]) for r in cp]
        lines.append(f"| {c['config']} | {c['engine']} | {c['kind']} | {c['shape']} | {len(cp)} "
                     f"| {sum(r['runs'] for r in cp)} | {max(e):.2f} | {np.mean(e):.3f} | "
                     f"{'rebuilt' if c['rebuilt'] else 'cached'} {c['build_s']:.0f} s |")
    lines += ["", "## Model time per network", "",
              "| config | engine | network | layers | RUNs | cycles | model ms | link s | "
              "compute s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in data["model_times"]:
        lines.append(f"| {r['config']} | {r['engine']} | {r['network']} | {r['layers']} | "
                     f"{r['runs']} | {r['cycles']:,} | {r['model_ms']:.2f} | "
                     f"{r['link_s']:.3f} | {r['compute_s'] * 1e3:.3f} ms |")
    lines += ["", "## Every point", "",
              "| # | config | engine | kind | shape | layer | mode | epi | zeros | RUNs | "
              "RTL cycles | predicted | error % |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(pts):
        lines.append(f"| {i} | {r['config']} | {r['engine']} | {r['kind']} | {r['shape']} | "
                     f"{r['layer']} | {r['mode'] or ''} | {'y' if r['epilogue'] else ''} | "
                     f"{r.get('sparsity') or ''} | "
                     f"{r['runs']} | {r['rtl_cycles']} | {r['predicted']} | "
                     f"{r['error_pct']:+.3f} |")
    lines += ["", f"Command: `{data['command']}`; {data['wall_s']:.0f} s wall, "
              f"{data['cpu_s']:.0f} s CPU (this process and its children).", ""]
    MD_PATH.write_text("\n".join(lines))


def write_png(data):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pts = data["points"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 5))
    for eng, mark in (("systolic", "o"), ("tree", "s"), ("feie", "^")):
        sel = [r for r in pts if r["engine"] == eng]
        if sel:
            a1.scatter([r["rtl_cycles"] for r in sel], [r["predicted"] for r in sel], s=14,
                       marker=mark, label=f"{eng} ({len(sel)})")
            a2.scatter([r["rtl_cycles"] for r in sel], [r["error_pct"] for r in sel], s=14,
                       marker=mark, label=eng)
    lo = min(r["rtl_cycles"] for r in pts)
    hi = max(r["rtl_cycles"] for r in pts)
    a1.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    a1.set(xscale="log", yscale="log", xlabel="RTL cycles", ylabel="predicted cycles",
           title="perf model vs RTL, per (layer, config)")
    a1.legend()
    a2.axhline(BOUND, color="r", lw=0.8)
    a2.axhline(-BOUND, color="r", lw=0.8)
    a2.axhline(8, color="gray", ls=":", lw=0.8)
    a2.axhline(-8, color="gray", ls=":", lw=0.8)
    a2.set(xscale="log", xlabel="RTL cycles", ylabel="error %", ylim=(-9, 9),
           title="error per point (red: 2 % bound; grey: Sparseloop's 8 % worst case)")
    fig.tight_layout()
    fig.savefig(PNG_PATH, dpi=110)


def cpu_seconds():
    import resource
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", help="comma-separated config names (default: all)")
    ap.add_argument("--points", type=int, default=12, help="layers per config (default 12)")
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--jobs", type=int, default=2, help="compiler jobs of a Verilator build")
    ap.add_argument("--golden", action="store_true",
                    help="run the points on the golden core instead of the RTL (a dry run; "
                         "writes nothing)")
    ap.add_argument("--render", action="store_true",
                    help="no RTL: measure the model's time per network again and rewrite the "
                         "table and plot from the points in the JSON")
    ap.add_argument("--note", help="a line for the table's head (e.g. the commits measured)")
    ap.add_argument("--merge", action="store_true",
                    help="keep the other configs' points already in the JSON")
    args = ap.parse_args(argv)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    want = set(args.configs.split(",")) if args.configs else None
    configs = [c for c in CONFIGS if want is None or c[0] in want]
    if want and len(configs) != len(want):
        ap.error(f"unknown configs: {sorted(want - {c[0] for c in CONFIGS})}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.render:
        data = json.loads(JSON_PATH.read_text())
        if args.note:
            data["note"] = args.note
        say("model time per network")
        data["model_times"] = model_times([c for c in CONFIGS if c[0] in
                                           {m["config"] for m in data["configs"]}])
        finish(data)
        return 0 if data["max_abs_error_pct"] <= BOUND else 1
    t0 = time.monotonic()
    data = {"points": [], "configs": [], "model_times": []}
    if args.merge and JSON_PATH.exists():
        old = json.loads(JSON_PATH.read_text())
        names = {c[0] for c in configs}
        data["points"] = [p for p in old["points"] if p["config"] not in names]
        data["configs"] = [c for c in old["configs"] if c["config"] not in names]
    data["command"] = "python benchmarks/perf_model.py " + " ".join(argv or sys.argv[1:])
    for ci, (name, preset, over) in enumerate(configs):
        say(f"config {ci + 1}/{len(configs)}: {name}")
        seed = args.seed + [c[0] for c in CONFIGS].index(name)   # the same points however
        rows, meta = run_config(name, preset, over, args.points, seed, args.jobs,  # selected
                                golden=args.golden)
        data["points"] += rows
        if args.golden:
            say(f"{name}: golden max |error| {max(abs(r['error_pct']) for r in rows):.2f} %")
            continue
        data["configs"].append(meta)
        e = max(abs(r["error_pct"]) for r in rows)
        say(f"{name}: {len(rows)} points, max |error| {e:.2f} %; total "
            f"{len(data['points'])} points, {cpu_seconds():.0f} s CPU")
        data["wall_s"], data["cpu_s"] = time.monotonic() - t0, cpu_seconds()
        data["model_times"] = []
        JSON_PATH.write_text(json.dumps(data, indent=1, default=str))
    if args.golden:
        return 0
    order = [c[0] for c in CONFIGS]
    data["configs"].sort(key=lambda c: order.index(c["config"]) if c["config"] in order else 99)
    data["points"].sort(key=lambda r: order.index(r["config"]) if r["config"] in order else 99)
    say("model time per network")
    data["model_times"] = model_times([c for c in CONFIGS
                                       if c[0] in {m["config"] for m in data["configs"]}])
    data["wall_s"], data["cpu_s"] = time.monotonic() - t0, cpu_seconds()
    finish(data)
    return 0 if data["max_abs_error_pct"] <= BOUND else 1


def finish(data):
    """Worst points (overall and per engine), then the JSON, the table and the plot."""
    pts = data["points"]
    worst = max(pts, key=lambda r: abs(r["error_pct"]))
    data["worst"] = worst
    data["max_abs_error_pct"] = abs(worst["error_pct"])
    data["max_abs_error_pct_by_engine"] = {
        e: max(abs(r["error_pct"]) for r in pts if r["engine"] == e)
        for e in sorted({r["engine"] for r in pts})}
    JSON_PATH.write_text(json.dumps(data, indent=1, default=str))
    write_md(data)
    write_png(data)
    say(f"{len(pts)} points, worst {abs(worst['error_pct']):.2f} % ({worst['config']}, "
        f"{worst['layer']}); wrote {JSON_PATH.name}, {MD_PATH.name}, {PNG_PATH.name}")


if __name__ == "__main__":
    sys.exit(main())
