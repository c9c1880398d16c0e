"""Core configuration: TOML (or a preset name) validated into frozen dataclasses.

Every check names the key, the value and what is allowed, so a user can fix a config from the
message alone. Derived quantities (word widths, scratchpad bits) are properties, so the HDL, the
golden model, the manifest and the host driver all read them from the same object.
"""

import dataclasses
import pathlib
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources


__all__ = ["ConfigError", "CoreConfig", "CoreSection", "ArraySection", "PESection",
           "MemorySection", "HostSection", "load_config", "config_from_dict", "preset_names",
           "preset_summary", "DEFAULT_PRESET", "BOARDS"]


class ConfigError(ValueError):
    """A config value is missing, unknown or impossible. The message names key, value, allowed."""


DEFAULT_PRESET = "int8-8x8"
BOARDS = ("icebreaker", "ulx3s-85f")

ARRAY_KINDS_DONE = ("systolic",)
ARRAY_KINDS_LATER = ("feie", "tree")
DATAFLOWS_DONE = ("output_stationary",)
DATAFLOWS_LATER = ("weight_stationary",)
PE_KINDS_DONE = ("int", "fpmac")
PE_KINDS_LATER = ("bitfusion", "ternary", "fpec", "biscaled")
HOST_INTERFACES = ("stream", "uart")

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def _fmt_allowed(values):
    return ", ".join(repr(v) for v in values)


def _check_int(key, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: {value!r} is not an integer; allowed: integers {lo}..{hi}")
    if not lo <= value <= hi:
        raise ConfigError(f"{key}: {value} is out of range; allowed: {lo}..{hi}")


def _check_choice(key, value, done, later=()):
    if value in done:
        return
    if value in later:
        raise ConfigError(f"{key}: {value!r} is not implemented yet; allowed: {_fmt_allowed(done)}")
    raise ConfigError(f"{key}: {value!r} is unknown; allowed: {_fmt_allowed(done)}")


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


@dataclass(frozen=True)
class ArraySection:
    """``[array]``: the compute array's kind, shape and dataflow."""
    kind: str = "systolic"
    rows: int = 8
    cols: int = 8
    dataflow: str = "output_stationary"

    def __post_init__(self):
        _check_choice("array.kind", self.kind, ARRAY_KINDS_DONE, ARRAY_KINDS_LATER)
        _check_int("array.rows", self.rows, 1, 64)
        _check_int("array.cols", self.cols, 1, 64)
        _check_choice("array.dataflow", self.dataflow, DATAFLOWS_DONE, DATAFLOWS_LATER)


@dataclass(frozen=True)
class PESection:
    """``[pe]``: the processing element kind and its number formats.

    ``int``: signed ``a_bits`` x ``b_bits`` products into an ``acc_bits`` two's complement
    accumulator (wrapping). ``fpmac``: ``input_format`` x ``input_format`` products accumulated
    in ``acc_format``, optionally chunk-based (``chunk`` products per inner sum).
    """
    kind: str = "int"
    a_bits: int = 8
    b_bits: int = 8
    acc_bits: int = 32
    input_format: str = "fp8_e4m3"
    acc_format: str = "fp16"
    chunk: int = 0
    stages: int = 2

    def __post_init__(self):
        _check_choice("pe.kind", self.kind, PE_KINDS_DONE, PE_KINDS_LATER)
        if self.kind == "int":
            _check_int("pe.a_bits", self.a_bits, 2, 32)
            _check_int("pe.b_bits", self.b_bits, 2, 32)
            lo = self.a_bits + self.b_bits
            _check_int("pe.acc_bits", self.acc_bits, lo, 64)
        else:
            from tessera.hdl.arith.formats import FORMATS
            names = tuple(FORMATS)
            if self.input_format not in FORMATS:
                raise ConfigError(f"pe.input_format: {self.input_format!r} is unknown; "
                                  f"allowed: {_fmt_allowed(names)}")
            if self.acc_format not in FORMATS:
                raise ConfigError(f"pe.acc_format: {self.acc_format!r} is unknown; "
                                  f"allowed: {_fmt_allowed(names)}")
            if FORMATS[self.acc_format].width < FORMATS[self.input_format].width:
                raise ConfigError(f"pe.acc_format: {self.acc_format!r} is narrower than "
                                  f"pe.input_format {self.input_format!r}; allowed: a format at "
                                  f"least as wide as the input format")
            if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) \
                    or not (self.chunk == 0 or 2 <= self.chunk <= 65535):
                raise ConfigError(f"pe.chunk: {self.chunk!r} is out of range; allowed: "
                                  f"0 (no chunking) or 2..65535")
            _check_int("pe.stages", self.stages, 2 if self.chunk else 1, 4)

    @property
    def a_width(self):
        """Width in bits of one activation operand."""
        if self.kind == "int":
            return self.a_bits
        from tessera.hdl.arith.formats import FORMATS
        return FORMATS[self.input_format].width

    @property
    def b_width(self):
        """Width in bits of one weight operand."""
        if self.kind == "int":
            return self.b_bits
        return self.a_width

    @property
    def acc_width(self):
        """Width in bits of one accumulator / output element."""
        if self.kind == "int":
            return self.acc_bits
        from tessera.hdl.arith.formats import FORMATS
        return FORMATS[self.acc_format].width


