"""Board top: a byte-stream core behind a UART bridge, with status LEDs."""

from amaranth import *
from amaranth.lib import io, wiring

from tessera.hdl.io.hostlink import HostLinkSignature
from tessera.hdl.io.uart import UARTBridge, uart_divisor

from .boards import get_board

__all__ = ["BoardTop", "check_byte_stream_core"]


def check_byte_stream_core(core):
    """Check that ``core`` has the tessera core's host interface, `HostLinkSignature`.

    That is ``i: In(stream.Signature(8))``, ``o: Out(stream.Signature(8))``, ``busy: Out(1)``
    and ``error: Out(1)``, declared as ``super().__init__(HostLinkSignature())`` (or a subclass
    of it); a signature that merely lists the same members is not accepted.

    Parameters
    ----------
    core : amaranth.lib.wiring.Component

    Raises
    ------
    TypeError
        If ``core`` is not a component whose signature is a (non-flipped) `HostLinkSignature`.
    """
    expected = ("a wiring.Component whose signature is tessera.hdl.core.HostLinkSignature() "
                "(i: In(stream.Signature(8)), o: Out(stream.Signature(8)), busy: Out(1), "
                "error: Out(1))")
    if not isinstance(core, wiring.Component):
        raise TypeError(f"core must be {expected}, not {core!r}")
    signature = core.signature
    # isinstance() (and HostLinkSignature.__eq__) also accept the flip, whose flows are reversed.
    if (isinstance(signature, wiring.FlippedSignature)
            or not isinstance(signature, HostLinkSignature)):
        hint = ""
        if signature.members == HostLinkSignature().members:
            hint = "; it has the right members: construct it with HostLinkSignature()"
        raise TypeError(f"core must be {expected}, not {core!r} with signature "
                        f"{signature!r}{hint}")


class BoardTop(Elaboratable):
    """Top level for a board: UART bridge + byte-stream core + status LEDs.

    The board's USB serial port (``uart`` resource ``board.uart``) carries the host protocol at
    ``baud`` bits/s, 8N1, no flow control. Received bytes enter the core's ``i`` through a
    receive FIFO of ``rx_fifo_depth`` bytes; the core's ``o`` bytes are sent back. The ``sync``
    domain is the board clock (12 MHz on the iCEBreaker, 25 MHz on the ULX3S), reset by
    amaranth's power-on reset synchronizer.

    LEDs (the pins per board are in :data:`tessera.fpga.boards.BOARDS` and ``docs/fpga.md``):

    * ``heartbeat``: toggles every 0.5 s, so it blinks at 1 Hz while the clock runs;
    * ``busy``: the core's ``busy`` output;
    * ``error``: the core's ``error`` output; on boards without a ``link`` LED also any UART
      framing error or receive overrun;
    * ``link``: sticky UART framing error or receive-FIFO overrun (cleared by reset);
    * ``activity``: lit for ~50 ms after each byte received or sent.

    Parameters
    ----------
    core : amaranth.lib.wiring.Component
        A byte-stream core with `HostLinkSignature`, see :func:`check_byte_stream_core`.
    board : str or fpga.boards.Board
        Board name, see :data:`tessera.fpga.boards.BOARDS`.
    baud : int
        UART bit rate; must be reachable within 2 % from the board clock.
    rx_fifo_depth : int
        Receive FIFO depth in bytes, at least 1.
    tx_fifo_depth : int
        Transmit FIFO depth in bytes, 0 for none.
    """

    def __init__(self, core, board, *, baud=115200, rx_fifo_depth=32, tx_fifo_depth=0):
        check_byte_stream_core(core)
        self._core = core
        self._board = get_board(board)
        try:
            self._divisor = uart_divisor(self._board.clk_hz, baud)
        except ValueError as error:
            raise ValueError(f"{error} (board {self._board.name!r})") from None
        self._baud = baud
        # The bridge itself is made in elaborate(), so a BoardTop that is never built leaves no
        # unused elaboratable behind; its parameters are checked here, as it would.
        for name, value, minimum in (("rx_fifo_depth", rx_fifo_depth, 1),
                                     ("tx_fifo_depth", tx_fifo_depth, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")
        self._fifo_depths = rx_fifo_depth, tx_fifo_depth

    @property
    def core(self):
        """The wrapped core.

        Returns
        -------
        amaranth.lib.wiring.Component
        """
        return self._core

    @property
    def board(self):
        """The board this top is for.

        Returns
        -------
        fpga.boards.Board
        """
        return self._board

    @property
    def baud(self):
        """UART bit rate.

        Returns
        -------
        int
        """
        return self._baud

    @property
    def divisor(self):
        """Clock cycles per UART bit.

        Returns
        -------
        int
        """
        return self._divisor

    def elaborate(self, platform):
        if platform is None:
            raise TypeError("BoardTop needs a board platform (it requests pins); simulate "
                            "tessera.hdl.io.uart.UARTBridge with the core instead")
        board = self._board
        m = Module()
        rx_depth, tx_depth = self._fifo_depths
        m.submodules.bridge = bridge = UARTBridge(divisor=self._divisor, rx_fifo_depth=rx_depth,
                                                  tx_fifo_depth=tx_depth)
        m.submodules.core = core = self._core
        wiring.connect(m, bridge.o, core.i)
        wiring.connect(m, core.o, bridge.i)

        uart = platform.request("uart", board.uart, dir="-")
        m.submodules.uart_rx = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [bridge.rx.eq(rx_buf.i), tx_buf.o.eq(bridge.tx)]

        heartbeat = Signal()
        half_second = Signal(range(board.clk_hz // 2))
        with m.If(half_second == board.clk_hz // 2 - 1):
            m.d.sync += [half_second.eq(0), heartbeat.eq(~heartbeat)]
        with m.Else():
            m.d.sync += half_second.eq(half_second + 1)

        activity = Signal()
        stretch = Signal(range(board.clk_hz // 20 + 1))
        with m.If(bridge.rx_active | bridge.tx_active):
            m.d.sync += stretch.eq(board.clk_hz // 20)
        with m.Elif(stretch != 0):
            m.d.sync += stretch.eq(stretch - 1)
        m.d.comb += activity.eq(stretch != 0)

        link = bridge.framing_error | bridge.overrun
        roles = {led[0] for led in board.leds}
        drive = {
            "heartbeat": heartbeat,
            "busy": core.busy,
            "error": core.error if "link" in roles else core.error | link,
            "link": link,
            "activity": activity,
        }
        for role, resource, number, _where in board.leds:
            pin = platform.request(resource, number, dir="-")
            m.submodules[f"led_{role}"] = led = io.Buffer("o", pin)
            m.d.comb += led.o.eq(drive[role])
        return m
