"""Quantized networks: the file `tessera infer` and `tessera run` load, and how it runs.

A `QNet` is what post-training quantization (`tessera.sim.ptq`) or the QDQ importer
(`tessera.sim.onnx_import`) makes from a float model for one PE kind: the layer list with,
per on-chip layer, its weight *values* (on the kind's grid: `PEKind.encode` checks them), the
run-time mode, and the epilogue parameters (bias in accumulator units, scale or multiplier and
shift, zero point, clamp) that turn its accumulators into the next layer's activation values;
the input quantizer (float image -> activation values); the last layer's bias and per-channel
output scale (accumulator values -> logits). It names the PE kind and formats it was made for
and refuses a core of another kind.

Two executors run it on values, layer by layer:

* `run_network(drv, qnet, x)` through a `TesseraDriver` (golden core, Verilator RTL, board):
  `Dense`/`Conv2d` through the engine's layer mapper with the epilogue on chip when the core
  has one (``memory.p_depth > 0``), else the same epilogue applied on the host by its twin
  (`Epilogue.apply_codes`, the unit's bit-exact model); pooling and `Flatten` on the host.
* `reference_network(qnet, pe, x)`: the independent reference. Accumulators by
  `tessera.sim.layers.reference_codes` (direct convolution / matrix product of the decoded
  elements, no im2col, no mapper, no twin), epilogues by `Epilogue.reference_codes` (exact
  rationals). The RTL and the golden core must equal it bit for bit.

The file is one ``.npz``: a JSON header (``meta``) and one array per weight tensor; loading
needs no float model and no ONNX.
"""

import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np

from tessera.sim.layers import (CHIP_TYPES, Conv2d, Dense, LayerError, Pad2d, apply_host,
                                layer_from_dict, reference_codes)


__all__ = ["QNet", "QLayer", "NetResult", "FORMAT_VERSION", "load", "run_network",
           "reference_network", "quantize_input", "padded_conv", "host_epilogue", "k_splits_of"]

#: Version of the ``.npz`` layout; a file of another version is refused.
FORMAT_VERSION = 1


@dataclass
class QLayer:
    """One layer of a quantized network.

    ``layer``: a `tessera.sim.layers` layer. On-chip layers (`Dense`, `Conv2d`) carry ``w``
    (weight values the PE kind encodes: Dense in x out, Conv2d OIHW, or the kind's K x O
    matrix form), ``mode`` (the run-time mode, kinds with modes), and either ``epilogue`` (the
    epilogue's user parameters, `Epilogue.user_params`; ``bias`` then in accumulator units) or,
    for the last layer, ``out_scale`` (one real scale per output channel: logits =
    (accumulator value + ``bias``) x ``out_scale``). ``act``: the real scale and zero point of
    the activation values this layer outputs (documentation and the float comparison).
    ``round``: host layers whose outputs leave the grid (average pooling on integer
    activations) round half away from zero back onto it.
    """
    layer: object
    w: object = None
    bias: object = None
    mode: str = None
    epilogue: dict = None
    out_scale: object = None
    act: dict = None
    round: bool = False

    @property
    def on_chip(self):
        return self.layer.type in CHIP_TYPES

    @property
    def channels(self):
        return self.layer.out_features if isinstance(self.layer, Dense) \
            else self.layer.out_channels


