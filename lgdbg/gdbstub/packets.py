"""RSP framing: `$payload#cs`, acks, the 0x03 interrupt byte, binary escapes.

Nothing here knows about the machine, so the codec can be tested (and fuzzed)
on its own.
"""

import zlib

INTERRUPT = b"\x03"
_ESCAPED = frozenset(b"#$}*")


def checksum(payload):
    """The sum of the bytes, modulo 256.

    sum() visits a 128 KiB memory reply byte by byte in Python (~2 ms, most of
    a large `m`); zlib.adler32's first half is 1 + the byte sum, exact while
    a chunk sums below 65521, which 256 bytes always do.
    """
    if len(payload) < 1024:
        return sum(payload) & 0xFF
    view = memoryview(payload)
    total = 0
    for i in range(0, len(payload), 256):
        total += (zlib.adler32(view[i:i + 256]) & 0xFFFF) - 1
    return total & 0xFF


def frame(payload):
    """bytes payload -> one framed packet."""
    if isinstance(payload, str):
        payload = payload.encode("latin-1")
    return b"$%s#%02x" % (payload, checksum(payload))


def escape(data):
    """Binary data for a reply (X-style escaping of # $ } *)."""
    out = bytearray()
    for b in data:
        if b in _ESCAPED:
            out += bytes((0x7D, b ^ 0x20))
        else:
            out.append(b)
    return bytes(out)


def unescape(data):
    """The inverse of escape(), for the payload of X and vFile packets."""
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == 0x7D:
            nxt = next(it, None)
            if nxt is None:
                raise ValueError("escape at end of data")
            out.append(nxt ^ 0x20)
        else:
            out.append(b)
    return bytes(out)


class Reader:
    """Incremental parser: feed bytes, get events.

    Events are ("packet", payload), ("interrupt", None), ("ack", None),
    ("nack", None) and ("bad", payload) for a checksum mismatch.  Stray bytes
    between packets are ignored, as gdb's own stubs do.
    """

    # A packet bigger than this is garbage, not a request (PacketSize is less).
    MAX = 1 << 20

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data):
        self._buf += data
        events = []
        buf = self._buf
        while buf:
            c = buf[0]
            if c == 0x24:                      # '$'
                end = buf.find(b"#")
                if end < 0:
                    if len(buf) > self.MAX:
                        del buf[:]
                        events.append(("bad", b""))
                    break
                if len(buf) < end + 3:
                    break
                payload = bytes(buf[1:end])
                sent = bytes(buf[end + 1:end + 3])
                del buf[:end + 3]
                try:
                    ok = int(sent, 16) == checksum(payload)
                except ValueError:
                    ok = False
                events.append(("packet" if ok else "bad", payload))
            else:
                del buf[0]
                if c == 0x03:
                    events.append(("interrupt", None))
                elif c == 0x2B:                # '+'
                    events.append(("ack", None))
                elif c == 0x2D:                # '-'
                    events.append(("nack", None))
        return events


def hexs(data):
    return data.hex()


def unhex(text):
    """Hex text (bytes or str) -> bytes; ValueError when it is not hex."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    return bytes.fromhex(text)


def console_packets(text, limit=0x3F00):
    """Console text -> `O` packet payloads (hex), split to fit PacketSize."""
    if isinstance(text, str):
        text = text.encode("utf-8", "replace")
    chunk = max(1, (limit - 1) // 2)
    return [b"O" + text[i:i + chunk].hex().encode() for i in range(0, len(text), chunk)]
