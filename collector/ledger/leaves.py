"""Leaf hashes of stored records (RFC 6962: SHA-256 of 0x00 and the record's bytes).

Its own module, on hashlib and pyarrow alone, because the decode workers hash every record they
produce and should not load the rest of the ledger (DuckDB, signing) to do it.
"""

from __future__ import annotations

import hashlib
import sys

import pyarrow as pa

from .merkle import LEAF_PREFIX


def arrow_leaf_hashes(records: pa.Array) -> list[bytes]:
    """Leaf hashes of an Arrow string array of records, none of them NULL (see ``leaf_hashes_of_array``)."""
    if records.null_count:
        raise ValueError("a NULL record has no leaf hash of its own (its tombstone holds it)")
    return leaf_hashes_of_array(records)


def leaf_hashes_of_array(arr: pa.Array) -> list[bytes]:
    """Leaf hashes of an Arrow string (or any) array's values, read in place where the layout allows."""
    sha256 = hashlib.sha256
    if arr.type in (pa.string(), pa.large_string()) and sys.byteorder == "little" and arr.null_count == 0:
        # Zero-copy view of Arrow's (little-endian) offsets and UTF-8 data buffers.
        width = "i" if arr.type == pa.string() else "q"
        _, offsets_buf, data_buf = arr.buffers()
        offsets = memoryview(offsets_buf).cast(width)[arr.offset : arr.offset + len(arr) + 1]
        data = memoryview(data_buf) if data_buf is not None else memoryview(b"")
        return [sha256(LEAF_PREFIX + data[a:b]).digest() for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    return [sha256(LEAF_PREFIX + s.encode()).digest() for s in arr.to_pylist()]
