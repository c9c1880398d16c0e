"""The ternary epilogue (bias, then the k-bit bounded-ReLU activation quantizer of
`tessera.sim.ternary` with a per-channel step) and the tree engine's epilogue path.

Tiers: the twin (`tessera.sim.ternary_epilogue`) against the independent Fraction reference
(`tessera.sim.ternary_epilogue_ref`, via `tessera.sim.ternary.quantize_act`), exhaustively
over 8-bit accumulators x every shift x corner multipliers, and seeded random plus corners at
wider accumulators; the HDL lane against the twin (Amaranth simulator); the descriptor's
parameter packing and user parameters; the tree cores (dense and run-length) on the golden
core against the reference and on the RTL (Amaranth simulator) bit- and cycle-exact against
the golden core, with the argument checks and the epilogue off by default.
"""

import asyncio
from fractions import Fraction

import numpy as np
import pytest

from tessera.generators.assemble import build_core
from tessera.generators.config import config_from_dict, load_config
from tessera.generators.kinds.epilogue import TernaryEpilogueSpec
from tessera.hdl.arith.ternary_epilogue import TernaryEpilogue
from tessera.hdl.ctrl.protocol import Err, epilogue_caps
from tessera.sim.core import GoldenCore, GoldenTransport
from tessera.sim.driver import TesseraDriver, TesseraError
from tessera.sim.engines.model import evaluate
from tessera.sim.intmac import to_codes
from tessera.sim.layers import LayerError, layer_from_dict
from tessera.sim.lowering import case_bias, layer_cases, requant_params, run_layer
from tessera.sim.pysim import run_with_driver
from tessera.sim.ternary import hw_encode, quantize_act_fixed
from tessera.sim.ternary_epilogue import (MULT_BITS, scale_to_mult_shift, shift_bits_for,
                                          ternary_epilogue)
from tessera.sim.ternary_epilogue_ref import ref_ternary_epilogue

from helpers import run_lanes, simulate


MULTS = [0, 1, 2, 3, 5, 255, 256, 257, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF]


def _ints(rng, lo, hi, n):
    """Uniform integers lo..hi (a range possibly wider than int64), as an object array."""
    span = hi - lo + 1
    words = rng.integers(0, 1 << 62, (n, 2)).astype(object)
    return np.array([lo + int((int(a) << 62 | int(b)) % span) for a, b in words], dtype=object)


def _both(acc, bias, mult, shift, acc_bits, act_bits):
    got = ternary_epilogue(acc, bias, mult, shift, acc_bits=acc_bits, act_bits=act_bits)
    want = ref_ternary_epilogue(acc, bias, mult, shift, acc_bits=acc_bits, act_bits=act_bits)
    return got, want


# -- twin against the reference ----------------------------------------------------------------
def test_twin_exhaustive_8bit_against_reference():
    """Every 8-bit accumulator x 4 biases (wrapping ones included) x 12 multipliers x every
    shift field value 0..31, into 8-bit codes; and every accumulator x multiplier x shift into
    1- and 16-bit codes."""
    acc, bias, mult, shift = np.meshgrid(np.arange(-128, 128), [0, -128, 127, 37], MULTS,
                                         np.arange(32), indexing="ij")
    got, want = _both(acc, bias, mult, shift, 8, 8)
    np.testing.assert_array_equal(got, want)
    assert set(np.unique(got).tolist()) == set(range(256))
    acc, mult, shift = np.meshgrid(np.arange(-128, 128), MULTS, np.arange(32), indexing="ij")
    for k in (1, 16):
        got, want = _both(acc, 0, mult, shift, 8, k)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("acc_bits,act_bits", [(16, 8), (24, 8), (32, 8), (32, 4), (45, 2),
                                               (46, 8), (48, 16), (64, 8), (64, 1)])
