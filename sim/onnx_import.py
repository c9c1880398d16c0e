"""ONNX front end: a float model to a `FloatModel`, an int8 QDQ model to a `QNet`.

Supported (opset 13 and later; the graph must be a chain from its one input to its one output,
as the classifiers tessera runs are):

========================  =====================================================================
ONNX                      tessera
========================  =====================================================================
``Gemm``                  `Dense` (``transA = 0``; ``transB`` 0 or 1; ``alpha``, ``beta``
                          folded into the weights and bias)
``MatMul`` [+ ``Add``]    `Dense` (a constant right operand; an ``Add`` of a constant vector
                          right after it is its bias)
``Conv``                  `Conv2d` (2-D, ``group`` 1 or depthwise, symmetric ``pads``,
                          ``dilations`` 1, ``auto_pad`` NOTSET or VALID; kernel 1..7, stride
                          1..4)
``Relu``, ``Clip``        `Relu`, `Clip` (fused into the previous layer's epilogue)
``MaxPool``               `MaxPool2d` (``ceil_mode`` 0, ``dilations`` 1)
``AveragePool``           `AvgPool2d` (``count_include_pad`` 0, ``ceil_mode`` 0)
``GlobalAveragePool``     `AvgPool2d` over the whole map (at most 16 x 16)
``Flatten``, ``Reshape``  `Flatten` (``axis`` 1; a Reshape to ``[N, -1]``)
``Identity``, ``Dropout`` nothing (inference)
``Softmax`` (last)        nothing (the class is the argmax either way)
========================  =====================================================================

A QDQ model (what ``onnxruntime.quantization.quantize_static`` writes with
``QuantFormat.QDQ``: ``QuantizeLinear``/``DequantizeLinear`` pairs on every activation,
``DequantizeLinear`` of int8 weights with per-channel or per-tensor scales and zero point 0, and
of int32 biases with scale ``s_x * s_w``) becomes a `QNet` for an 8-bit integer core directly,
without calibration: each Conv/Gemm runs with the epilogue ``scale = s_x s_w[c] / s_y``
(TFLite's multiplier and shift), bias ``b_q[c] - z_x sum_k w_q[k, c]``, zero point ``z_y`` and
the int8 clamp (``lo = z_y`` when a ``Relu`` sits between the layer and its ``QuantizeLinear``).
uint8 activations are taken as int8 with codes and zero point shifted by 128 (the same real
values). The input quantizer rounds half to even, as ``QuantizeLinear``.

Anything else is refused in one line naming the node, its op and what is supported.
"""

import numpy as np

from tessera.sim.layers import (AvgPool2d, Clip, Conv2d, Dense, Flatten, LayerError, MaxPool2d,
                                Relu)
from tessera.sim.ptq import FloatModel, FStep
from tessera.sim.qnet import QLayer, QNet, padded_conv


__all__ = ["load_float", "load_qdq", "is_qdq", "SUPPORTED_OPS", "OnnxError"]

SUPPORTED_OPS = ("Gemm", "MatMul", "Add", "Conv", "Relu", "Clip", "MaxPool", "AveragePool",
                 "GlobalAveragePool", "Flatten", "Reshape", "Identity", "Dropout", "Softmax",
                 "QuantizeLinear", "DequantizeLinear")
_SKIP = ("Identity", "Dropout")


class OnnxError(LayerError):
    """The model uses an op, shape or attribute tessera does not run (one line)."""


def _onnx():
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:           # pragma: no cover - onnx is a dependency
        raise OnnxError("the 'onnx' package is required to read ONNX models "
                        "(python -m pip install onnx)") from None
    return onnx, numpy_helper


