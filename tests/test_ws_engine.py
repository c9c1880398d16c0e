# amaranth: UnusedElaboratable=no
"""The weight-stationary GEMM engine (`GemmWSEngine` on `WSGemmArray`) in the whole core:
results against the kinds' independent references, every RUN's cycles against the twin's
model, random RUN sequences against the golden core, and the config's refusals."""

import asyncio
import re

import numpy as np
import pytest

from tessera.generators.assemble import build_core
from tessera.generators.config import ConfigError, config_from_dict
from tessera.hdl.ctrl.protocol import Err
from tessera.hdl.engine.params import FLAG_ACCUMULATE, ws_periods
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver, TesseraError
from tessera.sim.engines.model import evaluate
from tessera.sim.pysim import run_with_driver
from tessera.sim.workloads import gemm_operands, reference_gemm


def ws_cfg(pe=None, rows=3, cols=2, **memory):
    mem = {"a_depth": 32, "b_depth": 64, "c_depth": 32, **memory}
    d = {"array": {"rows": rows, "cols": cols, "dataflow": "ws"}, "memory": mem}
    if pe:
        d["pe"] = pe
    return config_from_dict(d)


KINDS = {
    "int": {"kind": "int", "acc_bits": 20},          # narrow: "min" operands wrap
    "fpec": {"kind": "fpec"},
    "biscaled": {"kind": "biscaled"},
    "bitfusion": {"kind": "bitfusion"},
    # fpmac: each accumulate mode; a chunk that does not divide rows (3), a product register
    "fpmac_step": {"kind": "fpmac", "stages": 3},
    "fpmac_chunk": {"kind": "fpmac", "chunk": 2, "stages": 3},
    "fpmac_exact": {"kind": "fpmac", "accumulate": "exact", "stages": 5},
}


def gemm_on_core(cfg, a, b, mode=None):
    async def body(t):
        drv = TesseraDriver(t, cfg, poll_cycles=4)
        return await drv.gemm(a, b, mode=mode)
    return run_with_driver(build_core(cfg), body)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("m,n,k,what", [
    (5, 3, 7, "random"),        # M > rows: one pass per tile, no bubble
    (2, 5, 20, "min"),          # M < rows, 3 n-tiles x 7 K tiles: bursts, gaps, combining
    (1, 1, 1, "extremes"),
])
def test_gemm_matches_reference_and_cycles(kind, m, n, k, what):
    cfg = ws_cfg(KINDS[kind])
    mode = cfg.pe.modes[-1] if cfg.pe.modes else None
    a, b = gemm_operands(cfg, m, n, k, kind=what, seed=m * n + k, mode=mode)
    got, stats = gemm_on_core(cfg, a, b, mode=mode)
    np.testing.assert_array_equal(got, reference_gemm(cfg, a, b, k_split=stats.k_split,
                                                      mode=mode))
    golden = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    _, gstats = asyncio.run(golden.gemm(a, b, mode=mode))
    assert stats.run_cycles == gstats.run_cycles