def test_twin_random_and_corners_against_reference(acc_bits, act_bits):
    """Seeded random operands (shifts near the accumulator width, where outputs spread) and
    every combination of corner accumulators, biases, multipliers and shifts (0, 1, the
    largest useful shift ``acc_bits + 16`` and the field's maximum)."""
    rng = np.random.default_rng(acc_bits * 100 + act_bits)
    half = 1 << (acc_bits - 1)
    n = 4000
    acc = _ints(rng, -half, half - 1, n)
    bias = _ints(rng, -half, half - 1, n)
    mult = rng.integers(0, 1 << MULT_BITS, n)
    smax = (1 << shift_bits_for(acc_bits)) - 1
    shift = np.where(rng.random(n) < 0.7, rng.integers(acc_bits - 8, acc_bits + 17, n),
                     rng.integers(0, smax + 1, n))
    got, want = _both(acc, bias, mult, shift, acc_bits, act_bits)
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(got)) > min(3, 1 << act_bits) - 1
    corner_a = [-half, -half + 1, -1, 0, 1, half - 1]
    corner_s = sorted({0, 1, acc_bits - 1, acc_bits, acc_bits + MULT_BITS - 1,
                       acc_bits + MULT_BITS, smax})
    acc, bias, mult, shift = (g.astype(object) for g in np.meshgrid(
        np.array(corner_a, dtype=object), np.array([0, -half, half - 1, 1], dtype=object),
        np.array(MULTS, dtype=object), np.array(corner_s, dtype=object), indexing="ij"))
    got, want = _both(acc, bias, mult, shift, acc_bits, act_bits)
    np.testing.assert_array_equal(got, want)


def test_exact_ties_round_up():
    """y exactly k + 1/2 goes up (half up, not numpy's half to even); y = -1/2 is clipped."""
    # y = s * mult / 2**shift with mult = 1, shift = 1: s = 2k + 1 gives k + 1/2.
    s = np.array([-1, 1, 3, 5, 509, 511])
    got, want = _both(s, 0, 1, 1, 16, 8)
    np.testing.assert_array_equal(got, [0, 1, 2, 3, 255, 255])
    np.testing.assert_array_equal(got, want)


def test_toolkit_special_case():
    """With ``mult = 2**k - 1`` and ``shift = f`` the rule is the toolkit's
    ``quantize_act_fixed(s, f, k)`` (the accumulator read as ``x`` with f fraction bits)."""
    rng = np.random.default_rng(3)
    for k, f in ((8, 8), (4, 12), (1, 0), (16, 20)):
        s = rng.integers(-(1 << 20), 1 << 20, 3000)
        s[:5] = [0, 1 << f, (1 << f) - 1, -1, 1]
        got = ternary_epilogue(s, 0, (1 << k) - 1, f, acc_bits=32, act_bits=k)
        np.testing.assert_array_equal(got, quantize_act_fixed(s, f, k))


def test_docs_worked_example():
    """docs/epilogue.md: acc = 1000, bias = -24, scale 0.0123 into 8-bit codes."""
    mult, shift = scale_to_mult_shift(0.0123, acc_bits=32)
    assert (mult, shift) == (51590, 22)
    assert 976 * mult == 50351840
    assert ternary_epilogue(1000, -24, mult, shift, acc_bits=32, act_bits=8) == 12
    assert Fraction(976 * mult, 1 << 22) == Fraction(50351840, 4194304)       # 12.0046...
    assert Fraction(29976 * mult, 1 << 22) > 368 and \
        ternary_epilogue(30000, -24, mult, shift, acc_bits=32, act_bits=8) == 255
    assert (50351840 + (1 << 21)) >> 22 == 12
    assert ternary_epilogue(-100, -24, mult, shift, acc_bits=32, act_bits=8) == 0


def test_scale_to_mult_shift():
    assert scale_to_mult_shift(1, acc_bits=32) == (32768, 15)
    assert scale_to_mult_shift(0.5, acc_bits=32) == (32768, 16)
    assert scale_to_mult_shift(Fraction(3, 1 << 40), acc_bits=32) == (768, 48)   # 3 << 8
    assert scale_to_mult_shift(65535, acc_bits=32) == (65535, 0)
    m, s = scale_to_mult_shift(1 / 255, acc_bits=32)
    assert m < 1 << 16 and abs(Fraction(m, 1 << s) - Fraction(1, 255)) <= Fraction(1, 1 << s)
    for bad, msg in ((0, "positive"), (-1.0, "positive"), (float("nan"), "finite"),
                     (65535.5, "too large"), (2.0 ** -60, "too small"), ("1", "positive")):
        with pytest.raises(ValueError, match=msg):
            scale_to_mult_shift(bad, acc_bits=32)


