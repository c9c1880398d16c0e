"""The performance model's FEIE engine (`tessera.sim.perf`, docs/perf.md): the engine's own
plan (`tessera.sim.engines.feie.plan_conv`) and per-RUN closed form (`feie.predict`), fed the
activations' non-zeros per output row, chunk and column, counted by a vector op."""

import numpy as np

__all__ = ["layer_runs", "feie_row_nonzeros", "overlap_seconds"]


def layer_runs(cfg, acc, proto, layer, shape, item, *, mode, epilogue, density):
    """Count ``layer``'s RUNs (input ``shape``) into ``acc`` and its host messages into
    ``proto``, from the activations ``item["x"]`` (codes, or values with ``item["values"]``)
    or, without them, ``density``. Returns the layer's plan: each convolution's RUN events
    (`feie.plan_conv`), which `predict` hands to `overlap_seconds`."""
    x = item.get("x")
    if x is not None and item.get("values"):
        x = cfg.pe.encode(np.asarray(x), operand="a", mode=mode)
    return _feie_runs(cfg, acc, proto, layer, shape, x, item.get("density", density))


def feie_row_nonzeros(x, layer, q_chunk, *, per_column=False):
    """Non-zero activations per (image, output row, sub-position chunk) a FEIE RUN streams:
    ``x`` (N x C x H x W codes), chunks of ``q_chunk`` sub-positions (input channel, filter
    row) in the mapper's order, over the columns an output reaches (the mapper encodes no
    other). Returns N x chunks x OH; with ``per_column``, N x chunks x OH x WP (WP the padded
    width: the count per padded column, which `feie.predict` places exactly)."""
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel, layer.stride, layer.padding
    x = np.asarray(x)
    nb, c, h, w = x.shape
    wp = w + 2 * pw
    ow = (wp - kw) // sw + 1
    span = max(0, min(wp, sw * (ow - 1) + kw))
    nzc = np.zeros((nb, c, h + 2 * ph, wp), dtype=np.int64)
    nzc[:, :, ph:ph + h, pw:pw + w] = x != 0
    nzc[..., span:] = 0
    oh = (h + 2 * ph - kh) // sh + 1
    rows = np.arange(oh)[None, :] * sh + np.arange(kh)[:, None]  # kh x OH
    per_q = nzc[:, :, rows].reshape(nb, c * kh, oh, wp)          # q = c*kh + i
    out = np.add.reduceat(per_q, np.arange(0, c * kh, q_chunk), axis=1)
    return out if per_column else out.sum(axis=3)


def _feie_conv(cfg, acc, proto, x_shape, layer, nonzeros):
    """A FEIE convolution's RUNs as the engine plans them (`feie.plan_conv`: the mapper's
    blocks of output rows and sub-position chunks, each RUN's cycles by the engine's own
    closed form `feie.predict`), counted into terms and host bytes; returns its RUN events
    (for `overlap_seconds`)."""
    from tessera.sim.engines import feie
    plan = []
    for ev in feie.plan_conv(cfg, x_shape, layer, nonzeros):
        plan.append(ev)
        if ev[0] == "read":
            _, words, groups = ev
            proto.read("c", words, groups)
            continue
        _, groups, q, entries, cycles, broadcasts = ev
        acc.run(groups, check=feie.START_CYCLES, compute=broadcasts,
                fill_drain=cycles - feie.START_CYCLES - broadcasts)
        proto.write("w", q, groups)
        if entries:
            proto.write("a", entries, groups)
        proto.run(groups)
    return plan


