"""Golden twin of the 8N1 UART: per-cycle line levels to bytes and back."""

from typing import NamedTuple

import numpy as np

# The divisor is a property of the HDL configuration; it lives with the HDL and is re-exported
# here for the twin's users.
from tessera.hdl.io.params import uart_divisor

__all__ = ["Frame", "uart_encode", "uart_decode", "uart_divisor"]


#: Bits in one 8N1 frame: start, eight data bits (LSB first), stop.
FRAME_BITS = 10


class Frame(NamedTuple):
    """One decoded UART frame.

    Attributes
    ----------
    value : int
        The eight data bits, 0..255 (reported even when the stop bit was bad).
    framing_error : bool
        ``True`` when the stop bit was sampled low; the HDL receiver drops such a byte and pulses
        its ``error`` output instead.
    start : int
        Cycle index (into the level sequence) where the start bit was first seen low.
    """
    value: int
    framing_error: bool
    start: int


def _check_divisor(divisor):
    if not isinstance(divisor, (int, np.integer)) or isinstance(divisor, bool) or divisor < 4:
        raise ValueError(f"divisor must be an integer >= 4, not {divisor!r}")
    return int(divisor)


def uart_encode(data, divisor, *, lead=0, gap=0, tail=0):
    """Line levels, one per clock cycle, of ``data`` sent as back-to-back 8N1 frames.

    This is also the exact waveform :class:`tessera.hdl.io.uart.UARTTx` drives when its input stream
    offers the bytes without pause (the start bit of one frame follows the stop bit of the
    previous one).

    Parameters
    ----------
    data : bytes or sequence of int
        Bytes to send, each 0..255.
    divisor : int
        Clock cycles per bit, at least 4.
    lead, gap, tail : int
        Idle (high) cycles before the first frame, between frames, and after the last frame.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of 0/1 levels, length ``lead + tail + n*10*divisor + (n-1)*gap``.
    """
    divisor = _check_divisor(divisor)
    for name, value in (("lead", lead), ("gap", gap), ("tail", tail)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
    values = np.asarray(list(data), dtype=np.int64).reshape(-1)
    if values.size and (values.min() < 0 or values.max() > 255):
        raise ValueError(f"data must hold bytes 0..255, not {values.min()}..{values.max()}")
    n = values.size
    # bits[i] = [start, d0..d7, stop] of frame i
    bits = np.zeros((n, FRAME_BITS), dtype=np.uint8)
    bits[:, 1:9] = (values[:, None] >> np.arange(8)) & 1
    bits[:, 9] = 1
    frames = np.repeat(bits, divisor, axis=1)                    # (n, 10*divisor)
    if gap and n:
        frames = np.concatenate([frames, np.ones((n, gap), dtype=np.uint8)], axis=1)
        frames = frames.reshape(-1)[:-gap]
    else:
        frames = frames.reshape(-1)
    return np.concatenate([np.ones(lead, dtype=np.uint8), frames,
                           np.ones(tail, dtype=np.uint8)])


def uart_decode(levels, divisor):
    """Decode per-cycle line levels into frames, exactly as :class:`tessera.hdl.io.uart.UARTRx` does.

    The receiver idles until it sees the line low at cycle ``t``, samples the start bit again
    at ``t + divisor//2`` (a high level there is a glitch: it goes back to idle), then samples
    data bit ``k`` at ``t + divisor//2 + (k+1)*divisor`` and the stop bit at
    ``t + divisor//2 + 9*divisor``. After a good stop bit it looks for the next start bit from
    the following cycle; after a bad one it first waits for the line to go high (so a break
    gives one error, not a stream of zero bytes). Frames cut off by the end of ``levels`` are
    not reported. The HDL sees the line through a two-flop synchronizer, which only delays
    everything by two cycles.

    Parameters
    ----------
    levels : sequence of int
        One 0/1 line level per clock cycle.
    divisor : int
        Clock cycles per bit, at least 4.

    Returns
    -------
    list of Frame
    """
    divisor = _check_divisor(divisor)
    lv = np.asarray(levels, dtype=np.uint8).reshape(-1)
    if lv.size and lv.max() > 1:
        raise ValueError("levels must be 0 or 1")
    lows = np.flatnonzero(lv == 0)
    highs = np.flatnonzero(lv == 1)
    offsets = divisor // 2 + divisor * np.arange(FRAME_BITS)   # start, d0..d7, stop
    frames = []
    i = 0
    while True:
        k = np.searchsorted(lows, i)
        if k == lows.size:
            break
        t = int(lows[k])
        samples_at = t + offsets
        if samples_at[0] >= lv.size:
            break
        if lv[samples_at[0]]:                                    # glitch, not a start bit
            i = int(samples_at[0]) + 1
            continue
        if samples_at[-1] >= lv.size:
            break
        samples = lv[samples_at]
        value = int(np.dot(samples[1:9].astype(np.int64), 1 << np.arange(8)))
        stop_ok = bool(samples[9])
        frames.append(Frame(value, not stop_ok, t))
        stop_at = int(samples_at[-1])
        if stop_ok:
            i = stop_at + 1
        else:
            k = np.searchsorted(highs, stop_at + 1)
            if k == highs.size:
                break
            i = int(highs[k]) + 1
    return frames