def test_twin_rejects_out_of_range_inputs():
    with pytest.raises(ValueError, match=r"^acc must hold integers -128\.\.127, not 128$"):
        ternary_epilogue(128, 0, 1, 0, acc_bits=8, act_bits=8)
    with pytest.raises(ValueError, match=r"^mult must hold integers 0\.\.65535, not -1$"):
        ternary_epilogue(0, 0, -1, 0, acc_bits=8, act_bits=8)
    with pytest.raises(ValueError, match=r"^shift must hold integers 0\.\.31, not 32$"):
        ternary_epilogue(0, 0, 1, 32, acc_bits=8, act_bits=8)


# -- the HDL lane against the twin ----------------------------------------------------------------
def run_hdl(acc_bits, act_bits, cols, gaps):
    dut = TernaryEpilogue(acc_bits=acc_bits, act_bits=act_bits)
    # Inputs are 0 between words: the unit samples them with valid only.
    return run_lanes(dut, ["acc", "bias", "mult", "shift"], cols, gaps, zero_gaps=True)

@pytest.mark.parametrize("acc_bits,act_bits", [(8, 8), (24, 8), (32, 4), (48, 16), (64, 1)])
def test_hdl_matches_twin(acc_bits, act_bits):
    rng = np.random.default_rng(acc_bits + act_bits)
    half = 1 << (acc_bits - 1)
    n = 300
    smax = (1 << shift_bits_for(acc_bits)) - 1
    acc = _ints(rng, -half, half - 1, n)
    bias = _ints(rng, -half, half - 1, n)
    mult = rng.integers(0, 1 << MULT_BITS, n).astype(object)
    shift = np.where(rng.random(n) < 0.7, rng.integers(acc_bits - 8, acc_bits + 17, n),
                     rng.integers(0, smax + 1, n)).astype(object)
    corner = np.array([[a, b, mu, s] for a in (-half, -1, 0, 1, half - 1) for b in (0, -half)
                       for mu in (0, 1, 0xFFFF) for s in (0, 1, acc_bits + 15, smax)],
                      dtype=object).T
    cols = [np.concatenate([c, k]) for c, k in zip((acc, bias, mult, shift), corner)]
    n = len(cols[0])
    gaps = np.where(rng.random(n) < 0.8, 0, rng.integers(1, 4, n))
    want = ternary_epilogue(*cols, acc_bits=acc_bits, act_bits=act_bits)
    np.testing.assert_array_equal(run_hdl(acc_bits, act_bits, cols, gaps), want)


def test_hdl_latency_members_and_errors():
    dut = TernaryEpilogue(acc_bits=32, act_bits=8)
    assert dut.latency == 4 == TernaryEpilogueSpec(32, 8).latency
    assert (dut.shift_bits, dut.mult_bits) == (6, 16)
    seen = []

    async def bench(ctx):
        for t in range(10):
            ctx.set(dut.valid, int(t in (1, 2)))
            ctx.set(dut.acc, 300 * t)
            ctx.set(dut.mult, 1)
            ctx.set(dut.shift, 1)
            if ctx.get(dut.out_valid):
                seen.append((t, ctx.get(dut.out)))
            await ctx.tick()
    simulate(dut, bench)
    assert seen == [(5, 150), (6, 255)]
    with pytest.raises(ValueError, match=r"^acc_bits must be an integer 8\.\.64, not 7$"):
        TernaryEpilogueSpec(7, 8)
    with pytest.raises(ValueError, match=r"^act_bits must be an integer 1\.\.16, not 17$"):
        TernaryEpilogueSpec(32, 17)


# -- the descriptor --------------------------------------------------------------------------------
@pytest.mark.parametrize("acc_bits,lanes,lane_bits", [(8, 1, 29), (24, 1, 46), (32, 1, 54),
                                                      (41, 1, 63), (42, 1, 64), (43, 2, 43),
                                                      (64, 2, 64)])
