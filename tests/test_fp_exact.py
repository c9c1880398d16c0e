# amaranth: UnusedElaboratable=no
"""Exact (Kulisch-style) FP accumulation: the window, the golden twin against independent
oracles, the HDL PE against the twin (Amaranth simulator), and the ``fpmac`` kind's exact mode.

Oracles: `tessera.sim.fpexactref` (`fractions.Fraction` sums and `tessera.sim.fpref`'s rounder,
no code shared with `tessera.sim.fp`), float64 sums where they are provably exact (a few FP8
E4M3 / HFP8 products span at most 40 bits), and values worked out by hand. The exhaustive
HDL sweep (every FP8 pair x accumulator states) is marked ``slow`` (Amaranth's simulator runs
about 1300 cycles/s on this PE); by default it runs every code against the corner codes.
"""

import math
import re

import numpy as np
import pytest

from tessera.generators.config import ConfigError, config_from_dict, load_config
from tessera.generators.kinds.fpmac import EXACT_MAX_K, exact_formats
from tessera.generators.units import generate_unit
from tessera.hdl.arith import formats as F
from tessera.hdl.arith.fpexact import ExactWindow, FPExactMac, MAX_WINDOW_BITS
from tessera.hdl.array.pe import PE, PESignature
from tessera.sim import fp
from tessera.sim.fpexactref import reference_exact_gemm
from tessera.sim.fpref import decode_codes, encode_values, round_to_format
from tests.test_fp_hdl import all_pairs, assert_codes, corners, mac_stream, run_mac


FP8 = [F.fp8_e4m3, F.fp8_e5m2, F.hfp8, F.hfp8_ibm]


def fid(x):
    return x.name if isinstance(x, F.FloatFormat) else str(x)


# ------------------------------------------------------------------------------------------
# the window

#: (lsb, product bits, width for K = 32768), worked out from each format's extremes:
#: lsb = 2 x the exponent of the smallest code's last bit; product bits = bits of
#: max_finite**2 / 2**lsb; width = product bits + 15 guard bits (32768 = 2**15) + sign.
WINDOWS = {
    "fp8_e4m3": (-18, 36, 52),     # 2**-9 squared; 448**2 * 2**18 < 2**36
    "fp8_e5m2": (-32, 64, 80),     # 2**-16 squared; 57344**2 * 2**32 < 2**64
    "hfp8": (-26, 36, 52),         # 2**-13 squared; 30**2 * 2**26 < 2**36
    "hfp8_ibm": (-28, 38, 54),     # field 0 is normal: 2**-11 * 2**-3 squared; 28**2 * 2**28
    "fp16": (-48, 80, 96),         # 2**-24 squared; 65504**2 * 2**48 < 2**80
    "bf16": (-266, 522, 538),      # 2**-133 squared
    "dlfloat16": (-80, 146, 162),  # 2**-40 squared
    "fp32": (-298, 554, 570),      # 2**-149 squared
}


@pytest.mark.parametrize("name", list(WINDOWS))
def test_window_widths_by_hand(name):
    w = ExactWindow(F.FORMATS[name], 32768)
    assert (w.lsb, w.product_bits, w.width) == WINDOWS[name]
    assert w.guard_bits == 15 and w.top == w.lsb + w.width - 1
    # the largest product and 32768 of either sign fit; one more binade would not be needed
    mx = F.FORMATS[name].max_finite ** 2 / 2.0 ** w.lsb
    assert math.isclose(mx, w.max_product) and w.max_product < 2 ** w.product_bits
    assert 32768 * w.max_product < 2 ** (w.width - 1) <= 2 * 32768 * w.max_product


def test_exact_formats_are_those_with_practical_windows():
    assert MAX_WINDOW_BITS == 96
    assert exact_formats() == ("fp8_e4m3", "fp8_e5m2", "hfp8", "hfp8_ibm", "fp16")


