"""The memory map: the stores of a core and their geometry, computed once from the config.

Pure Python. `tessera.generators.config.CoreConfig.geometry` builds one `Geometry` from the
engine and the PE kind; the core HDL instantiates its scratchpads from it, the decoder takes
word sizes and depths from it, and the golden core, the manifest, the C header and the host
driver (through INFO) read the same numbers.
"""

from dataclasses import dataclass


__all__ = ["Store", "Geometry", "ROLES", "MAX_BANKS", "StoreSpec", "build_geometry"]


#: What a store holds, as INFO names it (`tessera.hdl.ctrl.protocol.STORE_ROLES`):
#: ``operand`` (written by the host, read by the engine), ``result`` (written by the core's
#: output stage) and ``parameter`` (written by the host, read per output channel).
ROLES = ("operand", "result", "parameter")

#: Banks a store may have: 1, or 2 for ping-pong (a RUN names the bank it uses; the host
#: reaches the other one while the RUN executes).
MAX_BANKS = 2


@dataclass(frozen=True)
class Store:
    """One scratchpad store.

    ``lanes`` lanes of ``lane_bits`` each make a word; the host transfers a word as
    ``word_bytes`` little-endian bytes, lane 0 in the least significant bits. ``role`` (one
    of `ROLES`): ``result`` stores are written by the core's output stage; ``operand`` and
    ``parameter`` stores only by the host, so the next layer's operands can be loaded while a
    RUN executes. ``result=True`` is the older spelling of ``role="result"``; without a role a
    store is ``result`` or, by its place among the host-written stores, ``operand`` (the
    first two) or ``parameter`` (`tessera.hdl.ctrl.protocol.store_role`).

    ``depth`` words per bank, ``banks`` banks (1 or `MAX_BANKS`): the host addresses
    ``words = banks x depth`` words, bank ``b`` at ``b x depth``; a RUN names one bank per
    store and the engine addresses ``depth`` words of it.
    """
    name: str
    id: int
    lanes: int
    lane_bits: int
    depth: int
    result: bool = False
    doc: str = ""
    role: str = None
    banks: int = 1
    chain: bool = False

    def __post_init__(self):
        if not 1 <= self.lanes <= 255 or not 1 <= self.lane_bits <= 255:
            raise ValueError(f"store {self.name}: lanes and lane_bits must be 1..255, not "
                             f"{self.lanes} x {self.lane_bits}")
        if not 2 <= self.depth <= 65535:
            raise ValueError(f"store {self.name}: depth must be 2..65535, not {self.depth}")
        if self.role is not None:
            if self.role not in ROLES:
                raise ValueError(f"store {self.name}: role {self.role!r} is unknown; allowed: "
                                 f"{', '.join(ROLES)}")
            if self.result and self.role != "result":
                raise ValueError(f"store {self.name}: result=True with role {self.role!r}")
            object.__setattr__(self, "result", self.role == "result")
        if self.chain and self.result:
            raise ValueError(f"store {self.name}: a result store cannot be a chain target")
        if self.banks not in range(1, MAX_BANKS + 1):
            raise ValueError(f"store {self.name}: banks must be 1..{MAX_BANKS}, not "
                             f"{self.banks}")
        if self.words > 65535:
            raise ValueError(f"store {self.name}: {self.banks} banks of {self.depth} words "
                             f"give {self.words} addresses; allowed: at most 65535")

    @property
    def words(self):
        """Host-addressable words: ``banks x depth``."""
        return self.banks * self.depth

    @property
    def word_bits(self):
        return self.lanes * self.lane_bits

    @property
    def word_bytes(self):
        return (self.word_bits + 7) // 8

    def as_dict(self):
        return {"id": self.id, "depth": self.depth, "banks": self.banks, "words": self.words,
                "lanes": self.lanes, "lane_bits": self.lane_bits, "word_bits": self.word_bits,
                "word_bytes": self.word_bytes, "result": self.result, "chain": self.chain,
                "doc": self.doc}


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

    @property
    def chain_targets(self):
        """The stores a RUN may send its epilogue outputs to instead of the epilogue's result
        store (RUN ``chain``): those the engine declared so (`StoreSpec.chain`: the next
        layer's operand store, in which the engine's chain writer lays the outputs out as
        that layer reads them)."""
        return tuple(s for s in self.stores if s.chain)


@dataclass(frozen=True)
class StoreSpec:
    """A store as an engine declares it: what it holds, not how big it is.

    ``name``, ``role`` (`ROLES`), ``lanes`` x ``lane_bits``; the depth and the banks come from
    the config's ``[memory]`` keys ``<name>_depth`` and ``<name>_banks`` (`build_geometry`).
    ``depth_from``: the ``[memory]`` key whose value is the default depth when
    ``<name>_depth`` is not set (e.g. the epilogue's output store follows ``c_depth``);
    ``depth``: a fixed depth the config cannot change (e.g. one word per output channel).
    ``chain``: a chain target (a RUN may send its epilogue outputs here instead of to the
    epilogue's result store, laid out by the engine's chain writer as the next layer reads
    them).
    """
    name: str
    role: str
    lanes: int
    lane_bits: int
    doc: str = ""
    depth_from: str = None
    depth: int = None
    chain: bool = False

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"store {self.name}: role {self.role!r} is unknown; allowed: "
                             f"{', '.join(ROLES)}")


def build_geometry(rows, cols, specs, memory):
    """The `Geometry` of an engine's store declarations: ids in declaration order, depths and
    banks from ``memory`` (an object with ``depth(name, default_key)`` and ``banks(name)``,
    `tessera.generators.config.MemorySection`)."""
    stores = []
    for i, sp in enumerate(specs):
        depth = sp.depth if sp.depth is not None else memory.depth(sp.name, sp.depth_from)
        stores.append(Store(sp.name, i, sp.lanes, sp.lane_bits, depth, role=sp.role,
                            banks=memory.banks(sp.name), doc=sp.doc, chain=sp.chain))
    return Geometry(rows=rows, cols=cols, stores=tuple(stores))
