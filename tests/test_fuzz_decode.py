"""A bounded fuzzing budget for every run of the suite; ``python -m govtrace.collector.fuzz`` runs
the same targets for longer. Each target asserts the decoder's contract with untrusted input (see
``govtrace.collector.fuzz``): decoded or refused with BadRequest, never anything else, and every
stored record canonical, re-derivable and with resolvable redaction pointers."""

from __future__ import annotations

import gzip
import random
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from govtrace.collector import fuzz
from govtrace.collector.decode import any_value, decompress
from govtrace.collector.errors import BadRequest, PayloadTooLarge

BUDGET = {"raw_bytes": 300, "mutated_requests": 300, "generated_requests": 120, "json_bodies": 200,
          "compressed": 200}


@pytest.mark.parametrize("target", fuzz.targets(1), ids=lambda t: t.__name__)
def test_fuzz_target_keeps_the_decoder_contract(target):
    before = sum(fuzz.EXECUTIONS.values())
    next(t for t in fuzz.targets(BUDGET[target.__name__]) if t.__name__ == target.__name__)()
    assert sum(fuzz.EXECUTIONS.values()) > before, "the target never reached the decoder"


def test_random_mutations_of_real_requests_keep_the_decoder_contract():
    before = fuzz.EXECUTIONS["mutated_fast"]
    fuzz.mutate_quickly(2000, random.Random(20261121))
    assert fuzz.EXECUTIONS["mutated_fast"] - before == 2000


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512), st.integers(min_value=1, max_value=4096))
def test_decompression_never_returns_more_than_the_limit(data, limit):
    for encoding, packed in (("gzip", gzip.compress(data)), ("deflate", zlib.compress(data))):
        try:
            out = decompress(packed, encoding, limit)
        except PayloadTooLarge:
            assert len(data) > limit
            continue
        assert out == data


@settings(max_examples=200, deadline=None)
@given(fuzz.any_values)
def test_any_value_maps_every_kind_to_json_or_refuses_past_the_depth_limit(value: AnyValue):
    try:
        out = any_value(value)
    except BadRequest:
        return
    fuzz.canonical_json(out)  # always serializable: NaN and bytes are tagged, not raw
