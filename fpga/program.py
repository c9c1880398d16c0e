"""Loading a bitstream into a board with openFPGALoader."""

import os
import re
import shutil
import subprocess

from .boards import get_board

__all__ = ["ProgramError", "find_openfpgaloader", "program_command", "program"]

INSTALL_HINT = "install it with `apt-get install openfpgaloader`"

# What openFPGALoader (through libftdi/libusb) prints when no board answers.
_NO_BOARD = re.compile(
    r"unable to open ftdi device|device not found|no device found|cannot find|"
    r"JTAG init failed|fail to open|no cable|LIBUSB_ERROR|No such device",
    re.IGNORECASE)
_PERMISSION = re.compile(r"LIBUSB_ERROR_ACCESS|permission denied|insufficient permissions",
                         re.IGNORECASE)


class ProgramError(RuntimeError):
    """Programming failed: tool missing, no board found, or the tool reported an error."""


def find_openfpgaloader(env=None):
    """Locate openFPGALoader: ``$OPENFPGALOADER`` if set, else ``PATH``.

    Parameters
    ----------
    env : dict, optional
        Environment to look in; ``os.environ`` by default.

    Returns
    -------
    str
        Absolute path of the executable.

    Raises
    ------
    ProgramError
        If it cannot be found, with the install command.
    """
    env = os.environ if env is None else env
    if env.get("OPENFPGALOADER"):
        tool = env["OPENFPGALOADER"]
        found = shutil.which(tool, path=env.get("PATH", os.defpath))
        if found is None:
            raise ProgramError(f"OPENFPGALOADER is set to {tool!r}, which is not an executable;"
                               f" fix it or unset it")
        return found
    found = shutil.which("openFPGALoader", path=env.get("PATH", os.defpath))
    if found is None:
        raise ProgramError(f"openFPGALoader not found on PATH; {INSTALL_HINT} "
                           f"(or set OPENFPGALOADER to its path)")
    return found


def program_command(bitstream, board, *, flash=False, tool="openFPGALoader"):
    """The openFPGALoader command line that loads ``bitstream`` into ``board``.

    Mirrors ``amaranth_boards``: the ULX3S is loaded with ``-b ulx3s -m`` (configuration
    SRAM; ``-f`` writes the flash). The iCEBreaker's FTDI is wired like Lattice's iCE40
    boards, ``-b ice40_generic``, which writes the SPI flash the iCE40 boots from.

    Parameters
    ----------
    bitstream : str or os.PathLike
    board : str or fpga.boards.Board
    flash : bool
        Write the board's SPI flash (persistent) instead of the configuration SRAM.
    tool : str
        openFPGALoader executable.

    Returns
    -------
    list of str
    """
    board = get_board(board)
    extra = board.openfpgaloader_flash_args if flash else board.openfpgaloader_args
    return [tool, "-b", board.openfpgaloader_board, *extra, os.fspath(bitstream)]


def program(bitstream, board, *, dry_run=False, flash=False, timeout=300, progress=print):
    """Load a bitstream into a board attached over USB.

    Parameters
    ----------
    bitstream : str or os.PathLike
        ``.bin`` (iCE40) or ``.bit`` (ECP5) file, e.g. ``BuildResult.bitstream``.
    board : str or fpga.boards.Board
        Name in :data:`tessera.fpga.boards.BOARDS`.
    dry_run : bool
        Only return the command; run nothing (openFPGALoader need not be installed).
    flash : bool
        Write the persistent SPI flash instead of the configuration SRAM (ULX3S); on the
        iCEBreaker openFPGALoader always writes the flash.
    timeout : float
        Seconds before giving up on openFPGALoader.
    progress : callable or None
        Called with the command line before it runs.

    Returns
    -------
    list of str
        The command (run unless ``dry_run``).

    Raises
    ------
    ValueError
        Unknown board, or a bitstream of the wrong kind.
    FileNotFoundError
        If ``bitstream`` does not exist.
    ProgramError
        openFPGALoader missing (with the install command), no board detected, no permission
        to open the USB device, or any other failure (with its last output line).
    """
    board = get_board(board)
    path = os.fspath(bitstream)
    if not path.endswith(board.bitstream_suffix):
        raise ValueError(f"bitstream for {board.name} must be a {board.bitstream_suffix} file, "
                         f"not {path!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"bitstream {path!r} does not exist; build it first")
    if dry_run:
        return program_command(path, board, flash=flash)
    command = program_command(path, board, flash=flash, tool=find_openfpgaloader())
    if progress:
        progress(" ".join(command))
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace",
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ProgramError(f"openFPGALoader did not finish within {timeout} s "
                           f"(board {board.name})") from None
    output = (done.stdout or "") + (done.stderr or "")
    if _PERMISSION.search(output):
        raise ProgramError(f"no permission to open the {board.name}'s USB device; add a udev "
                           f"rule for it or run as a user in the plugdev group")
    if _NO_BOARD.search(output):
        raise ProgramError(f"no {board.name} board found on USB; check the cable and that the "
                           f"board is powered (openFPGALoader: "
                           f"{_NO_BOARD.search(output).group(0)})")
    if done.returncode != 0:
        last = [line.strip() for line in output.splitlines() if line.strip()]
        raise ProgramError(f"openFPGALoader failed for {board.name} (exit {done.returncode}): "
                           f"{last[-1] if last else 'no output'}")
    return command
