"""Board tops: a byte-stream core behind the framed UART link, with the board's clocking, reset
synchronisation, UART pins and status LEDs."""

import dataclasses

from amaranth import *
from amaranth.hdl import ResetInserter
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from tessera.hdl.io.framing import FramedLink, check_link_args
from tessera.hdl.io.hostlink import HostLinkSignature
from tessera.hdl.io.params import _check_int
from tessera.hdl.io.uart import UARTRx, UARTTx, uart_divisor

from .boards import get_board

__all__ = ["BoardTop", "LinkTop", "PllPlan", "check_byte_stream_core", "link_sizes", "pll_plan",
           "LED_ROLES", "core_component", "link_top_verilog"]

#: Status outputs of `LinkTop`, in this order (docs/fpga.md, "LEDs").
LED_ROLES = ("heartbeat", "busy", "error", "link", "activity")

#: The framed link's sizes per FPGA family. A frame carries max_payload bytes in
#: max_payload + 10 (98.1 % of the line rate at 512, 99.0 % at 1024); each buffer holds two
#: frames, so one can be acknowledged while the next is on the line. The iCE40 UP5K has 30 EBRs
#: of 512 bytes (1 KiB buffers: 2 EBRs each); the ECP5-85F has 208 DP16KDs of 2 KiB.
LINK_SIZES = {
    "ice40": dict(max_payload=512, rx_buffer=1024, tx_buffer=1024),
    "ecp5": dict(max_payload=1024, rx_buffer=4096, tx_buffer=4096),
}


def link_sizes(board):
    """``{"max_payload", "rx_buffer", "tx_buffer"}`` of the framed link on ``board``.

    Returns
    -------
    dict
    """
    return dict(LINK_SIZES[get_board(board).family])


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


