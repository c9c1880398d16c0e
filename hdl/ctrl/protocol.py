"""Host command protocol as data: the command table, error codes and the INFO layout.

Pure Python, no HDL. The command decoder (HDL), the golden core and the host driver all read
this one table, so the three cannot disagree; docs/commands.md describes version 4 in prose.

A command is an opcode byte followed by its fixed argument bytes (`Command.args`, little-endian
fields in order). WRITE is then followed by ``count`` words of data; RUN's arguments are an
engine id byte followed by that engine's own argument layout (`ArgLayout`), which the engine
declares (`tessera.generators.kinds`), so a new engine adds a layout, not a decoder branch.
"""

import dataclasses
from dataclasses import dataclass


__all__ = ["VERSION", "Op", "Err", "ERROR_TEXT", "Field", "ArgLayout", "Command", "COMMANDS",
           "command", "STATUS_BYTES", "COUNTERS_BYTES", "COUNTER_NAMES", "CAP_COUNTERS",
           "CoreInfo", "StoreInfo", "FormatInfo", "INFO_HEADER_BYTES",
           "CAP_ACCUMULATE", "CAP_MODES", "LAYER_TYPES", "STORE_ROLES", "FORMAT_KINDS",
           "FORMAT_OPERANDS", "EPILOGUE_CAPS", "INFO_HEADER", "INFO_LAYOUT", "epilogue_caps",
           "info_layout", "store_role"]

#: Version of the command set, reported by INFO and echoed in the manifest.
VERSION = 4


class Op:
    INFO = 0x01
    STATUS = 0x02
    WRITE = 0x03
    READ = 0x04
    RUN = 0x05
    COUNTERS = 0x06


class Err:
    OK = 0
    OPCODE = 1     # unknown opcode
    SPAD = 2       # scratchpad id names no store
    RANGE = 3      # READ/WRITE region runs past the end of the scratchpad
    ARG = 4        # zero count/dimension, unknown flag bits, or an unsupported flag
    BUSY = 5       # a RUN is in progress and the command needs the engine or a result store
    TILE = 6       # a RUN's operands or results do not fit the scratchpads
    ENGINE = 7     # RUN names an engine id this core does not have


ERROR_TEXT = {
    Err.OPCODE: "unknown opcode",
    Err.SPAD: "unknown scratchpad id",
    Err.RANGE: "region runs past the end of the scratchpad",
    Err.ARG: "zero count or dimension, or unknown or unsupported flag bits",
    Err.BUSY: "core is busy running a layer",
    Err.TILE: "the RUN's operands or results do not fit the scratchpads",
    Err.ENGINE: "RUN names an engine this core does not have",
}


@dataclass(frozen=True)
class Field:
    """One little-endian unsigned argument field of ``nbytes`` bytes."""
    name: str
    nbytes: int
    doc: str = ""

    @property
    def bits(self):
        return 8 * self.nbytes


