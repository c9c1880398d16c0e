"""The cocotb + Verilator tier: whole cores from presets, bit- and cycle-exact."""

import json
import xml.etree.ElementTree as ET

import pytest

from tessera.generators.config import config_from_dict, load_config
from tessera.generators.regress import default_cases, run_regression


def _check(summary):
    failed = [t for t in summary["tests"] if t["status"] != "passed"]
    assert not failed, failed
    assert summary["ok"]
    assert summary["gemms"], "no GEMM case ran"
    for g in summary["gemms"] + summary["layers"]:
        assert g["mismatches"] == 0, g
        assert g["cycles"] == g["golden_cycles"], g


# int8-ws (the weight-stationary array) under Verilator is slow (an 8x8 build); its engine's
# HDL is in the default suite under Amaranth's simulator (tests/test_ws_engine.py).
# icebreaker under Verilator is slow too: the same engine as int8-4x4 here; its unregistered
# READ path is byte-exact against the golden core in tests/test_core.py.
@pytest.mark.parametrize("preset", ["int8-4x4",
                                    pytest.param("icebreaker", marks=pytest.mark.slow),
                                    pytest.param("int8-ws", marks=pytest.mark.slow)])
def test_preset_full_regression(preset, tmp_path):
    cfg = load_config(preset)
    s = run_regression(cfg, out_dir=tmp_path / "reg", progress=lambda m: None)
    _check(s)
    cases = {c["name"] for c in default_cases(cfg)}
    assert {g["case"] for g in s["gemms"]} == cases
    # K past the scratchpads was split into accumulating RUNs.
    long_k = next(g for g in s["gemms"] if g["case"] == "long_k_min")
    assert long_k["runs"] >= 3
    # Every layer case of the engine ran (dense, convolutions, depthwise).
    layers = {c["name"] for c in cfg.engine.layer_cases()}
    assert {g["case"] for g in s["layers"]} == layers and len(layers) >= 6
    # JUnit lists every cocotb test (info, each GEMM and layer, the network, back-pressure,
    # malformed commands).
    root = ET.parse(s["junit"]).getroot()
    assert len(list(root.iter("testcase"))) == len(s["tests"]) == len(cases) + len(layers) + 4
    # The network case: digits images through the MLP quantized for the core, bit-exact.
    n = s["network"]
    assert n["equal_golden"] == n["equal_reference"] == n["images"] and n["cycles_equal"]


# Slow (a build each): fpmac and multiprec on the weight-stationary array, whose HDL is in the
# default suite under Amaranth's simulator (tests/test_ws_engine.py: every fpmac accumulate
# mode, multiprec's modes).
@pytest.mark.slow
@pytest.mark.parametrize("preset,rows", [("fp8", 4), ("multiprec", 4)])
def test_weight_stationary_float_and_multiprec(preset, rows, tmp_path):
    """``fp8`` (chunked FP16 accumulation) and ``multiprec`` (a vector every ii(mode) cycles)
    with ``array.dataflow = "ws"``: every GEMM, layer and the digits network bit-exact
    against the kinds' references (fpmac: K tiles of ``rows`` pairs, the mapper's
    ``k_split``) and cycle-exact against the golden core, quick cases."""
    from helpers import derive
    cfg = derive(preset, array={"rows": rows, "cols": 4, "dataflow": "ws"})
    s = run_regression(cfg, out_dir=tmp_path / "reg", quick=True, progress=lambda m: None)
    _check(s)
    if preset == "fp8":
        assert all(g["k_split"] == rows for g in s["gemms"])
    n = s["network"]
    assert n["equal_golden"] == n["equal_reference"] == n["images"] and n["cycles_equal"]


