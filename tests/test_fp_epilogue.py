"""The FP epilogue (fpmac): twin against the independent reference (exhaustive over every
accumulator code for 16-bit accumulators, with a set of biases and both ReLU settings: 2**20
cases per format pair; corners + seeded random for fp32 accumulators), the reference against
ml_dtypes where it has the formats, the HDL against the twin in Amaranth's simulator, and the
descriptor (parameters, packing, user parameters)."""

import numpy as np
import pytest

from tessera.generators.kinds.epilogue import FPEpilogueSpec
from tessera.hdl.arith.formats import FORMATS
from tessera.hdl.arith.fpepilogue import FPEpilogue
from tessera.sim import fp
from tessera.sim.fpepilogue import fp_epilogue
from tessera.sim.fpepilogue_ref import ref_fp_epilogue
from tests.helpers import simulate


def biases(fa, rng, n=8):
    """Signed zeros, +-1, the largest finite, the smallest subnormal, Inf/NaN where the format
    has them, and random codes: ``n`` codes in all."""
    vals = [0.0, -0.0, 1.0, -1.0, 0.75]
    codes = list(fp.encode(fa, np.array(vals)))
    codes += [fa.max_code(0), 1, fa.nan_code]
    return np.array(codes[:n] + list(rng.integers(0, 1 << fa.width, max(0, n - len(codes)))),
                    dtype=np.uint64)


PAIRS16 = [("fp16", "fp8_e4m3"), ("fp16", "fp8_e5m2"), ("fp16", "hfp8"), ("fp16", "hfp8_ibm"),
           ("bf16", "fp8_e4m3"), ("dlfloat16", "fp8_e5m2"), ("fp16", "fp16"),
           ("dlfloat16", "dlfloat16")]


@pytest.mark.parametrize("acc,inp", PAIRS16)
def test_twin_vs_reference_exhaustive(acc, inp):
    fa, fi = FORMATS[acc], FORMATS[inp]
    rng = np.random.default_rng(fa.width + fi.width)
    codes = np.arange(1 << 16, dtype=np.uint64)
    for b in biases(fa, rng):
        for relu in (0, 1):
            np.testing.assert_array_equal(
                fp_epilogue(codes, b, relu, fmt_acc=fa, fmt_in=fi),
                ref_fp_epilogue(codes, b, relu, fmt_acc=fa, fmt_in=fi),
                err_msg=f"bias {int(b):#x} relu {relu}")


@pytest.mark.parametrize("inp", ["fp8_e4m3", "fp8_e5m2", "fp16", "bf16", "fp32"])
def test_twin_vs_reference_fp32_acc(inp):
    fa, fi = FORMATS["fp32"], FORMATS[inp]
    rng = np.random.default_rng(len(inp))
    n = 200_000
    acc = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    # Values near the output format's range and its rounding ties, not just random codes.
    near = fp.encode(fa, rng.normal(0, 1, n) * 2.0 ** rng.integers(-20, 20, n)).astype(np.uint64)
    acc = np.concatenate([acc, near, [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000,
                                      0x7F7FFFFF, 0x00000001]]).astype(np.uint64)
    bias = np.concatenate([rng.integers(0, 1 << 32, n, dtype=np.uint64), near[::-1],
                           np.zeros(7, dtype=np.uint64)]).astype(np.uint64)
    relu = rng.integers(0, 2, acc.size)
    np.testing.assert_array_equal(fp_epilogue(acc, bias, relu, fmt_acc=fa, fmt_in=fi),
                                  ref_fp_epilogue(acc, bias, relu, fmt_acc=fa, fmt_in=fi))


@pytest.mark.parametrize("inp,dtype", [("fp8_e4m3", "float8_e4m3fn"),
                                       ("fp8_e5m2", "float8_e5m2"), ("fp16", "float16")])
