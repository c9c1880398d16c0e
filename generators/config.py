"""Core configuration: TOML (or a preset name) validated into frozen dataclasses.

Every check names the key, the value and what is allowed, so a user can fix a config from the
message alone. ``[pe]`` is parsed by the PE kind's own section and ``[array]`` is checked against
the engine registry (`tessera.generators.kinds`); the derived facts (`CoreConfig.geometry`, the
INFO layout, the engine) are computed once here, so the HDL, the golden model, the manifest and
the host driver all read them from the same object.
"""

import dataclasses
import functools
import pathlib
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources

from tessera.generators.kinds import (DEFAULT_ENGINE, DEFAULT_PE_KIND, ENGINES, ENGINES_LATER,
                                      PE_KINDS, PE_KINDS_LATER)
from tessera.generators.kinds.base import (ConfigError, check_choice as _check_choice,
                                           check_int as _check_int, fmt_allowed as _fmt_allowed)


__all__ = ["ConfigError", "CoreConfig", "CoreSection", "ArraySection", "MemorySection",
           "HostSection", "load_config", "config_from_dict", "preset_names", "preset_summary",
           "DEFAULT_PRESET", "BOARDS"]


DEFAULT_PRESET = "int8-8x8"
BOARDS = ("icebreaker", "ulx3s-85f")

HOST_INTERFACES = ("stream", "uart")

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


@dataclass(frozen=True)
class CoreSection:
    """``[core]``: the generated module's name and its target clock."""
    name: str = "tessera_core"
    clock_mhz: float = 25.0
    boards: tuple = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ConfigError(f"core.name: {self.name!r} is not a valid module name; allowed: "
                              f"lower-case letter then [a-z0-9_], at most 48 characters")
        if isinstance(self.clock_mhz, bool) or not isinstance(self.clock_mhz, (int, float)) \
                or not 1 <= self.clock_mhz <= 1000:
            raise ConfigError(f"core.clock_mhz: {self.clock_mhz!r} is out of range; "
                              f"allowed: a number 1..1000")
        boards = tuple(self.boards) if isinstance(self.boards, (list, tuple)) else self.boards
        if not isinstance(boards, tuple):
            raise ConfigError(f"core.boards: {self.boards!r} is not a list; "
                              f"allowed: a list of {_fmt_allowed(BOARDS)}")
        for b in boards:
            if b not in BOARDS:
                raise ConfigError(f"core.boards: {b!r} is unknown; allowed: {_fmt_allowed(BOARDS)}")
        object.__setattr__(self, "boards", boards)
        object.__setattr__(self, "clock_mhz", float(self.clock_mhz))


#: The systolic engine's ``[array]`` section (each engine parses its own keys).
ArraySection = ENGINES[DEFAULT_ENGINE].Section


@dataclass(frozen=True)
class MemorySection:
    """``[memory]``: scratchpad depths in words (what a word holds is the engine's geometry).

    For the systolic engine, scratchpad A holds input words of ``array.rows`` activation lanes,
    B weight words of ``array.cols`` lanes and C output words of ``array.cols`` accumulators.
    """
    a_depth: int = 1024
    b_depth: int = 1024
    c_depth: int = 1024

    def __post_init__(self):
        for key in ("a_depth", "b_depth", "c_depth"):
            _check_int(f"memory.{key}", getattr(self, key), 16, 32768)


@dataclass(frozen=True)
class HostSection:
    """``[host]``: how the host reaches the core.

    ``stream``: the bare byte stream (simulation, or a core embedded in the user's own design);
    ``uart``: on a board, behind the UART bridge at ``baud``. `tessera build` needs ``uart``.
    """
    interface: str = "stream"
    baud: int = 115200

    def __post_init__(self):
        _check_choice("host.interface", self.interface, HOST_INTERFACES)
        _check_int("host.baud", self.baud, 1200, 3_000_000)


_SECTIONS = {
    "core": CoreSection,
    "array": None,  # parsed by the engine's own section (tessera.generators.kinds)
    "pe": None,     # parsed by the PE kind's own section (tessera.generators.kinds)
    "memory": MemorySection,
    "host": HostSection,
}