def test_window_covers_the_deepest_scratchpad():
    """No RUN can overflow the window: RUN k <= scratchpad depth <= 32768 words of one element,
    and the config refuses anything deeper."""
    assert EXACT_MAX_K == 32768
    with pytest.raises(ConfigError, match=r"^memory\.a_depth: 32769 is out of range"):
        config_from_dict({"memory": {"a_depth": 32769}})
    cfg = config_from_dict({"pe": {"kind": "fpmac", "accumulate": "exact"},
                            "memory": {"a_depth": 32768, "b_depth": 32768}})
    assert cfg.pe.layout().k_per_word == 1
    assert cfg.pe.window.max_k >= min(cfg.memory.a_depth, cfg.memory.b_depth)


# ------------------------------------------------------------------------------------------
# golden twin vs independent oracles

def twin_gemm(fi, fa, a, b, **kw):
    A, B = np.broadcast_arrays(np.asarray(a)[:, None, :], np.asarray(b).T[None, :, :])
    return fp.exact_mac(fi, A, B, fa, **kw)


@pytest.mark.parametrize("fi,fa", [(F.fp8_e4m3, F.fp16), (F.fp8_e5m2, F.fp16),
                                   (F.hfp8_ibm, F.dlfloat16)], ids=fid)
def test_twin_single_products_exhaustive(fi, fa):
    """Every FP8 x FP8 product, rounded once, against Fraction arithmetic."""
    codes = np.arange(256)
    ref = reference_exact_gemm(fi, fa, codes[:, None], codes[None, :])
    got = twin_gemm(fi, fa, codes[:, None], codes[None, :])
    assert_codes(fp.canonical(fa, got).ravel(), fp.canonical(fa, ref).ravel())


#: Accumulator states, each set by two leading products (a, b) pairs, as values:
#: +0, -0 products, +-1, the smallest product, +-max**2, a spread sum, NaN, and 3.5 * -20.
def state_pairs(fi):
    enc = lambda x: int(fp.encode(fi, x))  # noqa: E731
    one, big, tiny = enc(1.0), fi.max_finite_code, 1
    return [((0, 0), (0, 0)), ((0x80, 0), (0, 0x80)), ((one, one), (0, 0)),
            ((one | 0x80, one), (0, 0)), ((tiny, tiny), (0, 0)), ((big, big), (0, 0)),
            ((big | 0x80, big), (0, 0)), ((big, big), (tiny | 0x80, tiny)),
            ((fi.nan_code, one), (0, 0)), ((enc(3.5), enc(-20.0)), (one, enc(0.5)))]


def states_x_products(fi):
    """(a, b) sequences of length 3: two state-setting pairs, then every FP8 pair."""
    pa, pb = all_pairs()
    a_rows, b_rows = [], []
    for (sa1, sb1), (sa2, sb2) in state_pairs(fi):
        a_rows.append(np.stack([np.full(pa.size, sa1), np.full(pa.size, sa2), pa], axis=1))
        b_rows.append(np.stack([np.full(pb.size, sb1), np.full(pb.size, sb2), pb], axis=1))
    return np.concatenate(a_rows), np.concatenate(b_rows)


@pytest.mark.parametrize("fi,fa", [(F.fp8_e4m3, F.fp16), (F.hfp8, F.fp16),
                                   (F.fp8_e4m3, F.fp8_e4m3.with_overflow("saturate"))], ids=fid)
def test_twin_states_x_products_exhaustive(fi, fa):
    """Every FP8 pair added to 10 accumulator states, against float64 sums (exact here: three
    products of these formats span at most 36 + 2 bits) rounded once by `fpref`'s rounder."""
    a, b = states_x_products(fi)
    prods = decode_codes(fi, a) * decode_codes(fi, b)          # exact; 0 * Inf is NaN
    with np.errstate(invalid="ignore"):
        exact = 0.0 + prods[:, 0] + prods[:, 1] + prods[:, 2]   # from +0, as the PE
    want = encode_values(fa, round_to_format(fa, exact))
    got = fp.exact_mac(fi, a, b, fa)
    assert_codes(fp.canonical(fa, got), fp.canonical(fa, want))


