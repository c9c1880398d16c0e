"""What a PE kind and an engine declare: the contract the rest of tessera asks of them.

A **PE kind** is a frozen dataclass subclass of `PEKind`: its fields are the kind's ``[pe]``
config keys (checked in ``__post_init__``), and its methods answer every question the config,
the HDL assembly, the golden model, the driver, the manifest, the regression and `tessera unit`
ask. An **engine** is a subclass of `Engine` (one per ``array.kind``). Both are registered in
`tessera.generators.kinds` by name; nothing outside the kind modules compares kind names.
"""

import dataclasses
from dataclasses import dataclass
from typing import ClassVar


__all__ = ["ConfigError", "check_int", "check_choice", "fmt_allowed", "OperandLayout",
           "Combiner", "PEResources", "PEKind", "Engine", "EngineSection"]


class ConfigError(ValueError):
    """A config value is missing, unknown or impossible. The message names key, value, allowed."""


def fmt_allowed(values):
    return ", ".join(repr(v) for v in values)


def short(value, limit=60):
    """``repr(value)``, cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_int(key, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: {short(value)} is not an integer; allowed: integers "
                          f"{lo}..{hi}")
    if not lo <= value <= hi:
        raise ConfigError(f"{key}: {short(value)} is out of range; allowed: {lo}..{hi}")


def check_choice(key, value, done, later=()):
    try:
        if value in done:
            return
        planned = value in later
    except TypeError:                      # an unhashable value (a list, a table) is no choice
        planned = False
    if planned:
        raise ConfigError(f"{key}: {short(value)} is not implemented yet; allowed: "
                          f"{fmt_allowed(done)}")
    raise ConfigError(f"{key}: {short(value)} is unknown; allowed: {fmt_allowed(done)}")


@dataclass(frozen=True)
class OperandLayout:
    """How operand elements sit in a scratchpad lane, for one run-time mode.

    ``a_elems``/``b_elems`` elements of ``a_bits``/``b_bits`` each per A/B lane (element 0 in
    the least significant bits), so a lane is ``a_elems * a_bits`` bits plus ``a_side_bits``
    of side-band data above the elements. `pack_a`/`unpack_a` (and ``_b``) are the one
    packing used by the driver, the golden model and (through the PE's own slicing) the HDL.
    """
    a_elems: int = 1
    a_bits: int = 8
    b_elems: int = 1
    b_bits: int = 8
    a_side_bits: int = 0

    @property
    def a_lane_bits(self):
        return self.a_elems * self.a_bits + self.a_side_bits

    @property
    def b_lane_bits(self):
        return self.b_elems * self.b_bits

    @staticmethod
    def _pack(codes, elems, bits):
        import numpy as np
        codes = np.asarray(codes, dtype=np.uint64)
        if elems == 1:
            return codes
        *lead, k = codes.shape
        if k % elems:
            raise ValueError(f"K={k} is not a multiple of {elems} elements per lane")
        g = codes.reshape(*lead, k // elems, elems)
        shifts = (np.arange(elems, dtype=np.uint64) * np.uint64(bits))
        return np.bitwise_or.reduce(g << shifts, axis=-1)

    @staticmethod
    def _unpack(lanes, elems, bits):
        import numpy as np
        lanes = np.asarray(lanes, dtype=np.uint64)
        if elems == 1:
            return lanes
        shifts = np.arange(elems, dtype=np.uint64) * np.uint64(bits)
        mask = np.uint64((1 << bits) - 1)
        g = (lanes[..., None] >> shifts) & mask
        return g.reshape(*lanes.shape[:-1], lanes.shape[-1] * elems)

    def pack_a(self, codes):
        """Element codes (..., K) -> lane codes (..., K / a_elems)."""
        return self._pack(codes, self.a_elems, self.a_bits)

    def pack_b(self, codes):
        return self._pack(codes, self.b_elems, self.b_bits)

    def unpack_a(self, lanes):
        return self._unpack(lanes, self.a_elems, self.a_bits)

    def unpack_b(self, lanes):
        return self._unpack(lanes, self.b_elems, self.b_bits)

    @property
    def k_per_word(self):
        """Products of one lane pair: K advances this much per scratchpad word."""
        if self.a_elems != self.b_elems:
            raise ValueError("A and B lanes must carry the same number of K elements")
        return self.a_elems


class Combiner:
    """How the output stage combines a new result with what a result store holds.

    ``latency`` cycles from the old and new words to the combined word; `hdl` returns a
    `wiring.Component` for one lane with members ``a`` (the stored code), ``b`` (the new code),
    both In(width), and ``result`` (Out(width)); `twin` is the bit-exact NumPy function of
    (old, new) codes; `as_dict` describes it for the manifest. ``associative``: combining the
    partial results of any split of K gives the same codes as one unsplit sum (a wrapping
    integer add), so a mapper may split K freely to make fewer, longer RUNs.
    """
    latency: int = 0
    associative: bool = False

    def hdl(self):
        raise NotImplementedError

    def twin(self, old, new):
        raise NotImplementedError

    def as_dict(self):
        raise NotImplementedError


@dataclass(frozen=True)
class PEResources:
    """What one PE needs at least on an FPGA: the floor `tessera.fpga.boards.estimate` counts
    per PE (`PEKind.resources`).

    Attributes
    ----------
    multiplier : tuple of (int, int) or None
        Operand widths ``(a, b)`` of the PE's one multiplier as a DSP block sees them (the
        estimate maps it to DSP blocks when yosys would: by the product's width), or None for
        a PE without a multiplier (LUT tables, shifts, adder trees).
    luts : int
        LUTs (iCE40 logic cells, ECP5 LUT4s) one PE takes at least.
    """
    multiplier: tuple = None
    luts: int = 0


def _multiplier_width(fmt):
    """Operand width a multiplier sees for a manifest format descriptor (None: unknown): an
    integer's bits, a float's significand (``man_bits + 1``)."""
    if not isinstance(fmt, dict):
        return None
    if fmt.get("kind") == "int" and isinstance(fmt.get("bits"), int):
        return fmt["bits"]
    if fmt.get("kind") == "float" and isinstance(fmt.get("man_bits"), int):
        return fmt["man_bits"] + 1
    return None


@dataclass(frozen=True)
class _Section:
    """A config section owned by a kind: its dataclass fields are the section's keys besides
    ``kind``; ``section`` is the TOML table name, ``name`` the ``kind`` value."""
    name: ClassVar[str] = ""
    section: ClassVar[str] = ""

    @classmethod
    def keys(cls):
        """The keys this section accepts (besides ``kind``)."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data):
        """Parse the table (without ``kind``); an unknown key names the allowed keys."""
        allowed = cls.keys()
        for key in data:
            if key not in allowed:
                raise ConfigError(f"{cls.section}.{key}: unknown key; allowed: "
                                  f"{fmt_allowed(['kind', *allowed])}")
        return cls(**data)

    def to_dict(self):
        return {"kind": self.name, **dataclasses.asdict(self)}

    @property
    def kind(self):
        """The ``kind`` value (``name``)."""
        return self.name


@dataclass(frozen=True)
class PEKind(_Section):
    """Base of the PE-kind config sections. Subclasses are frozen dataclasses.

    Class attributes: ``name`` (the ``pe.kind`` value), ``code`` (reported by INFO).
    """
    section: ClassVar[str] = "pe"
    code: ClassVar[int] = 0
    #: The ``array.kind`` values this PE kind runs on (the engine's `Engine.check` asks).
    engines: ClassVar[tuple] = ("systolic",)

    def describe(self):
        """One line for listings: the kind and its keys."""
        keys = ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(self).items())
        return f"{self.name} ({keys})"

    # -- operands and results -----------------------------------------------------------------
    def layout(self, mode=None):
        """The `OperandLayout` of ``mode`` (None: the kind's only or widest mode)."""
        raise NotImplementedError

    @property
    def result_bits(self):
        """Bits of one result lane (one accumulator)."""
        raise NotImplementedError

    @property
    def modes(self):
        """Run-time modes (names, in code order), or () for a kind without modes."""
        return ()

    def mode_code(self, mode):
        if not self.modes:
            if mode is not None:
                raise ValueError(f"pe.kind {self.name!r} has no run-time modes, not {mode!r}")
            return 0
        if mode not in self.modes:
            raise ValueError(f"mode {mode!r} is unknown; allowed: {fmt_allowed(self.modes)}")
        return self.modes.index(mode)

    # -- timing -------------------------------------------------------------------------------
    @property
    def latency(self):
        """PE latency in cycles (computed from the config, never by building HDL)."""
        raise NotImplementedError

    def ii(self, mode=None):
        """Initiation interval of the PE in ``mode``."""
        return 1

    # -- hardware and twins ---------------------------------------------------------------------
    def make_pe(self):
        """A new HDL `PE` (a `tessera.hdl.array.pe.PE`) for this config."""
        raise NotImplementedError

    def parts(self):
        """A callable that returns a new parts provider of this kind's arithmetic (product,
        term, accumulate, finish: `tessera.hdl.array.parts`), for engines that compose their
        own PEs (the weight-stationary array); None (the default) when the kind's PE does not
        honour the contract (``no_parts_reason`` then says why)."""
        return None

    def k_pad(self, mode=None):
        """``(a_code, b_code)``: the operand pair that pads K to whole tiles where an engine
        needs them (the weight-stationary array's K tiles of ``rows`` lanes). Its product must
        add nothing in every accumulate of the kind; the default, zero codes, does so for the
        integer kinds."""
        return 0, 0

    def parts_timing(self):
        """``(front, finish_latency)`` of `parts`: pipeline registers of the product function
        before the product register, and of the finish below a column."""
        from tessera.hdl.array.parts import mark_composed
        p = mark_composed(self.parts()())       # asked for its timing, never elaborated
        return p.front, p.finish_latency

    def twin(self):
        """The golden twin of one array tile: an object with ``tile(a_lanes, b_lanes, mode)``
        (K x rows and K x cols lane codes -> rows x cols result codes)."""
        raise NotImplementedError

    def combiner(self):
        """The `Combiner` for accumulation across RUNs, or None (RUN refuses to accumulate)."""
        return None

    # -- manifest, tests, units -----------------------------------------------------------------
    def formats(self):
        """Number-format descriptors for the manifest."""
        raise NotImplementedError

    def operands(self, m, n, k, *, kind, rng, mode=None):
        """Operand element codes (A: M x K, B: K x N) of a named workload kind (for ``mode``:
        e.g. values within that mode's precision)."""
        raise NotImplementedError

    def reference(self, a, b, *, k_split=None, mode=None):
        """Expected M x N result codes from a reference independent of the twin. ``k_split``:
        the K length of each RUN when K is split across accumulating RUNs."""
        raise NotImplementedError

    def operand_arrays(self, b):
        """The weight operand ``b`` as named arrays (to save a layer, `sim.workloads`)."""
        import numpy as np
        return {"codes": np.asarray(b)}

    def operand_from_arrays(self, arrays):
        """Inverse of `operand_arrays`."""
        return arrays["codes"]

    # -- host values <-> codes (the driver's ``raw=False`` path) ---------------------------------
    def encode(self, values, *, operand, name=None, mode=None):
        """Operand values -> element codes, refusing what the format cannot represent.

        Parameters
        ----------
        values : array_like
            Numbers, any shape (the ``tree`` engine's ternary weights: K x N).
        operand : {"a", "b"}
            ``"a"`` (activations) or ``"b"`` (weights).
        name : str, optional
            The tensor's name in the message (default: ``operand``).
        mode : str, optional
            The run-time mode whose precision applies (kinds with modes).

        Returns
        -------
        numpy.ndarray of uint64
            Element codes of the same shape, as `operands` makes them (the ``ternary`` kind's
            weights: a `tessera.sim.engines.tree.TernaryB`).

        Raises
        ------
        ValueError
            For the first value (in flat C order) outside the format (300 for int8, 0.5 for an
            integer kind, NaN where the format has none), with one line
            ``"<name>[<flat index>]: <value> is <why>; allowed: <range>"``. Nothing is wrapped;
            only float kinds round, by their format's rule.
        """
        raise NotImplementedError(f"pe.kind {self.name!r} has no value codec")

    def decode(self, codes, *, mode=None, operand=None):
        """Result codes (accumulator lanes, as `reference` returns them) -> values: int64 for
        integer kinds, float64 for float kinds, the kind's own result values otherwise.
        With ``operand`` (``"a"``/``"b"``): element codes of that operand -> the values
        `encode` takes (so ``decode(encode(v, operand=o), operand=o) == v`` where ``v`` is
        representable)."""
        raise NotImplementedError(f"pe.kind {self.name!r} has no value codec")

    def acc_bound(self, k, *, mode=None):
        """Accumulator overflow check for ``k`` products: ``(bound, limit)`` with ``bound`` the
        worst-case magnitude (an exact int, in result-code units) of a sum of ``k`` products
        of the kind's operands in ``mode`` and ``limit`` the largest magnitude the accumulator
        holds; None where it does not apply (float accumulation). ``bound > limit`` means the
        wrapping accumulator can overflow (the driver warns)."""
        return None

    def epilogue(self):
        """The kind's on-chip epilogue (bias, requantize, activation applied by the output
        stage on an output's last K chunk), or None when the kind has none."""
        return None

    def ptq_recipe(self):
        """The kind's post-training quantization recipe: a `tessera.sim.ptq.Recipe` subclass
        (`tessera.sim.ptq.quantize` instantiates it with the user's options), or None when the
        kind has none (``tessera infer`` then refuses a float model for it)."""
        return None

    def resources(self):
        """The `PEResources` floor of one PE for the FPGA fit estimate (`tessera.fpga.boards`).

        The default reads `formats`: a multiplier of the ``a`` and ``b`` formats' widths (an
        ``int`` format's ``bits``, a ``float`` format's ``man_bits + 1``; none when either is
        another format), and one LUT per result bit for the accumulator adder (20 per bit for
        a ``float`` accumulator, well under what an FP adder takes). A kind that knows better
        overrides it and names the source of each number (a measurement in
        ``benchmarks/results/``, or a conservative floor).
        """
        formats = self.formats()
        wa, wb = _multiplier_width(formats.get("a")), _multiplier_width(formats.get("b"))
        acc = formats.get("acc") if isinstance(formats.get("acc"), dict) else {}
        return PEResources(multiplier=(wa, wb) if wa and wb else None,
                           luts=self.result_bits * (20 if acc.get("kind") == "float" else 1))

    def regress_modes(self):
        """The modes the core regression runs every case in (``(None,)`` without modes)."""
        return self.modes or (None,)

    @classmethod
    def units(cls):
        """The `tessera unit` entries this kind contributes: `Unit`/`Option` of
        `tessera.generators.kinds.unitspec` (never import `tessera.generators.units`, which
        imports the kinds)."""
        return ()