@dataclass(frozen=True)
class CoreConfig:
    """A whole core: one frozen object from which HDL, golden model and manifest are derived."""
    core: CoreSection = field(default_factory=CoreSection)
    array: object = field(default_factory=ENGINES[DEFAULT_ENGINE].Section)
    pe: object = field(default_factory=PE_KINDS[DEFAULT_PE_KIND])
    memory: MemorySection = field(default_factory=MemorySection)
    host: HostSection = field(default_factory=HostSection)
    source: str = field(default="default", compare=False)

    def __post_init__(self):
        # Cross-section checks: every store must fit the INFO/protocol framing (lanes and lane
        # bits one byte each, a word transferable in at most 256 bytes).
        try:
            g = self.geometry
        except ValueError as e:
            raise ConfigError(f"array/pe: {e}") from None
        for s in g.stores:
            if s.word_bits > 2048:
                raise ConfigError(f"array.rows/cols: {s.lanes} lanes x {s.lane_bits} bits give "
                                  f"{s.word_bits}-bit words in scratchpad {s.name}; allowed: at "
                                  f"most 2048 bits per scratchpad word")

    # Derived facts -----------------------------------------------------------------------------
    @property
    def rows(self):
        return self.array.rows

    @property
    def cols(self):
        return self.array.cols

    @property
    def pes(self):
        return self.array.rows * self.array.cols

    @property
    def engine(self):
        """The engine of ``array.kind`` for this config (`tessera.generators.kinds.Engine`)."""
        return ENGINES[self.array.kind](self)

    @functools.cached_property
    def geometry(self):
        """The memory map (`tessera.hdl.ctrl.memmap.Geometry`), from the engine and PE kind."""
        return self.engine.geometry()

    def core_info(self):
        """The INFO payload this core reports (`tessera.hdl.ctrl.protocol.CoreInfo`)."""
        from tessera.hdl.ctrl.protocol import (CAP_ACCUMULATE, CAP_MODES, CoreInfo, StoreInfo,
                                               VERSION)
        pe = self.pe
        comb = pe.combiner()
        caps = (CAP_ACCUMULATE if comb is not None else 0) | (CAP_MODES if pe.modes else 0)
        return CoreInfo(
            version=VERSION, engine=self.engine.code, pe_kind=pe.code, pe_latency=pe.latency,
            pe_ii=pe.ii(), capabilities=caps, rows=self.rows, cols=self.cols,
            combiner_latency=comb.latency if comb is not None else 0, modes=len(pe.modes),
            stores=tuple(StoreInfo(id=s.id, lanes=s.lanes, lane_bits=s.lane_bits,
                                   depth=s.depth, result=s.result)
                         for s in self.geometry.stores))

    def to_dict(self):
        """The config as plain TOML-able data (the manifest echoes it)."""
        d = {}
        for name in _SECTIONS:
            sec = getattr(self, name)
            sec = sec.to_dict() if name in ("pe", "array") else dataclasses.asdict(sec)
            d[name] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sec.items()}
        return d

    def digest(self):
        """A short stable hash of the effective configuration."""
        import hashlib
        import json
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_from_dict(data, *, source="<dict>"):
    """Validate plain data (parsed TOML) into a `CoreConfig`, naming any bad key."""
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a table of sections, got {type(data).__name__}")
    sections = {}
    for sec_name, sec_data in data.items():
        if sec_name not in _SECTIONS:
            raise ConfigError(f"{sec_name}: unknown section; allowed: "
                              f"{_fmt_allowed(_SECTIONS)}")
        if not isinstance(sec_data, dict):
            raise ConfigError(f"{sec_name}: {sec_data!r} is not a table; allowed: a [{sec_name}] "
                              f"table")
        if sec_name == "array":
            rest = dict(sec_data)
            kind = rest.pop("kind", DEFAULT_ENGINE)
            _check_choice("array.kind", kind, tuple(ENGINES), ENGINES_LATER)
            sections["array"] = ENGINES[kind].Section.from_dict(rest)
            continue
        if sec_name == "pe":
            rest = dict(sec_data)
            kind = rest.pop("kind", DEFAULT_PE_KIND)
            _check_choice("pe.kind", kind, tuple(PE_KINDS), PE_KINDS_LATER)
            sections["pe"] = PE_KINDS[kind].from_dict(rest)
            continue
        cls = _SECTIONS[sec_name]
        allowed = [f.name for f in dataclasses.fields(cls)]
        for key in sec_data:
            if key not in allowed:
                raise ConfigError(f"{sec_name}.{key}: unknown key; allowed: "
                                  f"{_fmt_allowed(allowed)}")
        sections[sec_name] = cls(**sec_data)
    return CoreConfig(**sections, source=source)


def preset_names():
    """Names of the presets shipped inside the package, sorted."""
    files = resources.files("tessera.generators.presets").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".toml"))


def _preset_text(name):
    return (resources.files("tessera.generators.presets") / f"{name}.toml").read_text()


def preset_summary(name):
    """The one-line description: the first comment line of the preset file."""
    for line in _preset_text(name).splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def load_config(spec=None):
    """Load a config from a TOML path, a preset name, or (``None``) the default preset."""
    if spec is None:
        spec = DEFAULT_PRESET
    spec = str(spec)
    path = pathlib.Path(spec)
    if spec.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"config: {spec!r} is not a readable file; allowed: a TOML path or "
                              f"a preset name ({_fmt_allowed(preset_names())})")
        text = path.read_text()
        source = str(path)
    elif spec in preset_names():
        text = _preset_text(spec)
        source = f"preset:{spec}"
    else:
        raise ConfigError(f"config: {spec!r} is neither a file nor a preset; allowed presets: "
                          f"{_fmt_allowed(preset_names())}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {source} is not valid TOML: {e}") from None
    try:
        return config_from_dict(data, source=source)
    except TypeError as e:  # pragma: no cover - dataclass signature errors are caught above
        raise ConfigError(f"config: {e}") from None

