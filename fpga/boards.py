"""The boards tessera builds for: platform, clock, UART, LEDs, device totals, programmer."""

from dataclasses import dataclass

from amaranth.vendor import LatticeECP5Platform
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

__all__ = ["Board", "BOARDS", "get_board", "TesseraICEBreakerPlatform",
           "TesseraULX3S85FPlatform"]


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
    leds : tuple of (str, str, int, str)
        ``(role, resource, number, where)``: which LED shows which status
        (roles: ``heartbeat``, ``busy``, ``error``, ``link``, ``activity``; see ``docs/fpga.md``).
    luts_total, dsps_total, brams_total : int
        Device totals: LUT4s; DSP blocks (SB_MAC16 / MULT18X18D); block RAMs (iCE40: 30 EBR +
        4 SPRAM, ECP5: DP16KD).
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
        clk_hz=12_000_000, uart=0,
        leds=(
            ("error",     "led", 0, "red LED (pin 11)"),
            ("heartbeat", "led", 1, "green LED (pin 37)"),
            ("busy",      "led", 2, "break-off PMOD, pin 26 (PMOD2 pin 7)"),
            ("activity",  "led", 3, "break-off PMOD, pin 27 (PMOD2 pin 1)"),
            ("link",      "led", 4, "break-off PMOD, pin 25 (PMOD2 pin 2)"),
        ),
        luts_total=5280, dsps_total=8, brams_total=30 + 4,
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
        clk_hz=25_000_000, uart=0,
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
