"""uvicorn's server, with the engine drained first when it shuts down.

On Ctrl-C or SIGTERM uvicorn stops accepting connections, waits a while for the open ones, cancels what
is left and only then runs the app's shutdown, so requests still generating are cut off mid-stream (no
end of the stream, a plain 500 for a non-streamed one) and the engine's drain comes too late to help.
:class:`DrainingServer` stops accepting, then runs the app's ``app.state.drain``: in-flight requests have
``--drain-timeout`` seconds to finish, then the engine aborts the rest, which end as answers do, with
finish_reason "abort" (a stream's last chunk, then ``data: [DONE]``; a plain request's answer with what it
generated); a request the engine can no longer answer gets an error in OpenAI's shape. Then uvicorn closes
the connections, which are done by then.
"""

from __future__ import annotations

import sys

import uvicorn

#: seconds uvicorn waits for connections once the engine is drained: only answers already written are left
CLOSE_TIMEOUT = 5.0


class DrainingServer(uvicorn.Server):
    async def shutdown(self, sockets=None) -> None:
        for server in self.servers:
            server.close()  # no new connections while the engine drains (uvicorn closes them again: harmless)
        drain = getattr(getattr(self.config.app, "state", None), "drain", None)
        if drain is not None:
            await drain()
        await super().shutdown(sockets)


def run_server(app, host: str, port: int, log_level: str) -> None:
    """Run ``app`` until a signal stops it, draining the engine first."""
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=CLOSE_TIMEOUT
    )
    server = DrainingServer(config)
    try:
        server.run()
    except KeyboardInterrupt:  # the signal uvicorn re-raises once it has shut down (as uvicorn.run does)
        pass
    if not server.started:
        sys.exit(3)  # uvicorn's startup failure (its log says why: the port in use, ...)
