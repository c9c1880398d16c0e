# amaranth: UnusedElaboratable=no
"""FPEC (Compensated-DNN): quantizer and twin (sim/fpec.py) against exact rationals, the
compensated MAC PE (hdl/arith/fpec.py) exhaustively against the twin, the seed's example."""

import itertools
from fractions import Fraction

import numpy as np
import pytest

from tessera.generators.kinds.base import ConfigError
from tessera.generators.kinds.fpec import FpecKind
from tessera.hdl.arith.fixed import FixedFormat
from tessera.hdl.arith.fpec import FpecMacPE
from tessera.sim.fpec import FpecFormat, FpecTwin, fpec_dot_codes, fpec_dot_value
from tests.helpers import drive_pe


def test_seed_example_exact():
    """X = (3.3, 2.95), Y = (3.45, 2.75), SB/IB/FB = 1/3/0: quantized 18, compensated 19.5."""
    f = FpecFormat(FixedFormat(3, 0))
    x, y = f.quantize([3.3, 2.95]), f.quantize([3.45, 2.75])
    qx, zx, dx, _ = f.fields(x)
    qy, zy, dy, _ = f.fields(y)
    assert list(qx) == [3, 3] and list(qy) == [3, 3]
    assert list(zx) == [0, 1] and list(dx) == [0, 0]        # 3.3: +; 2.95: error ~ 0
    assert list(zy) == [0, 0] and list(dy) == [0, 1]        # 3.45: +; 2.75: -
    codes, P, C = fpec_dot_codes(f, f, x, y)
    assert (P, C, int(codes)) == (18, 3, 39)                # O = (2*18 + 3) / 2
    assert fpec_dot_value(f, f, x, y) == 19.5
    # Exact: the compensated sum drops dX*dY (which would give 19.75); the truth is 19.4975.
    lx = [f.decode_exact(int(c)) for c in x]
    ly = [f.decode_exact(int(c)) for c in y]
    comp = sum(a * b + a * e + d * b for (a, d), (b, e) in zip(lx, ly))
    assert comp == Fraction(39, 2)
    assert sum((a + d) * (b + e) for (a, d), (b, e) in zip(lx, ly)) == Fraction(79, 4)
    assert abs(3.3 * 3.45 + 2.95 * 2.75 - 19.4975) < 1e-12
    kind = FpecKind(a_int_bits=3, a_frac_bits=0, b_int_bits=3, b_frac_bits=0, acc_bits=16)
    assert int(kind.reference(x[None, :], y[:, None])[0, 0]) == 39


@pytest.mark.parametrize("emb", [0, 1, 2])
def test_quantizer_threshold_and_magnitudes(emb):
    f = FpecFormat(FixedFormat(3, 1), emb_bits=emb)          # LSB 1/2
    levels = np.arange(-4, 4, 0.5)
    r = np.linspace(-0.249, 0.249, 101)                      # residuals in LSBs
    for lv in levels[1:-1]:
        x = lv + r * 0.5
        q, ezb, edb, e = f.fields(f.quantize(x))
        np.testing.assert_array_equal(q * 0.5, lv)
        np.testing.assert_array_equal(ezb, np.abs(r) < 0.25)
        _, est = f.decode(f.quantize(x))
        # The estimate has the residual's sign and lies within [T, LSB/2] when compensated.
        comp = ezb == 0
        assert np.all(np.sign(est[comp]) == np.sign(r[comp]))
        assert np.all((np.abs(est[comp]) >= 0.25 * 0.5) & (np.abs(est[comp]) <= 0.25))
        # Each estimate is the upper edge of the residual's sub-range of [T, LSB/2].
        assert np.all(np.abs(est[comp]) + 1e-12 >= np.abs(r[comp]) * 0.5)
    # Residuals beyond T: compensated, and EMB is the sub-range index.
    x = 1.0 + np.array([0.26, 0.30, 0.37, 0.40, 0.45, 0.49]) * 0.5
    q, ezb, edb, e = f.fields(f.quantize(x))
    assert not ezb.any() and not edb.any()
    np.testing.assert_array_equal(e, np.floor((np.array([0.26, 0.30, 0.37, 0.40, 0.45, 0.49])
                                               - 0.25) / (0.25 / (1 << emb))))