def special_operands(fi, rng, shape, p_special=0.02):
    """Normal(0, 1) data, ReLU-like zeros, subnormals, the extremes and a few NaN/Inf codes."""
    x = rng.normal(0.0, 1.0, shape) * np.exp2(rng.integers(-6, 4, shape))
    codes = fp.encode(fi, x).astype(np.int64)
    codes[rng.random(shape) < 0.2] = 0                                   # ReLU zeros
    r = rng.random(shape)
    codes[r < 0.05] = rng.integers(1, 1 << fi.man_bits, int((r < 0.05).sum()))   # subnormal
    codes[(r > 0.05) & (r < 0.07)] = fi.max_finite_code
    specials = [fi.nan_code] + ([fi.inf_code(0), fi.inf_code(1)] if fi.has_inf else [])
    s = rng.random(shape) < p_special
    codes[s] = rng.choice(specials, int(s.sum()))
    return codes


@pytest.mark.parametrize("fi,fa,k,k_split", [
    (F.fp8_e4m3, F.fp16, 4096, None), (F.fp8_e4m3, F.fp16, 1027, 512),
    (F.fp8_e5m2, F.fp16, 700, None), (F.hfp8, F.bf16, 333, 100),
    (F.hfp8_ibm, F.dlfloat16, 513, None), (F.fp16, F.fp32, 300, 128),
    (F.fp8_e5m2, F.fp8_e5m2, 64, 16)], ids=fid)
def test_twin_long_dot_products_with_specials(fi, fa, k, k_split):
    """Seeded long dot products, specials included, against Fraction sums: one rounding per
    RUN piece, pieces combined by one FP add each (the kind's combiner)."""
    rng = np.random.default_rng(k)
    for p_special in (0.0, 0.002):
        a = special_operands(fi, rng, (3, k), p_special)
        b = special_operands(fi, rng, (k, 4), p_special)
        ref = reference_exact_gemm(fi, fa, a, b, k_split=k_split)
        ks = k if k_split is None else k_split
        got = None
        for k0 in range(0, k, ks):
            piece = twin_gemm(fi, fa, a[:, k0:k0 + ks], b[k0:k0 + ks])
            got = piece if got is None else fp.add(fa, got, piece)
        assert_codes(fp.canonical(fa, got).ravel(), fp.canonical(fa, ref).ravel())


def _codes(fmt, *values):
    return [int(c) for c in fp.encode(fmt, np.array(values, dtype=np.float64))]


