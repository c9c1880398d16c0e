"""BiScaled epilogue: the integer requantization (`tessera.hdl.arith.epilogue.IntEpilogue`)
onto the next layer's scale-fine integer grid, then the per-element scale choice of the
BiScaled A operand (docs/epilogue.md, "biscaled"; twin `tessera.sim.biscaled_epilogue`).

For codes of ``bits`` bits and the scale distance ``D``:

1. ``z`` = the integer epilogue's output at ``level_bits = bits + D`` signed bits (bias,
   gemmlowp high half, rounding divide, zero point, clamp ``lo``/``hi``): a scale-fine level.
2. ``z`` inside the code range ``-2**(bits-1) .. 2**(bits-1) - 1``: code ``z``, selector 0.
3. Else ``w = z / 2**D`` rounded half away from zero, clamped to the code range: code ``w``,
   selector 1 (scale-wide); when ``w * 2**D`` is a code (the range's ends), that code with
   selector 0 (canonical, as the kind's codec writes the value).
4. ``out = code | selector << bits`` (the A lane element: code plus its side-band selector).
"""

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tessera.hdl.arith.epilogue import IntEpilogue, shift_bits_for


__all__ = ["BiScaledEpilogue"]


class BiScaledEpilogue(wiring.Component):
    """One lane of the BiScaled epilogue (module docstring: the rule), pipelined, II = 1.

    Pipeline: the 5 stages of `IntEpilogue` (output ``level_bits`` wide), then 1 registered
    stage: the range test, the rounding shift by ``D`` (an adder; the shift is wiring), the
    clamp and the selector mux. Latency 6.

    Parameters
    ----------
    acc_bits : int
        Accumulator width, 8..64.
    bits : int
        The A code width (sign included), 2..16.
    d : int
        ``fine_frac_bits - wide_frac_bits`` of the A format, 1..16.

    Members
    -------
    valid : In(1)
    acc, bias : In(signed(acc_bits))
    mult : In(signed(32))
    shift : In(unsigned(shift_bits))
    zero_point, lo, hi : In(signed(bits + d))
        Scale-fine levels.
    out_valid : Out(1)
    out : Out(unsigned(bits + 1))
        Code in bits 0..bits-1, the selector (1: scale-wide) in bit ``bits``.
    """

    #: `IntEpilogue`'s latency (checked when elaborating).
    INT_LATENCY = 5

    def __init__(self, *, acc_bits, bits, d):
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not 8 <= acc_bits <= 64:
            raise ValueError(f"acc_bits must be an integer 8..64, not {acc_bits!r}")
        if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
            raise ValueError(f"bits must be an integer 2..16, not {bits!r}")
        if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 16:
            raise ValueError(f"d must be an integer 1..16, not {d!r}")
        self._acc_bits, self._bits, self._d = acc_bits, bits, d
        lb = bits + d
        super().__init__({
            "valid": In(1),
            "acc": In(signed(acc_bits)), "bias": In(signed(acc_bits)),
            "mult": In(signed(32)), "shift": In(unsigned(shift_bits_for(acc_bits))),
            "zero_point": In(signed(lb)), "lo": In(signed(lb)), "hi": In(signed(lb)),
            "out_valid": Out(1), "out": Out(unsigned(bits + 1)),
        })

    @property
    def latency(self):
        """Cycles from ``valid`` to ``out_valid``: `IntEpilogue`'s 5, plus the selection."""
        return self.INT_LATENCY + 1

    def elaborate(self, platform):
        m = Module()
        b, d = self._bits, self._d
        q = IntEpilogue(acc_bits=self._acc_bits, out_bits=b + d)
        assert q.latency == self.INT_LATENCY
        m.submodules.requant = q
        for name in ("valid", "acc", "bias", "mult", "shift", "zero_point", "lo", "hi"):
            m.d.comb += getattr(q, name).eq(getattr(self, name))
        z = q.out                                   # signed(bits + d)
        cmin, cmax = -(1 << (b - 1)), (1 << (b - 1)) - 1
        fits = (z >= cmin) & (z <= cmax)
        w = (z + ((1 << (d - 1)) - (z < 0))) >> d   # half away from zero
        w = Mux(w > cmax, cmax, Mux(w < cmin, cmin, w))
        back = (w >= -((1 << (b - 1)) >> d)) & (w <= ((1 << (b - 1)) - 1) >> d)
        code = Mux(fits, z, Mux(back, w << d, w))
        valid = Signal(name="valid_sel")
        m.d.sync += [self.out.eq(Cat(code[:b], ~fits & ~back)), valid.eq(q.out_valid)]
        m.d.comb += self.out_valid.eq(valid)
        return m
