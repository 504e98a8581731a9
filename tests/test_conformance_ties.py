"""Top logprob ids: any order among tied logits passes, a wrong or repeated id fails."""

from __future__ import annotations

import torch

from tessera.conformance.cases.sample import top_ids_problems


def _returns(logits: torch.Tensor, ids: list[list[int]]):
    lp = torch.log_softmax(logits.double(), -1)
    top = torch.tensor(ids)
    values = lp.gather(1, top).float()
    tokens = top[:, :1]
    return (tokens[:, 0], torch.cat([values[:, :1], values], 1), torch.cat([tokens, top], 1), torch.ones(1))


def test_tied_logits_in_either_order_pass_and_wrong_ids_fail():
    logits = torch.tensor([[1.0, 5.0, 3.0, 5.0, 3.0, 0.5]], dtype=torch.float16).double()
    ref = {"logits": logits}
    assert top_ids_problems(_returns(logits, [[1, 3, 2]]), ref) == []
    assert top_ids_problems(_returns(logits, [[3, 1, 4]]), ref) == []  # ties at 5 and at 3, other picks
    wrong = top_ids_problems(_returns(logits, [[1, 3, 0]]), ref)
    assert wrong and "not the top ones" in wrong[0]
    repeated = top_ids_problems(_returns(logits, [[1, 1, 2]]), ref)
    assert repeated and "repeats" in repeated[0]
    outside = _returns(logits, [[1, 3, 2]])
    outside[2][0, 3] = 6
    assert "outside [0, 6)" in top_ids_problems(outside, ref)[0]
