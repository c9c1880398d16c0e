"""The digits networks: scikit-learn's bundled 8x8 digits, two small float networks trained
deterministically in NumPy, and their ONNX exports (float, and int8 QDQ by onnxruntime).

These are the real workloads of the network front end (issue 17): the float model is the
network as trained, the QDQ model is what an int8 accelerator runs, and onnxruntime's execution
of either is the independent reference.

- `load_split` gives the fixed 1347/450 train/test split, NCHW float32 in [0, 1].
- `train_mlp` (Flatten, Dense 64->64, Relu, Dense 64->10) and `train_cnn` (Conv 3x3 1->8 p1,
  Relu, Conv 3x3 8->16 p1, Relu, MaxPool 2x2, Flatten, Dense 256->10) return a `FloatNet` of
  `tessera.sim.layers` layers with float32 weights. Training is float64 Adam on mini-batches
  drawn from ``np.random.default_rng(seed)``, a fixed number of epochs, with BLAS held to one
  thread, so the weights are the same bit for bit on every run on one machine. Nothing is
  cached: a net is trained on demand (about a second for the MLP, a few for the CNN).
- `export_onnx` writes the float ONNX model; `export_qdq` quantizes it with
  ``onnxruntime.quantization.quantize_static`` (QDQ, int8 activations and weights, per-channel
  weights, MinMax calibration).

`FloatNet.forward` is a plain NumPy reference (`conv2d_direct`, ``x @ w``, `apply_host`), not
the training code's im2col and not the core mapper's (`tessera.sim.lowering`).
"""

from dataclasses import dataclass

import numpy as np

from .layers import Conv2d, Dense, Flatten, MaxPool2d, Relu, apply_host, conv2d_direct


__all__ = ["load_split", "FloatNet", "train_mlp", "train_cnn", "export_onnx", "export_qdq",
           "ort_session", "INPUT_NAME", "OUTPUT_NAME", "TEST_SIZE", "MLP_EPOCHS", "CNN_EPOCHS"]

#: Names of the ONNX models' graph input (N x 1 x 8 x 8 float) and output (N x 10 logits).
INPUT_NAME = "input"
OUTPUT_NAME = "logits"

#: Test images in the split (of 1797); the other 1347 are the training set.
TEST_SIZE = 450

#: Fixed training schedules (epochs of Adam, batch 32).
MLP_EPOCHS = 100
CNN_EPOCHS = 30
_BATCH = 32


