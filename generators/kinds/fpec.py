"""PE kind ``fpec``: fixed point with error compensation (Compensated-DNN, DAC 2018)."""

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from tessera.generators.kinds.base import (ConfigError, OperandLayout, PEKind, PEResources,
                                          check_int)
from tessera.generators.kinds.int import WrapAddCombiner
from tessera.hdl.arith.params import int_acc_latency


__all__ = ["FpecKind"]


@dataclass(frozen=True)
class FpecKind(PEKind):
    """``[pe] kind = "fpec"``: FPEC operands (``a``/``b``: signed fixed point with
    ``*_int_bits`` integer and ``*_frac_bits`` fraction bits, plus EZB, EDB and ``emb_bits``
    EMB bits), a compensated MAC per PE (`FpecMacPE`), result codes ``(P << s) + C`` in units
    of ``2**-(a_frac_bits + b_frac_bits + s)`` wrapped at ``acc_bits``. ``threshold`` (in LSBs)
    is the host quantizer's EZB threshold. Across RUNs the result codes add with a wrap (the
    same as accumulating P and C on, since ``(P, C) -> (P << s) + C`` is linear)."""
    name = "fpec"
    #: Why ``memory.p_depth`` is refused when `epilogue` is None (`Engine.check`).
    no_epilogue_reason = "the requantizing epilogue needs pe.acc_bits >= 8"
    code = 6
    a_int_bits: int = 3
    a_frac_bits: int = 2
    b_int_bits: int = 1
    b_frac_bits: int = 4
    emb_bits: int = 0
    acc_bits: int = 32
    threshold: float = 0.25

    def __post_init__(self):
        for side in ("a", "b"):
            check_int(f"pe.{side}_int_bits", getattr(self, f"{side}_int_bits"), -8, 15)
            check_int(f"pe.{side}_frac_bits", getattr(self, f"{side}_frac_bits"), -8, 15)
            w = 1 + getattr(self, f"{side}_int_bits") + getattr(self, f"{side}_frac_bits")
            if not 2 <= w <= 16:
                raise ConfigError(f"pe.{side}_int_bits + pe.{side}_frac_bits: 1 + "
                                  f"{side}_int_bits + {side}_frac_bits = {w} computation bits; "
                                  f"allowed: 2..16")
        check_int("pe.emb_bits", self.emb_bits, 0, 2)
        from tessera.sim.fpec import emb_scale
        check_int("pe.acc_bits", self.acc_bits, self.a_w + self.b_w + emb_scale(self.emb_bits)
                  + 1, 64)
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 0.5:
            raise ConfigError(f"pe.threshold: {t!r} is out of range; allowed: numbers in "
                              f"(0, 0.5] (LSBs)")
        object.__setattr__(self, "threshold", float(t))

    # -- formats -------------------------------------------------------------------------------
    @property
    def a_format(self):
        from tessera.hdl.arith.fixed import FixedFormat
        from tessera.sim.fpec import FpecFormat
        return FpecFormat(FixedFormat(self.a_int_bits, self.a_frac_bits), self.emb_bits,
                          self.threshold)

    @property
    def b_format(self):
        from tessera.hdl.arith.fixed import FixedFormat
        from tessera.sim.fpec import FpecFormat
        return FpecFormat(FixedFormat(self.b_int_bits, self.b_frac_bits), self.emb_bits,
                          self.threshold)

    @property
    def a_w(self):
        return 1 + self.a_int_bits + self.a_frac_bits

    @property
    def b_w(self):
        return 1 + self.b_int_bits + self.b_frac_bits

    @property
    def s(self):
        from tessera.sim.fpec import emb_scale
        return emb_scale(self.emb_bits)

    def layout(self, mode=None):
        self.mode_code(mode)
        return OperandLayout(a_elems=1, a_bits=self.a_w + 2 + self.emb_bits, b_elems=1,
                             b_bits=self.b_w + 2 + self.emb_bits)

    @property
    def result_bits(self):
        return self.acc_bits

    @property
    def latency(self):
        return int_acc_latency()    # FpecMacPE: product/compensation registers, accumulator

    def epilogue(self):
        """Bias, the integer requantizer's exact quotient, ReLU/clip, and EZB/EDB/EMB derived
        on chip from the exact remainder by the host quantizer's rule: the outputs are the
        next layer's FPEC activation codes (``a_format``;
        `tessera.generators.kinds.fpec_epilogue.FpecEpilogueSpec`, ``docs/epilogue.md``)."""
        from tessera.generators.kinds.fpec_epilogue import FpecEpilogueSpec
        if self.acc_bits < 8:       # the requantizer's accumulator input is 8..64 bits
            return None
        return FpecEpilogueSpec(self.acc_bits, self.a_format,
                                b_max_int=(1 << (self.b_w - 1)) - 1)

    def parts(self):
        """The PE is an `IntAccPE`: its product, term and wrapping accumulate are parts."""
        return self.make_pe

    def make_pe(self):
        from tessera.hdl.arith.fpec import FpecMacPE
        return FpecMacPE(a_bits=self.a_w, b_bits=self.b_w, emb_bits=self.emb_bits,
                         acc_bits=self.acc_bits)

    def twin(self):
        from tessera.sim.fpec import FpecTwin
        return FpecTwin(self.a_format, self.b_format, self.acc_bits)

    def combiner(self):
        return WrapAddCombiner(self.acc_bits)

    def resources(self):
        """One multiplier of the two ``w``-bit value codes (the compensation terms are shifts
        and adds); LUTs: the default floor, the accumulator's bits. Measured
        (benchmarks/results/approx_units.json): ``fpec6_emb0`` and ``fpec6_emb1`` take 1 DSP
        on ECP5 and UP5K, and 173..257 LUTs."""
        return PEResources(multiplier=(self.a_w, self.b_w), luts=super().resources().luts)

    def ptq_recipe(self):
        """FPEC post-training quantization (`tessera.sim.ptq_fpec.FpecRecipe`)."""
        from tessera.sim.ptq_fpec import FpecRecipe
        return FpecRecipe

    def formats(self):
        return fpec_formats(self.a_format, self.b_format, self.acc_bits)

    # -- host side: float tensors <-> codes ------------------------------------------------------
    def encode_operands(self, a, b):
        """Float A (M x K) and B (K x N) -> element codes for `TesseraDriver.gemm`."""
        from tessera.sim.fpec import quantize_operands
        return quantize_operands(self, a, b)

    def result_values(self, codes):
        """Result codes -> float64 values."""
        from tessera.sim.fpec import result_values
        return result_values(self, codes)

    # -- workloads -----------------------------------------------------------------------------
    # -- values <-> codes (the driver's value path) ---------------------------------------------
    def encode(self, values, *, operand, name=None, mode=None):
        """Fixed-point levels -> element codes (uint64, same shape), exact.

        A value is a level of the operand's signed fixed-point format: a multiple of the LSB
        ``2**-frac_bits`` within ``min_int * LSB .. max_int * LSB``. Its code carries EZB
        set (no compensation: the quantization error of an exact level is zero), so the core's
        result is the exact dot product of the values. An activation (``operand="a"``) may also
        be a level plus an error estimate, as the FPEC epilogue's outputs decode
        (`tessera.sim.fpec.compensated_codes` gives their codes back), so a network's layers
        chain. Anything else (0.3 on a 0.25 grid, a level beyond the range, NaN) raises the
        codec's one-line `ValueError`. Real data
        is quantized with error compensation by the format's quantizer instead
        (`tessera.sim.fpec.quantize_operands`, ``a_format.quantize``), whose codes go to the
        driver as raw codes.
        """
        from tessera.generators.kinds.int import as_reals, check_operand, first_bad, grid_levels
        f = self.a_format if check_operand(operand) == "a" else self.b_format
        self.mode_code(mode)
        name = name or operand
        allowed = self.value_range(operand)
        arr, x, inexact = as_reals(values, name, allowed)
        q, on, inr = grid_levels(x, f.fixed.frac_bits, f.fixed.min_int, f.fixed.max_int)
        off = ~np.isfinite(x) | ~on | inexact | ~inr
        if operand == "a" and off.any():
            # An activation the FPEC epilogue wrote: a level plus its error estimate (EZB
            # clear); its code is the one the epilogue wrote (`compensated_codes`).
            from tessera.sim.fpec import compensated_codes
            try:
                comp = compensated_codes(f, np.where(off, x, 0.0))
            except ValueError:
                comp = None
            if comp is not None and not inexact[off].any():
                return np.where(off, comp, f.pack(q, 1, 0, 0)).astype(np.uint64)
        first_bad(arr, ((~np.isfinite(x), "not a finite number"),
                        (~on | inexact, f"not a multiple of the LSB {_num(f.fixed.lsb)}"),
                        (~inr, "out of range")), name, allowed)
        return f.pack(q, 1, 0, 0)

    def value_range(self, operand):
        """What `encode` accepts for ``operand``, in words (the ``allowed:`` of its messages)."""
        from tessera.generators.kinds.int import check_operand
        fx = (self.a_format if check_operand(operand) == "a" else self.b_format).fixed
        return (f"multiples of {_num(fx.lsb)} in {_num(fx.min_value)}..{_num(fx.max_value)} "
                f"(levels of signed fixed point, {fx.frac_bits} fraction bits)")

    def decode(self, codes, *, mode=None, operand=None):
        """Result codes -> float64 values ``O * 2**-(FBx + FBy + s)``
        (`tessera.sim.fpec.result_values`); with ``operand``, element codes -> the value
        each stands for, level plus error estimate (float64, exact), whatever its EZB."""
        from tessera.generators.kinds.int import check_operand
        from tessera.sim.fpec import result_values
        self.mode_code(mode)
        if operand is None:
            return result_values(self, codes)
        f = self.a_format if check_operand(operand) == "a" else self.b_format
        level, est = f.decode(np.asarray(codes, dtype=np.uint64))
        return level + est

    def acc_bound(self, k, *, mode=None):
        """Worst |result code| of ``k`` products of any element codes, compensation included:
        ``K * (2**(wa-1) * 2**(wb-1) * 2**s + M * (2**(wa-1) + 2**(wb-1)))`` with ``wa``,
        ``wb`` the computation bits and ``M`` the largest error magnitude (1 without EMB
        bits, ``2**(emb_bits+1)`` with), against ``2**(acc_bits-1) - 1``."""
        from tessera.generators.kinds.int import check_k
        from tessera.sim.fpec import emb_magnitude
        self.mode_code(mode)
        m = int(emb_magnitude(self.emb_bits, (1 << self.emb_bits) - 1))
        xa, yb = 1 << (self.a_w - 1), 1 << (self.b_w - 1)
        return (check_k(k) * ((xa * yb << self.s) + m * (xa + yb)),
                (1 << (self.acc_bits - 1)) - 1)

    def operands(self, m, n, k, *, kind, rng, mode=None):
        """Quantized FPEC codes of real data (normal, about a third of the range per sigma);
        ``extremes``: the end levels with every EZB/EDB/EMB combination; ``min``: the most
        negative level, compensated upward with the largest magnitude."""
        fa, fb = self.a_format, self.b_format

        def draw(shape, f):
            if kind == "extremes":
                q = rng.choice(np.array([f.fixed.min_int, f.fixed.max_int]), size=shape)
                return f.pack(q, rng.integers(0, 2, shape), rng.integers(0, 2, shape),
                              rng.integers(0, 1 << f.emb_bits, shape))
            if kind == "min":
                return f.pack(np.full(shape, f.fixed.min_int), 0, 0, (1 << f.emb_bits) - 1)
            return f.quantize(rng.normal(0.0, float(f.fixed.max_value) / 3, shape))
        a, b = draw((m, k), fa), draw((k, n), fb)
        if kind == "zeros_a":
            a[:] = fa.quantize(np.zeros((m, k)))
        if kind == "zeros_b":
            b[:] = fb.quantize(np.zeros((k, n)))
        if kind == "relu":
            x = np.abs(rng.normal(0.0, float(fa.fixed.max_value) / 3, (m, k)))
            a = fa.quantize(np.where(rng.random((m, k)) < 0.5, 0.0, x))
        return a, b

    def reference(self, a, b, *, k_split=None, mode=None):
        """Exact rational arithmetic on the decoded values: ``sum QX*QY + QX*dY + QY*dX``
        (the first-order compensated product, dX*dY dropped) divided by the result unit
        ``2**-(FBx+FBy+s)`` and wrapped; the K split does not matter (wrapping add)."""
        xa = _decode_exact(a, self.a_int_bits, self.a_frac_bits, self.emb_bits)
        yb = _decode_exact(b, self.b_int_bits, self.b_frac_bits, self.emb_bits)
        qx, dx = xa
        qy, dy = yb
        total = qx @ qy + qx @ dy + dx @ qy
        unit = Fraction(2) ** -(self.a_frac_bits + self.b_frac_bits + self.s)
        out = np.empty(total.shape, dtype=np.uint64)
        mod = 1 << self.acc_bits
        for idx, v in np.ndenumerate(total):
            q = v / unit
            assert q.denominator == 1, "compensated sum is not a whole number of result units"
            out[idx] = int(q) % mod
        return out

    @classmethod
    def units(cls):
        from tessera.generators.kinds.unitspec import Option, Unit
        return (
            Unit(name="fpec_mac",
                 summary="FPEC compensated MAC PE (Compensated-DNN): P += qx*qy, compensation "
                         "by add/subtract of the other operand, latency 2",
                 options=(Option("a_int_bits", int, 3, "activation integer bits"),
                          Option("a_frac_bits", int, 0, "activation fraction bits"),
                          Option("b_int_bits", int, 3, "weight integer bits"),
                          Option("b_frac_bits", int, 0, "weight fraction bits"),
                          Option("emb_bits", int, 0, "error-magnitude bits (0..2)"),
                          Option("acc_bits", int, 24, "accumulator width")),
                 build=_fpec_mac, formats=_unit_formats),
        )