@dataclass
class QNet:
    """A quantized network for one PE kind (see the module docstring).

    ``pe``: the config's ``[pe]`` table it was quantized for; ``input``: the input quantizer
    (``scale``, ``zero_point``, ``lo``, ``hi``; ``grid`` ``"int"`` to round and clamp,
    ``"format"`` to let the kind's codec round; ``round`` ``"half_away"`` (default) or
    ``"half_even"`` (ONNX ``QuantizeLinear``)); ``input_shape``: one image's
    shape (without the batch); ``meta``: provenance (recipe, options, source model).
    """
    name: str
    pe: dict
    input: dict
    input_shape: tuple
    layers: list
    meta: dict = field(default_factory=dict)

    # -- checks ---------------------------------------------------------------------------------
    def check_core(self, cfg):
        """Refuse a core whose PE kind or formats differ from the ones this network was
        quantized for (one line naming the fields)."""
        want = {k: v for k, v in self.pe.items()}
        have = cfg.pe.to_dict()
        keys = sorted(want, key=lambda k: (k != "kind", k))
        diff = [f"pe.{k}: network {want[k]!r}, core {have.get(k)!r}"
                for k in keys if have.get(k) != want[k]]
        if diff:
            raise LayerError(f"network {self.name!r} was quantized for another PE: "
                             f"{'; '.join(diff[:4])}")
        for i, ql in enumerate(self.layers):
            if ql.on_chip and ql.layer.type not in cfg.engine.layer_types:
                raise LayerError(f"layer {i} ({ql.layer.type}): the {cfg.engine.name} engine "
                                 f"does not run it; it runs {', '.join(cfg.engine.layer_types)}")

    def shapes(self, batch=1):
        """Each layer's output shape for a batch of ``batch`` images."""
        shape, out = (batch, *self.input_shape), []
        for ql in self.layers:
            shape = ql.layer.out_shape(shape)
            out.append(shape)
        return out

    # -- file -----------------------------------------------------------------------------------
    def save(self, path):
        """Write the ``.npz`` (JSON header + weight arrays); returns the path."""
        arrays, layers = {}, []
        for i, ql in enumerate(self.layers):
            d = {"layer": ql.layer.to_dict(), "mode": ql.mode, "round": ql.round,
                 "act": ql.act}
            if ql.w is not None:
                arrays[f"w{i}"] = np.asarray(ql.w)
            if ql.bias is not None:
                arrays[f"b{i}"] = np.asarray(ql.bias)
            if ql.epilogue is not None:
                d["epilogue"] = _jsonable(ql.epilogue)
            if ql.out_scale is not None:
                d["out_scale"] = [float(s) for s in np.ravel(ql.out_scale)]
            layers.append(d)
        meta = {"format": "tessera-qnet", "version": FORMAT_VERSION, "name": self.name,
                "pe": self.pe, "input": _jsonable(self.input),
                "input_shape": list(self.input_shape), "layers": layers, "meta": self.meta}
        with open(path, "wb") as f:
            np.savez(f, meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode(),
                                           dtype=np.uint8), **arrays)
        return path


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in np.asarray(d, dtype=object).tolist()] \
            if isinstance(d, np.ndarray) else [_jsonable(v) for v in d]
    if isinstance(d, np.integer):
        return int(d)
    if isinstance(d, np.floating):
        return float(d)
    return d


def load(path):
    """Read a `QNet` written by `QNet.save`; a file that is not one is refused in one line."""
    try:
        z = np.load(path, allow_pickle=False)
        meta = json.loads(bytes(z["meta"]).decode())
    except (OSError, ValueError, KeyError) as e:
        raise LayerError(f"{path}: not a tessera quantized network (.npz with a 'meta' "
                         f"header): {e}") from None
    if meta.get("format") != "tessera-qnet" or meta.get("version") != FORMAT_VERSION:
        raise LayerError(f"{path}: format {meta.get('format')!r} version "
                         f"{meta.get('version')!r}; this tessera reads tessera-qnet version "
                         f"{FORMAT_VERSION}")
    layers = []
    for i, d in enumerate(meta["layers"]):
        layers.append(QLayer(layer=layer_from_dict(d["layer"]),
                             w=z[f"w{i}"] if f"w{i}" in z else None,
                             bias=z[f"b{i}"] if f"b{i}" in z else None,
                             mode=d.get("mode"), epilogue=d.get("epilogue"),
                             out_scale=np.asarray(d["out_scale"]) if "out_scale" in d else None,
                             act=d.get("act"), round=d.get("round", False)))
    return QNet(name=meta["name"], pe=meta["pe"], input=meta["input"],
                input_shape=tuple(meta["input_shape"]), layers=layers, meta=meta["meta"])


