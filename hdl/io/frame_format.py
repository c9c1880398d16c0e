"""The framed host link's wire format as plain Python: the framer HDL (`tessera.hdl.io.framing`),
its golden twin and the host side (`tessera.sim.framing`) all read these numbers.

A frame (all multi-byte header fields little-endian; the two CRCs most significant byte first,
so that running the CRC over a field and its CRC leaves 0)::

    offset  bytes  field
    0       1      SYNC  0xA5
    1       1      TYPE  'D' data, 'A' ack, 'N' nak, 'H' hello
    2       2      SEQ   data: stream offset of the first payload byte (mod 2**16);
                         ack/nak: the receiver's next expected offset; hello: a nonce
    4       2      LEN   payload bytes (data: 1..max_payload; ack: 0; nak: 1; hello: 0 or 7)
    6       2      HCRC  CRC-16/IBM-3740 of bytes 1..5
    8       LEN    PAYLOAD
    8+LEN   2      PCRC  CRC-16/IBM-3740 of the payload (only when LEN > 0)

docs/link.md has the protocol (go-back-N over byte offsets, NAK rules, HELLO).
"""

__all__ = ["SYNC", "DATA", "ACK", "NAK", "HELLO", "HEADER_BYTES", "CRC_BYTES", "LINK_VERSION",
           "HELLO_REPLY_BYTES", "Reason", "REASON_TEXT", "SEQ_MOD", "check_link_sizes"]

SYNC = 0xA5
DATA = ord("D")
ACK = ord("A")
NAK = ord("N")
HELLO = ord("H")

#: SYNC, TYPE, SEQ, LEN, HCRC.
HEADER_BYTES = 8
#: PCRC after a non-empty payload.
CRC_BYTES = 2
#: Sequence numbers are byte offsets modulo this.
SEQ_MOD = 1 << 16
#: Version of the link protocol, first byte of the HELLO reply.
LINK_VERSION = 1
#: HELLO reply payload: version u8, max_payload u16, rx_buffer u16, tx_buffer u16.
HELLO_REPLY_BYTES = 7


class Reason:
    """Why a frame was refused: the payload byte of a NAK frame."""
    CRC = 1          # payload CRC mismatch
    HEADER = 2       # header CRC mismatch
    SEQUENCE = 3     # data frame not at the expected offset (an earlier frame was lost)
    LENGTH = 4       # data frame with LEN 0 or above max_payload
    FULL = 5         # no room in the receive buffer for the payload
    TYPE = 6         # unknown frame type
    TRUNCATED = 7    # the line went quiet inside a frame


REASON_TEXT = {
    Reason.CRC: "payload CRC error",
    Reason.HEADER: "header CRC error",
    Reason.SEQUENCE: "frame out of sequence (an earlier frame was lost)",
    Reason.LENGTH: "bad payload length",
    Reason.FULL: "receive buffer full",
    Reason.TYPE: "unknown frame type",
    Reason.TRUNCATED: "truncated frame (the line went quiet inside it)",
}


def check_link_sizes(max_payload, rx_buffer, tx_buffer):
    """Check the framer's sizes; raise ValueError naming the first bad one.

    ``max_payload`` 1..32768; ``rx_buffer`` and ``tx_buffer`` powers of two in 16..32768, each at
    least ``max_payload``.
    """
    if not isinstance(max_payload, int) or isinstance(max_payload, bool) \
            or not 1 <= max_payload <= 32768:
        raise ValueError(f"max_payload must be an integer in 1..32768, not {max_payload!r}")
    for name, value in (("rx_buffer", rx_buffer), ("tx_buffer", tx_buffer)):
        if not isinstance(value, int) or isinstance(value, bool) or not 16 <= value <= 32768 \
                or value & (value - 1):
            raise ValueError(f"{name} must be a power of two in 16..32768, not {value!r}")
        if value < max_payload:
            raise ValueError(f"{name} must be at least max_payload ({max_payload}), "
                             f"not {value!r}")