class ArgLayout:
    """An ordered tuple of `Field`: byte offsets, packing and unpacking of argument bytes."""

    def __init__(self, fields):
        self._fields = tuple(fields)
        names = [f.name for f in self._fields]
        if len(set(names)) != len(names):
            raise ValueError(f"argument field names must be unique, not {names}")
        self._offsets = {}
        off = 0
        for f in self._fields:
            self._offsets[f.name] = off
            off += f.nbytes
        self._nbytes = off

    @property
    def fields(self):
        return self._fields

    @property
    def nbytes(self):
        return self._nbytes

    def offset(self, name):
        """Byte offset of field ``name``."""
        return self._offsets[name]

    def bit_slice(self, name):
        """``(start, stop)`` bit positions of field ``name`` in the packed little-endian value."""
        f = next(f for f in self._fields if f.name == name)
        start = 8 * self._offsets[name]
        return start, start + f.bits

    def pack(self, **values):
        """Argument bytes from field values (every field required, each range-checked)."""
        unknown = set(values) - {f.name for f in self._fields}
        if unknown:
            raise ValueError(f"unknown argument fields {sorted(unknown)}; allowed: "
                             f"{[f.name for f in self._fields]}")
        out = bytearray()
        for f in self._fields:
            v = values.get(f.name, 0)
            if not isinstance(v, int) or not 0 <= v < (1 << f.bits):
                raise ValueError(f"argument {f.name} must be an integer 0..{(1 << f.bits) - 1}, "
                                 f"not {v!r}")
            out += v.to_bytes(f.nbytes, "little")
        return bytes(out)

    def unpack(self, data):
        """Field values from argument bytes."""
        if len(data) != self._nbytes:
            raise ValueError(f"expected {self._nbytes} argument bytes, got {len(data)}")
        return {f.name: int.from_bytes(data[self._offsets[f.name]:self._offsets[f.name]
                                            + f.nbytes], "little") for f in self._fields}

    def as_dict(self):
        return [{"name": f.name, "bytes": f.nbytes, "offset": self._offsets[f.name],
                 "doc": f.doc} for f in self._fields]

    def __eq__(self, other):
        return isinstance(other, ArgLayout) and self._fields == other._fields

    def __repr__(self):
        return f"ArgLayout({list(self._fields)!r})"


@dataclass(frozen=True)
class Command:
    """One row of the command table.

    ``data``: what follows the arguments from the host (``"words"`` for WRITE: ``count``
    words of the addressed store). ``response``: what the core answers after the status byte
    (``"info"``, ``"status"``, ``"words"`` for READ, or ``""``). ``engine_args``: RUN only,
    the engine's layout follows ``args``.
    """
    op: int
    name: str
    args: ArgLayout
    data: str = ""
    response: str = ""
    engine_args: bool = False
    doc: str = ""


_REGION = ArgLayout([Field("spad", 1, "store id"), Field("addr", 2, "first word"),
                     Field("count", 2, "number of words, at least 1")])

#: The command table: every command the core understands, in opcode order.
COMMANDS = (
    Command(Op.INFO, "INFO", ArgLayout([]), response="info",
            doc="geometry, kinds, formats and capabilities (CoreInfo layout)"),
    Command(Op.STATUS, "STATUS", ArgLayout([]), response="status",
            doc="busy, latched error (cleared by reading), busy cycles of the current or "
                "last RUN and of the RUN before it"),
    Command(Op.WRITE, "WRITE", _REGION, data="words",
            doc="write count words of a store; the data follows the arguments"),
    Command(Op.READ, "READ", _REGION, response="words",
            doc="read count words of a store (while a RUN executes: only a bank of a "
                "banked result store that no RUN uses)"),
    Command(Op.RUN, "RUN", ArgLayout([Field("engine", 1, "engine id (INFO engine)"),
                                      Field("banks", 1, "bit i: the bank of store i this RUN "
                                                        "uses (0 for a store of one bank)"),
                                      Field("chain", 1, "0, or s + 1: the epilogue's outputs "
                                                        "go to chain target store s instead "
                                                        "of its result store")]),
            engine_args=True, doc="start the engine; its own argument layout follows. Sent "
                                  "while a RUN executes, it is held and starts in the cycle "
                                  "that RUN completes; the answer comes when it starts"),
    Command(Op.COUNTERS, "COUNTERS", ArgLayout([]), response="counters",
            doc="cycles since reset by cause (COUNTER_NAMES, u32 each, wrapping); only on a "
                "core with INFO capability CAP_COUNTERS (otherwise an unknown opcode)"),
)


def command(op_or_name):
    """The `Command` row for an opcode or a name."""
    for c in COMMANDS:
        if op_or_name in (c.op, c.name):
            return c
    raise KeyError(op_or_name)


#: STATUS response length including the leading status byte: flags, last error, the busy
#: cycles of the current (or last) RUN and those of the RUN that completed before it started
#: (u32 each; the previous RUN's count whether or not the current one was held, Op.RUN; 0 on a
#: core without a store of two banks, which does not keep it).
STATUS_BYTES = 11