def padded_conv(layer, zero_point, **qlayer):
    """The `QLayer`s of an on-chip ``layer`` whose input activations have zero point
    ``zero_point``: a convolution with padding pads with the zero point (the real 0) in a host
    `Pad2d` and runs unpadded, since the core pads with code 0; anything else as it is."""
    if not isinstance(layer, Conv2d) or zero_point == 0 or layer.padding == (0, 0):
        return [QLayer(layer=layer, **qlayer)]
    conv = dataclasses.replace(layer, padding=(0, 0))
    return [QLayer(layer=Pad2d(padding=layer.padding, value=zero_point)),
            QLayer(layer=conv, **qlayer)]


# -- running -------------------------------------------------------------------------------------
def quantize_input(qnet, x):
    """Float images -> the first layer's activation values (the network's input quantizer)."""
    q = qnet.input
    v = np.asarray(x, dtype=np.float64) / q["scale"]
    if q.get("grid", "int") == "int":
        r = np.rint(v) if q.get("round") == "half_even" else np.trunc(v + np.copysign(0.5, v))
        v = r + q.get("zero_point", 0)
        v = np.clip(v, q["lo"], q["hi"]).astype(np.int64)
    return v


def _round_away(x):
    return np.trunc(x + np.copysign(0.5, x)).astype(np.int64)


def _host_layer(ql, x):
    y = apply_host(ql.layer, x)
    if ql.round:
        y = _round_away(np.asarray(y, dtype=np.float64))
    return y


def _channels_last(a, layer):
    return a if isinstance(layer, Dense) else np.moveaxis(a, 1, -1)


def _channels_first(a, layer):
    return a if isinstance(layer, Dense) else np.moveaxis(a, -1, 1)


def host_epilogue(epi, acc_codes, params, layer):
    """Apply epilogue ``epi`` to a layer's accumulator codes on the host with its twin
    (`Epilogue.apply_codes`, bit-exact to the unit); ``params`` as `Epilogue.user_params`
    returns them."""
    names = [f.name for f in epi.channel_fields]
    chan = {k: np.asarray(params[k]) for k in names}
    run = {f.name: params[f.name] for f in epi.run_fields}
    run.update({f.name: int(params.get(f.name, 0)) for f in epi.flag_fields})
    acc = _channels_last(np.asarray(acc_codes, dtype=np.uint64), layer)
    flat = acc.reshape(-1, acc.shape[-1])
    out = np.asarray(epi.apply_codes(flat, chan, run), dtype=np.uint64).reshape(acc.shape)
    return _channels_first(out, layer)


@dataclass
class LayerRecord:
    """A layer's cost over a run: the summed `LayerStats` and where its epilogue ran."""
    index: int
    layer: object
    in_shape: tuple
    out_shape: tuple
    stats: list = field(default_factory=list)
    epilogue: str = "none"

    def total(self, key):
        return sum(getattr(s, key) for s in self.stats)


def k_splits_of(result):
    """{layer index: the K split its RUNs used} of a `run_network` result, for
    `reference_network`."""
    return {r.index: r.stats[-1].k_split for r in result.records if r.stats}


@dataclass
class NetResult:
    """Outputs of a network run: ``logits`` (float, N x classes), ``outputs`` (the last
    layer's result values, exact), ``classes`` (argmax), and per-layer `LayerRecord`s."""
    logits: np.ndarray
    outputs: np.ndarray
    records: list

    @property
    def classes(self):
        return np.argmax(self.logits, axis=1)


def _dequant(ql, levels):
    """Logits of a last layer that requantizes (a QDQ model's quantized output)."""
    a = ql.act
    return (np.asarray(levels, dtype=np.float64) - a["zero_point"]) * a["scale"]


