"""The progress bar of ``LLM.generate(..., use_tqdm=True)``: prompts done, and input / output tokens a
second, on stderr (vLLM's ``use_tqdm`` shows the same figures)."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class PromptProgress:
    """``with PromptProgress(n, enabled) as bar: ... bar.finished(output)`` per finished request."""

    def __init__(self, total: int, enabled: bool = True, console: Console | None = None) -> None:
        self.total, self.enabled = total, enabled
        self.input_tokens = self.output_tokens = 0
        self._start = time.perf_counter()
        self._bar: Progress | None = None
        self._console = console or Console(stderr=True, width=None if sys.stderr.isatty() else 100)

    def __enter__(self) -> PromptProgress:
        if self.enabled:
            self._bar = Progress(TextColumn("Processed prompts"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("{task.fields[speed]}"),
                                 console=self._console)  # fmt: skip
            self._bar.start()
            self._task = self._bar.add_task("generate", total=self.total, speed="")
        return self

    def finished(self, output) -> None:
        self.input_tokens += len(output.prompt_token_ids)
        self.output_tokens += sum(len(c.token_ids) for c in output.outputs)
        if self._bar is not None:
            elapsed = max(time.perf_counter() - self._start, 1e-9)
            speed = (f"input {self.input_tokens / elapsed:.1f} tok/s, "
                     f"output {self.output_tokens / elapsed:.1f} tok/s")  # fmt: skip
            self._bar.update(self._task, advance=1, speed=speed)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
