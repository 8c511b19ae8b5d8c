"""Parquet written while it is produced: each batch becomes a row group and its bytes are
handed out at once, the footer at the end; memory is bounded by one batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([
    ("source", pa.string()), ("incident_id", pa.int64()), ("number", pa.string()),
    ("agency", pa.string()), ("incident_type", pa.string()), ("call_type_group", pa.string()),
    ("priority", pa.string()), ("zone", pa.string()), ("station", pa.string()),
    ("disposition", pa.string()), ("received_at", pa.timestamp("us", tz="UTC")),
    ("first_dispatched_at", pa.timestamp("us", tz="UTC")),
    ("first_on_scene_at", pa.timestamp("us", tz="UTC")),
    ("closed_at", pa.timestamp("us", tz="UTC")), ("lat", pa.float64()), ("lon", pa.float64()),
    ("call_processing_s", pa.float64()), ("total_response_s", pa.float64()),
])


class _Sink:
    """A write-only file that keeps what was written until it is drained."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False
        self.position = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


class StreamingWriter:
    def __init__(self) -> None:
        self._sink = _Sink()
        self._writer = pq.ParquetWriter(pa.PythonFile(self._sink, mode="w"), SCHEMA,
                                        compression="zstd")

    def write(self, rows: Sequence[dict[str, Any]]) -> bytes:
        self._writer.write_table(pa.Table.from_pylist(list(rows), schema=SCHEMA))
        return self._sink.drain()

    def close(self) -> bytes:
        self._writer.close()
        return self._sink.drain()
