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

from tessera.hdl.ctrl.memmap import MAX_BANKS
from tessera.hdl.engine.params import accumulate_latency
from tessera.generators.kinds import (DEFAULT_ENGINE, DEFAULT_PE_KIND, ENGINES, ENGINES_LATER,
                                      PE_KINDS, PE_KINDS_LATER)
from tessera.generators.kinds.base import (ConfigError, check_choice as _check_choice,
                                           check_int as _check_int, fmt_allowed as _fmt_allowed)


__all__ = ["ConfigError", "CoreConfig", "CoreSection", "ArraySection", "MemorySection",
           "HostSection", "load_config", "config_from_dict", "preset_names", "preset_summary",
           "DEFAULT_PRESET", "BOARDS", "BOARD_ALIASES", "CORE_PORTS", "VERILOG_KEYWORDS", "short",
           "parse_toml", "suggest", "with_suggestion", "board_name"]


DEFAULT_PRESET = "int8-8x8"
BOARDS = ("icebreaker", "ulx3s-85f")

#: Other names a board is known by: the ULX3S is sold in several sizes, and tessera builds
#: only for the 85F, so ``ulx3s`` means that one.
BOARD_ALIASES = {"ulx3s": "ulx3s-85f"}


def suggest(word, choices):
    """The valid name closest to a mistyped ``word`` among ``choices`` (`difflib` similarity of
    at least 0.6, as `difflib.get_close_matches`), or None: when none is that close, when two
    are equally close, or when there is only one choice (the message lists it anyway)."""
    import difflib
    if not isinstance(word, str) or not word:
        return None
    names = [c for c in choices if isinstance(c, str) and c]
    by_lower = {c.lower(): c for c in names}
    if len(by_lower) < 2:
        return None
    if word.lower() in by_lower:                   # only the case differs
        return by_lower[word.lower()]
    scored = sorted(((difflib.SequenceMatcher(None, word.lower(), c).ratio(), c)
                     for c in by_lower), reverse=True)
    best, second = scored[0], scored[1]
    if best[0] < 0.6 or best[0] == second[0]:
        return None
    return by_lower[best[1]]


def did_you_mean(word, choices, fmt=repr):
    """``"did you mean X? "`` for the closest valid name, or ``""``."""
    s = suggest(word, choices)
    return f"did you mean {fmt(s)}? " if s is not None else ""


_UNKNOWN = re.compile(r"^(?P<head>(?P<key>[\w.\-]+): (?:(?P<value>'[^']*') is unknown"
                      r"|unknown (?:key|section)); )(?P<tail>allowed: (?P<list>.*))$")


def with_suggestion(message):
    """A "``key: 'x' is unknown; allowed: 'a', 'b'``" or "``sec.key: unknown key; allowed:
    ...``" message with "did you mean 'a'? " before the allowed list (unchanged otherwise)."""
    m = _UNKNOWN.match(message)
    if not m or "did you mean" in message:
        return message
    word = m["value"][1:-1] if m["value"] else m["key"].rsplit(".", 1)[-1]
    choices = re.findall(r"'([^']*)'", m["list"])
    return m["head"] + did_you_mean(word, choices) + m["tail"]


def board_name(name, key="--board"):
    """The board ``name`` means: a name of `BOARDS` or an alias of one (`BOARD_ALIASES`);
    anything else raises `ConfigError` naming the closest board."""
    if isinstance(name, str):
        if name in BOARDS:
            return name
        if name.lower() in BOARD_ALIASES:
            return BOARD_ALIASES[name.lower()]
    near = suggest(name, [*BOARDS, *BOARD_ALIASES])
    hint = f"did you mean {BOARD_ALIASES.get(near, near)!r}? " if near else ""
    aliases = ", ".join(f"{a!r} for {b!r}" for a, b in BOARD_ALIASES.items())
    raise ConfigError(f"{key}: {short(name)} is unknown; {hint}allowed: "
                      f"{_fmt_allowed(BOARDS)} (or {aliases})")


HOST_INTERFACES = ("stream", "uart")

_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,47}")

