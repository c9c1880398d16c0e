"""The memory map: the stores of a core and their geometry, computed once from the config.

Pure Python. `tessera.generators.config.CoreConfig.geometry` builds one `Geometry` from the
engine and the PE kind; the core HDL instantiates its scratchpads from it, the decoder takes
word sizes and depths from it, and the golden core, the manifest, the C header and the host
driver (through INFO) read the same numbers.
"""

from dataclasses import dataclass


__all__ = ["Store", "Geometry"]


@dataclass(frozen=True)
class Store:
    """One scratchpad store.

    ``lanes`` lanes of ``lane_bits`` each make a word; the host transfers a word as
    ``word_bytes`` little-endian bytes, lane 0 in the least significant bits. ``result``
    stores are written by the core's output stage (the host may not touch them while a RUN
    executes); operand stores are written only by the host, so the next layer's operands can
    be loaded while a RUN executes.
    """
    name: str
    id: int
    lanes: int
    lane_bits: int
    depth: int
    result: bool = False
    doc: str = ""

    def __post_init__(self):
        if not 1 <= self.lanes <= 255 or not 1 <= self.lane_bits <= 255:
            raise ValueError(f"store {self.name}: lanes and lane_bits must be 1..255, not "
                             f"{self.lanes} x {self.lane_bits}")
        if not 2 <= self.depth <= 65535:
            raise ValueError(f"store {self.name}: depth must be 2..65535, not {self.depth}")

    @property
    def word_bits(self):
        return self.lanes * self.lane_bits

    @property
    def word_bytes(self):
        return (self.word_bits + 7) // 8

    def as_dict(self):
        return {"id": self.id, "depth": self.depth, "lanes": self.lanes,
                "lane_bits": self.lane_bits, "word_bits": self.word_bits,
                "word_bytes": self.word_bytes, "result": self.result, "doc": self.doc}


@dataclass(frozen=True)
class Geometry:
    """Array shape plus the stores, in id order (ids are 0..n-1)."""
    rows: int
    cols: int
    stores: tuple

    def __post_init__(self):
        ids = [s.id for s in self.stores]
        if ids != list(range(len(ids))):
            raise ValueError(f"store ids must be 0..{len(ids) - 1} in order, not {ids}")

    def store(self, name):
        """The store called ``name`` (or with id ``name`` if an int)."""
        for s in self.stores:
            if name in (s.name, s.id):
                return s
        raise KeyError(f"no store {name!r}; stores: {[s.name for s in self.stores]}")

    @property
    def pes(self):
        return self.rows * self.cols

    @property
    def operand_stores(self):
        return tuple(s for s in self.stores if not s.result)

    @property
    def result_stores(self):
        return tuple(s for s in self.stores if s.result)
