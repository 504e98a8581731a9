"""The scheduled batch as a message from the driver to the tensor-parallel workers, as deltas.

Each worker mirrors the requests it has been sent and rebuilds the :class:`SchedulerOutput` the model
runner takes. A request's static facts (id, prompt, eos ids, sampling params) go out once, in ``new``,
the first time it is scheduled; after that a step message carries only what changed since the last one:

- ``sched``: ``[id, start, num_tokens]`` per scheduled request (its ``num_computed`` is then ``start + num_tokens``,
  on both sides);
- ``out``: the output tokens the driver received since; ``blocks``: ``[keep, *appended]`` (the first ``keep``
  block ids stay, the rest follow: 0 after a preemption frees them); ``pending``, ``computed``, ``slot``,
  ``status``, ``preemptions``: the new value, only for the requests where it moved;
- ``drop``: the requests that finished (or were aborted) and are forgotten (applied first: a new request
  may take a forgotten one's id in the same message).

The driver finds the changes by comparing each request with what it last sent (a few attribute reads per
request: no list is compared). A request's ``block_ids`` is only ever appended to in place or replaced by a
new list (see :class:`~tessera.engine.kv_cache.KVCacheManager`), so a block list that is the same object
and no shorter has only grown. A change to a request the worker does not mirror raises
:class:`~tessera.errors.StepMessageError` naming it, rather than computing on a state it does not have.

Messages are msgpack (msgspec: plain ints, floats, strings, lists and maps; no pickle, no tensors).
"""

from __future__ import annotations

import msgspec

from tessera.engine.request import Request, Status
from tessera.engine.scheduler import ScheduledRequest, SchedulerOutput
from tessera.errors import StepMessageError
from tessera.sampling_params import SamplingParams

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()

#: the per-request values sent as their new value when they move: (Request attribute, message section)
SCALARS = (("num_pending", "pending"), ("num_computed", "computed"), ("state_slot", "slot"),
           ("num_preemptions", "preemptions"))  # fmt: skip


def encode(message: dict) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes) -> dict:
    return _decoder.decode(data)


class _Sent:
    """What the workers were last told about one request."""

    __slots__ = ("request", "outputs", "blocks", "num_blocks", "num_pending", "num_computed", "state_slot",
                 "num_preemptions", "status")  # fmt: skip

    def __init__(self, request: Request) -> None:
        self.request, self.outputs, self.blocks, self.num_blocks = request, 0, None, 0
        self.num_pending = self.num_computed = self.num_preemptions = 0
        self.state_slot, self.status = None, Status.WAITING


def _static(req: Request) -> list:
    return [
        req.request_id,
        req.prompt_token_ids,
        sorted(req.eos_token_ids),
        req.params.model_dump(mode="json"),
    ]


class StepEncoder:
    """Driver side: what each step must tell the workers, given what they were told before."""

    def __init__(self) -> None:
        self.sent: dict[str, _Sent] = {}
        self.step = 0

    def message(self, out: SchedulerOutput, use_prev: bool) -> dict:
        new, sched, sent, drop = [], [], self.sent, []
        for s in out.scheduled:
            rid = s.request.request_id
            was = sent.get(rid)
            if was is None or was.request is not s.request:
                if was is not None:  # a finished request's id taken by a new one: the old goes first
                    drop.append(rid)
                new.append(_static(s.request))
                was = sent[rid] = _Sent(s.request)
            sched.append([rid, s.start, s.num_tokens])
            was.num_computed = s.start + s.num_tokens
        self.step += 1
        message = {"op": "step", "step": self.step, "use_prev": use_prev, "new": new, "sched": sched}
        changes: dict[str, dict] = {}
        scheduled = {entry[0] for entry in sched}
        gone = [rid for rid, was in sent.items() if not self._diff(rid, was, changes, rid in scheduled)]
        for rid in gone:
            del sent[rid]
        drop += gone
        if drop:
            message["drop"] = drop
        message.update(changes)
        return message

    @staticmethod
    def _diff(rid: str, was: _Sent, changes: dict[str, dict], scheduled: bool) -> bool:
        """Record what moved for one request into ``changes``; False when it finished and is to be dropped."""
        req = was.request
        if req.status is Status.FINISHED and not scheduled:
            return False
        if len(req.output_token_ids) != was.outputs:
            changes.setdefault("out", {})[rid] = req.output_token_ids[was.outputs :]
            was.outputs = len(req.output_token_ids)
        blocks = req.block_ids
        if blocks is not was.blocks or len(blocks) != was.num_blocks:
            keep = min(was.num_blocks, len(blocks)) if blocks is was.blocks else 0
            changes.setdefault("blocks", {})[rid] = [keep, *blocks[keep:]]
            was.blocks, was.num_blocks = blocks, len(blocks)
        if req.num_pending != was.num_pending:
            changes.setdefault("pending", {})[rid] = was.num_pending = req.num_pending
        if req.num_computed != was.num_computed:
            changes.setdefault("computed", {})[rid] = was.num_computed = req.num_computed
        if req.state_slot != was.state_slot:
            changes.setdefault("slot", {})[rid] = was.state_slot = req.state_slot
        if req.num_preemptions != was.num_preemptions:
            changes.setdefault("preemptions", {})[rid] = was.num_preemptions = req.num_preemptions
        if req.status is not was.status:
            changes.setdefault("status", {})[rid] = req.status.value
            was.status = req.status
        return True


class StepDecoder:
    """Worker side: the mirrored requests, updated by each step message into a SchedulerOutput."""

    def __init__(self) -> None:
        self.requests: dict[str, Request] = {}

    def _get(self, rid: str, section: str, step: int) -> Request:
        req = self.requests.get(rid)
        if req is None:
            raise StepMessageError(
                f"step {step}: the driver sent '{section}' for request {rid!r}, which this worker does not "
                "mirror (it was never sent as new, or was dropped): the workers' state no longer matches "
                "the driver's; restart the engine and report this"
            )
        return req

    def apply(self, message: dict) -> SchedulerOutput:
        step, requests = message["step"], self.requests
        for rid in message.get("drop", ()):
            self._get(rid, "drop", step).status = Status.FINISHED
            del requests[rid]
        for rid, prompt, eos, params in message["new"]:
            if rid in requests:
                raise StepMessageError(f"step {step}: the driver sent request {rid!r} as new, but this worker "
                                       "already mirrors it: the workers' state no longer matches the driver's")  # fmt: skip
            requests[rid] = Request(
                rid, prompt, SamplingParams.model_validate(params), eos_token_ids=tuple(eos)
            )
        scheduled = []
        for rid, start, n in message["sched"]:
            req = self._get(rid, "sched", step)
            req.num_computed = start + n
            scheduled.append(ScheduledRequest(req, start, n))
        for rid, tokens in message.get("out", {}).items():
            self._get(rid, "out", step).output_token_ids.extend(tokens)
        for rid, (keep, *tail) in message.get("blocks", {}).items():
            req = self._get(rid, "blocks", step)
            # a new list, not extended in place: the last step's batch may still hold the old one
            req.block_ids = req.block_ids[:keep] + tail
        for attr, section in SCALARS:
            for rid, value in message.get(section, {}).items():
                setattr(self._get(rid, section, step), attr, value)
        for rid, value in message.get("status", {}).items():
            self._get(rid, "status", step).status = Status(value)
        return SchedulerOutput(scheduled)