def test_results_equal_output_stationary_codes():
    """Same operands on the OS and the WS core of one PE kind give the same codes (the
    wrapping accumulate is associative), K split across RUNs or not."""
    rng = np.random.default_rng(5)
    for pe in ({"kind": "int", "acc_bits": 18}, {"kind": "fpec"}):
        ws = ws_cfg(pe, rows=2, cols=3, a_depth=16, b_depth=16)
        os_ = config_from_dict({"array": {"rows": 2, "cols": 3}, "pe": pe,
                                "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 32}})
        a, b = gemm_operands(ws, 6, 4, 40, kind="random", seed=int(rng.integers(1 << 30)))
        got_ws, st = gemm_on_core(ws, a, b)
        assert st.runs > 1                       # K = 40 does not fit: accumulating RUNs
        got_os, _ = asyncio.run(TesseraDriver(GoldenTransport(GoldenCore(os_)), os_)
                                .gemm(a, b))
        np.testing.assert_array_equal(got_ws, got_os)


def test_run_cycles_equal_model_and_closed_form():
    """Single RUNs over the schedule's cases: the RTL's busy cycles equal the twin's model,
    which equals the closed form of the engine's docstring."""
    cfg = ws_cfg()
    R, C = 3, 2
    al = cfg.engine.twin().combiner_latency
    cases = [  # (m, n_tiles, k_tiles, flags)
        (1, 1, 1, 0), (2, 1, 1, 0), (3, 1, 1, 0), (7, 1, 1, 0), (2, 3, 2, 0), (5, 2, 3, 0),
        (2, 3, 2, FLAG_ACCUMULATE), (1, 4, 2, 0), (4, 4, 1, FLAG_ACCUMULATE), (3, 2, 4, 0)]

    async def body(t):
        drv = TesseraDriver(t, cfg, poll_cycles=4)
        await drv.connect()
        return [await drv.run(m=m, n_tiles=nt, k_tiles=kt, flags=f) for m, nt, kt, f in cases]
    got = run_with_driver(build_core(cfg), body)
    model = cfg.engine.twin().model
    want = [evaluate(model, {"m": m, "n_tiles": nt, "k_tiles": kt, "accumulate": f & 1})
            for m, nt, kt, f in cases]
    assert got == want
    closed = []
    for m, nt, kt, f in cases:
        p, pg = ws_periods(m, R, al)
        combining = bool(f & 1) or kt > 1
        gaps = (nt - 1) if kt > 1 and not f & 1 else 0
        closed.append(18 + R + (nt * kt - 1) * p + gaps * (pg - p) + m - 1
                      + 2 + (R + C + 0 + 1) + 2 + (al if combining else 0))
    assert want == closed
    from tessera.sim.engines.gemm_ws import run_cycles
    assert want == [run_cycles(m, nt, kt, f & 1, 0, rows=R, cols=C, extra=0, acc_latency=al)
                    for m, nt, kt, f in cases]


def test_random_runs_against_golden_core():
    """Random RUNs (bases, accumulate, shapes, refused ones) on random store contents: every
    answer, result word and cycle count equals the golden core's."""
    cfg = ws_cfg({"kind": "int", "acc_bits": 19}, rows=2, cols=3, a_depth=24, b_depth=24,
                 c_depth=20)
    rng = np.random.default_rng(11)
    g = cfg.geometry
    a_words = rng.integers(0, 1 << 8, (24, 2), dtype=np.uint64)
    b_words = rng.integers(0, 1 << 8, (24, 3), dtype=np.uint64)
    runs = []
    for _ in range(14):
        m = int(rng.integers(1, 7))
        nt = int(rng.integers(1, 4))
        kt = int(rng.integers(1, 4))
        runs.append(dict(m=m, n_tiles=nt, k_tiles=kt, a_base=int(rng.integers(0, 8)),
                         b_base=int(rng.integers(0, 8)), c_base=int(rng.integers(0, 6)),
                         flags=int(rng.integers(0, 2))))
    runs += [dict(bad, **{"flags": bad.get("flags", 0)}) for bad, _ in
             cfg.engine.twin().bad_runs()]

    async def script(drv):
        await drv.connect()
        await drv.write("a", 0, a_words)
        await drv.write("b", 0, b_words)
        await drv.write("c", 0, rng_c)
        out = []
        for r in runs:
            try:
                cyc = await drv.run(**r)
            except TesseraError as e:
                out.append(("err", e.code))
                continue
            out.append((cyc, (await drv.read("c", 0, g.store("c").depth)).tolist()))
        return out
    rng_c = np.random.default_rng(2).integers(0, 1 << 19, (20, 3), dtype=np.uint64)

    async def body(t):
        return await script(TesseraDriver(t, cfg, poll_cycles=4))
    got = run_with_driver(build_core(cfg), body)
    want = asyncio.run(script(TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)))
    assert got == want
    assert {w[1] for w in want if w[0] == "err"} == {Err.TILE, Err.ARG}


def test_epilogue_on_the_last_k_tile():
    """The int epilogue (bias, requantize, clamp) applied by the output stage after the
    combining passes equals the exact-rational reference epilogue of the reference sums."""
    from tessera.sim.epilogue import quantize_multiplier
    from tessera.sim.epilogue_ref import reference_layer_codes
    cfg = ws_cfg({"kind": "int"}, rows=3, cols=2, p_depth=8)
    rng = np.random.default_rng(4)
    a, b = gemm_operands(cfg, 4, 5, 10, kind="random", seed=9)
    mult, shift = zip(*(quantize_multiplier(s) for s in rng.uniform(0.002, 0.02, 5)))
    params = {"bias": rng.integers(-4000, 4000, 5), "mult": np.array(mult),
              "shift": np.array(shift), "zero_point": 3, "lo": -100, "hi": 120}

    async def body(t):
        drv = TesseraDriver(t, cfg, poll_cycles=4)
        return await drv.gemm(a, b, epilogue=params)
    got, stats = run_with_driver(build_core(cfg), body)
    assert stats.runs == 1 and len(stats.run_cycles) == 1
    want = reference_layer_codes(reference_gemm(cfg, a, b), params, acc_bits=32, out_bits=8)
    np.testing.assert_array_equal(got, want)
    golden = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    g, gstats = asyncio.run(golden.gemm(a, b, epilogue=params))
    np.testing.assert_array_equal(got, g)
    assert stats.run_cycles == gstats.run_cycles


def test_kinds_without_parts_are_refused(monkeypatch):
    """A kind without parts (every systolic kind has them now: one is made so) is refused
    with its reason."""
    from tessera.generators.kinds.multiprec import MultiPrecKind
    monkeypatch.setattr(MultiPrecKind, "parts", lambda self: None)
    monkeypatch.setattr(MultiPrecKind, "no_parts_reason", "no reason", raising=False)
    with pytest.raises(ConfigError, match=re.escape(
            "array.dataflow: 'weight_stationary' needs a PE kind whose arithmetic comes as "
            "parts") + r".*pe.kind 'multiprec' has none \(no reason\); allowed: "
                       r"'output_stationary'"):
        ws_cfg({"kind": "multiprec"})


def test_multiprec_modes_space_vectors_by_ii():
    """multiprec on WS: a vector every ii(mode) cycles (4 at 8 x 8 bits, 2 at 8 x 4, 1 at
    4 x 4), each pair's nibble products summed in its PE; every mode's results equal the
    exact integer reference and its RUN cycles the golden core's (the model with ii), in one
    core, modes changing between RUNs; the model's tree equals the closed form."""
    from tessera.sim.engines.gemm_ws import run_cycles
    cfg = ws_cfg({"kind": "multiprec", "acc_bits": 20})
    modes = ["a8s_w8s", "a4u_w4u", "a8s_w4u", "a4s_w8u", "a8u_w8u", "a4s_w4s"]
    shapes = [(5, 3, 7, "random"), (2, 5, 20, "min"), (1, 1, 1, "extremes")]
    ops = [(md, *gemm_operands(cfg, m, n, k, kind=w, seed=i, mode=md))
           for i, md in enumerate(modes) for m, n, k, w in shapes[i % 3:i % 3 + 1]]

    async def body(t):
        drv = TesseraDriver(t, cfg, poll_cycles=4)
        return [await drv.gemm(a, b, mode=md) for md, a, b in ops]
    res = run_with_driver(build_core(cfg), body)
    golden = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    for (md, a, b), (got, st) in zip(ops, res):
        np.testing.assert_array_equal(got, reference_gemm(cfg, a, b, mode=md))
        _, gst = asyncio.run(golden.gemm(a, b, mode=md))
        assert st.run_cycles == gst.run_cycles, md
    twin = cfg.engine.twin()
    assert twin.iis[cfg.pe.mode_code("a8s_w8s")] == 4
    for md in modes:
        code, ii = cfg.pe.mode_code(md), cfg.pe.ii(md)
        for m, nt, kt, f in [(2, 3, 2, 0), (5, 2, 3, 1), (1, 1, 1, 0)]:
            env = {"m": m, "n_tiles": nt, "k_tiles": kt, "accumulate": f, "mode": code}
            assert evaluate(twin.model, env) == run_cycles(
                m, nt, kt, f, 0, rows=3, cols=2, extra=twin.extra,
                acc_latency=twin.combiner_latency, ii=ii)


@pytest.mark.parametrize("pe", [
    {"kind": "fpmac", "input_format": "fp8_e5m2", "chunk": 4, "stages": 2},
    {"kind": "fpmac", "input_format": "fp8_e5m2", "stages": 1},
    {"kind": "fpmac", "input_format": "fp8_e5m2", "accumulate": "exact", "stages": 1}])
def test_fpmac_sums_each_k_tile_as_the_os_pe(pe):
    """fpmac on WS: each K tile of ``rows`` pairs is summed from +0 in the output-stationary
    PE's order, the tiles combined by the kind's FP adder: the kind's independent reference
    with ``k_split = rows``. Directed: e5m2 products below fp16's smallest subnormal round a
    one-pair sum to -0, which K padding must keep (a +0 product would make it +0), a chunk
    longer than the column, NaN and Inf (random codes), K = 2 tiles + 1 pair."""
    from tessera.sim import fp
    cfg = ws_cfg(pe)
    fi = cfg.pe.fmt_in
    tiny = fp.encode(fi, np.array([2.0 ** -16, -2.0 ** -16]))
    a = np.array([[tiny[0]], [tiny[1]], [tiny[0]]], dtype=np.uint64)
    b = np.array([[tiny[1], tiny[0]]], dtype=np.uint64)
    got, stats = gemm_on_core(cfg, a, b)
    assert stats.k_split == 3
    want = reference_gemm(cfg, a, b, k_split=3)
    zero = 0 if cfg.pe.chunk else 0x8000      # -0; a chunked sum ends in round(+0 + inner)
    assert want[0, 0] == zero and want[1, 1] == zero
    np.testing.assert_array_equal(got, want)
    a, b = gemm_operands(cfg, 4, 3, 7, kind="extremes", seed=3)
    got, stats = gemm_on_core(cfg, a, b)
    np.testing.assert_array_equal(got, reference_gemm(cfg, a, b, k_split=3))


def test_chain_is_refused_and_aliases_normalise():
    with pytest.raises(ConfigError, match=r"array.chain: true needs array.dataflow "
                                          r"'output_stationary'"):
        config_from_dict({"array": {"dataflow": "ws", "chain": True},
                          "memory": {"p_depth": 8}})
    assert ws_cfg().array.dataflow == "weight_stationary"
    assert config_from_dict({"array": {"dataflow": "os"}}).array.dataflow == \
        "output_stationary"


@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 3), (4, 1), (2, 2)])
def test_edge_shapes(rows, cols):
    """One-row and one-column arrays (a burst of one word, no skew, no deskew)."""
    cfg = ws_cfg({"kind": "int", "acc_bits": 24}, rows=rows, cols=cols)
    a, b = gemm_operands(cfg, 3, 4, 5, kind="random", seed=rows * 10 + cols)
    got, stats = gemm_on_core(cfg, a, b)
    np.testing.assert_array_equal(got, reference_gemm(cfg, a, b, k_split=stats.k_split))
    golden = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    _, gstats = asyncio.run(golden.gemm(a, b))
    assert stats.run_cycles == gstats.run_cycles


