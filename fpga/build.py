"""Bitstream builds with the YoWASP toolchain: report, cache, and atomic output folders."""

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth import Elaboratable
from amaranth.lib import wiring

from .boards import get_board
from .toolchain import require_tools, tool_versions, yowasp_env
from .top import BoardTop, pll_plan

__all__ = ["BuildError", "BuildResult", "build_plan", "build_bitstream", "parse_nextpnr_report",
           "summarize_report", "check_build_environment", "RESULT_FILE", "FAILED_RECORD",
           "CELLS"]

#: Name of the summary written into every build folder (also the cache record, and the list of
#: files the build wrote: a later build replaces only such a folder).
RESULT_FILE = "build_result.json"

#: The record of a failed build's folder (``<out_dir>.failed``).
FAILED_RECORD = "build_failed.json"

#: Bump when the meaning of a cached result changes.
_CACHE_FORMAT = 1

#: nextpnr cell types counted per report field, per device family.
CELLS = {
    "ice40": {"luts": ("ICESTORM_LC",), "dsps": ("ICESTORM_DSP",),
              "brams": ("ICESTORM_RAM",), "sprams": ("ICESTORM_SPRAM",), "ffs": ()},
    "ecp5":  {"luts": ("TRELLIS_COMB",), "dsps": ("MULT18X18D",),
              "brams": ("DP16KD",), "sprams": (), "ffs": ("TRELLIS_FF",)},
}

#: Flip-flop cell-name prefixes in the synthesized netlist, where nextpnr does not count them.
_FF_PREFIXES = {"ice40": ("SB_DFF",), "ecp5": ("TRELLIS_FF",)}

_OVERRIDES = ("AMARANTH_nextpnr_opts", "AMARANTH_synth_opts")

#: BuildResult fields that `BuildResult.load` counts again from the stored nextpnr table.
_RAM_FIELDS = ("brams", "brams_total", "sprams", "sprams_total")


class BuildError(RuntimeError):
    """A bitstream build failed; the message names the stage, the board and the log file."""


@dataclass(frozen=True)
class BuildResult:
    """Outcome of :func:`build_bitstream`, also stored as ``build_result.json`` in the folder.

    Attributes
    ----------
    bitstream : str
        Absolute path of the bitstream (``.bin`` for iCE40, ``.bit`` for ECP5).
    board, device : str
    luts, luts_total : int
        Logic cells used / available (ICESTORM_LC on iCE40, TRELLIS_COMB LUT4 slots on ECP5).
    dsps, dsps_total : int
        SB_MAC16 (ICESTORM_DSP) / MULT18X18D blocks.
    brams, brams_total : int
        Block RAMs as nextpnr counts them: EBR (ICESTORM_RAM) on iCE40 (30 on the UP5K),
        DP16KD on ECP5 (208).
    ffs : int
        Flip-flops (TRELLIS_FF from nextpnr on ECP5; SB_DFF* cells of the synthesized netlist on
        iCE40, where nextpnr packs them into logic cells).
    fmax_mhz : float or None
        Fmax nextpnr achieved for the clock of the ``sync`` domain (None if the design has no
        clocked logic).
    target_mhz : float
        The core clock the design is constrained to (the board clock, or the PLL's output).
    timing_met : bool
        Every constrained clock meets its constraint.
    seconds : float
        Wall time of the toolchain run that made this build (not of a cache hit).
    report_path : str
        Absolute path of nextpnr's ``--report`` JSON.
    key : str
        Cache key: SHA-256 of the build plan digest and the tool versions.
    clocks : dict
        Every clock nextpnr timed: name -> ``{"achieved": MHz, "constraint": MHz}``.
    utilization : dict
        nextpnr's full utilization table: cell type -> ``{"used": n, "available": n}``.
    tool_versions : dict
    seed : int
    sprams, sprams_total : int
        The UP5K's single-port RAMs (ICESTORM_SPRAM, 4 x 256 kbit), not counted as block RAM;
        0 / 0 on ECP5.
    cached : bool
        True when this result was reused from an earlier identical build.
    """
    bitstream: str
    board: str
    device: str
    luts: int
    luts_total: int
    dsps: int
    dsps_total: int
    brams: int
    brams_total: int
    ffs: int
    fmax_mhz: float | None
    target_mhz: float
    timing_met: bool
    seconds: float
    report_path: str
    key: str
    clocks: dict = field(default_factory=dict)
    utilization: dict = field(default_factory=dict)
    tool_versions: dict = field(default_factory=dict)
    seed: int = 1
    sprams: int = 0
    sprams_total: int = 0
    cached: bool = False

    def to_json(self, files=None):
        """The JSON text stored in the build folder (paths relative to it, so it can move),
        with ``files`` ({relative path: sha256}: what the build wrote) when given.

        Returns
        -------
        str
        """
        record = dataclasses.asdict(self)
        record["bitstream"] = os.path.basename(self.bitstream)
        record["report_path"] = os.path.basename(self.report_path)
        record.pop("cached")
        record["format"] = _CACHE_FORMAT
        if files is not None:
            record["files"] = files
        return json.dumps(record, indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, out_dir):
        """Read ``build_result.json`` from ``out_dir``.

        Returns
        -------
        BuildResult or None
            None if the file is absent, unreadable or of another format.
        """
        path = Path(out_dir) / RESULT_FILE
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.pop("format", None) != _CACHE_FORMAT:
            return None
        names = {f.name for f in dataclasses.fields(cls)}
        # The RAM figures are counted again from the stored nextpnr table, as
        # `summarize_report` counts them now (older records counted SPRAM as block RAM).
        try:
            figures = summarize_report({"utilization": record["utilization"], "fmax": {}},
                                       record["board"])
            record.update({k: figures[k] for k in _RAM_FIELDS})
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        if not names - {"cached"} <= record.keys():
            return None
        record = {k: v for k, v in record.items() if k in names}
        record["bitstream"] = str(Path(out_dir).resolve() / record["bitstream"])
        record["report_path"] = str(Path(out_dir).resolve() / record["report_path"])
        return cls(**record)

    def summary(self):
        """One line per figure, for printing.

        Returns
        -------
        str
        """
        fmax = "n/a" if self.fmax_mhz is None else f"{self.fmax_mhz:.1f} MHz"
        status = "met" if self.timing_met else "FAILED"
        return "\n".join([
            f"board     {self.board} ({self.device})",
            f"LUTs      {self.luts} / {self.luts_total}",
            f"FFs       {self.ffs}",
            f"DSPs      {self.dsps} / {self.dsps_total}",
            f"BRAMs     {self.brams} / {self.brams_total}",
            *([f"SPRAMs    {self.sprams} / {self.sprams_total}"] if self.sprams else []),
            f"Fmax      {fmax} (target {self.target_mhz:g} MHz, timing {status})",
            f"bitstream {self.bitstream}",
        ])


