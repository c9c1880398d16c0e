# amaranth: UnusedElaboratable=no
"""BiScaled (BiScaled-DNN): encoder, storage and twin (sim/biscaled.py) against exact
rationals, the MAC PE (hdl/arith/biscaled.py) exhaustively against the twin, the seed's
5-bit example."""

import itertools

import numpy as np
import pytest

from tessera.generators.kinds.base import ConfigError
from tessera.generators.kinds.biscaled import BiScaledKind
from tessera.hdl.arith.biscaled import BiScaledMacPE
from tessera.hdl.arith.fixed import FixedFormat
from tessera.sim.biscaled import BiScaledFormat, biscaled_dot_codes, tail_threshold
from tests.helpers import simulate


X, Y = [5.1, 44.9], [14.9, 2.9]


@pytest.mark.parametrize("how", ["threshold", "mask"])
def test_seed_example_exact(how):
    """5-bit BiScaled, scale-fine s4.0, scale-wide s6.-2 (D = 2): 212 against the true 206.2."""
    f = BiScaledFormat(5, 0, -2)
    if how == "threshold":
        x, sx = f.encode(X, threshold=10.0)
        y, sy = f.encode(Y, threshold=10.0)
    else:
        x, sx = f.encode(X, mask=[False, True])
        y, sy = f.encode(Y, mask=[True, False])
    assert list(f.fine.from_code(x)) == [5, 11] and list(sx) == [0, 1]
    assert list(f.fine.from_code(y)) == [4, 3] and list(sy) == [1, 0]
    np.testing.assert_array_equal(f.decode(x, sx), [5, 44])
    np.testing.assert_array_equal(f.decode(y, sy), [16, 3])
    codes, total = biscaled_dot_codes(f, f, x, sx, y, sy, 16)
    assert int(total) == int(codes) == 212                 # 20 << 2 + 33 << 2
    assert abs(sum(a * b for a, b in zip(X, Y)) - 206.2) < 1e-9
    kind = BiScaledKind(a_bits=5, a_fine_frac_bits=0, a_wide_frac_bits=-2, b_bits=5,
                        b_fine_frac_bits=0, b_wide_frac_bits=-2, acc_bits=16)
    la, lb = f.lane_codes(x, sx), f.lane_codes(y, sy)
    assert int(kind.reference(la[None, :], lb[:, None])[0, 0]) == 212
    assert int(kind.twin().tile(la[:, None], lb[:, None])[0, 0]) == 212
    # Plain fixed point at 5 bits (step 4) and 6 bits (step 2): 240 and 172.
    for fx, want in ((FixedFormat(6, -2), 240), (FixedFormat(6, -1), 172)):
        qx, qy = fx.quantize_int(X), fx.quantize_int(Y)
        assert fx.bits in (5, 6)
        assert int((qx * qy).sum()) * fx.lsb ** 2 == want
    # 14.9 fits scale-fine (code 15, giving 207): the choice is by the threshold, not by fit.
    x2, sx2 = f.encode(X, threshold=45.0)
    y2, sy2 = f.encode(Y, threshold=45.0)
    assert list(sy2) == [0, 0] and list(sx2) == [0, 1]      # 44.9 does not fit scale-fine
    assert int(biscaled_dot_codes(f, f, x2, sx2, y2, sy2)[1]) == 5 * 15 + (11 * 3 << 2)


