"""Damaged but decodable image files, found from their structure without decoding them.

A JPEG whose image data holds a long run of zero bytes (a failed copy, a bad disk sector)
decodes to a smeared picture without an error; a PNG with a wrong chunk checksum or no end
chunk half-loads. These checks read the files' structure only (markers, Huffman tables,
chunk CRCs); libjpeg's own warnings during a real decode (`tfl.data.images`) catch the rest.
"""

from __future__ import annotations

import re
import typing
import zlib

# A run of zero bytes this long inside JPEG image data is a zeroed block (a failed copy, a bad disk
# sector), unless zero bits are what a flat area encodes to with the scan's Huffman tables (then the
# run can be real, and libjpeg's own check below is what is left).
JPEG_ZERO_RUN = 32


# Where JPEG image data ends: a marker other than a stuffed 0xFF00 or a restart marker.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")


def jpeg_damage(contents: bytes) -> typing.Optional[str]:
    """Why a JPEG that decodes is damaged anyway, from its structure (no decoding), or None.

    Reads the markers and the Huffman tables and looks for a block of zero bytes inside a scan's
    image data that cannot be a flat area: decoders fill the rest of the image with smeared
    garbage from there, often without a word (libjpeg stays silent in about 1 of 7 such files).
    Arithmetic-coded and lossless JPEGs are not looked into.
    """
    n, pos = len(contents), 2
    tables: typing.Dict[typing.Tuple[int, int], int] = {}  # (class 0 DC / 1 AC, id) -> first symbol
    coded = False
    while pos + 4 <= n:
        if contents[pos] != 0xFF:
            return None  # not a marker where one must be: Pillow and libjpeg judge this themselves
        marker = contents[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return None
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        length = int.from_bytes(contents[pos + 2:pos + 4], "big")
        segment = contents[pos + 4:pos + 2 + length]
        pos += 2 + length
        if marker in (0xC0, 0xC1, 0xC2):
            coded = True
        elif 0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return None  # lossless or arithmetic coding: zero runs mean something else there
        elif marker == 0xC4:
            _read_huffman_tables(segment, tables)
        elif marker == 0xDA:
            end = _SCAN_END.search(contents, pos)
            stop = end.start() if end else n
            if coded and not _zeros_can_be_flat(segment, tables):
                at = contents.find(b"\x00" * JPEG_ZERO_RUN, pos, stop)
                if at >= 0:
                    run = len(contents[at:stop]) - len(contents[at:stop].lstrip(b"\x00"))
                    return (f"damaged JPEG: {run} zero bytes at byte {at} inside its image data (a zeroed block, "
                            "e.g. from a failed copy or a bad disk): it decodes to smeared garbage from there; "
                            "copy it again from the original or remove it")
            pos = stop
    return None


def _read_huffman_tables(segment: bytes, tables: dict) -> None:
    i = 0
    while i + 17 <= len(segment):
        kind, counts = segment[i], segment[i + 1:i + 17]
        total = sum(counts)
        if total:
            # Canonical codes: the all-zero code is the first code of the shortest length,
            # the first symbol listed.
            tables[(kind >> 4, kind & 0x0F)] = segment[i + 17] if i + 17 < len(segment) else -1
        i += 17 + total


def _zeros_can_be_flat(sos: bytes, tables: dict) -> bool:
    """Whether all-zero bits decode to flat blocks with this scan's tables (then a zero run can be real)."""
    if not sos:
        return True
    ns = sos[0]
    if len(sos) < 1 + 2 * ns + 3:
        return True
    ss, se, ah = sos[1 + 2 * ns], sos[2 + 2 * ns], sos[3 + 2 * ns] >> 4
    for c in range(ns):
        dc, ac = sos[2 + 2 * c] >> 4, sos[2 + 2 * c] & 0x0F
        if ss == 0 and not ah and tables.get((0, dc), 0) != 0:
            return False  # the zero code is a DC change, not "same as the last block"
        if se > 0:
            first = tables.get((1, ac), 0)
            if ss == 0 and first != 0x00:
                return False  # sequential: the zero code is a coefficient, not end-of-block
            if ss > 0 and (first & 0x0F or first == 0xF0):
                return False  # progressive: the zero code is a coefficient, not an end-of-band run
    return True


def png_damage(contents: bytes) -> typing.Optional[str]:
    """Why a PNG is damaged, from its chunks (checksums, the end chunk), or None.

    Pillow refuses the same files, except in a program that set
    `PIL.ImageFile.LOAD_TRUNCATED_IMAGES`, where it half-loads them; this check
    does not depend on that setting.
    """

    pos, n, seen_data = 8, len(contents), False
    while pos + 12 <= n:
        length = int.from_bytes(contents[pos:pos + 4], "big")
        kind = contents[pos + 4:pos + 8]
        end = pos + 12 + length
        if end > n:
            return "truncated PNG (it ends inside a chunk): copy it again from the original or remove it"
        crc = int.from_bytes(contents[end - 4:end], "big")
        critical = not kind[0] & 0x20
        if critical and zlib.crc32(contents[pos + 4:end - 4]) != crc:
            return (f"damaged PNG (the checksum of its {kind.decode('latin-1')} chunk does not match): "
                    "copy it again from the original or remove it")
        seen_data |= kind == b"IDAT"
        if kind == b"IEND":
            return None if seen_data else "damaged PNG (no image data): remove it"
        pos = end
    return "truncated PNG (no end chunk): copy it again from the original or remove it"