@pytest.mark.parametrize("pe,rows,cols", [({"kind": "int"}, 1, 2),
                                          ({"kind": "bitfusion"}, 3, 2),
                                          ({"kind": "biscaled"}, 2, 3),
                                          ({"kind": "fpec"}, 2, 2),
                                          ({"kind": "fpmac", "chunk": 2}, 3, 2),
                                          ({"kind": "fpmac", "accumulate": "exact"}, 2, 1),
                                          ({"kind": "multiprec"}, 2, 2)])
def test_verilog_lints_clean(pe, rows, cols, tmp_path):
    """verilator --lint-only -Wall under the documented waivers, for a run-time mode (Bit
    Fusion), a side-band member (BiScaled), a one-row array."""
    from tessera.generators.generate import generate_core
    from tessera.sim.verilator import lint
    m = generate_core(ws_cfg(pe, rows=rows, cols=cols), tmp_path / "o")
    res = lint([tmp_path / "o" / m["verilog"]], m["top"])
    assert res.ok, res.summary()


def _count_reads(cfg, runs):
    """RUNs on the core in Amaranth's simulator, counting the engine's store reads (A and B
    read enables, combining words (one C read each), epilogue words (one P read each))."""
    from amaranth.sim import Simulator
    from tessera.sim.pysim import AmaranthTransport
    core = build_core(cfg)
    eng = core._engine
    counts = {"a": 0, "b": 0, "c": 0, "p": 0}
    out = {}

    async def bench(ctx):
        drv = TesseraDriver(AmaranthTransport(ctx, core), cfg, poll_cycles=4)
        await drv.connect()
        got = []
        for r in runs:
            before = dict(counts)
            await drv.run(**r)
            got.append({k: counts[k] - before[k] for k in counts})
        out["v"] = got

    async def watch(ctx):
        p = eng.result.payload
        async for _, _, ra, rb, v, acc, epi in ctx.tick().sample(
                eng.a_port.r_en, eng.b_port.r_en, eng.result.valid, p.accumulate,
                p.epilogue):
            counts["a"] += ra
            counts["b"] += rb
            counts["c"] += v & acc
            counts["p"] += v & epi
    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_process(watch)
    sim.run()                  # until the testbench returns (the watcher is a background process)
    return out["v"]