def test_corners_by_hand():
    """Worked-out cases, on the twin and the Fraction reference alike."""
    e4, e5, h = F.fp8_e4m3, F.fp8_e5m2, F.fp16
    one = _codes(e4, 1.0)[0]
    big = e4.max_finite_code                           # 448
    cases = [
        # 4096 x 1.0: exact (round-every-step FP16 stalls at 2048)
        (e4, h, [one] * 4096, [one] * 4096, 0x6C00),
        # 448**2 - 448**2 + 2**-18: no intermediate overflow (step mode gives Inf); 2**-18 is
        # the fp16 subnormal 64 * 2**-24
        (e4, h, [big, big | 0x80, 1], [big, big, 1], 0x0040),
        # 4 x 448**2 = 802816 > 65504: the exact sum overflows, +Inf
        (e4, h, [big] * 4, [big] * 4, 0x7C00),
        # 2048 + 1 = 2049: a tie between 2048 and 2050, to even; + 2**-18 breaks it upwards
        (e4, h, _codes(e4, 32.0, 1.0), _codes(e4, 64.0, 1.0), 0x6800),
        (e4, h, _codes(e4, 32.0, 1.0) + [1], _codes(e4, 64.0, 1.0) + [1], 0x6801),
        # only -0 products: the sum starts at +0, so +0
        (e4, h, [0x80, 0x80, 0], [0x00, 0x38, 0x80], 0x0000),
        # a non-zero sum that rounds to zero keeps its sign: -2**-32 in fp16 is -0
        (e5, h, [0x81], [0x01], 0x8000),
        # NaN operand; 0 x Inf; +Inf and -Inf products; Inf with finite products
        (e4, h, [one, 0x7F], [one, one], 0x7E00),
        (e5, h, [0x00, 0x3C], [0x7C, 0x3C], 0x7E00),
        (e5, h, [0x7C, 0xFC], [0x3C, 0x3C], 0x7E00),
        (e5, h, [0x7C, 0x3C], [0xBC, 0x3C], 0xFC00),
    ]
    for fi, fa, a, b, want in cases:
        a, b = np.array(a), np.array(b)
        got = int(fp.exact_mac(fi, a, b, fa))
        ref = int(reference_exact_gemm(fi, fa, a[None, :], b[:, None])[0, 0])
        assert (got, ref) == (want, want), (fi.name, a[:4], b[:4])
    sat = h.with_overflow("saturate")
    assert int(fp.exact_mac(e4, np.full(4, big), np.full(4, big), sat)) == 0x7BFF
    assert int(fp.mac(e4, np.full(4096, one), np.full(4096, one), h)) == 0x6800   # 2048


def test_twin_checkpoints_and_limit():
    rng = np.random.default_rng(5)
    a = special_operands(F.fp8_e4m3, rng, (4, 50), 0.0)
    b = special_operands(F.fp8_e4m3, rng, (4, 50), 0.0)
    cps = fp.exact_mac(F.fp8_e4m3, a, b, F.fp16, checkpoints=[0, 7, 50])
    for i, n in enumerate((0, 7, 50)):
        np.testing.assert_array_equal(cps[:, i], fp.exact_mac(F.fp8_e4m3, a[:, :n], b[:, :n],
                                                              F.fp16))
    with pytest.raises(ValueError, match=r"^an exact accumulation of 51 products is longer "
                                         r"than max_k=50, the window's limit$"):
        fp.exact_mac(F.fp8_e4m3, np.zeros(51, int), np.zeros(51, int), F.fp16, max_k=50)


# ------------------------------------------------------------------------------------------
# HDL PE vs twin (Amaranth simulator)

def exact_twin(fi, fa, accs):
    return np.array([fp.exact_mac(fi, a, b, fa) for a, b, _ in accs], dtype=np.int64)


def test_pe_contract():
    pe = FPExactMac(fmt_in=F.fp8_e4m3, fmt_acc=F.fp16, stages=4)
    assert isinstance(pe, PE) and pe.latency == 4 and pe.ii == 1
    assert pe.signature == PESignature(a_shape=8, b_shape=8, acc_shape=16)
    assert pe.window == ExactWindow(F.fp8_e4m3, 32768) and pe.max_k == 32768


def test_pe_validation_messages():
    with pytest.raises(ValueError, match=r"^stages must be an int in 1\.\.6, not 0$"):
        FPExactMac(fmt_in=F.fp8_e4m3, fmt_acc=F.fp16, stages=0)
    with pytest.raises(ValueError, match=r"^max_k must be an int in 1\.\.1048576, not 0$"):
        FPExactMac(fmt_in=F.fp8_e4m3, fmt_acc=F.fp16, max_k=0)
    with pytest.raises(TypeError, match=r"^fmt_acc must be a FloatFormat"):
        FPExactMac(fmt_in=F.fp8_e4m3, fmt_acc="fp16")


@pytest.mark.parametrize("fi,fa,stages", [(F.fp8_e4m3, F.fp16, 3), (F.fp8_e5m2, F.fp16, 1),
                                          (F.hfp8, F.fp8_e4m3, 6)], ids=fid)