#: Names a core may not have: the ports of every core (a module may not share a name with one
#: of its own ports or signals: Verilator rejects it or warns VARHIDDEN) and the Verilog and
#: SystemVerilog keywords. Names used by signals inside a particular core are checked on the
#: generated Verilog as well (`tessera.generators.emit.check_top_name`).
CORE_PORTS = ("clk", "rst", "busy", "error", "i__payload", "i__valid", "i__ready",
              "o__payload", "o__valid", "o__ready")
VERILOG_KEYWORDS = frozenset("""
accept_on alias always always_comb always_ff always_latch and assert assign assume automatic
before begin bind bins binsof bit break buf bufif0 bufif1 byte case casex casez cell chandle
checker class clocking cmos config const constraint context continue cover covergroup
coverpoint cross deassign default defparam design disable dist do edge else end endcase
endchecker endclass endclocking endconfig endfunction endgenerate endgroup endinterface
endmodule endpackage endprimitive endprogram endproperty endsequence endspecify endtable
endtask enum event eventually expect export extends extern final first_match for force foreach
forever fork forkjoin function generate genvar global highz0 highz1 if iff ifnone
ignore_bins illegal_bins implements implies import incdir include initial inout input inside
instance int integer interconnect interface intersect join join_any join_none large let
liblist library local localparam logic longint macromodule matches medium modport module nand
negedge nettype new nexttime nmos nor noshowcancelled not notif0 notif1 null or output package
packed parameter pmos posedge primitive priority program property protected pull0 pull1
pulldown pullup pulsestyle_ondetect pulsestyle_onevent pure rand randc randcase randsequence
rcmos real realtime ref reg reject_on release repeat restrict return rnmos rpmos rtran
rtranif0 rtranif1 s_always s_eventually s_nexttime s_until s_until_with scalared sequence
shortint shortreal showcancelled signed small soft solve specify specparam static string
strong strong0 strong1 struct super supply0 supply1 sync_accept_on sync_reject_on table
tagged task this throughout time timeprecision timeunit tran tranif0 tranif1 tri tri0 tri1
triand trior trireg type typedef union unique unique0 unsigned until until_with untyped use
uwire var vectored virtual void wait wait_order wand weak weak0 weak1 while wildcard wire
with within wor xnor xor""".split())

#: Longest string value a config may hold (names and format names are far shorter).
MAX_STRING = 256


def short(value, limit=60):
    """``repr`` of a config value for a one-line message, cut to about ``limit`` characters."""
    try:
        text = repr(value)
    except ValueError:          # an integer too long to print
        return f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"
    if len(text) <= limit:
        return text
    return f"{text[:limit - 20]}...{text[-12:]} ({len(text)} characters)"


def _key(key):
    """A key as it appears in a message: bare if it is a plain name, else quoted and cut."""
    if isinstance(key, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,47}", key):
        return key
    return short(key, 40)


def _type_name(value):
    return {list: "an array", tuple: "an array", dict: "a table", str: "a string",
            bool: "a boolean", int: "an integer", float: "a number"}.get(type(value),
                                                                        type(value).__name__)