@pytest.mark.parametrize("dataflow", ["ws", "os"])
def test_scratchpad_reads_equal_the_rtl(dataflow):
    """The twins' per-RUN scratchpad reads (the dataflow benchmark's bytes per MAC) equal the
    reads the engine's RTL makes."""
    from tessera.hdl.engine.params import FLAG_EPILOGUE
    d = {"array": {"rows": 3, "cols": 2, "dataflow": dataflow},
         "memory": {"a_depth": 32, "b_depth": 64, "c_depth": 32, "p_depth": 8}}
    cfg = config_from_dict(d)
    if dataflow == "ws":
        runs = [dict(m=4, n_tiles=2, k_tiles=3, flags=0), dict(m=2, n_tiles=1, k_tiles=1,
                                                                 flags=FLAG_ACCUMULATE),
                dict(m=5, n_tiles=3, k_tiles=2, flags=FLAG_EPILOGUE)]
    else:
        runs = [dict(m_tiles=2, n_tiles=3, k=4, flags=0), dict(m_tiles=1, n_tiles=2, k=5,
                                                               flags=FLAG_ACCUMULATE),
                dict(m_tiles=2, n_tiles=1, k=3, flags=FLAG_EPILOGUE)]
    twin = cfg.engine.twin()
    full = [{"a_base": 0, "b_base": 0, "c_base": 0, "p_base": 0, **r} for r in runs]
    assert _count_reads(cfg, runs) == [twin.reads(r) for r in full]


