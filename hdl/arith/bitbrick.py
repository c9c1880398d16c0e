"""BitBrick: the 2-bit x 2-bit multiplier of Bit Fusion, each operand signed or unsigned."""

from amaranth import Cat, Const, Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


__all__ = ["BitBrick", "BRICK_MIN", "BRICK_MAX", "brick_product"]

#: The product range over every legal use: signed x signed, signed x unsigned, unsigned x
#: unsigned 2-bit digits give -6 (-2 * 3) .. 9 (3 * 3).
BRICK_MIN, BRICK_MAX = -6, 9


def brick_product(x, y, x_signed, y_signed):
    """The product a BitBrick computes, as a Python integer (the HDL's truth table)."""
    xv = x - 4 if x_signed and x & 2 else x
    yv = y - 4 if y_signed and y & 2 else y
    return xv * yv


class BitBrick(wiring.Component):
    """A 2-bit x 2-bit multiplier with a signed/unsigned mode per operand (Sharma et al.).

    Each operand is extended to 3 bits, the third bit being the operand's bit 1 when it is
    signed and 0 otherwise, and the two 3-bit two's complement values are multiplied. The
    product of legal operands lies in -6..9 and fits a 5-bit signed output.

    Combinational (latency 0). The product is a 64-entry truth table (a constant indexed by
    the six input bits) rather than a ``*``: yosys would map every 2-bit ``$mul`` onto its own
    DSP block (ECP5 MULT18X18D, iCE40 SB_MAC16), while the table becomes a few LUTs.

    Members
    -------
    x, y : In(2)
        The operand digits.
    x_signed, y_signed : In(1)
        1: the digit is a signed top digit (pattern 10 is -2, 11 is -1).
    p : Out(signed(5))
        The product.
    """

    def __init__(self):
        super().__init__({"x": In(2), "y": In(2), "x_signed": In(1), "y_signed": In(1),
                          "p": Out(signed(5))})

    @property
    def latency(self):
        return 0

    def elaborate(self, platform):
        m = Module()
        table = 0
        for code in range(64):
            x, y, sx, sy = code & 3, (code >> 2) & 3, (code >> 4) & 1, code >> 5
            table |= (brick_product(x, y, sx, sy) & 0x1F) << (5 * code)
        index = Cat(self.x, self.y, self.x_signed, self.y_signed)
        m.d.comb += self.p.eq((Const(table, 5 * 64) >> (index * 5))[:5].as_signed())
        return m