@dataclass(frozen=True)
class CoreSection:
    """``[core]``: the generated module's name, its target clock, the boards it is meant for
    and whether it builds the COUNTERS cycle counters."""
    name: str = "tessera_core"
    clock_mhz: float = 25.0
    boards: tuple = ()
    counters: bool = True

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise ConfigError(f"core.name: {short(self.name)} is not a valid module name; "
                              f"allowed: lower-case letter then [a-z0-9_], at most 48 "
                              f"characters")
        if self.name in CORE_PORTS or self.name in VERILOG_KEYWORDS or "__" in self.name:
            why = ("the name of one of the core's ports" if self.name in CORE_PORTS else
                   "a Verilog keyword" if self.name in VERILOG_KEYWORDS else
                   "a name with '__', which the generated Verilog uses for port members")
            raise ConfigError(f"core.name: {self.name!r} is {why}; allowed: any other name, "
                              f"e.g. {('tessera_' + self.name.replace('__', '_'))!r}")
        if isinstance(self.clock_mhz, bool) or not isinstance(self.clock_mhz, (int, float)) \
                or not 1 <= self.clock_mhz <= 1000:
            raise ConfigError(f"core.clock_mhz: {short(self.clock_mhz)} is out of range; "
                              f"allowed: a number 1..1000")
        boards = tuple(self.boards) if isinstance(self.boards, (list, tuple)) else self.boards
        if not isinstance(boards, tuple):
            raise ConfigError(f"core.boards: {short(self.boards)} is not a list; "
                              f"allowed: a list of {_fmt_allowed(BOARDS)}")
        boards = tuple(board_name(b, "core.boards") for b in boards)
        if len(set(boards)) != len(boards):
            raise ConfigError(f"core.boards: {short(list(boards))} names a board twice; "
                              f"allowed: each of {_fmt_allowed(BOARDS)} at most once")
        object.__setattr__(self, "boards", boards)
        object.__setattr__(self, "clock_mhz", float(self.clock_mhz))
        if not isinstance(self.counters, bool):
            raise ConfigError(f"core.counters: {short(self.counters)} is not a boolean; "
                              f"allowed: true (build the COUNTERS cycle counters) or false")


#: The systolic engine's ``[array]`` section (each engine parses its own keys).
ArraySection = ENGINES[DEFAULT_ENGINE].Section


