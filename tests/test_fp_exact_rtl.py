"""Exact FP accumulation on Verilator: the whole ``icebreaker-fp8`` core under cocotb (bit- and
cycle-exact against the golden core and the Fraction reference), the exhaustive PE sweep, and
the two exact presets' bitstreams.

Only the core regression runs by default (one Verilator build of a 4x1 core); the PE sweep,
the ``ulx3s-fp8`` regression and the board builds are marked ``slow``.
"""

import json

import numpy as np
import pytest

from tessera.generators.cli import main
from tessera.generators.config import load_config
from tessera.generators.regress import default_cases, run_regression
from tessera.hdl.arith import formats as F
from tessera.hdl.arith.fpexact import FPExactMac
from tessera.sim import fp
from tests.test_fp_exact import states_x_products
from tests.test_fp_rtl import check


def _check(summary):
    failed = [t for t in summary["tests"] if t["status"] != "passed"]
    assert not failed, failed
    assert summary["ok"] and summary["gemms"]
    for g in summary["gemms"]:
        assert g["mismatches"] == 0, g
        assert g["cycles"] == g["golden_cycles"], g


def test_icebreaker_fp8_core_regression(tmp_path):
    """The exact-mode preset: ragged shapes, every FP8 code (NaN and subnormals included),
    zeros and K = 2 x 512 + 3 split over three RUNs joined by the FP16-add combiner; every
    result equals the Fraction reference, every RUN's cycles the twin's."""
    cfg = load_config("icebreaker-fp8")
    s = run_regression(cfg, quick=True, out_dir=tmp_path / "reg", progress=lambda m: None)
    _check(s)
    assert {g["case"] for g in s["gemms"]} == {c["name"] for c in default_cases(cfg, quick=True)}
    for case in ("long_k", "long_k_min"):
        g = next(g for g in s["gemms"] if g["case"] == case)
        assert g["k"] == 2 * 512 + 3 and g["k_split"] == 512 and g["runs"] >= 3


@pytest.mark.slow
def test_ulx3s_fp8_core_regression(tmp_path):
    cfg = load_config("ulx3s-fp8")
    s = run_regression(cfg, out_dir=tmp_path / "reg", progress=lambda m: None)
    _check(s)


@pytest.mark.slow
@pytest.mark.parametrize("fi", [F.fp8_e4m3, F.fp8_e5m2, F.hfp8, F.hfp8_ibm],
                         ids=lambda f: f.name)
def test_rtl_pe_products_x_states_exhaustive(fi, tmp_path):
    """Every FP8 pair on top of 10 accumulator states (two state-setting pairs, then the pair),
    FP16 results (DLFloat16 for the no-subnormal hfp8_ibm), against the twin."""
    fa = F.dlfloat16 if fi is F.hfp8_ibm else F.fp16
    a, b = states_x_products(fi)
    n = a.shape[0]
    cols = {"a": a.ravel(), "b": b.ravel(), "valid": np.ones(a.size, np.int64),
            "first": np.tile([1, 0, 0], n), "last": np.tile([0, 0, 1], n)}
    check(FPExactMac(fmt_in=fi, fmt_acc=fa, stages=3), f"fpexact_{fi.name}", "mac", cols,
          fp.exact_mac(fi, a, b, fa), tmp_path)


def _build(preset, board, tmp_path, capsys):
    out = tmp_path / f"{preset}-{board}"
    assert main(["build", preset, "--board", board, "-o", str(out), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_icebreaker_fp8_bitstream(tmp_path, capsys):
    """4 exact FP8 MACs on the UP5K at the iCEBreaker's 12 MHz (about 2 minutes)."""
    r = _build("icebreaker-fp8", "icebreaker", tmp_path, capsys)
    assert r["device"] == "iCE40UP5K" and r["luts"] <= r["luts_total"]
    assert r["target_mhz"] == 12 and r["timing_met"] and r["fmax_mhz"] >= 12


@pytest.mark.slow
def test_ulx3s_fp8_bitstream(tmp_path, capsys):
    """16 exact FP8 MACs on the ECP5-85F at the ULX3S's 25 MHz with margin (WebAssembly
    nextpnr: tens of minutes)."""
    r = _build("ulx3s-fp8", "ulx3s-85f", tmp_path, capsys)
    assert r["timing_met"] and r["fmax_mhz"] >= 1.5 * r["target_mhz"] == 37.5
