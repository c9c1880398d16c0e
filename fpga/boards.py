"""The boards tessera builds for: platform, clock, UART, LEDs, device totals, programmer."""

from dataclasses import dataclass

from amaranth.vendor import LatticeECP5Platform
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from .bridge import FT231X, FT2232H, Bridge, link_problem

__all__ = ["Board", "BOARDS", "get_board", "TesseraICEBreakerPlatform",
           "TesseraULX3S85FPlatform", "Estimate", "estimate", "fit_problem", "baud_problem"]


class TesseraICEBreakerPlatform(ICEBreakerPlatform):
    """iCEBreaker with the break-off PMOD's LEDs and buttons (LED2..6 on PMOD2) available.

    With the PMOD snapped off, the requested pins simply float; nothing else changes.
    """
    resources = [*ICEBreakerPlatform.resources, *ICEBreakerPlatform.break_off_pmod]


class TesseraULX3S85FPlatform(ULX3S_85F_Platform):
    """ULX3S 85F whose *build* does not require openFPGALoader.

    ``amaranth_boards.ulx3s`` lists openFPGALoader among the required tools, so
    ``platform.build(..., do_build=True)`` refuses to synthesize without the programmer.
    Building needs only yosys, nextpnr-ecp5 and ecppack; :func:`tessera.fpga.program.program`
    checks for openFPGALoader when it is actually needed.
    """

    @property
    def required_tools(self):
        return list(LatticeECP5Platform.required_tools.fget(self))


@dataclass(frozen=True)
class Board:
    """One supported board.

    Attributes
    ----------
    name : str
        Registry key, as given to ``--board``.
    description : str
    platform_class : type
        ``amaranth.build.Platform`` subclass; :meth:`platform` makes a fresh instance.
    family : str
        ``"ice40"`` or ``"ecp5"``.
    device, package : str
        FPGA part, as nextpnr names it.
    clk_hz : int
        Frequency of the board clock that drives the ``sync`` domain.
    uart : int
        Number of the ``uart`` resource wired to the USB serial bridge.
    bridge : tessera.fpga.bridge.Bridge
        The USB-serial bridge chip on that UART (its rates and their source).
    leds : tuple of (str, str, int, str)
        ``(role, resource, number, where)``: which LED shows which status
        (roles: ``heartbeat``, ``busy``, ``error``, ``link``, ``activity``; see ``docs/fpga.md``).
    luts_total, dsps_total, brams_total : int
        Device totals: LUT4s; DSP blocks (SB_MAC16 / MULT18X18D); block RAMs as nextpnr counts
        them (iCE40: the 30 EBR, ICESTORM_RAM; the UP5K's 4 SPRAMs are not block RAM and are
        reported apart, see `fpga.build.BuildResult`; ECP5: DP16KD).
    bitstream_suffix : str
        ``".bin"`` (icepack) or ``".bit"`` (ecppack).
    synth_opts : str
        Extra ``synth_<family>`` options: on iCE40 ``-dsp`` maps multipliers to SB_MAC16 and
        ``-spram`` lets large memories use SPRAM (ECP5 does both by default).
    tools : tuple of str
        Toolchain programs a build runs.
    openfpgaloader_board : str
        ``openFPGALoader -b`` value.
    openfpgaloader_args : tuple of str
        Extra options for loading into configuration SRAM (volatile); ``()`` where the board
        only supports writing its SPI flash.
    openfpgaloader_flash_args : tuple of str
        Extra options for writing the SPI flash (persistent).
    """
    name: str
    description: str
    platform_class: type
    family: str
    device: str
    package: str
    clk_hz: int
    uart: int
    bridge: Bridge
    leds: tuple
    luts_total: int
    dsps_total: int
    brams_total: int
    bitstream_suffix: str
    synth_opts: str
    tools: tuple
    openfpgaloader_board: str
    openfpgaloader_args: tuple
    openfpgaloader_flash_args: tuple

    def platform(self):
        """A fresh platform instance (a platform can build only once).

        Returns
        -------
        amaranth.build.Platform
        """
        return self.platform_class()

    @property
    def clk_mhz(self):
        """Board clock in MHz.

        Returns
        -------
        float
        """
        return self.clk_hz / 1e6


