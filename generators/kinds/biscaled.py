"""PE kind ``biscaled``: BiScaled fixed point (BiScaled-DNN, DAC 2019)."""

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from tessera.generators.kinds.base import (ConfigError, OperandLayout, PEKind, PEResources,
                                          check_int)
from tessera.generators.kinds.int import WrapAddCombiner
from tessera.hdl.arith.params import int_acc_latency


__all__ = ["BiScaledKind"]


@dataclass(frozen=True)
class BiScaledKind(PEKind):
    """``[pe] kind = "biscaled"``: ``a_bits``/``b_bits``-wide signed codes, each at scale-fine
    (``*_fine_frac_bits``) or scale-wide (``*_wide_frac_bits``) by a per-element selector;
    a MAC per PE that shifts each product by 0, Da, Db or Da + Db (`BiScaledMacPE`); result
    codes in units of ``2**-(a_fine_frac_bits + b_fine_frac_bits)``, wrapped at ``acc_bits``
    (also across RUNs). ``block`` is the host storage block of the scale-wide index lists.

    Lanes: an A lane is the code with the selector as a side-band bit above it; a B element is
    the code with its selector in the bit above it (``b_bits + 1`` bits).
    """
    name = "biscaled"
    #: Why ``memory.p_depth`` is refused (`Engine.check`): only below 8 accumulator bits.
    no_epilogue_reason = "the requantizing epilogue needs pe.acc_bits >= 8"
    code = 7
    a_bits: int = 6
    a_fine_frac_bits: int = 3
    a_wide_frac_bits: int = 0
    b_bits: int = 6
    b_fine_frac_bits: int = 4
    b_wide_frac_bits: int = 2
    block: int = 64
    acc_bits: int = 32

    def __post_init__(self):
        for side in ("a", "b"):
            check_int(f"pe.{side}_bits", getattr(self, f"{side}_bits"), 2, 16)
            check_int(f"pe.{side}_fine_frac_bits", getattr(self, f"{side}_fine_frac_bits"),
                      -16, 32)
            fine = getattr(self, f"{side}_fine_frac_bits")
            check_int(f"pe.{side}_wide_frac_bits", getattr(self, f"{side}_wide_frac_bits"),
                      fine - 16, fine - 1)
        if self.block not in tuple(1 << i for i in range(1, 13)):
            raise ConfigError(f"pe.block: {self.block!r} is not a power of two; allowed: "
                              f"2, 4, ..., 4096")
        check_int("pe.acc_bits", self.acc_bits,
                  self.a_bits + self.b_bits + self.a_format.d + self.b_format.d, 64)

    @property
    def a_format(self):
        from tessera.sim.biscaled import BiScaledFormat
        return BiScaledFormat(self.a_bits, self.a_fine_frac_bits, self.a_wide_frac_bits,
                              self.block)

    @property
    def b_format(self):
        from tessera.sim.biscaled import BiScaledFormat
        return BiScaledFormat(self.b_bits, self.b_fine_frac_bits, self.b_wide_frac_bits,
                              self.block)

    def layout(self, mode=None):
        self.mode_code(mode)
        return OperandLayout(a_elems=1, a_bits=self.a_bits, a_side_bits=1, b_elems=1,
                             b_bits=self.b_bits + 1)

    @property
    def result_bits(self):
        return self.acc_bits

    @property
    def latency(self):
        return int_acc_latency()    # BiScaledMacPE: product register, shift + accumulate

    def parts(self):
        """The PE is an `IntAccPE`: its product, term and wrapping accumulate are parts."""
        return self.make_pe

    def make_pe(self):
        from tessera.hdl.arith.biscaled import BiScaledMacPE
        return BiScaledMacPE(a_bits=self.a_bits, b_bits=self.b_bits, da=self.a_format.d,
                             db=self.b_format.d, acc_bits=self.acc_bits)

    def twin(self):
        from tessera.sim.biscaled import BiScaledTwin
        return BiScaledTwin(self.a_format, self.b_format, self.acc_bits)

    def combiner(self):
        return WrapAddCombiner(self.acc_bits)

    def epilogue(self):
        """Bias, TFLite/gemmlowp requantization onto the A format's scale-fine grid, clamp,
        then per element scale-fine when the level is a code, else re-rounded to scale-wide:
        the next layer's A lane element (code | selector << bits)
        (`tessera.generators.kinds.biscaled_epilogue.BiScaledEpilogueSpec`;
        docs/epilogue.md). None for accumulators under 8 bits."""
        from tessera.generators.kinds.biscaled_epilogue import BiScaledEpilogueSpec
        if self.acc_bits < 8:
            return None
        return BiScaledEpilogueSpec(self.acc_bits, self.a_format, b_fmt=self.b_format)

    def resources(self):
        """One multiplier of the two codes (the scale is a 4-setting shift); LUTs: the default
        floor, the accumulator's bits. Measured (benchmarks/results/approx_units.json):
        ``biscaled6`` takes 1 DSP on ECP5 and UP5K, and 127 / 167 LUTs."""
        return PEResources(multiplier=(self.a_bits, self.b_bits),
                           luts=super().resources().luts)

    def ptq_recipe(self):
        """BiScaled post-training quantization (`tessera.sim.ptq_biscaled.BiScaledRecipe`)."""
        from tessera.sim.ptq_biscaled import BiScaledRecipe
        return BiScaledRecipe

    def formats(self):
        return biscaled_formats(self.a_format, self.b_format, self.acc_bits)

    # -- host side: float tensors <-> codes ------------------------------------------------------
    def encode_operands(self, a, b, **kw):
        """Float A (M x K) and B (K x N) -> lane codes for `TesseraDriver.gemm`, through the
        storage format (`tessera.sim.biscaled.encode_operands`; ``threshold_a``/``_b`` or
        ``mask_a``/``_b`` override the histogram tail threshold)."""
        from tessera.sim.biscaled import encode_operands
        return encode_operands(self, a, b, **kw)[:2]

    def result_values(self, codes):
        """Result codes -> float64 values."""
        from tessera.sim.biscaled import result_values
        return result_values(self, codes)

    # -- values <-> codes (the driver's value path) ---------------------------------------------
    def encode(self, values, *, operand, name=None, mode=None):
        """Exactly representable values -> lane element codes (code | selector << bits, as
        `operands` makes them; uint64, same shape).

        A value is representable when it is a level of scale-fine (a multiple of
        ``2**-fine_frac_bits`` within its range) or of scale-wide (a multiple of
        ``2**-wide_frac_bits`` within its wider range). Scale-fine is chosen where both hold,
        so a code is canonical; the result is the exact dot product of the values. Anything
        else (off the scale-fine grid, beyond scale-fine and off the scale-wide grid, beyond
        scale-wide, NaN) raises the codec's one-line `ValueError`. Real data goes through the
        histogram encoder instead (`encode_operands`), whose codes the driver takes raw.
        """
        from tessera.generators.kinds.int import as_reals, check_operand, first_bad, grid_levels
        f = self.a_format if check_operand(operand) == "a" else self.b_format
        self.mode_code(mode)
        name = name or operand
        allowed = self.value_range(operand)
        arr, x, inexact = as_reals(values, name, allowed)
        lo, hi = f.fine.min_int, f.fine.max_int
        qf, on_f, in_f = grid_levels(x, f.fine_frac_bits, lo, hi)
        qw, on_w, in_w = grid_levels(x, f.wide_frac_bits, lo, hi)
        first_bad(arr, ((~np.isfinite(x), "not a finite number"),
                        (~on_f | inexact, f"not a multiple of the scale-fine LSB "
                                f"{_num(f.fine.lsb)}"),
                        (~in_f & ~in_w & _beyond(x, f.wide), "out of range"),
                        (~in_f & ~in_w, f"beyond scale-fine and not a multiple of the "
                                        f"scale-wide LSB {_num(f.wide.lsb)}")), name, allowed)
        sw = ~in_f
        return f.lane_codes(f.fine.to_code(np.where(sw, qw, qf)), sw.astype(np.int64))

    def value_range(self, operand):
        """What `encode` accepts for ``operand``, in words (the ``allowed:`` of its messages)."""
        from tessera.generators.kinds.int import check_operand
        f = self.a_format if check_operand(operand) == "a" else self.b_format
        return (f"multiples of {_num(f.fine.lsb)} in {_num(f.fine.min_value)}.."
                f"{_num(f.fine.max_value)} (scale-fine) or of {_num(f.wide.lsb)} in "
                f"{_num(f.wide.min_value)}..{_num(f.wide.max_value)} (scale-wide)")

    def decode(self, codes, *, mode=None, operand=None):
        """Result codes -> float64 values in units of ``2**-(FBx_fine + FBy_fine)``
        (`tessera.sim.biscaled.result_values`); with ``operand``, lane element codes ->
        their values (float64, exact)."""
        from tessera.generators.kinds.int import check_operand
        self.mode_code(mode)
        if operand is None:
            return self.result_values(codes)
        f = self.a_format if check_operand(operand) == "a" else self.b_format
        return f.decode(*f.split_lane_codes(codes))

    def acc_bound(self, k, *, mode=None):
        """``K * 2**(a_bits-1) * 2**(b_bits-1) * 2**(Da + Db)`` in result units (both operands
        the most negative code at scale-wide) against ``2**(acc_bits-1) - 1``."""
        from tessera.generators.kinds.int import check_k
        self.mode_code(mode)
        return (check_k(k) << (self.a_bits - 1 + self.b_bits - 1 + self.a_format.d
                               + self.b_format.d), (1 << (self.acc_bits - 1)) - 1)

    # -- workloads -----------------------------------------------------------------------------
    def operands(self, m, n, k, *, kind, rng, mode=None):
        """Lane codes of long-tailed data (Laplace with a scale of a quarter of the scale-fine
        range), encoded by the histogram tail threshold and stored/decoded through the block
        index lists; ``extremes``: end codes with random selectors; ``min``: the most negative
        code, scale-wide (the largest shifted products)."""
        fa, fb = self.a_format, self.b_format

        def draw(shape, f):
            if kind == "extremes":
                q = rng.choice(np.array([f.fine.min_int, f.fine.max_int]), size=shape)
                return f.lane_codes(f.fine.to_code(q), rng.integers(0, 2, shape))
            if kind == "min":
                return f.lane_codes(f.fine.to_code(np.full(shape, f.fine.min_int)),
                                    np.ones(shape, dtype=np.int64))
            x = rng.laplace(0.0, float(f.fine.max_value) / 4, shape)
            if kind == "relu" and f is fa:
                x = np.where(rng.random(shape) < 0.5, 0.0, np.abs(x))
            if kind == ("zeros_a" if f is fa else "zeros_b"):
                x = np.zeros(shape)
            codes, sw = f.encode(x)
            # Through the storage format: dense codes + per-block index lists, then decoded.
            store = f.store(codes, sw)
            return f.lane_codes(store.codes, store.selector()).reshape(shape)
        return draw((m, k), fa), draw((k, n), fb)

    def reference(self, a, b, *, k_split=None, mode=None):
        """Exact rational arithmetic: ``sum value(x) * value(y)`` over the decoded values,
        divided by the result unit ``2**-(FBx_fine + FBy_fine)`` and wrapped (the K split does
        not matter: wrapping add)."""
        x = _decode_exact(a, self.a_bits, self.a_fine_frac_bits, self.a_wide_frac_bits)
        y = _decode_exact(b, self.b_bits, self.b_fine_frac_bits, self.b_wide_frac_bits)
        total = x @ y
        unit = Fraction(2) ** -(self.a_fine_frac_bits + self.b_fine_frac_bits)
        out = np.empty(total.shape, dtype=np.uint64)
        mod = 1 << self.acc_bits
        for idx, v in np.ndenumerate(total):
            q = v / unit
            assert q.denominator == 1
            out[idx] = int(q) % mod
        return out

    @classmethod
    def units(cls):
        from tessera.generators.kinds.unitspec import Option, Unit
        return (
            Unit(name="biscaled_dot",
                 summary="BiScaled MAC PE (BiScaled-DNN): one multiplier and a 0/Da/Db/Da+Db "
                         "shifter selected by the operands' scale bits, latency 2",
                 options=(Option("a_bits", int, 5, "activation code bits (sign included)"),
                          Option("a_fine_frac_bits", int, 0, "activation scale-fine FB"),
                          Option("a_wide_frac_bits", int, -2, "activation scale-wide FB"),
                          Option("b_bits", int, 5, "weight code bits (sign included)"),
                          Option("b_fine_frac_bits", int, 0, "weight scale-fine FB"),
                          Option("b_wide_frac_bits", int, -2, "weight scale-wide FB"),
                          Option("acc_bits", int, 24, "accumulator width")),
                 build=lambda **kw: BiScaledKind(**kw).make_pe(),
                 formats=lambda **kw: BiScaledKind(**kw).formats()),
            Unit(name="biscaled_decoder",
                 summary="BiScaled selector decoder: block index lists + code stream -> "
                         "(code, sw) stream, in step",
                 options=(Option("code_bits", int, 6, "element code width"),
                          Option("block", int, 64, "elements per block (power of two)")),
                 build=_decoder),
        )