def test_threshold_sets_compensation_frequency():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 2, 20000)
    freq = [FpecFormat(FixedFormat(3, 1), threshold=t).compensated_fraction(
        FpecFormat(FixedFormat(3, 1), threshold=t).quantize(x)) for t in (0.05, 0.25, 0.45)]
    assert freq[0] > freq[1] > freq[2]
    assert abs(freq[1] - 0.5) < 0.02                        # uniform residuals: |r| >= 1/4


def _kind(emb, acc=32, ia=2, fa=1, ib=1, fb=2):
    return FpecKind(a_int_bits=ia, a_frac_bits=fa, b_int_bits=ib, b_frac_bits=fb,
                    emb_bits=emb, acc_bits=acc)


@pytest.mark.parametrize("emb,acc", [(0, 32), (1, 32), (2, 32), (0, 12)])
def test_twin_against_exact_reference(emb, acc):
    """Random codes over every field (EDB set under EZB included), K long enough to wrap."""
    kind = _kind(emb, acc)
    rng = np.random.default_rng(emb)
    la, lb = kind.layout().a_bits, kind.layout().b_bits
    a = rng.integers(0, 1 << la, (5, 37)).astype(np.uint64)
    b = rng.integers(0, 1 << lb, (37, 4)).astype(np.uint64)
    np.testing.assert_array_equal(kind.twin().tile(a.T, b), kind.reference(a, b))
    # Realistic quantized operands too.
    for wl in ("random", "extremes", "min", "relu"):
        a, b = kind.operands(3, 4, 19, kind=wl, rng=rng)
        np.testing.assert_array_equal(kind.twin().tile(a.T, b), kind.reference(a, b))


@pytest.mark.parametrize("wa,wb,emb", [(4, 4, 0), (3, 3, 1), (2, 3, 2)])
def test_hdl_exhaustive_single_pairs(wa, wb, emb):
    """Every pair of element codes (all value codes x EZB x EDB x EMB), one single-pair
    accumulation per cycle, against the twin."""
    acc = 16
    dut = FpecMacPE(a_bits=wa, b_bits=wb, emb_bits=emb, acc_bits=acc)
    fa = FpecFormat(FixedFormat(wa - 1, 0), emb)
    fb = FpecFormat(FixedFormat(wb - 1, 0), emb)
    pairs = list(itertools.product(range(1 << (wa + 2 + emb)), range(1 << (wb + 2 + emb))))
    got = drive_pe(dut, [([x], [y]) for x, y in pairs])
    x = np.array([p[0] for p in pairs], dtype=np.uint64)
    y = np.array([p[1] for p in pairs], dtype=np.uint64)
    want = fpec_dot_codes(fa, fb, x[:, None], y[:, None], acc)[0].astype(np.int64)
    want = np.where(want >= 1 << (acc - 1), want - (1 << acc), want)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("emb,acc", [(0, 24), (2, 17)])
def test_hdl_accumulations_match_twin(emb, acc):
    kind = _kind(emb, acc, ia=3, fa=2, ib=2, fb=3)
    dut = kind.make_pe()
    rng = np.random.default_rng(7)
    la, lb = kind.layout().a_bits, kind.layout().b_bits
    seqs = []
    for _ in range(60):
        n = int(rng.integers(1, 12))
        seqs.append((rng.integers(0, 1 << la, n), rng.integers(0, 1 << lb, n)))
    got = drive_pe(dut, seqs)
    twin = FpecTwin(kind.a_format, kind.b_format, acc)
    for (x, y), g in zip(seqs, got):
        w = int(twin.tile(np.array(x, dtype=np.uint64)[:, None],
                          np.array(y, dtype=np.uint64)[:, None])[0, 0])
        assert g == (w - (1 << acc) if w >= 1 << (acc - 1) else w)