def load_split(seed=0):
    """The digits train/test split: ``(x_train, y_train, x_test, y_test)``.

    scikit-learn's bundled ``load_digits()`` (1797 8x8 images of 0..16, no download), split
    1347/450 by ``train_test_split(test_size=450, random_state=seed, stratify=y)``. Images are
    float32 NCHW ``(n, 1, 8, 8)`` divided by 16 (so in [0, 1], multiples of 1/16); labels int64.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = (d.images.astype(np.float64) / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_SIZE, random_state=seed,
                                              stratify=y)
    return (np.ascontiguousarray(x_tr), np.ascontiguousarray(y_tr),
            np.ascontiguousarray(x_te), np.ascontiguousarray(y_te))


def _frozen(a):
    a = np.array(a, dtype=np.float32)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class FloatNet:
    """A trained float network: layers in tessera's vocabulary and their parameters.

    Parameters
    ----------
    name : str
        ``"digits_mlp"`` or ``"digits_cnn"``.
    layers : tuple of layers
        `Dense`/`Conv2d` (with ``bias=True``), `Relu`, `MaxPool2d`, `Flatten`.
    weights : tuple
        One entry per layer: float32 read-only weights (`Dense`: in x out, `Conv2d`: OIHW), or
        ``None`` for a layer without parameters.
    biases : tuple
        One entry per layer: float32 read-only bias of length out, or ``None``.
    input_shape : tuple
        The shape of one input image, ``(1, 8, 8)``.
    """
    name: str
    layers: tuple
    weights: tuple
    biases: tuple
    input_shape: tuple = (1, 8, 8)

    def __post_init__(self):
        n = len(self.layers)
        if len(self.weights) != n or len(self.biases) != n:
            raise ValueError(f"FloatNet: {n} layers but {len(self.weights)} weights and "
                             f"{len(self.biases)} biases; one entry (or None) per layer")
        ws, bs = [], []
        for layer, w, b in zip(self.layers, self.weights, self.biases):
            if isinstance(layer, (Dense, Conv2d)):
                o = layer.out_features if isinstance(layer, Dense) else layer.out_channels
                if w is None or np.shape(w) != layer.weight_shape:
                    raise ValueError(f"FloatNet: {layer.type} weights of shape "
                                     f"{np.shape(w)}, expected {layer.weight_shape}")
                if b is None or np.shape(b) != (o,):
                    raise ValueError(f"FloatNet: {layer.type} bias of shape {np.shape(b)}, "
                                     f"expected ({o},)")
                ws.append(_frozen(w))
                bs.append(_frozen(b))
            else:
                if w is not None or b is not None:
                    raise ValueError(f"FloatNet: {layer.type} has no parameters")
                ws.append(None)
                bs.append(None)
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "weights", tuple(ws))
        object.__setattr__(self, "biases", tuple(bs))
        object.__setattr__(self, "input_shape", tuple(self.input_shape))

    def forward(self, x):
        """Float64 logits (N x 10) of images ``x`` (N x 1 x 8 x 8), layer by layer from the
        float32 parameters: `conv2d_direct`, ``x @ w + b`` and `apply_host`."""
        h = np.asarray(x, dtype=np.float64)
        for layer, w, b in zip(self.layers, self.weights, self.biases):
            if isinstance(layer, Dense):
                h = h @ w.astype(np.float64) + b.astype(np.float64)
            elif isinstance(layer, Conv2d):
                h = conv2d_direct(h, w.astype(np.float64), layer, b.astype(np.float64))
            else:
                h = apply_host(layer, h)
        return h

    def predict(self, x):
        """Class labels (int64) of images ``x``."""
        return np.argmax(self.forward(x), axis=1).astype(np.int64)

    def accuracy(self, x, y):
        """Fraction of images ``x`` whose predicted label equals ``y``."""
        return float(np.mean(self.predict(x) == np.asarray(y)))

    def parameter_count(self):
        """Number of weights and biases."""
        return sum(int(w.size + b.size) for w, b in zip(self.weights, self.biases)
                   if w is not None)


# -- training (float64, NumPy) ------------------------------------------------------------------
def _im2col(xp, kh, kw, oh, ow):
    """(N*OH*OW) x (C*KH*KW) patches of the padded input ``xp``, K in (c, kh, kw) order
    (matching an OIHW weight reshaped to O x K); stride 1."""
    n, c = xp.shape[:2]
    cols = np.empty((n, c, kh, kw, oh, ow))
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i:i + oh, j:j + ow]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, c * kh * kw)


def _col2im(dcols, shape, kh, kw, oh, ow):
    """Adjoint of `_im2col`: the gradient w.r.t. the padded input of shape ``shape``."""
    n, c = shape[:2]
    d = dcols.reshape(n, oh, ow, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    dxp = np.zeros(shape)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + oh, j:j + ow] += d[:, :, i, j]
    return dxp


class _Trainer:
    """Forward/backward over a layer list in float64, and Adam on its parameters."""

    def __init__(self, layers, params, lr):
        self.layers, self.params, self.lr = layers, params, lr
        self.m = [None if p is None else [np.zeros_like(a) for a in p] for p in params]
        self.v = [None if p is None else [np.zeros_like(a) for a in p] for p in params]
        self.t = 0

    def forward(self, x):
        caches = []
        h = x
        for layer, p in zip(self.layers, self.params):
            if isinstance(layer, Dense):
                caches.append(h)
                h = h @ p[0] + p[1]
            elif isinstance(layer, Conv2d):
                (kh, kw), (ph, pw) = layer.kernel, layer.padding
                n, _, oh, ow = layer.out_shape(h.shape)
                xp = np.pad(h, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
                cols = _im2col(xp, kh, kw, oh, ow)
                out = cols @ p[0].reshape(layer.out_channels, -1).T + p[1]
                caches.append((cols, xp.shape, h.shape, (oh, ow)))
                h = out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)
            elif isinstance(layer, Relu):
                caches.append(h > 0)
                h = h * caches[-1]
            elif isinstance(layer, MaxPool2d):
                if layer.kernel != (2, 2) or layer.stride != (2, 2) or layer.padding != (0, 0):
                    raise ValueError("training supports MaxPool2d 2x2/s2/p0 only")
                n, c, hh, ww = h.shape
                blocks = h.reshape(n, c, hh // 2, 2, ww // 2, 2)
                out = blocks.max(axis=(3, 5))
                mask = blocks == out[:, :, :, None, :, None]
                # Ties (rare in floats) send the gradient to the first maximum only.
                first = np.cumsum(np.cumsum(mask, axis=3), axis=5) == 1
                caches.append((mask & first, h.shape))
                h = out
            elif isinstance(layer, Flatten):
                caches.append(h.shape)
                h = h.reshape(h.shape[0], -1)
            else:
                raise ValueError(f"training does not support {layer.type}")
        return h, caches

    def backward(self, g, caches):
        grads = [None] * len(self.layers)
        for idx in range(len(self.layers) - 1, -1, -1):
            layer, p, cache = self.layers[idx], self.params[idx], caches[idx]
            if isinstance(layer, Dense):
                grads[idx] = [cache.T @ g, g.sum(axis=0)]
                g = g @ p[0].T
            elif isinstance(layer, Conv2d):
                cols, xp_shape, x_shape, (oh, ow) = cache
                (kh, kw), (ph, pw) = layer.kernel, layer.padding
                gm = g.transpose(0, 2, 3, 1).reshape(-1, layer.out_channels)
                wm = p[0].reshape(layer.out_channels, -1)
                grads[idx] = [(gm.T @ cols).reshape(p[0].shape), gm.sum(axis=0)]
                if idx == 0:
                    break
                dxp = _col2im(gm @ wm, xp_shape, kh, kw, oh, ow)
                g = dxp[:, :, ph:ph + x_shape[2], pw:pw + x_shape[3]]
            elif isinstance(layer, Relu):
                g = g * cache
            elif isinstance(layer, MaxPool2d):
                mask, shape = cache
                g = (mask * g[:, :, :, None, :, None]).reshape(shape)
            elif isinstance(layer, Flatten):
                g = g.reshape(cache)
        return grads

    def step(self, grads, b1=0.9, b2=0.999, eps=1e-8):
        self.t += 1
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for p, gs, m, v in zip(self.params, grads, self.m, self.v):
            if p is None:
                continue
            for a, g, ma, va in zip(p, gs, m, v):
                ma *= b1
                ma += (1 - b1) * g
                va *= b2
                va += (1 - b2) * g * g
                a -= self.lr * (ma / c1) / (np.sqrt(va / c2) + eps)


def _init(layers, rng):
    """He-normal weights, zero biases (float64), drawn in layer order from ``rng``."""
    params = []
    for layer in layers:
        if isinstance(layer, (Dense, Conv2d)):
            fan_in = layer.gemm_k()
            w = rng.normal(0.0, np.sqrt(2.0 / fan_in), layer.weight_shape)
            o = layer.weight_shape[1] if isinstance(layer, Dense) else layer.weight_shape[0]
            params.append([w, np.zeros(o)])
        else:
            params.append(None)
    return params


def _train(name, layers, seed, epochs, lr):
    from threadpoolctl import threadpool_limits
    x, y, _, _ = load_split(seed)
    x = x.astype(np.float64)
    onehot = np.eye(10)[y]
    rng = np.random.default_rng(seed)
    # One BLAS thread: the same sums in the same order on every run, whatever the machine load.
    with threadpool_limits(limits=1, user_api="blas"):
        tr = _Trainer(layers, _init(layers, rng), lr)
        for _ in range(epochs):
            order = rng.permutation(len(x))
            for i in range(0, len(x), _BATCH):
                b = order[i:i + _BATCH]
                z, caches = tr.forward(x[b])
                p = np.exp(z - z.max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
                tr.step(tr.backward((p - onehot[b]) / len(b), caches))
    return FloatNet(name, tuple(layers),
                    tuple(None if p is None else p[0] for p in tr.params),
                    tuple(None if p is None else p[1] for p in tr.params))


def train_mlp(seed=0):
    """The digits MLP 64-64-10: Flatten, Dense 64->64, Relu, Dense 64->10 (with biases).

    Adam (lr 1e-3), batch 32, `MLP_EPOCHS` epochs of softmax cross-entropy on the training
    split of ``load_split(seed)``; deterministic for ``seed``.
    """
    layers = (Flatten(), Dense(64, 64, bias=True), Relu(), Dense(64, 10, bias=True))
    return _train("digits_mlp", layers, seed, MLP_EPOCHS, 1e-3)


def train_cnn(seed=0):
    """The digits CNN: Conv 3x3 1->8 p1, Relu, Conv 3x3 8->16 p1, Relu, MaxPool 2x2, Flatten,
    Dense 256->10 (with biases).

    Adam (lr 1e-3), batch 32, `CNN_EPOCHS` epochs of softmax cross-entropy on the training
    split of ``load_split(seed)``; deterministic for ``seed``.
    """
    layers = (Conv2d(1, 8, kernel=3, padding=1, bias=True), Relu(),
              Conv2d(8, 16, kernel=3, padding=1, bias=True), Relu(),
              MaxPool2d(kernel=2), Flatten(), Dense(256, 10, bias=True))
    return _train("digits_cnn", layers, seed, CNN_EPOCHS, 1e-3)


# -- ONNX ---------------------------------------------------------------------------------------
def export_onnx(net, path, *, opset=13):
    """Write ``net`` as a float32 ONNX model to ``path`` and return the `onnx.ModelProto`.

    Graph input ``input`` (float, ``[N, 1, 8, 8]``, ``N`` symbolic), output ``logits``
    (float, ``[N, 10]``). Layer ``i`` becomes one node named ``L{i}_{op}`` with output
    ``L{i}_out`` (the last one ``logits``), parameters as initializers ``L{i}.weight`` and
    ``L{i}.bias``: `Dense` -> ``Gemm(x, W, B)`` with ``W`` in x out (transB=0, alpha=beta=1);
    `Conv2d` -> ``Conv(x, W, B)`` (OIHW, kernel_shape/strides/pads/dilations/group); `Relu`;
    `MaxPool2d` -> ``MaxPool`` (kernel_shape/strides/pads); `Flatten` -> ``Flatten(axis=1)``.
    The model passes ``onnx.checker.check_model``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    cur = INPUT_NAME
    last = len(net.layers) - 1
    for i, (layer, w, b) in enumerate(zip(net.layers, net.weights, net.biases)):
        out = OUTPUT_NAME if i == last else f"L{i}_out"
        if isinstance(layer, Dense):
            inits += [numpy_helper.from_array(w, f"L{i}.weight"),
                      numpy_helper.from_array(b, f"L{i}.bias")]
            nodes.append(helper.make_node("Gemm", [cur, f"L{i}.weight", f"L{i}.bias"], [out],
                                          name=f"L{i}_Gemm", alpha=1.0, beta=1.0, transA=0,
                                          transB=0))
        elif isinstance(layer, Conv2d):
            (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
            inits += [numpy_helper.from_array(w, f"L{i}.weight"),
                      numpy_helper.from_array(b, f"L{i}.bias")]
            nodes.append(helper.make_node("Conv", [cur, f"L{i}.weight", f"L{i}.bias"], [out],
                                          name=f"L{i}_Conv", kernel_shape=[kh, kw],
                                          strides=[sh, sw], pads=[ph, pw, ph, pw],
                                          dilations=[1, 1], group=layer.groups))
        elif isinstance(layer, Relu):
            nodes.append(helper.make_node("Relu", [cur], [out], name=f"L{i}_Relu"))
        elif isinstance(layer, MaxPool2d):
            (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
            nodes.append(helper.make_node("MaxPool", [cur], [out], name=f"L{i}_MaxPool",
                                          kernel_shape=[kh, kw], strides=[sh, sw],
                                          pads=[ph, pw, ph, pw]))
        elif isinstance(layer, Flatten):
            nodes.append(helper.make_node("Flatten", [cur], [out], name=f"L{i}_Flatten",
                                          axis=1))
        else:
            raise ValueError(f"export_onnx: {layer.type} is not supported; allowed: Dense, "
                             f"Conv2d, Relu, MaxPool2d, Flatten")
        cur = out
    shape = (1, *net.input_shape)
    for layer in net.layers:
        shape = layer.out_shape(shape)
    graph = helper.make_graph(
        nodes, net.name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", *net.input_shape])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", *shape[1:]])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="tessera",
                              opset_imports=[helper.make_opsetid("", opset)])
    # IR version 8 (ONNX 1.10..1.12, the opset-13..17 era): readable by older runtimes too.
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return model