class _Graph:
    def __init__(self, path):
        onnx, nh = _onnx()
        try:
            model = onnx.load(str(path))
        except Exception as e:          # onnx raises several types for a bad file
            raise OnnxError(f"{path}: not a readable ONNX model ({e})") from None
        self.path = path
        opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                    default=0)
        if opset < 13:
            raise OnnxError(f"{path}: opset {opset}; supported: 13 and later (convert with "
                            f"onnx.version_converter)")
        g = model.graph
        self.name = g.name or "model"
        self.init = {t.name: nh.to_array(t) for t in g.initializer}
        for n in g.node:          # Constant nodes are initializers too
            if n.op_type == "Constant":
                self.init[n.output[0]] = nh.to_array(n.attribute[0].t)
        self.nodes = [n for n in g.node if n.op_type != "Constant"]
        inputs = [i for i in g.input if i.name not in self.init]
        if len(inputs) != 1 or len(g.output) != 1:
            raise OnnxError(f"{path}: {len(inputs)} inputs and {len(g.output)} outputs; "
                            f"supported: one input and one output")
        self.input = inputs[0].name
        self.output = g.output[0].name
        dims = inputs[0].type.tensor_type.shape.dim
        self.input_shape = tuple(d.dim_value for d in dims[1:])
        if not self.input_shape or any(d <= 0 for d in self.input_shape):
            raise OnnxError(f"{path}: input {self.input!r} must have fixed non-batch "
                            f"dimensions, not {[d.dim_param or d.dim_value for d in dims]}")
        self.consumers = {}
        for n in self.nodes:
            for t in n.input:
                self.consumers.setdefault(t, []).append(n)
        self.const_dq = {n.output[0]: n for n in self.nodes
                         if n.op_type == "DequantizeLinear" and n.input[0] in self.init}

    def is_const(self, name):
        return name in self.init or name in self.const_dq

    def attrs(self, node):
        onnx, _ = _onnx()
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def float_const(self, name):
        """A constant as float64 (a constant DequantizeLinear is dequantized)."""
        if name in self.init:
            return np.asarray(self.init[name], dtype=np.float64)
        q, s, z, axis = self.quant_const(name)
        return (q - z) * s

    def quant_const(self, name):
        """(int codes, scale, zero point, axis) of a constant DequantizeLinear, scale and zero
        point broadcast along ``axis``."""
        n = self.const_dq[name]
        q = np.asarray(self.init[n.input[0]]).astype(np.int64)
        s = np.asarray(self.init[n.input[1]], dtype=np.float64)
        z = np.asarray(self.init[n.input[2]]).astype(np.int64) if len(n.input) > 2 \
            else np.zeros_like(s, dtype=np.int64)
        axis = self.attrs(n).get("axis", 1)
        if s.ndim == 1 and s.size > 1:
            shape = [1] * q.ndim
            shape[axis] = -1
            s, z = s.reshape(shape), z.reshape(shape)
        return q, s, z, axis

    def chain(self):
        """The nodes on the path from the input to the output, in order."""
        cur, out = self.input, []
        while cur != self.output:
            users = [n for n in self.consumers.get(cur, []) if n.output[0] not in self.const_dq]
            if len(users) != 1:
                raise OnnxError(f"{self.path}: tensor {cur!r} feeds {len(users)} nodes; "
                                f"supported: a chain (each activation used once)")
            node = users[0]
            out.append(node)
            cur = node.output[0]
        return out


def _refuse(node, what, supported):
    return OnnxError(f"node {node.name or node.output[0]!r} ({node.op_type}): {what}; "
                     f"supported: {supported}")


def _spatial(node, a, key, default, n=2):
    v = a.get(key, default)
    return tuple(v) if v is not None else None


def _conv_layer(node, a, w):
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
        raise _refuse(node, f"auto_pad {a['auto_pad']!r}", "NOTSET or VALID")
    if w.ndim != 4:
        raise _refuse(node, f"a {w.ndim - 2}-D convolution", "2-D (OIHW weights)")
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise _refuse(node, f"dilations {a['dilations']}", "1")
    pads = a.get("pads", [0, 0, 0, 0])
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise _refuse(node, f"pads {list(pads)}", "symmetric pads (top = bottom, left = "
                                                  "right)")
    group = a.get("group", 1)
    o, cg, kh, kw = w.shape
    cin = cg * group
    try:
        return Conv2d(cin, o, kernel=(kh, kw), stride=tuple(a.get("strides", [1, 1])),
                      padding=(pads[0], pads[1]), groups=group, bias=True)
    except LayerError as e:
        raise _refuse(node, str(e), "kernel 1..7, stride 1..4, group 1 or depthwise") from None


