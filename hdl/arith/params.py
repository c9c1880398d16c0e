"""PE pipeline facts as plain Python: the one home of each PE's latency (and the multi-precision
PE's initiation interval), read by the HDL PE and by its kind in `tessera.generators.kinds`.

No Amaranth import, so a kind answers `PEKind.latency` without building (or importing) HDL;
`tests/test_kinds.py` still checks each kind's answer against its built PE.
"""

__all__ = ["INT_ACC_LATENCY", "int_acc_latency", "multiprec_ii", "multiprec_latency",
           "TERNARY_SCALE_LATENCY"]

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
