"""The scheduled batch as a message from the driver to the tensor-parallel workers, and back.

Messages are JSON (plain ints, floats and strings; no pickle, no tensors). The driver keeps no model:
each worker mirrors the requests it has been sent (prompt and sampling params once, then per step the
new output tokens, progress, blocks and state slot of every scheduled request) and rebuilds the
:class:`SchedulerOutput` the model runner takes.
"""

from __future__ import annotations

import json

from tessera.engine.request import Request, Status
from tessera.engine.scheduler import SchedulerOutput
from tessera.sampling_params import SamplingParams


def encode(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def decode(data: bytes) -> dict:
    return json.loads(data)


class StepEncoder:
    """Driver side: what each step must tell the workers, given what they were told before."""

    def __init__(self) -> None:
        self.sent: dict[str, tuple[Request, int]] = {}  # request id -> (request, output tokens sent)
        self.step = 0

    def message(self, out: SchedulerOutput, use_prev: bool) -> dict:
        new, update = [], []
        for s in out.scheduled:
            req = s.request
            if req.request_id not in self.sent:
                new.append({"id": req.request_id, "prompt": req.prompt_token_ids, "eos": sorted(req.eos_token_ids),
                            "params": req.params.model_dump(mode="json")})  # fmt: skip
                self.sent[req.request_id] = (req, 0)
            _, n = self.sent[req.request_id]
            update.append({"id": req.request_id, "out": req.output_token_ids[n:], "pending": req.num_pending,
                           "computed": req.num_computed, "blocks": req.block_ids, "slot": req.state_slot,
                           "status": req.status.value, "preemptions": req.num_preemptions})  # fmt: skip
            self.sent[req.request_id] = (req, len(req.output_token_ids))
        scheduled = {s.request.request_id for s in out.scheduled}
        drop = [rid for rid, (req, _) in self.sent.items() if req.finished and rid not in scheduled]
        for rid in drop:
            del self.sent[rid]
        self.step += 1
        return {"op": "step", "step": self.step, "use_prev": use_prev, "new": new, "update": update, "drop": drop,
                "sched": [[s.request.request_id, s.start, s.num_tokens] for s in out.scheduled]}  # fmt: skip


class StepDecoder:
    """Worker side: the mirrored requests, updated by each step message into a SchedulerOutput."""

    def __init__(self) -> None:
        self.requests: dict[str, Request] = {}

    def apply(self, message: dict) -> SchedulerOutput:
        from tessera.engine.scheduler import ScheduledRequest

        for rid in message["drop"]:
            req = self.requests.pop(rid, None)
            if req is not None:
                req.status = Status.FINISHED
        for n in message["new"]:
            params = SamplingParams.model_validate(n["params"])
            self.requests[n["id"]] = Request(n["id"], n["prompt"], params, eos_token_ids=tuple(n["eos"]))
        for u in message["update"]:
            req = self.requests[u["id"]]
            req.output_token_ids.extend(u["out"])
            req.num_pending, req.num_computed, req.block_ids = u["pending"], u["computed"], u["blocks"]
            req.state_slot, req.status, req.num_preemptions = u["slot"], Status(u["status"]), u["preemptions"]
        return SchedulerOutput(
            [ScheduledRequest(self.requests[rid], start, n) for rid, start, n in message["sched"]]
        )
