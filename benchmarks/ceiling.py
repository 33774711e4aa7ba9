"""The framework's ceiling: a bare aiohttp application answering constant bodies (DESIGN §8).

    python benchmarks/ceiling.py [--host 127.0.0.1] [--port 0] [--loop asyncio|uvloop]

The service's figures are read as ratios to this server, run on the same machine, under the
same load generator, in the same run:

* ``GET /api/next-tracking-number``: 201 with a constant JSON body the size of the service's
  answer. The route has the service's path, so one URL (with the sample query) drives both;
  the query is never parsed here.
* ``POST /api/tracking-numbers``: reads the request body, then answers 201 with a constant body
  of 1,000 numbers (the batch endpoint's answer, without validating or minting anything).

It runs as the service's workers do: one process, ``asyncio.run`` (or uvloop when the service
runs on it: ``--loop``), a socket bound first with the same listen backlog and handed to an
``AppRunner`` with no access log. Once listening it logs one JSON line on stderr,
``{"event": "node_start", "port": ...}``, as the service does; it stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Callable

from aiohttp import web

SINGLE_PATH = "/api/next-tracking-number"
BATCH_PATH = "/api/tracking-numbers"
SINGLE_BODY = b'{"tracking_number":"MY071V8M08G0400A","created_at":"2026-12-03T16:45:31.076Z"}'
BATCH_SIZE = 1000
BATCH_BODY = b'{"tracking_numbers":[' + b",".join([SINGLE_BODY] * BATCH_SIZE) + b"]}"
# The service's listen backlog (snowflake_tracker.supervisor.LISTEN_BACKLOG).
LISTEN_BACKLOG = 2048


async def single(request: web.Request) -> web.Response:
    return web.Response(body=SINGLE_BODY, status=201, content_type="application/json")


async def batch(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=BATCH_BODY, status=201, content_type="application/json")


def make_app() -> web.Application:
    app = web.Application(client_max_size=BATCH_SIZE * 1024)
    app.router.add_get(SINGLE_PATH, single, allow_head=False)
    app.router.add_post(BATCH_PATH, batch)
    return app


async def serve(host: str, port: int, loop_name: str) -> None:
    """Listen until SIGTERM or SIGINT, then stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Bound first and handed to a SockSite, as the service's supervisor does for its workers.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    sock.setblocking(False)
    runner = web.AppRunner(make_app(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    bound = sock.getsockname()
    event = {"event": "node_start", "host": bound[0], "port": bound[1], "pid": os.getpid()}
    print(json.dumps(event | {"loop": loop_name}), file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop constructor for ``--loop``; None means asyncio's default."""
    if name == "asyncio":
        return None
    import uvloop  # type: ignore[import-not-found, unused-ignore]

    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the event loop; match the service's (default asyncio)",
    )
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
        runner.run(serve(args.host, args.port, args.loop))
    return 0


if __name__ == "__main__":
    sys.exit(main())
