"""A Prometheus 2.x TSDB block written directly, for benches whose month is too big for promtool.

`promtool tsdb create-blocks-from openmetrics` parses ~0.44 M samples/s on one core here (a 5,000-customer month
at a 60 s scrape, 2.08 G samples, is ~80 min of it), and its input is ~95 bytes of text per sample. This writes
the same block from run-length series on a fixed time grid: the chunk cut points depend only on the timestamps
and a chunk whose samples share one value is the same bytes in every series that has it, so almost every chunk
(with its CRC) and most of each series' index entry are cache hits: 2.08 G samples take ~45 s. The output is byte
for byte what promtool 2.42 writes for the same samples (index, chunks, tombstones; meta.json up to the block's
ULID): `report_fleet.py --verify-writer N` checks that against promtool on an N-customer month. (Where a block's
chunks pass 512 MiB, the cut into segment files follows Prometheus' chunks.Writer but has not been compared with
promtool's: a month that big takes promtool over an hour. Prometheus reads such a block and the report on it is
exact, which is what the bench needs.)

What it reproduces from Prometheus 2.42 (tsdb/head_append.go, chunkenc/xor.go, chunks/chunks.go, index/index.go,
docs/format/): the head's chunk cutting (120 samples a chunk, end times spread evenly, the chunk range of
promtool's block writer: twice its block duration), XOR chunks, 512 MiB chunk segments, index format v2 with
CRC32-Castagnoli on every section and entry.
"""

from __future__ import annotations

import itertools
import json
import secrets
import struct
import time
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SAMPLES_PER_CHUNK = 120
SEGMENT_SIZE = 512 * 1024 * 1024
SEGMENT_HEADER = 8  # magic, version, 3 bytes of padding
MAX_LENGTH_FIELD = 5  # binary.MaxVarintLen32: what the segment cut assumes a chunk's length field takes
XOR = 1


def _crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc_table()


def crc32c(data: bytes) -> bytes:
    """CRC32-Castagnoli, big-endian, as Prometheus stores it (no C implementation in the standard library)."""
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return (crc ^ 0xFFFFFFFF).to_bytes(4, "big")


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varint(n: int) -> bytes:
    return uvarint(n << 1 if n >= 0 else (~n << 1) | 1)