BOARDS = {
    "icebreaker": Board(
        name="icebreaker",
        description="1BitSquared iCEBreaker (Lattice iCE40 UP5K, 12 MHz)",
        platform_class=TesseraICEBreakerPlatform,
        family="ice40", device="iCE40UP5K", package="SG48",
        clk_hz=12_000_000, uart=0, bridge=FT2232H,
        leds=(
            ("error",     "led", 0, "red LED (pin 11)"),
            ("heartbeat", "led", 1, "green LED (pin 37)"),
            ("busy",      "led", 2, "break-off PMOD, pin 26 (PMOD2 pin 7)"),
            ("activity",  "led", 3, "break-off PMOD, pin 27 (PMOD2 pin 1)"),
            ("link",      "led", 4, "break-off PMOD, pin 25 (PMOD2 pin 2)"),
        ),
        luts_total=5280, dsps_total=8, brams_total=30,
        bitstream_suffix=".bin", synth_opts="-dsp -spram",
        tools=("yosys", "nextpnr-ice40", "icepack"),
        openfpgaloader_board="ice40_generic",
        openfpgaloader_args=(), openfpgaloader_flash_args=(),
    ),
    "ulx3s-85f": Board(
        name="ulx3s-85f",
        description="Radiona ULX3S 85F (Lattice ECP5 LFE5U-85F, 25 MHz)",
        platform_class=TesseraULX3S85FPlatform,
        family="ecp5", device="LFE5U-85F", package="BG381",
        clk_hz=25_000_000, uart=0, bridge=FT231X,
        leds=(
            ("heartbeat", "led", 0, "LED0 (B2)"),
            ("busy",      "led", 1, "LED1 (C2)"),
            ("error",     "led", 2, "LED2 (C1)"),
            ("link",      "led", 3, "LED3 (D2)"),
            ("activity",  "led", 4, "LED4 (D1)"),
        ),
        luts_total=83640, dsps_total=156, brams_total=208,
        bitstream_suffix=".bit", synth_opts="",
        tools=("yosys", "nextpnr-ecp5", "ecppack"),
        openfpgaloader_board="ulx3s",
        openfpgaloader_args=("-m",), openfpgaloader_flash_args=("-f",),
    ),
}


def get_board(name):
    """Look up a board by name.

    Parameters
    ----------
    name : str or Board
        A key of :data:`BOARDS` (a :class:`Board` is returned as is).

    Returns
    -------
    Board

    Raises
    ------
    ValueError
        If ``name`` is not a known board; the message lists the known ones.
    """
    if isinstance(name, Board):
        return name
    try:
        return BOARDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"board must be one of {', '.join(map(repr, BOARDS))}, "
                         f"not {name!r}") from None


# -- fit estimate before any build ---------------------------------------------------------------
# Lower bounds from the config alone, so that a core that certainly cannot fit a board is refused
# before synthesis (seconds) instead of after place and route (minutes to an hour). Each figure
# is what the core needs *at least*; a core within them may still fail to fit or to meet timing.

#: Block-RAM aspect ratios usable by a simple dual-port scratchpad (depth, width).
_BRAM_SHAPES = {
    "ice40": ((256, 16), (512, 8), (1024, 4), (2048, 2)),                  # SB_RAM40_4K
    "ecp5": ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)),  # DP16KD
}
#: Block RAMs a scratchpad can use (iCE40 SPRAM is single-port: not for scratchpads).
_BRAM_BLOCKS = {"ice40": 30, "ecp5": 208}
#: Memory bits one LUT (iCE40: one logic cell, as a flip-flop; ECP5: LUT RAM) holds at most.
_BITS_PER_LUT = {"ice40": 1, "ecp5": 16}
#: yosys maps a multiplier to a DSP block when its product has at least this many bits
#: (``synth_ice40 -dsp``: DSP_Y_MINWIDTH=11; ``synth_ecp5``: any multiplier of 2x2 and up).
_DSP_MIN_PRODUCT = {"ice40": 11, "ecp5": 4}
_DSP_WIDTH = {"ice40": 16, "ecp5": 18}
#: The board top's framed host link (UART, framer with its CRCs and go-back-N buffers, LEDs)
#: and the command decoder: a floor under what they take. The board top around a one-byte echo
#: core measures 1201 logic cells on the UP5K and 1227 LUT4s on the ECP5-85F (nextpnr seed 1;
#: the raw UART bridge it replaced took 274 and 342).
_BASE_LUTS = {"ice40": 1100, "ecp5": 1100}


@dataclass(frozen=True)
class Estimate:
    """Lower bounds of what a core needs on a board's device (see `estimate`)."""
    board: str
    luts: int
    dsps: int
    brams: int
    luts_total: int
    dsps_total: int
    brams_total: int


