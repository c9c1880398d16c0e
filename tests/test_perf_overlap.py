"""The performance model's ping-pong schedule (`tessera.sim.perf`) against the real driver.

On cores whose stores have two banks the GEMM mapper sends each RUN while the previous one
executes (`GemmMapper.overlaps`). Expected values never come from `predict`: the bytes are
what the driver sent and received on the golden core, and the time is a timeline replayed from
the driver's own message sequence (each message's line time from `Link`, each RUN's cycles
from the golden core, a held RUN starting when the previous one completes, the wait's one poll
sent when the last RUN completes).
"""

import numpy as np
import pytest

from tessera.hdl.ctrl.protocol import Op
from tessera.sim.layers import Conv2d, Dense, Flatten
from tessera.sim.perf import Link, predict
from helpers import derive
from overlap_replay import drive, sent, timeline

SMALL = {"a_depth": 16, "b_depth": 16, "c_depth": 16}
BANKS = {"a_banks": 2, "b_banks": 2, "c_banks": 2}
REQ = {"array": {"rows": 4, "cols": 4}}
WS = {"rows": 3, "cols": 4, "dataflow": "weight_stationary"}


def configs():
    """(name, banked config, the same config with one bank per store, epilogue params)."""
    epi = {"scale": 0.01, "zero_point": 3, "activation": "relu"}
    return [
        ("int8", derive("int8-4x4", memory={**SMALL, **BANKS}), derive("int8-4x4", memory=SMALL),
         None),
        ("requant", derive("int8-requant", **REQ, memory={**SMALL, "p_depth": 4,
                                                          **{f"{s}_banks": 2 for s in "abcpr"}}),
         derive("int8-requant", **REQ, memory={**SMALL, "p_depth": 4}), epi),
        ("ws-int8", derive("int8-4x4", array=WS, memory={**SMALL, **BANKS}),
         derive("int8-4x4", array=WS, memory=SMALL), None),
        ("ws-requant", derive("int8-requant", array=WS, memory={
            **SMALL, "p_depth": 4, **{f"{s}_banks": 2 for s in "abcpr"}}),
         derive("int8-requant", array=WS, memory={**SMALL, "p_depth": 4}), epi),
    ]


#: Layers with one and many blocks, ragged M and N blocks, one, two and three K chunks, and
#: a grouped convolution (one GEMM per group).
LAYERS = [
    (Dense(8, 4), (4, 8)),                                     # one RUN
    (Dense(21, 9), (11, 21)),                                  # 3 x 3 blocks, 2 K chunks
    (Dense(40, 10), (9, 40)),                                  # 3 K chunks (a middle one)
    (Dense(6, 26), (17, 6)),                                   # ragged M and N blocks
    (Conv2d(3, 5, kernel=3, padding=1), (1, 3, 6, 5)),
    (Conv2d(4, 4, kernel=3, padding=1, groups=4), (1, 4, 5, 5)),
]

LINKS = [Link(baud=115200), Link(baud=3e6), Link(baud=2e8, clock_hz=12e6),
         Link(baud=1e9, max_payload=None, clock_hz=20e6), Link(baud=3e6, clock_hz=1e5)]


@pytest.mark.parametrize("name", ["int8", "requant", "ws-int8", "ws-requant"])
def test_bytes_equal_the_driver(name):
    """Bytes to and from the core equal the driver's exactly: ping-pong (banked, the default
    driver), the same banked core with a driver that does not overlap, and one bank; the
    ping-pong schedule sends one STATUS per RUN after the first plus the wait's one poll."""
    _, banked, single, epi = next(c for c in configs() if c[0] == name)
    assert banked.engine.mapper().overlaps(type("D", (), {"overlap": True}),
                                           epilogue=epi is not None)
    for layer, shape in LAYERS:
        for cfg, overlap in ((banked, True), (banked, False), (single, True)):
            msgs, st = drive(cfg, layer, shape, epilogue=epi, overlap=overlap)
            pr = predict(layer, cfg, input_shape=shape, epilogue=epi is not None,
                         overlap=overlap)
            assert (pr.bytes_to_core, pr.bytes_from_core) == sent(msgs) \
                == (st.bytes_out, st.bytes_in), (name, layer, shape, overlap)
            assert pr.runs == st.runs
            assert pr.layers[0].overlapped == (cfg is banked and overlap)
            statuses = sum(m[0] == Op.STATUS for m in msgs)
            assert statuses == st.runs, (layer, statuses, st.runs)
            if cfg is banked and overlap:          # the STATUS polls of wait(): one per GEMM
                polls = sum(m[0] == Op.STATUS and m[4] for m in msgs)
                assert polls == len(st.gemms)


