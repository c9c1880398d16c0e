# amaranth: UnusedElaboratable=no
"""The integer epilogue on chip (systolic engine, int kind, ``memory.p_depth`` > 0): the golden
twin against `sim.epilogue` applied to the reference GEMM, the RTL (Amaranth simulator)
bit- and cycle-exact against the twin, epilogue off leaves results and cycles alone, and the
argument check of the new flag and fields."""

import asyncio

import numpy as np
import pytest

from tessera.generators.assemble import build_core
from tessera.generators.config import config_from_dict
from tessera.generators.kinds.base import ConfigError
from tessera.hdl.engine.gemm_os import FLAG_EPILOGUE
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver, TesseraError
from tessera.sim.engines.model import evaluate
from tessera.sim.epilogue import int_epilogue, quantize_multiplier
from tessera.sim.intmac import from_codes
from tessera.sim.pysim import run_with_driver
from tessera.sim.workloads import gemm_operands, reference_gemm


def cfg_of(p_depth=4, rows=2, cols=2, **pe):
    d = {"array": {"rows": rows, "cols": cols},
         "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 16, "p_depth": p_depth}}
    if pe:
        d["pe"] = pe
    return config_from_dict(d)


def epilogue_params(rng, n, *, relu=True):
    scales = rng.uniform(0.002, 0.02, n)
    mult, shift = zip(*(quantize_multiplier(s) for s in scales))
    zp = int(rng.integers(-10, 10))
    return {"bias": rng.integers(-4000, 4000, n), "mult": np.array(mult),
            "shift": np.array(shift), "zero_point": zp, "lo": zp if relu else -128,
            "hi": min(127, zp + 90)}


def expected(cfg, a, b, epi, k_split=None):
    acc = from_codes(reference_gemm(cfg, a, b, k_split=k_split), cfg.pe.acc_bits)
    return int_epilogue(acc, epi["bias"], epi["mult"], epi["shift"], epi["zero_point"],
                        epi["lo"], epi["hi"], acc_bits=cfg.pe.acc_bits, out_bits=cfg.pe.a_bits)


def golden_gemm(cfg, a, b, epi):
    drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    return asyncio.run(cfg.engine.mapper().gemm(drv, a, b, epilogue=epi))


def rtl_gemm(cfg, a, b, epi):
    async def body(t):
        drv = TesseraDriver(t, cfg, poll_cycles=4)
        await drv.connect()
        return await cfg.engine.mapper().gemm(drv, a, b, epilogue=epi)
    return run_with_driver(build_core(cfg), body)


def test_geometry_and_run_fields():
    cfg = cfg_of(p_depth=8, rows=2, cols=3)
    g = cfg.geometry
    assert [(s.name, s.lanes, s.lane_bits, s.depth, s.result) for s in g.stores] == [
        ("a", 2, 8, 16, False), ("b", 3, 8, 16, False), ("c", 3, 32, 16, True),
        ("p", 6, 38, 8, False), ("r", 3, 8, 16, True)]
    # The epilogue result store moves a quarter of the accumulator store's bytes.
    assert g.store("r").word_bits * 4 == g.store("c").word_bits
    names = [f.name for f in cfg.engine.args().fields]
    assert names[-4:] == ["p_base", "zero_point", "lo", "hi"]
    timing = cfg.engine.timing()
    assert timing["run_cycles"][-1] == ["if", "epilogue", 5, 0]
    assert timing["epilogue"]["latency"] == 5
    # Without p_depth the core is what it was: three stores, no epilogue fields or term.
    plain = cfg_of(p_depth=0)
    assert [s.name for s in plain.geometry.stores] == ["a", "b", "c"]
    assert "p_base" not in [f.name for f in plain.engine.args().fields]
    # (accumulating: the stored word's read register, the int combiner adds no cycle)
    assert plain.engine.timing()["run_cycles"][-1] == ["if", "accumulate", 1, 0]


def test_p_depth_refused_for_a_kind_without_epilogue():
    with pytest.raises(ConfigError, match=r"^memory\.p_depth: 4 asks for an epilogue and "
                                          r"pe\.kind 'fpec' has none \(the requantizing "
                                          r"epilogue needs pe\.acc_bits >= 8\); allowed: 0$"):
        config_from_dict({"pe": {"kind": "fpec", "a_int_bits": 0, "a_frac_bits": 1,
                                 "b_int_bits": 0, "b_frac_bits": 1, "acc_bits": 7},
                          "memory": {"p_depth": 4}})
    with pytest.raises(ConfigError, match=r"^memory\.p_depth: 1 is out of range"):
        cfg_of(p_depth=1)


@pytest.mark.parametrize("m,n,k,seed", [(5, 7, 20, 1), (4, 4, 3, 2), (3, 9, 40, 3)])
def test_twin_against_epilogue_of_reference_gemm(m, n, k, seed):
    """K past the scratchpads (16) accumulates; the last chunk's RUN applies the epilogue;
    n-tiles past p_depth (4) take several parameter loads."""
    cfg = cfg_of()
    rng = np.random.default_rng(seed)
    a, b = gemm_operands(cfg, m, n, k, kind="random", seed=seed)
    epi = epilogue_params(rng, n, relu=seed % 2 == 1)
    got, stats = golden_gemm(cfg, a, b, epi)
    np.testing.assert_array_equal(from_codes(got, 8), expected(cfg, a, b, epi))
    assert stats.runs >= -(-k // 16)


def test_rtl_bit_and_cycle_exact():
    cfg = cfg_of()
    rng = np.random.default_rng(7)
    a, b = gemm_operands(cfg, 5, 9, 20, kind="extremes", seed=7)
    epi = epilogue_params(rng, 9)
    epi["bias"][0] = -(1 << 31)                      # wrapping bias add
    got, stats = rtl_gemm(cfg, a, b, epi)
    want, gstats = golden_gemm(cfg, a, b, epi)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(from_codes(got, 8), expected(cfg, a, b, epi))
    assert stats.run_cycles == gstats.run_cycles


def test_rtl_4x4_relu6_single_run():
    cfg = cfg_of(rows=4, cols=4, p_depth=2)
    rng = np.random.default_rng(11)
    a, b = gemm_operands(cfg, 8, 8, 8, kind="random", seed=11)
    epi = epilogue_params(rng, 8)
    got, stats = rtl_gemm(cfg, a, b, epi)
    np.testing.assert_array_equal(from_codes(got, 8), expected(cfg, a, b, epi))
    twin = cfg.engine.twin()
    env = {"m_tiles": 2, "n_tiles": 2, "k": 8, "accumulate": 0, "epilogue": FLAG_EPILOGUE}
    assert stats.runs == 1 and stats.run_cycles == [evaluate(twin.model, env)]
    env["epilogue"] = 0
    assert stats.run_cycles[0] == evaluate(twin.model, env) + 5


def test_epilogue_off_keeps_results_and_cycles():
    """A core with the epilogue built, RUN without the flag: the same results and cycles as
    the core without it."""
    on, off = cfg_of(p_depth=4), cfg_of(p_depth=0)
    a, b = gemm_operands(on, 5, 5, 20, kind="random", seed=5)

    async def body(t, cfg):
        drv = TesseraDriver(t, cfg, poll_cycles=4)
        await drv.connect()
        return await drv.gemm(a, b)
    got_on, s_on = run_with_driver(build_core(on), lambda t: body(t, on))
    ref = reference_gemm(off, a, b, k_split=s_on.k_split)
    np.testing.assert_array_equal(got_on, ref)
    _, s_off = asyncio.run(body(GoldenTransport(GoldenCore(off)), off))
    assert s_on.run_cycles == s_off.run_cycles


def test_argument_check_of_the_epilogue_fields():
    cfg = cfg_of(p_depth=4)
    plain = cfg_of(p_depth=0)

    async def body(t, cfg, runs):
        drv = TesseraDriver(t, cfg, poll_cycles=4)
        await drv.connect()
        errs = []
        for fields in runs:
            try:
                await drv.run(**fields)
                errs.append(0)
            except TesseraError as e:
                errs.append(e.code)
        return errs
    runs = [dict(m_tiles=1, n_tiles=2, k=1, flags=FLAG_EPILOGUE, p_base=2),
            dict(m_tiles=1, n_tiles=2, k=1, flags=FLAG_EPILOGUE, p_base=3),      # past p
            dict(m_tiles=1, n_tiles=2, k=1, flags=0, p_base=3),                  # unused
            dict(m_tiles=1, n_tiles=1, k=1, flags=0x04)]
    want = [0, 6, 0, 4]
    assert asyncio.run(body(GoldenTransport(GoldenCore(cfg)), cfg, runs)) == want
    assert run_with_driver(build_core(cfg), lambda t: body(t, cfg, runs)) == want
    # A core without the epilogue refuses the flag.
    plain_runs = [dict(m_tiles=1, n_tiles=1, k=1, flags=FLAG_EPILOGUE)]
    assert asyncio.run(body(GoldenTransport(GoldenCore(plain)), plain, plain_runs)) == [4]
    assert run_with_driver(build_core(plain), lambda t: body(t, plain, plain_runs)) == [4]


def test_mapper_refuses_epilogue_on_a_core_without_one():
    cfg = cfg_of(p_depth=0)
    a, b = gemm_operands(cfg, 2, 2, 2, kind="random", seed=0)
    with pytest.raises(ValueError, match=r"^gemm: epilogue= needs a core with an epilogue"):
        golden_gemm(cfg, a, b, {"bias": 0, "mult": 1 << 30, "shift": 0, "zero_point": 0,
                                "lo": -128, "hi": 127})
