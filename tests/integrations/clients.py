"""One synchronous facade over the four clients under test, so each behaviour is written once.

``httpx-sync`` (``httpx.Client`` + ``freshtoken.httpx.TokenAuth``), ``httpx-async``
(``httpx.AsyncClient`` + the same ``TokenAuth``), ``requests`` (``requests.Session`` +
``freshtoken.requests.TokenAuth``) and ``aiohttp`` (``aiohttp.ClientSession`` +
``freshtoken.aiohttp.token_middleware``). The async clients run on a :class:`LoopThread`; the
test body stays synchronous. Concurrency is real: threads for the sync clients, tasks for the
async ones.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import httpx
import requests
from requests.adapters import HTTPAdapter

import freshtoken as ft
from freshtoken.aiohttp import token_middleware
from freshtoken.httpx import TokenAuth as HttpxTokenAuth
from freshtoken.requests import TokenAuth as RequestsTokenAuth

__all__ = ["KINDS", "Api", "LoopThread", "Result", "make_api"]

T = TypeVar("T")

KINDS = ("httpx-sync", "httpx-async", "requests", "aiohttp")
TIMEOUT = 30.0


@dataclass(frozen=True)
class Result:
    """A finished call: final status, the statuses the library kept in ``history``, the body."""

    status: int
    history: list[int]
    body: bytes


class LoopThread:
    """An event loop running in a thread, for driving async clients from a sync test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-loop")

    def __enter__(self) -> LoopThread:
        self._thread.start()
        return self

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(TIMEOUT * 2)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        async def cancel_leftovers() -> None:
            current = asyncio.current_task()
            tasks = [task for task in asyncio.all_tasks() if task is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        self.run(cancel_leftovers())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Api:
    """The calls the tests make, whatever the library."""

    #: Whether the library keeps the refused 401 in the replayed response's ``history``.
    records_replay = True

    def request(self, method: str, url: str, **kwargs: Any) -> Result:
        raise NotImplementedError

    async def arequest(self, method: str, url: str, **kwargs: Any) -> Result:
        """The same call as a coroutine on the loop thread (async clients only)."""
        raise NotImplementedError

    def get(self, url: str) -> Result:
        return self.request("GET", url)

    def post_json(self, url: str, data: object) -> Result:
        return self.request("POST", url, json=data)

    def post_stream(self, url: str, chunks: list[bytes]) -> Result:
        """POST a body produced by a (sync or async) generator: a stream, not replayable."""
        raise NotImplementedError

    def get_many(self, url: str, count: int) -> list[Result]:
        """``count`` concurrent GETs (threads or tasks)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _ThreadedApi(Api):
    def get_many(self, url: str, count: int) -> list[Result]:
        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda _: self.get(url), range(count)))


class HttpxSyncApi(_ThreadedApi):
    def __init__(self, manager: ft.TokenManager, loop: LoopThread, **options: Any) -> None:
        self.auth = HttpxTokenAuth(manager, **options)
        self.client = httpx.Client(
            auth=self.auth,
            follow_redirects=True,
            timeout=TIMEOUT,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        )

    def request(self, method: str, url: str, **kwargs: Any) -> Result:
        response = self.client.request(method, url, **kwargs)
        return Result(
            response.status_code, [r.status_code for r in response.history], response.content
        )

    def post_stream(self, url: str, chunks: list[bytes]) -> Result:
        def body() -> Iterator[bytes]:
            yield from chunks

        return self.request("POST", url, content=body())

    def close(self) -> None:
        self.client.close()


class RequestsApi(_ThreadedApi):
    def __init__(self, manager: ft.TokenManager, loop: LoopThread, **options: Any) -> None:
        self.auth = RequestsTokenAuth(manager, **options)
        self.session = requests.Session()
        self.session.auth = self.auth
        adapter = HTTPAdapter(pool_maxsize=100)
        self.session.mount("http://", adapter)

    def request(self, method: str, url: str, **kwargs: Any) -> Result:
        response = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
        try:
            return Result(
                response.status_code, [r.status_code for r in response.history], response.content
            )
        finally:
            response.close()

    def post_stream(self, url: str, chunks: list[bytes]) -> Result:
        def body() -> Iterator[bytes]:
            yield from chunks

        return self.request("POST", url, data=body())

    def close(self) -> None:
        self.session.close()


class HttpxAsyncApi(Api):
    def __init__(self, manager: ft.TokenManager, loop: LoopThread, **options: Any) -> None:
        self.loop = loop
        self.auth = HttpxTokenAuth(manager, **options)
        self.client = httpx.AsyncClient(
            auth=self.auth,
            follow_redirects=True,
            timeout=TIMEOUT,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
        )

    async def arequest(self, method: str, url: str, **kwargs: Any) -> Result:
        response = await self.client.request(method, url, **kwargs)
        return Result(
            response.status_code, [r.status_code for r in response.history], response.content
        )

    def request(self, method: str, url: str, **kwargs: Any) -> Result:
        return self.loop.run(self.arequest(method, url, **kwargs))

    def post_stream(self, url: str, chunks: list[bytes]) -> Result:
        async def body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return self.request("POST", url, content=body())

    def get_many(self, url: str, count: int) -> list[Result]:
        async def many() -> list[Result]:
            return list(await asyncio.gather(*(self.arequest("GET", url) for _ in range(count))))

        return self.loop.run(many())

    def close(self) -> None:
        self.loop.run(self.client.aclose())


class AiohttpApi(Api):
    records_replay = False  # a middleware returns the replay's response; aiohttp keeps no history

    def __init__(self, manager: ft.TokenManager, loop: LoopThread, **options: Any) -> None:
        self.loop = loop
        self.middleware = token_middleware(manager, **options)

        async def create() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(
                middlewares=(self.middleware,),
                timeout=aiohttp.ClientTimeout(total=TIMEOUT),
            )

        self.session = loop.run(create())

    async def arequest(self, method: str, url: str, **kwargs: Any) -> Result:
        async with self.session.request(method, url, **kwargs) as response:
            body = await response.read()
            return Result(response.status, [r.status for r in response.history], body)

    def request(self, method: str, url: str, **kwargs: Any) -> Result:
        return self.loop.run(self.arequest(method, url, **kwargs))

    def post_stream(self, url: str, chunks: list[bytes]) -> Result:
        async def body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return self.request("POST", url, data=body())

    def get_many(self, url: str, count: int) -> list[Result]:
        async def many() -> list[Result]:
            return list(await asyncio.gather(*(self.arequest("GET", url) for _ in range(count))))

        return self.loop.run(many())

    def close(self) -> None:
        self.loop.run(self.session.close())


_APIS: dict[str, type[Api]] = {
    "httpx-sync": HttpxSyncApi,
    "httpx-async": HttpxAsyncApi,
    "requests": RequestsApi,
    "aiohttp": AiohttpApi,
}


def make_api(kind: str, manager: ft.TokenManager, loop: LoopThread, **options: Any) -> Api:
    return _APIS[kind](manager, loop, **options)  # type: ignore[call-arg]