def parse_nextpnr_report(path):
    """Read the JSON that ``nextpnr-* --report FILE`` writes.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict
        ``{"utilization": {cell: {"used": int, "available": int}},
        "fmax": {clock: {"achieved": float MHz, "constraint": float MHz}},
        "critical_paths": list}``.

    Raises
    ------
    ValueError
        If the file is not such a report.
    """
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read nextpnr report {os.fspath(path)!r}: {error}") from None
    if not isinstance(report, dict) or not isinstance(report.get("utilization"), dict):
        raise ValueError(f"{os.fspath(path)!r} is not a nextpnr --report file "
                         f"(no 'utilization' table)")
    utilization = {}
    for cell, counts in report["utilization"].items():
        utilization[cell] = {"used": int(counts["used"]),
                             "available": int(counts["available"])}
    fmax = {}
    for clock, timing in (report.get("fmax") or {}).items():
        fmax[clock] = {"achieved": float(timing["achieved"]),
                       "constraint": float(timing["constraint"])}
    return {"utilization": utilization, "fmax": fmax,
            "critical_paths": list(report.get("critical_paths") or [])}


def _count(utilization, cells, key):
    return sum(utilization.get(cell, {}).get(key, 0) for cell in cells)


def _netlist_ffs(netlist_path, top, prefixes):
    try:
        netlist = json.loads(Path(netlist_path).read_text())
    except (OSError, ValueError):
        return 0
    module = netlist.get("modules", {}).get(top, {})
    return sum(1 for cell in module.get("cells", {}).values()
               if cell.get("type", "").startswith(prefixes))


