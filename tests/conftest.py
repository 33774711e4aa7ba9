"""Shared fixtures: the DESIGN §1 sample parcel, an in-process app client, a live node."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from livenode import LiveNode, NodeSet

from snowflake_tracker.config import Config
from snowflake_tracker.ids.generator import SnowflakeGenerator
from snowflake_tracker.ids.layout import EPOCH_MS
from snowflake_tracker.web.app import create_app

# The example request of DESIGN §1, parameter by parameter (not yet percent-encoded).
SAMPLE_QUERY: dict[str, str] = {
    "origin_country_id": "MY",
    "destination_country_id": "ID",
    "weight": "1.234",
    "created_at": "2018-11-20T19:29:32+08:00",
    "customer_id": "de619854-b59b-425e-9db4-943979e1bd49",
    "customer_name": "RedBox Logistics",
    "customer_slug": "redbox-logistics",
}

NUMBER_PATTERN = r"^[A-Z0-9]{16}$"
TEST_WORKER_ID = 42
# A fixed moment well inside the ID lifetime, for fake clocks.
FAKE_START_MS = EPOCH_MS + 200 * 86_400_000

AppClient = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[AppClient]]


class FakeClock:
    """A clock the test moves by hand: Unix milliseconds."""

    def __init__(self, ms: int = FAKE_START_MS) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def make_client(
    aiohttp_client: Callable[[web.Application], Awaitable[AppClient]],
) -> MakeClient:
    """A factory of in-process clients: ``await make_client(config=..., generator=...)``."""

    async def make(
        config: Config | None = None, generator: SnowflakeGenerator | None = None
    ) -> AppClient:
        app = create_app(
            config if config is not None else Config(),
            generator=generator if generator is not None else SnowflakeGenerator(TEST_WORKER_ID),
        )
        return await aiohttp_client(app)

    return make


@pytest.fixture
async def app_client(make_client: MakeClient) -> AppClient:
    """A client of the app built with the default configuration and a real clock."""
    return await make_client()


@pytest.fixture(scope="module")
def live_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNode]:
    """A real one-process node (``snowflake-tracker serve``) on 127.0.0.1 and a free port.

    Shared by a module's tests; stopped with SIGTERM after the last, and its process group
    killed whatever happened.
    """
    node = LiveNode(tmp_path_factory.mktemp("live") / "state", processes=1)
    with node:
        node.wait_ready()
        yield node
        node.stop()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[NodeSet]:
    """Live nodes started by one test, every process group killed when it ends."""
    with NodeSet(tmp_path) as node_set:
        yield node_set