def _pool_layer(node, a, cls):
    if a.get("ceil_mode", 0):
        raise _refuse(node, "ceil_mode 1", "ceil_mode 0")
    if any(d != 1 for d in a.get("dilations", [1, 1])):
        raise _refuse(node, f"dilations {a['dilations']}", "1")
    if cls is AvgPool2d and a.get("count_include_pad", 0):
        raise _refuse(node, "count_include_pad 1", "count_include_pad 0")
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
        raise _refuse(node, f"auto_pad {a['auto_pad']!r}", "NOTSET or VALID")
    pads = a.get("pads", [0, 0, 0, 0])
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise _refuse(node, f"pads {list(pads)}", "symmetric pads")
    k = tuple(a["kernel_shape"])
    try:
        return cls(kernel=k, stride=tuple(a.get("strides", k)), padding=(pads[0], pads[1]))
    except LayerError as e:
        raise _refuse(node, str(e), "kernel 1..16, stride 1..16") from None


def _host_layer(g, node, shape, last):
    """The host layer of a non-weight node (None: skip), or a refusal."""
    op, a = node.op_type, g.attrs(node)
    if op in _SKIP or (op == "Softmax" and last):
        return None
    if op == "Relu":
        return Relu()
    if op == "Clip":
        lo = a.get("min", None)
        hi = a.get("max", None)
        if len(node.input) > 1 and node.input[1]:
            lo = float(g.float_const(node.input[1]))
        if len(node.input) > 2 and node.input[2]:
            hi = float(g.float_const(node.input[2]))
        if lo is None or hi is None:
            raise _refuse(node, "a Clip without both bounds", "Clip(min, max) with constants")
        return Clip(lo=float(lo), hi=float(hi))
    if op == "MaxPool":
        return _pool_layer(node, a, MaxPool2d)
    if op == "AveragePool":
        return _pool_layer(node, a, AvgPool2d)
    if op == "GlobalAveragePool":
        if len(shape) != 4 or max(shape[2:]) > 16:
            raise _refuse(node, f"input {shape[1:]}", "a C x H x W map of at most 16 x 16")
        return AvgPool2d(kernel=shape[2:], stride=shape[2:])
    if op == "Flatten":
        if a.get("axis", 1) != 1:
            raise _refuse(node, f"axis {a.get('axis')}", "axis 1")
        return Flatten()
    if op == "Reshape":
        tgt = g.init.get(node.input[1]) if len(node.input) > 1 else None
        flat = int(np.prod(shape[1:]))
        if tgt is None or len(tgt) != 2 or int(tgt[1]) not in (-1, flat) or \
                int(tgt[0]) not in (0, -1, shape[0]):
            raise _refuse(node, f"shape {None if tgt is None else list(tgt)}",
                          "a constant [N, -1] (a flatten)")
        return Flatten()
    raise _refuse(node, "op not supported", ", ".join(o for o in SUPPORTED_OPS))