def test_config_checks():
    with pytest.raises(ConfigError, match=r"^pe\.emb_bits: 3 is out of range; allowed: 0\.\.2$"):
        FpecKind(emb_bits=3)
    with pytest.raises(ConfigError, match=r"^pe\.threshold: 0\.7 is out of range"):
        FpecKind(threshold=0.7)
    with pytest.raises(ConfigError, match=r"^pe\.acc_bits: 10 is out of range; allowed: 14\.\.64$"):
        FpecKind(acc_bits=10)
    with pytest.raises(ConfigError, match=r"^pe\.a_int_bits \+ pe\.a_frac_bits: .* = 17 "):
        FpecKind(a_int_bits=15, a_frac_bits=1)
    with pytest.raises(ValueError, match=r"^emb_bits must be an integer 0\.\.2, not 5$"):
        FpecMacPE(emb_bits=5)


# Slow (a Verilator build): the kind's HDL stays in the default suite under Amaranth's
# simulator (the exhaustive single pairs and accumulations here, the whole core in
# tests/test_epilogue_rtl.py and tests/test_ws_engine.py).
@pytest.mark.slow
def test_preset_core_regression(tmp_path):
    """The ``fpec`` preset through the generated core on Verilator: bit-exact against the
    exact-rational reference, cycles equal to the twin's, K split over accumulating RUNs."""
    from tessera.generators.config import load_config
    from tessera.generators.regress import default_cases, run_regression
    cfg = load_config("fpec")
    # The quick cases without the 64 x 64 x 64 one (92160 cycles on 2 x 2: the full
    # `tessera regress` runs it) to keep the suite fast.
    cases = [c for c in default_cases(cfg, quick=True) if c["name"] != "reference_64"]
    s = run_regression(cfg, cases=cases, out_dir=tmp_path / "reg", progress=lambda m: None)
    assert s["ok"] and not [t for t in s["tests"] if t["status"] != "passed"]
    assert {g["case"] for g in s["gemms"]} == {c["name"] for c in cases}
    assert {"extremes", "long_k", "long_k_min"} <= {c["name"] for c in cases}
    for g in s["gemms"]:
        assert g["mismatches"] == 0 and g["cycles"] == g["golden_cycles"], g
    assert next(g for g in s["gemms"] if g["case"] == "long_k")["runs"] >= 3


def _golden_gemm(cfg, a, b):
    import asyncio

    from tessera.sim.core import GoldenCore, GoldenTransport
    from tessera.sim.driver import TesseraDriver

    async def body():
        drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
        await drv.connect()
        return await drv.gemm(a, b)
    return asyncio.run(body())


def test_float_gemm_through_the_driver():
    """Float tensors -> quantized FPEC codes -> the golden core (K split over RUNs) -> values:
    exact against the reference, and compensation lowers the error of plain fixed point."""
    from tessera.generators.config import load_config
    from tessera.sim.fpec import quantize_operands, result_values
    cfg = load_config("fpec")
    rng = np.random.default_rng(11)
    a = rng.normal(0, 2.0, (5, 150))
    b = rng.normal(0, 0.5, (150, 3))
    qa, qb = quantize_operands(cfg.pe, a, b)
    out, stats = _golden_gemm(cfg, qa, qb)
    assert stats.runs >= 3
    np.testing.assert_array_equal(out, cfg.pe.reference(qa, qb))
    got = result_values(cfg.pe, out)
    fa, fb = cfg.pe.a_format, cfg.pe.b_format
    plain = fa.fixed.value(fa.fields(qa)[0]) @ fb.fixed.value(fb.fields(qb)[0])
    true = a @ b
    assert np.abs(got - true).mean() < 0.8 * np.abs(plain - true).mean()