def test_spec_layout_and_pack_roundtrip(acc_bits, lanes, lane_bits):
    e = TernaryEpilogueSpec(acc_bits, 8)
    assert (e.lanes_per_channel, e.lane_bits) == (lanes, lane_bits)
    assert e.capabilities == ("bias", "ternary_quantizer")
    assert epilogue_caps(e) == ("bias", "ternary_quantizer")
    assert [f.scope for f in e.param_fields] == ["channel"] * 3 and not e.run_fields
    rng = np.random.default_rng(acc_bits)
    half = 1 << (acc_bits - 1)
    b = np.array([-half, half - 1, 0, -1, 5])
    mu = np.array([0, 0xFFFF, 1, 77, 3])
    sh = np.array([0, (1 << e.shift_bits) - 1, 1, acc_bits, 9])
    lanes_c = e.pack_params(b, mu, sh)
    assert lanes_c.shape == (5 * lanes,) and lanes_c.max() < (1 << lane_bits)
    for got, want in zip(e.unpack_params(lanes_c), (b, mu, sh)):
        np.testing.assert_array_equal(got, want)
    acc = rng.integers(-100, 100, (3, 5))
    np.testing.assert_array_equal(
        e.apply_codes(to_codes(acc, acc_bits),
                      dict(zip(("bias", "mult", "shift"), e.unpack_params(lanes_c))), {}),
        ternary_epilogue(acc, b, mu, sh, acc_bits=acc_bits, act_bits=8))


def test_user_params():
    e = TernaryEpilogueSpec(32, 8, scale_frac=8)
    p = e.user_params({}, None, 3)
    assert p["mult"].tolist() == [1] * 3 and p["shift"].tolist() == [8] * 3
    assert p["bias"].tolist() == [0] * 3
    p = e.user_params({"scale": [0.5, 1, 2]}, [1, 2, 3], 3)
    assert p["mult"].tolist() == [32768] * 3 and p["shift"].tolist() == [16, 15, 14]
    p = e.user_params({"mult": 3, "shift": 4}, np.array([-1, 0, 1]), 3)
    assert p["mult"].tolist() == [3] * 3 and p["bias"].tolist() == [-1, 0, 1]
    for ep, bias, msg in (({"zero_point": 1}, None, "unknown keys"),
                          ({"scale": 1, "mult": 1}, None, "not both"),
                          ({"mult": 1}, None, "go together"),
                          ({"mult": 1 << 16, "shift": 0}, None, "epilogue.mult"),
                          ({"mult": 1, "shift": 64}, None, "epilogue.shift"),
                          ({"scale": [1, 2]}, None, "1 or 3 values"),
                          ({"scale": -1}, None, "positive"),
                          ({}, [0.5, 0, 0], "bias"), ({}, [1 << 31, 0, 0], "bias"),
                          ({}, [0, 0], "bias")):
        with pytest.raises(LayerError, match=msg):
            e.user_params(ep, bias, 3)


# -- the tree cores --------------------------------------------------------------------------------
def _cfg(encoding, *, p_depth=8, inputs=4, outputs=2, depth=64, acc_bits=32, act_bits=8,
         z_bits=3):
    array = {"kind": "tree", "encoding": encoding, "inputs": inputs, "scales": 64,
             "z_bits": z_bits}
    if encoding == "dense":
        array["outputs"] = outputs
    mem = {"a_depth": depth, "b_depth": depth, "c_depth": depth}
    if p_depth:
        mem["p_depth"] = p_depth
    return config_from_dict({"core": {"name": "tern_epi"}, "array": array,
                             "pe": {"kind": "ternary", "acc_bits": acc_bits,
                                    "act_bits": act_bits},
                             "memory": mem})


def _layer_run(drv, layer, x, w, kw):
    async def go():
        await drv.connect()
        return await run_layer(drv, layer, x, w, raw=True, **kw)
    return go()


def _cases(cfg):
    out = []
    for case in [c for c in layer_cases(cfg) if "epilogue" in c]:
        layer = layer_from_dict(case["layer"])
        x, w = cfg.engine.layer_operands(layer, case["input"], seed=case["seed"])
        out.append((case, layer, x, w, {"epilogue": case["epilogue"],
                                        "bias": case_bias(cfg, layer, case)}))
    return out


@pytest.mark.parametrize("encoding", ["dense", "rle"])
def test_geometry_args_and_info(encoding):
    cfg = _cfg(encoding)
    g = cfg.geometry
    epi = cfg.engine.epilogue()
    assert isinstance(epi, TernaryEpilogueSpec)
    assert [s.name for s in g.stores] == ["a", "w", "s", "c", "p", "r"]
    pch = 2 if encoding == "dense" else 1
    assert (g.store("p").lanes, g.store("p").lane_bits, g.store("p").depth) == \
        (pch * epi.lanes_per_channel, epi.lane_bits, 8)
    assert (g.store("r").lanes, g.store("r").lane_bits) == (g.store("c").lanes, 8)
    assert [s.name for s in g.result_stores] == ["c", "r"]
    names = [f.name for f in cfg.engine.args().fields]
    assert names[-1] == "p_base" and "bit 1: epilogue" in cfg.engine.args().fields[-2].doc
    assert cfg.core_info().epilogue == ("bias", "ternary_quantizer")
    t = cfg.engine.timing()
    assert t["epilogue"]["latency"] == 4
    if encoding == "dense":
        env = {"m": 2, "n_tiles": 1, "k": 3, "accumulate": 0}
        assert evaluate(t["run_cycles"], {**env, "epilogue": 1}) == \
            evaluate(t["run_cycles"], {**env, "epilogue": 0}) + 4