def _weights(g, node):
    """Dense/Conv2d layer, float weights (tessera layout), float bias of a weight node, and
    the number of chain nodes it absorbs (a MatMul's Add)."""
    op, a = node.op_type, g.attrs(node)
    if op == "Conv":
        if not g.is_const(node.input[1]):
            raise _refuse(node, "weights that are not a constant", "constant weights")
        w = g.float_const(node.input[1])
        layer = _conv_layer(node, a, w)
        b = g.float_const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return layer, w, b
    if op == "Gemm":
        if a.get("transA", 0):
            raise _refuse(node, "transA 1", "transA 0")
        if not g.is_const(node.input[1]):
            raise _refuse(node, "a right operand that is not a constant", "constant weights")
        w = g.float_const(node.input[1])
        w = w.T if a.get("transB", 0) else w
        w = w * a.get("alpha", 1.0)
        b = g.float_const(node.input[2]) * a.get("beta", 1.0) \
            if len(node.input) > 2 and node.input[2] else None
        if b is not None:
            b = np.broadcast_to(b, (w.shape[1],)).copy()
        return Dense(w.shape[0], w.shape[1], bias=True), w, b
    if op == "MatMul":
        if not g.is_const(node.input[1]):
            raise _refuse(node, "a right operand that is not a constant", "constant weights")
        w = g.float_const(node.input[1])
        if w.ndim != 2:
            raise _refuse(node, f"a {w.ndim}-D right operand", "a 2-D weight matrix")
        return Dense(w.shape[0], w.shape[1], bias=True), w, None
    return None


# -- float models -------------------------------------------------------------------------------
def is_qdq(path):
    """True when the model quantizes activations (a non-constant QuantizeLinear)."""
    g = _Graph(path)
    return any(n.op_type == "QuantizeLinear" for n in g.nodes)


def load_float(path):
    """A float ONNX model as a `FloatModel` (see the module docstring for the ops)."""
    g = _Graph(path)
    chain = g.chain()
    steps, shape = [], (1, *g.input_shape)
    i = 0
    while i < len(chain):
        node = chain[i]
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            raise _refuse(node, "a quantized activation in a float model",
                          "load it as a QDQ model (tessera infer does so by itself)")
        got = _weights(g, node)
        if got is not None:
            layer, w, b = got
            if node.op_type == "MatMul" and i + 1 < len(chain) and chain[i + 1].op_type == "Add":
                add = chain[i + 1]
                other = [t for t in add.input if t != node.output[0]]
                if len(other) != 1 or not g.is_const(other[0]):
                    raise _refuse(add, "an Add of a non-constant", "a constant bias vector")
                b = np.broadcast_to(g.float_const(other[0]), (w.shape[1],)).copy()
                i += 1
            try:
                shape = layer.out_shape(shape)
            except LayerError as e:
                raise _refuse(node, str(e), "shapes that chain") from None
            steps.append(FStep(layer, w, b if b is not None else np.zeros(
                layer.out_features if isinstance(layer, Dense) else layer.out_channels)))
        else:
            if node.op_type == "Add":
                raise _refuse(node, "an Add that is not a MatMul's bias", "MatMul + Add")
            layer = _host_layer(g, node, shape, i == len(chain) - 1)
            if layer is not None:
                if isinstance(layer, (Dense, Conv2d)):     # pragma: no cover
                    raise AssertionError
                shape = layer.out_shape(shape)
                steps.append(FStep(layer))
        i += 1
    if not any(s.w is not None for s in steps):
        raise OnnxError(f"{path}: no Gemm, MatMul or Conv to run on the core")
    return FloatModel(steps, g.input_shape, g.name)


# -- QDQ models ---------------------------------------------------------------------------------
def _act_qparams(g, node):
    s = float(np.asarray(g.init[node.input[1]], dtype=np.float64).reshape(-1)[0])
    if np.asarray(g.init[node.input[1]]).size != 1:
        raise _refuse(node, "a per-channel activation scale", "one scale per tensor")
    zarr = g.init.get(node.input[2]) if len(node.input) > 2 else None
    z = int(np.asarray(zarr).reshape(-1)[0]) if zarr is not None else 0
    unsigned = zarr is not None and np.asarray(zarr).dtype == np.uint8
    if zarr is not None and np.asarray(zarr).dtype not in (np.int8, np.uint8):
        raise _refuse(node, f"{np.asarray(zarr).dtype} activations", "int8 or uint8")
    return s, z - 128 if unsigned else z