def _last_chip(qnet):
    return max(i for i, ql in enumerate(qnet.layers) if ql.on_chip)


def _logits(ql, y):
    y = np.asarray(y)
    vals = np.vectorize(float, otypes=[np.float64])(y) if y.dtype == object \
        else y.astype(np.float64)
    if ql.bias is not None:
        vals = vals + np.asarray(ql.bias, dtype=np.float64).reshape(1, -1)
    return vals * np.asarray(ql.out_scale, dtype=np.float64).reshape(1, -1)


async def run_network(drv, qnet, x, *, batch=None, progress=None):
    """Run ``qnet`` on float images ``x`` (N x input_shape) through driver ``drv``.

    ``batch``: images per pass (default all; a layer's GEMM then has ``batch`` times the rows,
    so weights go over the link once per pass). ``progress``: called with (images done, N).
    Returns a `NetResult`.
    """
    cfg = drv.cfg
    qnet.check_core(cfg)
    n = len(x)
    batch = batch or n
    epi_core = cfg.engine.epilogue()
    epi = epi_core or cfg.pe.epilogue()
    records = None
    logits, outputs = [], []
    last = _last_chip(qnet)
    regions = weight_regions(drv, qnet, min(batch, n), epi_core)
    chain = chain_layers(drv, qnet, epi_core)
    for s in range(0, n, batch):
        xb = quantize_input(qnet, x[s:s + batch])
        recs = []
        if chain:
            try:
                xb, recs = await _run_chained(drv, qnet, chain, xb, epi_core, outputs)
            except ValueError:
                chain = None           # does not fit this core: one layer at a time
        for i, ql in enumerate(qnet.layers):
            if chain:
                break
            drv.b_region = regions.get(i)
            try:
                xb, rec = await _run_one(drv, qnet, i, ql, xb, epi_core, epi, outputs)
            except (LayerError, ValueError) as e:
                raise LayerError(f"layer {i} ({ql.layer.type}): {e}") from None
            finally:
                drv.b_region = None
            if i == last and ql.epilogue is not None:
                outputs.append(np.asarray(xb))
                xb = _dequant(ql, xb)
            recs.append(rec)
        logits.append(xb)
        if records is None:
            records = recs
        else:
            for r, new in zip(records, recs):
                r.stats += new.stats
        if progress:
            progress(min(s + batch, n), n)
    return NetResult(np.concatenate(logits), np.concatenate(outputs) if outputs else None,
                     records)


def chain_layers(drv, qnet, epi_core):
    """The on-chip layers `run_network` chains on the core (`DenseMapper.chain`: each layer's
    epilogue outputs land in store A for the next), or None: the engine's mapper chains, the
    core has the epilogue, the on-chip layers are two or more Dense layers with no host layer
    between them or after them, and each but the last has its epilogue on chip. The driver's
    ``chain`` attribute (default True) turns it off."""
    mapper = drv.cfg.engine.mapper()
    if not hasattr(mapper, "chain") or epi_core is None or not getattr(drv, "chain", True) \
            or not mapper.chains():
        return None
    idx = [i for i, ql in enumerate(qnet.layers) if ql.on_chip]
    if len(idx) < 2 or idx != list(range(idx[0], len(qnet.layers))):
        return None
    if any(not isinstance(qnet.layers[i].layer, Dense) for i in idx) \
            or any(qnet.layers[i].epilogue is None for i in idx[:-1]):
        return None
    return idx