def _feie_runs(cfg, acc, proto, layer, in_shape, x, density):
    from tessera.sim.engines import feie
    from tessera.sim.layers import Conv2d, Dense
    lower = feie.FeieLowering(cfg)
    d = lower.d
    if isinstance(layer, Dense):            # a 1x1 convolution over a 1 x M image (the mapper)
        m, k = in_shape
        width = max(1, min(m, 64, d["a"], d["c"] * cfg.array.pes
                           * getattr(cfg.array, "drain", 1)))
        rows = -(-m // width)
        conv = Conv2d(k, layer.out_features, kernel=1)
        shape = (1, k, rows, width)
        if x is not None:
            ap = np.zeros((rows * width, k), dtype=np.uint64)
            ap[:m] = np.asarray(x, dtype=np.uint64)
            x = ap.T.reshape(shape)
        parts = [(conv, shape, x, rows * width - m)]
    elif layer.groups == 1:
        parts = [(layer, tuple(in_shape), x, 0)]
    else:                                   # depthwise: one single-channel conv per group
        og = layer.out_channels // layer.groups
        sub = Conv2d(1, og, kernel=layer.kernel, stride=layer.stride, padding=layer.padding)
        n, _, h, w = in_shape
        parts = [(sub, (n, 1, h, w), None if x is None else np.asarray(x)[:, gi:gi + 1], 0)
                 for gi in range(layer.groups)]
    plans = []
    for conv, shape, xs, pad in parts:
        qc = lower.plan_q(shape[1] * conv.kernel[0], shape[3] + 2 * conv.padding[1])
        if xs is not None:
            nz = feie_row_nonzeros(xs, conv, qc, per_column=True)
        else:
            nz = _feie_density_counts(conv, shape, qc, 1.0 if density is None else density,
                                      pad)
        plans.append(_feie_conv(cfg, acc, proto, shape, conv, nz))
    return plans


def _feie_density_counts(layer, shape, qc, density, pad):
    """Expected non-zeros per (image, chunk, output row) when only a density is known: the
    pixels of each input row times ``density`` (padding contributes none; ``pad``: zero
    pixels at the end of the last input row, a Dense layer's rows past M)."""
    (kh, _), (sh, _), (ph, _) = layer.kernel, layer.stride, layer.padding
    nb, c, h, w = shape
    oh = (h + 2 * ph - kh) // sh + 1
    pixels = np.zeros(h + 2 * ph)
    pixels[ph:ph + h] = w
    pixels[ph + h - 1] -= pad
    rows = np.arange(oh)[None, :] * sh + np.arange(kh)[:, None]     # kh x OH
    per_q = np.tile(pixels[rows], (c, 1)) * density                 # q = c*kh + i
    out = np.rint(np.add.reduceat(per_q, np.arange(0, c * kh, qc), axis=0)).astype(np.int64)
    return np.broadcast_to(out, (nb, *out.shape))


def overlap_seconds(cfg, lt, proto, layer, shape, *, mode, epilogue, plan=None):
    """Ping-pong time of ``layer`` on the FEIE mapper (`FeieLowering.conv` with banked A, W
    and C): ``(seconds, serial link seconds)``, summed over its convolutions (one per group of
    a depthwise layer, each a `FeieLowering.conv` call with its own head and tail).

    The RUNs are ``plan``, the ones `layer_runs` derived for the layer and returned
    (`feie.plan_conv`: its blocks of output rows and sub-position chunks, each RUN's cycles by
    the closed form `feie.predict`; without it they are derived again at density 1). The
    mapper issues them tile of output channels by tile, each tile's pass the same RUN shapes,
    so the time is the sum over one pass's RUNs (vectors) of ``max(cycles_i / clock, o_i)``
    for the first, the middle and the last pass, plus the head (the first RUN's W and A
    WRITEs and its command) and the tail (the final wait's one poll, the last block's READ).
    ``o_i``, the host's work while RUN i executes: its answer, the STATUS of the previous
    RUN's cycles (not after the first), the previous block's READ (after a block's first
    RUN), then the next RUN's W and A (when it has entries) WRITEs and its command.

    ``predict`` is not cycle-exact on this engine (done-queue stalls are not counted), so
    neither is this time: within a fraction of a percent of the replayed schedule."""
    plans = plan
    if plans is None:
        from tessera.sim.perf import LayerPrediction, _Acc, _Proto
        scratch = _Proto(cfg, _Acc(LayerPrediction(0, layer, tuple(shape))))
        plans = layer_runs(cfg, scratch.acc, scratch, layer, shape, {}, mode=mode,
                           epilogue=epilogue, density=None)
    run_q, run_r = lt.q(proto.run_msg()[0]), lt.r(proto.run_msg()[1])
    status = lt.rt(proto.status_msg())
    total = serial = 0.0
    for plan in plans:
        t, s = _conv_overlap(lt, proto, plan, run_q, run_r, status)
        total += t
        serial += s
    return total, serial


def _conv_overlap(lt, proto, plan, run_q, run_r, status):
    """One `FeieLowering.conv` call's ping-pong time from its `plan_conv` events."""
    cyc, load, first, prev_read = [], [], [], []
    last_read, new_block, groups = 0.0, True, 1
    for ev in plan:
        if ev[0] == "read":
            _, words, groups = ev
            last_read = lt.rt(proto.read_msg("c", words))
            new_block = True
            continue
        _, groups, q, entries, cycles, _ = ev
        cyc.append(cycles / lt.clk)
        load.append(lt.rt(proto.write_msg("w", q))
                    + (lt.rt(proto.write_msg("a", entries)) if entries else 0.0))
        first.append(new_block)
        prev_read.append(last_read)            # the block before's READ (0 for the first)
        new_block = False
    if not cyc:
        return 0.0, 0.0
    cyc, load = np.asarray(cyc), np.asarray(load)
    first, prev_read = np.asarray(first), np.asarray(prev_read)
    # A pass's first RUN follows the previous pass's last block: its READ.
    prev_read[0] = last_read
    nxt = np.append(load[1:], load[0]) + run_q     # the next RUN's WRITEs and command
    head = load[0] + run_q
    tail = status + last_read

    def pass_time(is_first, is_last):
        st = np.full(len(cyc), status)
        rd = np.where(first, prev_read, 0.0)
        nx = nxt.copy()
        if is_first:                 # the call's first RUN: no STATUS, no READ before it
            st[0] = rd[0] = 0.0
        if is_last:                  # the call's last RUN: nothing sent after it
            nx[-1] = 0.0
        return float(np.maximum(cyc, run_r + st + rd + nx).sum())

    if groups == 1:
        body = pass_time(True, True)
    else:
        body = pass_time(True, False) + pass_time(False, True) \
            + (groups - 2) * pass_time(False, False)
    return head + body + tail, head + tail