@dataclass(frozen=True)
class MemorySection:
    """``[memory]``: scratchpad depths in words and banks (what a word holds is the engine's
    geometry: its store declarations, `tessera.hdl.ctrl.memmap.StoreSpec`).

    One key scheme for every store an engine declares: ``<store>_depth`` (words per bank,
    16..32768) and ``<store>_banks`` (1, or 2 for ping-pong banks: a RUN names the bank it
    uses and the host reaches the other while it executes). ``a_depth``, ``b_depth`` and
    ``c_depth`` have defaults; a store without its own depth key follows the one its engine
    names (the weight store ``w`` follows ``b_depth``); the epilogue's output store ``r`` has
    ``c_depth`` words (its engine fixes it: the same addresses as C). For the systolic engine, scratchpad A holds input words of
    ``array.rows`` activation lanes, B weight words of ``array.cols`` lanes and C output words
    of ``array.cols`` accumulators.
    """
    a_depth: int = 1024
    b_depth: int = 1024
    c_depth: int = 1024
    #: Words of the epilogue parameter store (one per column tile); 0 (the default) builds no
    #: epilogue hardware, so existing cores keep their size. Only for kinds with an epilogue.
    p_depth: int = 0
    #: A register right after each store's block RAM on the host's READ path (where the
    #: DP16KD's output register would sit): the decoder's READ word is loaded from it, so no
    #: block RAM output drives logic into the decoder (the core's critical path without
    #: it). One cycle more per READ word, RUN cycles unchanged; one flip-flop per word bit
    #: of every store, which on the iCE40 (whose block RAM has no output register) costs a
    #: logic cell each: the iCEBreaker presets set it false.
    read_register: bool = True
    #: The other ``<store>_depth`` / ``<store>_banks`` keys, as sorted (key, value) pairs.
    extra: tuple = ()

    #: A generic key: ``<store>_depth`` or ``<store>_banks``.
    KEY = re.compile(r"^([a-z][a-z0-9]{0,15})_(depth|banks)$")

    def __post_init__(self):
        for key in ("a_depth", "b_depth", "c_depth"):
            _check_int(f"memory.{key}", getattr(self, key), 16, 32768)
        if self.p_depth != 0:
            _check_int("memory.p_depth", self.p_depth, 2, 32768)
        if not isinstance(self.read_register, bool):
            raise ConfigError(f"memory.read_register: {self.read_register!r} is not a boolean; "
                              f"allowed: true, false")
        for key, value in self.extra:
            if key.endswith("_banks"):
                _check_int(f"memory.{key}", value, 1, MAX_BANKS)
            else:
                _check_int(f"memory.{key}", value, 16, 32768)

    @classmethod
    def from_dict(cls, data):
        fixed = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        extra = {}
        for key in data:
            if key not in fixed and not cls.KEY.match(key):
                raise ConfigError(f"memory.{_key(key)}: unknown key; allowed: "
                                  f"{_fmt_allowed(sorted(fixed))} or <store>_depth, "
                                  f"<store>_banks for a store of the core")
            if key not in fixed:
                extra[key] = data[key]
        return cls(**{k: v for k, v in data.items() if k in fixed},
                   extra=tuple(sorted(extra.items())))

    def depth(self, name, default_key=None):
        """Words per bank of store ``name``: ``<name>_depth``, else the ``default_key``'s
        value."""
        key = f"{name}_depth"
        ex = dict(self.extra)
        if key in ex:
            return ex[key]
        if key in ("a_depth", "b_depth", "c_depth", "p_depth"):
            return getattr(self, key)
        if default_key is None:
            raise ConfigError(f"memory.{key}: required (store {name!r} has no default depth); "
                              f"allowed: 16..32768")
        return self.depth(default_key[:-len("_depth")])

    def banks(self, name):
        """Banks of store ``name`` (``<name>_banks``, default 1)."""
        return dict(self.extra).get(f"{name}_banks", 1)

    def keys_set(self):
        """The generic keys this section sets (to check they name stores of the core)."""
        return tuple(k for k, _ in self.extra)

    def to_dict(self):
        d = {"a_depth": self.a_depth, "b_depth": self.b_depth, "c_depth": self.c_depth,
             "p_depth": self.p_depth}
        if not self.read_register:      # the default is left out (as array.chain)
            d["read_register"] = False
        d.update(self.extra)
        return d


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
        _check_int("host.baud", self.baud, 1200, 12_000_000)


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
        engine_cls = ENGINES[self.array.kind]
        if not engine_cls.accepts(self.pe):
            engines = [e for e, c in ENGINES.items() if c.accepts(self.pe)]
            kinds = [k for k, v in PE_KINDS.items() if engine_cls.accepts(v)]
            raise ConfigError(f"pe.kind: {self.pe.name!r} cannot run on array.kind "
                              f"{self.array.kind!r}; allowed: array.kind "
                              f"{_fmt_allowed(engines)} for this PE kind, or a pe.kind "
                              f"for {self.array.kind!r}: {_fmt_allowed(kinds)}")
        try:
            g = self.geometry
        except ValueError as e:
            raise ConfigError(f"array/pe: {e}") from None
        names = [st.name for st in g.stores]
        for key in self.memory.keys_set():
            store = MemorySection.KEY.match(key).group(1)
            if store not in names:
                raise ConfigError(f"memory.{key}: this core has no store {store!r}; allowed: "
                                  f"<store>_depth / <store>_banks for its stores "
                                  f"{_fmt_allowed(names)}")
            if key.endswith("_depth") and any(st.name == store and st.depth != dict(
                    self.memory.extra)[key] for st in g.stores):
                raise ConfigError(f"memory.{key}: store {store!r} has a depth its engine fixes "
                                  f"({[st.depth for st in g.stores if st.name == store][0]} "
                                  f"words); allowed: leave the key out")
        for s in g.stores:
            if s.word_bits > 2048:
                raise ConfigError(f"{self._width_keys(s)}: {s.lanes} lanes x {s.lane_bits} bits "
                                  f"give {s.word_bits}-bit words in scratchpad {s.name}; "
                                  f"allowed: at most 2048 bits per scratchpad word (fewer lanes "
                                  f"or narrower elements)")
        # The engine's own rules: the PE kinds it takes, stores that hold one tile.
        self.engine.check()
        mapper = self.engine.mapper()
        if hasattr(mapper, "plan"):
            try:
                mapper.plan(1, 1, 1)
            except ValueError as e:
                raise ConfigError(f"memory: {e}; allowed: scratchpads that hold one tile")
        # A board named in core.boards must be able to hold the core and run its UART.
        if self.core.boards:
            from tessera.fpga.boards import baud_problem, fit_problem
            for b in self.core.boards:
                why = fit_problem(self, b)
                if why:
                    raise ConfigError(f"core.boards: {b!r} cannot hold this core: it {why}; "
                                      f"allowed: boards it fits (a smaller array or "
                                      f"scratchpads for this one)")
                if self.host.interface != "uart":
                    continue
                from tessera.fpga.boards import get_board
                from tessera.fpga.bridge import best_baud
                from tessera.fpga.top import pll_plan
                board = get_board(b)
                try:
                    plan = pll_plan(board, self.core.clock_mhz * 1e6)
                except ValueError:
                    continue              # core.clock_mhz: refused where the board top is made
                clk = plan.out_hz if plan else board.clk_hz
                why = baud_problem(self.host.baud, board, clk)
                if why:
                    raise ConfigError(f"host.baud: {self.host.baud} cannot link board {b!r}: "
                                      f"{why}; allowed: a rate the {board.bridge.chip} and the "
                                      f"board top share, at most "
                                      f"{best_baud(board.bridge, clk, margin=0.02)} here")

    def _width_keys(self, store):
        """The keys of this config's own engine and PE kind that set ``store``'s lanes and lane
        width (``array.rows`` on a systolic array, ``array.inputs`` on the tree engine, ...),
        found by value; ``array``/``pe`` when no key holds that value."""
        def keys(section, name, value):
            return [f"{name}.{k}" for k, v in section.to_dict().items()
                    if isinstance(v, int) and not isinstance(v, bool) and v == value]
        lanes = keys(self.array, "array", store.lanes) or [f"array ({self.array.kind} engine)"]
        bits = keys(self.pe, "pe", store.lane_bits)
        return "/".join(lanes + bits[:1])

    # Derived facts -----------------------------------------------------------------------------
    @property
    def rows(self):
        """The engine's first dimension (systolic: array rows; tree: inputs)."""
        return self.geometry.rows

    @property
    def cols(self):
        """The engine's second dimension (systolic: array columns; tree: outputs)."""
        return self.geometry.cols

    @property
    def pes(self):
        return self.geometry.pes

    @property
    def engine(self):
        """The engine of ``array.kind`` for this config (`tessera.generators.kinds.Engine`)."""
        return ENGINES[self.array.kind](self)

    @functools.cached_property
    def geometry(self):
        """The memory map (`tessera.hdl.ctrl.memmap.Geometry`), from the engine and PE kind."""
        return self.engine.geometry()

    def core_info(self):
        """The INFO payload this core reports (`tessera.hdl.ctrl.protocol.CoreInfo`): engine,
        layer types, PE kind, formats, epilogue capabilities, timing and every store."""
        from tessera.hdl.ctrl.protocol import (CAP_ACCUMULATE, CAP_COUNTERS, CAP_MODES,
                                               FORMAT_OPERANDS, VERSION, CoreInfo, FormatInfo,
                                               StoreInfo, epilogue_caps, store_role)
        pe, engine = self.pe, self.engine
        comb = pe.combiner()
        caps = ((CAP_ACCUMULATE if comb is not None else 0) | (CAP_MODES if pe.modes else 0)
                | (CAP_COUNTERS if self.core.counters else 0))
        lay = pe.layout()
        formats = pe.formats()
        default_bits = {"a": lay.a_bits, "b": lay.b_bits, "acc": pe.result_bits}
        host = [s for s in self.geometry.stores if not s.result]
        return CoreInfo(
            version=VERSION, engine=engine.code, engine_name=engine.name, pe_kind=pe.code,
            pe_name=pe.name, pe_latency=pe.latency, pe_ii=pe.ii(), capabilities=caps,
            rows=self.rows, cols=self.cols,
            combiner_latency=accumulate_latency(comb), modes=len(pe.modes),
            layer_types=tuple(engine.layer_types), epilogue=epilogue_caps(engine.epilogue()),
            formats=tuple(FormatInfo.from_format(formats.get(o, {}), default_bits[o])
                          for o in FORMAT_OPERANDS),
            stores=tuple(StoreInfo(name=s.name, id=s.id,
                                   role=store_role(s, host.index(s) if s in host else 0),
                                   lanes=s.lanes, lane_bits=s.lane_bits, word_bits=s.word_bits,
                                   depth=s.depth, banks=s.banks)
                         for s in self.geometry.stores))

    def to_dict(self):
        """The config as plain TOML-able data (the manifest echoes it)."""
        d = {}
        for name in _SECTIONS:
            sec = getattr(self, name)
            sec = (sec.to_dict() if name in ("pe", "array", "memory")
                   else dataclasses.asdict(sec))
            if name == "memory" and not sec.get("p_depth"):
                # No epilogue store: the key is left out, so every config without one keeps
                # its to_dict and digest (pinned digests, bitstream caches).
                sec.pop("p_depth", None)
            d[name] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in sec.items()}
        return d

    def digest(self):
        """A short stable hash of the effective configuration."""
        import hashlib
        import json
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_shapes(sec_name, sec_data, defaults):
    """Values of the wrong shape (an array or table where the key takes a single value, an
    over-long string) are refused here, naming the key, for every section and PE kind."""
    for key, value in sec_data.items():
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise ConfigError(f"{sec_name}.{key}: {short(value)} is too long; allowed: at most "
                              f"{MAX_STRING} characters")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
            raise ConfigError(f"{sec_name}.{key}: {short(value, 30)} is out of range; allowed: "
                              f"the key's range in docs/config.md (under 10**18 in any case)")
        if key not in defaults:
            continue
        default = defaults[key]
        if isinstance(value, (list, dict)) and not isinstance(default, (list, tuple, dict)):
            raise ConfigError(f"{sec_name}.{key}: {short(value)} is {_type_name(value)}; "
                              f"allowed: {_type_name(default)}")