def _decoder(*, code_bits, block):
    from tessera.hdl.arith.biscaled_decoder import BiScaledSelectorDecoder
    return BiScaledSelectorDecoder(code_bits=code_bits, block=block)


def _decode_exact(lanes, bits, fine_fb, wide_fb):
    """Lane codes -> object array of exact Fraction values, by plain bit slicing."""
    lanes = np.asarray(lanes, dtype=np.uint64)
    out = np.empty(lanes.shape, dtype=object)
    for idx, c in np.ndenumerate(lanes):
        c = int(c)
        q = c & ((1 << bits) - 1)
        if q >> (bits - 1):
            q -= 1 << bits
        out[idx] = q * Fraction(2) ** -(wide_fb if (c >> bits) & 1 else fine_fb)
    return out


def _num(x):
    from tessera.generators.kinds.int import fmt_number
    return fmt_number(Fraction(x))


def _beyond(x, fixed):
    """Values outside ``fixed``'s range (at any grid)."""
    with np.errstate(invalid="ignore"):
        return (x < float(fixed.min_value)) | (x > float(fixed.max_value))


def biscaled_formats(fa, fb, acc_bits):
    return {"a": fa.as_dict(), "b": fb.as_dict(),
            "acc": {"kind": "int", "bits": acc_bits, "signed": True, "overflow": "wrap",
                    "frac_bits": fa.fine_frac_bits + fb.fine_frac_bits}}