class LinkTop(wiring.Component):
    """Everything of a board top that is not board-specific: UART receiver and transmitter,
    the framed link (`tessera.hdl.io.framing.FramedLink`), the core (reset by the link's
    HELLO) and the LED logic. It is what the cocotb board test and the virtual board simulate,
    with ports ``clk``, ``rst``, ``rx``, ``tx`` and one per LED role.

    The host talks to the core through frames on ``rx``/``tx`` (8N1 at ``clk_hz / divisor``
    bits/s, docs/link.md); the core sees exactly the byte stream the host's driver sent.

    Parameters
    ----------
    core : wiring.Component
        With `HostLinkSignature` (:func:`check_byte_stream_core`).
    divisor : int
        Clock cycles per UART bit, at least 4.
    clk_hz : int
        Clock frequency, for the LED timers (heartbeat 1 Hz, activity 50 ms, link 0.5 s) and the
        default ``frame_timeout`` (10 ms).
    max_payload, rx_buffer, tx_buffer, gather : int
        Of the `FramedLink`.
    frame_timeout : int, optional
        Silent cycles inside a frame that make it a truncated one (default: 10 ms, at least
        40 byte times).

    Members
    -------
    rx : In(1, init=1)
        UART from the host.
    tx : Out(1, init=1)
        UART to the host.
    heartbeat, busy, error, link, activity : Out(1)
        Status (see `BoardTop`).
    """

    def __init__(self, core, *, divisor, clk_hz, max_payload=256, rx_buffer=1024,
                 tx_buffer=1024, gather=64, frame_timeout=None):
        check_byte_stream_core(core)
        self._core = core
        self._divisor = divisor
        self._clk_hz = int(clk_hz)
        if frame_timeout is None:
            frame_timeout = max(400 * divisor, self._clk_hz // 100)
        self._link_args = dict(max_payload=max_payload, rx_buffer=rx_buffer,
                               tx_buffer=tx_buffer, gather=gather, frame_timeout=frame_timeout)
        # Checked here, built in elaborate() (so an unbuilt LinkTop leaves nothing unused).
        check_link_args(**self._link_args)
        _check_int("divisor", divisor, 4)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1),
                          **{role: Out(1) for role in LED_ROLES}})

    @property
    def core(self):
        return self._core

    @property
    def divisor(self):
        return self._divisor

    @property
    def link_args(self):
        """The `FramedLink` parameters.

        Returns
        -------
        dict
        """
        return dict(self._link_args)

    def elaborate(self, platform):
        m = Module()
        clk_hz = self._clk_hz
        # The link takes a byte per cycle but for one cycle after each header and payload:
        # one byte of buffer is plenty when bytes come 10 * divisor cycles apart.
        m.submodules.uart_rx = urx = UARTRx(divisor=self._divisor, fifo_depth=1)
        m.submodules.uart_tx = utx = UARTTx(divisor=self._divisor)
        m.submodules.link = link = FramedLink(**self._link_args)
        core = self._core
        m.submodules.core = ResetInserter(link.core_reset)(core)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, urx.o, link.line_rx)
        wiring.connect(m, link.line_tx, utx.i)
        wiring.connect(m, link.o, core.i)
        wiring.connect(m, core.o, link.i)

        # LED timing from one millisecond prescaler (logic cells count on the UP5K).
        ms_cycles = max(clk_hz // 1000, 1)
        prescale = Signal(range(ms_cycles))
        ms = Signal()
        m.d.comb += ms.eq(prescale == ms_cycles - 1)
        m.d.sync += prescale.eq(Mux(ms, 0, prescale + 1))

        def stretch(name, event, millis):
            count = Signal(range(millis + 1), name=f"{name}_ms")
            with m.If(event):
                m.d.sync += count.eq(millis)
            with m.Elif(ms & (count != 0)):
                m.d.sync += count.eq(count - 1)
            return count != 0

        heartbeat = Signal()
        half_second = Signal(range(500))
        with m.If(ms):
            with m.If(half_second == 499):
                m.d.sync += [half_second.eq(0), heartbeat.eq(~heartbeat)]
            with m.Else():
                m.d.sync += half_second.eq(half_second + 1)
        trouble = link.rejected | urx.error | urx.overrun
        m.d.comb += [
            self.heartbeat.eq(heartbeat),
            self.busy.eq(core.busy),
            self.error.eq(core.error),
            self.link.eq(stretch("link", trouble, 500)),
            self.activity.eq(stretch("activity", urx.busy | utx.busy, 50)),
        ]
        return m


@dataclasses.dataclass(frozen=True)
class PllPlan:
    """How a board's PLL makes the core clock (`pll_plan`).

    Attributes
    ----------
    family : str
    in_hz, out_hz : float
        Reference and (exact) output frequency.
    params : dict
        The primitive's divider parameters (iCE40 ``SB_PLL40_PAD``: ``DIVR``, ``DIVF``,
        ``DIVQ``, ``FILTER_RANGE``; ECP5 ``EHXPLLL``: ``CLKI_DIV``, ``CLKFB_DIV``,
        ``CLKOP_DIV``).
    vco_hz : float
    """
    family: str
    in_hz: float
    out_hz: float
    vco_hz: float
    params: dict


def _ice40_pll(fin, fout):
    best = None
    for divr in range(16):
        fpfd = fin / (divr + 1)
        if not 10e6 <= fpfd <= 133e6:
            continue
        for divf in range(128):
            fvco = fpfd * (divf + 1)
            if not 533e6 <= fvco <= 1066e6:
                continue
            for divq in range(1, 7):
                f = fvco / (1 << divq)
                if not 16e6 <= f <= 275e6:
                    continue
                if best is None or abs(f - fout) < abs(best[0] - fout):
                    fr = next(i for i, lim in enumerate((17e6, 26e6, 44e6, 66e6, 101e6), 1)
                              if fpfd < lim) if fpfd < 101e6 else 6
                    best = (f, fvco, dict(DIVR=divr, DIVF=divf, DIVQ=divq, FILTER_RANGE=fr))
    return best


def _ecp5_pll(fin, fout):
    best = None
    for clki in range(1, 129):
        fpfd = fin / clki
        if fpfd < 3.125e6:
            break
        for clkfb in range(1, 81):
            f = fpfd * clkfb
            if not 3.125e6 <= f <= 400e6:
                continue
            ops = [d for d in range(1, 129) if 400e6 <= f * d <= 800e6]
            if not ops:
                continue
            op = min(ops, key=lambda d: abs(f * d - 600e6))     # the VCO mid-range
            key = (abs(f - fout), abs(f * op - 600e6))
            if best is None or key < best[3]:
                best = (f, f * op, dict(CLKI_DIV=clki, CLKFB_DIV=clkfb, CLKOP_DIV=op), key)
    return best


def pll_plan(board, clk_hz, *, tolerance=0.005):
    """The PLL settings that make ``clk_hz`` from ``board``'s clock, or None when the board
    clock is ``clk_hz`` already (no PLL).

    Raises
    ------
    ValueError
        If the board's PLL cannot make ``clk_hz`` within ``tolerance`` (iCE40: 16..275 MHz;
        ECP5: 3.125..400 MHz), naming the nearest frequency it can make.
    """
    board = get_board(board)
    if abs(clk_hz - board.clk_hz) <= 1e-6 * board.clk_hz:
        return None
    search = _ice40_pll if board.family == "ice40" else _ecp5_pll
    found = search(board.clk_hz, clk_hz)
    found = found and found[:3]
    if found is None or abs(found[0] - clk_hz) > tolerance * clk_hz:
        near = "" if found is None else f"; nearest it can make: {found[0] / 1e6:.4g} MHz"
        span = "16..275" if board.family == "ice40" else "3.125..400"
        raise ValueError(f"core.clock_mhz: {clk_hz / 1e6:g} MHz cannot be made by the "
                         f"{board.name}'s PLL from its {board.clk_mhz:g} MHz clock within "
                         f"{tolerance:.1%} (it makes {span} MHz{near}); allowed: the board clock "
                         f"{board.clk_mhz:g} MHz or a frequency the PLL makes")
    return PllPlan(board.family, board.clk_hz, found[0], found[1], found[2])


class BoardTop(Elaboratable):
    """Top level for a board: clocking, reset synchronisation, UART pins, LEDs, and `LinkTop`
    (the framed link in front of the core).

    Clocking: the ``sync`` domain runs at ``clk_hz``. When that is the board clock (12 MHz on
    the iCEBreaker, 25 MHz on the ULX3S) the clock pin drives it directly; otherwise the
    board's PLL makes it (iCE40 ``SB_PLL40_PAD`` on the clock pin's pad, which the iCE40's
    PLL must own; ECP5 ``EHXPLLL``; settings from :func:`pll_plan`) and its output is
    constrained to that frequency. Reset: a power-on timer (15 us: iCE40 block RAMs read as
    zero for ~3 us after configuration; on the board clock, or on an iCE40 PLL's output from
    its lock) and the PLL's lock, combined and synchronised into ``sync`` by a
    `ResetSynchronizer` (asserted at once, released on a clock edge).

    The board's USB serial port (``uart`` resource ``board.uart``) carries the framed host
    link at ``baud`` bits/s, 8N1, no flow control (docs/link.md). LEDs (the pins per board are
    in :data:`tessera.fpga.boards.BOARDS` and ``docs/fpga.md``):

    * ``heartbeat``: toggles every 0.5 s, so it blinks at 1 Hz while the clock runs;
    * ``busy``: the core's ``busy`` output;
    * ``error``: the core's ``error`` output; on boards without a ``link`` LED also link
      trouble;
    * ``link``: lit for 0.5 s after a refused frame, a UART framing error or a receive overrun;
    * ``activity``: lit ~50 ms after each byte received or sent.

    Parameters
    ----------
    core : amaranth.lib.wiring.Component
        A byte-stream core with `HostLinkSignature`, see :func:`check_byte_stream_core`. Its
        ``host.interface`` does not matter: every core gets the framed link here.
    board : str or fpga.boards.Board
        Board name, see :data:`tessera.fpga.boards.BOARDS`.
    baud : int
        UART bit rate; must be reachable within 2 % from ``clk_hz``.
    clk_hz : float, optional
        Core clock (``core.clock_mhz`` of the config); the board clock by default.
    link : dict, optional
        `FramedLink` sizes (default :func:`link_sizes` of the board).
    """

    def __init__(self, core, board, *, baud=115200, clk_hz=None, link=None):
        check_byte_stream_core(core)
        self._core = core
        self._board = get_board(board)
        self._pll = pll_plan(self._board, clk_hz) if clk_hz is not None else None
        self._clk_hz = self._pll.out_hz if self._pll else self._board.clk_hz
        try:
            self._divisor = uart_divisor(self._clk_hz, baud)
        except ValueError as error:
            raise ValueError(f"{error} (board {self._board.name!r})") from None
        self._baud = baud
        self._link = dict(link_sizes(self._board), **(link or {}))
        # Checked now (LinkTop itself is made in elaborate(): nothing unused is left behind).
        check_link_args(**self._link)

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

    @property
    def clk_hz(self):
        """Frequency of the ``sync`` domain (the PLL's exact output when there is one).

        Returns
        -------
        float
        """
        return self._clk_hz

    @property
    def pll(self):
        """The PLL settings, or None when the board clock drives the core.

        Returns
        -------
        PllPlan or None
        """
        return self._pll

    @property
    def link(self):
        """The framed link's sizes.

        Returns
        -------
        dict
        """
        return dict(self._link)

    def _clocking(self, m, platform):
        board = self._board
        plan = self._pll
        clk_pin = platform.request(platform.default_clk, 0, dir="-")
        m.domains.sync = ClockDomain("sync")
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        if plan is not None and plan.family == "ice40":
            # The iCE40's PLL sits on the clock pin's own pad (the iCEBreaker's pin 35): it
            # must take the pad (SB_PLL40_PAD), which then feeds nothing else; so the power-on
            # timer runs on the PLL's output and counts from lock.
            clk_out = Signal()
            locked = Signal()
            p = plan.params
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
                p_DIVR=p["DIVR"], p_DIVF=p["DIVF"], p_DIVQ=p["DIVQ"],
                p_FILTER_RANGE=p["FILTER_RANGE"],
                i_PACKAGEPIN=clk_pin.io, i_RESETB=Const(1), i_BYPASS=Const(0),
                o_PLLOUTGLOBAL=clk_out, o_LOCK=locked)
            m.d.comb += [ClockSignal("sync").eq(clk_out), ClockSignal("por").eq(clk_out)]
            platform.add_clock_constraint(clk_out, plan.out_hz)
            por_hz, count = plan.out_hz, locked
        else:
            m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_pin)
            clk_in = clk_buf.i
            m.d.comb += ClockSignal("por").eq(clk_in)
            por_hz, count = board.clk_hz, Const(1)
            if plan is None:
                m.d.comb += ClockSignal("sync").eq(clk_in)
                locked = Const(1)
            else:
                clk_out = Signal()
                locked = Signal()
                p = plan.params
                m.submodules.pll = Instance(
                    "EHXPLLL",
                    p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED",
                    p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED",
                    p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                    p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
                    p_CLKI_DIV=p["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED",
                    p_CLKOP_DIV=p["CLKOP_DIV"], p_CLKOP_CPHASE=p["CLKOP_DIV"] - 1,
                    p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p["CLKFB_DIV"],
                    i_RST=Const(0), i_STDBY=Const(0), i_CLKI=clk_in, i_CLKFB=clk_out,
                    i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
                    i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
                    i_ENCLKOP=Const(0), o_CLKOP=clk_out, o_LOCK=locked,
                    a_FREQUENCY_PIN_CLKI=f"{plan.in_hz / 1e6:g}",
                    a_FREQUENCY_PIN_CLKOP=f"{plan.out_hz / 1e6:g}",
                    a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                    a_MFG_GMCREF_SEL="2")
                m.d.comb += ClockSignal("sync").eq(clk_out)
                platform.add_clock_constraint(clk_out, plan.out_hz)
        # Power-on reset: the iCE40 BRAM quirk wants > 3 us after configuration (5x margin).
        delay = max(int(15e-6 * por_hz), 2)
        timer = Signal(range(delay + 1))
        por_done = Signal()
        with m.If(timer == delay):
            m.d.por += por_done.eq(1)
        with m.Elif(count):
            m.d.por += timer.eq(timer + 1)
        m.submodules.reset_sync = ResetSynchronizer(~(por_done & locked), domain="sync")

    def elaborate(self, platform):
        if platform is None:
            raise TypeError("BoardTop needs a board platform (it requests pins); simulate "
                            "tessera.fpga.top.LinkTop with the core instead")
        board = self._board
        m = Module()
        self._clocking(m, platform)
        m.submodules.top = top = LinkTop(self._core, divisor=self._divisor,
                                         clk_hz=int(self._clk_hz), **self._link)

        uart = platform.request("uart", board.uart, dir="-")
        m.submodules.uart_rx = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx_buf.i), tx_buf.o.eq(top.tx)]

        roles = {led[0] for led in board.leds}
        drive = {role: getattr(top, role) for role in LED_ROLES}
        if "link" not in roles:
            drive["error"] = top.error | top.link
        for role, resource, number, _where in board.leds:
            pin = platform.request(resource, number, dir="-")
            m.submodules[f"led_{role}"] = led = io.Buffer("o", pin)
            m.d.comb += led.o.eq(drive[role])
        return m