def _qdq_mode(pe):
    if pe.modes:
        if "a8s_w8s" not in pe.modes:
            raise LayerError(f"a QDQ int8 model needs int8 x int8 products; pe.kind "
                             f"{pe.name!r} has no mode a8s_w8s")
        return "a8s_w8s"
    if pe.name != "int" or pe.a_bits != 8 or pe.b_bits != 8:
        raise LayerError(f"a QDQ int8 model runs on an 8-bit integer core (pe.kind 'int' with "
                         f"a_bits = b_bits = 8, or bitfusion/multiprec); this core has pe.kind "
                         f"{pe.name!r}" + (f" with a_bits {pe.a_bits}, b_bits {pe.b_bits}"
                                           if pe.name == "int" else ""))
    return None


def load_qdq(path, pe):
    """An int8 QDQ ONNX model as a `QNet` for PE kind ``pe`` (an 8-bit integer kind)."""
    mode = _qdq_mode(pe)
    g = _Graph(path)
    chain = g.chain()
    layers, shape = [], (1, *g.input_shape)
    state = None            # (scale, zero point) of the activation levels we hold, or None
    pending = None          # a weight layer waiting for its output QuantizeLinear
    pending_q = None        # (scale, zp) of a QuantizeLinear waiting for its DequantizeLinear
    relu = False
    input_q = input_tensor = None
    for i, node in enumerate(chain):
        op = node.op_type
        if op == "QuantizeLinear":
            s, z = _act_qparams(g, node)
            if pending is not None:
                layers += _requant_layer(node, pending, state, (s, z), relu, mode)
                state, pending, relu = (s, z), None, False
                pending_q = (s, z)
            elif state is None:
                input_q = (s, z)
                input_tensor = node.output[0]
                pending_q = (s, z)
                state = (s, z)
            else:
                if not np.isclose(s, state[0], rtol=1e-6) or z != state[1]:
                    raise _refuse(node, "a requantization after a host op",
                                  "host ops (pooling, flatten) that keep their input's scale")
                pending_q = (s, z)
            continue
        if op == "DequantizeLinear":
            if pending_q is None:
                raise _refuse(node, "a DequantizeLinear without its QuantizeLinear",
                              "QuantizeLinear -> DequantizeLinear pairs")
            pending_q = None
            continue
        if pending_q is not None:
            raise _refuse(node, "a quantized tensor used without DequantizeLinear",
                          "QuantizeLinear -> DequantizeLinear pairs")
        got = _weights(g, node) if op in ("Conv", "Gemm", "MatMul") else None
        if got is not None:
            if state is None:
                raise _refuse(node, "a float input", "an input from a DequantizeLinear")
            pending = _qdq_weights(g, node, got, state, chain, i)
            shape = pending["layer"].out_shape(shape)
            continue
        if op == "Add" and pending is not None and pending.get("matmul"):
            pending["add"] = node
            continue
        if op == "Relu" and pending is not None:
            relu = True
            continue
        if op == "Clip" and pending is not None:
            raise _refuse(node, "a Clip between a layer and its QuantizeLinear",
                          "Relu (a clip is the int8 clamp of the QuantizeLinear)")
        layer = _host_layer(g, node, shape, i == len(chain) - 1)
        if layer is None:
            continue
        if state is None:         # host ops before the input quantizer (MLP's Flatten)
            layers.append(QLayer(layer=layer))
            shape = layer.out_shape(shape)
            continue
        if isinstance(layer, Relu):
            layer = Clip(lo=state[1], hi=127)
        elif isinstance(layer, Clip):
            raise _refuse(node, "a Clip on quantized activations", "Relu")
        layers.append(QLayer(layer=layer, round=isinstance(layer, AvgPool2d)))
        shape = layer.out_shape(shape)
    if pending is not None:       # a float output: the last layer keeps its accumulators
        layers += _float_out_layer(pending, state, mode)
    if input_q is None:
        raise OnnxError(f"{path}: no QuantizeLinear on the input; not a QDQ model")
    s, z = input_q
    return QNet(name=g.name, pe=pe.to_dict(),
                input={"scale": s, "zero_point": z, "lo": -128, "hi": 127, "grid": "int",
                       "round": "half_even", "onnx_tensor": input_tensor},
                input_shape=g.input_shape, layers=layers,
                meta={"recipe": "onnx-qdq", "source": str(path), "mode": mode})


