# amaranth: UnusedElaboratable=no
"""The multi-precision PE (hdl/arith/multiprec.py) against its twin (sim/multiprec.py) and the
twin against plain integer products; every mode over all operand values."""

import numpy as np
import pytest
from amaranth import Elaboratable, Module, Signal
from amaranth.sim import Simulator

from tessera.generators.kinds.multiprec import MODES, MultiPrecKind
from tessera.hdl.arith.multiprec import MultiPrecPE, NibbleMultiplier
from tessera.sim import multiprec as mp
from tessera.sim.precision import PrecisionMode, reference_matmul
from tests.helpers import simulate

PAIRS = [(8, 8), (8, 4), (4, 8), (4, 4)]
SIGNS = [(sa, sb) for sa in (True, False) for sb in (True, False)]


def test_modes_and_initiation_intervals():
    """16 modes; II 1 at 4 x 4 bits, 2 at 8 x 4 and 4 x 8, 4 at 8 x 8; one latency."""
    kind = MultiPrecKind()
    assert len(MODES) == 16 and kind.modes[0] == "a8s_w8s" and kind.modes[-1] == "a4u_w4u"
    iis = {(md.a_bits, md.b_bits): kind.ii(md.name) for md in MODES}
    assert iis == {(8, 8): 4, (8, 4): 2, (4, 8): 2, (4, 4): 1}
    assert kind.ii() == 4 and kind.mode_code(None) == 0
    pe = MultiPrecPE(modes=[(md.a_bits, md.a_signed, md.b_bits, md.b_signed) for md in MODES])
    assert pe.iis == tuple(kind.ii(m) for m in kind.modes)
    assert (pe.latency, pe.ii) == (kind.latency, kind.ii()) == (6, 4)
    for md in MODES:
        lay = kind.layout(md.name)
        assert (lay.a_elems, lay.a_bits, lay.b_bits, lay.k_per_word) == \
            (1, md.a_bits, md.b_bits, 1)


def test_nibble_twin_is_the_nibble_product():
    for sx in (False, True):
        for sy in (False, True):
            x, y = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
            xv = np.where(sx & (x >= 8), x - 16, x)
            yv = np.where(sy & (y >= 8), y - 16, y)
            np.testing.assert_array_equal(mp.nibble_product(x, y, sx, sy), xv * yv)


def test_nibble_multiplier_hdl_exhaustive():
    dut = NibbleMultiplier()
    seen = []

    async def bench(ctx):
        for code in range(1024):
            x, y, sx, sy = code & 15, (code >> 4) & 15, (code >> 8) & 1, code >> 9
            ctx.set(dut.x, x)
            ctx.set(dut.y, y)
            ctx.set(dut.x_signed, sx)
            ctx.set(dut.y_signed, sy)
            seen.append((ctx.get(dut.p), int(mp.nibble_product(x, y, sx, sy))))
    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    got, want = zip(*seen)
    assert got == want and min(got) == -120 and max(got) == 225


@pytest.mark.parametrize("md", MODES, ids=lambda md: md.name)
def test_twin_exhaustive_vs_integer_products(md):
    """The nibble decomposition gives the plain product for every operand pair."""
    a, b = np.meshgrid(np.arange(1 << md.a_bits), np.arange(1 << md.b_bits), indexing="ij")
    got = mp.mac(a[..., None], b[..., None], md)
    np.testing.assert_array_equal(got, md.decode_a(a) * md.decode_b(b))
    assert mp.nibble_steps(md)[0] == (0, 0) and len(mp.nibble_steps(md)) == mp.mode_ii(md)


def test_tile_twin_vs_plain_matmul():
    rng = np.random.default_rng(2)
    for md in MODES:
        a = md.encode_a(rng.integers(*md.a_range, endpoint=True, size=(3, 21)))
        b = md.encode_b(rng.integers(*md.b_range, endpoint=True, size=(21, 4)))
        got = mp.MultiPrecArrayModel(acc_bits=19, default="a8s_w8s").tile(a.T, b, md.name)
        np.testing.assert_array_equal(got, reference_matmul(md, a, b, 19))