def summarize_report(report, board, target_hz=None):
    """Reduce a parsed nextpnr report to the :class:`BuildResult` figures.

    The ``sync`` clock is the timed clock whose constraint equals the core clock (the
    slowest of them if there are several); its achieved frequency is ``fmax_mhz``.

    Parameters
    ----------
    report : dict
        From :func:`parse_nextpnr_report`.
    board : str or fpga.boards.Board
    target_hz : float, optional
        The core clock (a PLL's output); the board clock by default.

    Returns
    -------
    dict
        ``luts``, ``luts_total``, ``dsps``, ``dsps_total``, ``brams``, ``brams_total``
        (EBR only on iCE40), ``sprams``, ``sprams_total`` (iCE40 SPRAM; 0 on ECP5),
        ``ffs`` (0 where nextpnr does not count FFs), ``fmax_mhz``, ``target_mhz``,
        ``timing_met``.
    """
    board = get_board(board)
    cells = CELLS[board.family]
    util = report["utilization"]
    figures = {}
    for field_name, default_total in (("luts", board.luts_total), ("dsps", board.dsps_total),
                                      ("brams", board.brams_total), ("sprams", 0)):
        figures[field_name] = _count(util, cells[field_name], "used")
        figures[f"{field_name}_total"] = (_count(util, cells[field_name], "available")
                                          or default_total)
    figures["ffs"] = _count(util, cells["ffs"], "used")
    target = board.clk_mhz if target_hz is None else target_hz / 1e6
    clocks = report["fmax"]
    sync = [c for c in clocks.values() if abs(c["constraint"] - target) <= 1e-3 * target]
    candidates = sync or list(clocks.values())
    figures["fmax_mhz"] = (round(min(c["achieved"] for c in candidates), 2)
                           if candidates else None)
    figures["target_mhz"] = target
    figures["timing_met"] = all(c["achieved"] >= c["constraint"] for c in clocks.values())
    return figures


def _as_top(core, board, baud, clk_hz=None):
    if isinstance(core, BoardTop):
        if core.board.name != board.name:
            raise ValueError(f"core is a BoardTop for board {core.board.name!r}, "
                             f"not {board.name!r}")
        return core
    if isinstance(core, wiring.Component):
        return BoardTop(core, board, baud=baud, clk_hz=clk_hz)
    if isinstance(core, Elaboratable):
        return core              # a complete top that requests its own pins
    raise TypeError(f"core must be a byte-stream wiring.Component, a BoardTop or an "
                    f"Elaboratable board top, not {core!r}")


def _options(value, name):
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"{name} must be a string or a list of strings, not {value!r}")


def _check_out_dir(out_dir):
    """``out_dir`` must be new, empty or a build folder tessera wrote (its ``build_result.json``
    lists every file in it); see `tessera.outpaths.check_output_dir`."""
    from tessera.outpaths import check_output_dir
    return check_output_dir(out_dir, records=(RESULT_FILE,), what="build folder")


def check_build_environment():
    """Raise `BuildError` if the environment would change what a build does (amaranth reads
    ``AMARANTH_nextpnr_opts`` / ``AMARANTH_synth_opts`` and would override tessera's options)."""
    for var in _OVERRIDES:
        if var in os.environ:
            raise BuildError(f"environment variable {var} is set and would override tessera's "
                             f"options; unset it (pass nextpnr_opts/synth_opts instead)")


def _record_files(folder, skip):
    from tessera.outpaths import _sha256_file
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            rel = os.path.relpath(os.path.join(root, n), folder)
            if rel not in skip:
                out[rel] = _sha256_file(os.path.join(root, n))
    return dict(sorted(out.items()))


def _keep_failed(tmp, out_dir):
    """Move a failed build ``tmp`` to ``<out_dir>.failed`` (replacing an earlier failed build
    there, never anything else; then a fresh ``<out_dir>.failed-*`` is used)."""
    from tessera.outpaths import OutputPathError, check_output_dir, swap_in
    (tmp / FAILED_RECORD).write_text(json.dumps(
        {"format": _CACHE_FORMAT, "files": _record_files(tmp, {FAILED_RECORD})}, indent=2)
        + "\n")
    failed = out_dir.with_name(out_dir.name + ".failed")
    try:
        where = check_output_dir(failed, records=(FAILED_RECORD,), what="failed build folder")
        swap_in(tmp, failed, exists=where.exists)
    except (OutputPathError, OSError):
        failed = Path(tempfile.mkdtemp(prefix=out_dir.name[:200] + ".failed-", dir=out_dir.parent))
        os.rmdir(failed)
        os.rename(tmp, failed)
    return failed


#: nextpnr's placer, when the design has more cells of a kind than the device.
_TOO_BIG = re.compile(r"Failed to expand region .* of (\d+) (ICESTORM_LC|TRELLIS_COMB|"
                      r"TRELLIS_SLICE)s?")


