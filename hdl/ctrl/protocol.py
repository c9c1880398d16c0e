"""Host command protocol as data: the command table, error codes and the INFO layout.

Pure Python, no HDL. The command decoder (HDL), the golden core and the host driver all read
this one table, so the three cannot disagree; docs/commands.md describes version 2 in prose.

A command is an opcode byte followed by its fixed argument bytes (`Command.args`, little-endian
fields in order). WRITE is then followed by ``count`` words of data; RUN's arguments are an
engine id byte followed by that engine's own argument layout (`ArgLayout`), which the engine
declares (`tessera.generators.kinds`), so a new engine adds a layout, not a decoder branch.
"""

from dataclasses import dataclass


__all__ = ["VERSION", "Op", "Err", "ERROR_TEXT", "Field", "ArgLayout", "Command", "COMMANDS",
           "command", "STATUS_BYTES", "CoreInfo", "StoreInfo", "INFO_HEADER_BYTES",
           "CAP_ACCUMULATE", "CAP_MODES"]

#: Version of the command set, reported by INFO and echoed in the manifest.
VERSION = 2


class Op:
    INFO = 0x01
    STATUS = 0x02
    WRITE = 0x03
    READ = 0x04
    RUN = 0x05


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
            doc="busy, latched error (cleared by reading), busy-cycle counter"),
    Command(Op.WRITE, "WRITE", _REGION, data="words",
            doc="write count words of a store; the data follows the arguments"),
    Command(Op.READ, "READ", _REGION, response="words",
            doc="read count words of a store (refused while busy)"),
    Command(Op.RUN, "RUN", ArgLayout([Field("engine", 1, "engine id (INFO engine)")]),
            engine_args=True, doc="start the engine; its own argument layout follows"),
)


def command(op_or_name):
    """The `Command` row for an opcode or a name."""
    for c in COMMANDS:
        if op_or_name in (c.op, c.name):
            return c
    raise KeyError(op_or_name)


#: STATUS response length including the leading status byte.
STATUS_BYTES = 7

#: INFO capability bits.
CAP_ACCUMULATE = 0x01   # RUN accepts the accumulate flag (the PE kind has a combiner)
CAP_MODES = 0x02        # the PE kind has run-time modes (RUN carries a mode field)


@dataclass(frozen=True)
class StoreInfo:
    """One store of the memory map as INFO reports it (6 bytes)."""
    id: int
    lanes: int
    lane_bits: int
    depth: int
    result: bool    # written by the core (refused to the host while busy)

    def pack(self):
        return bytes([self.id, self.lanes, self.lane_bits]) + self.depth.to_bytes(2, "little") \
            + bytes([int(self.result)])

    @classmethod
    def unpack(cls, b):
        return cls(id=b[0], lanes=b[1], lane_bits=b[2], depth=int.from_bytes(b[3:5], "little"),
                   result=bool(b[5] & 1))

    @property
    def word_bytes(self):
        return (self.lanes * self.lane_bits + 7) // 8


#: Bytes of the fixed INFO header; the store descriptors follow it.
INFO_HEADER_BYTES = 12
_STORE_BYTES = 6


@dataclass(frozen=True)
class CoreInfo:
    """The INFO payload: packed once (HDL constant, golden core), unpacked by the driver.

    Layout (after the status byte): version (first in every version, so a driver can refuse a
    core of another version before it parses anything else), ``length`` (the bytes that follow
    it), engine code, PE kind code, PE latency, PE initiation interval, capability bits, rows,
    cols, combiner latency, mode count, number of stores; then 6 bytes per store
    (`StoreInfo`). Later versions append fields, and ``length`` says how many bytes to read.
    """
    version: int
    engine: int
    pe_kind: int
    pe_latency: int
    pe_ii: int
    capabilities: int
    rows: int
    cols: int
    combiner_latency: int
    modes: int
    stores: tuple

    def pack(self):
        head = bytes([self.engine, self.pe_kind, self.pe_latency, self.pe_ii,
                      self.capabilities, self.rows, self.cols, self.combiner_latency,
                      self.modes, len(self.stores)])
        assert len(head) == INFO_HEADER_BYTES - 2
        body = head + b"".join(s.pack() for s in self.stores)
        if len(body) > 255:
            raise ValueError(f"INFO payload of {len(body)} bytes does not fit its length byte")
        return bytes([self.version, len(body)]) + body

    @classmethod
    def unpack(cls, data):
        """From the bytes after the status byte (version and length bytes first)."""
        version, n = data[0], data[1]
        b = data[2:2 + n]
        if len(b) != n or n < INFO_HEADER_BYTES - 2:
            raise ValueError(f"INFO payload of {len(b)} bytes is shorter than its header")
        ns = b[9]
        stores = tuple(StoreInfo.unpack(b[10 + _STORE_BYTES * i:10 + _STORE_BYTES * (i + 1)])
                       for i in range(ns))
        return cls(version=version, engine=b[0], pe_kind=b[1], pe_latency=b[2], pe_ii=b[3],
                   capabilities=b[4], rows=b[5], cols=b[6], combiner_latency=b[7], modes=b[8],
                   stores=stores)

    @property
    def accumulate(self):
        return bool(self.capabilities & CAP_ACCUMULATE)

    def store(self, sid):
        for s in self.stores:
            if s.id == sid:
                return s
        raise KeyError(sid)