@pytest.mark.parametrize("name", ["int8", "requant", "ws-int8", "ws-requant"])
def test_seconds_equal_the_replayed_timeline(name):
    """``seconds`` equals the timeline of the driver's real message order, on links from
    115200 baud (the link dominates) to a core clocked slowly (the RUNs dominate), for the
    ping-pong and the sequential schedule; overlapped seconds lie between
    ``serial + max(compute, the rest of the link)`` and ``compute + link``."""
    _, banked, single, epi = next(c for c in configs() if c[0] == name)
    between = 0
    for li, (layer, shape) in enumerate(LAYERS):
        pp, _ = drive(banked, layer, shape, epilogue=epi, seed=li)
        seq, _ = drive(single, layer, shape, epilogue=epi, seed=li)
        for link in LINKS:
            clk = link.clock_hz or banked.core.clock_mhz * 1e6
            pr = predict(layer, banked, input_shape=shape, epilogue=epi is not None, link=link)
            ps = predict(layer, single, input_shape=shape, epilogue=epi is not None, link=link)
            lp = pr.layers[0]
            assert lp.overlapped and not ps.layers[0].overlapped
            assert lp.seconds == pytest.approx(timeline(pp, link, clk), rel=1e-9), \
                (layer, link)
            assert ps.seconds == pytest.approx(
                timeline(seq, link, clk, answer_at_start=False), rel=1e-9)
            assert ps.seconds == pytest.approx(ps.compute_s + ps.link_s, rel=1e-12)
            # the banked core's sequential figure is the one-bank core's time
            assert lp.sequential_s == pytest.approx(ps.seconds, rel=1e-12)
            assert ps.layers[0].serial_link_s == ps.link_s
            eps = 1e-12 * lp.sequential_s
            assert lp.seconds <= lp.sequential_s + eps
            assert lp.seconds >= max(lp.compute_s, lp.link_s) - eps
            assert lp.seconds >= lp.serial_link_s \
                + max(lp.compute_s, lp.link_s - lp.serial_link_s) - eps
            assert 0 < lp.serial_link_s < lp.link_s or pr.runs == 1
            if lp.seconds < lp.sequential_s - eps and \
                    lp.seconds > max(lp.compute_s, lp.link_s) + eps:
                between += 1
    assert between >= 5      # the overlap matters on some points, and neither side is free


def test_cycles_do_not_depend_on_banks():
    """The RUNs and their cycles are the same with one or two banks per store (and equal the
    golden core's); only the time on a link changes."""
    for _, banked, single, epi in configs():
        for li, (layer, shape) in enumerate(LAYERS):
            pb = predict(layer, banked, input_shape=shape, epilogue=epi is not None)
            ps = predict(layer, single, input_shape=shape, epilogue=epi is not None)
            assert (pb.cycles, pb.runs, pb.terms) == (ps.cycles, ps.runs, ps.terms)
            _, st_b = drive(banked, layer, shape, epilogue=epi, seed=li)
            _, st_s = drive(single, layer, shape, epilogue=epi, seed=li)
            assert st_b.run_cycles == st_s.run_cycles and pb.cycles == st_b.cycles


def test_what_does_not_overlap():
    """One store with one bank, or a driver that does not overlap: the sequential schedule
    (``seconds`` is compute plus link); without a link ``seconds`` is None but the flag
    stands."""
    small = {**SMALL, "p_depth": 4}
    half = derive("int8-requant", **REQ,
                  memory={**small, **{f"{s}_banks": 2 for s in "abcpr"}, "p_banks": 1})
    layer, shape = Dense(21, 9), (11, 21)
    link = Link(baud=3e6)
    # P has one bank: the epilogue's layers do not overlap, the others do
    assert not predict(layer, half, input_shape=shape, epilogue=True, link=link) \
        .layers[0].overlapped
    pr = predict(layer, half, input_shape=shape, link=link)
    assert pr.layers[0].overlapped and pr.seconds < pr.sequential_s
    _, banked, _, _ = configs()[0]
    off = predict(layer, banked, input_shape=shape, link=link, overlap=False)
    assert not off.layers[0].overlapped
    assert off.seconds == pytest.approx(off.compute_s + off.link_s)
    bare = predict(layer, banked, input_shape=shape)
    assert bare.layers[0].overlapped and bare.seconds is None and bare.sequential_s is None


def test_network_totals_and_dict():
    """A network's totals: ``seconds`` sums the layers' (overlapped or not), ``sequential_s``
    is compute plus link, host layers cost nothing; both are in `as_dict` with the flag."""
    _, banked, _, _ = configs()[0]
    net = [(Conv2d(3, 5, kernel=3, padding=1), (1, 3, 6, 5)), (Flatten(), (1, 5, 6, 5)),
           (Dense(150, 9), (1, 150))]
    pr = predict(net, banked, link=Link(baud=2e8, clock_hz=12e6))
    assert [p.overlapped for p in pr.layers] == [True, False, True]
    assert pr.overlapped_layers == 2
    assert pr.seconds == pytest.approx(sum(p.seconds for p in pr.layers))
    assert pr.sequential_s == pytest.approx(pr.compute_s + pr.link_s)
    assert pr.seconds < pr.sequential_s
    assert pr.serial_link_s == pytest.approx(sum(p.serial_link_s for p in pr.layers))
    d = pr.as_dict()
    assert d["seconds"] == pr.seconds and d["sequential_s"] == pr.sequential_s
    assert d["overlapped_layers"] == 2
    assert [(x["overlapped"], x["seconds"]) for x in d["layers"]] == \
        [(p.overlapped, p.seconds) for p in pr.layers]
    assert d["layers"][1]["seconds"] == 0.0