@dataclass(frozen=True)
class MemorySection:
    """``[memory]``: scratchpad depths in words.

    Scratchpad A holds input words of ``array.rows`` activations, B weight words of
    ``array.cols`` weights and C output words of ``array.cols`` accumulators (one array row).
    """
    a_depth: int = 1024
    b_depth: int = 1024
    c_depth: int = 1024

    def __post_init__(self):
        for key in ("a_depth", "b_depth", "c_depth"):
            _check_int(f"memory.{key}", getattr(self, key), 16, 32768)


@dataclass(frozen=True)
class HostSection:
    """``[host]``: how the host reaches the core: ``stream`` (simulation) or ``uart`` (boards)."""
    interface: str = "stream"
    baud: int = 115200

    def __post_init__(self):
        _check_choice("host.interface", self.interface, HOST_INTERFACES)
        _check_int("host.baud", self.baud, 1200, 3_000_000)


#: The [pe] keys that mean something for each implemented kind.
_PE_KEYS = {"int": ["a_bits", "b_bits", "acc_bits"],
            "fpmac": ["input_format", "acc_format", "chunk", "stages"]}

_SECTIONS = {
    "core": CoreSection,
    "array": ArraySection,
    "pe": PESection,
    "memory": MemorySection,
    "host": HostSection,
}


@dataclass(frozen=True)
class CoreConfig:
    """A whole core: one frozen object from which HDL, golden model and manifest are derived."""
    core: CoreSection = field(default_factory=CoreSection)
    array: ArraySection = field(default_factory=ArraySection)
    pe: PESection = field(default_factory=PESection)
    memory: MemorySection = field(default_factory=MemorySection)
    host: HostSection = field(default_factory=HostSection)
    source: str = field(default="default", compare=False)

    def __post_init__(self):
        # Cross-section checks: a scratchpad word must fit the 16-bit host word counter framing,
        # and an output word must be transferable (at most 256 bytes per word).
        if self.c_word_bits > 2048:
            raise ConfigError(f"array.cols: {self.array.cols} x pe accumulator width "
                              f"{self.pe.acc_width} gives {self.c_word_bits}-bit output words; "
                              f"allowed: at most 2048 bits per scratchpad word")
        if self.pe.kind == "fpmac" and self.pe.a_width != self.pe.b_width:
            raise ConfigError("pe: fpmac operands must share one format")

    # Derived widths -------------------------------------------------------------------------
    @property
    def rows(self):
        return self.array.rows

    @property
    def cols(self):
        return self.array.cols

    @property
    def a_word_bits(self):
        """Bits of one scratchpad-A word: one activation per array row."""
        return self.array.rows * self.pe.a_width

    @property
    def b_word_bits(self):
        """Bits of one scratchpad-B word: one weight per array column."""
        return self.array.cols * self.pe.b_width

    @property
    def c_word_bits(self):
        """Bits of one scratchpad-C word: one accumulator per array column."""
        return self.array.cols * self.pe.acc_width

    def word_bytes(self, spad):
        """Bytes the host sends or receives per word of scratchpad ``spad`` ('a', 'b' or 'c')."""
        bits = {"a": self.a_word_bits, "b": self.b_word_bits, "c": self.c_word_bits}[spad]
        return (bits + 7) // 8

    @property
    def pes(self):
        return self.array.rows * self.array.cols

    def to_dict(self):
        """The config as plain TOML-able data (the manifest echoes it)."""
        d = {}
        for name in _SECTIONS:
            sec = dataclasses.asdict(getattr(self, name))
            d[name] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sec.items()}
        if self.pe.kind == "int":
            for k in ("input_format", "acc_format", "chunk", "stages"):
                d["pe"].pop(k)
        else:
            for k in ("a_bits", "b_bits", "acc_bits"):
                d["pe"].pop(k)
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
        cls = _SECTIONS[sec_name]
        allowed = [f.name for f in dataclasses.fields(cls)]
        if sec_name == "pe":
            allowed = ["kind", *_PE_KEYS.get(sec_data.get("kind", "int"), allowed[1:])]
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


def ceil_div(a, b):
    return -(-a // b)