async def _run_chained(drv, qnet, idx, xb, epi_core, outputs):
    """The chained on-chip layers of `run_network` (after the host layers before them):
    (values out, `LayerRecord` per layer). Raises ValueError if they do not fit the core."""
    from tessera.sim.lowering import LayerStats, _Counting, requant_params
    cfg = drv.cfg
    pe = cfg.pe
    recs = []
    for i, ql in enumerate(qnet.layers[:idx[0]]):
        rec = LayerRecord(i, ql.layer, tuple(np.shape(xb)), None, epilogue="host layer")
        xb = _host_layer(ql, xb)
        rec.out_shape = tuple(np.shape(xb))
        recs.append(rec)
    xc = pe.encode(np.asarray(xb), operand="a", name="x")
    layers = []
    for i in idx:
        ql = qnet.layers[i]
        bound = pe.acc_bound(ql.layer.gemm_k()) if hasattr(pe, "acc_bound") else None
        if bound is not None and bound[0] > bound[1]:
            import warnings
            from tessera.sim.lowering import AccumulatorWarning
            warnings.warn(f"{ql.layer.type}: the accumulator may overflow: K="
                          f"{ql.layer.gemm_k()} products reach {bound[0]} in the worst case, "
                          f"pe.acc_bits holds {bound[1]}", AccumulatorWarning, stacklevel=3)
        params = None if ql.epilogue is None else requant_params(cfg.engine, ql.epilogue,
                                                                 ql.bias, ql.channels)
        layers.append((pe.encode(ql.w, operand="b", name="w"), params))
    if drv.info is None:
        await drv.connect()
    counting = _Counting(drv.t)
    drv.t = counting
    try:
        codes, st = await cfg.engine.mapper().chain(drv, xc, layers)
    finally:
        drv.t = counting.inner
    shape = tuple(np.shape(xb))
    for j, i in enumerate(idx):
        ql = qnet.layers[i]
        out_shape = ql.layer.out_shape(shape)
        ls = LayerStats(runs=1, cycles=st.run_cycles[j], run_cycles=[st.run_cycles[j]],
                        k_split=ql.layer.gemm_k(),
                        macs=int(np.prod(out_shape)) * ql.layer.gemm_k())
        if j == 0:       # the chain's link traffic, all of it, on its first layer
            ls.bytes_out, ls.bytes_in = counting.sent, counting.received
        recs.append(LayerRecord(i, ql.layer, shape, out_shape, [ls],
                                epilogue="core, chained" if ql.epilogue is not None
                                else "none"))
        shape = out_shape
    last = qnet.layers[idx[-1]]
    if last.epilogue is not None:
        y = epi_core.decode(codes)
        outputs.append(np.asarray(y))
        return _dequant(last, y), recs
    y = pe.decode(codes)
    outputs.append(np.asarray(y))
    return _logits(last, y), recs


def weight_regions(drv, qnet, batch, epi_core):
    """Where each on-chip layer's weights go in store B, for a driver that keeps them resident
    (``drv.resident``): ``{layer index: (base, words)}``.

    When every on-chip layer's whole weight matrix fits B at once (the engine's layer mapper
    says how many words each needs: ``resident_words``), each gets its own region, from word
    0 up in order, and its weights cross the link once per run. Otherwise empty: every layer
    from word 0, as without placement (the driver's mirror still skips what is unchanged).
    Placing only some layers and streaming the rest through a smaller region measured worse
    on the digits networks (more RUNs, more rewritten words)."""
    cfg = drv.cfg
    mapper = cfg.engine.layer_mapper()
    names = [st.name for st in cfg.geometry.stores]
    if not getattr(drv, "resident", False) or not hasattr(mapper, "resident_words") \
            or "b" not in names or not hasattr(cfg.engine.mapper(), "resident_words"):
        return {}
    depth = cfg.geometry.store("b").depth
    shape, base, regions, streaming = (batch, *qnet.input_shape), 0, {}, []
    for i, ql in enumerate(qnet.layers):
        out = ql.layer.out_shape(shape)
        if ql.on_chip:
            epi = ql.epilogue is not None and epi_core is not None
            words = mapper.resident_words(ql.layer, shape, mode=ql.mode, epilogue=epi)
            if words is None or base + words > depth:
                return {}
            regions[i] = (base, words)
            base += words
        shape = out
    return regions


