"""PE kind ``int``: signed integer MAC with a wrapping accumulator."""

import numbers
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from tessera.generators.kinds.base import Combiner, OperandLayout, PEKind, check_int, short
from tessera.hdl.arith.params import int_acc_latency


__all__ = ["IntKind", "WrapAddCombiner", "value_error", "as_reals", "first_bad", "int_codes",
           "int_range", "grid_levels", "fmt_number", "signed_values", "check_operand",
           "check_k"]


# -- the value codec helpers shared by the integer-family kinds ----------------------------------
def _item(value):
    return value.item() if isinstance(value, np.generic) else value


def fmt_number(x):
    """A number for a message: an integer without a point, a dyadic fraction as its exact
    decimal (``0.125``), anything else as ``repr``."""
    x = _item(x)
    if isinstance(x, Fraction):
        if x.denominator == 1:
            return str(x.numerator)
        return repr(float(x)) if Fraction(float(x)) == x else str(x)
    if isinstance(x, float) and x.is_integer() and abs(x) < 2 ** 53:
        return str(int(x))
    return repr(x) if isinstance(x, (int, float)) else str(x)


def value_error(name, index, value, why, allowed):
    """The codec's one-line `ValueError`: ``<name>[<index>]: <value> is <why>; allowed: ...``."""
    v = _item(value)
    if isinstance(v, (int, float)):
        text = repr(v)
    elif isinstance(v, Fraction):
        text = str(v) if len(str(v)) <= 60 else str(v)[:57] + "..."
    else:
        text = short(v)
    return ValueError(f"{name}[{index}]: {text} is {why}; allowed: {allowed}")


def as_reals(values, name, allowed):
    """Operand values -> ``(array, x, inexact)``: the values as a NumPy array (any shape), as
    float64, and a mask of the values float64 does not hold exactly.

    Integers, floats and exact rationals (`fractions.Fraction`) are numbers; anything else
    (strings, complex numbers, None) is refused at once. ``inexact`` marks a non-integral
    rational that float64 does not hold (1/3): no kind can take it exactly, so each kind
    refuses it with its own reason, and nothing is rounded on its way in. Integers too large
    for float64 keep their magnitude, so range checks still refuse them.
    """
    arr = np.asarray(values)
    if arr.dtype.kind in "biuf":
        return arr, arr.astype(np.float64), np.zeros(arr.shape, dtype=bool)
    if arr.dtype.kind != "O":
        flat = arr.reshape(-1)
        raise value_error(name, 0, flat[0] if flat.size else arr, "not a number", allowed)
    x = np.empty(arr.shape, dtype=np.float64)
    inexact = np.zeros(arr.shape, dtype=bool)
    for i, v in enumerate(arr.reshape(-1)):
        ok = isinstance(v, (numbers.Real, np.integer, np.floating))
        try:
            f = float(v) if ok else None
        except (OverflowError, ValueError, TypeError):
            f = float("inf") if ok and v > 0 else (float("-inf") if ok else None)
        if f is None:
            raise value_error(name, i, v, "not a number", allowed)
        x.reshape(-1)[i] = f
        inexact.reshape(-1)[i] = (isinstance(v, numbers.Rational)
                                  and not isinstance(v, numbers.Integral)
                                  and np.isfinite(f) and Fraction(f) != Fraction(v))
    return arr, x, inexact


def first_bad(arr, checks, name, allowed):
    """Raise `value_error` for the first element (in flat, C order) that fails a check.

    ``checks`` is a sequence of ``(bad, why)`` pairs (boolean arrays that broadcast to
    ``arr``'s shape); for the first failing element the first failing check names the reason.
    """
    masks = [(np.broadcast_to(b, arr.shape).reshape(-1), why) for b, why in checks]
    if not masks:
        return
    bad = np.logical_or.reduce([m for m, _ in masks])
    hits = np.flatnonzero(bad)
    if hits.size:
        i = int(hits[0])
        why = next(w for m, w in masks if m[i])
        raise value_error(name, i, arr.reshape(-1)[i], why, allowed)