def _defaults(cls):
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def config_from_dict(data, *, source="<dict>"):
    """Validate plain data (parsed TOML) into a `CoreConfig`, naming any bad key (and the
    closest valid name of a mistyped key or value: "did you mean")."""
    try:
        return _config_from_dict(data, source=source)
    except ConfigError as e:
        text = with_suggestion(str(e))
        if text == str(e):
            raise
        raise ConfigError(text) from None


def _config_from_dict(data, *, source):
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a table of sections, got {type(data).__name__}")
    sections = {}
    for sec_name, sec_data in data.items():
        if sec_name not in _SECTIONS:
            raise ConfigError(f"{_key(sec_name)}: unknown section; allowed: "
                              f"{_fmt_allowed(_SECTIONS)}")
        if not isinstance(sec_data, dict):
            raise ConfigError(f"{sec_name}: {short(sec_data)} is not a table; allowed: a "
                              f"[{sec_name}] table")
        for key in sec_data:
            if not isinstance(key, str):
                raise ConfigError(f"{sec_name}: key {short(key)} is not a string")
        try:
            if sec_name in ("array", "pe"):
                # Parsed by the engine's (array.kind) or PE kind's (pe.kind) own section.
                registry, later, default = ((ENGINES, ENGINES_LATER, DEFAULT_ENGINE)
                                            if sec_name == "array" else
                                            (PE_KINDS, PE_KINDS_LATER, DEFAULT_PE_KIND))
                rest = dict(sec_data)
                kind = rest.pop("kind", default)
                if not isinstance(kind, str):
                    raise ConfigError(f"{sec_name}.kind: {short(kind)} is {_type_name(kind)}; "
                                      f"allowed: one of {_fmt_allowed(registry)}")
                _check_choice(f"{sec_name}.kind", kind, tuple(registry), later)
                cls = registry[kind].Section if sec_name == "array" else registry[kind]
                _check_shapes(sec_name, {k: v for k, v in rest.items()
                                         if isinstance(v, (str, int))}, {})
                try:
                    sections[sec_name] = cls.from_dict(rest)
                except ConfigError:
                    raise
                except (TypeError, ValueError, KeyError, OverflowError):
                    # The kind's checks did not expect a value's shape: name that key.
                    _check_shapes(sec_name, rest, _defaults(cls))
                    raise
                continue
            cls = _SECTIONS[sec_name]
            if sec_name == "memory":
                _check_shapes(sec_name, {k: v for k, v in sec_data.items()
                                         if isinstance(v, (str, int))}, {})
                sections[sec_name] = cls.from_dict(sec_data)
                continue
            allowed = [f.name for f in dataclasses.fields(cls)]
            for key in sec_data:
                if key not in allowed:
                    raise ConfigError(f"{sec_name}.{_key(key)}: unknown key; "
                                      f"allowed: {_fmt_allowed(allowed)}")
            _check_shapes(sec_name, {k: v for k, v in sec_data.items()
                                     if isinstance(v, (str, int))}, {})
            sections[sec_name] = cls(**sec_data)
        except ConfigError:
            raise
        except (TypeError, ValueError, KeyError, OverflowError) as e:
            # A check that did not expect the value's type: still name the section and keys.
            keys = ", ".join(f"{sec_name}.{k}" for k in sec_data) or sec_name
            raise ConfigError(f"{sec_name}: a value of {keys} is not usable "
                              f"({type(e).__name__}: {short(str(e), 80)[1:-1]}); allowed: the "
                              f"values in docs/config.md") from None
    try:
        return CoreConfig(**sections, source=source)
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise ConfigError(f"config: the sections do not fit together ({type(e).__name__}: "
                          f"{short(str(e), 80)[1:-1]})") from None


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