def core_component(cfg):
    """A fresh `tessera.hdl.core.TesseraCore` for ``cfg`` (`TesseraCore.from_config`, which
    `tessera.generators.assemble.build_core` calls too; `tessera.fpga` does not import
    `tessera.generators`).

    Returns
    -------
    TesseraCore
    """
    from tessera.hdl.core import TesseraCore
    return TesseraCore.from_config(cfg)


def link_top_verilog(cfg, *, divisor, clk_hz, name=None, **link):
    """``(top, verilog)`` of the `LinkTop` of ``cfg``'s core: what a board top runs, minus the
    board's pins and clocking (ports ``clk``, ``rst``, ``rx``, ``tx`` and the LEDs), for the
    cocotb board test and the virtual board.

    Parameters
    ----------
    cfg : CoreConfig
    divisor : int
        Clock cycles per UART bit.
    clk_hz : int
        Clock frequency the LED timers and the frame timeout are scaled to.
    name : str, optional
        Top module name (default ``<core name>_board``).
    **link
        `LinkTop` options (``max_payload``, ``rx_buffer``, ``tx_buffer``, ``gather``,
        ``frame_timeout``).

    Returns
    -------
    tuple of (str, str)
    """
    import os
    from amaranth.back import verilog
    os.environ["AMARANTH_USE_YOSYS"] = "builtin"          # deterministic, as `tessera generate`
    name = name or f"{cfg.core.name}_board"
    top = LinkTop(core_component(cfg), divisor=divisor, clk_hz=clk_hz, **link)
    return name, verilog.convert(top, name=name, emit_src=False)
