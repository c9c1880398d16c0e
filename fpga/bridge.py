"""The USB-serial bridges on the boards, and which UART rates a board top and its bridge share.

A rate works when three things hold:

* the bridge can make it: FTDI bridges divide a base clock by ``1``, ``1.5`` or ``n + k/8``
  (``n >= 2``; FTDI AN232B-05 "Configuring FT232R, FT2232 and FT232B Baud Rates", AN_120
  "Aliasing VCP Baud Rates"), up to the chip's maximum;
* the board top can make it: ``divisor = round(clk_hz / baud)`` cycles per bit, at least 4
  (`tessera.hdl.io.uart.UARTRx`);
* both receivers sample every bit of a frame inside that bit, given the two rates' mismatch.
  The board top's receiver (`UARTRx`) finds the start edge within one clock cycle, samples it
  ``divisor // 2`` cycles later and then every ``divisor`` cycles, so it takes a sender whose
  bit is ``1 + e`` of its own for ``-(divisor - 1 - divisor // 2) / (10 divisor) < e <=
  (divisor // 2) / (9 divisor)`` (`rx_window`): -2.5 .. +5.6 % at 4 cycles per bit, -4.8 ..
  +5.3 % at 25. The bridge's receiver is not documented beyond its 16x oversampling; tessera
  allows it 2 % (`BRIDGE_RX_TOLERANCE`), half of a 16x receiver's window.

`best_baud` is the highest rate all three allow within ``margin`` (1 %: a preset's default);
`link_problem` says why a given rate fails.
"""

from dataclasses import dataclass
from fractions import Fraction

__all__ = ["Bridge", "FT2232H", "FT231X", "BRIDGE_RX_TOLERANCE", "bridge_rate", "rx_window",
           "link_problem", "best_baud"]

#: The mismatch tessera allows the bridge's own receiver, either way.
BRIDGE_RX_TOLERANCE = 0.02


@dataclass(frozen=True)
class Bridge:
    """A USB-serial bridge chip.

    Attributes
    ----------
    chip : str
    max_baud : int
        The highest rate its datasheet gives.
    bases : tuple of int
        Base clocks its baud generator divides (Hz).
    source : str
        Where the figures come from.
    """
    chip: str
    max_baud: int
    bases: tuple
    source: str


#: iCEBreaker: FTDI FT2232H (channel B is the UART; channel A programs the flash).
FT2232H = Bridge(
    chip="FTDI FT2232H", max_baud=12_000_000, bases=(12_000_000, 3_000_000),
    source="FTDI DS_FT2232H (FT_000061), 'UART ... data rates up to 12 Mbaud'; the iCEBreaker "
           "README (github.com/icebreaker-fpga/icebreaker): 'FT2232H interface'; hi-speed "
           "rates divide 120 MHz / 10 = 12 MHz, the others 3 MHz (FTDI AN_120)")

#: ULX3S: FTDI FT231X on US1.
FT231X = Bridge(
    chip="FTDI FT231X", max_baud=3_000_000, bases=(3_000_000,),
    source="FTDI DS_FT231X (FT_000565), 'data transfer rates from 300 baud to 3 Mbaud'; the "
           "ULX3S manual (github.com/emard/ulx3s, doc/MANUAL.md): 'USB-serial chip FT231X' "
           "on US1 (VID:PID 0403:6015); 3 MHz base (FTDI AN232B-05)")


def _divisors():
    """The bridge's effective divisors in increasing order, as Fractions: 1, 1.5, then
    n + k/8 from 2 (FTDI's encoding; divisors 0 and 1 mean 1 and 1.5)."""
    yield Fraction(1)
    yield Fraction(3, 2)
    x = 16
    while x <= 8 * 16383:
        yield Fraction(x, 8)
        x += 1


def bridge_rate(bridge, baud):
    """The rate ``bridge`` makes when asked for ``baud``: the nearest it can divide from any
    of its bases, at most its maximum (Hz, a float), or None above the maximum."""
    if baud > bridge.max_baud:
        return None
    best = None
    for base in bridge.bases:
        exact = Fraction(base) / baud
        if exact < 2:                                  # the special divisors, and 2
            cands = (Fraction(1), Fraction(3, 2), Fraction(2))
        else:                                          # the eighths around ``exact``
            lo = Fraction(int(exact * 8), 8)
            cands = (lo, lo + Fraction(1, 8))
        for dv in cands:
            rate = base / dv
            if rate <= bridge.max_baud and (best is None or abs(rate - baud) < abs(best - baud)):
                best = rate
    return float(best) if best is not None else None


def rx_window(divisor):
    """(low, high) relative bit-time mismatch ``e`` (the sender's bit is ``1 + e`` of the
    receiver's) that `tessera.hdl.io.uart.UARTRx` takes at ``divisor`` cycles per bit:
    ``low < e <= high`` (module docstring)."""
    h = divisor // 2
    return -(divisor - 1 - h) / (10 * divisor), h / (9 * divisor)


def link_problem(bridge, clk_hz, baud, *, margin=BRIDGE_RX_TOLERANCE):
    """Why a board top at ``clk_hz`` and ``bridge`` cannot share ``baud`` (one phrase), or
    None. ``margin`` bounds the mismatch either way (the bridge receiver's tolerance)."""
    if baud > bridge.max_baud:
        return f"the {bridge.chip} carries at most {bridge.max_baud} baud"
    divisor = round(clk_hz / baud)
    if divisor < 4:
        return (f"the board top needs 4 clock cycles per bit, and {clk_hz / 1e6:g} MHz / "
                f"{baud} is {clk_hz / baud:.2f}")
    ours = clk_hz / divisor
    theirs = bridge_rate(bridge, baud)
    if theirs is None:
        return f"the {bridge.chip} cannot make {baud} baud"
    e = ours / theirs - 1                      # the bridge's bit is (1 + e) of ours
    low, high = rx_window(divisor)
    if not low < e <= high:
        return (f"the board top makes {ours:.0f} baud ({divisor} cycles per bit) and the "
                f"{bridge.chip} {theirs:.0f}: {e:+.2%} apart, outside the board top "
                f"receiver's {low:+.2%} .. {high:+.2%}")
    if abs(e) > margin:
        return (f"the board top makes {ours:.0f} baud ({divisor} cycles per bit) and the "
                f"{bridge.chip} {theirs:.0f}: {e:+.2%} apart, more than the {margin:.0%} "
                f"allowed")
    return None


def best_baud(bridge, clk_hz, *, margin=0.01):
    """The highest rate the ``bridge`` makes (an integer number of baud) that a board top at
    ``clk_hz`` shares within ``margin``, or None."""
    import heapq
    # every base's rates, highest first (divisors in increasing order), merged
    def stream(base):
        return (-(Fraction(base) / dv) for dv in _divisors())
    streams = [stream(base) for base in bridge.bases]
    for neg in heapq.merge(*streams):
        rate = -neg
        if rate < 1200:
            return None
        if rate <= bridge.max_baud and rate.denominator == 1 \
                and link_problem(bridge, clk_hz, int(rate), margin=margin) is None:
            return int(rate)
    return None