def _too_big(line, board):
    """``line`` (nextpnr's first error) preceded by what it means when the design has more
    logic cells or LUTs than the device: the design does not fit."""
    m = _TOO_BIG.search(line)
    if not m:
        return line
    what = "logic cells" if board.family == "ice40" else "LUT4s"
    total = board.luts_total
    return (f"the design needs {m.group(1)} {what} and the {board.device} has {total}: it does "
            f"not fit ({line})")


def _first_error(log_path):
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in lines:
        if line.lstrip().upper().startswith("ERROR"):
            return line.strip()
    lines = [line.strip() for line in lines if line.strip()]
    return lines[-1] if lines else ""


def build_plan(core, *, board, name="tessera", seed=1, nextpnr_opts=None, synth_opts=None,
               baud=115200, clk_hz=None):
    """Elaborate ``core`` for ``board`` into an amaranth ``BuildPlan``, without running tools.

    Takes the same arguments as :func:`build_bitstream` (which calls it). Cheap: this is the
    ``do_build=False`` path, useful for tests and for shipping a build to another machine.

    Returns
    -------
    tuple
        ``(plan, key, tool_versions)``: the :class:`amaranth.build.run.BuildPlan`, the cache
        key (SHA-256 hex of the plan digest and the tool versions) and those versions.
    """
    board = get_board(board)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
        raise ValueError(f"name must be an identifier (ASCII letters, digits, _), not {name!r}")
    top = _as_top(core, board, baud, clk_hz)
    pnr = ["--seed", str(seed), "--report", f"{name}.report.json", "--timing-allow-fail",
           *_options(nextpnr_opts, "nextpnr_opts")]
    synth = [*board.synth_opts.split(), *_options(synth_opts, "synth_opts")]
    plan = board.platform().build(top, name=name, do_build=False, emit_src=False,
                                  nextpnr_opts=" ".join(pnr), synth_opts=" ".join(synth))
    versions = tool_versions()
    key = hashlib.sha256(json.dumps([_CACHE_FORMAT, plan.digest().hex(), versions],
                                    sort_keys=True).encode()).hexdigest()
    return plan, key, versions