def test_storage_roundtrip_and_effective_bits():
    f = BiScaledFormat(6, 3, 0, block=64)
    rng = np.random.default_rng(1)
    x = rng.laplace(0, 0.5, 5000)
    codes, sw = f.encode(x)
    st = f.store(codes, sw)
    np.testing.assert_array_equal(st.selector(), sw)
    n_sw = int(sw.sum())
    assert 0 < n_sw < 0.1 * x.size
    blocks = -(-x.size // 64)
    assert st.storage_bits == 6 * x.size + blocks * 7 + n_sw * 6
    assert st.wide_fraction == n_sw / x.size
    # Every value within its own scale's half step unless it saturates the wide range.
    v = f.decode(codes, sw)
    step = np.where(sw == 1, 1.0, 1 / 8)
    assert np.all(np.abs(v - x) <= step / 2 + 1e-12)


def test_tail_threshold_from_histogram():
    rng = np.random.default_rng(2)
    body = rng.normal(0, 1, 20000)
    tail = rng.uniform(8, 20, 100) * rng.choice([-1, 1], 100)
    t = tail_threshold(np.concatenate([body, tail]))
    assert 2.0 < t < 8.5                                 # past the body, before the tail
    assert tail_threshold(np.zeros(10)) == 0.0


def _lanes(f):
    """Every (code, selector) lane of a format."""
    return np.arange(1 << (f.bits + 1), dtype=np.uint64)


@pytest.mark.parametrize("wa,wb,da,db", [(5, 5, 2, 2), (3, 5, 1, 3)])
def test_hdl_exhaustive_single_pairs(wa, wb, da, db):
    """Every pair of codes with every selector pair, one single-pair accumulation per cycle."""
    acc = 20
    dut = BiScaledMacPE(a_bits=wa, b_bits=wb, da=da, db=db, acc_bits=acc)
    fa, fb = BiScaledFormat(wa, 0, -da), BiScaledFormat(wb, 0, -db)
    pairs = list(itertools.product(_lanes(fa), _lanes(fb)))
    got = []

    async def drive(ctx):
        for x, y in pairs:
            ctx.set(dut.a, int(x) & ((1 << wa) - 1))
            ctx.set(dut.sw, int(x) >> wa)
            ctx.set(dut.b, int(y))
            ctx.set(dut.valid, 1)
            ctx.set(dut.first, 1)
            ctx.set(dut.last, 1)
            await ctx.tick()
        ctx.set(dut.valid, 0)

    async def collect(ctx):
        for _ in range(len(pairs) + 4):
            if ctx.get(dut.result_valid):
                got.append(ctx.get(dut.result))
            await ctx.tick()
    simulate(dut, drive, collect)
    x = np.array([p[0] for p in pairs], dtype=np.uint64)
    y = np.array([p[1] for p in pairs], dtype=np.uint64)
    xa, sx = fa.split_lane_codes(x)
    yb, sy = fb.split_lane_codes(y)
    want = biscaled_dot_codes(fa, fb, xa[:, None], sx[:, None], yb[:, None], sy[:, None])[1]
    np.testing.assert_array_equal(got, want)


def test_hdl_accumulations_match_twin():
    kind = BiScaledKind(a_bits=5, a_fine_frac_bits=2, a_wide_frac_bits=0, b_bits=4,
                        b_fine_frac_bits=3, b_wide_frac_bits=0, acc_bits=16)
    dut = kind.make_pe()
    rng = np.random.default_rng(5)
    seqs = [(rng.integers(0, 1 << 6, n), rng.integers(0, 1 << 5, n))
            for n in rng.integers(1, 14, 50)]
    got = []

    async def drive(ctx):
        for xs, ys in seqs:
            for j, (x, y) in enumerate(zip(xs, ys)):
                ctx.set(dut.a, int(x) & 31)
                ctx.set(dut.sw, int(x) >> 5)
                ctx.set(dut.b, int(y))
                ctx.set(dut.valid, 1)
                ctx.set(dut.first, int(j == 0))
                ctx.set(dut.last, int(j == len(xs) - 1))
                await ctx.tick()
        ctx.set(dut.valid, 0)

    async def collect(ctx):
        for _ in range(sum(len(s[0]) for s in seqs) + 4):
            if ctx.get(dut.result_valid):
                got.append(ctx.get(dut.result))
            await ctx.tick()
    simulate(dut, drive, collect)
    twin = kind.twin()
    want = [int(twin.tile(np.array(xs, dtype=np.uint64)[:, None],
                          np.array(ys, dtype=np.uint64)[:, None])[0, 0]) for xs, ys in seqs]
    want = [w - (1 << 16) if w >= 1 << 15 else w for w in want]
    assert got == want


@pytest.mark.parametrize("acc", [32, 17])
def test_twin_against_exact_reference(acc):
    kind = BiScaledKind(acc_bits=acc)
    rng = np.random.default_rng(acc)
    a = rng.integers(0, 1 << 7, (4, 41)).astype(np.uint64)
    b = rng.integers(0, 1 << 7, (41, 3)).astype(np.uint64)
    np.testing.assert_array_equal(kind.twin().tile(a.T, b), kind.reference(a, b))
    for wl in ("random", "extremes", "min", "relu", "zeros_a", "zeros_b"):
        a, b = kind.operands(3, 5, 23, kind=wl, rng=rng)
        np.testing.assert_array_equal(kind.twin().tile(a.T, b), kind.reference(a, b))
    a, b = kind.operands(8, 8, 64, kind="random", rng=rng)
    sw = (a >> np.uint64(6)) & 1
    assert 0 < sw.mean() < 0.3                          # some scale-wide activations


def test_config_checks():
    with pytest.raises(ConfigError, match=r"^pe\.a_wide_frac_bits: 3 is out of range; "
                                          r"allowed: -13\.\.2$"):
        BiScaledKind(a_wide_frac_bits=3)
    with pytest.raises(ConfigError, match=r"^pe\.block: 48 is not a power of two"):
        BiScaledKind(block=48)
    with pytest.raises(ConfigError, match=r"^pe\.acc_bits: 16 is out of range; allowed: 17\.\.64$"):
        BiScaledKind(acc_bits=16)
    with pytest.raises(ValueError, match=r"^da must be an integer 1\.\.16, not 0$"):
        BiScaledMacPE(da=0)


# Slow (a Verilator build): the kind's HDL stays in the default suite under Amaranth's
# simulator (the exhaustive single pairs and accumulations here, the whole core in
# tests/test_epilogue_rtl.py and tests/test_ws_engine.py).
@pytest.mark.slow
def test_preset_core_regression(tmp_path):
    """The ``biscaled`` preset through the generated core on Verilator (A selectors as the
    side-band member, B selectors above the B codes): bit-exact, cycles equal to the twin's."""
    from tessera.generators.config import load_config
    from tessera.generators.regress import default_cases, run_regression
    cfg = load_config("biscaled")
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


def test_float_gemm_through_the_driver():
    """Float tensors -> encoder -> block index lists -> decoded selectors -> lane codes -> the
    golden core (K split over RUNs): exact against the reference, and closer to the float
    product than plain fixed point of the same width at the wide scale."""
    import asyncio

    from tessera.generators.config import load_config
    from tessera.sim.biscaled import encode_operands, result_values
    from tessera.sim.core import GoldenCore, GoldenTransport
    from tessera.sim.driver import TesseraDriver
    cfg = load_config("biscaled")
    rng = np.random.default_rng(12)
    a = rng.laplace(0, 0.6, (4, 150))
    b = rng.laplace(0, 0.15, (150, 3))
    la, lb, (st_a, _) = encode_operands(cfg.pe, a, b)
    assert 0 < st_a.wide_fraction < 0.2 and st_a.effective_bits > 6

    async def body():
        drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
        await drv.connect()
        return await drv.gemm(la, lb)
    out, stats = asyncio.run(body())
    assert stats.runs >= 3
    np.testing.assert_array_equal(out, cfg.pe.reference(la, lb))
    got = result_values(cfg.pe, out)
    wa, wb = cfg.pe.a_format.wide, cfg.pe.b_format.wide
    plain = wa.value(wa.quantize_int(a)) @ wb.value(wb.quantize_int(b))
    assert np.abs(got - a @ b).mean() < 0.8 * np.abs(plain - a @ b).mean()


def test_tessera_unit_biscaled_dot(tmp_path):
    from tessera.generators.units import generate_unit
    man = generate_unit("biscaled_dot", {}, tmp_path / "u")
    assert man["latency"] == 2 and man["formats"]["a"]["d"] == 2
    assert {p["name"] for p in man["ports"]} >= {"a", "sw", "b", "result"}


def test_seed_example_through_the_core():
    """The seed's 5-bit example as a 1 x 1 x 2 GEMM on a generated core (Amaranth
    simulator): the A selector rides the side band, the B selector the bit above B."""
    from tessera.generators.assemble import build_core
    from tessera.generators.config import config_from_dict
    from tessera.sim.biscaled import encode_operands, result_values
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.pysim import run_with_driver
    fmt = {"a_bits": 5, "a_fine_frac_bits": 0, "a_wide_frac_bits": -2, "b_bits": 5,
           "b_fine_frac_bits": 0, "b_wide_frac_bits": -2}
    cfg = config_from_dict({"core": {"name": "biscaled_seed"}, "array": {"rows": 1, "cols": 1},
                            "pe": {"kind": "biscaled", "acc_bits": 16, **fmt},
                            "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 16}})
    a, b, _ = encode_operands(cfg.pe, [X], np.array(Y)[:, None], threshold_a=10.0,
                              threshold_b=10.0)

    async def body(t):
        drv = TesseraDriver(t, cfg, poll_cycles=8)
        await drv.connect()
        return await drv.gemm(a, b)
    out, _ = run_with_driver(build_core(cfg), body)
    assert int(out[0, 0]) == 212 and result_values(cfg.pe, out)[0, 0] == 212.0


def test_core_in_the_amaranth_simulator():
    """The ``biscaled`` preset's PE (Da = 3, Db = 2) in a 2 x 2 core in the Amaranth
    simulator: a ragged GEMM split over accumulating RUNs, bit-exact, cycles = golden."""
    import asyncio

    from tessera.generators.assemble import build_core
    from tessera.generators.config import config_from_dict
    from tessera.sim.core import GoldenCore, GoldenTransport
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.pysim import run_with_driver
    cfg = config_from_dict({"core": {"name": "bis_small"}, "array": {"rows": 2, "cols": 2},
                            "pe": {"kind": "biscaled", "acc_bits": 20},
                            "memory": {"a_depth": 16, "b_depth": 16, "c_depth": 16}})
    a, b = cfg.pe.operands(3, 3, 37, kind="extremes", rng=np.random.default_rng(4))

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