#: The COUNTERS response after its status byte: one u32 (little-endian, wrapping) per cause,
#: in this order, counted from reset; every cycle counts in exactly one. ``idle``: no RUN
#: executes (the core waits on the host); ``check``: a RUN's argument check, from the cycle
#: busy rises to the one the check reports; ``compute``: the engine feeds its datapath (a
#: systolic tile's k x ii issue cycles, a tree row's k words, a run-length entry, a FEIE
#: broadcast); ``other``: the rest of a RUN (pipeline fill and drain, short-K bubbles, the
#: output stage's combiner and epilogue, completion).
#: ``data``: no RUN executes while the host is writing a store (waiting for data); ``idle``
#: then counts the rest of the time no RUN executes (waiting on the host).
COUNTER_NAMES = ("idle", "check", "compute", "other", "data")

#: COUNTERS response length including the leading status byte.
COUNTERS_BYTES = 1 + 4 * len(COUNTER_NAMES)

#: INFO capability bits.
CAP_ACCUMULATE = 0x01   # RUN accepts the accumulate flag (the PE kind has a combiner)
CAP_MODES = 0x02        # the PE kind has run-time modes (RUN carries a mode field)
CAP_COUNTERS = 0x04     # the core answers COUNTERS (config core.counters)

#: Layer types (`tessera.sim.layers` class names): bit i of INFO ``layer_types`` is entry i.
LAYER_TYPES = ("Dense", "Conv2d", "MaxPool2d", "AvgPool2d", "Relu", "Clip", "Flatten",
               "Pad2d")

#: Store roles, by code: ``operand`` (written by the host, read by the engine: A, B),
#: ``result`` (written by the core's output stage; the host may not touch it while a RUN
#: executes), ``parameter`` (written by the host, read per output channel: scales, bias,
#: requantization).
STORE_ROLES = ("operand", "result", "parameter")

#: Epilogue capabilities: bit i of INFO ``epilogue`` is entry i. ``relu_clip``: ReLU, ReLU6 or
#: a clip range; ``fp_convert``: conversion of an FP accumulator to the operand format;
#: ``ternary_quantizer``: the k-bit bounded-ReLU activation quantizer (`tessera.sim.ternary`).
EPILOGUE_CAPS = ("bias", "requantize", "relu_clip", "fp_convert", "ternary_quantizer")

#: Number-format kinds, by code. ``int``: two's complement or unsigned integers, fixed point
#: with ``frac_bits`` > 0; ``float``: sign, ``exp_bits``, ``man_bits``; ``other``: a kind's own
#: encoding (biscaled, fpec, ternary), named by ``name`` and described in the manifest.
FORMAT_KINDS = ("other", "int", "float")

#: The formats INFO describes, in order: operand A, operand B, the accumulator (result lanes).
FORMAT_OPERANDS = ("a", "b", "acc")

_FMT_SIGNED = 0x01      # format flag: signed (two's complement for int, a sign bit for float)
_FMT_BY_MODE = 0x02     # format flag: bits or signedness vary with the run-time mode


def _names_to_mask(names, table, what):
    mask = 0
    for n in names:
        if n not in table:
            raise ValueError(f"{what} {n!r} is unknown; allowed: {', '.join(table)}")
        mask |= 1 << table.index(n)
    return mask


def _mask_to_names(mask, table, what):
    if mask >> len(table):
        raise ValueError(f"INFO {what} bits {mask:#x} name no {what}; allowed: bits 0.."
                         f"{len(table) - 1} ({', '.join(table)})")
    return tuple(n for i, n in enumerate(table) if mask >> i & 1)