def int_range(bits, signed):
    """``(lo, hi)`` of a ``bits``-bit two's complement (or unsigned) integer."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def int_codes(values, bits, signed, *, name, what=None):
    """Integer values -> ``bits``-bit element codes (two's complement or unsigned), uint64.

    A value must be integral (an integer, or a float with an integral value) and within
    `int_range`; anything else raises the codec's one-line `ValueError` (nothing wraps).
    ``what`` describes the format in the message (default ``signed 8-bit`` and the like).
    """
    lo, hi = int_range(bits, signed)
    what = what or f"{'signed' if signed else 'unsigned'} {bits}-bit"
    allowed = f"integers {lo}..{hi} ({what})"
    arr, x, inexact = as_reals(values, name, allowed)
    with np.errstate(invalid="ignore"):
        integral = np.isfinite(x) & (np.floor(x) == x) & ~inexact
        first_bad(arr, ((~integral, "not an integer"),
                        ((x < lo) | (x > hi), "out of range")), name, allowed)
    q = x.astype(np.int64)
    return (q & np.int64((1 << bits) - 1)).astype(np.uint64) if bits < 64 else q.view(np.uint64)


def grid_levels(x, frac_bits, lo, hi):
    """Values on the fixed-point grid of ``frac_bits`` fraction bits: ``(q, on_grid, in_range)``
    with ``q = x * 2**frac_bits`` (exact: a power-of-two scaling) as int64 where valid."""
    with np.errstate(invalid="ignore", over="ignore"):
        u = np.ldexp(x, frac_bits)
        on = np.isfinite(u) & (np.floor(u) == u)
        inr = on & (u >= lo) & (u <= hi)
    return np.where(inr, u, 0).astype(np.int64), on, inr


def check_operand(operand):
    """``operand`` must be ``"a"`` or ``"b"``."""
    if operand not in ("a", "b"):
        raise ValueError(f"operand: {operand!r} is unknown; allowed: 'a', 'b'")
    return operand


def check_k(k):
    """``k`` (products per accumulation) must be a positive integer; returns it as an int."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: {k!r} is not a positive integer; allowed: integers >= 1")
    return int(k)


def signed_values(codes, bits):
    """``bits``-bit two's complement result codes -> int64 values."""
    from tessera.sim import intmac
    return intmac.from_codes(np.asarray(codes, dtype=np.uint64), bits)


class WrapAddCombiner(Combiner):
    """Lane-wise wrapping add of result codes (latency 0; associative: any split of K gives
    the same codes modulo 2**bits)."""

    associative = True

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
        return int_acc_latency()    # IntMacPE: product register, accumulator

    def parts(self):
        """The PE is an `IntAccPE`: its product, term and wrapping accumulate are parts."""
        return self.make_pe

    def make_pe(self):
        from tessera.hdl.arith.intmac import IntMacPE
        return IntMacPE(a_bits=self.a_bits, b_bits=self.b_bits, acc_bits=self.acc_bits)

    def twin(self):
        from tessera.sim.array import IntArrayModel
        return IntArrayModel(a_bits=self.a_bits, b_bits=self.b_bits, acc_bits=self.acc_bits)

    def combiner(self):
        return WrapAddCombiner(self.acc_bits)

    def epilogue(self):
        """Bias, TFLite/gemmlowp requantization to the activation format, clamp
        (`tessera.generators.kinds.epilogue.IntEpilogueSpec`; docs/epilogue.md)."""
        from tessera.generators.kinds.epilogue import IntEpilogueSpec
        return IntEpilogueSpec(self.acc_bits, self.a_bits) if self.acc_bits >= 8 else None

    def ptq_recipe(self):
        """Integer post-training quantization (`tessera.sim.ptq_int.IntRecipe`)."""
        from tessera.sim.ptq_int import IntRecipe
        return IntRecipe

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

    # -- values <-> codes --------------------------------------------------------------------
    def encode(self, values, *, operand, name=None, mode=None):
        """Signed integer values -> two's complement element codes (uint64, same shape).

        A value must be integral (an integer, or a float with an integral value) and within
        ``-2**(bits-1)..2**(bits-1)-1`` of its operand (``a_bits`` or ``b_bits``); 300 or 0.5
        for int8 raise ``ValueError("a[i]: 300 is out of range; allowed: integers -128..127
        (signed 8-bit)")``. Nothing is rounded or wrapped.
        """
        self.mode_code(mode)
        bits = self._operand_bits(operand)
        return int_codes(values, bits, True, name=name or operand)

    def decode(self, codes, *, mode=None, operand=None):
        """Result codes (``acc_bits`` two's complement) -> int64 values; with ``operand``
        (``"a"``/``"b"``) element codes of that operand -> int64 values instead."""
        self.mode_code(mode)
        bits = self.acc_bits if operand is None else self._operand_bits(operand)
        return signed_values(codes, bits)

    def acc_bound(self, k, *, mode=None):
        """``(K * 2**(a_bits-1) * 2**(b_bits-1), 2**(acc_bits-1) - 1)``: the largest |sum| of
        ``k`` products (every product (-2**(a_bits-1)) * (-2**(b_bits-1))) and the largest
        magnitude the accumulator holds."""
        self.mode_code(mode)
        return (check_k(k) << (self.a_bits - 1 + self.b_bits - 1),
                (1 << (self.acc_bits - 1)) - 1)

    def _operand_bits(self, operand):
        return {"a": self.a_bits, "b": self.b_bits}[check_operand(operand)]

    def reference(self, a, b, *, k_split=None, mode=None):
        """Exact int64 matrix product, then the two's complement wrap (independent of the twin;
        the wrap makes the K split irrelevant: addition is associative modulo 2**acc_bits)."""
        from tessera.sim import intmac
        x = intmac.from_codes(a, self.a_bits)
        y = intmac.from_codes(b, self.b_bits)
        return intmac.to_codes(intmac.wrap(x @ y, self.acc_bits), self.acc_bits)

    @classmethod
    def units(cls):
        from tessera.generators.kinds.unitspec import Option, Unit
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