async def _run_one(drv, qnet, i, ql, xb, epi_core, epi, outputs):
    """One layer of `run_network`: (values out, `LayerRecord`)."""
    rec = LayerRecord(i, ql.layer, tuple(np.shape(xb)), None)
    if not ql.on_chip:
        xb = _host_layer(ql, xb)
        rec.epilogue = "host layer"
    elif ql.epilogue is not None and epi_core is not None:
        xb, st = await drv.run_layer(ql.layer, xb, ql.w, ql.bias, mode=ql.mode,
                                     epilogue=ql.epilogue)
        rec.stats.append(st)
        rec.epilogue = "core"
    elif ql.epilogue is not None:
        if epi is None:
            raise LayerError(f"the network needs an epilogue and pe.kind "
                             f"{drv.cfg.pe.name!r} has none")
        acc, st = await _raw_layer(drv, ql, xb)
        params = epi.user_params(ql.epilogue, ql.bias, ql.channels, mode=ql.mode)
        xb = epi.decode(host_epilogue(epi, acc, params, ql.layer), mode=ql.mode)
        rec.stats.append(st)
        rec.epilogue = "host"
    else:
        y, st = await drv.run_layer(ql.layer, xb, ql.w, None, mode=ql.mode)
        rec.stats.append(st)
        outputs.append(np.asarray(y))
        xb = _logits(ql, y)
    rec.out_shape = tuple(np.shape(xb))
    return xb, rec


async def _raw_layer(drv, ql, xb):
    """Accumulator codes of an on-chip layer (values in, codes out)."""
    pe = drv.cfg.pe
    xc = pe.encode(np.asarray(xb), operand="a", name="x", mode=ql.mode)
    wc = pe.encode(ql.w, operand="b", name="w", mode=ql.mode)
    return await drv.run_layer(ql.layer, xc, wc, raw=True, mode=ql.mode)


def reference_network(qnet, pe, x, *, k_splits=None):
    """The independent reference of ``qnet`` on float images ``x`` for PE kind ``pe``
    (``cfg.pe``): returns a `NetResult` without records. Accumulators from
    `tessera.sim.layers.reference_codes`, epilogues from `Epilogue.reference_codes`.
    ``k_splits``: {layer index: K per accumulating RUN piece} where the kind's result depends
    on how K was split (float kinds that round per chunk; `k_splits_of` a `NetResult`)."""
    k_splits = k_splits or {}
    epi = pe.epilogue()
    xb = quantize_input(qnet, x)
    outputs = None
    last = _last_chip(qnet)
    for i, ql in enumerate(qnet.layers):
        if not ql.on_chip:
            xb = _host_layer(ql, xb)
            continue
        xc = pe.encode(np.asarray(xb), operand="a", name="x", mode=ql.mode)
        wc = pe.encode(ql.w, operand="b", name="w", mode=ql.mode)
        acc = reference_codes(pe, ql.layer, xc, wc, mode=ql.mode, k_split=k_splits.get(i))
        if ql.epilogue is not None:
            params = epi.user_params(ql.epilogue, ql.bias, ql.channels, mode=ql.mode)
            codes = _channels_first(
                np.asarray(epi.reference_codes(
                    _channels_last(np.asarray(acc, dtype=np.uint64), ql.layer)
                    .reshape(-1, ql.channels), params, mode=ql.mode),
                    dtype=np.uint64).reshape(_channels_last(np.asarray(acc), ql.layer).shape),
                ql.layer)
            xb = epi.decode(codes, mode=ql.mode)
            if i == last:
                outputs = np.asarray(xb)
                xb = _dequant(ql, xb)
        else:
            outputs = np.asarray(pe.decode(acc, mode=ql.mode))
            xb = _logits(ql, outputs)
    return NetResult(xb, outputs, [])
