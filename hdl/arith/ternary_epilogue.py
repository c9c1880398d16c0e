"""Ternary epilogue: bias add, then the k-bit bounded-ReLU activation quantizer of
`tessera.sim.ternary` with a per-channel step (multiplier and shift).

The rule (``docs/epilogue.md``; twin `tessera.sim.ternary_epilogue.ternary_epilogue`,
independent reference `tessera.sim.ternary_epilogue_ref`), for an accumulator ``acc`` and the
per-output-channel ``bias``, ``mult`` and ``shift``:

1. ``s = wrap(acc + bias)`` in ``acc_bits`` two's complement;
2. ``y = s * mult / 2**shift`` (the quantizer's input in output-code units);
3. ``q = floor(clip(y, 0, 2**k - 1) + 1/2)``, ``k = act_bits``: in integers
   ``clip((s * mult + 2**(shift-1)) >> shift, 0, 2**k - 1)``, which equals
   ``quantize_act(y / (2**k - 1), k)`` of `tessera.sim.ternary` exactly.
"""

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = ["TernaryEpilogue", "MULT_BITS", "shift_bits_for"]

#: Width of the unsigned multiplier.
MULT_BITS = 16


def shift_bits_for(acc_bits):
    """Bits of the ``shift`` field: enough for right shifts 0..acc_bits+MULT_BITS."""
    return (acc_bits + MULT_BITS).bit_length()


class TernaryEpilogue(wiring.Component):
    """One lane of the ternary epilogue (module docstring: the rule), pipelined, II = 1.

    Pipeline (every stage registered): 1 bias add (and the inputs sampled); 2 the
    ``acc_bits`` x `MULT_BITS` product (one multiplier); 3 rounding shift (a barrel shifter
    capped at ``acc_bits + MULT_BITS``, then one adder: ``((p >> (shift-1)) + 1) >> 1``);
    4 clamp to ``0 .. 2**act_bits - 1``. Inputs presented with ``valid`` in cycle t give
    ``out`` with ``out_valid`` in cycle t + 4.

    Parameters
    ----------
    acc_bits : int
        Accumulator width, 8..64.
    act_bits : int
        Output activation code width ``k``, 1..16.

    Members
    -------
    valid : In(1)
    acc, bias : In(signed(acc_bits))
    mult : In(unsigned(16))
    shift : In(unsigned(shift_bits))
        ``shift_bits = (acc_bits + 16).bit_length()``; every value is defined.
    out_valid : Out(1)
    out : Out(unsigned(act_bits))
    """

    def __init__(self, *, acc_bits, act_bits):
        if isinstance(acc_bits, bool) or not isinstance(acc_bits, int) or not 8 <= acc_bits <= 64:
            raise ValueError(f"acc_bits must be an integer 8..64, not {acc_bits!r}")
        if isinstance(act_bits, bool) or not isinstance(act_bits, int) or not 1 <= act_bits <= 16:
            raise ValueError(f"act_bits must be an integer 1..16, not {act_bits!r}")
        self._acc_bits, self._act_bits = acc_bits, act_bits
        self._shift_bits = shift_bits_for(acc_bits)
        super().__init__({
            "valid": In(1),
            "acc": In(signed(acc_bits)), "bias": In(signed(acc_bits)),
            "mult": In(unsigned(MULT_BITS)), "shift": In(unsigned(self._shift_bits)),
            "out_valid": Out(1), "out": Out(unsigned(act_bits)),
        })

    acc_bits = property(lambda self: self._acc_bits)
    act_bits = property(lambda self: self._act_bits)
    shift_bits = property(lambda self: self._shift_bits)
    mult_bits = property(lambda self: MULT_BITS)

    @property
    def latency(self):
        """Cycles from ``valid`` to ``out_valid``: 4 (one register per pipeline stage)."""
        return 4

    def elaborate(self, platform):
        m = Module()
        a, k = self._acc_bits, self._act_bits
        cap = a + MULT_BITS          # shifts >= cap give 0 for every product

        def stage(name, shape, value):
            reg = Signal(shape, name=name, reset_less=True)
            m.d.sync += reg.eq(value)
            return reg

        valids = [self.valid]
        for i in range(self.latency):
            v = Signal(name=f"valid_{i + 1}")
            m.d.sync += v.eq(valids[-1])
            valids.append(v)
        m.d.comb += self.out_valid.eq(valids[-1])

        # 1: bias add, wrapping; the step sampled (the shift capped).
        s = stage("s", signed(a), (self.acc + self.bias)[:a].as_signed())
        mult = stage("mult_1", unsigned(MULT_BITS), self.mult)
        sh = stage("shift_1", range(cap + 1),
                   Mux(self.shift > cap, cap, self.shift))
        # 2: the product (|s * mult| < 2**(a + 15): a + 16 signed bits).
        p = stage("p", signed(a + MULT_BITS + 1), s * mult)
        sh2 = stage("shift_2", range(cap + 1), sh)
        # 3: round half up and shift: floor((p + 2**(sh-1)) / 2**sh)
        #    = floor((floor(p / 2**(sh-1)) + 1) / 2) for sh >= 1.
        part = Signal(signed(a + MULT_BITS + 1))
        m.d.comb += part.eq(p >> (sh2 - 1)[:len(sh2)])
        y = stage("y", signed(a + MULT_BITS + 1),
                  Mux(sh2 == 0, p, (part + 1) >> 1))
        # 4: clamp to the k-bit activation range.
        top = (1 << k) - 1
        out = stage("q", unsigned(k), Mux(y < 0, 0, Mux(y > top, top, y[:k])))
        m.d.comb += self.out.eq(out)
        return m
