"""From layers to RUNs: the host side of a GEMM engine, and the driver's `run_layer`.

`GemmLowering` is the layer mapper every GEMM engine shares (`Engine.layer_mapper`): a `Dense`
layer is one GEMM; a `Conv2d` layer is lowered by im2col on the host (each output pixel's
window becomes a row of A, the OIHW weights become B, one GEMM per group, so a depthwise layer
is ``in_channels`` small GEMMs) and the engine's own GEMM mapper blocks each GEMM into RUNs.

`run_layer` is what `TesseraDriver.run_layer` calls: values in (checked by the PE kind's
codec, `PEKind.encode`), result values out (`PEKind.decode`), or codes both ways with
``raw=True``; host layers (pooling, activations, flatten) run in NumPy.

`layer_cases` and `layer_operands` give the regression its layer cases; the expected results
come from `tessera.sim.layers.reference_codes`, which shares no code with this module.
"""

import warnings
from dataclasses import dataclass, field

import numpy as np

from tessera.sim.layers import (CHIP_TYPES, Conv2d, Dense, LayerError, apply_host,
                                layer_from_dict, weight_columns)


__all__ = ["GemmLowering", "LayerStats", "run_layer", "layer_cases", "layer_operands",
           "case_bias", "requant_params",
           "im2col", "AccumulatorWarning", "LayerError"]


class AccumulatorWarning(UserWarning):
    """The accumulator may overflow on this layer's K (the worst case exceeds its range)."""


@dataclass
class LayerStats:
    """What a layer cost on the core.

    ``runs``/``cycles``/``run_cycles``: RUN commands and engine cycles (host transfers
    excluded); ``gemms``: the GEMM shapes (M, N, K) the layer became; ``ideal_cycles``: the
    engine's peak-rate bound for those GEMMs; ``macs``: the layer's useful MACs; ``k_split``:
    the K (elements) of each accumulating RUN piece; ``bytes_out``/``bytes_in``: host bytes
    sent to and received from the core during the layer; ``where``: ``"core"`` or ``"host"``;
    ``counters``: the core's COUNTERS over the layer (`tessera.sim.driver.Counters`), when the
    driver counts causes, else None.
    """
    runs: int = 0
    cycles: int = 0
    run_cycles: list = field(default_factory=list)
    gemms: list = field(default_factory=list)
    ideal_cycles: float = 0.0
    macs: int = 0
    k_split: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    where: str = "core"
    counters: object = None

    @property
    def utilization(self):
        return self.ideal_cycles / self.cycles if self.cycles else None

    def as_dict(self):
        return {"where": self.where, "runs": self.runs, "cycles": self.cycles,
                "ideal_cycles": self.ideal_cycles, "utilization": self.utilization,
                "macs": self.macs, "gemms": [list(g) for g in self.gemms],
                "k_split": self.k_split, "bytes_to_core": self.bytes_out,
                "bytes_from_core": self.bytes_in,
                "counters": None if self.counters is None else self.counters.as_dict()}


def im2col(x, layer, g):
    """Rows of A for group ``g`` of a convolution: (N*OH*OW) x (C/g*KH*KW) codes, in
    (c, kh, kw) order, built with a strided window view of the zero-padded input."""
    from numpy.lib.stride_tricks import sliding_window_view
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
    cg = layer.in_channels // layer.groups
    xs = np.pad(x[:, g * cg:(g + 1) * cg], ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, _, oh, ow = layer.out_shape(x.shape)
    win = sliding_window_view(xs, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :oh, :ow]
    # win: N x Cg x OH x OW x KH x KW -> (N, OH, OW) x (Cg, KH, KW)
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, cg * kh * kw)


