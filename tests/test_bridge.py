# amaranth: UnusedElaboratable=no
"""The USB-serial bridges and the rates a board shares with them (`tessera.fpga.bridge`): the
board top receiver's tolerance window against the UARTRx HDL itself, the FTDI rate grid, the
presets' default rates, and the messages."""

import math
from fractions import Fraction

import pytest

from tessera.fpga.boards import BOARDS, baud_problem
from tessera.fpga.bridge import FT231X, FT2232H, best_baud, bridge_rate, link_problem, rx_window
from tests.test_uart import run_rx

#: Data bytes whose frames expose an early stop-bit sample (MSB 0: bit 8 differs from the stop
#: bit) and, sent back to back, a late one (the next start bit follows the stop bit).
PATTERN = bytes([0x00, 0x7F, 0x55, 0x00, 0x3C, 0x00])


def sender_levels(data, *, bit_cycles, phase, lead=7):
    """The line as the board top's clock samples it (one level per cycle) when a sender whose
    bit lasts ``bit_cycles`` (a real number of cycles) starts its first start edge ``phase``
    of a cycle after cycle ``lead``, frames back to back: the edge falls between samples."""
    bits = []
    for b in data:
        bits += [0] + [(b >> i) & 1 for i in range(8)] + [1]
    t0 = lead + phase
    n = math.ceil(t0 + len(bits) * bit_cycles) + 4
    out = []
    for c in range(n):
        k = math.floor((c - t0) / bit_cycles)
        out.append(1 if k < 0 or k >= len(bits) else bits[k])
    return out


def decodes(divisor, e, phases=8):
    """Whether UARTRx at ``divisor`` takes `PATTERN` from a sender whose bit is ``1 + e`` of
    its own at every start-edge phase tried."""
    for i in range(phases):
        levels = sender_levels(PATTERN, bit_cycles=divisor * (1 + e), phase=(i + 0.5) / phases)
        got, errors, _ = run_rx(levels, divisor=divisor)
        if got != PATTERN or errors:
            return False
    return True


@pytest.mark.parametrize("divisor", [4, 5, 8, 13])
def test_rx_window_is_the_hdl_receivers(divisor):
    """Just inside the window (bounds x 0.8) every phase decodes; just outside (x 1.25) some
    phase fails, on both sides: the window is the HDL's, not a rule of thumb."""
    low, high = rx_window(divisor)
    assert decodes(divisor, 0.0)
    assert decodes(divisor, 0.8 * low) and decodes(divisor, 0.8 * high)
    assert not decodes(divisor, 1.25 * low)
    assert not decodes(divisor, 1.25 * high)


def test_ftdi_rates():
    # FT231X: 3 MHz / (1, 1.5, n + k/8); FT2232H also 12 MHz / the same divisors.
    assert bridge_rate(FT231X, 3_000_000) == 3e6
    assert bridge_rate(FT231X, 2_000_000) == 2e6
    assert bridge_rate(FT231X, 115200) == pytest.approx(3e6 / Fraction(26, 1))
    assert bridge_rate(FT231X, 1_200_000) == 1.2e6              # 3 MHz / 2.5
    assert bridge_rate(FT231X, 4_000_000) is None
    assert bridge_rate(FT2232H, 12_000_000) == 12e6
    assert bridge_rate(FT2232H, 8_000_000) == 8e6
    assert bridge_rate(FT2232H, 3_000_000) == 3e6
    assert bridge_rate(FT2232H, 1_391_304) == pytest.approx(12e6 / 8.625)


def test_best_rates_of_the_boards():
    # iCEBreaker at 12 MHz: 4 cycles per bit, exact; ULX3S at 25 MHz: 3 and 2 Mbaud are
    # 4.2 % off (8 and 12 cycles per bit), 1.5 Mbaud 2.0 %; 1.2 Mbaud (3 MHz / 2.5) is 21
    # cycles per bit, 0.8 % off.
    assert best_baud(FT2232H, 12e6) == 3_000_000
    assert best_baud(FT231X, 25e6) == 1_200_000
    assert best_baud(FT231X, 24e6) == 3_000_000
    assert best_baud(FT2232H, 48e6) == 12_000_000
    assert link_problem(FT231X, 25e6, 1_500_000) is None          # within 2 %, not 1 %
    assert link_problem(FT231X, 25e6, 1_500_000, margin=0.01) is not None


def test_every_board_preset_links_at_the_best_rate():
    """A preset that names a board runs its link at the highest rate the board's bridge and
    its board top share within 1 % (at the preset's core clock)."""
    from tessera.fpga.top import pll_plan
    from tessera.generators.config import load_config, preset_names
    seen = 0
    for name in preset_names():
        cfg = load_config(name)
        for b in cfg.core.boards:
            board = BOARDS[b]
            plan = pll_plan(board, cfg.core.clock_mhz * 1e6)
            clk = plan.out_hz if plan else board.clk_hz
            assert cfg.host.baud == best_baud(board.bridge, clk), (name, b)
            seen += 1
    assert seen >= 10


def test_messages():
    assert link_problem(FT231X, 25e6, 3_000_000) == (
        "the board top makes 3125000 baud (8 cycles per bit) and the FTDI FT231X 3000000: "
        "+4.17% apart, more than the 2% allowed")
    assert link_problem(FT2232H, 12e6, 4_000_000) == (
        "the board top needs 4 clock cycles per bit, and 12 MHz / 4000000 is 3.00")
    assert link_problem(FT231X, 48e6, 6_000_000) == "the FTDI FT231X carries at most 3000000 baud"
    assert baud_problem(3_000_000, "ulx3s-85f").endswith("(the core clock is 25 MHz)")
    assert baud_problem(3_000_000, "icebreaker") is None