def _stream_tiles(dut, W, X):
    """Drive `WSGemmArray` ``dut`` with weight tiles ``W`` (T x R x C codes) and vectors ``X``
    (T x M x R), each tile's burst behind the previous tile's vectors; returns the result
    words and the cycles they came out in."""
    from amaranth.sim import Simulator
    T, M, R = X.shape
    C = W.shape[2]
    got, times = [], []

    async def bench(ctx):
        for j in range(R):                        # tile 0's burst, k = rows-1 first
            ctx.set(dut.w_valid, 1)
            for c in range(C):
                ctx.set(dut.w_in[c], int(W[0, R - 1 - j, c]))
            await ctx.tick()
        for t in range(T):
            for mm in range(M):
                ctx.set(dut.valid, 1)
                ctx.set(dut.swap, mm == 0)
                for r in range(R):
                    ctx.set(dut.a[r], int(X[t, mm, r]))
                burst = t + 1 < T and mm < R        # the next tile loads behind this one
                ctx.set(dut.w_valid, burst)
                if burst:
                    for c in range(C):
                        ctx.set(dut.w_in[c], int(W[t + 1, R - 1 - mm, c]))
                await ctx.tick()
        ctx.set(dut.valid, 0)
        ctx.set(dut.w_valid, 0)
        for _ in range(dut.latency + 3):
            await ctx.tick()

    async def watch(ctx):
        cycle = 0
        async for _, _, ov, od in ctx.tick().sample(dut.out_valid, dut.out_data):
            if ov:
                got.append([int(od[c]) for c in range(C)])
                times.append(cycle)
            cycle += 1
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_process(watch)
    sim.run()
    return got, times


def test_ws_gemm_array_alone():
    """`hdl/array/ws_gemm.py` (`WSGemmArray`) alone: weight bursts loaded behind the running
    tile, swaps with no bubble, one column-sum word per vector ``latency`` cycles later, equal
    to exact integer dot products (int8 parts; 20-bit accumulator wrap not reached)."""
    from tessera.hdl.arith.intmac import IntMacPE
    from tessera.hdl.array.ws_gemm import WSGemmArray
    R, C, T, M = 3, 4, 3, 5
    dut = WSGemmArray(rows=R, cols=C, parts=lambda: IntMacPE(a_bits=8, b_bits=8, acc_bits=20))
    rng = np.random.default_rng(1)
    W = rng.integers(-128, 128, (T, R, C))
    X = rng.integers(-128, 128, (T, M, R))
    got, times = _stream_tiles(dut, W, X)
    assert got == [list(X[t, mm] @ W[t]) for t in range(T) for mm in range(M)]
    # one word per cycle, no bubble at the swaps; the first R + latency cycles after reset
    assert times == list(range(times[0], times[0] + T * M))
    assert times[0] == R + dut.latency