def epilogue_caps(epilogue):
    """The `EPILOGUE_CAPS` names of a PE kind's epilogue (`PEKind.epilogue`).

    Parameters
    ----------
    epilogue : object or None
        None (the kind has no epilogue: INFO reports none) or an object whose
        ``capabilities`` attribute is an iterable of `EPILOGUE_CAPS` names.

    Returns
    -------
    tuple of str
        The names, in `EPILOGUE_CAPS` order (empty for none).
    """
    if epilogue is None:
        return ()
    names = getattr(epilogue, "capabilities", None)
    if names is None or isinstance(names, str):
        raise TypeError(f"an epilogue must have capabilities (a tuple of names among "
                        f"{', '.join(EPILOGUE_CAPS)}), not {epilogue!r}")
    return _mask_to_names(_names_to_mask(names, EPILOGUE_CAPS, "epilogue capability"),
                          EPILOGUE_CAPS, "epilogue")


def store_role(store, index_among_host_stores):
    """The `STORE_ROLES` name of a `tessera.hdl.ctrl.memmap.Store`.

    A store's own ``role`` wins when it declares one. Otherwise a result store is ``result``,
    the first two host-written stores carry the operands A and B (formats ``a`` and ``b``) and
    are ``operand``, and any further host-written store (the tree engine's scales, an
    epilogue's bias) is ``parameter``.
    """
    role = getattr(store, "role", None)
    if role is not None:
        return role
    if store.result:
        return "result"
    return "operand" if index_among_host_stores < 2 else "parameter"


class _Reader:
    """Reads INFO fields in order, naming the field a short payload ends in."""

    def __init__(self, data):
        self.data, self.pos = bytes(data), 0

    def u(self, nbytes, name):
        if self.pos + nbytes > len(self.data):
            raise ValueError(f"INFO payload of {len(self.data)} bytes ends inside {name}")
        v = int.from_bytes(self.data[self.pos:self.pos + nbytes], "little")
        self.pos += nbytes
        return v

    def text(self, name):
        n = self.u(1, f"{name} length")
        if self.pos + n > len(self.data):
            raise ValueError(f"INFO payload of {len(self.data)} bytes ends inside {name}")
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"INFO {name} {raw!r} is not ASCII") from None


def _u(value, nbytes, name):
    if isinstance(value, bool) or not isinstance(value, int) \
            or not 0 <= value < 1 << (8 * nbytes):
        raise ValueError(f"INFO {name} must be an integer 0..{(1 << 8 * nbytes) - 1}, "
                         f"not {value!r}")
    return value.to_bytes(nbytes, "little")


def _text(value, name):
    if not isinstance(value, str) or not value.isascii() or len(value) > 255:
        raise ValueError(f"INFO {name} must be an ASCII string of at most 255 characters, "
                         f"not {value!r}")
    return bytes([len(value)]) + value.encode("ascii")