def _qdq_weights(g, node, got, state, chain, i):
    layer, _, _ = got
    wname = node.input[1]
    if wname not in g.const_dq:
        raise _refuse(node, "float weights in a QDQ model", "int8 weights through "
                                                             "DequantizeLinear")
    q, s, z, axis = g.quant_const(wname)
    if np.any(z != 0):
        raise _refuse(node, "weights with a zero point", "symmetric int8 weights (zero "
                                                         "point 0)")
    if q.min() < -128 or q.max() > 127:
        raise _refuse(node, "weights outside int8", "int8 weights")
    a = g.attrs(node)
    if node.op_type == "Gemm" and a.get("transB", 0):
        q, s = q.T, (s.T if np.ndim(s) == 2 else s)
    o = layer.out_features if isinstance(layer, Dense) else layer.out_channels
    sw = np.broadcast_to(np.asarray(s, dtype=np.float64).reshape(-1), (o,)).copy() \
        if np.size(s) in (1, o) else None
    if sw is None:
        raise _refuse(node, f"{np.size(s)} weight scales", f"1 or {o} (per output channel)")
    if isinstance(layer, Dense) and np.ndim(s) == 2 and s.shape[0] != 1 and np.size(s) > 1:
        raise _refuse(node, "weight scales along the input axis", "per output channel")
    bias = np.zeros(o, dtype=np.int64)
    if node.op_type in ("Conv", "Gemm") and len(node.input) > 2 and node.input[2]:
        bias = _qdq_bias(g, node, node.input[2], state[0] * sw, o)
    return {"layer": layer, "w": q.astype(np.int64), "sw": sw, "bias": bias,
            "matmul": node.op_type == "MatMul", "node": node}


def _qdq_bias(g, node, name, want_scale, o):
    if name not in g.const_dq:
        raise _refuse(node, "a float bias in a QDQ model", "an int32 bias through "
                                                           "DequantizeLinear")
    q, s, z, _ = g.quant_const(name)
    s = np.broadcast_to(np.asarray(s, dtype=np.float64).reshape(-1), (o,))
    if np.any(np.asarray(z) != 0) or not np.allclose(s, want_scale, rtol=1e-5):
        raise _refuse(node, "a bias whose scale is not s_x * s_w", "the bias quantize_static "
                                                                   "writes (int32, s_x * s_w)")
    return np.broadcast_to(q.reshape(-1), (o,)).astype(np.int64)


def _folded_bias(p, zx):
    k_axis = 0 if isinstance(p["layer"], Dense) else (1, 2, 3)
    return p["bias"] - zx * p["w"].sum(axis=k_axis)


def _requant_layer(qnode, p, state, out_q, relu, mode):
    sx, zx = state
    sy, zy = out_q
    scale = sx * p["sw"] / sy
    if np.any(scale >= 1) or np.any(scale <= 0):
        raise _refuse(qnode, f"a requantization scale {float(scale.max()):.4g} outside (0, 1)",
                      "s_x * s_w / s_y in (0, 1) (the epilogue has no left shift)")
    return padded_conv(p["layer"], zx, w=p["w"], bias=_folded_bias(p, zx), mode=mode,
                       epilogue={"scale": [float(v) for v in scale], "zero_point": zy,
                                 "lo": max(zy, -128) if relu else -128, "hi": 127},
                       act={"scale": sy, "zero_point": zy, "lo": -128, "hi": 127,
                            "onnx_tensor": qnode.output[0]})


def _float_out_layer(p, state, mode):
    sx, zx = state
    return padded_conv(p["layer"], zx, w=p["w"], bias=_folded_bias(p, zx), mode=mode,
                       out_scale=sx * p["sw"])