def test_pe_every_code_x_corners_x_states(fi, fa, stages):
    """Every code of a against every eighth corner code of b, each on top of a cycling set of
    accumulator states (the full cross product is the slow test below)."""
    cb = corners(fi)[::8]
    a, b = np.meshgrid(np.arange(256), cb, indexing="ij")
    a, b = a.ravel(), b.ravel()
    states = state_pairs(fi)
    accs = []
    for i in range(a.size):
        (sa, sb), _ = states[i % len(states)]
        accs.append((np.array([sa, a[i]]), np.array([sb, b[i]]), None))
    dut = FPExactMac(fmt_in=fi, fmt_acc=fa, max_k=64, stages=stages)
    got = run_mac(dut, mac_stream(accs, rng=None))
    assert_codes(got, exact_twin(fi, fa, accs))


@pytest.mark.parametrize("fi,fa,stages", [
    (F.fp8_e4m3, F.fp16, 3), (F.fp8_e5m2, F.fp16, 2), (F.hfp8_ibm, F.dlfloat16, 4),
    (F.hfp8, F.bf16, 5), (F.fp16, F.fp32, 3), (F.fp8_e4m3, F.fp16.with_overflow("saturate"), 1),
], ids=fid)
def test_pe_random_long_dot_products_with_specials(fi, fa, stages):
    rng = np.random.default_rng(fi.width * 10 + stages)
    lengths = [1, 2, 3, 17, 1, 100, 5, 64, 1, 130]
    accs = []
    for i, n in enumerate(lengths):
        p = 0.0 if i % 2 else 0.01
        accs.append((special_operands(fi, rng, n, p), special_operands(fi, rng, n, p), None))
    dut = FPExactMac(fmt_in=fi, fmt_acc=fa, max_k=512, stages=stages)
    got = run_mac(dut, mac_stream(accs, rng=rng, gaps=0.2))
    assert_codes(got, exact_twin(fi, fa, accs))


def test_pe_swamping():
    """2100 products 1.0 x 1.0 give exactly 2100 (the round-every-step FPMac stalls at 2048)."""
    one = _codes(F.fp8_e4m3, 1.0)[0]
    accs = [(np.full(2100, one), np.full(2100, one), None)]
    got = run_mac(FPExactMac(fmt_in=F.fp8_e4m3, fmt_acc=F.fp16, stages=3),
                  mac_stream(accs, rng=None))
    assert fp.decode(F.fp16, got)[0] == 2100.0
    assert fp.decode(F.fp16, fp.mac(F.fp8_e4m3, accs[0][0], accs[0][1], F.fp16)) == 2048.0


@pytest.mark.slow
@pytest.mark.parametrize("fi", [F.fp8_e4m3, F.fp8_e5m2], ids=fid)
def test_pe_products_x_states_exhaustive_slow(fi):
    """Every FP8 pair on top of each of the 10 accumulator states (3-pair accumulations),
    FP16 results: 1.97 M cycles per format in Amaranth's simulator, about 30 minutes each
    (the same sweep on Verilator, `tests/test_fp_exact_rtl.py`, takes 1-2 minutes)."""
    a, b = states_x_products(fi)
    accs = [(a[i], b[i], None) for i in range(a.shape[0])]
    got = run_mac(FPExactMac(fmt_in=fi, fmt_acc=F.fp16, stages=3), mac_stream(accs, rng=None))
    assert_codes(got, fp.exact_mac(fi, a, b, F.fp16).astype(np.int64))


# ------------------------------------------------------------------------------------------
# the fpmac kind's exact mode

def exact_cfg(**pe):
    return config_from_dict({"array": {"rows": 2, "cols": 3},
                             "pe": {"kind": "fpmac", "accumulate": "exact", **pe}})


