#!/usr/bin/env python3
"""Generate the G.711 mu-law reference table from CPython's audioop.

callstream's codec must produce exactly the bytes a Python bot produces with
audioop.lin2ulaw / audioop.ulaw2lin, so this table is made by audioop itself
(Python <= 3.12; on 3.13+ install the `audioop-lts` package, same C code).

Layout of ulaw_audioop.bin (66,048 bytes):
  bytes 0 .. 65535     lin2ulaw of every 16-bit sample, from -32768 up to 32767
                       (byte i is the encoding of sample i - 32768)
  bytes 65536 .. 66047 ulaw2lin of every code 0x00 .. 0xFF, as little-endian i16

Usage:
  python3 ulaw_audioop.py            # rewrite ulaw_audioop.bin next to this script
  python3 ulaw_audioop.py --check    # compare with the committed file, exit 1 on mismatch
Prints the table's SHA-256, which core/tests/codec_reference.rs also checks.
"""
import hashlib
import os
import struct
import sys
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop


def table() -> bytes:
    samples = struct.pack("<65536h", *range(-32768, 32768))
    encoded = audioop.lin2ulaw(samples, 2)
    decoded = audioop.ulaw2lin(bytes(range(256)), 2)
    # audioop works in native byte order; the file is little-endian.
    if sys.byteorder != "little":
        decoded = audioop.byteswap(decoded, 2)
    assert len(encoded) == 65536 and len(decoded) == 512
    return encoded + decoded


def main() -> int:
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ulaw_audioop.bin")
    data = table()
    digest = hashlib.sha256(data).hexdigest()
    if "--check" in sys.argv[1:]:
        with open(path, "rb") as f:
            committed = f.read()
        if committed != data:
            print(f"MISMATCH: {path} differs from audioop (audioop sha256 {digest})")
            return 1
        print(f"ok {digest}")
        return 0
    with open(path, "wb") as f:
        f.write(data)
    print(f"wrote {path} ({len(data)} bytes) sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