@pytest.mark.parametrize("kind,kw", [
    ("step", {"chunk": None, "stages": 3}),     # multiplier register: front 1
    ("step", {"chunk": 2, "stages": 2}),        # outer adds at rows 2 and in the finish
    ("exact", {"stages": 6})])                  # finish registers abs, norm, out
def test_fp_parts_in_ws_array(kind, kw):
    """`hdl/arith/fpparts.py` in `WSGemmArray` alone: every column's word is the sum of the
    tile's ``rows`` pairs as one output-stationary RUN of ``rows`` pairs, against the
    independent references (`sim/fpref.py`, `sim/fpexactref.py`), on codes drawn from every
    E4M3 code (NaN, subnormals, both zeros); latency front + finish + rows + cols + 1."""
    from tessera.hdl.arith.formats import FORMATS
    from tessera.hdl.arith.fpparts import FPExactParts, FPStepParts
    from tessera.hdl.array.ws_gemm import WSGemmArray
    from tessera.sim import fp
    from tessera.sim.fpexactref import reference_exact_gemm
    from tessera.sim.fpref import reference_fp_gemm
    fi, fa = FORMATS["fp8_e4m3"], FORMATS["fp16"]
    R, C, T, M = 5, 2, 3, 10
    make = ((lambda: FPExactParts(fmt_in=fi, fmt_acc=fa, **kw)) if kind == "exact"
            else (lambda: FPStepParts(fmt_in=fi, fmt_acc=fa, **kw)))
    dut = WSGemmArray(rows=R, cols=C, parts=make)
    p = make()
    p._MustUse__used = True
    assert dut.latency == R + C + p.front + p.finish_latency + 1
    rng = np.random.default_rng(len(str(kw)))
    W = rng.integers(0, 256, (T, R, C)).astype(np.uint64)
    X = rng.integers(0, 256, (T, M, R)).astype(np.uint64)
    X[0, 0] = 0                                      # +0 pairs, and -0 ones
    X[0, 1] = 0x80
    # tiles 1 and 2: normal data of mixed magnitudes, whose sums round at every step
    W[1:] = fp.encode(fi, rng.normal(0, 4, (T - 1, R, C)))
    X[1:] = fp.encode(fi, rng.normal(0, 1, (T - 1, M, R)) * rng.choice([1, 64], (T - 1, M, R)))
    got, times = _stream_tiles(dut, W, X)
    want = []
    for t in range(T):
        if kind == "exact":
            ref = reference_exact_gemm(fi, fa, X[t], W[t])
        else:
            ref = reference_fp_gemm(fi, fa, X[t], W[t], chunk=kw["chunk"] or 0)
        want += [[int(v) for v in row] for row in ref]
    assert got == want
    assert times == list(range(R + dut.latency, R + dut.latency + T * M))


def test_fp_parts_refuse_bad_stages():
    from tessera.hdl.arith.formats import FORMATS
    from tessera.hdl.arith.fpparts import FPExactParts, FPStepParts
    fi, fa = FORMATS["fp8_e4m3"], FORMATS["fp16"]
    with pytest.raises(ValueError, match=r"^stages must be an int in 2\.\.4, not 1$"):
        FPStepParts(fmt_in=fi, fmt_acc=fa, chunk=4, stages=1)
    with pytest.raises(ValueError, match=r"^stages must be an int in 1\.\.6, not 7$"):
        FPExactParts(fmt_in=fi, fmt_acc=fa, stages=7)
    with pytest.raises(ValueError, match=r"^chunk must be None"):
        FPStepParts(fmt_in=fi, fmt_acc=fa, chunk=0)


def test_parts_without_products_or_accumulate_cannot_be_made():
    """`Parts.products` and `Parts.accumulate` are abstract: a provider missing one is
    refused when it is instantiated, not when an engine first elaborates it."""
    from amaranth import signed
    from amaranth.lib import wiring
    from tessera.hdl.arith.intacc import IntAccPE
    from tessera.hdl.array.parts import Parts
    from tessera.hdl.array.pe import PESignature
    sig = PESignature(a_shape=8, b_shape=8, acc_shape=signed(20))

    class NoProducts(IntAccPE):
        pass

    class NoAccumulate(Parts, wiring.Component):
        def products(self, m):
            return {"p": self.a * self.b}
    with pytest.raises(TypeError, match="abstract method products"):
        NoProducts(sig)
    with pytest.raises(TypeError, match="abstract method accumulate"):
        NoAccumulate(sig)