# Slow (a build each): the FP8 core stays in the default suite on Verilator in its exact mode
# (tests/test_fp_exact_rtl.py) and, with FP16 step accumulation, under Amaranth's simulator
# (tests/test_epilogue_rtl.py's fp8_fp16); the FP units exhaustively (tests/test_fp_hdl.py).
@pytest.mark.slow
@pytest.mark.parametrize("preset", ["fp8", "dlfloat"])
def test_float_presets(preset, tmp_path):
    """Floating-point cores: FP8 x FP8 with chunked FP16 accumulation, DLFloat16 MACs. The
    extremes case draws operands from every code, NaN/Inf/subnormals included. The long-K
    cases (K = 2 x depth + 3) split K over three RUNs combined by the FP-add combiner,
    bit-exact against the independent reference and cycle-exact against the twin."""
    cfg = load_config(preset)
    s = run_regression(cfg, quick=True, out_dir=tmp_path / "reg", progress=lambda m: None)
    _check(s)
    assert {g["case"] for g in s["gemms"]} >= {"extremes", "reference_64", "long_k_min",
                                                "long_k"}
    depth = min(cfg.memory.a_depth, cfg.memory.b_depth)
    for case in ("long_k", "long_k_min"):
        g = next(g for g in s["gemms"] if g["case"] == case)
        assert g["k"] >= 2 * depth and g["k_split"] == depth
        assert g["runs"] >= 3


def test_reference_gemm_utilization_on_4x4():
    """The figure the issue asks for: 64x64x64 on a 4x4 array, host transfers excluded."""
    cfg = load_config("int8-4x4")
    s = run_regression(cfg, cases=[{"name": "reference_64", "m": 64, "n": 64, "k": 64,
                                    "kind": "random", "seed": 1}], test_filter="test_gemm",
                       out_dir="build/test-reference-4x4", progress=lambda m: None)
    g = s["gemms"][0]
    assert g["mismatches"] == 0 and g["cycles"] == g["golden_cycles"]
    assert g["ideal_cycles"] == 64 ** 3 / 16
    assert g["ideal_cycles"] / g["cycles"] >= 0.95


def test_default_preset_quick_with_waves(tmp_path):
    cfg = load_config(None)
    # The GEMM cases only: layers are checked on the RTL by the other regressions, and each
    # layer case would add megabytes of VCD here.
    s = run_regression(cfg, cases=default_cases(cfg, quick=True), layers=[], waves=True,
                       waves_depth=1, keep=1, out_dir=tmp_path / "reg",
                       progress=lambda m: None)
    _check(s)
    assert s["waves"] and s["waves"].endswith(".vcd")
    with open(s["waves"]) as f:
        head = f.read(4096)
    assert "$timescale" in head and "i__payload" in open(s["waves"]).read(2_000_000)
    json.dumps(s)  # the --json summary is serializable


def test_odd_geometry_non_square_narrow_acc(tmp_path):
    """A 3x5 array with 20-bit accumulators and tiny scratchpads: wrap + splitting paths."""
    cfg = config_from_dict({"core": {"name": "odd_core"}, "array": {"rows": 3, "cols": 5},
                            "pe": {"acc_bits": 20},
                            "memory": {"a_depth": 64, "b_depth": 48, "c_depth": 96}})
    s = run_regression(cfg, out_dir=tmp_path / "reg", progress=lambda m: None)
    _check(s)


# ternary-rle under Verilator is slow (a build): its core's HDL stays in the default suite
# under Amaranth's simulator (tests/test_epilogue_rtl.py's ternary_rle, tests/test_tree_engine.py).
@pytest.mark.parametrize("preset", ["ternary", pytest.param("ternary-rle",
                                                            marks=pytest.mark.slow)])
def test_ternary_presets(preset, tmp_path):
    """The tree engine's presets, every default case: ternary weights and per-channel scales
    loaded at run time, bit-exact against the decoded-weight matmul, cycles equal to the
    twin's; K past one RUN accumulates over several."""
    cfg = load_config(preset)
    s = run_regression(cfg, out_dir=tmp_path / "reg", progress=lambda m: None)
    _check(s)
    assert {g["case"] for g in s["gemms"]} == {c["name"] for c in default_cases(cfg)}
    for case in ("long_k", "long_k_min"):
        g = next(g for g in s["gemms"] if g["case"] == case)
        assert g["k"] > cfg.engine.k_capacity() and g["runs"] >= 3