def _drive(dut, runs):
    """Drive ``runs`` = [(mode code, a codes, b codes)] as back-to-back accumulations, a pair
    every ii(mode) cycles (the next accumulation ii cycles after the last pair); return the
    results and check that each comes ``latency`` cycles after its last pair. The mode
    changes only after the pipeline has drained, as between two RUNs (PE contract: the mode
    is held while pairs are in flight). One testbench drives and samples (fewer simulator
    wake-ups than two)."""
    iis, lat = dut.iis, dut.latency
    schedule, mode = [], None      # per cycle: (mode, a, b, first, last) or None (idle)
    for code, a, b in runs:
        if code != mode and mode is not None:
            schedule += [(mode, None)] * lat
        mode = code
        for j in range(len(a)):
            schedule.append((code, (int(a[j]), int(b[j]), j == 0, j == len(a) - 1)))
            schedule += [(code, None)] * (iis[code] - 1)
    schedule += [(mode, None)] * (lat + 2)
    lasts = [t for t, (_, p) in enumerate(schedule) if p and p[3]]
    got, valids = [], []

    async def bench(ctx):
        for cycle, (code, pair) in enumerate(schedule):
            ctx.set(dut.mode, code)
            if pair:
                x, y, first, last = pair
                ctx.set(dut.a, x)
                ctx.set(dut.b, y)
                ctx.set(dut.first, first)
                ctx.set(dut.last, last)
            ctx.set(dut.valid, pair is not None)
            if ctx.get(dut.result_valid):
                got.append(ctx.get(dut.result))
                valids.append(cycle)
            await ctx.tick()
    simulate(dut, bench)
    assert valids == [c + lat for c in lasts], "result_valid not at the latency"
    return got


class PEBank(Elaboratable):
    """``n`` PEs sharing mode and pair control, each fed its own 16 bits of ``ab`` (a, b): one
    simulated cycle advances n operand streams (the simulator's cost per cycle is partly
    fixed)."""

    def __init__(self, kind, n):
        self.pes = [kind.make_pe() for _ in range(n)]
        self.ab = Signal(16 * n)
        self.mode = Signal.like(self.pes[0].mode)
        self.valid = Signal()

    def elaborate(self, platform):
        m = Module()
        for i, pe in enumerate(self.pes):
            m.submodules[f"pe{i}"] = pe
            lo = 16 * i
            m.d.comb += [pe.a.eq(self.ab[lo:lo + 8]), pe.b.eq(self.ab[lo + 8:lo + 16]),
                         pe.mode.eq(self.mode), pe.valid.eq(self.valid),
                         pe.first.eq(1), pe.last.eq(1)]
        return m


