"""Bit Fusion cores: mode changes between RUNs in the Amaranth simulator, the cocotb + Verilator
regression of a small core in every regression mode, the preset's full regression (slow)."""

import asyncio

import numpy as np
import pytest

from tessera.generators.assemble import build_core
from tessera.generators.config import config_from_dict, load_config
from tessera.generators.regress import default_cases, run_regression
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver
from tessera.sim.engines.model import evaluate
from tessera.sim.pysim import run_with_driver
from tessera.sim.workloads import gemm_operands, reference_gemm


def _small(**memory):
    return config_from_dict({"core": {"name": "bitfusion_small"},
                             "array": {"rows": 2, "cols": 3},
                             "pe": {"kind": "bitfusion", "acc_bits": 24},
                             "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 32, **memory}})


def _check(summary):
    failed = [t for t in summary["tests"] if t["status"] != "passed"]
    assert not failed, failed
    assert summary["ok"] and summary["gemms"]
    for g in summary["gemms"]:
        assert g["mismatches"] == 0, g
        assert g["cycles"] == g["golden_cycles"], g


def test_mode_changes_between_runs_cost_nothing():
    """GEMMs in six modes back to back on one core (Amaranth simulator, no reset between):
    each RUN takes exactly the cycle model's count, as on a fresh core, and every result is
    bit-exact; K is split into accumulating RUNs where it exceeds the scratchpads."""
    cfg = _small()
    modes = ["a2s_w2s", "a8s_w8s", "a4u_w2s", "a2u_w8u", "a8u_w4s", "a2s_w2s"]
    cases = []
    for i, md in enumerate(modes):
        kw = cfg.pe.layout(md).k_per_word
        a, b = gemm_operands(cfg, 3, 4, (5 + 12 * (i == 1)) * kw + 1, kind="random", seed=i,
                             mode=md)
        cases.append((md, a, b))

    async def body(t):
        drv = TesseraDriver(t, cfg, poll_cycles=4)
        await drv.connect()
        return [await drv.gemm(a, b, mode=md) for md, a, b in cases]
    results = run_with_driver(build_core(cfg), body)
    model = cfg.engine.twin().model
    for (md, a, b), (got, stats) in zip(cases, results):
        np.testing.assert_array_equal(got, reference_gemm(cfg, a, b, mode=md))
        kw = cfg.pe.layout(md).k_per_word
        words = -(-a.shape[1] // kw)
        # Every RUN's cycles are the model's for its arguments, whatever mode came before.
        mt_run, nt_run, kc = cfg.engine.mapper().plan(3, 4, words)
        expect = []
        for m0 in range(0, 2, mt_run):
            for n0 in range(0, 2, nt_run):
                for k0 in range(0, words, kc):
                    expect.append(evaluate(model, {
                        "m_tiles": min(mt_run, 2 - m0), "n_tiles": min(nt_run, 2 - n0),
                        "k": min(kc, words - k0), "accumulate": int(k0 > 0),
                        "mode": cfg.pe.mode_code(md)}))
        assert stats.run_cycles == expect, md

        async def golden(a=a, b=b, md=md):
            drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
            await drv.connect()
            return await drv.gemm(a, b, mode=md)
        g_out, g_stats = asyncio.run(golden())
        np.testing.assert_array_equal(g_out, got)
        assert g_stats.run_cycles == stats.run_cycles
    assert len(results[1][1].run_cycles) >= 2     # the a8s_w8s case accumulated over RUNs


def _cases(cfg):
    """Three GEMMs per regression mode, K in each mode's words: ragged with K not a multiple
    of the elements per word, the extremes, and K past the scratchpads (accumulating RUNs)."""
    R, C = cfg.rows, cfg.cols
    depth = min(cfg.memory.a_depth, cfg.memory.b_depth)
    out = []
    for j, md in enumerate(cfg.pe.regress_modes()):
        kw = cfg.pe.layout(md).k_per_word
        for i, (name, m, n, k, kind) in enumerate([
                ("ragged", R + 1, 2 * C + 1, 3 * kw + 1, "random"),
                ("extremes", R, C + 1, 5 * kw, "extremes"),
                ("long_k_min", R, C, (depth + 3) * kw, "min")]):
            out.append({"name": f"{name}@{md}", "m": m, "n": n, "k": k, "kind": kind,
                        "seed": 100 * j + i, "mode": md})
    return out


# Slow (a Verilator build): the Bit Fusion core's HDL stays in the default suite under
# Amaranth's simulator (tests/test_bitfusion.py, tests/test_ws_engine.py's bitfusion).
@pytest.mark.slow
def test_small_core_regression_every_mode(tmp_path):
    """cocotb + Verilator, a 2x3 core: the nine regression modes (each precision pair once,
    the four signedness pairs in turn), bit-exact against the plain integer reference, cycles
    equal to the twin's, plus INFO, back-pressure (in the default mode) and bad commands."""
    cfg = _small()
    cases = _cases(cfg)
    s = run_regression(cfg, cases=cases, out_dir=tmp_path / "reg", progress=lambda m: None)
    _check(s)
    assert {g["case"] for g in s["gemms"]} == {c["name"] for c in cases}
    assert {g["mode"] for g in s["gemms"]} == set(cfg.pe.regress_modes())
    for g in s["gemms"]:
        if g["case"].startswith("long_k"):
            assert g["runs"] >= 2, g


@pytest.mark.slow
def test_preset_full_regression(tmp_path):
    """The bitfusion preset: every default case in every regression mode."""
    cfg = load_config("bitfusion")
    s = run_regression(cfg, out_dir=tmp_path / "reg", progress=lambda m: None)
    _check(s)
    assert {g["case"] for g in s["gemms"]} == {c["name"] for c in default_cases(cfg)}
    for g in s["gemms"]:
        if g["case"].startswith("long_k"):
            assert g["runs"] >= 3, g


@pytest.mark.slow
def test_preset_bitstream(tmp_path, capsys):
    """The bitfusion preset placed and routed on the ULX3S 85F (well over an hour): it fits,
    meets the 25 MHz board clock and uses no DSP block (the BitBricks are LUTs)."""
    import json

    from tessera.generators.cli import main
    out = tmp_path / "bitfusion-ulx3s"
    assert main(["build", "bitfusion", "--board", "ulx3s-85f", "-o", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (out / "tessera_bitfusion.bit").is_file()
    assert r["dsps"] == 0 and 0 < r["luts"] <= r["luts_total"]
    assert r["brams"] >= 3 and r["timing_met"]