@dataclass(frozen=True)
class FormatInfo:
    """A compact number-format descriptor as INFO reports it (5 bytes and a name).

    ``kind`` is one of `FORMAT_KINDS`; ``bits`` the element width (the widest over the modes
    when ``by_mode``); ``signed`` two's complement (int) or a sign bit (float); ``by_mode``
    the width or signedness depends on the run-time mode; ``frac_bits`` fixed-point fraction
    bits (int; the value is code * 2**-frac_bits); ``exp_bits``/``man_bits`` (float); ``name``
    the format's name (float: e.g. ``fp8_e4m3``; other: the encoding, e.g. ``ternary``).
    """
    kind: str
    bits: int
    signed: bool = False
    by_mode: bool = False
    frac_bits: int = 0
    exp_bits: int = 0
    man_bits: int = 0
    name: str = ""

    @classmethod
    def from_format(cls, desc, bits=None):
        """From a PE kind's manifest format descriptor (`PEKind.formats` entry).

        Parameters
        ----------
        desc : dict
            ``{"kind": ..., "bits": ..., "signed": ...}`` plus the kind's own keys.
        bits : int or None
            The width to report when ``desc`` has none (the lane's element bits).
        """
        kind = desc.get("kind")
        width = desc.get("bits", bits)
        by_mode = isinstance(width, (list, tuple)) or desc.get("signed") == "by mode"
        if isinstance(width, (list, tuple)):
            width = max(width)
        signed = desc.get("signed") is True
        if kind in ("int", "uint", "fixed"):
            return cls("int", width, signed, by_mode, frac_bits=desc.get("frac_bits", 0))
        if kind == "float":
            return cls("float", width if width is not None
                       else 1 + desc["exp_bits"] + desc["man_bits"], True, by_mode,
                       exp_bits=desc["exp_bits"], man_bits=desc["man_bits"],
                       name=desc.get("name", ""))
        return cls("other", width, signed, by_mode, name=str(kind))

    def pack(self):
        if self.kind not in FORMAT_KINDS:
            raise ValueError(f"INFO format kind {self.kind!r} is unknown; allowed: "
                             f"{', '.join(FORMAT_KINDS)}")
        a, b = (self.exp_bits, self.man_bits) if self.kind == "float" else (self.frac_bits, 0)
        flags = (_FMT_SIGNED if self.signed else 0) | (_FMT_BY_MODE if self.by_mode else 0)
        return bytes([FORMAT_KINDS.index(self.kind)]) + _u(self.bits, 1, "format bits") \
            + bytes([flags]) + _u(a, 1, "format field") + _u(b, 1, "format field") \
            + _text(self.name, "format name")

    @classmethod
    def read(cls, r, what):
        code = r.u(1, f"{what} kind")
        if code >= len(FORMAT_KINDS):
            raise ValueError(f"INFO {what} kind {code} is unknown; allowed: 0.."
                             f"{len(FORMAT_KINDS) - 1} ({', '.join(FORMAT_KINDS)})")
        kind = FORMAT_KINDS[code]
        bits, flags = r.u(1, f"{what} bits"), r.u(1, f"{what} flags")
        a, b = r.u(1, what), r.u(1, what)
        name = r.text(f"{what} name")
        fp = kind == "float"
        return cls(kind, bits, bool(flags & _FMT_SIGNED), bool(flags & _FMT_BY_MODE),
                   frac_bits=0 if fp else a, exp_bits=a if fp else 0, man_bits=b if fp else 0,
                   name=name)

    def __str__(self):
        sign = "by mode" if self.by_mode else ("s" if self.signed else "u")
        if self.kind == "float":
            return f"{self.name or 'float'} (e{self.exp_bits}m{self.man_bits})"
        if self.kind == "int":
            frac = f", {self.frac_bits} fraction bits" if self.frac_bits else ""
            return f"int{self.bits} ({sign}{frac})"
        return f"{self.name} ({self.bits} bits)"


@dataclass(frozen=True)
class StoreInfo:
    """One store of the memory map as INFO reports it (8 bytes and its name).

    ``role`` is one of `STORE_ROLES`; ``word_bits`` is ``lanes * lane_bits`` (a word travels
    as ``word_bytes`` little-endian bytes, lane 0 in the least significant bits).
    """
    name: str
    id: int
    role: str
    lanes: int
    lane_bits: int
    word_bits: int
    depth: int
    banks: int = 1

    @property
    def words(self):
        """Host-addressable words: ``banks x depth``."""
        return self.banks * self.depth

    def pack(self):
        if self.role not in STORE_ROLES:
            raise ValueError(f"store {self.name}: role {self.role!r} is unknown; allowed: "
                             f"{', '.join(STORE_ROLES)}")
        return _u(self.id, 1, "store id") + bytes([STORE_ROLES.index(self.role)]) \
            + _u(self.lanes, 1, "store lanes") + _u(self.lane_bits, 1, "store lane_bits") \
            + _u(self.word_bits, 2, "store word_bits") + _u(self.depth, 2, "store depth") \
            + _u(self.banks, 1, "store banks") + _text(self.name, "store name")

    @classmethod
    def read(cls, r, what):
        sid, role = r.u(1, f"{what} id"), r.u(1, f"{what} role")
        if role >= len(STORE_ROLES):
            raise ValueError(f"INFO {what} role {role} is unknown; allowed: 0.."
                             f"{len(STORE_ROLES) - 1} ({', '.join(STORE_ROLES)})")
        lanes, lane_bits = r.u(1, f"{what} lanes"), r.u(1, f"{what} lane_bits")
        word_bits, depth = r.u(2, f"{what} word_bits"), r.u(2, f"{what} depth")
        banks = r.u(1, f"{what} banks")
        if not 1 <= banks <= 2:
            raise ValueError(f"INFO {what} banks {banks}; allowed: 1 or 2")
        return cls(name=r.text(f"{what} name"), id=sid, role=STORE_ROLES[role], lanes=lanes,
                   lane_bits=lane_bits, word_bits=word_bits, depth=depth, banks=banks)

    @property
    def result(self):
        """Written by the core (refused to the host while busy)."""
        return self.role == "result"

    @property
    def word_bytes(self):
        return (self.word_bits + 7) // 8