@dataclass(frozen=True)
class EngineSection(_Section):
    """Base of the ``[array]`` sections: each engine parses its own keys (a frozen dataclass
    whose fields are the keys besides ``kind``, checked in ``__post_init__``)."""
    section: ClassVar[str] = "array"


class Engine:
    """Base of engines (one per ``array.kind``): HDL, argument layout, twin, geometry.

    Class attributes: ``name`` (the ``array.kind`` value), ``code`` (INFO engine code),
    ``Section`` (its `EngineSection`: the ``[array]`` keys).
    """
    name = ""
    code = 0
    Section = EngineSection

    def __init__(self, cfg):
        self.cfg = cfg

    @classmethod
    def accepts(cls, kind):
        """Whether PE kind ``kind`` (a `PEKind` class or instance) runs on this engine. The
        default asks the kind (`PEKind.engines`); an engine that composes existing kinds
        overrides it (e.g. every kind that runs on ``systolic``), so no kind file changes."""
        return cls.name in kind.engines

    def epilogue(self):
        """The epilogue this core builds into its output stage (the PE kind's, when the config
        asks for it), or None; INFO reports its capabilities."""
        return None

    def ptq_options(self):
        """Options this engine imposes on the PE kind's quantization recipe
        (`tessera.sim.ptq.quantize`), under the user's own: e.g. ``{"act_zero_point": 0}``
        for an engine that skips zero activations (a real 0 must then be code 0). Default:
        none."""
        return {}

    #: The layer types (`tessera.sim.layers` class names) this engine runs on chip; the
    #: driver's `run_layer` refuses others (pooling, activations and flatten run on the host).
    layer_types = ()

    def layer_mapper(self):
        """The host-side mapper from a layer to RUNs: an object with
        ``async run(driver, layer, x_codes, w_codes, *, progress=None, mode=None)`` that
        returns ``(result codes, stats)``. GEMM engines share
        `tessera.sim.lowering.GemmLowering` (im2col on the host side of the mapper)."""
        from tessera.sim.lowering import GemmLowering
        return GemmLowering(self.cfg)

    def layer_cases(self, *, quick=False):
        """The regression's layer cases for this engine (`tessera.sim.lowering.layer_cases`
        derives them from the geometry for GEMM engines)."""
        from tessera.sim.lowering import layer_cases
        return layer_cases(self.cfg, quick=quick)

    def layer_operands(self, layer, in_shape, *, kind="random", seed=0, mode=None):
        """Input and weight codes of a regression layer case (`tessera.sim.lowering.
        layer_operands`: drawn by the PE kind's operand generator)."""
        from tessera.sim.lowering import layer_operands
        return layer_operands(self.cfg, layer, in_shape, kind=kind, seed=seed, mode=mode)

    def layer_reference(self, layer, x_codes, w_codes, *, k_split=None, mode=None):
        """Expected result codes of ``layer`` from a reference independent of the mapper:
        `tessera.sim.layers.reference_codes` (direct convolution over the padded input)."""
        from tessera.sim.layers import reference_codes
        return reference_codes(self.cfg.pe, layer, x_codes, w_codes, k_split=k_split, mode=mode)

    def geometry(self):
        """The `tessera.hdl.ctrl.memmap.Geometry` of the core."""
        raise NotImplementedError

    def pe_count(self):
        """How many PEs the FPGA fit estimate counts (each at the kind's `PEKind.resources`):
        by default ``rows x cols`` of the geometry (systolic: the array; tree: inputs x
        outputs leaves, or the inputs rows of run-length weights)."""
        return self.cfg.rows * self.cfg.cols

    def check(self):
        """Raise `ConfigError` (naming key, value, allowed) for a config this engine cannot run,
        e.g. stores that cannot hold one tile (the config has already checked that the PE
        kind runs on this engine: `PEKind.engines`)."""

    def ideal_cycles(self, a, b, mode=None):
        """The cycles a layer ``a @ b`` would take at the engine's peak rate (the measure of
        utilization): MACs / `macs_per_cycle`."""
        m, k = a.shape
        return m * b.shape[1] * k / self.macs_per_cycle(mode)

    def k_capacity(self, mode=None):
        """The longest K (elements) one RUN can hold; longer K is split over accumulating
        RUNs (the regression's long-K cases go past it)."""
        raise NotImplementedError

    def args(self):
        """The `tessera.hdl.ctrl.protocol.ArgLayout` of this engine's RUN arguments."""
        raise NotImplementedError

    def make_hdl(self):
        """A new HDL engine component (see `tessera.hdl.engine`)."""
        raise NotImplementedError

    def twin(self):
        """The golden twin (see `tessera.sim.engines`): ``check(args)``, ``run(stores, args)``
        (returns cycles), ``perf(args)`` and ``check_cycles``."""
        raise NotImplementedError

    def mapper(self):
        """The host-side mapper: ``async gemm(driver, a, b, progress=, mode=)`` (or the layer
        operation the engine computes), blocking work into RUNs."""
        raise NotImplementedError

    def perf_model(self):
        """The engine's part of the performance model (`tessera.sim.perf.predict`): a function
        ``(cfg, acc, proto, layer, in_shape, item, *, mode, epilogue, density)`` that counts a
        layer's RUNs in closed form into ``acc`` and their host messages into ``proto``, and
        returns None or the layer's plan (what it derived from the data, e.g. run-length
        entries), which `predict` hands to the `overlap_model` as ``plan``."""
        raise NotImplementedError

    def overlap_model(self):
        """The engine's ping-pong time for `tessera.sim.perf.predict`, or None when its
        mapper never overlaps RUNs: a function ``(cfg, lt, proto, layer, in_shape, *, mode,
        epilogue, plan)`` returning ``(seconds, serial link seconds)`` of a layer the mapper runs
        ping-pong (``lt``: the link's per-message times, ``proto``: message sizes; see
        `tessera.sim.engines.gemm_os_perf.overlap_seconds`)."""
        return None

    def timing(self):
        """Manifest ``timing``: the cycle model as an expression tree plus the ideal rate."""
        raise NotImplementedError