@pytest.mark.parametrize("preset", ["ternary", "ternary-rle"])
def test_epilogue_off_by_default(preset):
    """The presets build no epilogue: four stores, no p_base, the flag refused, INFO says
    none, the cycle model has no epilogue term."""
    cfg = load_config(preset)
    assert cfg.engine.epilogue() is None
    assert [s.name for s in cfg.geometry.stores] == ["a", "w", "s", "c"]
    assert "p_base" not in [f.name for f in cfg.engine.args().fields]
    assert cfg.core_info().epilogue == ()
    assert "epilogue" not in str(cfg.engine.timing())
    assert cfg.pe.epilogue() is not None        # the kind has one; the core builds it on ask


@pytest.mark.parametrize("encoding", ["dense", "rle"])
def test_layer_cases_on_golden_core(encoding):
    """The example cases through the golden core equal the reference on the engine's layer
    reference; outputs are activation codes that spread over the range."""
    cfg = _cfg(encoding)
    epi = cfg.engine.epilogue()
    seen = set()
    cases = _cases(cfg)
    assert len(cases) == 3
    for case, layer, x, w, kw in cases:
        drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
        got, st = asyncio.run(_layer_run(drv, layer, x, w, kw))
        acc = cfg.engine.layer_reference(layer, x, w, k_split=st.k_split)
        params = requant_params(cfg.engine, kw["epilogue"], kw["bias"], acc.shape[1])
        np.testing.assert_array_equal(got, epi.reference_codes(acc, params),
                                      err_msg=case["name"])
        seen.update(np.unique(got).tolist())
        vals = epi.decode(got)
        cfg.pe.encode(vals, operand="a")            # the next layer's activation codes
    assert 0 in seen and 255 in seen and len(seen) > 40


def test_layer_with_k_split_and_groups_on_golden_core():
    """Small stores: K split into accumulating RUNs (the epilogue on the last), more n-groups
    than the parameter store holds at once."""
    for encoding in ("dense", "rle"):
        cfg = _cfg(encoding, p_depth=2, depth=16)
        epi = cfg.engine.epilogue()
        layer = layer_from_dict({"type": "Dense", "in_features": 90, "out_features": 7})
        x, w = cfg.engine.layer_operands(layer, (5, 90), seed=4)
        bias = np.arange(7) * 1_000_000
        kw = {"epilogue": {"scale": 2e-6}, "bias": bias}
        drv = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
        got, st = asyncio.run(_layer_run(drv, layer, x, w, kw))
        assert st.runs > 4 and st.k_split < 90
        acc = cfg.engine.layer_reference(layer, x, w, k_split=st.k_split)
        params = requant_params(cfg.engine, kw["epilogue"], bias, 7)
        np.testing.assert_array_equal(got, epi.reference_codes(acc, params))


@pytest.mark.parametrize("encoding", ["dense", "rle"])
def test_layer_cases_rtl_equals_golden(encoding):
    """The example cases on the RTL (Amaranth simulator): outputs and every RUN's cycles
    equal the golden core's."""
    cfg = _cfg(encoding)
    for case, layer, x, w, kw in _cases(cfg):
        got, st = run_with_driver(build_core(cfg), lambda t: _layer_run(
            TesseraDriver(t, cfg), layer, x, w, kw))
        gold, gst = asyncio.run(_layer_run(TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg),
                                           layer, x, w, kw))
        np.testing.assert_array_equal(got, gold, err_msg=case["name"])
        assert st.run_cycles == gst.run_cycles, case["name"]


async def _commands(drv, script):
    out = []
    await drv.connect()
    for step in script:
        if step[0] == "write":
            await drv.write(step[1], step[2], step[3])
        elif step[0] == "run":
            try:
                out.append(("cycles", await drv.run(**step[1])))
            except TesseraError as e:
                out.append(("error", e.code))
        else:
            out.append(("read", (await drv.read(step[1], step[2], step[3])).tolist()))
    return out


