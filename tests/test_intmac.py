# amaranth: UnusedElaboratable=no
"""IntMacPE (hdl/arith/intmac.py) against its twin (sim/intmac.py), the twin against Python ints."""

import itertools

import numpy as np
import pytest

from tessera.hdl.arith.intmac import IntMacPE
from tessera.sim import intmac
from tests.helpers import accumulations, drive_pe


def test_twin_products_exhaustive_against_python_ints():
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")
    got = intmac.mac(a[..., None], b[..., None], acc_bits=16)
    ref = [[x * y for y in range(-128, 128)] for x in range(-128, 128)]
    # Every int8 product, (-128)*(-128) = 16384 included, fits a signed 16-bit accumulator.
    np.testing.assert_array_equal(got, np.array(ref))


def test_twin_wraps_like_a_register():
    # Python's own modular arithmetic is the reference for two's complement wrap-around.
    def ref_wrap(v, bits):
        v %= 1 << bits
        return v - (1 << bits) if v >= 1 << (bits - 1) else v
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (200, 3000))
    b = rng.integers(-128, 128, (200, 3000))
    got = intmac.mac(a, b, acc_bits=20)
    ref = [ref_wrap(sum(int(x) * int(y) for x, y in zip(ra, rb)), 20) for ra, rb in zip(a, b)]
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(intmac.mac(np.full(1024, -128), np.full(1024, -128),
                                             acc_bits=24), ref_wrap(1024 * 16384, 24))


def test_twin_rejects_out_of_range_operands():
    with pytest.raises(ValueError, match=r"^a must hold signed 8-bit integers -128\.\.127$"):
        intmac.mac([128], [1])


def test_codes_roundtrip():
    x = np.arange(-(1 << 11), 1 << 11)
    np.testing.assert_array_equal(intmac.from_codes(intmac.to_codes(x, 12), 12), x)


def test_hdl_every_int8_product():
    """All 65536 operand pairs, one single-pair accumulation per cycle."""
    dut = IntMacPE(a_bits=8, b_bits=8, acc_bits=32)
    pairs = list(itertools.product(range(-128, 128), repeat=2))
    seqs = [([a], [b]) for a, b in pairs]
    got = drive_pe(dut, seqs)
    np.testing.assert_array_equal(got, [a * b for a, b in pairs])


@pytest.mark.parametrize("a_bits,b_bits,acc_bits", [(8, 8, 32), (8, 8, 18), (4, 6, 12),
                                                     (16, 16, 40)])
def test_hdl_accumulations_match_twin(a_bits, b_bits, acc_bits):
    rng = np.random.default_rng(a_bits * 100 + acc_bits)
    lo = -(1 << (min(a_bits, b_bits) - 1))
    hi = (1 << (min(a_bits, b_bits) - 1)) - 1
    seqs = accumulations(rng, 150, lo, hi, max_len=12)
    # Extremes: the largest products, long enough to wrap narrow accumulators.
    seqs.append((np.full(40, lo), np.full(40, lo)))
    seqs.append((np.full(3, hi), np.full(3, lo)))
    gaps = list(rng.integers(0, 3, len(seqs)))
    dut = IntMacPE(a_bits=a_bits, b_bits=b_bits, acc_bits=acc_bits)
    got = drive_pe(dut, seqs, gaps)
    want = [intmac.mac(a, b, a_bits=a_bits, b_bits=b_bits, acc_bits=acc_bits) for a, b in seqs]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kw,msg", [
    (dict(a_bits=1), r"^a_bits must be an integer 2\.\.32, not 1$"),
    (dict(b_bits="8"), r"^b_bits must be an integer 2\.\.32, not '8'$"),
    (dict(acc_bits=15), r"^acc_bits must be an integer 16\.\.64 \(at least a_bits \+ b_bits\), "
                        r"not 15$"),
    (dict(acc_bits=65), r"^acc_bits must be an integer 16\.\.64"),
])
def test_hdl_parameter_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        IntMacPE(**kw)
