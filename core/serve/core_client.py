"""The frontend's end of an engine core: start it, wait until it is ready, send it messages, stop it.

``CoreClient.start_process(config)`` spawns the core (multiprocessing's spawn context: the parent
may already hold torch or CUDA state, which fork would copy); ``CoreClient.start_thread(engine)``
runs the same loop over an engine of this process. Two ZeroMQ sockets on ipc addresses in a private
temporary folder join them: requests go out on a PUSH socket (the core binds its end), outputs come
back on a PULL socket (the frontend binds it). The first output is
:class:`~tessera.serve.wire.Ready` or :class:`~tessera.serve.wire.StartupFailed`; a core that
says neither within ``timeout`` seconds, or exits first, is a clear :class:`EngineStartupError`.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import zmq

from tessera.errors import TesseraError
from tessera.serve.wire import Codec, CoreOutput, Ready, Shutdown, StartupFailed
from tessera.tokenizer import load_tokenizer

log = logging.getLogger("tessera.serve")


class EngineStartupError(TesseraError):
    """The engine core did not start: it said why, it exited, or it was not ready in time."""


class CoreClient:
    def __init__(self) -> None:
        self.context = zmq.Context()
        self.folder = tempfile.mkdtemp(prefix="tessera-core-")
        self.input_address = f"ipc://{self.folder}/input"
        self.output_address = f"ipc://{self.folder}/output"
        # the core binds the input and the frontend connects: a connecting PUSH queues what it sends until the
        # core is there, so a send never blocks nor fails (a dead core is seen by its process sentinel)
        self.input = self.context.socket(zmq.PUSH)
        self.input.setsockopt(zmq.SNDHWM, 0)
        self.input.connect(self.input_address)
        self.output = self.context.socket(zmq.PULL)
        self.output.setsockopt(zmq.RCVHWM, 0)
        self.output.bind(self.output_address)
        self.codec = Codec(CoreOutput)
        self.process: multiprocessing.process.BaseProcess | None = None
        self.thread: threading.Thread | None = None
        self.info: Ready | None = None
        self.tokenizer = None
        self._closed = False

    @classmethod
    def start_process(cls, config, timeout: float = 600.0) -> CoreClient:
        """Spawn an engine core for ``config`` (an EngineConfig) and wait until it is ready."""
        from tessera.serve.engine_core import run_engine_core

        client = cls()
        spawn = multiprocessing.get_context("spawn")
        args = (config.model_dump(mode="json"), client.input_address, client.output_address, os.getpid(),
                logging.getLogger().getEffectiveLevel())  # fmt: skip
        client.process = spawn.Process(
            target=run_engine_core, args=args, name="tessera-engine-core", daemon=False
        )
        client.process.start()
        atexit.register(client.close)
        client._handshake(timeout)
        client.tokenizer = load_tokenizer(
            Path(client.info.model_dir), next(iter(client.info.eos_token_ids), None)
        )
        return client

    @classmethod
    def start_thread(cls, engine, timeout: float = 60.0) -> CoreClient:
        """Run the engine-core loop over ``engine`` (an LLMEngine of this process) in a thread."""
        from tessera.serve.engine_core import serve_engine

        client = cls()
        output = client.context.socket(zmq.PUSH)
        output.setsockopt(zmq.SNDHWM, 0)
        output.connect(client.output_address)
        client.thread = threading.Thread(target=serve_engine, args=(engine, client.context, client.input_address,
                                                                   output), name="tessera-engine", daemon=True)  # fmt: skip
        client.thread.start()
        client._handshake(timeout)
        client.tokenizer = engine.tokenizer
        return client

    # -- startup ------------------------------------------------------------------------
    def _handshake(self, timeout: float) -> None:
        try:
            self.info = self._wait_ready(timeout)
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, timeout: float) -> Ready:
        poller = zmq.Poller()
        poller.register(self.output, zmq.POLLIN)
        if self.process is not None:
            poller.register(self.process.sentinel, zmq.POLLIN)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            events = dict(poller.poll(min(left, 0.5) * 1000))
            if self.output in events:
                message = self.codec.decode(self.output.recv())
                if isinstance(message, Ready):
                    return message
                if isinstance(message, StartupFailed):
                    raise EngineStartupError(message.message if message.user_error else
                                             f"the engine failed to start: {message.error_type}: {message.message}")  # fmt: skip
                raise EngineStartupError(f"the engine core sent {type(message).__name__} before it was ready")
            if not self.alive():
                if self.output.poll(0):
                    continue  # its last word is still in the socket
                raise EngineStartupError(
                    f"{self.exit_description()} before it was ready; its log above says why"
                )
        raise EngineStartupError(f"the engine core was not ready within {timeout:g} s; raise "
                                 "--engine-start-timeout if loading the model takes longer")  # fmt: skip

    # -- running ------------------------------------------------------------------------
    def send(self, message) -> None:
        self.input.send(self.codec.encode(message), zmq.NOBLOCK, copy=False)

    def alive(self) -> bool:
        worker = self.process or self.thread
        return worker is not None and worker.is_alive()

    @property
    def sentinel(self) -> int | None:
        """A file descriptor that becomes readable when the core process exits (None for a thread)."""
        return self.process.sentinel if self.process is not None else None

    def exit_description(self) -> str:
        if self.process is None:
            return "the engine thread stopped"
        self.process.join(1.0)  # its sentinel fires as it exits, a moment before it can be reaped
        code = self.process.exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        return f"the engine core process (pid {self.process.pid}) {how}"

    def join(self, timeout: float) -> None:
        """Wait for the core to end (after a Shutdown); a process that does not is killed."""
        worker = self.process or self.thread
        if worker is None:
            return
        worker.join(timeout)
        if self.process is not None and self.process.is_alive():
            log.warning("the engine core process did not stop within %g s; killing it", timeout)
            self.process.kill()
            self.process.join(5)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the core (aborting what runs) unless it stopped already, and free the sockets."""
        if self._closed:
            return
        self._closed = True
        if self.alive():
            try:
                self.send(Shutdown(0.0))
            except zmq.ZMQError:
                pass
            self.join(timeout)
        self.input.close(linger=0)
        self.output.close(linger=0)
        if self.thread is None or not self.thread.is_alive():
            self.context.term()
        shutil.rmtree(self.folder, ignore_errors=True)
        atexit.unregister(self.close)