#: The fixed INFO header: (field, bytes, meaning), in order. Names follow it (`INFO_LAYOUT`).
INFO_HEADER = (
    ("version", 1, "command-set version; first in every version"),
    ("length", 2, "bytes that follow this field"),
    ("engine", 1, "engine code (RUN's engine byte)"),
    ("pe_kind", 1, "PE kind code"),
    ("pe_latency", 1, "PE latency in cycles"),
    ("pe_ii", 1, "PE initiation interval in cycles"),
    ("capabilities", 1, "bit 0 CAP_ACCUMULATE, bit 1 CAP_MODES, bit 2 CAP_COUNTERS"),
    ("rows", 2, "the engine's first dimension (systolic: rows; tree: inputs)"),
    ("cols", 2, "the engine's second dimension (systolic: columns; tree: outputs)"),
    ("combiner_latency", 1, "extra cycles of an accumulating RUN (0 without a combiner)"),
    ("modes", 1, "number of run-time modes (0: none)"),
    ("layer_types", 2, "bit i: LAYER_TYPES[i] runs on this engine"),
    ("epilogue", 1, "bit i: EPILOGUE_CAPS[i] (0: no epilogue)"),
    ("n_stores", 1, "number of store descriptors"),
)

#: Bytes of the fixed header (version and length included).
INFO_HEADER_BYTES = sum(n for _, n, _ in INFO_HEADER)

#: What follows the header, in order; ``text`` is a length byte and that many ASCII bytes.
INFO_LAYOUT = {
    "after_header": ["engine_name: text", "pe_name: text", "format a", "format b",
                     "format acc", "store x n_stores"],
    "format": [("kind", 1, "FORMAT_KINDS code"), ("bits", 1, "element bits (widest mode)"),
               ("flags", 1, "bit 0 signed, bit 1 bits or signedness vary by mode"),
               ("p1", 1, "int: frac_bits; float: exp_bits; other: 0"),
               ("p2", 1, "float: man_bits; otherwise 0"), ("name", "text", "format name")],
    "store": [("id", 1, "READ/WRITE spad"), ("role", 1, "STORE_ROLES code"),
              ("lanes", 1, "lanes per word"), ("lane_bits", 1, "bits per lane"),
              ("word_bits", 2, "lanes x lane_bits"), ("depth", 2, "words per bank"),
              ("banks", 1, "banks (the host addresses banks x depth words, bank b from "
                           "b x depth)"),
              ("name", "text", "store name")],
}


def info_layout():
    """The INFO layout and its code tables as plain data (the manifest's ``command_set.info``)."""
    def rows(fields):
        return [{"name": f, "bytes": n, "doc": d} for f, n, d in fields]
    return {"version": VERSION, "header": rows(INFO_HEADER),
            "after_header": INFO_LAYOUT["after_header"],
            "format": rows(INFO_LAYOUT["format"]), "store": rows(INFO_LAYOUT["store"]),
            "capabilities": {"ACCUMULATE": CAP_ACCUMULATE, "MODES": CAP_MODES,
                             "COUNTERS": CAP_COUNTERS},
            "layer_types": list(LAYER_TYPES), "epilogue_caps": list(EPILOGUE_CAPS),
            "store_roles": list(STORE_ROLES), "format_kinds": list(FORMAT_KINDS),
            "formats": list(FORMAT_OPERANDS)}


