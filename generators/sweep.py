"""`tessera sweep`: a grid of configs evaluated on a workload, fanned out over Dask.

A grid file (TOML) names base configs and axes::

    [sweep]
    bases = ["int8-8x8", "fp8"]       # presets, or config files relative to the grid file
    rtl_sample = 2                    # points also run on the RTL: a count (evenly spread
                                      # over the valid points) or a list of point indices
    presets = true                    # add the board's presets as marked points (default),
                                      # or a list of preset names

    [axes]                            # dotted config keys -> values; the grid is the product
    "array.rows" = [2, 4, 8]
    "array.cols" = [2, 4, 8]
    "memory.p_depth" = [0, 64]        # the on-chip epilogue off / on

Every point is the base config with one value per axis. It is checked first
(`tessera.generators.config.config_from_dict`, then the workload against the engine): an
impossible point is listed with its one-line reason and the sweep goes on. A valid point gets

* cycles, utilization and images per second from the performance model
  (`tessera.sim.perf.predict`) for the workload;
* for the sampled points, the same workload on the Verilated RTL (`tessera.sim.vsim`), so the
  model's error on the sweep itself is in the table;
* with ``--synth ice40|ecp5``: LUT, DSP, BRAM and FF counts from yosys (``--stage synth``, the
  default: seconds per point) or the utilization and Fmax from nextpnr (``--stage pnr``), for
  the board of that family (iCEBreaker, ULX3S 85F), through the content cache of
  `tessera.generators.synthcache`.

Points run as Dask tasks: a ``distributed.LocalCluster`` of worker processes on this machine by
default (one per core, fewer when place and route could exhaust the memory: `PNR_GIB` per
worker), or an existing cluster (``--scheduler tcp://host:port``; its workers need tessera
installed and the cache and output folders on a shared file system). ``--workers 0`` runs the
points one after the other in this process, without Dask. Each point writes its own folder
``OUT/points/NNNN/`` (its config and result).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import sys
import time
import tomllib
from pathlib import Path

__all__ = ["SweepError", "Grid", "Point", "load_grid", "expand", "load_workload",
           "evaluate_point", "run_sweep", "pareto_front", "format_table", "WORKLOADS",
           "PNR_GIB", "SYNTH_BOARDS"]

#: Built-in workloads (layer shapes of the digits networks of `tessera.sim.digits`).
WORKLOADS = ("digits-cnn", "digits-mlp")

#: ``--synth`` family -> the board whose device and board top the points are built for.
SYNTH_BOARDS = {"ice40": "icebreaker", "ecp5": "ulx3s-85f"}

#: Memory one place-and-route job may take, GiB: the YoWASP nextpnr is WebAssembly with a
#: 32-bit heap (at most 4 GiB) plus its runtime. Local workers are capped at
#: floor(total memory / PNR_GIB) when a sweep synthesizes, so a 24 GiB machine runs at most
#: 4 builds at once and two ECP5 runs cannot exhaust it.
PNR_GIB = 5.0

_GRID_KEYS = {"sweep": {"bases", "rtl_sample", "presets"}, "axes": None}


class SweepError(ValueError):
    """A user error of `tessera sweep` (one line)."""


@dataclasses.dataclass(frozen=True)
class Grid:
    """A parsed grid file: base configs, axes (key, values) in file order, the RTL sample and
    the presets added (True: every preset of the board; a tuple: those)."""
    bases: tuple
    axes: tuple
    rtl_sample: object = 0
    presets: bool = True
    source: str = "<grid>"


@dataclasses.dataclass
class Point:
    """One point of a sweep: its index, base, axis values, and its config dict (``config``) or
    the reason it is impossible (``error``). ``preset``: the preset name of a marked point."""
    index: int
    base: str
    values: dict
    config: dict | None = None
    error: str | None = None
    preset: str | None = None

    @property
    def label(self):
        if self.preset:
            return f"preset {self.preset}"
        v = ", ".join(f"{k.split('.')[-1]}={val}" for k, val in self.values.items())
        return f"{self.base}" + (f" ({v})" if v else "")


# -- the grid ----------------------------------------------------------------------------------
def load_grid(path):
    """Parse and check a grid file; raises `SweepError` naming the key and what is allowed."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SweepError(f"GRID: {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SweepError(f"GRID: {path}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise SweepError(f"GRID: {path}: not valid TOML: {e}") from None
    return grid_from_dict(data, source=str(path), folder=path.parent)


def grid_from_dict(data, *, source="<grid>", folder=Path(".")):
    for sect in data:
        if sect not in _GRID_KEYS:
            raise SweepError(f"{source}: section [{sect}] is unknown; allowed: "
                             f"{', '.join(_GRID_KEYS)}")
    sw = data.get("sweep", {})
    for k in sw:
        if k not in _GRID_KEYS["sweep"]:
            raise SweepError(f"{source}: sweep.{k} is unknown; allowed: "
                             f"{', '.join(sorted(_GRID_KEYS['sweep']))}")
    bases = sw.get("bases")
    if (not isinstance(bases, list) or not bases
            or not all(isinstance(b, str) and b for b in bases)):
        raise SweepError(f"{source}: sweep.bases: {bases!r} must be a non-empty list of preset "
                         f"names or config files")
    from tessera.generators.config import preset_names
    resolved = []
    for b in bases:
        if b in preset_names():
            resolved.append(b)
        elif (folder / b).is_file():
            resolved.append(str((folder / b).resolve()))
        else:
            raise SweepError(f"{source}: sweep.bases: {b!r} is neither a preset nor a config "
                             f"file; presets: {', '.join(preset_names())}")
    axes = data.get("axes", {})
    if not isinstance(axes, dict):
        raise SweepError(f"{source}: [axes] must be a table of dotted keys -> lists")
    out_axes = []
    for key, vals in axes.items():
        if key.count(".") != 1 or not all(key.split(".")):
            raise SweepError(f"{source}: axes.{key!r}: a key is SECTION.NAME, e.g. "
                             f"\"array.rows\"")
        if not isinstance(vals, list) or not vals:
            raise SweepError(f"{source}: axes.{key!r}: {vals!r} must be a non-empty list")
        out_axes.append((key, tuple(vals)))
    sample = sw.get("rtl_sample", 0)
    if isinstance(sample, bool) or not (
            (isinstance(sample, int) and sample >= 0)
            or (isinstance(sample, list) and all(isinstance(i, int) and not isinstance(i, bool)
                                                 and i >= 0 for i in sample))):
        raise SweepError(f"{source}: sweep.rtl_sample: {sample!r} must be a count >= 0 or a "
                         f"list of point indices")
    presets = sw.get("presets", True)
    if isinstance(presets, list):
        unknown = [n for n in presets if n not in preset_names()]
        if unknown or not all(isinstance(n, str) for n in presets):
            raise SweepError(f"{source}: sweep.presets: {unknown[0] if unknown else presets!r}"
                             f" is not a preset; allowed: true, false or a list of "
                             f"{', '.join(preset_names())}")
        presets = tuple(presets)
    elif not isinstance(presets, bool):
        raise SweepError(f"{source}: sweep.presets: {presets!r} must be true, false or a list "
                         f"of preset names")
    return Grid(tuple(resolved), tuple(out_axes),
                tuple(sample) if isinstance(sample, list) else sample, presets, source)


def _base_dict(base):
    from tessera.generators.config import load_config
    return load_config(base).to_dict()


def expand(grid, *, family=None):
    """Every point of ``grid`` (and, with ``grid.presets``, the presets that list a board of
    ``family``, or every preset when ``family`` is None), each checked."""
    from tessera.generators.config import ConfigError, config_from_dict, load_config, \
        preset_names
    points = []
    keys = [k for k, _ in grid.axes]
    for base in grid.bases:
        bd = _base_dict(base)
        name = Path(base).stem if os.sep in base else base
        for combo in itertools.product(*(v for _, v in grid.axes)):
            values = dict(zip(keys, combo))
            d = json.loads(json.dumps(bd))
            for k, v in values.items():
                sect, key = k.split(".")
                d.setdefault(sect, {})[key] = v
            # Board fit is the synthesis board's question (or none: the model has no board).
            d.setdefault("core", {})["boards"] = [SYNTH_BOARDS[family]] if family else []
            p = Point(len(points), name, values)
            try:
                cfg = config_from_dict(d, source=f"point {p.index}")
                p.config = cfg.to_dict()
            except ConfigError as e:
                p.error = str(e).splitlines()[0]
            points.append(p)
    if grid.presets:
        board = SYNTH_BOARDS.get(family) if family else None
        names = grid.presets if isinstance(grid.presets, tuple) else preset_names()
        for name in names:
            cfg = load_config(name)
            if board is not None and board not in cfg.core.boards:
                continue
            points.append(Point(len(points), name, {}, cfg.to_dict(), preset=name))
    return points


# -- workloads ---------------------------------------------------------------------------------
def load_workload(spec):
    """``(name, [(layer, input shape)])`` for ``digits-cnn``, ``digits-mlp`` or a layers file
    (TOML: ``[[layer]]`` tables with ``type`` and the layer's keys, an optional ``name``, and
    ``input``, the input shape N x C x H x W or N x features: required on the first, optional
    later, where a layer without one takes the previous layer's output; so the layers files
    of ``tessera report --layers``, an input on each, are workloads too)."""
    from tessera.sim.layers import (Conv2d, Dense, Flatten, LayerError, MaxPool2d, Relu,
                                    layer_from_dict)
    if spec == "digits-cnn":
        layers = [Conv2d(1, 8, kernel=3, padding=1, bias=True), Relu(),
                  Conv2d(8, 16, kernel=3, padding=1, bias=True), Relu(),
                  MaxPool2d(kernel=2), Flatten(), Dense(256, 10, bias=True)]
        shape = (1, 1, 8, 8)
        inputs = [shape] + [None] * (len(layers) - 1)
        name = spec
    elif spec == "digits-mlp":
        layers = [Flatten(), Dense(64, 64, bias=True), Relu(), Dense(64, 10, bias=True)]
        shape = (1, 1, 8, 8)
        inputs = [shape] + [None] * (len(layers) - 1)
        name = spec
    else:
        path = Path(spec)
        if path.suffix != ".toml" or not path.is_file():
            raise SweepError(f"--workload: {spec!r} is not a layers file (.toml) or one of "
                             f"{', '.join(WORKLOADS)}")
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SweepError(f"--workload: {spec}: {e}") from None
        items = data.get("layer")
        if not isinstance(items, list) or not items:
            raise SweepError(f"--workload: {spec}: needs [[layer]] tables")
        if "input" not in items[0]:
            raise SweepError(f"--workload: {spec}: the first [[layer]] needs input = "
                             f"[N, C, H, W] or [N, features]")
        layers, inputs = [], []
        for i, it in enumerate(items):
            shape = it.get("input")
            if shape is not None and (
                    not isinstance(shape, list) or len(shape) not in (2, 4)
                    or not all(isinstance(v, int) and v > 0 for v in shape)):
                raise SweepError(f"--workload: {spec}: layer {i}: input = {shape!r} must be "
                                 f"[N, C, H, W] or [N, features]")
            inputs.append(tuple(shape) if shape is not None else None)
            d = {k: v for k, v in it.items() if k not in ("input", "name")}
            try:
                layers.append(layer_from_dict(d))
            except LayerError as e:
                raise SweepError(f"--workload: {spec}: layer {i}: {e}") from None
        name = path.stem
    out, s = [], shape
    for i, layer in enumerate(layers):
        if inputs[i] is not None:
            s = inputs[i]
        try:
            nxt = layer.out_shape(s)
        except LayerError as e:
            raise SweepError(f"--workload: {spec}: layer {i} ({layer.type}): {e}") from None
        out.append((layer, s))
        s = nxt
    return name, out


# -- one point ---------------------------------------------------------------------------------
def _epilogue(cfg):
    """The on-chip epilogue a point's layers go through: None when the core has none, else the
    first scalar epilogue of the engine's own layer cases (bias, requantization, activation;
    its values do not change the cycles)."""
    import numpy as np
    if cfg.engine.epilogue() is None:
        return None
    for c in cfg.engine.layer_cases(quick=True):
        e = c.get("epilogue")
        if e and all(np.ndim(v) == 0 for v in e.values()):
            return dict(e)
    return None


def _operands(cfg, work, seed):
    """Seeded operand codes of every chip layer the engine runs (and the epilogue and bias of
    a core with one), or a one-line reason why the engine cannot run the workload."""
    from tessera.sim.layers import CHIP_TYPES
    from tessera.sim.lowering import case_bias
    epi = _epilogue(cfg)
    items = []
    for i, (layer, shape) in enumerate(work):
        if layer.type not in CHIP_TYPES:
            items.append({"layer": layer, "in_shape": shape})
            continue
        if layer.type not in cfg.engine.layer_types:
            return None, (f"layer {i} ({layer.type}): the {cfg.engine.name} engine does not "
                          f"run it; it runs {', '.join(cfg.engine.layer_types) or 'nothing'}")
        x, w = cfg.engine.layer_operands(layer, shape, kind="random", seed=seed + i)
        it = {"layer": layer, "in_shape": shape, "x": x, "w": w, "epilogue": epi is not None}
        if epi is not None:
            it["epilogue_params"] = epi
            it["bias"] = case_bias(cfg, layer, {"seed": seed + i})
        items.append(it)
    return items, None


def _rtl_cycles(cfg, items, build_root, progress):
    """Engine cycles per chip layer of ``items`` on the Verilated RTL (one Verilator build per
    config, cached under ``build_root``)."""
    import asyncio
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.layers import CHIP_TYPES
    from tessera.sim.lowering import run_layer
    from tessera.sim.vsim import VerilatorCore
    out = []
    with VerilatorCore(cfg, build_root=build_root, progress=progress) as core:
        drv = TesseraDriver(core.transport, cfg)

        async def go():
            await drv.connect()
            for it in items:
                if it["layer"].type not in CHIP_TYPES:
                    out.append(0)
                    continue
                kw = ({"epilogue": it["epilogue_params"], "bias": it["bias"]}
                      if it.get("epilogue") else {})
                _, st = await run_layer(drv, it["layer"], it["x"], it["w"], raw=True, **kw)
                out.append(int(st.cycles))
        asyncio.run(go())
    return out


def evaluate_point(point, workload, opts):
    """Evaluate one point (a `Point` as a dict) on ``workload`` (its spec: a built-in name or
    a layers file); ``opts``: ``out``, ``batch``, ``seed``, ``rtl`` (bool), ``synth``
    (None, ``"ice40"``, ``"ecp5"``), ``stage``, ``pnr_seed``, ``cache``, ``build_root``.

    Runs in a Dask worker (or in-process); returns the point's result dict and writes it, with
    the point's config, into ``OUT/points/NNNN/``."""
    from tessera.generators.config import ConfigError, config_from_dict
    from tessera.sim.layers import LayerError
    t0 = time.monotonic()
    res = {"index": point["index"], "base": point["base"], "values": point["values"],
           "preset": point.get("preset"), "error": point.get("error")}
    folder = Path(opts["out"]) / "points" / f"{point['index']:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    say = (lambda m: None)
    try:
        if res["error"] is None:
            cfg = config_from_dict(point["config"], source=f"point {point['index']}")
            (folder / "config.json").write_text(json.dumps(point["config"], indent=2) + "\n")
            _, work = load_workload(workload)
            batch = int(opts.get("batch", 1))
            work = _batched(work, batch)
            items, why = _operands(cfg, work, int(opts.get("seed", 0)))
            if why:
                res["error"] = why
            else:
                _model(res, cfg, items, batch)
                if opts.get("rtl"):
                    rtl = _rtl_cycles(cfg, items, opts["build_root"], say)
                    res["rtl_cycles_per_image"] = sum(rtl) / batch
                    res["rtl_layer_cycles"] = rtl
                    res["model_error_pct"] = round(
                        100 * (res["cycles_per_image"] - res["rtl_cycles_per_image"])
                        / res["rtl_cycles_per_image"], 3)
                if opts.get("synth"):
                    _synth(res, cfg, opts)
    except (ConfigError, LayerError, SweepError) as e:
        res["error"] = str(e).splitlines()[0]
    res["seconds"] = round(time.monotonic() - t0, 3)
    (folder / "result.json").write_text(json.dumps(res, indent=2, default=_jsonable) + "\n")
    return res


def _jsonable(o):
    import numpy as np
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    return str(o)


def _batched(work, batch):
    return [(layer, (batch, *shape[1:])) for layer, shape in work]


def _model(res, cfg, items, batch):
    from tessera.sim.perf import predict
    pred = predict([{k: v for k, v in it.items() if k not in ("epilogue_params", "bias")}
                    for it in items], cfg)
    macs = 0
    for it in items:
        if hasattr(it["layer"], "macs") and "x" in it:
            macs += it["layer"].macs(it["in_shape"])
    cyc = pred.cycles
    res.update({
        "engine": cfg.engine.name, "kind": cfg.pe.kind, "array": f"{cfg.rows}x{cfg.cols}",
        "epilogue": any(it.get("epilogue") for it in items),
        "pes": cfg.pes, "clock_mhz": cfg.core.clock_mhz,
        "cycles_per_image": cyc / batch,
        "layer_cycles": [lp.cycles for lp in pred.layers],
        "macs_per_image": macs / batch,
        "utilization": macs / (cyc * cfg.pes) if cyc else None,
        "images_per_s": cfg.core.clock_mhz * 1e6 * batch / cyc if cyc else None,
        "model_ms": round(pred.model_s * 1e3, 3),
    })


def _synth(res, cfg, opts):
    from tessera.generators.assemble import build_core
    from tessera.generators.synthcache import SynthCache
    cache = SynthCache(opts["cache"])
    board = SYNTH_BOARDS[opts["synth"]]
    r = cache.get(build_core(cfg), board=board, stage=opts.get("stage", "synth"),
                  name=cfg.core.name, baud=getattr(cfg.host, "baud", None) or 115200,
                  clk_hz=cfg.core.clock_mhz * 1e6, seed=int(opts.get("pnr_seed", 1)))
    res["synth"] = {"board": board, "stage": r.stage, "ok": r.ok, "hit": r.hit,
                    "error": r.error, "seconds": r.seconds, **r.figures}
    if r.ok and r.stage == "synth":
        # yosys counts before packing: a point over the device's totals cannot place
        from tessera.fpga.boards import get_board
        b = get_board(board)
        luts = _area(res, "luts")
        res["synth"]["over"] = [w for w, have, cap in (
            ("LUTs", luts, b.luts_total), ("DSPs", r.figures["dsps"], b.dsps_total),
            ("BRAMs", r.figures["brams"], b.brams_total)) if have > cap]
    if r.ok and r.figures.get("fmax_mhz") and res.get("cycles_per_image"):
        res["images_per_s_fmax"] = r.figures["fmax_mhz"] * 1e6 / res["cycles_per_image"]


# -- the sweep ---------------------------------------------------------------------------------
def _sample(points, spec):
    """Indices of the valid points run on the RTL."""
    valid = [p.index for p in points if p.error is None]
    if isinstance(spec, tuple):
        bad = [i for i in spec if i >= len(points)]
        if bad:
            raise SweepError(f"sweep.rtl_sample: index {bad[0]} is out of range; the grid has "
                             f"points 0..{len(points) - 1}")
        return set(spec) & set(valid)
    n = min(int(spec), len(valid))
    if n <= 0:
        return set()
    step = len(valid) / n
    return {valid[int(i * step)] for i in range(n)}


def local_workers(requested, synth):
    """Worker processes of the local cluster: ``requested`` (default: one per core), capped at
    floor(total memory / `PNR_GIB`) when points are synthesized."""
    n = requested or os.cpu_count() or 1
    if synth:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
        except (ValueError, OSError, AttributeError):
            total = None
        if total:
            n = min(n, max(1, int(total // PNR_GIB)))
    return max(1, n)


def run_sweep(grid, workload, *, out, synth=None, stage="synth", pnr_seed=1, batch=1, seed=0,
              workers=None, scheduler=None, cache=None, build_root="build/vsim",
              progress=print):
    """Run every point of ``grid`` on ``workload``; returns the summary dict (also written to
    ``OUT/sweep.json``, with ``sweep.md`` and the Pareto plots).

    ``workers``: 0 runs the points serially in this process; None or N > 0 starts a
    ``LocalCluster`` of that many worker processes (None: `local_workers`), unless
    ``scheduler`` names an existing cluster."""
    if synth not in (None, "none", "ice40", "ecp5"):
        raise SweepError(f"--synth: {synth!r} is not a choice; allowed: none, ice40, ecp5")
    synth = None if synth in (None, "none") else synth
    from tessera.generators.synthcache import STAGES
    if stage not in STAGES:
        raise SweepError(f"--stage: {stage!r} is not a choice; allowed: {', '.join(STAGES)}")
    if not isinstance(batch, int) or batch < 1:
        raise SweepError(f"--batch: {batch!r} must be an integer >= 1")
    wname, _ = load_workload(workload)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache).resolve() if cache else (out / "cache")
    points = expand(grid, family=synth)
    rtl = _sample(points, grid.rtl_sample)
    opts = {"out": str(out), "batch": batch, "seed": seed, "synth": synth, "stage": stage,
            "pnr_seed": pnr_seed, "cache": str(cache),
            "build_root": str(Path(build_root).resolve())}
    jobs = [(dataclasses.asdict(p), workload, {**opts, "rtl": p.index in rtl}) for p in points]
    say = progress or (lambda m: None)
    say(f"sweep {grid.source}: {len(points)} points ({sum(p.error is None for p in points)} "
        f"valid, {len(rtl)} on the RTL) on {wname}"
        + (f", {stage} for {SYNTH_BOARDS[synth]}" if synth else ""))
    t0 = time.monotonic()
    results = []

    def done(r):
        results.append(r)
        say(f"[{len(results):>{len(str(len(jobs)))}}/{len(jobs)}] {_line(r, points)}")

    if workers == 0:
        mode = "serial"
        for job in jobs:
            done(evaluate_point(*job))
    else:
        from distributed import Client, LocalCluster, as_completed
        cluster = None
        if scheduler:
            mode = f"scheduler {scheduler}"
            client = Client(scheduler, timeout="20s")
        else:
            n = local_workers(workers, synth)
            mode = f"LocalCluster of {n} worker process{'es' if n > 1 else ''}"
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   dashboard_address=":0", memory_limit="auto",
                                   silence_logs=40)
            client = Client(cluster)
        say(f"  on {mode}")
        try:
            futs = [client.submit(evaluate_point, *job, pure=False) for job in jobs]
            for fut in as_completed(futs):
                done(fut.result())
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    wall = time.monotonic() - t0
    results.sort(key=lambda r: r["index"])
    hits = sum(1 for r in results if r.get("synth", {}).get("hit"))
    built = sum(1 for r in results if "synth" in r and not r["synth"]["hit"])
    summary = {"grid": grid.source, "workload": wname, "batch": batch, "synth": synth,
               "stage": stage if synth else None, "mode": mode, "wall_s": round(wall, 2),
               "points": results, "cache": {"folder": str(cache), "hits": hits,
                                            "misses": built},
               "model_error_max_pct": _max_err(results)}
    (out / "sweep.json").write_text(json.dumps(summary, indent=2, default=_jsonable) + "\n")
    (out / "sweep.md").write_text(format_table(summary) + "\n")
    if synth:
        summary["plots"] = pareto_plots(summary, out)
    return summary


def _max_err(results):
    e = [abs(r["model_error_pct"]) for r in results if r.get("model_error_pct") is not None]
    return max(e) if e else None


def _line(r, points):
    lab = points[r["index"]].label
    if r.get("error"):
        return f"point {r['index']} {lab}: impossible: {r['error']}"
    s = f"point {r['index']} {lab}: {r['cycles_per_image']:,.0f} cycles/image"
    if r.get("rtl_cycles_per_image") is not None:
        s += f" (RTL {r['rtl_cycles_per_image']:,.0f}, model {r['model_error_pct']:+.2f} %)"
    sy = r.get("synth")
    if sy:
        if sy["ok"]:
            s += f", {_area(r, 'luts')} LUTs, {sy.get('dsps')} DSPs"
            if sy.get("over"):
                s += f" (over the device's {', '.join(sy['over'])})"
            if sy.get("fmax_mhz"):
                s += f", {sy['fmax_mhz']} MHz"
        else:
            s += f", {sy['stage']} failed: {sy['error']}"
        s += " (cached)" if sy["hit"] else ""
    return s + f" [{r['seconds']:.1f} s]"


# -- results -----------------------------------------------------------------------------------
def _area(r, what):
    sy = r.get("synth") or {}
    if not sy.get("ok"):
        return None
    if what == "luts":
        return sy.get("luts", 0) + (2 * sy.get("carries", 0) if "carries" in sy
                                    and sy.get("stage") == "synth"
                                    and sy.get("board") == "ulx3s-85f" else 0)
    return sy.get(what)


def pareto_front(rows, cost, gain):
    """Indices of ``rows`` not dominated: no other row has cost <= and gain >= with one
    strict. ``cost``/``gain``: functions of a row (None: left out)."""
    pts = [(i, cost(r), gain(r)) for i, r in enumerate(rows)]
    pts = [p for p in pts if p[1] is not None and p[2] is not None]
    front = []
    for i, c, g in pts:
        if not any((c2 <= c and g2 >= g) and (c2 < c or g2 > g) for _, c2, g2 in pts):
            front.append(i)
    return sorted(front, key=lambda i: cost(rows[i]))


def pareto_plots(summary, out):
    """Images per second against LUTs and against DSPs for the sweep's board, the front drawn
    and the presets marked; returns the PNG paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in summary["points"] if not r.get("error") and r.get("synth", {}).get("ok")]
    if not rows:
        return []
    board = rows[0]["synth"]["board"]

    def gain(r):
        return r.get("images_per_s_fmax") or r.get("images_per_s")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, what in zip(axes, ("luts", "dsps")):
        cost = (lambda r, w=what: _area(r, w))
        fit = [r for r in rows if not r["synth"].get("over")]
        over = [r for r in rows if r["synth"].get("over")]
        grid = [r for r in fit if not r.get("preset")]
        pre = [r for r in fit if r.get("preset")]
        ax.scatter([cost(r) for r in grid], [gain(r) for r in grid], s=14, c="tab:blue",
                   label="grid points")
        if over:
            ax.scatter([cost(r) for r in over], [gain(r) for r in over], s=18, marker="x",
                       c="0.6", label="over the device")
        front = [fit[i] for i in pareto_front(fit, cost, gain)]
        ax.plot([cost(r) for r in front], [gain(r) for r in front], "-", c="tab:orange",
                label="Pareto front")
        ax.scatter([cost(r) for r in pre], [gain(r) for r in pre], marker="*", s=90,
                   c="tab:red", label="presets")
        for r in pre:
            ax.annotate(r["preset"], (cost(r), gain(r)), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xlabel({"luts": "LUTs", "dsps": "DSPs"}[what]
                      + (" (yosys)" if summary["stage"] == "synth" else " (nextpnr)"))
        ax.set_ylabel("images / s" + (" at Fmax" if summary["stage"] == "pnr"
                                      else " at the config clock"))
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{summary['workload']} on {board}: {len(rows)} points")
    fig.tight_layout()
    path = Path(out) / f"pareto-{board}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [str(path)]


def format_table(summary):
    """The sweep as a Markdown table, one row per point."""
    synth = summary["synth"]
    head = ["#", "point", "engine/kind", "array", "cycles/image", "util", "images/s"]
    if any(r.get("rtl_cycles_per_image") is not None for r in summary["points"]):
        head += ["RTL cycles/image", "model err"]
    if synth:
        head += ["LUTs", "DSPs", "BRAMs", "FFs"] + (["Fmax MHz"] if summary["stage"] == "pnr"
                                                     else [])
    lines = [f"# Sweep {summary['grid']} on {summary['workload']} (batch {summary['batch']})",
             "", f"{len(summary['points'])} points, {summary['mode']}, {summary['wall_s']} s"
             + (f"; cache: {summary['cache']['hits']} hits, {summary['cache']['misses']} "
                f"built" if synth else "")
             + (f"; worst model error on the RTL sample: {summary['model_error_max_pct']} %"
                if summary.get("model_error_max_pct") is not None else ""), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in summary["points"]:
        lab = f"preset `{r['preset']}`" if r.get("preset") else (
            r["base"] + "".join(f", {k.split('.')[-1]}={v}" for k, v in r["values"].items()))
        if r.get("error"):
            lines.append(f"| {r['index']} | {lab} | impossible: {r['error']} |"
                         + " |" * (len(head) - 3))
            continue
        cells = [str(r["index"]), lab, f"{r['engine']}/{r['kind']}", r["array"],
                 f"{r['cycles_per_image']:,.0f}",
                 f"{100 * r['utilization']:.1f} %" if r.get("utilization") else "-",
                 f"{r['images_per_s']:,.0f}" if r.get("images_per_s") else "-"]
        if "RTL cycles/image" in head:
            rc = r.get("rtl_cycles_per_image")
            cells += [f"{rc:,.0f}" if rc is not None else "",
                      f"{r['model_error_pct']:+.2f} %" if rc is not None else ""]
        if synth:
            sy = r.get("synth") or {}
            if sy.get("ok"):
                over = set(sy.get("over") or ())
                mark = lambda w, v: f"**{v}** (over)" if w in over else str(v)  # noqa: E731
                cells += [mark("LUTs", _area(r, "luts")), mark("DSPs", sy.get("dsps")),
                          mark("BRAMs", sy.get("brams")), str(sy.get("ffs"))]
                if summary["stage"] == "pnr":
                    cells.append(str(sy.get("fmax_mhz")))
            else:
                cells += [f"{sy.get('stage', 'synth')} failed: {sy.get('error')}"] + [""] * (
                    3 + (summary["stage"] == "pnr"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- the command -------------------------------------------------------------------------------
DESCRIPTION = (
    "Evaluates a grid of configs (GRID, a TOML file: [sweep] bases, rtl_sample, presets;\n"
    "[axes] dotted config keys -> lists of values; docs/sweep.md) on a workload: cycles per\n"
    "image, utilization and images/s from the performance model for every point, the RTL's\n"
    "cycles for the sampled points (the model's error on the sweep), and with --synth the\n"
    "yosys (or nextpnr, --stage pnr) area of the board's build, cached by content in --cache.\n"
    "Points run on Dask: a LocalCluster (one process per core, fewer when synthesizing so\n"
    f"place and route cannot exhaust memory: {PNR_GIB:g} GiB each) or --scheduler ADDR. Writes\n"
    "OUT/sweep.json, OUT/sweep.md, OUT/points/NNNN/ and, with --synth, OUT/pareto-BOARD.png.")

EXAMPLES = ["tessera sweep benchmarks/sweeps/small.toml --workload digits-cnn",
            "tessera sweep benchmarks/sweeps/ice40.toml --workload digits-mlp --synth ice40 "
            "--workers 2",
            "tessera sweep grid.toml --workload layers.toml --scheduler tcp://10.0.0.5:8786 "
            "--synth ecp5 --cache /shared/tessera-cache"]

_MARKER = ".tessera-sweep"


def configure_parser(s):
    """The arguments of ``tessera sweep`` on the argparse parser ``s``."""
    s.add_argument("grid", metavar="GRID", help="the grid file (TOML; docs/sweep.md)")
    s.add_argument("--workload", required=True, metavar="W",
                   help=f"{' or '.join(WORKLOADS)} (the layer shapes of the digits networks) "
                        f"or a layers file LAYERS.toml ([[layer]] tables, the first with "
                        f"input = [N, C, H, W])")
    s.add_argument("--scheduler", metavar="ADDR",
                   help="an existing Dask scheduler (tcp://host:port; start one with `dask "
                        "scheduler` and workers with `dask worker ADDR`); default: a "
                        "LocalCluster on this machine")
    s.add_argument("--workers", type=int, metavar="N",
                   help="worker processes of the LocalCluster (default: one per core, capped "
                        f"at total memory / {PNR_GIB:g} GiB with --synth); 0: run the points "
                        "one after the other in this process, without Dask")
    s.add_argument("--synth", default="none", metavar="FAMILY",
                   help="none (default), ice40 (iCEBreaker's UP5K) or ecp5 (ULX3S 85F): "
                        "area of every point's board build")
    s.add_argument("--stage", default="synth", metavar="STAGE",
                   help="with --synth: synth (yosys cell counts, the default) or pnr (nextpnr "
                        "utilization and Fmax: minutes per ECP5 point)")
    s.add_argument("--seed", type=int, default=1, metavar="N",
                   help="nextpnr seed of --stage pnr (default 1)")
    s.add_argument("--batch", type=int, default=1, metavar="N",
                   help="images per batch (the M of dense layers; default 1)")
    s.add_argument("--cache", metavar="DIR",
                   help="synthesis cache folder, shareable between workers and sweeps "
                        "(default: build/sweep-cache)")
    s.add_argument("-o", "--out", metavar="DIR",
                   help="output folder (default: build/sweep/<grid name>)")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")


def _check_out(out):
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise SweepError(f"-o: {out} exists and is not a folder; allowed: a new folder or "
                             f"one an earlier sweep wrote")
        if any(out.iterdir()) and not (out / _MARKER).exists():
            raise SweepError(f"-o: {out} holds files tessera sweep did not write; allowed: a "
                             f"new folder or one an earlier sweep wrote")
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text("written by tessera sweep\n")


def cmd_sweep(args):
    """``tessera sweep``: run, print the table (or JSON) and where the files are."""
    grid = load_grid(args.grid)
    if args.synth not in ("none", "ice40", "ecp5"):
        raise SweepError(f"--synth: {args.synth!r} is not a choice; allowed: none, ice40, "
                         f"ecp5")
    if args.workers is not None and args.workers < 0:
        raise SweepError(f"--workers: {args.workers} must be >= 0")
    if args.seed < 0:
        raise SweepError(f"--seed: {args.seed} must be >= 0")
    load_workload(args.workload)
    out = Path(args.out or Path("build") / "sweep" / Path(args.grid).stem)
    _check_out(out)
    quiet = args.json
    s = run_sweep(grid, args.workload, out=out, synth=args.synth, stage=args.stage,
                  pnr_seed=args.seed, batch=args.batch, workers=args.workers,
                  scheduler=args.scheduler, cache=args.cache or Path("build") / "sweep-cache",
                  progress=(lambda m: print(m, file=sys.stderr, flush=True)) if quiet else
                  (lambda m: print(m, flush=True)))
    if args.json:
        print(json.dumps(s, indent=2, default=_jsonable))
        return 0
    print()
    print(format_table(s))
    print()
    print(f"wrote {out / 'sweep.json'}, {out / 'sweep.md'}"
          + "".join(f", {p}" for p in s.get("plots", [])))
    return 0