class GemmLowering:
    """Layer mapper of a GEMM engine: `Dense` -> one GEMM, `Conv2d` -> im2col GEMMs."""

    def __init__(self, cfg):
        self.cfg = cfg

    def resident_words(self, layer, in_shape, *, mode=None, epilogue=False):
        """Words of B that keep ``layer``'s whole weight matrix on chip (written once per
        network run by a resident driver), or None (its GEMM does not fit that way, or a
        grouped convolution, whose groups share B)."""
        from tessera.sim.engines.gemm_os import GemmMapper
        gemms = self.gemms(layer, in_shape)
        if len(gemms) != 1:
            return None
        m, n, k = gemms[0]
        k_words = -(-k // self.cfg.pe.layout(mode).k_per_word)
        return GemmMapper(self.cfg).resident_words(m, n, k_words, epilogue=epilogue)

    def gemms(self, layer, in_shape):
        """The (M, N, K) GEMMs ``layer`` becomes on an input of ``in_shape``."""
        if isinstance(layer, Dense):
            layer.out_shape(in_shape)
            return [(in_shape[0], layer.out_features, layer.in_features)]
        n, o, oh, ow = layer.out_shape(in_shape)
        return [(n * oh * ow, o // layer.groups, layer.gemm_k())] * layer.groups

    async def run(self, drv, layer, x_codes, w_codes, *, progress=None, mode=None,
                  epilogue=None):
        """Run ``layer`` on codes; returns (result codes, `LayerStats`). ``epilogue``: the
        engine's on-chip epilogue parameters (per-output-channel arrays are cut per group)."""
        pe, engine = self.cfg.pe, self.cfg.engine
        stats = LayerStats()
        x = np.asarray(x_codes, dtype=np.uint64)

        async def gemm(a, b, epi=None):
            out, st = await drv.gemm(a, b, progress=progress, mode=mode, epilogue=epi)
            stats.runs += st.runs
            stats.cycles += st.cycles
            stats.run_cycles += st.run_cycles
            stats.k_split = st.k_split
            stats.gemms.append((a.shape[0], b.shape[1], a.shape[1]))
            stats.ideal_cycles += engine.ideal_cycles(a, b, mode)
            return out

        if isinstance(layer, Dense):
            layer.out_shape(x.shape)
            out = await gemm(x, w_codes, epilogue)
            stats.macs = layer.macs(x.shape)
            return out, stats
        n, o, oh, ow = layer.out_shape(x.shape)
        arrays = pe.operand_arrays(w_codes)
        og = o // layer.groups
        out = np.zeros((n, o, oh, ow), dtype=np.uint64)
        for g in range(layer.groups):
            a = im2col(x, layer, g)
            b = pe.operand_from_arrays(weight_columns(arrays, layer, g))
            epi = None if epilogue is None else {
                k: (np.asarray(v)[g * og:(g + 1) * og] if np.ndim(v) == 1 else v)
                for k, v in epilogue.items()}
            res = np.asarray(await gemm(a, b, epi), dtype=np.uint64)
            out[:, g * og:(g + 1) * og] = res.reshape(n, oh, ow, og).transpose(0, 3, 1, 2)
        stats.macs = layer.macs(x.shape)
        return out, stats


class _Counting:
    """A transport wrapper that counts the bytes each way."""

    def __init__(self, inner):
        self.inner, self.sent, self.received = inner, 0, 0

    async def send(self, data):
        self.sent += len(data)
        await self.inner.send(data)

    async def recv(self, n):
        data = await self.inner.recv(n)
        self.received += len(data)
        return data

    async def idle(self, cycles):
        return await self.inner.idle(cycles)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _weight_shape_check(layer, w, pe):
    arrays = pe.operand_arrays(w)
    shape = np.shape(arrays["codes"])
    if isinstance(layer, Dense):
        want = [layer.weight_shape]
    else:
        want = [layer.weight_shape, (layer.gemm_k(), layer.out_channels)]
    if tuple(shape) not in want:
        raise LayerError(f"{layer.type}: weights of shape {tuple(shape)}; expected "
                         f"{' or '.join(str(s) for s in want)}")


async def run_layer(drv, layer, x, w=None, bias=None, *, raw=False, mode=None, progress=None,
                    epilogue=None):
    """Run ``layer`` through driver ``drv``; returns (output, `LayerStats`).

    ``x`` and ``w`` are values (``raw=False``: encoded by the PE kind, which refuses what the
    format cannot hold) or element codes (``raw=True``). `Dense` and `Conv2d` run on the core
    through the engine's layer mapper; their output is result values (the kind's `decode` of
    the accumulator codes; codes with ``raw=True``), with ``bias`` (one value per output
    channel) added on the host in the value domain. Other layers run on the host on values.
    ``epilogue``: on-chip requantization parameters, for cores whose PE kind has an epilogue.
    """
    cfg = drv.cfg
    if isinstance(layer, dict):
        layer = layer_from_dict(layer)
    if layer.type not in CHIP_TYPES:
        out = apply_host(layer, x)
        return out, LayerStats(where="host")
    if cfg is None:
        raise RuntimeError("run_layer needs the core's config (TesseraDriver(transport, cfg))")
    engine, pe = cfg.engine, cfg.pe
    if layer.type not in engine.layer_types:
        raise LayerError(f"{layer.type}: the {engine.name} engine does not run it; it runs "
                         f"{', '.join(engine.layer_types) or 'no layers'}")
    if w is None:
        raise LayerError(f"{layer.type}: weights are required")
    x = np.asarray(x) if not hasattr(x, "shape") else x
    layer.out_shape(np.shape(x))
    if raw:
        xc, wc = np.asarray(x, dtype=np.uint64), w
    else:
        xc = pe.encode(np.asarray(x), operand="a", name="x", mode=mode)
        wc = pe.encode(w, operand="b", name="w", mode=mode)
    _weight_shape_check(layer, wc, pe)
    bound = pe.acc_bound(layer.gemm_k(), mode=mode) if hasattr(pe, "acc_bound") else None
    if bound is not None and bound[0] > bound[1]:
        warnings.warn(f"{layer.type}: the accumulator may overflow: K={layer.gemm_k()} products "
                      f"reach {bound[0]} in the worst case, pe.acc_bits holds {bound[1]}",
                      AccumulatorWarning, stacklevel=3)
    o = layer.out_features if isinstance(layer, Dense) else layer.out_channels
    if epilogue is not None:
        epilogue = requant_params(engine, epilogue, bias, o, mode=mode)
    causes = getattr(drv, "count_causes", False)
    if causes:
        if drv.info is None:
            await drv.connect()
        causes = drv.info.has_counters
    before = await drv.counters() if causes else None
    counting = _Counting(drv.t)
    drv.t = counting
    try:
        mapper = engine.layer_mapper()
        if epilogue is not None:
            codes, stats = await mapper.run(drv, layer, xc, wc, progress=progress, mode=mode,
                                            epilogue=epilogue)
        else:
            codes, stats = await mapper.run(drv, layer, xc, wc, progress=progress, mode=mode)
    finally:
        drv.t = counting.inner
    stats.bytes_out, stats.bytes_in = counting.sent, counting.received
    if causes:
        stats.counters = await drv.counters() - before
    if raw:
        return codes, stats
    if epilogue is not None:       # operand-width codes of the next layer's input format
        return engine.epilogue().decode(codes, mode=mode), stats
    y = pe.decode(codes, mode=mode)
    if bias is not None:
        b = np.asarray(bias)
        if b.shape != (o,):
            raise LayerError(f"{layer.type}: bias of shape {b.shape}; expected ({o},)")
        y = y + (b.reshape(1, o) if isinstance(layer, Dense) else b.reshape(1, o, 1, 1))
    return y, stats


def requant_params(engine, epilogue, bias, channels, *, mode=None):
    """The engine mapper's epilogue parameters from what a user gives `run_layer`: the core's
    epilogue turns them (`Epilogue.user_params`; the integer one: ``scale`` or ``mult`` and
    ``shift``, ``zero_point``, ``lo``, ``hi``, ``activation``, the bias in accumulator
    units)."""
    epi = engine.epilogue()
    if epi is None:
        raise LayerError(f"epilogue: this core has no on-chip epilogue (pe.kind "
                         f"{engine.cfg.pe.name!r}, memory.p_depth "
                         f"{getattr(engine.cfg.memory, 'p_depth', 0)}); allowed: a core with "
                         f"memory.p_depth > 0 and a PE kind that has an epilogue")
    return epi.user_params(epilogue, bias, channels, mode=mode)


# -- regression cases -------------------------------------------------------------------------
def layer_cases(cfg, *, quick=False):
    """Layer cases for a GEMM engine, sized from the geometry: a ragged dense layer, 3x3
    convolutions at stride 1 and 2 with padding, a depthwise 3x3 and a 1x1 and 5x5 kernel."""
    C = max(cfg.cols, 1)
    cases = [
        ("dense", Dense(in_features=37, out_features=C + 3), (3, 37)),
        ("conv3x3", Conv2d(3, C + 1, kernel=3, stride=1, padding=1), (1, 3, 6, 5)),
        ("conv3x3_s2", Conv2d(4, 3, kernel=3, stride=2, padding=1), (2, 4, 7, 7)),
        ("depthwise3x3", Conv2d(3, 3, kernel=3, stride=1, padding=1, groups=3), (1, 3, 5, 5)),
        ("conv1x1", Conv2d(5, C, kernel=1), (1, 5, 3, 4)),
        ("conv5x3_s2", Conv2d(2, 2, kernel=(5, 3), stride=(2, 1), padding=(2, 0)),
         (1, 2, 8, 6)),
    ]
    if quick:
        cases = [c for c in cases if c[0] in ("dense", "conv3x3_s2", "depthwise3x3")]
    epi = cfg.engine.epilogue()
    modes = cfg.pe.regress_modes()
    out = []
    for mode in modes:
        suffix = "" if mode is None or len(modes) == 1 else f"@{mode}"
        epilogues = {}
        mode_cases = list(cases)
        if epi is not None:          # the epilogue's own example cases
            for name, layer, shape, params in epi.example_cases(C, mode=mode):
                mode_cases.append((name, layer, shape))
                epilogues[name] = params
        for i, (name, layer, shape) in enumerate(mode_cases):
            case = {"name": f"{name}{suffix}", "layer": layer.to_dict(), "input": list(shape),
                    "kind": "random", "seed": 2000 + i}
            if name in epilogues:
                case["epilogue"] = epilogues[name]
            if mode is not None:
                case["mode"] = mode
            out.append(case)
    return out


def case_bias(cfg, layer, spec):
    """The bias of an epilogue layer case, drawn from its seed by the core's epilogue
    (`Epilogue.case_bias`; the integer one: integers in accumulator units)."""
    o = layer.out_features if isinstance(layer, Dense) else layer.out_channels
    rng = np.random.default_rng(spec["seed"] + 7919)
    return cfg.engine.epilogue().case_bias(rng, o, mode=spec.get("mode"))


def layer_operands(cfg, layer, in_shape, *, kind="random", seed=0, mode=None):
    """Input and weight codes of a layer case, drawn by the PE kind's operand generator.

    The input is drawn as an (N*H*W) x C operand and laid out NCHW (Dense: N x in); the weights
    as a K x O operand, handed over as OIHW codes (or in the K x O matrix form when the kind's
    weights carry per-channel side data, e.g. ternary scales).
    """
    rng = np.random.default_rng(seed)
    pe = cfg.pe
    if isinstance(layer, Dense):
        a, b = pe.operands(in_shape[0], layer.out_features, layer.in_features, kind=kind,
                           rng=rng, mode=mode)
        return np.asarray(a, dtype=np.uint64), b
    n, c, h, w = in_shape
    a, _ = pe.operands(n * h * w, 1, c, kind=kind, rng=rng, mode=mode)
    x = np.asarray(a, dtype=np.uint64).reshape(n, h, w, c).transpose(0, 3, 1, 2).copy()
    _, b = pe.operands(1, layer.out_channels, layer.gemm_k(), kind=kind, rng=rng, mode=mode)
    arrays = pe.operand_arrays(b)
    if len(arrays) == 1:
        return x, np.asarray(arrays["codes"]).T.reshape(layer.weight_shape).copy()
    return x, b
