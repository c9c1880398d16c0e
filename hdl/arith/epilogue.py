"""Integer epilogue: bias add, TFLite/gemmlowp requantization, zero point and activation clamp.

The rule (``docs/epilogue.md``; twin `tessera.sim.epilogue.int_epilogue`), for an accumulator
``acc`` and per-output-channel ``bias``, ``mult`` (M) and ``shift``, and per-RUN
``zero_point``, ``lo`` and ``hi``:

1. ``s = wrap(acc + bias)`` in ``acc_bits`` two's complement (the accumulator's own wrap).
2. ``x = min(floor((s * M + 2**30) / 2**31), 2**(W-1) - 1)`` with ``W = max(acc_bits, 32)``:
   gemmlowp's ``SaturatingRoundingDoublingHighMul`` (its nudge-and-truncate is exactly
   round-half-up of ``s * M / 2**31``; the one overflow, ``s = M = -2**31``, saturates to
   ``2**31 - 1``). For ``acc_bits <= 32`` this is gemmlowp on ``int32(s)`` exactly; wider
   accumulators get the same formula in full width, saturated to their own range.
3. ``y = x / 2**shift`` rounded half away from zero (gemmlowp's ``RoundingDivideByPOT``).
4. ``out = min(max(y + zero_point, lo), hi)`` (TFLite's clamp order: ``lo > hi`` gives ``hi``);
   ``lo`` and ``hi`` are ``out_bits`` signed, so the result is inside the operand format.
"""

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = ["IntEpilogue", "shift_bits_for"]


def shift_bits_for(acc_bits):
    """Bits of the ``shift`` field: enough for right shifts 0..acc_bits+31."""
    return (acc_bits + 31).bit_length()


class IntEpilogue(wiring.Component):
    """One lane of the integer epilogue (module docstring: the rule), pipelined, II = 1.

    Pipeline (every stage registered): 1 bias add; 2 the ``acc_bits`` x 32 product (one
    multiplier, an output register for a DSP block); 3 rounding high half and saturation;
    4 rounding right shift (an adder and a barrel shifter capped at ``acc_bits + 1``, beyond
    which every result is 0); 5 zero point and clamp. Inputs presented with ``valid`` in cycle
    t give ``out`` with ``out_valid`` in cycle t + `latency`; all inputs are sampled with
    ``valid``.

    Parameters
    ----------
    acc_bits : int
        Accumulator width, 8..64.
    out_bits : int
        Output (operand format) width, 2..32.

    Members
    -------
    valid : In(1)
    acc, bias : In(signed(acc_bits))
    mult : In(signed(32))
    shift : In(unsigned(shift_bits))
        Right shift; ``shift_bits = (acc_bits + 31).bit_length()``; every value is defined.
    zero_point, lo, hi : In(signed(out_bits))
    out_valid : Out(1)
    out : Out(signed(out_bits))
    """

    MULT_BITS = 32

    def __init__(self, *, acc_bits, out_bits):
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not 8 <= acc_bits <= 64:
            raise ValueError(f"acc_bits must be an integer 8..64, not {acc_bits!r}")
        if isinstance(out_bits, bool) or not isinstance(out_bits, int) or not 2 <= out_bits <= 32:
            raise ValueError(f"out_bits must be an integer 2..32, not {out_bits!r}")
        self._acc_bits, self._out_bits = acc_bits, out_bits
        self._shift_bits = shift_bits_for(acc_bits)
        super().__init__({
            "valid": In(1),
            "acc": In(signed(acc_bits)), "bias": In(signed(acc_bits)),
            "mult": In(signed(self.MULT_BITS)), "shift": In(unsigned(self._shift_bits)),
            "zero_point": In(signed(out_bits)), "lo": In(signed(out_bits)),
            "hi": In(signed(out_bits)),
            "out_valid": Out(1), "out": Out(signed(out_bits)),
        })

    @property
    def acc_bits(self):
        return self._acc_bits

    @property
    def out_bits(self):
        return self._out_bits

    @property
    def mult_bits(self):
        return self.MULT_BITS

    @property
    def shift_bits(self):
        return self._shift_bits

    @property
    def latency(self):
        """Cycles from ``valid`` to ``out_valid``: 5 (one register per pipeline stage)."""
        return 5

    def elaborate(self, platform):
        m = Module()
        a = self._acc_bits
        cap = a + 1            # shifts >= cap give 0 for every x (|x| <= 2**(a-1))

        def stage(name, shape, value):
            reg = Signal(shape, name=name, reset_less=True)
            m.d.sync += reg.eq(value)
            return reg

        def carry(sig, n, name):
            """``sig`` delayed by ``n`` registers (fields used ``n`` stages later)."""
            out = []
            for i in range(n):
                sig = stage(f"{name}_{i + 1}", sig.shape(), sig)
                out.append(sig)
            return out

        valids = [self.valid]
        for i in range(self.latency):
            v = Signal(name=f"valid_{i + 1}")
            m.d.sync += v.eq(valids[-1])
            valids.append(v)
        mult = carry(self.mult, 1, "mult")
        shift = carry(self.shift, 2, "shift")
        zp = carry(self.zero_point, 4, "zp")
        lo = carry(self.lo, 4, "lo")
        hi = carry(self.hi, 4, "hi")

        # 1: bias add, wrapping like the accumulator.
        s = stage("s", signed(a), self.acc + self.bias)
        # 2: the one multiplier.
        p = stage("p", signed(a + 32), s * mult[0])
        # 3: round half up of p / 2**31, saturated to W = max(a, 32) bits (only a >= 32 can
        #    overflow: s = -2**(a-1), M = -2**31 gives +2**(a-1)); the rounding addend of stage
        #    4 is formed here from the sign and the shift.
        t = (p + (1 << 30)) >> 31                         # signed(a + 2)
        if a >= 32:
            top = (1 << (a - 1)) - 1
            t = Mux(t > top, top, t)
        x = stage("x", signed(a + 1), t)
        sh3 = Mux(shift[1] > cap, cap, shift[1])
        sh = stage("sh", range(cap + 1), sh3)
        # 2**(sh-1) - 1 as a thermometer (bit i set when sh >= i + 2), plus 1 for x >= 0.
        half = Cat(*(sh3 >= i + 2 for i in range(cap - 1)))
        addend = stage("addend", unsigned(cap), half + ((t >= 0) & (sh3 != 0)))
        # 4: rounding right shift, half away from zero: floor((x + addend) / 2**sh).
        y = stage("y", signed(a + 2), (x + addend) >> sh)
        # 5: zero point, then max(., lo), then min(., hi).
        z = y + zp[3]
        z = Mux(z < lo[3], lo[3], z)
        z = Mux(z > hi[3], hi[3], z)
        m.d.sync += self.out.eq(z)
        m.d.comb += self.out_valid.eq(valids[-1])
        return m
