"""The host-link signature every byte-stream core offers (testbenches, UART bridge, boards)."""

from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out


__all__ = ["HostLinkSignature"]


class HostLinkSignature(wiring.Signature):
    """What every byte-stream core offers a host link (a testbench, a UART bridge).

    Members
    -------
    i : In(stream.Signature(8))
        Command bytes from the host.
    o : Out(stream.Signature(8))
        Response bytes to the host.
    busy : Out(1)
        A RUN is executing.
    error : Out(1)
        An error was reported and not yet read by STATUS.
    """

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(8)),
            "o": Out(stream.Signature(8)),
            "busy": Out(1),
            "error": Out(1),
        })

    def __eq__(self, other):
        # A flipped HostLinkSignature is an isinstance match too, with i/o reversed: refuse it.
        return type(other) is not wiring.FlippedSignature and isinstance(other, HostLinkSignature)

    def __repr__(self):
        return "HostLinkSignature()"