def _every_pair(kind, plan, n=16):
    """``plan`` = [(mode, a codes, b codes)]: each pair its own accumulation (its result is
    its product), a new one every ii(mode) cycles on each of ``n`` PEs; returns the results
    in plan order, checking each arrives ``latency`` cycles after its pair."""
    dut = PEBank(kind, n)
    pe0 = dut.pes[0]
    lat = pe0.latency
    schedule = []                  # per cycle: (mode code, ab or None)
    for md, a, b in plan:
        code, ii = kind.mode_code(md.name), kind.ii(md.name)
        pad = -len(a) % n
        a, b = np.concatenate([a, np.zeros(pad, int)]), np.concatenate([b, np.zeros(pad, int)])
        for t in range(0, len(a), n):
            ab = 0
            for i in range(n):
                ab |= (int(a[t + i]) | int(b[t + i]) << 8) << (16 * i)
            schedule += [(code, ab)] + [(code, None)] * (ii - 1)
        schedule += [(code, None)] * lat           # drain before the mode changes
    issued = [t for t, (_, ab) in enumerate(schedule) if ab is not None]
    got, valids = [], []

    async def bench(ctx):
        for cycle, (code, ab) in enumerate(schedule):
            ctx.set(dut.mode, code)
            ctx.set(dut.valid, ab is not None)
            if ab is not None:
                ctx.set(dut.ab, ab)
            if ctx.get(pe0.result_valid):
                got.append([ctx.get(pe.result) for pe in dut.pes])
                valids.append(cycle)
            await ctx.tick()
    simulate(dut, bench)
    assert valids == [t + lat for t in issued], "result_valid not at the latency"
    out, pos = [], 0
    for _, a, _ in plan:
        rows = -(-len(a) // n)
        out += [v for row in got[pos:pos + rows] for v in row][:len(a)]
        pos += rows
    return out


@pytest.mark.parametrize("a_bits,b_bits", PAIRS)
def test_pe_every_operand_pair(a_bits, b_bits):
    """Each operand pair as an accumulation of its own (result = the product), in the four
    signedness modes of this precision pair: a new accumulation every ii cycles, so the PE's
    result hold and the delay that equalises latency across modes are exercised. At 8 x 8
    bits the default suite takes every activation against 8 weights (the ends and six values
    between) and every weight against 8 activations; the slow test takes all 65536 pairs."""
    kind = MultiPrecKind(acc_bits=20)
    plan, want = [], []
    for sa, sb in SIGNS:
        md = PrecisionMode(a_bits, sa, b_bits, sb)
        if (a_bits, b_bits) == (8, 8):
            others = np.linspace(0, 255, 8).astype(np.int64)
            every = np.arange(256)
            a = np.concatenate([np.repeat(every, 8), np.tile(others, 256)])
            b = np.concatenate([np.tile(others, 256), np.repeat(every, 8)])
        else:
            a, b = (g.ravel() for g in np.meshgrid(np.arange(1 << a_bits),
                                                   np.arange(1 << b_bits), indexing="ij"))
        prods = md.decode_a(a) * md.decode_b(b)
        np.testing.assert_array_equal(mp.mac(a[:, None], b[:, None], md), prods)
        plan.append((md, a, b))
        want += list(prods)
    assert _every_pair(kind, plan) == want


@pytest.mark.slow
@pytest.mark.parametrize("sa,sb", SIGNS)
def test_pe_8x8_exhaustive(sa, sb):
    kind = MultiPrecKind(acc_bits=20)
    md = PrecisionMode(8, sa, 8, sb)
    a, b = (g.ravel() for g in np.meshgrid(np.arange(256), np.arange(256), indexing="ij"))
    assert _every_pair(kind, [(md, a, b)]) == list(md.decode_a(a) * md.decode_b(b))


def test_pe_accumulations_mode_changes():
    """Random accumulations in random modes back to back (the mode changes right after a
    last pair): RTL = twin = plain sums, wrapped to acc_bits."""
    kind = MultiPrecKind(acc_bits=18)
    dut = kind.make_pe()
    rng = np.random.default_rng(4)
    runs, want = [], []
    for _ in range(60):
        md = MODES[int(rng.integers(len(MODES)))]
        n = int(rng.integers(1, 9))
        a = md.encode_a(rng.integers(*md.a_range, endpoint=True, size=(1, n)))
        b = md.encode_b(rng.integers(*md.b_range, endpoint=True, size=(n, 1)))
        twin = kind.twin().tile(a.T, b, md.name)[0, 0]
        ref = reference_matmul(md, a, b, 18)[0, 0]
        assert twin == ref
        runs.append((kind.mode_code(md.name), a[0], b[:, 0]))
        want.append(int(ref))
    got = [v & 0x3FFFF for v in _drive(dut, runs)]
    assert got == want


def test_pe_rejects_bad_parameters():
    with pytest.raises(ValueError, match=r"^acc_bits must be an integer 18\.\.64, not 65$"):
        MultiPrecPE(modes=[(8, True, 8, True)], acc_bits=65)
    with pytest.raises(ValueError, match=r"^a mode must be \(a_bits, a_signed, b_bits, "
                                         r"b_signed\) with bits 4 or 8, not \(2, "):
        MultiPrecPE(modes=[(2, True, 8, True)])


def test_unit_manifest_and_lint(tmp_path, capsys):
    from tessera.generators.cli import main
    from tessera.generators.units import generate_unit
    m = generate_unit("multiprec_pe", {"acc_bits": 24}, tmp_path / "pe")
    assert (m["latency"], m["initiation_interval"]) == (6, 4)
    ports = {p["name"]: p["width"] for p in m["ports"]}
    assert (ports["a"], ports["b"], ports["mode"], ports["result"]) == (8, 8, 4, 24)
    assert m["formats"]["modes"]["a4u_w8s"]["ii"] == 2
    assert main(["unit", "multiprec_pe", "-o", str(tmp_path / "lint"), "--lint"]) == 0
    assert "lint: clean" in capsys.readouterr().out
