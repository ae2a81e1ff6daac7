"""One pooled async HTTP client per backend, for OpenAI-compatible servers.

- httpx.AsyncClient on an event loop of its own (a daemon thread), alive as long as the
  backend: ONE connection pool, keep-alive, at most `concurrency` connections and
  `concurrency` requests in flight (default 64: enough for a vLLM server to fill its
  batch; 8 left it idle most of the time). Sync callers submit batches with `gather`.
- retries with exponential backoff and jitter ONLY on what a retry can fix: connection
  errors (refused, reset, server gone mid-request), timeouts, and HTTP 408/429/5xx.
  Any other status fails at once with the server's message. A dead server fails every
  request after `retries` attempts with one error naming the URL; in-flight requests of
  a failed batch are cancelled, so nothing hangs.

Why not the openai SDK: we need vLLM's extra request fields (`logprob_token_ids`,
`return_tokens_as_token_ids`, `add_special_tokens`) and its extra response fields
(`stop_reason`) verbatim; plain JSON over httpx keeps them visible.
Not covered: streaming, HTTP/2 (vLLM serves HTTP/1.1), proxies beyond httpx's env support.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sfteval.errors import SftevalError

RETRY_STATUS = {408, 429, 500, 502, 503, 504}
DEFAULT_CONCURRENCY = 64


@dataclass(frozen=True)
class HttpSettings:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    api_key: str | None = None
    timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    retries: int = 4
    backoff_s: float = 0.5  # first wait; doubles each retry, with jitter
    concurrency: int = DEFAULT_CONCURRENCY


class HttpClient:
    """JSON requests through one pool. Thread-safe; `close()` releases the pool."""

    def __init__(self, s: HttpSettings, sleep: Callable[[float], Awaitable[None]] | None = None) -> None:
        import httpx

        self.s = s
        self.base = s.base_url.rstrip("/")
        self._sleep = sleep
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sfteval-http", daemon=True)
        self._thread.start()
        headers = {"Content-Type": "application/json"}
        if s.api_key:
            headers["Authorization"] = f"Bearer {s.api_key}"
        n = max(1, s.concurrency)

        async def make() -> Any:
            return httpx.AsyncClient(
                headers=headers,
                timeout=httpx.Timeout(s.timeout_s, connect=s.connect_timeout_s),
                limits=httpx.Limits(max_connections=n, max_keepalive_connections=n),
            )

        self._client = self._run(make())
        self._gate = self._run(_semaphore(n))

    def _run(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()  # type: ignore[arg-type]

    async def arequest(self, method: str, path: str, body: dict[str, Any] | None = None, *, retries: int | None = None) -> Any:
        import httpx

        url = f"{self.base}/{path.lstrip('/')}"
        attempts = (self.s.retries if retries is None else retries) + 1
        last = ""
        for attempt in range(attempts):
            if attempt:
                await (self._sleep or backoff_sleep)(self.s.backoff_s * 2 ** (attempt - 1) * (1 + random.random() * 0.25))
            async with self._gate:
                try:
                    resp = await self._client.request(method, url, json=body)
                except (httpx.TransportError, OSError) as e:  # refused, reset, timed out, server gone
                    last = f"{type(e).__name__}: {e}"
                    continue
            if resp.status_code < 400:
                try:
                    return resp.json()
                except ValueError:
                    last = f"HTTP {resp.status_code}: not JSON"
                    continue
            detail = _error_detail(resp)
            if resp.status_code not in RETRY_STATUS:
                raise SftevalError(
                    f"{method} {url} answered {resp.status_code}: {detail}",
                    field="base_url",
                    hint="the server refused the request; check the model name and the options it supports",
                )
            last = f"HTTP {resp.status_code}: {detail}"
        raise SftevalError(
            f"cannot reach {url} after {attempts} attempt(s) ({last})",
            field="base_url",
            hint="is the server running and is --base-url right (it usually ends in /v1)?",
        )

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *, retries: int | None = None) -> Any:
        return self._run(self.arequest(method, path, body, retries=retries))

    def gather(self, make: Callable[[Any], Awaitable[Any]], items: Sequence[Any], progress: Callable[[int], None] | None = None,
               weight: Callable[[Any], int] | None = None) -> list[Any]:
        """`make(item)` for every item concurrently (bounded by the pool); results in order.
        `progress` is told `weight(item)` units per finished item (default 1).

        The first error cancels the rest and is raised; so is Ctrl-C in the caller. `progress`
        runs in the calling thread, never in the event loop's: an exception it raises
        (KeyboardInterrupt included) cancels the batch instead of killing the loop's thread,
        which left the caller waiting forever."""
        import concurrent.futures
        import queue

        finished: queue.SimpleQueue[int] = queue.SimpleQueue()

        async def one(i: int, item: Any, out: list[Any]) -> None:
            out[i] = await make(item)
            finished.put(weight(item) if weight else 1)

        async def all_of() -> list[Any]:
            out: list[Any] = [None] * len(items)
            tasks = [asyncio.ensure_future(one(i, it, out)) for i, it in enumerate(items)]
            try:
                await asyncio.gather(*tasks)
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
            return out

        fut = asyncio.run_coroutine_threadsafe(all_of(), self._loop)
        try:
            while True:
                try:
                    result, running = fut.result(timeout=0.05), False
                except concurrent.futures.TimeoutError:  # not the builtin one before Python 3.11
                    result, running = None, True
                done = 0
                while not finished.empty():
                    done += finished.get_nowait()
                if done and progress:
                    progress(done)
                if not running:
                    return result
        except BaseException:
            fut.cancel()
            raise

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self._client.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()


async def backoff_sleep(seconds: float) -> None:
    """The wait between retries (a module function, so tests can replace it)."""
    await asyncio.sleep(seconds)


async def _semaphore(n: int) -> asyncio.Semaphore:
    return asyncio.Semaphore(n)  # created on the client's loop


def _error_detail(resp: Any) -> str:
    try:
        obj = resp.json()
        err = obj.get("error", obj)
        return str(err.get("message", err) if isinstance(err, dict) else err)[:500]
    except (ValueError, AttributeError):
        return resp.text[:500]