def test_reference_vs_ml_dtypes(inp, dtype):
    """fp16 accumulators: the fp16 sum of two fp16 values is exact in float64, numpy rounds it
    to float16 (RNE), ml_dtypes converts to the FP8 format (RNE, NaN on overflow for e4m3fn,
    Inf for e5m2); ReLU as max(y, 0)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    fa, fi = FORMATS["fp16"], FORMATS[inp]
    codes = np.arange(1 << 16, dtype=np.uint16)
    x = codes.view(np.float16).astype(np.float64)
    for b in (0.0, -0.0, 0.3125, -7.5, 65504.0):
        with np.errstate(invalid="ignore", over="ignore"):
            s = (x + b).astype(np.float16)
        y = s.astype(getattr(ml_dtypes, dtype)) if dtype != "float16" else s
        for relu in (0, 1):
            v = y.astype(np.float64)
            if relu:
                with np.errstate(invalid="ignore"):
                    v = np.where(~np.isnan(v) & ~(v > 0), 0.0, v)
            want = fp.canonical(fi, fp.encode(fi, v))
            bc = fp.encode(fa, np.array([b]))[0]
            got = fp.canonical(fi, ref_fp_epilogue(codes.astype(np.uint64), bc, relu,
                                                   fmt_acc=fa, fmt_in=fi))
            np.testing.assert_array_equal(got, want, err_msg=f"bias {b} relu {relu}")


def run_hdl(dut, acc, bias, relu, gaps):
    got = []

    async def drive(ctx):
        for i in range(len(acc)):
            for _ in range(gaps[i]):
                ctx.set(dut.valid, 0)
                await ctx.tick()
            ctx.set(dut.valid, 1)
            ctx.set(dut.acc, int(acc[i]))
            ctx.set(dut.bias, int(bias[i]))
            ctx.set(dut.relu, int(relu[i]))
            await ctx.tick()
        ctx.set(dut.valid, 0)

    async def collect(ctx):
        t = 0
        while len(got) < len(acc):
            if ctx.get(dut.out_valid):
                got.append(ctx.get(dut.out))
            await ctx.tick()
            t += 1
            assert t < 4 * len(acc) + 100

    simulate(dut, drive, collect)
    return np.array(got, dtype=np.uint64)


@pytest.mark.parametrize("acc,inp,stages", [("fp16", "fp8_e4m3", 2), ("fp16", "fp8_e5m2", 1),
                                            ("bf16", "hfp8", 3), ("dlfloat16", "hfp8_ibm", 2),
                                            ("fp32", "bf16", 2)])
def test_hdl_matches_twin(acc, inp, stages):
    fa, fi = FORMATS[acc], FORMATS[inp]
    rng = np.random.default_rng(stages + fa.width)
    n = 300
    a = np.concatenate([rng.integers(0, 1 << fa.width, n // 2, dtype=np.uint64),
                        fp.encode(fa, rng.normal(0, 4, n - n // 2)).astype(np.uint64)])
    b = np.concatenate([biases(fa, rng, 16), rng.integers(0, 1 << fa.width, n - 16,
                                                          dtype=np.uint64)])
    relu = rng.integers(0, 2, n)
    gaps = np.where(rng.random(n) < 0.8, 0, rng.integers(1, 4, n))
    dut = FPEpilogue(fmt_acc=fa, fmt_in=fi, add_stages=stages)
    assert dut.latency == stages + 2 == FPEpilogueSpec(fa, fi, add_stages=stages).latency
    np.testing.assert_array_equal(run_hdl(dut, a, b, relu, gaps),
                                  fp_epilogue(a, b, relu, fmt_acc=fa, fmt_in=fi))


def test_hdl_latency():
    fa, fi = FORMATS["fp16"], FORMATS["fp8_e4m3"]
    dut = FPEpilogue(fmt_acc=fa, fmt_in=fi, add_stages=2)
    seen = []
    one = int(fp.encode(fa, np.array([1.0]))[0])

    async def bench(ctx):
        for t in range(10):
            ctx.set(dut.valid, int(t in (1, 2)))
            ctx.set(dut.acc, one)
            ctx.set(dut.relu, int(t == 2))
            ctx.set(dut.bias, int(fp.encode(fa, np.array([-3.0]))[0]))
            if ctx.get(dut.out_valid):
                seen.append((t, ctx.get(dut.out)))
            await ctx.tick()
    simulate(dut, bench)
    minus2 = int(fp.encode(fi, np.array([-2.0]))[0])
    assert seen == [(5, minus2), (6, 0)]


def test_spec_fields_packing_and_user_params():
    fa, fi = FORMATS["fp16"], FORMATS["fp8_e4m3"]
    spec = FPEpilogueSpec(fa, fi, add_stages=2)
    assert [(f.name, f.bits, f.scope) for f in spec.param_fields] == [
        ("bias", 16, "channel"), ("relu", 1, "flag")]
    assert spec.flag_mask() == 0b100
    assert [f.name for f in spec.run_arg_fields()] == ["p_base"]
    assert spec.capabilities == ("bias", "relu_clip", "fp_convert")
    codes = np.array([[0x3C00, 0xBC00, 0x7C00]], dtype=np.uint64)
    lanes = spec.pack_params(codes)
    np.testing.assert_array_equal(lanes, codes)
    np.testing.assert_array_equal(spec.unpack_params(lanes)[0], codes)
    p = spec.user_params({"activation": "relu"}, [1.0, -0.5, 2.0], 3)
    np.testing.assert_array_equal(p["bias"], [0x3C00, 0xB800, 0x4000])
    assert p["relu"] == 1
    assert spec.run_codes(p) == ({}, 0b100)
    assert spec.run_values({"flags": 0b110}) == {"relu": 1}
    from tessera.sim.layers import LayerError
    with pytest.raises(LayerError, match=r"^bias\[1\]: 0\.1 is not exactly representable in "
                                         r"fp16; allowed: values of the accumulator format$"):
        spec.user_params({}, [1.0, 0.1, 0.0], 3)
    with pytest.raises(LayerError, match=r"^epilogue: unknown keys \['scale'\]"):
        spec.user_params({"scale": 0.5}, None, 3)
    np.testing.assert_array_equal(spec.decode([0x38, 0xB8]), [1.0, -1.0])
