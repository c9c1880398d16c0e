"""PE pipeline facts as plain Python: the one home of each PE's latency (and the multi-precision
PE's initiation interval), read by the HDL PE and by its kind in `tessera.generators.kinds`.

Also the bit-width rules of the FPEC requantizing epilogue that its unit and its twin share.

No Amaranth import, so a kind answers `PEKind.latency` without building (or importing) HDL;
`tests/test_kinds.py` still checks each kind's answer against its built PE.
"""

from fractions import Fraction

__all__ = ["INT_ACC_LATENCY", "int_acc_latency", "multiprec_ii", "multiprec_latency",
           "TERNARY_SCALE_LATENCY", "fpec_shift_bits", "fpec_epilogue_frac_bits",
           "threshold_bits", "bucket_edges"]

#: Cycles from an integer accumulator PE's product register input to its result: the product
#: register, then the wrapping accumulator (`tessera.hdl.arith.intacc.IntAccPE`: `IntMacPE`,
#: `FpecMacPE`, `BiScaledMacPE`, and `BitFusionPE` after its fusion unit).
INT_ACC_LATENCY = 2


def int_acc_latency(front=0):
    """Latency of an integer accumulator PE whose product function has ``front`` pipeline
    registers before the product register (Bit Fusion: the fusion unit's ``stages``)."""
    return front + INT_ACC_LATENCY


def multiprec_ii(a_bits, b_bits):
    """Initiation interval of a `MultiPrecPE` mode: its nibble products per pair,
    ``(a_bits / 4) (b_bits / 4)``."""
    return (a_bits // 4) * (b_bits // 4)


def multiprec_latency(iis):
    """Latency of a `MultiPrecPE` with modes of initiation intervals ``iis``: the slowest
    mode's II (faster modes wait that long), the multiplier's output register and the
    accumulator."""
    return max(iis) + 2


#: Cycles a `SerialScaler` adds after the class sums (scale read, products, difference): the
#: ``ternary`` kind's latency (`tessera.hdl.arith.ternary_scale.SerialScaler.LATENCY_EXTRA`).
TERNARY_SCALE_LATENCY = 3


# -- the FPEC requantizing epilogue (hdl/arith/fpec_epilogue.py and its twin) ----------------


def fpec_shift_bits(acc_bits):
    """Shift field bits of the FPEC requantizing epilogue (right shifts 0..acc_bits+31)."""
    return (acc_bits + 31).bit_length()


def fpec_epilogue_frac_bits(f):
    """Binary fraction bits of the dyadic rational ``f``."""
    d = Fraction(f).denominator
    assert d & (d - 1) == 0
    return d.bit_length() - 1


def threshold_bits(threshold, emb_bits):
    """``B``: fraction bits of ``|r|`` that decide EZB and EMB exactly (every edge ``T + j *
    (1/2 - T) / 2**m`` is a multiple of ``2**-B``)."""
    return max(fpec_epilogue_frac_bits(threshold), 1) + emb_bits


def bucket_edges(threshold, emb_bits):
    """``(T * 2**B, [edge_j * 2**B for j = 1 .. 2**m - 1])`` as integers (no edges when
    ``T = 1/2``: the host quantizer's EMB is then always 0)."""
    B = threshold_bits(threshold, emb_bits)
    t = Fraction(threshold)
    n = 1 << emb_bits
    width = (Fraction(1, 2) - t) / n
    t0 = t * (1 << B)
    assert t0.denominator == 1
    edges = []
    if width > 0:
        for j in range(1, n):
            e = (t + j * width) * (1 << B)
            assert e.denominator == 1
            edges.append(int(e))
    return int(t0), edges