def _bram_blocks(family, depth, width):
    return min(-(-depth // d) * -(-width // w) for d, w in _BRAM_SHAPES[family])


def estimate(cfg, board):
    """Lower bounds of LUTs, DSP blocks and block RAMs that the core of ``cfg`` needs on
    ``board``, computed from the config only (no HDL is built).

    * block RAM: each scratchpad in the fewest blocks of the device's aspect ratios, unless
      holding it in logic (flip-flops on iCE40, LUT RAM on ECP5) is possible within the LUTs;
    * DSPs: per PE its multiplier (the kind's `PEResources`), when yosys maps it to a DSP
      block (products of 11 bits and more on iCE40, any on ECP5), more for operands wider than
      a block; none for a PE without a multiplier;
    * LUTs: per PE the kind's LUT floor (by default its accumulator adder), plus a floor for
      the board top's framed host link;
    * the framed link's two buffers (`tessera.fpga.top.link_sizes`) in block RAM.

    The PE kind states its floor (`PEKind.resources`) and the engine how many PEs it builds
    (`Engine.pe_count`); nothing here asks which kind or format it is.
    """
    board = get_board(board)
    fam = board.family
    res = cfg.pe.resources()
    pes = cfg.engine.pe_count()
    # DSP blocks
    dsps = 0
    if res.multiplier is not None:
        wa, wb = res.multiplier
        if wa + wb >= _DSP_MIN_PRODUCT[fam]:
            w = _DSP_WIDTH[fam]
            dsps = pes * -(-wa // w) * -(-wb // w)
    # LUTs of the PEs
    luts = _BASE_LUTS[fam] + pes * res.luts
    # The epilogue lanes (one per result lane), when the core builds one.
    epi = cfg.engine.epilogue()
    if epi is not None:
        lanes = cfg.geometry.result_stores[0].lanes
        er = epi.resources()
        if er.multiplier is not None:
            wa, wb = er.multiplier
            if wa + wb >= _DSP_MIN_PRODUCT[fam]:
                w = _DSP_WIDTH[fam]
                dsps += lanes * -(-wa // w) * -(-wb // w)
        luts += lanes * er.luts
    # Block RAM: choose per scratchpad between blocks and logic, keeping the LUTs in budget.
    # Every bank is its own memory.
    mems = [(s.banks * _bram_blocks(fam, s.depth, s.word_bits),
             s.banks * -(-s.depth * s.word_bits // _BITS_PER_LUT[fam]))
            for s in cfg.geometry.stores]
    best = None
    for choice in range(1 << len(mems)):
        blocks = sum(b for i, (b, _) in enumerate(mems) if not choice >> i & 1)
        logic = sum(lut for i, (_, lut) in enumerate(mems) if choice >> i & 1)
        fits = blocks <= _BRAM_BLOCKS[fam] and luts + logic <= board.luts_total
        key = (not fits, blocks + logic // 64)
        if best is None or key < best[0]:
            best = (key, blocks, logic)
    _, brams, logic = best
    # The framed link's receive and transmit buffers (byte wide) are block RAM on every board.
    from .top import link_sizes
    link = link_sizes(board)
    brams += sum(_bram_blocks(fam, link[b], 8) for b in ("rx_buffer", "tx_buffer"))
    return Estimate(board=board.name, luts=luts + logic, dsps=dsps, brams=brams,
                    luts_total=board.luts_total, dsps_total=board.dsps_total,
                    brams_total=_BRAM_BLOCKS[fam])


def fit_problem(cfg, board):
    """Why the core of ``cfg`` certainly does not fit ``board`` (one phrase), or None."""
    board = get_board(board)
    e = estimate(cfg, board)
    dsp = {"ice40": "SB_MAC16 DSPs", "ecp5": "MULT18X18D DSPs"}[board.family]
    bram = {"ice40": "EBR block RAMs", "ecp5": "DP16KD block RAMs"}[board.family]
    lut = {"ice40": "logic cells", "ecp5": "LUT4s"}[board.family]
    for used, total, what in ((e.dsps, e.dsps_total, dsp), (e.brams, e.brams_total, bram),
                              (e.luts, e.luts_total, lut)):
        if used > total:
            return (f"needs at least {used} {what} and the {board.device} has {total} "
                    f"(estimated from the config: {cfg.rows}x{cfg.cols} PEs, scratchpads "
                    f"{'/'.join(str(s.depth) for s in cfg.geometry.stores)} words)")
    return None


def baud_problem(baud, board, clk_hz=None):
    """Why ``baud`` cannot link ``board``'s USB-serial bridge and a board top clocked at
    ``clk_hz`` (default: the board clock) (one phrase), or None: the board top's divisor, the
    bridge's own rates and both receivers' tolerance (`tessera.fpga.bridge.link_problem`)."""
    board = get_board(board)
    clk_hz = board.clk_hz if clk_hz is None else clk_hz
    why = link_problem(board.bridge, clk_hz, baud)
    if why:
        return f"{why} (the core clock is {clk_hz / 1e6:g} MHz)"
    return None
