#!/usr/bin/env python3
"""Generate the demo book covers data/demo/files/demo-<id>-cover.png (stdlib only).

Each cover is a small 160x240 RGB PNG: a vertical gradient in the book's colour, a light
frame, a title band and the book id drawn with a tiny built-in bitmap font. The output is
deterministic for a given zlib, so rerunning only changes the files if the design changes.

Usage: python3 scripts/gen-demo-covers.py
"""

import json
import struct
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOKS = ROOT / "data" / "demo" / "books.json"
OUT = ROOT / "data" / "demo" / "files"

W, H = 160, 240

# Base colours per book id (dark enough for a light frame and text).
COLOURS = {
    1: (122, 30, 36),    # Война и мир: burgundy
    2: (200, 150, 20),   # JavaScript для чайников: yellow
    3: (36, 92, 52),     # Туда и обратно: green
    4: (30, 52, 110),    # Государство: blue
}

# 3x5 digit glyphs, rows top to bottom.
DIGITS = {
    "0": ["111", "101", "101", "101", "111"],
    "1": ["010", "110", "010", "010", "111"],
    "2": ["111", "001", "111", "100", "111"],
    "3": ["111", "001", "111", "001", "111"],
    "4": ["101", "101", "111", "001", "001"],
    "5": ["111", "100", "111", "001", "111"],
    "6": ["111", "100", "111", "101", "111"],
    "7": ["111", "001", "010", "010", "010"],
    "8": ["111", "101", "111", "101", "111"],
    "9": ["111", "101", "111", "001", "111"],
}


def mix(a, b, t):
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def render(book_id):
    base = COLOURS.get(book_id, (90, 90, 90))
    dark = mix(base, (0, 0, 0), 0.55)
    light = (245, 238, 220)
    px = [[mix(base, dark, y / (H - 1)) for _ in range(W)] for y in range(H)]

    def rect(x0, y0, x1, y1, colour):
        for y in range(max(0, y0), min(H, y1)):
            row = px[y]
            for x in range(max(0, x0), min(W, x1)):
                row[x] = colour

    # frame: a 3 px light line 8 px from the edge
    rect(8, 8, W - 8, 11, light)
    rect(8, H - 11, W - 8, H - 8, light)
    rect(8, 8, 11, H - 8, light)
    rect(W - 11, 8, W - 8, H - 8, light)
    # title band with a thin accent line
    rect(11, 40, W - 11, 76, light)
    rect(24, 84, W - 24, 86, light)
    for i in range(5):  # "text lines" on the band
        rect(22, 48 + i * 5, W - 22 - (i * 13) % 40, 50 + i * 5, dark)
    # the id, big, in the lower half
    glyphs = str(book_id)
    scale = 12
    gw = len(glyphs) * 4 * scale - scale
    x0, y0 = (W - gw) // 2, 120
    for n, ch in enumerate(glyphs):
        for r, bits in enumerate(DIGITS[ch]):
            for c, bit in enumerate(bits):
                if bit == "1":
                    x = x0 + n * 4 * scale + c * scale
                    y = y0 + r * scale
                    rect(x, y, x + scale, y + scale, light)
    return px


def png(px):
    raw = b"".join(b"\x00" + bytes(v for p in row for v in p) for row in px)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def main():
    books = json.loads(BOOKS.read_text(encoding="utf-8"))
    OUT.mkdir(parents=True, exist_ok=True)
    for book in books:
        path = OUT / book["fileNameCover"]
        path.write_bytes(png(render(book["id"])))
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