@dataclass(frozen=True)
class CoreInfo:
    """The INFO payload: packed once (HDL constant, golden core), unpacked by the driver.

    Layout (after the status byte; docs/commands.md has the table): ``version`` u8 (first in
    every version, so a driver refuses a core of another version before parsing anything
    else), ``length`` u16 (the bytes that follow it), then ``engine``, ``pe_kind``,
    ``pe_latency``, ``pe_ii``, ``capabilities`` u8, ``rows``, ``cols`` u16,
    ``combiner_latency``, ``modes`` u8, ``layer_types`` u16 (bits of `LAYER_TYPES`),
    ``epilogue`` u8 (bits of `EPILOGUE_CAPS`), the store count u8; then the engine name and
    the PE kind name (a length byte and ASCII each), the `FormatInfo` of A, B and the
    accumulator, and one `StoreInfo` per store.
    """
    version: int
    engine: int
    engine_name: str
    pe_kind: int
    pe_name: str
    pe_latency: int
    pe_ii: int
    capabilities: int
    rows: int
    cols: int
    combiner_latency: int
    modes: int
    layer_types: tuple
    epilogue: tuple
    formats: tuple      # FormatInfo of a, b, acc (`FORMAT_OPERANDS`)
    stores: tuple

    def _header_values(self):
        return {"engine": self.engine, "pe_kind": self.pe_kind, "pe_latency": self.pe_latency,
                "pe_ii": self.pe_ii, "capabilities": self.capabilities, "rows": self.rows,
                "cols": self.cols, "combiner_latency": self.combiner_latency,
                "modes": self.modes,
                "layer_types": _names_to_mask(self.layer_types, LAYER_TYPES, "layer type"),
                "epilogue": _names_to_mask(self.epilogue, EPILOGUE_CAPS, "epilogue capability"),
                "n_stores": len(self.stores)}

    def pack(self):
        """The INFO bytes after the status byte (`INFO_HEADER`, then `INFO_LAYOUT`)."""
        if len(self.formats) != len(FORMAT_OPERANDS):
            raise ValueError(f"INFO needs {len(FORMAT_OPERANDS)} formats "
                             f"({', '.join(FORMAT_OPERANDS)}), not {len(self.formats)}")
        values = self._header_values()
        body = b"".join([
            *(_u(values[name], n, name) for name, n, _ in INFO_HEADER[2:]),
            _text(self.engine_name, "engine name"), _text(self.pe_name, "PE kind name"),
            *(f.pack() for f in self.formats), *(s.pack() for s in self.stores)])
        return _u(self.version, 1, "version") + _u(len(body), 2, "length") + body

    @classmethod
    def unpack(cls, data):
        """From the bytes after the status byte (version and length first).

        Raises `ValueError` naming the field a short payload ends in, or an unknown code.
        The version is not checked here: `tessera.sim.driver.TesseraDriver.connect` refuses
        another version before it reads the rest.
        """
        r = _Reader(data)
        h = {name: r.u(n, name) for name, n, _ in INFO_HEADER}
        if len(data) != 3 + h["length"]:
            raise ValueError(f"INFO length says {h['length']} bytes follow, but "
                             f"{len(data) - 3} do")
        f = {k: h[k] for k in ("version", "engine", "pe_kind", "pe_latency", "pe_ii",
                               "capabilities", "rows", "cols", "combiner_latency", "modes")}
        f["layer_types"] = _mask_to_names(h["layer_types"], LAYER_TYPES, "layer type")
        f["epilogue"] = _mask_to_names(h["epilogue"], EPILOGUE_CAPS, "epilogue")
        f["engine_name"], f["pe_name"] = r.text("engine name"), r.text("PE kind name")
        f["formats"] = tuple(FormatInfo.read(r, f"format {o}") for o in FORMAT_OPERANDS)
        f["stores"] = tuple(StoreInfo.read(r, f"store {i}") for i in range(h["n_stores"]))
        if r.pos != len(r.data):
            raise ValueError(f"INFO payload has {len(r.data) - r.pos} bytes after its last "
                             f"store")
        return cls(**f)

    # -- what a driver asks ---------------------------------------------------------------------
    @property
    def accumulate(self):
        """RUN accepts the accumulate flag (the PE kind has a combiner)."""
        return bool(self.capabilities & CAP_ACCUMULATE)

    @property
    def has_modes(self):
        """The PE kind has run-time modes (RUN carries a mode field)."""
        return bool(self.capabilities & CAP_MODES)

    @property
    def has_counters(self):
        """The core answers COUNTERS (cycles by cause, `COUNTER_NAMES`)."""
        return bool(self.capabilities & CAP_COUNTERS)

    @property
    def stores_by_name(self):
        """``{name: StoreInfo}`` in id order."""
        return {s.name: s for s in self.stores}

    @property
    def format_by_operand(self):
        """``{"a": FormatInfo, "b": ..., "acc": ...}``."""
        return dict(zip(FORMAT_OPERANDS, self.formats))

    @property
    def result_store(self):
        """The (first) store with role ``result``."""
        return next(s for s in self.stores if s.result)

    def store(self, key):
        """The store named ``key`` (a str) or with id ``key`` (an int)."""
        for s in self.stores:
            if (s.name == key) if isinstance(key, str) else (s.id == key):
                return s
        raise KeyError(f"no store {key!r}; this core has stores "
                       f"{', '.join(f'{s.name} (id {s.id})' for s in self.stores)}")

    def differences(self, other):
        """Short ``field: self != other`` texts for the fields where two INFOs differ."""
        out = []
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a == b:
                continue
            if f.name == "stores" and len(a) == len(b):
                for sa, sb in zip(a, b):
                    out += [f"store {sa.name}.{g.name}: {getattr(sa, g.name)} != "
                            f"{getattr(sb, g.name)}" for g in dataclasses.fields(sa)
                            if getattr(sa, g.name) != getattr(sb, g.name)]
            elif f.name == "formats":
                out += [f"format {o}: {fa} != {fb}"
                        for o, fa, fb in zip(FORMAT_OPERANDS, a, b) if fa != fb]
            elif f.name == "stores":
                out.append(f"stores: {', '.join(s.name for s in a)} != "
                           f"{', '.join(s.name for s in b)}")
            else:
                out.append(f"{f.name}: {_show(a)} != {_show(b)}")
        return out

    def describe(self):
        """A few lines for people: engine, kind, formats, layer types, epilogue, stores."""
        fmts = ", ".join(f"{o} {f}" for o, f in zip(FORMAT_OPERANDS, self.formats))
        lines = [f"command set v{self.version}; engine {self.engine_name} ({self.engine}) "
                 f"{self.rows}x{self.cols}; PE kind {self.pe_name} ({self.pe_kind}), latency "
                 f"{self.pe_latency}, II {self.pe_ii}, {self.modes} modes, accumulate "
                 f"{'yes' if self.accumulate else 'no'} (combiner latency "
                 f"{self.combiner_latency})",
                 f"formats: {fmts}",
                 f"layer types: {', '.join(self.layer_types) or 'none'}; epilogue: "
                 f"{', '.join(self.epilogue) or 'none'}"]
        lines += [f"store {s.name} (id {s.id}, {s.role}): {s.lanes} x {s.lane_bits} bits = "
                  f"{s.word_bits}-bit words, depth {s.depth}"
                  + (f" x {s.banks} banks" if s.banks > 1 else "") for s in self.stores]
        return "\n".join(lines)


def _show(v):
    if isinstance(v, tuple):
        return "(" + ", ".join(map(str, v)) + ")" if v else "none"
    return str(v)