def _rtl_and_golden(cfg, script):
    rtl = run_with_driver(build_core(cfg), lambda t: _commands(TesseraDriver(t, cfg), script))
    gold = asyncio.run(_commands(TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg), script))
    return rtl, gold


def test_rle_streams_with_epilogue_rtl_equals_golden():
    """Hand-made streams with the epilogue flag (rows shorter than the lanes, a stream that
    ends early, one that runs past n, accumulation into the epilogue, a p_base other than 0):
    store R, store C and cycles on the RTL equal the golden core's."""
    cfg = _cfg("rle")
    epi = cfg.engine.epilogue()
    rng = np.random.default_rng(11)
    k = 5
    acts = rng.integers(0, 256, (2 * k, 4))
    scales = np.stack([rng.integers(1, 300, 8), rng.integers(1, 300, 8)], axis=1)
    params = epi.pack_params(rng.integers(-3000, 3000, 8), rng.integers(1, 1 << 16, 8),
                             rng.integers(12, 20, 8)).reshape(8, 1)
    wt = np.array([[1, 0, 0, 0, 3], [0, 0, 0, 0, 0], [3, 1, 0, 1, 0]])
    streams = [hw_encode(wt, 3), hw_encode(wt, 3, min_row_entries=4),
               np.array([1 | 2 << 2, 3 | 1 << 2]), hw_encode(np.vstack([wt, wt]), 3)]
    script = [("write", "a", 0, acts), ("write", "s", 0, scales), ("write", "p", 0, params)]
    for st in streams:
        e = len(st)
        run = {"m_tiles": 2, "k": k, "n": 3, "entries": e}
        script += [("write", "r", 0, np.zeros((8, 4), dtype=np.uint64)),
                   ("write", "w", 0, np.asarray(st).reshape(-1, 1)),
                   ("run", run), ("read", "c", 0, 8),
                   ("run", {**run, "flags": 2, "p_base": 1}), ("read", "r", 0, 8),
                   ("run", {**run, "flags": 3, "p_base": 5}), ("read", "r", 0, 8),
                   ("read", "c", 0, 8)]
    rtl, gold = _rtl_and_golden(cfg, script)
    assert rtl == gold
    reads = [v for kind, v in rtl if kind == "read"]
    assert any(max(max(w) for w in r) > 0 for r in reads[1::4])


@pytest.mark.parametrize("encoding", ["dense", "rle"])
def test_epilogue_argument_checks(encoding):
    """p_base past the parameter store is Err.TILE only with the flag; unknown flag bits are
    Err.ARG; the flag on a core without an epilogue is Err.ARG; same on RTL and golden."""
    cfg = _cfg(encoding, p_depth=4)
    if encoding == "dense":
        one = {"m": 1, "n_tiles": 2, "k": 1}
    else:
        one = {"m_tiles": 1, "k": 1, "n": 2, "entries": 1}
    script = [("run", {**one, "flags": 2, "p_base": 3}),
              ("run", {**one, "flags": 2, "p_base": 2}),
              ("run", {**one, "flags": 0, "p_base": 3}),
              ("run", {**one, "flags": 4}),
              ("run", {**one, "flags": 3, "p_base": 4})]
    rtl, gold = _rtl_and_golden(cfg, script)
    assert rtl == gold
    assert [v if kind == "error" else "ok" for kind, v in rtl] == \
        [Err.TILE, "ok", "ok", Err.ARG, Err.TILE]
    plain = _cfg(encoding, p_depth=0)
    rtl, gold = _rtl_and_golden(plain, [("run", {**one, "flags": 2})])
    assert rtl == gold == [("error", Err.ARG)]


@pytest.mark.parametrize("encoding", ["dense", "rle"])
def test_epilogue_core_lints(encoding, tmp_path):
    """The generated Verilog of a tree core with the epilogue passes the Verilator lint, and
    its manifest describes the stores and the epilogue."""
    from tessera.generators.generate import generate_core
    from tessera.sim.verilator import lint
    cfg = _cfg(encoding)
    man = generate_core(cfg, tmp_path / "core")
    lint([tmp_path / "core" / man["verilog"]], man["top"]).check()
    assert man["timing"]["epilogue"]["kind"] == "ternary_quantizer"