class _Bits:
    """Go's bstream: bits appended most significant first, the last byte padded with zeros."""

    def __init__(self) -> None:
        self.value = 0
        self.count = 0

    def write(self, value: int, bits: int) -> None:
        self.value = (self.value << bits) | (value & ((1 << bits) - 1))
        self.count += bits

    def to_bytes(self) -> bytes:
        pad = -self.count % 8
        return (self.value << pad).to_bytes((self.count + pad) // 8, "big")


def _float_bits(v: float) -> int:
    return int.from_bytes(struct.pack(">d", v), "big")


def xor_chunk(times: Sequence[int], values: Sequence[float]) -> bytes:
    """Prometheus' XOR chunk (chunkenc.XORChunk) of these samples: 2-byte count, then the Gorilla bit stream."""
    bits = _Bits()
    t_prev = t_delta = 0
    v_prev = 0
    leading, trailing = 0xFF, 0
    for i, (t, value) in enumerate(zip(times, values, strict=True)):
        v = _float_bits(value)
        if i == 0:
            for byte in varint(t):
                bits.write(byte, 8)
            bits.write(v, 64)
        else:
            delta = t - t_prev
            if i == 1:
                for byte in uvarint(delta):
                    bits.write(byte, 8)
            else:
                dod = delta - t_delta
                if dod == 0:
                    bits.write(0, 1)
                elif -(1 << 13) + 1 <= dod <= 1 << 13:
                    bits.write(0b10, 2)
                    bits.write(dod, 14)
                elif -(1 << 16) + 1 <= dod <= 1 << 16:
                    bits.write(0b110, 3)
                    bits.write(dod, 17)
                elif -(1 << 19) + 1 <= dod <= 1 << 19:
                    bits.write(0b1110, 4)
                    bits.write(dod, 20)
                else:
                    bits.write(0b1111, 4)
                    bits.write(dod, 64)
            t_delta = delta
            x = v ^ v_prev
            if x == 0:
                bits.write(0, 1)
            else:
                bits.write(1, 1)
                lead = min(64 - x.bit_length(), 31)
                trail = (x & -x).bit_length() - 1
                if leading != 0xFF and lead >= leading and trail >= trailing:
                    bits.write(0, 1)
                    bits.write(x >> trailing, 64 - leading - trailing)
                else:
                    leading, trailing = lead, trail
                    bits.write(1, 1)
                    bits.write(lead, 5)
                    sig = 64 - lead - trail
                    bits.write(sig, 6)  # 64 is written as 0 (it does not fit): the reader turns 0 back into 64
                    bits.write(x >> trail, sig)
        t_prev, v_prev = t, v
    return len(times).to_bytes(2, "big") + bits.to_bytes()


def chunk_cuts(times: Sequence[int], chunk_range: int) -> list[tuple[int, int]]:
    """(first index, sample count) of each chunk the head cuts a series with these timestamps (ms) into
    (memSeries.appendPreprocessor of Prometheus 2.42)."""
    cuts: list[tuple[int, int]] = []
    first = 0
    min_t = times[0]
    next_at = (min_t // chunk_range) * chunk_range + chunk_range
    for i in range(1, len(times)):
        t = times[i]
        count = i - first
        if count == SAMPLES_PER_CHUNK // 4:
            max_t = times[i - 1]
            n = (next_at - min_t) // ((max_t - min_t + 1) * 4)
            if n > 1:
                next_at = min_t + (next_at - min_t) // n
        if t >= next_at:
            cuts.append((first, count))
            first, min_t = i, t
            next_at = (t // chunk_range) * chunk_range + chunk_range
    cuts.append((first, len(times) - first))
    return cuts


@dataclass(frozen=True)
class Series:
    """One series on the grid: labels (sorted by name, __name__ included), the grid index of its first sample
    and its values as runs of (count, value) from there."""

    labels: tuple[tuple[str, str], ...]
    first: int
    runs: tuple[tuple[int, float], ...]


class BlockWriter:
    """Writes one block for series on `grid` (Unix seconds, evenly spaced) under `tsdb`."""

    def __init__(self, tsdb: Path, grid: Sequence[int], chunk_range_ms: int) -> None:
        self.tsdb, self.grid = tsdb, grid
        self.ms = [t * 1000 for t in grid]
        self.chunk_range = chunk_range_ms
        self._cuts: dict[int, list[tuple[int, int]]] = {}
        self._chunks: dict[tuple, bytes] = {}  # (first, count, value or values) → length field .. CRC
        self._tails: dict[tuple, bytes] = {}

    def cuts(self, first: int) -> list[tuple[int, int]]:
        """Chunk cuts (absolute grid indices) of a series from grid index `first` to the grid's end."""
        if first not in self._cuts:
            self._cuts[first] = [(first + a, n) for a, n in chunk_cuts(self.ms[first:], self.chunk_range)]
        return self._cuts[first]

    def _chunk(self, first: int, count: int, value: float | tuple[float, ...]) -> bytes:
        key = (first, count, value)
        record = self._chunks.get(key)
        if record is None:
            values = value if isinstance(value, tuple) else (value,) * count
            data = xor_chunk(self.ms[first:first + count], values)
            body = bytes([XOR]) + data
            record = uvarint(len(data)) + body + crc32c(body)
            if not isinstance(value, tuple):  # varying chunks are rare and seldom repeat
                self._chunks[key] = record
        return record

    def _series_chunks(self, series: Series) -> list[tuple[int, int, bytes]]:
        """(first index, count, chunk record) of each chunk of the series."""
        total = sum(n for n, _ in series.runs)
        cuts = self.cuts(series.first)
        if sum(n for _, n in cuts) != total:
            raise ValueError(f"{dict(series.labels)}: runs cover {total} grid points, the grid from index "
                             f"{series.first} has {sum(n for _, n in cuts)} (a series must run to the grid's end)")
        if len(series.runs) == 1:
            value = float(series.runs[0][1])
            return [(a, n, self._chunk(a, n, value)) for a, n in cuts]
        bounds, values = [], []
        at = series.first
        for n, v in series.runs:
            bounds.append(at)
            values.append(float(v))
            at += n
        out = []
        for a, n in cuts:
            i, j = bisect_right(bounds, a) - 1, bisect_right(bounds, a + n - 1) - 1
            if i == j:
                out.append((a, n, self._chunk(a, n, values[i])))
            else:
                flat: list[float] = []
                for k in range(i, j + 1):
                    lo, hi = max(bounds[k], a), min(bounds[k + 1] if k + 1 < len(bounds) else at, a + n)
                    flat += [values[k]] * (hi - lo)
                out.append((a, n, self._chunk(a, n, tuple(flat))))
        return out

    def write(self, series: Iterable[Series]) -> tuple[Path, dict[str, int]]:
        """Write the block; returns its directory and its stats (samples, series, chunks)."""
        ordered = sorted(series, key=lambda s: s.labels)
        if any(a.labels == b.labels for a, b in itertools.pairwise(ordered)):
            raise ValueError("two series with the same labels")
        ulid = _ulid()
        tmp = self.tsdb / f"{ulid}.tmp-for-creation"
        (tmp / "chunks").mkdir(parents=True)
        # "" is a symbol too: the head lists its postings' names and values, the all-series key ("", "") among them
        symbols = sorted({"", *(s for one in ordered for pair in one.labels for s in pair)})
        symbol_ref = {s: i for i, s in enumerate(symbols)}
        stats = {"numSamples": 0, "numSeries": len(ordered), "numChunks": 0}
        mint, maxt = None, None
        with open(tmp / "index", "wb") as index:
            index.write(struct.pack(">IB", 0xBAAAD700, 2))
            body = struct.pack(">I", len(symbols)) + b"".join(uvarint(len(s.encode())) + s.encode() for s in symbols)
            index.write(struct.pack(">I", len(body)) + body + crc32c(body))
            pos = index.tell()
            refs: list[int] = []
            segments = _Segments(tmp / "chunks")
            for one in ordered:
                chunks = self._series_chunks(one)
                placed = segments.write([record for _, _, record in chunks])
                pad = -pos % 16
                entry = self._entry(one, chunks, placed, symbol_ref)
                index.write(b"\0" * pad + entry)
                refs.append((pos + pad) // 16)
                pos += pad + len(entry)
                stats["numSamples"] += sum(n for _, n, _ in chunks)
                stats["numChunks"] += len(chunks)
                first, last = self.ms[chunks[0][0]], self.ms[chunks[-1][0] + chunks[-1][1] - 1]
                mint = first if mint is None else min(mint, first)
                maxt = last if maxt is None else max(maxt, last)
            segments.close()
            postings: dict[tuple[str, str], list[int]] = {}
            for one, ref in zip(ordered, refs, strict=True):
                for pair in one.labels:
                    postings.setdefault(pair, []).append(ref)
            names = sorted({name for name, _ in postings})
            toc = {"series": 0, "label_indices": 0, "label_table": 0, "postings": 0, "postings_table": 0}
            toc["series"] = 5 + 4 + len(body) + 4  # right after the symbol table
            toc["label_indices"] = pos
            label_offsets = []
            for name in names:
                pos = _pad(index, pos, 4)
                label_offsets.append((name, pos))
                values = sorted(v for n, v in postings if n == name)
                content = struct.pack(">II", 1, len(values)) + b"".join(struct.pack(">I", symbol_ref[v])
                                                                        for v in values)
                pos += _section(index, content)
            toc["postings"] = pos
            posting_offsets = []
            for key, members in [(("", ""), refs), *sorted(postings.items())]:
                pos = _pad(index, pos, 4)
                posting_offsets.append((key, pos))
                content = struct.pack(f">I{len(members)}I", len(members), *members)
                pos += _section(index, content)
            toc["label_table"] = pos
            content = struct.pack(">I", len(label_offsets)) + b"".join(
                b"\x01" + uvarint(len(name.encode())) + name.encode() + uvarint(offset)
                for name, offset in label_offsets)
            pos += _section(index, content)
            toc["postings_table"] = pos
            content = struct.pack(">I", len(posting_offsets)) + b"".join(
                b"\x02" + uvarint(len(name.encode())) + name.encode() + uvarint(len(value.encode()))
                + value.encode() + uvarint(offset) for (name, value), offset in posting_offsets)
            pos += _section(index, content)
            table = struct.pack(">6Q", 5, toc["series"], toc["label_indices"], toc["label_table"],
                                toc["postings"], toc["postings_table"])
            index.write(table + crc32c(table))
        (tmp / "tombstones").write_bytes(bytes.fromhex("0130ba300100000000"))
        meta = {"ulid": ulid, "minTime": mint, "maxTime": (maxt or 0) + 1, "stats": stats,
                "compaction": {"level": 1, "sources": [ulid]}, "version": 1}
        (tmp / "meta.json").write_text(json.dumps(meta, indent="\t"), encoding="utf-8")
        final = self.tsdb / ulid
        tmp.rename(final)
        return final, stats

    def _entry(self, one: Series, chunks: list[tuple[int, int, bytes]], placed: list[int],
               symbol_ref: dict[str, int]) -> bytes:
        """The series' index entry: length, labels, chunk metas (deltas), CRC."""
        head = uvarint(len(one.labels)) + b"".join(uvarint(symbol_ref[n]) + uvarint(symbol_ref[v])
                                                   for n, v in one.labels)
        ms = self.ms
        a, n, _ = chunks[0]
        metas = uvarint(len(chunks)) + varint(ms[a]) + uvarint(ms[a + n - 1] - ms[a]) + uvarint(placed[0])
        # The rest depends only on the cut points and the distance between chunk references: cached.
        steps = tuple(b - a for a, b in itertools.pairwise(placed))
        key = (a, len(chunks), steps)
        tail = self._tails.get(key)
        if tail is None:
            parts = []
            previous_max = ms[a + n - 1]
            for (a2, n2, _), step in zip(chunks[1:], steps, strict=True):
                parts.append(uvarint(ms[a2] - previous_max) + uvarint(ms[a2 + n2 - 1] - ms[a2]) + varint(step))
                previous_max = ms[a2 + n2 - 1]
            tail = b"".join(parts)
            self._tails[key] = tail
        content = head + metas + tail
        return uvarint(len(content)) + content + crc32c(content)


class _Segments:
    """Chunk segment files (chunks/000001, ...): a series' chunks go where Prometheus' chunks.Writer puts them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.number = 0
        self.file: BinaryIO | None = None
        self.n = 0

    def _cut(self) -> None:
        if self.file:
            self.file.close()
        self.number += 1
        self.file = open(self.directory / f"{self.number:06d}", "wb")  # noqa: SIM115 - closed by _cut/close
        self.file.write(struct.pack(">IB3x", 0x85BD40DD, 1))
        self.n = SEGMENT_HEADER

    def write(self, records: list[bytes]) -> list[int]:
        """Write one series' chunk records; returns their references (segment << 32 | offset)."""
        batches: list[list[bytes]] = [[]]
        size = 0
        first_batch = True
        for i, record in enumerate(records):
            # the writer's size estimate: the longest length field, the encoding, the data, the CRC
            data_length = len(record) - _uvarint_length(record) - 1 - 4
            size += MAX_LENGTH_FIELD + 1 + data_length + 4
            cut = i != 0 and size + SEGMENT_HEADER > SEGMENT_SIZE
            if first_batch and self.n > SEGMENT_HEADER:
                cut = size + self.n > SEGMENT_SIZE
                if cut:
                    first_batch = False
            if cut:
                batches.append([])
                size = MAX_LENGTH_FIELD + 1 + data_length + 4
            batches[-1].append(record)
        if self.n == 0:
            self._cut()
        refs: list[int] = []
        for i, batch in enumerate(batches):
            assert self.file is not None
            for record in batch:
                refs.append(self.number - 1 << 32 | self.n)
                self.n += len(record)
            self.file.write(b"".join(batch))
            if i < len(batches) - 1:
                self._cut()
        return refs

    def close(self) -> None:
        if self.file:
            self.file.close()


def _uvarint_length(record: bytes) -> int:
    """Bytes of the length field at the start of a chunk record."""
    i = 0
    while record[i] & 0x80:
        i += 1
    return i + 1


def _pad(out: BinaryIO, pos: int, align: int) -> int:
    pad = -pos % align
    out.write(b"\0" * pad)
    return pos + pad


def _section(out: BinaryIO, content: bytes) -> int:
    """A length-prefixed section with its CRC: what index.Writer writes for label indices, postings, tables."""
    out.write(struct.pack(">I", len(content)) + content + crc32c(content))
    return 4 + len(content) + 4


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _ulid() -> str:
    value = (int(time.time() * 1000) << 80) | int.from_bytes(secrets.token_bytes(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
