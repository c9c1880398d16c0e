"""PE kind ``int``: signed integer MAC with a wrapping accumulator."""

from dataclasses import dataclass

import numpy as np

from tessera.generators.kinds.base import Combiner, OperandLayout, PEKind, check_int


__all__ = ["IntKind", "WrapAddCombiner"]


class WrapAddCombiner(Combiner):
    """Lane-wise wrapping add of result codes (latency 0)."""

    def __init__(self, bits):
        self.bits = bits
        self.latency = 0

    def hdl(self):
        from tessera.hdl.arith.wrapadd import WrapAdd
        return WrapAdd(width=self.bits)

    def twin(self, old, new):
        s = np.asarray(old, dtype=np.uint64) + np.asarray(new, dtype=np.uint64)
        if self.bits < 64:
            s &= np.uint64((1 << self.bits) - 1)
        return s

    def as_dict(self):
        return {"kind": "wrap_add", "bits": self.bits, "latency": 0}


@dataclass(frozen=True)
class IntKind(PEKind):
    """``[pe] kind = "int"``: signed ``a_bits`` x ``b_bits`` products into an ``acc_bits``
    two's complement accumulator (wrapping); accumulation across RUNs wraps the same way."""
    name = "int"
    code = 1
    a_bits: int = 8
    b_bits: int = 8
    acc_bits: int = 32

    def __post_init__(self):
        check_int("pe.a_bits", self.a_bits, 2, 32)
        check_int("pe.b_bits", self.b_bits, 2, 32)
        check_int("pe.acc_bits", self.acc_bits, self.a_bits + self.b_bits, 64)

    def layout(self, mode=None):
        self.mode_code(mode)
        return OperandLayout(a_elems=1, a_bits=self.a_bits, b_elems=1, b_bits=self.b_bits)

    @property
    def result_bits(self):
        return self.acc_bits

    @property
    def latency(self):
        return 2       # IntMacPE: product register, accumulator

    def make_pe(self):
        from tessera.hdl.arith.intmac import IntMacPE
        return IntMacPE(a_bits=self.a_bits, b_bits=self.b_bits, acc_bits=self.acc_bits)

    def twin(self):
        from tessera.sim.array import IntArrayModel
        return IntArrayModel(a_bits=self.a_bits, b_bits=self.b_bits, acc_bits=self.acc_bits)

    def combiner(self):
        return WrapAddCombiner(self.acc_bits)

    def formats(self):
        return int_formats(self.a_bits, self.b_bits, self.acc_bits)

    def operands(self, m, n, k, *, kind, rng, mode=None):
        from tessera.sim import intmac

        def draw(shape, bits):
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            if kind == "extremes":
                return rng.choice(np.array([lo, hi]), size=shape)
            if kind == "min":
                return np.full(shape, lo)
            return rng.integers(lo, hi + 1, size=shape)
        a = draw((m, k), self.a_bits)
        b = draw((k, n), self.b_bits)
        if kind == "zeros_a":
            a[:] = 0
        if kind == "zeros_b":
            b[:] = 0
        if kind == "relu":
            top = (1 << (self.a_bits - 1)) - 1
            a = np.where(rng.random(a.shape) < 0.5, 0, np.abs(a).clip(max=top))
        return intmac.to_codes(a, self.a_bits), intmac.to_codes(b, self.b_bits)

    def reference(self, a, b, *, k_split=None, mode=None):
        """Exact int64 matrix product, then the two's complement wrap (independent of the twin;
        the wrap makes the K split irrelevant: addition is associative modulo 2**acc_bits)."""
        from tessera.sim import intmac
        x = intmac.from_codes(a, self.a_bits)
        y = intmac.from_codes(b, self.b_bits)
        return intmac.to_codes(intmac.wrap(x @ y, self.acc_bits), self.acc_bits)

    @classmethod
    def units(cls):
        from tessera.generators.units import Option, Unit
        return (
            Unit(name="int_mac",
                 summary="signed integer MAC processing element (PE interface, latency 2)",
                 options=(Option("a_bits", int, 8, "activation width in bits (2..32)"),
                          Option("b_bits", int, 8, "weight width in bits (2..32)"),
                          Option("acc_bits", int, 32, "accumulator width (a_bits+b_bits..64)")),
                 build=_int_mac, formats=lambda **kw: int_formats(**kw)),
            Unit(name="int_array",
                 summary="output-stationary systolic array of integer MAC PEs with overlapped "
                         "drain",
                 options=(Option("rows", int, 4, "array rows (1..64)"),
                          Option("cols", int, 4, "array columns (1..64)"),
                          Option("a_bits", int, 8, "activation width in bits"),
                          Option("b_bits", int, 8, "weight width in bits"),
                          Option("acc_bits", int, 32, "accumulator width")),
                 build=_int_array, formats=lambda rows, cols, **kw: int_formats(**kw)),
        )


def int_formats(a_bits, b_bits, acc_bits):
    return {"a": {"kind": "int", "bits": a_bits, "signed": True},
            "b": {"kind": "int", "bits": b_bits, "signed": True},
            "acc": {"kind": "int", "bits": acc_bits, "signed": True, "overflow": "wrap"}}


def _int_mac(*, a_bits, b_bits, acc_bits):
    from tessera.hdl.arith.intmac import IntMacPE
    return IntMacPE(a_bits=a_bits, b_bits=b_bits, acc_bits=acc_bits)


def _int_array(*, rows, cols, a_bits, b_bits, acc_bits):
    from tessera.hdl.arith.intmac import IntMacPE
    from tessera.hdl.array.systolic import SystolicArray
    return SystolicArray(rows=rows, cols=cols,
                         pe=lambda: IntMacPE(a_bits=a_bits, b_bits=b_bits, acc_bits=acc_bits))