def ort_session(model):
    """An onnxruntime CPU session of ``model`` (a path or serialized bytes) that executes a QDQ
    graph as it is defined: DequantizeLinear, the float operator, QuantizeLinear (round half
    to even), with graph optimizations off.

    With them on, onnxruntime fuses DQ -> Gemm/Conv -> Q into its int8 kernels; on x86 CPUs
    without VNNI (AVX2 only, like the CI machines) those sum pairs of u8 x s8 products in
    saturating 16-bit lanes (``vpmaddubsw``), so large activations and weights give results
    up to 15 levels away from the model's own semantics (onnxruntime's documentation on
    quantization suggests ``reduce_range`` there). A reference must not depend on the CPU."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), so,
                                providers=["CPUExecutionProvider"])


def export_qdq(float_onnx_path, calib_x, path, *, batch=256):
    """Quantize the float model at ``float_onnx_path`` to int8 QDQ at ``path``; returns the
    loaded `onnx.ModelProto`.

    ``onnxruntime.quantization.quantize_static`` with ``quant_format=QDQ``, int8 activations
    (asymmetric, MinMax ranges over ``calib_x``), int8 per-channel symmetric weights, int32
    biases. ``calib_x`` (N x 1 x 8 x 8) is fed whole in batches of ``batch`` images (MinMax
    does not depend on the batching); the networks here use the full training split (1347
    images), so every activation range is the range over all the data the net was fit to.

    No ``quant_pre_process`` step: these graphs carry full shapes and have nothing to fold, and
    with it (``skip_symbolic_shape=True``; the symbolic pass needs sympy, not installed) the
    quantized graph and initializers come out identical. onnxruntime still logs a "consider
    pre-processing" warning on the root logger. The output is the same byte for byte on reruns.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    x = np.ascontiguousarray(calib_x, dtype=np.float32)

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(range(0, len(x), batch))

        def get_next(self):
            i = next(self._it, None)
            return None if i is None else {INPUT_NAME: x[i:i + batch]}

    quantize_static(str(float_onnx_path), str(path), _Reader(),
                    quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True,
                    calibrate_method=CalibrationMethod.MinMax)
    return onnx.load(str(path))