def test_tessera_unit_fpec_mac(tmp_path):
    from tessera.generators.units import generate_unit
    man = generate_unit("fpec_mac", {"emb_bits": 1}, tmp_path / "u")
    assert man["latency"] == 2 and man["formats"]["a"]["kind"] == "fpec"
    assert man["formats"]["a"]["bits"] == 4 + 2 + 1
    assert (tmp_path / "u" / "tessera_fpec_mac.v").read_text().count("module ") >= 1


def test_emb2_core_in_the_amaranth_simulator():
    """An EMB = 2 core (the presets use EMB 0), whole core in the Amaranth simulator: a ragged
    GEMM with K split over accumulating RUNs, bit-exact against the reference, cycles equal to
    the golden core's."""
    import asyncio

    from tessera.generators.assemble import build_core
    from tessera.generators.config import config_from_dict
    from tessera.sim.core import GoldenCore, GoldenTransport
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.pysim import run_with_driver
    cfg = config_from_dict({"core": {"name": "fpec_emb2"}, "array": {"rows": 2, "cols": 2},
                            "pe": {"kind": "fpec", "emb_bits": 2, "acc_bits": 24},
                            "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 16}})
    rng = np.random.default_rng(21)
    a, b = cfg.pe.operands(3, 3, 37, kind="random", rng=rng)
    assert set(np.unique(cfg.pe.a_format.fields(a)[3])) == {0, 1, 2, 3}

    async def body(t):
        drv = TesseraDriver(t, cfg, poll_cycles=8)
        await drv.connect()
        return await drv.gemm(a, b)
    out, stats = run_with_driver(build_core(cfg), body)
    assert stats.runs >= 3
    np.testing.assert_array_equal(out, cfg.pe.reference(a, b))

    async def gbody():
        drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg, poll_cycles=8)
        await drv.connect()
        return await drv.gemm(a, b)
    gout, gstats = asyncio.run(gbody())
    np.testing.assert_array_equal(gout, out)
    assert gstats.run_cycles == stats.run_cycles


def test_seed_example_through_the_core():
    """The seed's example as a 1 x 1 x 2 GEMM on a generated core (Amaranth simulator)."""
    from tessera.generators.assemble import build_core
    from tessera.generators.config import config_from_dict
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.fpec import quantize_operands, result_values
    from tessera.sim.pysim import run_with_driver
    cfg = config_from_dict({"core": {"name": "fpec_seed"}, "array": {"rows": 1, "cols": 1},
                            "pe": {"kind": "fpec", "a_int_bits": 3, "a_frac_bits": 0,
                                   "b_int_bits": 3, "b_frac_bits": 0, "acc_bits": 16},
                            "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 16}})
    a, b = quantize_operands(cfg.pe, [[3.3, 2.95]], [[3.45], [2.75]])

    async def body(t):
        drv = TesseraDriver(t, cfg, poll_cycles=8)
        await drv.connect()
        return await drv.gemm(a, b)
    out, _ = run_with_driver(build_core(cfg), body)
    assert int(out[0, 0]) == 39 and result_values(cfg.pe, out)[0, 0] == 19.5


def test_kind_host_hooks():
    """`encode_operands` / `result_values` on the kinds (what a generic float GEMM in the
    driver would call)."""
    from tessera.generators.kinds.biscaled import BiScaledKind
    k = FpecKind(a_int_bits=3, a_frac_bits=0, b_int_bits=3, b_frac_bits=0, acc_bits=16)
    a, b = k.encode_operands([[3.3, 2.95]], [[3.45], [2.75]])
    assert k.result_values(k.twin().tile(a.T, b))[0, 0] == 19.5
    kb = BiScaledKind(a_bits=5, a_fine_frac_bits=0, a_wide_frac_bits=-2, b_bits=5,
                      b_fine_frac_bits=0, b_wide_frac_bits=-2, acc_bits=16)
    a, b = kb.encode_operands([[5.1, 44.9]], [[14.9], [2.9]], threshold_a=10.0,
                              threshold_b=10.0)
    assert kb.result_values(kb.twin().tile(a.T, b))[0, 0] == 212.0