def build_bitstream(core, *, board, out_dir, name="tessera", seed=1, progress=print,
                    nextpnr_opts=None, synth_opts=None, baud=115200, clk_hz=None):
    """Synthesize, place, route and pack a design for a board, with a utilization report.

    ``core`` is wrapped in :class:`tessera.fpga.top.BoardTop` (clocking, the framed UART link
    and LEDs) unless it already is one. The design goes through
    ``platform.build(..., do_build=False)``, and the resulting build plan is run in a temporary
    folder next to ``out_dir`` with :func:`yowasp_env` (the same steps as
    ``BuildPlan.execute_local``, but with the tool output captured in ``build.log`` and the
    current stage printed). Only a complete build replaces ``out_dir``;
    a failed one is left in ``<out_dir>.failed`` for its logs.

    If ``out_dir`` already holds a result whose key (the build plan digest, which covers the
    design, constraints, options and seed, plus the tool versions) matches, and its files are
    present, that result is returned with ``cached=True`` and nothing is run.

    Parameters
    ----------
    core : wiring.Component or BoardTop or Elaboratable
        A byte-stream core with ``HostLinkSignature`` (see
        :func:`tessera.fpga.top.check_byte_stream_core`), a :class:`BoardTop`, or any top-level
        elaboratable that requests its own pins.
    board : str
        Name in :data:`tessera.fpga.boards.BOARDS`.
    out_dir : str or os.PathLike
        Build folder. It must be new, empty, or an earlier build folder.
    name : str
        Design name: file stem of every product (``<name>.bin`` / ``<name>.bit``).
    seed : int
        nextpnr placer seed, for reproducible results.
    progress : callable or None
        Called with one line per stage (name and elapsed seconds); None for silence.
    nextpnr_opts, synth_opts : str or list of str, optional
        Extra options for nextpnr and for ``synth_ice40``/``synth_ecp5``, after tessera's own
        (``--seed N --report <name>.report.json --timing-allow-fail``; the board's
        ``synth_opts``, e.g. ``-dsp -spram`` on iCE40).
    baud : int
        UART bit rate when ``core`` gets wrapped in a :class:`BoardTop`.
    clk_hz : float, optional
        Core clock when ``core`` gets wrapped in a :class:`BoardTop` (a PLL makes it when it
        is not the board clock); the board clock by default.

    Returns
    -------
    BuildResult

    Raises
    ------
    ValueError, TypeError
        For bad arguments (unknown board, unusable ``out_dir``, ...).
    fpga.toolchain.ToolchainError
        If a YoWASP tool is missing.
    BuildError
        If a toolchain stage fails.
    """
    say = progress or (lambda line: None)
    board = get_board(board)
    check_build_environment()
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    out_dir = Path(os.path.abspath(out_dir))
    plan_out = _check_out_dir(out_dir)
    require_tools(board.tools)

    start = time.monotonic()
    say(f"[{0:7.1f}s] elaborate for {board.name} ({board.device})")
    if isinstance(core, BoardTop):
        target_hz = core.clk_hz
    elif clk_hz is not None and isinstance(core, wiring.Component):
        plan_pll = pll_plan(board, clk_hz)
        target_hz = plan_pll.out_hz if plan_pll else board.clk_hz
    else:
        target_hz = board.clk_hz
    plan, key, versions = build_plan(core, board=board, name=name, seed=seed,
                                     nextpnr_opts=nextpnr_opts, synth_opts=synth_opts,
                                     baud=baud, clk_hz=clk_hz)
    report_name = f"{name}.report.json"

    previous = BuildResult.load(out_dir)
    if (previous is not None and previous.key == key and os.path.isfile(previous.bitstream)
            and os.path.isfile(previous.report_path)):
        say(f"[{time.monotonic() - start:7.1f}s] up to date: {out_dir} (cache key "
            f"{key[:12]})")
        return dataclasses.replace(previous, cached=True)

    from tessera.outpaths import make_parents, new_tmp_dir, remove_created, swap_in
    made = make_parents(plan_out)
    tmp = new_tmp_dir(out_dir.parent)        # a normal folder's permissions, short hidden name
    done = False
    try:
        plan.extract(tmp)
        log_path = tmp / "build.log"
        stages = [
            ("synthesis (yosys)", None),
            (f"place and route (nextpnr-{board.family})", f"{name}.tim"),
            ("bitstream ({})".format("icepack" if board.family == "ice40" else "ecppack"),
             f"{name}.asc" if board.family == "ice40" else f"{name}.config"),
        ]
        run_start = time.monotonic()
        stage = 0
        say(f"[{time.monotonic() - start:7.1f}s] {stages[0][0]}")
        with open(log_path, "wb") as log:
            process = subprocess.Popen(["sh", f"{plan.script}.sh"], cwd=tmp, env=yowasp_env(),
                                       stdout=log, stderr=subprocess.STDOUT)
            try:
                while process.poll() is None:
                    time.sleep(0.2)
                    while stage + 1 < len(stages) and (tmp / stages[stage + 1][1]).exists():
                        stage += 1
                        say(f"[{time.monotonic() - start:7.1f}s] {stages[stage][0]}")
            except BaseException:
                process.kill()
                process.wait()
                raise
        seconds = round(time.monotonic() - run_start, 2)
        if process.returncode != 0:
            failed = _keep_failed(tmp, out_dir)
            done = True
            detail = _too_big(_first_error(failed / "build.log"), board)
            raise BuildError(f"{stages[stage][0]} failed for board {board.name} "
                             f"(exit {process.returncode}): {detail} "
                             f"[log: {failed / 'build.log'}]")

        report = parse_nextpnr_report(tmp / report_name)
        figures = summarize_report(report, board, target_hz)
        if not CELLS[board.family]["ffs"]:
            figures["ffs"] = _netlist_ffs(tmp / f"{name}.json", name,
                                          _FF_PREFIXES[board.family])
        result = BuildResult(
            bitstream=str(out_dir / f"{name}{board.bitstream_suffix}"),
            board=board.name, device=board.device, seconds=seconds,
            report_path=str(out_dir / report_name), key=key,
            clocks=report["fmax"], utilization=report["utilization"],
            tool_versions=versions, seed=seed, **figures)
        (tmp / RESULT_FILE).write_text(result.to_json(files=_record_files(tmp, {RESULT_FILE})))
        plan_out = _check_out_dir(out_dir)      # again: the folder may have changed meanwhile
        swap_in(tmp, out_dir, exists=plan_out.exists)
        done = True
    finally:
        if not done:
            shutil.rmtree(tmp, ignore_errors=True)
            remove_created(made)
    say(f"[{time.monotonic() - start:7.1f}s] done: {result.luts}/{result.luts_total} LUTs, "
        f"Fmax {result.fmax_mhz} MHz (target {result.target_mhz:g} MHz"
        f"{'' if result.timing_met else ', TIMING FAILED'})")
    return result