def _decode_exact(codes, int_bits, frac_bits, emb_bits):
    """Element codes -> object arrays (levels, error estimates) of Fractions, by plain Python
    bit slicing of the documented layout (not via `tessera.sim.fpec`)."""
    w = 1 + int_bits + frac_bits
    lsb = Fraction(2) ** -frac_bits
    codes = np.asarray(codes, dtype=np.uint64)
    lv = np.empty(codes.shape, dtype=object)
    est = np.empty(codes.shape, dtype=object)
    for idx, c in np.ndenumerate(codes):
        c = int(c)
        q = c & ((1 << w) - 1)
        if q >> (w - 1):
            q -= 1 << w
        ezb = 1 - ((c >> w) & 1)                 # stored inverted: code 0 is exactly 0
        edb, e = (c >> (w + 1)) & 1, (c >> (w + 2)) & ((1 << emb_bits) - 1)
        # |d| = LSB/2, or the upper edge of sub-range e of [LSB/4, LSB/2] (2**m parts).
        mag = lsb / 2 if emb_bits == 0 else lsb / 4 + (e + 1) * (lsb / 4) / (1 << emb_bits)
        lv[idx] = q * lsb
        est[idx] = Fraction(0) if ezb else (-mag if edb else mag)
    return lv, est


def _num(x):
    from tessera.generators.kinds.int import fmt_number
    return fmt_number(Fraction(x))


def fpec_formats(fa, fb, acc_bits):
    s = fa.s
    fbits = fa.fixed.frac_bits + fb.fixed.frac_bits + s
    return {"a": fa.as_dict(), "b": fb.as_dict(),
            "acc": {"kind": "int", "bits": acc_bits, "signed": True, "overflow": "wrap",
                    "value": f"((P << {s}) + C) * 2**-{fbits}", "frac_bits": fbits}}


def _fpec_kind(**kw):
    return FpecKind(a_int_bits=kw["a_int_bits"], a_frac_bits=kw["a_frac_bits"],
                    b_int_bits=kw["b_int_bits"], b_frac_bits=kw["b_frac_bits"],
                    emb_bits=kw["emb_bits"], acc_bits=kw["acc_bits"])


def _fpec_mac(**kw):
    return _fpec_kind(**kw).make_pe()


def _unit_formats(**kw):
    return _fpec_kind(**kw).formats()