#: Largest config file read (a real one is well under a kilobyte).
MAX_CONFIG_BYTES = 1 << 20


def _read_config_file(path, spec):
    import os
    import stat
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"config: {short(spec, 200)} is not a regular file; allowed: a TOML "
                              f"path or a preset name ({_fmt_allowed(preset_names())})")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config: {short(spec, 200)} has {st.st_size} bytes; allowed: at "
                              f"most {MAX_CONFIG_BYTES} bytes")
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"config: {short(spec, 200)} cannot be read: "
                          f"{e.strerror or type(e).__name__}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config: {short(spec, 200)} has more than {MAX_CONFIG_BYTES} bytes; "
                          f"allowed: at most {MAX_CONFIG_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config: {short(spec, 200)} is not UTF-8 text (byte "
                          f"0x{raw[e.start]:02x} at offset {e.start}); allowed: a UTF-8 TOML "
                          f"file") from None


def parse_toml(text, source):
    """Parse TOML text; every failure (syntax, nesting too deep, a huge integer) becomes a
    `ConfigError` naming ``source``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {source} is not valid TOML: {short(str(e), 120)[1:-1]}") \
            from None
    except RecursionError:
        raise ConfigError(f"config: {source} is not usable TOML: arrays or tables nested too "
                          f"deeply; allowed: the flat sections of docs/config.md") from None
    except ValueError as e:     # e.g. an integer of more than 4300 digits
        raise ConfigError(f"config: {source} is not usable TOML: {short(str(e), 100)[1:-1]}") \
            from None


def load_config(spec=None):
    """Load a config from a TOML path, a preset name, or (``None``) the default preset.

    A spec is a file if it ends in ``.toml`` or names an existing regular file (such a file
    hides a preset of the same name); otherwise it must be a preset name. Every problem raises
    `ConfigError` with a one-line message.
    """
    if spec is None:
        spec = DEFAULT_PRESET
    spec = str(spec)
    if not spec or "\0" in spec:
        raise ConfigError(f"config: {short(spec, 200)} is neither a file nor a preset; allowed "
                          f"presets: {_fmt_allowed(preset_names())}")
    path = pathlib.Path(spec)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):
        is_file = False
    if spec.endswith(".toml") or is_file:
        if not is_file:
            raise ConfigError(f"config: {short(spec, 200)} is not a readable file; allowed: a TOML "
                              f"path or a preset name ({_fmt_allowed(preset_names())})")
        text = _read_config_file(path, spec)
        source = str(path)
    elif spec in preset_names():
        text = _preset_text(spec)
        source = f"preset:{spec}"
    else:
        raise ConfigError(f"config: {short(spec, 200)} is neither a file nor a preset; "
                          f"{did_you_mean(spec, preset_names())}allowed presets: "
                          f"{_fmt_allowed(preset_names())}")
    data = parse_toml(text, source if source.startswith("preset:") else short(source, 200))
    return config_from_dict(data, source=source)
