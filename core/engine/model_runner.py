"""The model runner: loads the model onto the platform, sizes and binds the caches, runs steps.

``execute`` builds the flat batch, runs the model through the pluggable layers,
samples through the ``sample`` op and returns a :class:`StepHandle` whose tokens
are read later (async scheduling) or at once. Decode-only batches replay a
captured graph when the platform offers graphs and every selected kernel is
graph-safe (see :mod:`tessera.engine.graphs`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch

from tessera.config import EngineConfig
from tessera.engine.cache_plan import CachePlan, plan_caches
from tessera.engine.inputs import HostBatch, batch_to_device, build_host_batch
from tessera.engine.prompt_logprobs import prompt_logprobs
from tessera.engine.runner_parts import RunnerParts
from tessera.engine.sampling_inputs import feature_tensors, sampling_tensors
from tessera.engine.scheduler import ScheduledRequest, SchedulerOutput
from tessera.engine.stopping import mask_stops
from tessera.engine.token_counts import TokenCounts
from tessera.engine.warmup import warm_up
from tessera.kernel_registry import get_registry, platform_facts
from tessera.models.architectures import model_class
from tessera.models.quant_config import check_architecture, checkpoint_quant
from tessera.models.spec import ModelSpec
from tessera.platform import Platform
from tessera.pluggable_layers.checks import trusted_indices
from tessera.pluggable_layers.context import KernelContext
from tessera.pluggable_layers.parallelism import Parallelism
from tessera.pluggable_layers.sampler import Sampler
from tessera.weights import iterate_weights

log = logging.getLogger("tessera.engine")


@dataclass
class StepHandle:
    """One launched step: which requests sampled, and their tokens (on the device until read)."""

    rows: list[ScheduledRequest]
    sampled: torch.Tensor | None
    host: torch.Tensor | None
    event: object | None
    logprobs: tuple | None = None  # host (logprobs[B,1+N], ids[B,1+N], sampled_rank[B]) when a row asked
    prompt_logprobs: dict | None = None  # request id -> [(position, ids, logprobs, rank of the true token)]

    def tokens(self) -> list[int]:
        if self.host is None:
            return []
        if self.event is not None:
            self.event.synchronize()
        return self.host.tolist()

    def logprob_rows(self) -> tuple[list, list, list] | None:
        """(logprobs, token ids, sampled rank) per row, as lists (read after :meth:`tokens`)."""
        return None if self.logprobs is None else tuple(t.tolist() for t in self.logprobs)

    def row_of(self) -> dict[str, int]:
        return {s.request.request_id: i for i, s in enumerate(self.rows)}


@torch.no_grad()
def init_random_weights(model, seed: int) -> None:
    """Seeded random weights made on the device (``load_format="random"``): norms 1, A_log in log(0.5..4.5)."""
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    for name, p in model.named_parameters():
        if not p.is_floating_point():  # packed 4-bit weights and zero points: random words
            p.random_(generator=generator)
        elif p.element_size() == 1:  # fp8 weights as a checkpoint stores them
            p.copy_(torch.empty(p.shape, device=p.device).normal_(0.0, 1.0, generator=generator))
        elif "norm" in name or name.endswith(("dt_bias", ".D")):
            p.fill_(1.0)
        elif name.endswith("A_log"):
            p.uniform_(0.5, 4.5, generator=generator).log_()
        else:
            p.normal_(0.0, 0.02, generator=generator)
    for module in model.modules():
        finish = getattr(module, "finish_loading", None)
        if finish is not None and module is not model:
            finish()


class ModelRunner:
    def __init__(
        self,
        config: EngineConfig,
        spec: ModelSpec,
        platform: Platform,
        dtype: torch.dtype,
        max_model_len: int,
        parallel: Parallelism | None = None,
    ) -> None:
        parallel = parallel or Parallelism()
        self.config, self.spec, self.platform, self.dtype = config, spec, platform, dtype
        self.max_model_len = max_model_len
        self.device = platform.torch_device(config.device_index)
        platform.set_device(config.device_index)
        platform.manual_seed(config.seed)
        self.caps = platform.capabilities(config.device_index)
        facts = platform_facts(platform, config.device_index)
        scheme = checkpoint_quant(spec)
        check_architecture(spec, model_class(spec), scheme)
        self.ctx = KernelContext(get_registry(), facts, dtype, self.device, dict(config.kernel_overrides),
                                 quantization=config.quantization, parallel=parallel,
                                 checkpoint_quant=scheme)  # fmt: skip
        with torch.device(self.device):
            self.model = model_class(spec)(spec, self.ctx)
        if config.load_format == "random":
            init_random_weights(self.model, config.seed)
        else:
            self.model.load_weights(iterate_weights(spec.path, self.device, dtype, lazy=parallel.sharded))
        self.model.eval()
        self.sampler = Sampler(self.ctx)
        self.counts = TokenCounts(config.max_num_seqs, spec.vocab_size, self.device, self.caps.pinned_memory)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.parts = RunnerParts(self.model, platform, self.device, config.device_index, dtype, max_model_len)
        self.plan: CachePlan = plan_caches(self.parts, config)
        start = time.perf_counter()
        if config.warmup == "full" or (config.warmup == "auto" and self.caps.graphs):
            calls = warm_up(self)
            log.info(
                "warm-up: %d batch shapes and sampling sizes in %.2f s", calls, time.perf_counter() - start
            )
        self.graphs = None
        if self.caps.graphs and not config.enforce_eager and self.ctx.all_graph_safe():
            from tessera.engine.graphs import DecodeGraphs

            self.graphs = DecodeGraphs(self.parts, self.plan, config.max_num_seqs)
        elif not config.enforce_eager and self.caps.graphs:
            unsafe = sorted(
                {f"{c.op}:{c.kernel}" for c in self.ctx.choices if not c.graph_safe and c.op != "sample"}
            )
            log.info("decode graphs off: kernels not graph-safe: %s", ", ".join(unsafe))
        #: seconds of startup spent compiling and capturing (warm-up and decode graphs)
        self.warmup_s = time.perf_counter() - start
        log.info("startup compile and capture took %.2f s", self.warmup_s)

    @property
    def vocab_size(self) -> int:
        return self.spec.vocab_size

    def forward(self, input_ids, positions, meta) -> torch.Tensor:
        return self.parts.forward(input_ids, positions, meta)

    @torch.inference_mode()
    def execute(self, out: SchedulerOutput, prev: StepHandle | None) -> StepHandle:
        prev_rows = prev.row_of() if prev is not None else {}
        batch: HostBatch = build_host_batch(out, self.plan.block_size, prev_rows)
        prev_sampled = prev.sampled if prev is not None else None
        pin = self.caps.pinned_memory
        input_ids, positions, meta, sample_index = batch_to_device(batch, self.device, prev_sampled, pin)
        if self.graphs is not None and self.graphs.can_run(batch):
            hidden = self.graphs.run(batch, input_ids, positions, meta)
        else:
            hidden = self.forward(input_ids, positions, meta)
        prompt_lp = prompt_logprobs(self.model, hidden, batch)
        if not batch.sample_requests:
            return StepHandle([], None, None, None, prompt_logprobs=prompt_lp)
        rows = batch.sample_requests
        with trusted_indices():
            logits = self.model.compute_logits(hidden[sample_index]).float()
            features = feature_tensors(rows, logits.shape[1], self.device, self.counts, prev, pin)
            mask_stops(logits, rows, pin)
            temperature, top_k, top_p, noise = sampling_tensors(
                rows, logits.shape[1], self.device, self.generator, pin
            )
            sampled = self.sampler(logits, temperature, top_k, top_p, noise, **features)
        extra = sampled[1:] if isinstance(sampled, tuple) else None
        sampled = sampled[0] if isinstance(sampled, tuple) else sampled
        if not self.caps.async_host_copy:  # the sampled tokens are in host memory already
            return StepHandle(rows, sampled, sampled, None, extra, prompt_lp)
        host = torch.empty(sampled.shape, dtype=sampled.dtype, pin_memory=pin)
        host.copy_(sampled, non_blocking=True)
        host_extra = None
        if extra is not None:
            host_extra = tuple(torch.empty(t.shape, dtype=t.dtype, pin_memory=pin) for t in extra)
            for h, t in zip(host_extra, extra, strict=True):
                h.copy_(t, non_blocking=True)
        event = self.platform.event(enable_timing=False)
        event.record()
        return StepHandle(rows, sampled, host, event, host_extra, prompt_lp)
