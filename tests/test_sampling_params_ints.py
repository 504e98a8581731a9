"""Integers in SamplingParams travel as 64-bit ones (engine core messages, tensor-parallel step messages,
tensors): one that does not fit is refused when the params are made, naming the field, instead of failing
a step (a 2**70 seed used to fail the msgpack encoding of the step, or answer 500 from the server)."""

from __future__ import annotations

import msgspec
import pytest
from pydantic import ValidationError

from tessera import SamplingParams
from tessera.serve.wire import to_wire_params


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": 2**70}, "seed must fit in a signed 64-bit integer"),
        ({"seed": -(2**63) - 1}, "seed must fit"),
        ({"max_tokens": 2**64}, "max_tokens must fit"),
        ({"n": 2**63}, "n must fit"),
        ({"stop_token_ids": [3, 2**65]}, "token id in stop_token_ids must fit"),
        ({"logit_bias": {2**66: 1.0}}, "token id in logit_bias must fit"),
    ],
)
def test_integers_over_64_bits_are_refused(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        SamplingParams(**kwargs)


@pytest.mark.parametrize("seed", [-(2**63), 2**63 - 1, 0])
def test_64_bit_edges_are_accepted_and_encode(seed):
    params = SamplingParams(seed=seed, stop_token_ids=[2**62], max_tokens=2**40)
    fields = msgspec.msgpack.decode(msgspec.msgpack.encode(to_wire_params(params)))
    assert fields[list(SamplingParams.model_fields).index("seed")] == seed