@pytest.mark.parametrize("pe,pattern", [
    ({"accumulate": "exactly"},
     r"pe\.accumulate: 'exactly' is unknown; did you mean 'exact'\? allowed: 'step', 'exact'"),
    ({"chunk": 64}, r"pe\.chunk: 64 is not allowed with pe\.accumulate = 'exact' \(one exact "
                    r"sum has nothing to chunk\); allowed: 0"),
    ({"input_format": "bf16", "acc_format": "fp32"},
     r"pe\.input_format: 'bf16' needs a 538-bit exact window, over the 96-bit limit of "
     r"pe\.accumulate = 'exact'; allowed: 'fp8_e4m3', 'fp8_e5m2', 'hfp8', 'hfp8_ibm', 'fp16'"),
    ({"stages": 7}, r"pe\.stages: 7 is out of range; allowed: 1\.\.6"),
])
def test_kind_rejects(pe, pattern):
    with pytest.raises(ConfigError) as exc:
        exact_cfg(**pe)
    assert re.fullmatch(pattern, str(exc.value)), str(exc.value)


def test_kind_step_mode_keeps_its_limits():
    with pytest.raises(ConfigError, match=r"^pe\.stages: 5 is out of range; allowed: 1\.\.4$"):
        config_from_dict({"pe": {"kind": "fpmac", "stages": 5}})
    assert config_from_dict({"pe": {"kind": "fpmac"}}).pe.accumulate == "step"


def test_kind_answers_for_the_exact_pe():
    cfg = exact_cfg(stages=5, acc_format="dlfloat16", input_format="hfp8")
    kind = cfg.pe
    pe = kind.make_pe()
    assert isinstance(pe, FPExactMac) and (pe.latency, pe.ii) == (kind.latency, kind.ii()) == (5, 1)
    assert pe.window == kind.window
    f = kind.formats()
    assert f["accumulate"] == "exact" and f["chunk"] is None
    assert f["window"] == {"lsb": -26, "width": 52, "product_bits": 36, "guard_bits": 15,
                           "max_k": 32768}
    assert kind.combiner().as_dict() == {"kind": "fp_add", "format": "dlfloat16", "latency": 2}


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("preset", ["icebreaker-fp8", "ulx3s-fp8"])
def test_exact_presets(preset):
    cfg = load_config(preset)
    # icebreaker-fp8: 3 MACs (4x1 does not fit the UP5K beside the framed link)
    assert cfg.pe.accumulate == "exact" and cfg.pes >= (3 if "icebreaker" in preset else 16)
    assert cfg.core.boards == (("icebreaker",) if "icebreaker" in preset else ("ulx3s-85f",))


def test_kind_tile_twin_and_combiner_match_the_reference():
    """The tile twin plus the FP-add combiner over a K split equal the Fraction reference."""
    kind = exact_cfg().pe
    rng = np.random.default_rng(11)
    a, b = kind.operands(2, 3, 40, kind="extremes", rng=rng)
    ref = kind.reference(a, b, k_split=16)
    twin, comb = kind.twin(), kind.combiner()
    got = None
    for k0 in range(0, 40, 16):
        t = twin.tile(a[:, k0:k0 + 16].T, b[k0:k0 + 16])
        got = t if got is None else comb.twin(got, t)
    np.testing.assert_array_equal(fp.canonical(F.fp16, got), fp.canonical(F.fp16, ref))
    with pytest.raises(ValueError, match=r"longer than max_k=32768"):
        twin.tile(np.zeros((32769, 2), np.uint64), np.zeros((32769, 3), np.uint64))


def test_unit_fpmac_exact(tmp_path):
    m = generate_unit("fpmac_exact", {"format": "fp8_e5m2", "max_k": 1024, "stages": 4},
                      tmp_path / "u")
    assert m["latency"] == 4 and m["initiation_interval"] == 1
    ports = {p["name"]: p["width"] for p in m["ports"]}
    assert (ports["a"], ports["b"], ports["result"]) == (8, 8, 16)
    assert m["formats"]["window"] == {"lsb": -32, "width": 75, "product_bits": 64,
                                      "guard_bits": 10, "max_k": 1024}
    assert (tmp_path / "u" / m["verilog"]).is_file()
