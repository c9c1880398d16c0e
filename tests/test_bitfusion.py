# amaranth: UnusedElaboratable=no
"""Bit Fusion units: BitBrick, fusion unit and PE against their twins (sim/bitfusion.py), and
the twins against plain integer products; every mode exhaustively over all operand values."""

import numpy as np
import pytest
from amaranth import Elaboratable, Module, Signal
from amaranth.sim import Simulator

from tessera.generators.kinds.bitfusion import MODES, BitFusionKind
from tessera.hdl.arith.bitbrick import BRICK_MAX, BRICK_MIN, BitBrick
from tessera.hdl.arith.fusion import PRECISIONS, BitFusionPE, FusionUnit
from tessera.sim import bitfusion as bf
from tessera.sim.precision import PrecisionMode, reference_matmul
from tests.helpers import simulate

PAIRS = [(a, b) for a in (8, 4, 2) for b in (8, 4, 2)]
SIGNS = [(sa, sb) for sa in (True, False) for sb in (True, False)]


def _run_comb(dut, bench):
    """Simulate a combinational unit (no clock domain)."""
    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


def _digit_value(d, signed):
    return d - 4 if signed and d >= 2 else d


# -- BitBrick -----------------------------------------------------------------------------------
def test_bitbrick_twin_is_the_digit_product():
    """Twin vs the plain product of the digits' values (signed digit: 10 is -2, 11 is -1)."""
    for sx in (0, 1):
        for sy in (0, 1):
            x, y = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
            want = [[_digit_value(i, sx) * _digit_value(j, sy) for j in range(4)]
                    for i in range(4)]
            np.testing.assert_array_equal(bf.bitbrick(x, y, sx, sy), want)


def test_bitbrick_hdl_exhaustive():
    """All 64 inputs in the Amaranth simulator: HDL = twin, within the 5-bit range."""
    dut = BitBrick()
    seen = []

    async def bench(ctx):
        for code in range(64):
            x, y, sx, sy = code & 3, (code >> 2) & 3, (code >> 4) & 1, code >> 5
            ctx.set(dut.x, x)
            ctx.set(dut.y, y)
            ctx.set(dut.x_signed, sx)
            ctx.set(dut.y_signed, sy)
            seen.append((ctx.get(dut.p), int(bf.bitbrick(x, y, sx, sy))))
    _run_comb(dut, bench)
    got, want = zip(*seen)
    assert got == want
    assert min(got) == BRICK_MIN == -6 and max(got) == BRICK_MAX == 9
    assert dut.latency == 0


# -- modes, layout, twins -----------------------------------------------------------------------
def test_modes_and_products_per_cycle():
    """36 modes in code order; products per fusion unit and cycle as the issue lists them."""
    assert len(MODES) == 36 and MODES[0].name == "a8s_w8s" and MODES[-1].name == "a2u_w2u"
    per = {(a, b): bf.products_per_word(PrecisionMode(a, True, b, True)) for a, b in PAIRS}
    assert per == {(2, 2): 16, (4, 2): 8, (2, 4): 8, (4, 4): 4, (8, 2): 4, (2, 8): 4,
                   (8, 4): 2, (4, 8): 2, (8, 8): 1}
    kind = BitFusionKind()
    for md in MODES:
        lay = kind.layout(md.name)
        assert lay.k_per_word == per[md.a_bits, md.b_bits]
        assert (lay.a_lane_bits, lay.b_lane_bits) == (32, 32)
        assert kind.ii(md.name) == 1
    assert kind.layout() == kind.layout("a2s_w2s") and kind.mode_code(None) == 32


@pytest.mark.parametrize("a_bits,b_bits", PAIRS)
def test_slot_map_uses_every_digit_pair_once(a_bits, b_bits):
    md = PrecisionMode(a_bits, True, b_bits, True)
    slots = bf.slot_map(md)
    na, nb, n = a_bits // 2, b_bits // 2, bf.products_per_word(md)
    assert sorted(slots) == [(p, i, j) for p in range(n) for i in range(na) for j in range(nb)]


@pytest.mark.parametrize("md", MODES, ids=lambda md: md.name)
def test_slot_layout_round_trip(md):
    rng = np.random.default_rng(3)
    n = bf.products_per_word(md)
    codes = rng.integers(0, 1 << md.a_bits, (3, 5 * n)).astype(np.uint64)
    lanes = bf.pack_slots(codes, md, "a")
    assert lanes.shape == (3, 5) and int(lanes.max()) < 1 << 32
    np.testing.assert_array_equal(bf.unpack_slots(lanes, md, "a"), codes)
    codes = rng.integers(0, 1 << md.b_bits, (4, 2 * n)).astype(np.uint64)
    np.testing.assert_array_equal(bf.unpack_slots(bf.pack_slots(codes, md, "b"), md, "b"),
                                  codes)
    if n > 1:
        with pytest.raises(ValueError, match=rf"^K={n + 1} is not a multiple of {n} elements"):
            bf.pack_slots(np.zeros((1, n + 1)), md, "a")


