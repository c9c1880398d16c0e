# amaranth: UnusedElaboratable=no
"""The whole core in Amaranth's simulator: driver GEMMs, byte-exact responses vs the golden core."""

import asyncio

import numpy as np
import pytest

from tessera.generators.assemble import build_core
from tessera.generators.config import config_from_dict
from tessera.hdl.ctrl.protocol import Err, Op
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.engines.model import evaluate
from tessera.sim.driver import TesseraDriver, TesseraError
from tessera.sim.pysim import run_with_driver
from tessera.sim.workloads import gemm_operands, reference_gemm


SMALL = {"array": {"rows": 2, "cols": 3},
         "memory": {"a_depth": 32, "b_depth": 32, "c_depth": 32}}


def small_cfg(**pe):
    d = {k: dict(v) for k, v in SMALL.items()}
    if pe:
        d["pe"] = pe
    return config_from_dict(d)


@pytest.mark.parametrize("m,n,k,kind", [(5, 7, 9, "random"), (2, 3, 70, "min"),
                                        (4, 6, 40, "extremes"), (1, 1, 1, "random")])
def test_gemm_matches_reference_and_cycles(m, n, k, kind):
    cfg = small_cfg(acc_bits=20)     # narrow accumulator: "min" with K=70 wraps
    a, b = gemm_operands(cfg, m, n, k, kind=kind, seed=m * n + k)

    async def body(t):
        drv = TesseraDriver(t, cfg, poll_cycles=8)
        return await drv.gemm(a, b)
    got, stats = run_with_driver(build_core(cfg), body)
    np.testing.assert_array_equal(got, reference_gemm(cfg, a, b, k_split=stats.k_split))
    # Cycle count per RUN equals the performance model, RUN by RUN.
    golden = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    _, gstats = asyncio.run(golden.gemm(a, b))
    assert stats.run_cycles == gstats.run_cycles
    # K larger than the scratchpads (depth 32) is split into accumulating RUNs.
    if k > 32:
        assert stats.runs >= -(-k // 32)


def test_cycles_formula_for_single_runs():
    """The RTL's busy cycles equal the engine's cycle model for a spread of tile counts and K,
    and the model equals the v1 closed form plus the registered operand read (one cycle per
    RUN)."""
    cfg = small_cfg()
    cases = [(1, 1, 1), (1, 1, 3), (2, 1, 2), (1, 3, 5), (3, 2, 9), (2, 2, 1)]

    async def body(t):
        drv = TesseraDriver(t, cfg, poll_cycles=4)
        await drv.connect()
        out = []
        for mt, nt, k in cases:
            out.append(await drv.run(m_tiles=mt, n_tiles=nt, k=k))
        return out
    got = run_with_driver(build_core(cfg), body)
    model = cfg.engine.twin().model
    want = [evaluate(model, {"m_tiles": mt, "n_tiles": nt, "k": k, "accumulate": 0})
            for mt, nt, k in cases]
    assert got == want
    v1 = [18 + (mt * nt - 1) * max(k, 2, 3) + k + 2 + 2 + 3 + 2 + 1 for mt, nt, k in cases]
    assert want == v1


def command_script(cfg, rng):
    """A command sequence whose responses must match the golden core byte for byte."""
    wa, wb, wc = (cfg.geometry.store(s).word_bytes for s in "abc")
    run = bytes([Op.RUN, cfg.engine.code, 0, 0])
    cmds = [bytes([Op.INFO]), bytes([Op.STATUS])]
    cmds.append(bytes([Op.WRITE, 0, 0, 0, 12, 0]) + rng.integers(0, 256, 12 * wa,
                                                                 dtype=np.uint8).tobytes())
    cmds.append(bytes([Op.WRITE, 1, 4, 0, 20, 0]) + rng.integers(0, 256, 20 * wb,
                                                                 dtype=np.uint8).tobytes())
    cmds.append(run + b"".join(x.to_bytes(2, "little")
                                           for x in (2, 3, 6, 0, 4, 1)) + bytes([0]))
    cmds.append("wait")
    cmds.append(bytes([Op.STATUS]))
    cmds.append(bytes([Op.READ, 2, 0, 0, 14, 0]))
    cmds.append(run + b"".join(x.to_bytes(2, "little")
                                           for x in (1, 1, 6, 0, 4, 1)) + bytes([1]))
    cmds.append("wait")
    cmds.append(bytes([Op.READ, 2, 0, 0, 4, 0]))
    cmds += [bytes([0xEE]), bytes([Op.STATUS]), bytes([Op.STATUS]),
             bytes([Op.READ, 3, 0, 0, 1, 0]), bytes([Op.READ, 0, 30, 0, 3, 0]),
             bytes([Op.WRITE, 2, 31, 0, 2, 0]) + bytes(2 * wc),
             bytes([Op.WRITE, 1, 0, 0, 0, 0]),
             run + b"".join(x.to_bytes(2, "little") for x in (1, 1, 33, 0, 0, 0))
             + bytes([0]),
             run + b"".join(x.to_bytes(2, "little") for x in (1, 0, 3, 0, 0, 0))
             + bytes([0]),
             bytes([Op.STATUS]), bytes([Op.READ, 1, 4, 0, 20, 0]),
             bytes([Op.RUN, cfg.engine.code + 1, 0, 0]) + bytes(13), bytes([Op.STATUS])]
    return cmds


@pytest.mark.parametrize("read_register", [True, False])
def test_responses_byte_exact_against_golden_core(read_register):
    """Every command's answer equals the golden core's, with the READ path's register after
    the block RAMs (the default) and without it (the iCEBreaker presets)."""
    d = {k: dict(v) for k, v in SMALL.items()}
    d["memory"]["read_register"] = read_register
    cfg = config_from_dict(d)
    assert cfg.memory.read_register is read_register
    cmds = command_script(cfg, np.random.default_rng(3))
    golden = GoldenCore(cfg)
    want = [golden.feed(c) if c != "wait" else b"" for c in cmds]

    async def body(t):
        got = []
        for c, w in zip(cmds, want):
            if c == "wait":
                await t.idle(200)     # let the RUN finish (the golden model is never busy)
                got.append(b"")
                continue
            await t.send(c)
            got.append(await t.recv(len(w)))
        await t.idle(20)
        return got
    got = run_with_driver(build_core(cfg), body)
    for c, g, w in zip(cmds, got, want):
        assert g == w, f"command {c if c == 'wait' else c[:6].hex()}: {g.hex()} != {w.hex()}"
    # The script exercised every error code the core can give outside a RUN.
    codes = {w[0] for w in want if w}
    assert {Err.OK, Err.OPCODE, Err.SPAD, Err.RANGE, Err.ARG, Err.TILE, Err.ENGINE} <= codes


def test_driver_raises_clear_errors():
    cfg = small_cfg()

    async def body(t):
        drv = TesseraDriver(t, cfg, poll_cycles=4)
        await drv.connect()
        errors = []
        for coro in (drv.read("c", 30, 3), drv.start(m_tiles=1, n_tiles=1, k=40),
                     drv.start(m_tiles=0, n_tiles=1, k=1)):
            try:
                await coro
            except TesseraError as e:
                errors.append(str(e))
        return errors
    errs = run_with_driver(build_core(cfg), body)
    assert errs == [
        "READ c[30:33]: core error 3: region runs past the end of the scratchpad",
        "RUN m_tiles=1, n_tiles=1, k=40: core error 6: the RUN's operands or results do not "
        "fit the scratchpads",
        "RUN m_tiles=0, n_tiles=1, k=1: core error 4: zero count or dimension, or unknown or "
        "unsupported flag bits",
    ]


def test_fp_accumulation_across_runs():
    """An FP core splits K across RUNs: the FP-add combiner, bit-exact against the independent
    reference (which rounds once per RUN and once per combine), cycles equal to the twin's."""
    cfg = config_from_dict({"array": {"rows": 1, "cols": 2},
                            "pe": {"kind": "fpmac", "input_format": "fp8_e4m3",
                                   "acc_format": "fp16", "stages": 2, "combine_stages": 2},
                            "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 16}})
    a, b = gemm_operands(cfg, 2, 3, 37, kind="random", seed=5)

    async def body(t):
        drv = TesseraDriver(t, cfg, poll_cycles=8)
        return await drv.gemm(a, b)
    got, stats = run_with_driver(build_core(cfg), body)
    assert stats.k_split == 16 and stats.runs == 2 * 2 * 3
    np.testing.assert_array_equal(got, reference_gemm(cfg, a, b, k_split=16))
    golden = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    gout, gstats = asyncio.run(golden.gemm(a, b))
    np.testing.assert_array_equal(gout, got)
    assert stats.run_cycles == gstats.run_cycles
    # Accumulating RUNs take the stored-word register and the combiner's latency more than the
    # first one.
    assert stats.run_cycles[1] == stats.run_cycles[0] + 1 + 2


@pytest.mark.parametrize("rows", [3, 4, 5])
def test_c_bound_check_on_any_row_count(rows):
    """The RUN check's bound on C (``c_base + m_tiles*n_tiles*rows`` words) on arrays whose
    row count is and is not a power of two (then the rows are a serial product of its own,
    ``(m_tiles*rows)*n_tiles``): the last RUN that fits runs, one tile more or a base one
    word higher is TILE, and so are the largest fields; every answer and cycle count equals
    the golden core's."""
    cfg = config_from_dict({"array": {"rows": rows, "cols": 2},
                            "memory": {"a_depth": 32, "b_depth": 32, "c_depth": 32}})
    fit = 32 // rows                      # tiles that fill C from word 0

    def run(mt, nt, k=1, c_base=0):
        return bytes([Op.RUN, cfg.engine.code, 0, 0]) + b"".join(
            x.to_bytes(2, "little") for x in (mt, nt, k, 0, 0, c_base)) + bytes([0])
    cmds = [run(fit, 1), "wait", run(1, fit), "wait", run(fit + 1, 1), run(1, fit + 1),
            run(fit, 1, c_base=32 - fit * rows), "wait", run(fit, 1, c_base=32 - fit * rows + 1),
            run(65535, 65535), run(65535, 1), run(1, 65535), run(21846, 3),
            bytes([Op.STATUS])]
    golden = GoldenCore(cfg)
    want = [golden.feed(c) if c != "wait" else b"" for c in cmds]
    assert [w[0] for w in want if w] == [Err.OK, Err.OK, Err.TILE, Err.TILE, Err.OK,
                                         Err.TILE, Err.TILE, Err.TILE, Err.TILE, Err.TILE,
                                         Err.OK]

    async def body(t):
        got = []
        for c, w in zip(cmds, want):
            if c == "wait":
                await t.idle(300)
                got.append(b"")
                continue
            await t.send(c)
            got.append(await t.recv(len(w)))
        return got
    got = run_with_driver(build_core(cfg), body)
    for c, g, w in zip(cmds, got, want):
        assert g == w, f"{c if c == 'wait' else c.hex()}: {g.hex()} != {w.hex()}"
