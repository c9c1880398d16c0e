"""UART numbers as plain Python (no Amaranth): the bridge HDL, the board checks and the host
models read the same divisor rule."""

__all__ = ["uart_divisor"]


def _check_int(name, value, minimum):
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return value


def uart_divisor(clk_hz, baud, *, tolerance=0.02):
    """Clock cycles per bit for ``baud`` at ``clk_hz``, rounded to the nearest integer.

    Parameters
    ----------
    clk_hz : int or float
        Clock frequency in Hz, positive.
    baud : int
        Bit rate, positive.
    tolerance : float
        Largest relative bit-rate error accepted. 8N1 links tolerate a few percent in total
        between both ends; 2 % leaves the other side its share.

    Returns
    -------
    int
        The divisor, at least 4.

    Raises
    ------
    ValueError
        If an argument is out of range, or no integer divisor is within ``tolerance``.
    """
    if not isinstance(clk_hz, (int, float)) or isinstance(clk_hz, bool) or clk_hz <= 0:
        raise ValueError(f"clk_hz must be a positive number, not {clk_hz!r}")
    if not isinstance(baud, int) or isinstance(baud, bool) or baud <= 0:
        raise ValueError(f"baud must be a positive integer, not {baud!r}")
    divisor = round(clk_hz / baud)
    if divisor < 4:
        raise ValueError(f"baud must be at most clk_hz/4 = {int(clk_hz // 4)}, not {baud!r}")
    error = abs(clk_hz / divisor - baud) / baud
    if error > tolerance:
        raise ValueError(f"baud {baud!r} is {error:.1%} off at clk_hz {clk_hz!r} "
                         f"(divisor {divisor}); allowed error is {tolerance:.1%}")
    return divisor