def _sweep(md, count, offset=0):
    """Operand codes for ``count`` fusion-unit inputs in which product slot p of input t holds
    operand pair (t + p * stride + offset) mod 2**(a_bits + b_bits): over 2**(a+b) inputs
    every slot sees every pair."""
    n = bf.products_per_word(md)
    space = 1 << (md.a_bits + md.b_bits)
    stride = max(1, space // n)
    t = np.arange(offset, offset + count)[:, None]
    pair = (t + np.arange(n)[None, :] * stride) % space
    return (pair & ((1 << md.a_bits) - 1)).astype(np.uint64), \
        (pair >> md.a_bits).astype(np.uint64)


def _lanes(codes, md, side):
    """One lane per row of ``products_per_word`` element codes."""
    return bf.pack_slots(codes, md, side)[:, 0]


def _dot(md, a_codes, b_codes):
    """The plain integer dot product of each row of element codes (Python ints)."""
    av, bv = md.decode_a(a_codes), md.decode_b(b_codes)
    return np.array([sum(int(x) * int(y) for x, y in zip(ra, rb)) for ra, rb in zip(av, bv)])


@pytest.mark.parametrize("md", MODES, ids=lambda md: md.name)
def test_fusion_twin_exhaustive_vs_integer_products(md):
    """The twin's bricks, slots and shifts give the plain dot product, for every operand pair
    in every product slot."""
    space = 1 << (md.a_bits + md.b_bits)
    a, b = _sweep(md, space)
    got = bf.fusion(_lanes(a, md, "a"), _lanes(b, md, "b"), md)
    av, bv = md.decode_a(a), md.decode_b(b)
    np.testing.assert_array_equal(got, (av * bv).sum(axis=1))
    if space <= 4096:
        np.testing.assert_array_equal(got, _dot(md, a, b))
    # The result range the fusion unit's output shape was sized for.
    assert FusionUnit().result.shape().width == 17
    lo, hi = -(1 << 16), (1 << 16) - 1
    assert lo <= got.min() and got.max() <= hi


def test_fusion_twin_extremes():
    for md in MODES:
        n = bf.products_per_word(md)
        for a_val in md.a_range:
            for b_val in md.b_range:
                a = md.encode_a(np.full((1, n), a_val))
                b = md.encode_b(np.full((1, n), b_val))
                got = bf.fusion(_lanes(a, md, "a"), _lanes(b, md, "b"), md)
                assert int(got[0]) == n * a_val * b_val, md.name


def test_tile_twin_vs_plain_matmul():
    rng = np.random.default_rng(5)
    for md in MODES:
        n = bf.products_per_word(md)
        k = 3 * n
        a = md.encode_a(rng.integers(*md.a_range, endpoint=True, size=(4, k)))
        b = md.encode_b(rng.integers(*md.b_range, endpoint=True, size=(k, 3)))
        t = bf.BitFusionArrayModel(acc_bits=20, default="a2s_w2s")
        got = t.tile(bf.pack_slots(a, md, "a").T, bf.pack_slots(b.T, md, "b").T, md.name)
        np.testing.assert_array_equal(got, reference_matmul(md, a, b, 20))


# -- fusion unit HDL ----------------------------------------------------------------------------
class FusionHarness(Elaboratable):
    """A fusion unit whose ``a`` and ``b`` come from one 64-bit signal, so that one simulator
    step (one settle) evaluates one input pair."""

    def __init__(self, **kw):
        self.fu = FusionUnit(**kw)
        self.ab = Signal(64)

    def elaborate(self, platform):
        m = Module()
        m.submodules.fu = self.fu
        m.d.comb += [self.fu.a.eq(self.ab[:32]), self.fu.b.eq(self.ab[32:])]
        return m


def _set_mode(ctx, mode_port, md):
    ctx.set(mode_port.a_prec, PRECISIONS.index(md.a_bits))
    ctx.set(mode_port.b_prec, PRECISIONS.index(md.b_bits))
    ctx.set(mode_port.a_signed, md.a_signed)
    ctx.set(mode_port.b_signed, md.b_signed)


def _check_fusion_unit(plan):
    """Run ``[(mode, a codes, b codes)]`` through the combinational fusion unit; RTL = twin =
    plain dot product for every input."""
    dut = FusionHarness(stages=0)
    runs = []
    for md, a, b in plan:
        la, lb = _lanes(a, md, "a"), _lanes(b, md, "b")
        want = bf.fusion(la, lb, md)
        np.testing.assert_array_equal(want, (md.decode_a(a) * md.decode_b(b)).sum(axis=1))
        runs.append((md, [int(x) | int(y) << 32 for x, y in zip(la, lb)], want.tolist()))
    mismatches = []

    async def bench(ctx):
        for md, words, want in runs:
            _set_mode(ctx, dut.fu.mode, md)
            for w, expect in zip(words, want):
                ctx.set(dut.ab, w)
                got = ctx.get(dut.fu.result)
                if got != expect:
                    mismatches.append((md.name, w, got, expect))
    _run_comb(dut, bench)
    assert not mismatches, mismatches[:5]


@pytest.mark.parametrize("a_bits,b_bits", [p for p in PAIRS if p != (8, 8)])
def test_fusion_unit_exhaustive(a_bits, b_bits):
    """Every operand pair in every product slot, in each of the four signedness modes of this
    precision pair, on the combinational fusion unit: RTL = twin = plain dot product."""
    space = 1 << (a_bits + b_bits)
    _check_fusion_unit([(md, *_sweep(md, space)) for md in
                        (PrecisionMode(a_bits, sa, b_bits, sb) for sa, sb in SIGNS)])


def _sweep_8x8(md, n_other):
    """At 8 x 8 bits: every activation with ``n_other`` weights spread over the range, and
    every weight with as many activations (the full 65536 pairs: the slow test)."""
    others = np.linspace(0, 255, n_other).astype(np.uint64)
    every = np.arange(256, dtype=np.uint64)
    a = np.concatenate([np.repeat(every, n_other), np.tile(others, 256)])
    b = np.concatenate([np.tile(others, 256), np.repeat(every, n_other)])
    return a[:, None], b[:, None]


@pytest.mark.parametrize("sa,sb", SIGNS)
def test_fusion_unit_8x8_every_value(sa, sb):
    """8 x 8 bits: every activation value against 8 weights and every weight against 8
    activations (the ends and six values between)."""
    md = PrecisionMode(8, sa, 8, sb)
    _check_fusion_unit([(md, *_sweep_8x8(md, 8))])


@pytest.mark.slow
@pytest.mark.parametrize("sa,sb", SIGNS)
def test_fusion_unit_8x8_exhaustive(sa, sb):
    """8 x 8 bits: all 65536 operand pairs (about 15 s per signedness pair)."""
    md = PrecisionMode(8, sa, 8, sb)
    _check_fusion_unit([(md, *_sweep(md, 1 << 16))])


@pytest.mark.parametrize("stages", [1, 2])
def test_fusion_unit_pipelined_mode_changes(stages):
    """Registered fusion units: results ``stages`` cycles later, the mode may change every
    cycle (the activation half of the mode travels with the row sums)."""
    dut = FusionUnit(stages=stages)
    assert dut.latency == stages
    rng = np.random.default_rng(stages)
    seq = []
    for _ in range(300):
        md = MODES[int(rng.integers(len(MODES)))]
        n = bf.products_per_word(md)
        a = md.encode_a(rng.integers(*md.a_range, endpoint=True, size=(1, n)))
        b = md.encode_b(rng.integers(*md.b_range, endpoint=True, size=(1, n)))
        la, lb = int(_lanes(a, md, "a")[0]), int(_lanes(b, md, "b")[0])
        seq.append((md, la, lb, int(_dot(md, a, b)[0])))
    got = []

    async def drive(ctx):
        for md, la, lb, _ in seq:
            _set_mode(ctx, dut.mode, md)
            ctx.set(dut.a, la)
            ctx.set(dut.b, lb)
            await ctx.tick()

    async def collect(ctx):
        await ctx.tick().repeat(stages)
        for _ in seq:
            got.append(ctx.get(dut.result))
            await ctx.tick()
    simulate(dut, drive, collect)
    assert got == [w for *_, w in seq]


@pytest.mark.parametrize("md", [MODES[0], MODES[21], MODES[35]], ids=lambda md: md.name)
def test_fixed_mode_fusion_unit(md):
    """A fusion unit built for one mode has no mode port and computes that mode."""
    dut = FusionUnit(stages=0, fixed=(md.a_bits, md.a_signed, md.b_bits, md.b_signed))
    assert "mode" not in dut.signature.members
    a, b = _sweep(md, 64, offset=7)
    la, lb = _lanes(a, md, "a"), _lanes(b, md, "b")
    want = bf.fusion(la, lb, md)
    got = []

    async def bench(ctx):
        for x, y in zip(la, lb):
            ctx.set(dut.a, int(x))
            ctx.set(dut.b, int(y))
            got.append(ctx.get(dut.result))
    _run_comb(dut, bench)
    np.testing.assert_array_equal(got, want)


def test_fusion_unit_rejects_bad_parameters():
    with pytest.raises(ValueError, match=r"^stages must be an integer 0\.\.2, not 3$"):
        FusionUnit(stages=3)
    with pytest.raises(ValueError, match=r"^fixed must be \(a_bits, a_signed, b_bits, "
                                         r"b_signed\) with bits in 2, 4, 8, or None, not "):
        FusionUnit(fixed=(16, True, 8, True))
    with pytest.raises(ValueError, match=r"^acc_bits must be an integer 17\.\.64, not 16$"):
        BitFusionPE(modes=[(8, True, 8, True)], acc_bits=16)


# -- the PE -------------------------------------------------------------------------------------
@pytest.mark.parametrize("stages", [0, 1, 2])
def test_pe_accumulations_in_every_mode(stages):
    """BitFusionPE in the Amaranth simulator: back-to-back accumulations (a new one may
    follow the last pair at once), every mode, results ``latency`` cycles after each last
    pair, equal to the twin and to the plain integer sums."""
    kind = BitFusionKind(acc_bits=24, stages=stages)
    dut = kind.make_pe()
    assert (dut.latency, dut.ii) == (kind.latency, kind.ii()) == (stages + 2, 1)
    rng = np.random.default_rng(10 + stages)
    runs = []
    for code, md in enumerate(MODES):
        n = bf.products_per_word(md)
        for _ in range(2):
            length = int(rng.integers(1, 5))
            a = md.encode_a(rng.integers(*md.a_range, endpoint=True, size=(1, n * length)))
            b = md.encode_b(rng.integers(*md.b_range, endpoint=True, size=(n * length, 1)))
            la, lb = bf.pack_slots(a, md, "a")[0], bf.pack_slots(b.T, md, "b")[0]
            twin = kind.twin().tile(la[:, None], lb[:, None], md.name)[0, 0]
            ref = reference_matmul(md, a, b, 24)[0, 0]
            assert twin == ref
            runs.append((code, la, lb, int(ref)))
    got, lasts, valids = [], [], []
    total = sum(len(la) for _, la, _, _ in runs) + dut.latency + 3

    async def drive(ctx):
        cycle = 0
        for code, la, lb, _ in runs:
            ctx.set(dut.mode, code)
            for j in range(len(la)):
                ctx.set(dut.a, int(la[j]))
                ctx.set(dut.b, int(lb[j]))
                ctx.set(dut.valid, 1)
                ctx.set(dut.first, j == 0)
                ctx.set(dut.last, j == len(la) - 1)
                if j == len(la) - 1:
                    lasts.append(cycle)
                await ctx.tick()
                cycle += 1
        ctx.set(dut.valid, 0)

    async def collect(ctx):
        for cycle in range(total):
            if ctx.get(dut.result_valid):
                got.append(ctx.get(dut.result) & 0xFFFFFF)
                valids.append(cycle)
            await ctx.tick()
    simulate(dut, drive, collect)
    assert valids == [c + dut.latency for c in lasts]
    assert got == [w for *_, w in runs]


# -- tessera unit -------------------------------------------------------------------------------
@pytest.mark.parametrize("name,opts,widths,latency", [
    ("bitbrick", {}, {"x": 2, "y": 2, "x_signed": 1, "y_signed": 1, "p": 5}, 0),
    ("fusion_unit", {}, {"a": 32, "b": 32, "mode": 6, "result": 17}, 1),
    ("fusion_unit", {"mode": "a4s_w2u", "stages": 2}, {"a": 32, "b": 32, "result": 17}, 2),
    ("bitfusion_pe", {"acc_bits": 24, "stages": 0}, {"a": 32, "b": 32, "mode": 6,
                                                      "result": 24}, 2),
])
def test_unit_manifests(tmp_path, name, opts, widths, latency):
    from tessera.generators.units import generate_unit
    m = generate_unit(name, opts, tmp_path / name)
    assert m["latency"] == latency and m["initiation_interval"] == 1
    ports = {p["name"]: p["width"] for p in m["ports"]}
    assert {k: ports.get(k) for k in widths} == widths
    if name == "fusion_unit":
        assert ("mode" in ports) == ("mode" not in opts)    # FusionMode: 6 bits
        assert set(m["formats"]["modes"]) == ({opts["mode"]} if "mode" in opts
                                              else {md.name for md in MODES})
    assert (tmp_path / name / m["verilog"]).is_file()


def test_unit_lint_and_bad_mode(tmp_path, capsys):
    from tessera.generators.cli import main
    assert main(["unit", "fusion_unit", "--mode", "a2u_w8s", "-o", str(tmp_path / "fu"),
                 "--lint"]) == 0
    assert "lint: clean" in capsys.readouterr().out
    assert main(["unit", "fusion_unit", "--mode", "a3s_w8s", "-o", str(tmp_path / "x")]) == 2
    assert "--mode 'a3s_w8s' is not allowed; allowed: 'runtime', 'a8s_w8s'" in \
        capsys.readouterr().err
