"""Analytic performance model: cycles and link time of a layer or a network, in closed form.

`predict(layer_or_network, cfg)` answers what a layer costs on a core without running a
schedule: the engine's host mapper decides how a layer becomes RUNs (blocking to fit the
stores, K split over accumulating RUNs), and each RUN's busy cycles follow from the engine's
pipeline in closed form. Both are counted, never walked: a layer's RUNs fall into at most a
few distinct shapes (full blocks and the ragged last block of M, N and K), so the sum over RUNs
is a sum over those shapes times their multiplicities.

Per RUN, by engine (docs/perf.md derives each term):

``systolic`` (output-stationary GEMM, every PE kind)
    ``check + tiles*k*ii + (tiles-1)*(max(k*ii, R, C) - k*ii) + (lat + C + R + 3 - ii)
    + acc*comb + epi*epi_lat`` with ``tiles = m_tiles*n_tiles``, ``k`` in words,
    ``check = CHECK_CYCLES + 1``, ``lat``/``ii`` the PE kind's latency and the RUN mode's
    initiation interval, ``comb`` the combiner's latency (accumulating RUNs), ``epi_lat`` the
    epilogue's (the RUN of an output's last K chunk on a core with an epilogue).
``tree``, dense weights
    ``START + m*n_tiles*k + (m*n_tiles-1)*(max(k, O) - k) + (tree_lat + O + 5)
    + acc*comb + epi*epi_lat``.
``tree``, run-length weights
    ``START + m_tiles*entries + m_tiles + (P + 6) + acc*comb + epi*epi_lat``: one decode step
    per entry and one END step per m-tile (the host encoder gives every row at least ``P``
    entries, so the scaler never stalls the decoder). ``entries`` is data-dependent: it is
    counted from the weights by a vector op (`rle_row_entries`), never by encoding a stream.
``feie``
    The engine's own plan and closed form: `tessera.sim.engines.feie.plan_conv` (the
    mapper's RUN blocks) with `tessera.sim.engines.feie.predict` per RUN, fed the non-zero
    activations per output row and sub-position chunk, counted from the input by a vector op
    (`feie_row_nonzeros`).

Host transfers: the bytes of every WRITE, READ, RUN and STATUS the mapper sends and receives,
and, given a `Link`, their line time (framing overhead per frame and acknowledgement, 10 line
bits per byte). The byte counts follow the protocol table (`tessera.hdl.ctrl.protocol`: RUN's
header, ``STATUS_BYTES``) and are exact for one STATUS poll per wait (the golden core's case:
it is never busy when polled; the RTL harness polls every ``poll_cycles`` and sends more).

Two schedules, in every engine's mapper (`GemmMapper.gemm`, the tree engine's
`DenseMapper.gemm` and `RleMapper.gemm`, `FeieLowering.conv`):

sequential
    Per RUN: its operand WRITEs (A and B; the tree engine's A and W, S and P per group; the
    FEIE engine's W and A), RUN, STATUS polls until idle (one assumed); per block READ. A
    layer's time is ``compute_s + link_s`` (the RUN's answer counted after its cycles: the
    virtual board's convention, `tessera.sim.framing.GoldenPipe`).
ping-pong
    When every store the mapper writes and every result store has two banks and the driver
    allows it (the mapper's ``overlaps`` with ``overlap=True``; weights not resident in B:
    residency is not modelled here; the bank placement is `tessera.sim.pingpong.PingPong`),
    each RUN is sent while the one before executes (the core holds it and answers when it
    starts) and the host writes the next operands and reads the previous block's results
    meanwhile. The messages are the same ones in another order (one STATUS per RUN after the
    first, plus the final wait's one poll: one per RUN again), so the bytes do not change.
    The time is, per GEMM (or convolution),
    ``head + sum over RUNs of max(cycles_i / clock, o_i) + tail``: ``head`` the first RUN's
    WRITEs and command; ``o_i`` the host work while RUN i executes (RUN i's answer, the
    STATUS, the previous block's READ after a block's first RUN, the next RUN's WRITEs and
    its command); ``tail`` the final wait's one poll (sent when the last RUN completes) and
    the last block's READ. Each engine gives the sum (its ``overlap_model``:
    `gemm_os_perf.overlap_seconds`, `tree_perf.overlap_seconds`,
    `feie_perf.overlap_seconds`) in closed form over block classes (full and ragged blocks
    and their neighbours, K chunks; FEIE and run-length weights: vectors over the plan the
    engine derived from the data), not a walk over the RUNs; it equals the replayed timeline
    of the driver's messages (systolic and tree: to 1e-9; FEIE: within its cycle model's
    error, 0.19 % worst in `tests/test_feie_pingpong.py`).
    ``serial_link_s = head + tail`` is the link time no RUN hides.

``LayerPrediction.seconds`` is the ping-pong time when the layer overlaps (``overlapped``) and
``compute_s + link_s`` otherwise (``sequential_s`` always).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from tessera.hdl.ctrl.protocol import STATUS_BYTES, Op, command

__all__ = ["predict", "Link", "LayerPrediction", "Prediction", "TERMS", "rle_row_entries",
           "feie_row_nonzeros"]

#: The per-term breakdown of cycles every prediction carries (they sum to ``cycles``).
TERMS = ("check", "compute", "bubbles", "fill_drain", "combiner", "epilogue")



@dataclass(frozen=True)
class Link:
    """A host link: ``baud`` (line bits per second, 10 per byte), ``max_payload`` (bytes per
    frame of the framed link, docs/link.md; None for a raw byte stream), ``window`` (bytes the
    sender has in flight before it waits for an acknowledgement: the receiver's buffer, 1024
    on the board tops), ``clock_hz`` (the core's clock, to turn cycles into seconds; default
    the config's ``core.clock_mhz``).

    A framed message (one command, or one response) of ``n`` payload bytes costs
    ``n + ceil(n / max_payload) * 10`` line bytes (header 8 and payload CRC 2 per frame) plus
    ``ceil(n / window)`` 8-byte acknowledgement frames from the other side (the receiver
    acknowledges what one exchange delivered). On a framed link the board top's own cycles
    count too (``gather``, `turnaround_cycles`)."""
    baud: float
    max_payload: int | None = 256
    window: int = 1024
    clock_hz: float | None = None
    gather: int = 64

    def turnaround_cycles(self, commands, replies):
        """The board top's cycles besides the line and the RUNs (framed link only): each
        command frame's payload reaches the core 3 cycles after its last CRC byte, one byte per
        cycle, and each non-empty answer waits ``gather`` quiet cycles before it goes out
        (`tessera.hdl.io.framing.FramedLink`; the golden virtual board counts the same)."""
        if self.max_payload is None:
            return 0
        cmd = np.asarray(commands, dtype=np.int64)
        rep = np.asarray(replies, dtype=np.int64)
        return int(cmd.sum() + 3 * (-(-cmd // self.max_payload)).sum()
                   + self.gather * (rep > 0).sum())

    @classmethod
    def for_config(cls, cfg, *, max_payload=256, window=1024):
        """The link a config's ``[host]`` section describes (its baud, framed; 115200 where
        the config names none)."""
        baud = getattr(cfg.host, "baud", None) or 115200
        return cls(baud=float(baud), max_payload=max_payload, window=window)

    def wire_bytes(self, messages):
        """Line bytes of ``messages`` (an array of payload byte counts, one per message)."""
        msgs = np.asarray(messages, dtype=np.int64)
        if self.max_payload is None:
            return int(msgs.sum())
        frames = -(-msgs // self.max_payload)
        acks = -(-msgs // self.window)
        return int(msgs.sum() + frames.sum() * 10 + acks.sum() * 8)


@dataclass
class LayerPrediction:
    """The model's answer for one layer: ``cycles`` (the RUNs' busy cycles, as the core's
    STATUS counts them), ``terms`` (``TERMS`` -> cycles, summing to ``cycles``), ``runs``,
    ``bytes_to_core``/``bytes_from_core`` (payload bytes over the host link), ``wire_bytes``,
    ``link_s``/``link_cycles``/``compute_s`` (with a link), ``where`` (``"core"`` or
    ``"host"``), ``overlapped`` (the mapper runs the layer ping-pong on banked stores),
    ``seconds`` (the layer's time on the link: overlapped or sequential), ``sequential_s``
    (compute plus link) and ``serial_link_s`` (the link time no RUN hides)."""
    index: int
    layer: object
    in_shape: tuple
    mode: object = None
    epilogue: bool = False
    where: str = "core"
    runs: int = 0
    cycles: int = 0
    terms: dict = field(default_factory=lambda: dict.fromkeys(TERMS, 0))
    bytes_to_core: int = 0
    bytes_from_core: int = 0
    messages: list = field(default_factory=list, repr=False)
    wire_bytes: int | None = None
    link_s: float | None = None
    compute_s: float | None = None
    clock_hz: float | None = None
    overlapped: bool = False
    #: The ping-pong schedule's time (overlapped layers, with a link).
    overlap_s: float | None = None
    #: Link time no RUN overlaps (with a link): all of it sequentially; with ping-pong the
    #: head (first tiles and RUN command) and tail (final poll, last READ) of each GEMM.
    serial_link_s: float | None = None

    @property
    def link_cycles(self):
        """The link time in core clock cycles (None without a link)."""
        return None if self.link_s is None else self.link_s * self.clock_hz

    @property
    def sequential_s(self):
        """Compute plus link time (one RUN after another), or None without a link."""
        if self.link_s is None:
            return None
        return self.compute_s + self.link_s

    @property
    def seconds(self):
        """The layer's time on the link: the ping-pong schedule's when the layer overlaps,
        else `sequential_s`; None without a link."""
        if self.link_s is None:
            return None
        return self.overlap_s if self.overlapped else self.sequential_s

    def as_dict(self):
        lt = self.layer.type if hasattr(self.layer, "type") else str(self.layer)
        return {"index": self.index, "layer": lt, "in_shape": list(self.in_shape),
                "mode": self.mode, "epilogue": self.epilogue, "where": self.where,
                "runs": self.runs, "cycles": self.cycles, "terms": dict(self.terms),
                "bytes_to_core": self.bytes_to_core, "bytes_from_core": self.bytes_from_core,
                "wire_bytes": self.wire_bytes, "link_s": self.link_s,
                "link_cycles": self.link_cycles, "compute_s": self.compute_s,
                "overlapped": self.overlapped, "seconds": self.seconds,
                "sequential_s": self.sequential_s, "serial_link_s": self.serial_link_s}


@dataclass
class Prediction:
    """The model's answer for a layer or a network: ``layers`` (`LayerPrediction` each) and
    their totals; ``model_s``: the wall time the model took."""
    layers: list
    model_s: float = 0.0

    @property
    def cycles(self):
        return sum(p.cycles for p in self.layers)

    @property
    def runs(self):
        return sum(p.runs for p in self.layers)

    @property
    def terms(self):
        return {t: sum(p.terms[t] for p in self.layers) for t in TERMS}

    @property
    def bytes_to_core(self):
        return sum(p.bytes_to_core for p in self.layers)

    @property
    def bytes_from_core(self):
        return sum(p.bytes_from_core for p in self.layers)

    @property
    def link_s(self):
        if any(p.link_s is None for p in self.layers):
            return None
        return sum(p.link_s for p in self.layers)

    @property
    def link_cycles(self):
        if any(p.link_s is None for p in self.layers):
            return None
        return sum(p.link_cycles for p in self.layers)

    @property
    def compute_s(self):
        if any(p.compute_s is None for p in self.layers):
            return None
        return sum(p.compute_s for p in self.layers)

    @property
    def overlapped_layers(self):
        """How many layers run ping-pong."""
        return sum(p.overlapped for p in self.layers)

    @property
    def sequential_s(self):
        if self.link_s is None:
            return None
        return self.compute_s + self.link_s

    @property
    def serial_link_s(self):
        if self.link_s is None:
            return None
        return sum(p.serial_link_s for p in self.layers)

    @property
    def seconds(self):
        """The layers' `LayerPrediction.seconds` summed (layers do not overlap each other)."""
        if self.link_s is None:
            return None
        return sum(p.seconds for p in self.layers)

    def as_dict(self):
        return {"cycles": self.cycles, "runs": self.runs, "terms": self.terms,
                "bytes_to_core": self.bytes_to_core, "bytes_from_core": self.bytes_from_core,
                "link_s": self.link_s, "link_cycles": self.link_cycles,
                "compute_s": self.compute_s, "seconds": self.seconds,
                "sequential_s": self.sequential_s, "serial_link_s": self.serial_link_s,
                "overlapped_layers": self.overlapped_layers,
                "model_s": self.model_s, "layers": [p.as_dict() for p in self.layers]}


# -- counting helpers -----------------------------------------------------------------------
def _split(total, size):
    """Pieces of ``total`` cut into ``size``: [(piece, count)], at most two entries."""
    if total <= 0:
        return []
    out = [(size, total // size)] if total >= size else []
    if total % size:
        out.append((total % size, 1))
    return out


def _k_chunks(total, size, epilogue):
    """K chunks of an output: [(words, accumulate, epilogue, count)]: the first chunk writes,
    the later ones accumulate, the last one applies the epilogue."""
    n = -(-total // size)
    last = total - (n - 1) * size
    if n == 1:
        return [(total, 0, int(epilogue), 1)]
    out = [(size, 0, 0, 1)]
    if n > 2:
        out.append((size, 1, 0, n - 2))
    out.append((last, 1, int(epilogue), 1))
    return out


def _blocked(total, run, block):
    """RUN sizes when ``total`` is cut into blocks of ``block`` and each block into RUNs of
    ``run`` (the tree mappers' row blocks): [(size, count)]."""
    out = {}
    for bsz, bn in _split(total, block):
        for rsz, rn in _split(bsz, run):
            out[rsz] = out.get(rsz, 0) + rn * bn
    return list(out.items())


class _Acc:
    """Accumulates RUN terms and host messages for one layer."""

    def __init__(self, pred):
        self.p = pred

    def run(self, count, **terms):
        if count <= 0:
            return
        self.p.runs += count
        for k, v in terms.items():
            self.p.terms[k] += count * v
        self.p.cycles += count * sum(terms.values())

    def send(self, nbytes, count=1, *, reply=1):
        """``count`` commands of ``nbytes`` to the core, each answered by ``reply`` bytes."""
        if count <= 0:
            return
        self.p.bytes_to_core += count * nbytes
        self.p.bytes_from_core += count * reply
        self.p.messages.append((nbytes, count))
        self.p.messages.append((reply, count))


def _cmd_bytes(cfg):
    w = 1 + command(Op.WRITE).args.nbytes
    r = 1 + command(Op.READ).args.nbytes
    run = 1 + command(Op.RUN).args.nbytes + cfg.engine.args().nbytes
    return w, r, run


class _Proto:
    """Bytes of the driver's commands on this core (`tessera.sim.driver.TesseraDriver`)."""

    def __init__(self, cfg, acc):
        self.acc = acc
        self.wb = {s.name: s.word_bytes for s in cfg.geometry.stores}
        self.w, self.r, self.runb = _cmd_bytes(cfg)

    def write(self, store, words, count=1):
        self.acc.send(self.w + words * self.wb[store], count)

    def read(self, store, words, count=1):
        self.acc.send(self.r, count, reply=1 + words * self.wb[store])

    def run(self, count=1):
        """RUN (one status byte back) and one STATUS (``STATUS_BYTES`` back): the one poll of
        the sequential schedule's wait, or, ping-pong, the STATUS after each later RUN and the
        final wait's one poll (the same count per GEMM)."""
        self.acc.send(self.runb, count)
        self.acc.send(1, count, reply=STATUS_BYTES)

    # (command, reply) payload bytes of one message, for the overlap schedule
    def write_msg(self, store, words):
        return self.w + words * self.wb[store], 1

    def read_msg(self, store, words):
        return self.r, 1 + words * self.wb[store]

    def run_msg(self):
        return self.runb, 1

    @staticmethod
    def status_msg():
        return 1, STATUS_BYTES


# -- ping-pong schedule ---------------------------------------------------------------------
class _OverlapDriver:
    """What a mapper's ``overlaps`` asks of a driver: one that allows overlap (the default
    `TesseraDriver`); weights are never resident here (`predict` does not model residency)."""
    overlap = True
    resident = False


def _overlaps(cfg, layer, overlap, epilogue):
    """Whether the engine's mapper runs ``layer`` ping-pong (its ``overlaps``)."""
    from tessera.sim.layers import CHIP_TYPES
    if not overlap or layer.type not in CHIP_TYPES:
        return False
    mapper = cfg.engine.mapper()
    ask = getattr(mapper, "overlaps", None)
    if ask is None or not ask(_OverlapDriver(), epilogue=epilogue, resident=False):
        return False
    if cfg.engine.overlap_model() is None:
        raise NotImplementedError(f"predict: the {type(mapper).__name__} overlaps RUNs and "
                                  f"its engine has no overlap model (overlap_model())")
    return True


def _neighbours(runs):
    """``{(prev, cur, next): count}`` over the positions of a sequence given as runs
    ``[(value, length)]`` (None past either end), counted in closed form: only the first and
    last position of each run can see another value."""
    total = sum(n for _, n in runs)
    starts = np.cumsum([0] + [n for _, n in runs])

    def at(i):
        if i < 0 or i >= total:
            return None
        return runs[int(np.searchsorted(starts, i, side="right")) - 1][0]
    out = {}
    for s0, (x, n) in zip(starts, runs):
        for i in {int(s0), int(s0) + n - 1}:
            key = (at(i - 1), at(i), at(i + 1))
            out[key] = out.get(key, 0) + 1
        if n > 2:
            out[(x, x, x)] = out.get((x, x, x), 0) + n - 2
    return out


class _LinkTime:
    """Seconds of one message on a link, split at the core: ``q`` (the command until the core
    has it) and ``r`` (the answer from when the core gives it); ``q + r`` summed over a
    layer's messages is its ``link_s``."""

    def __init__(self, link, clk):
        self.link, self.clk = link, clk
        self._q, self._r = {}, {}

    def q(self, n):
        if n not in self._q:
            self._q[n] = (self.link.wire_bytes([n]) * 10.0 / self.link.baud
                          + self.link.turnaround_cycles([n], [0]) / self.clk)
        return self._q[n]

    def r(self, n):
        if n not in self._r:
            self._r[n] = (self.link.wire_bytes([n]) * 10.0 / self.link.baud
                          + self.link.turnaround_cycles([0], [n]) / self.clk)
        return self._r[n]

    def rt(self, msg):
        return self.q(msg[0]) + self.r(msg[1])



# -- front end ------------------------------------------------------------------------------
def _items(obj, input_shape, mode, epilogue, x, w, batch):
    """Normalize what `predict` was given into dicts (layer, in_shape, mode, epilogue, x, w)."""
    from tessera.sim.layers import layer_from_dict
    from tessera.sim.qnet import QNet
    if isinstance(obj, QNet):
        shape = (batch, *obj.input_shape)
        out = []
        for ql in obj.layers:
            out.append({"layer": ql.layer, "in_shape": shape, "mode": ql.mode,
                        "epilogue": ql.epilogue is not None, "w": ql.w, "values": True})
            shape = ql.layer.out_shape(shape)
        return out
    if isinstance(obj, dict) and "layer" in obj:
        return [dict(obj)]
    if isinstance(obj, dict):
        obj = layer_from_dict(obj)
    if isinstance(obj, (list, tuple)) and obj and not hasattr(obj, "type"):
        if len(obj) == 2 and hasattr(obj[0], "type") and not hasattr(obj[1], "type") \
                and not isinstance(obj[1], dict):
            return [{"layer": obj[0], "in_shape": tuple(obj[1]), "mode": mode,
                     "epilogue": epilogue, "x": x, "w": w}]
        out = []
        for item in obj:
            out += _items(item, None, mode, epilogue, None, None, batch)
        return out
    if input_shape is None:
        raise ValueError(f"predict: {type(obj).__name__} needs input_shape= (or pass "
                         f"(layer, input_shape) pairs)")
    return [{"layer": obj, "in_shape": tuple(input_shape), "mode": mode,
             "epilogue": epilogue, "x": x, "w": w}]


def _layer(cfg, idx, item, link, density, overlap=True):
    from tessera.sim.layers import CHIP_TYPES, layer_from_dict
    layer = item["layer"]
    if isinstance(layer, dict):
        layer = layer_from_dict(layer)
    shape = tuple(int(s) for s in item["in_shape"])
    mode = item.get("mode")
    want_epi = bool(item.get("epilogue")) and cfg.engine.epilogue() is not None
    pred = LayerPrediction(idx, layer, shape, mode=mode, epilogue=want_epi)
    if layer.type not in CHIP_TYPES:
        pred.where = "host"
        if link is not None:
            pred.wire_bytes, pred.link_s, pred.compute_s = 0, 0.0, 0.0
            pred.serial_link_s = 0.0
            pred.clock_hz = link.clock_hz or cfg.core.clock_mhz * 1e6
        return pred
    acc = _Acc(pred)
    proto = _Proto(cfg, acc)
    plan = cfg.engine.perf_model()(cfg, acc, proto, layer, shape, item, mode=mode,
                                   epilogue=want_epi, density=density)
    pred.overlapped = _overlaps(cfg, layer, overlap, want_epi)
    if link is not None:
        clk = link.clock_hz or cfg.core.clock_mhz * 1e6
        msgs = np.repeat([b for b, _ in pred.messages], [c for _, c in pred.messages])
        pred.wire_bytes = link.wire_bytes(msgs)
        # messages alternate: a command, its answer
        turn = link.turnaround_cycles(
            np.repeat([b for b, _ in pred.messages[0::2]], [c for _, c in pred.messages[0::2]]),
            np.repeat([b for b, _ in pred.messages[1::2]], [c for _, c in pred.messages[1::2]]))
        pred.link_s = pred.wire_bytes * 10.0 / link.baud + turn / clk
        pred.compute_s = pred.cycles / clk
        pred.clock_hz = clk
        pred.serial_link_s = pred.link_s
        if pred.overlapped:
            schedule = cfg.engine.overlap_model()
            pred.overlap_s, pred.serial_link_s = schedule(
                cfg, _LinkTime(link, clk), proto, layer, shape, mode=mode, epilogue=want_epi,
                plan=plan)
    return pred


def predict(layer_or_network, cfg, *, link=None, input_shape=None, mode=None, epilogue=False,
            x=None, w=None, density=None, batch=1, overlap=True):
    """Predicted cycles (and link time) of a layer or a network on the core ``cfg`` describes.

    Parameters
    ----------
    layer_or_network
        A layer (`tessera.sim.layers`, with ``input_shape``), a ``(layer, input_shape)``
        pair, a dict ``{"layer", "in_shape", "mode", "epilogue", "x", "w", "density"}``, a
        list of those (a network), or a `tessera.sim.qnet.QNet` (its layers at ``batch``).
    cfg : CoreConfig
    link : Link, optional
        The host link: adds line bytes and seconds per layer.
    mode : str, optional
        The RUN mode (kinds with modes).
    epilogue : bool
        The layer's outputs go through the core's epilogue (cores that build one).
    x, w : array_like, optional
        Operand codes for the data-dependent engines: the input activations (``feie``: the
        non-zero pixels per row are counted) and the ternary weights (``tree`` with run-length
        weights: K x N codes or a `TernaryB`; non-zeros and zero runs are counted).
    density : float, optional
        Non-zero fraction to assume where ``x``/``w`` are not given (``feie``: 1.0; run-length
        weights: 2/3).
    overlap : bool
        The driver's ``overlap`` (`TesseraDriver`, default True): layers whose mapper then
        runs ping-pong on banked stores get the overlapped time (``seconds``). Weights are
        taken as not resident in B (residency is not modelled).

    Returns
    -------
    Prediction
    """
    t0 = time.perf_counter()
    items = _items(layer_or_network, input_shape, mode, epilogue, x, w, batch)
    layers = [_layer(cfg, i, it, link, density, overlap) for i, it in enumerate(items)]
    return Prediction(layers, model_s=time.perf_counter() - t0)


def __getattr__(name):
    # The engines' vector counters, where callers found them before they moved to the engines.
    if name == "rle_row_entries":
        from tessera.sim.engines.tree_perf import rle_row_entries
        return rle_row_entries
    if name == "feie_row_nonzeros":
        from tessera.sim.engines.feie_perf import feie_row_nonzeros
        return feie_row_nonzeros
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
