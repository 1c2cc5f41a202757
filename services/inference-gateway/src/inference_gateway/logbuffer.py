"""Prediction logging to the drift-service: asynchronous, batched, bounded in memory, at-least-once.

How an event travels (each carries its event id; ``LogPredictions`` is idempotent by it, so a
repeat is counted as a duplicate by the drift-service, never stored twice):

1. :meth:`PredictionLogger.submit` appends it to an in-memory queue and returns at once: it never
   waits on the drift-service and never fails a prediction.
2. One sender task takes up to ``batch_size`` events (or what is there after
   ``flush_interval_s``) and calls ``LogPredictions``. On success they are done.
3. On failure (drift-service down, deadline), the batch is written to the **durable buffer**, a
   SQLite file in WAL mode with ``synchronous=FULL`` (each commit is fsynced before the sender goes
   on), and the sender marks the drift-service down. While it is down, every batch goes straight to
   disk: memory holds at most ``memory_events`` events (the sender spills everything above half
   of that at once) however long the outage.
4. While the buffer is not empty, the sender retries its oldest batch every ``retry_interval_s``;
   once one is accepted it delivers the whole backlog, oldest first, deleting each batch only after
   the drift-service acknowledged it (a crash between ack and delete re-sends: a duplicate, not a
   loss).
5. The buffer has a cap (``max_bytes`` of event payloads). At the cap :attr:`full` is true: the
   gateway reports not ready and answers 503 / UNAVAILABLE to new predictions instead of losing
   events. Events already accepted (at most ``memory_events``) still go to disk, so the file may
   pass the cap by that much.
6. :meth:`close` (SIGTERM drain) stops the sender and writes what is still in memory to disk; the
   next start delivers it.

Tracing: each delivery attempt is one span, ``prediction_log.deliver`` (a root span: it serves many
requests), with a **link** to the span of every prediction in the batch (captured at
:meth:`PredictionLogger.submit`), so the drift-service's ``LogPredictions`` span, its child, leads
back to each request's trace, and each event carries its request's ``trace_id`` into the store.
Links are kept in memory only: events delivered from the disk buffer after a restart have none.
Metrics: ``inference_gateway_prediction_log_events{stage}`` (submitted, delivered, spilled).

A drift-service that refuses the gateway's own credential (``send`` raises
:class:`~inference_gateway.credential.CredentialRefused`) is treated as down: no event is lost, the
batches stay in the durable buffer and are retried every ``retry_interval_s`` (a corrected key file
is read at the next attempt). The refusal is logged (ERROR, naming the setting) and counted
(``inference_gateway_credential_refusals{dependency="drift-service"}``) once per change of state
(:attr:`PredictionLogger.refusals`), never once per event or attempt.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from creditrisk.drift.v1 import drift_service_pb2 as dpb
from opentelemetry import context as otel_context
from opentelemetry import trace

from inference_gateway import metrics
from inference_gateway.credential import CredentialRefused, RefusalRecord

_LOGGER = logging.getLogger(__name__)
_TRACER = trace.get_tracer("inference_gateway.prediction_log")

Sender = Callable[[list[dpb.PredictionEvent]], Awaitable[None]]


class DurableBuffer:
    """An on-disk FIFO of serialized events (SQLite, WAL, fsync on every commit). Thread-safe."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "event_id TEXT NOT NULL, payload BLOB NOT NULL)"
        )
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM events").fetchone()
        self.count, self.bytes = int(row[0]), int(row[1])

    def append(self, events: list[dpb.PredictionEvent]) -> None:
        """Write events durably (one fsynced transaction)."""
        rows = [(e.event_id, e.SerializeToString()) for e in events]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO events (event_id, payload) VALUES (?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self.count += len(rows)
            self.bytes += sum(len(p) for _, p in rows)

    def oldest(self, limit: int) -> list[tuple[int, dpb.PredictionEvent]]:
        """Up to ``limit`` oldest events with their sequence numbers."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, payload FROM events ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [(int(seq), dpb.PredictionEvent.FromString(payload)) for seq, payload in rows]

    def delete(self, seqs: list[int]) -> None:
        """Remove delivered events."""
        if not seqs:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                marks = ",".join("?" * len(seqs))
                removed = self._db.execute(
                    f"SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM events WHERE seq IN ({marks})",  # noqa: S608
                    seqs,
                ).fetchone()
                self._db.execute(f"DELETE FROM events WHERE seq IN ({marks})", seqs)  # noqa: S608
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self.count -= int(removed[0])
            self.bytes -= int(removed[1])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PredictionLogger:
    """Delivers prediction events to the drift-service (see the module docstring).

    Args:
        send: calls ``LogPredictions`` with one batch; raises when it was not accepted.
        buffer: the durable buffer.
        batch_size: events per call.
        flush_interval_s: longest wait before a partial batch is sent.
        memory_events: most events held in memory.
        retry_interval_s: pause between two attempts while the drift-service is down.
        max_bytes: the buffer's cap.
    """

    def __init__(
        self,
        send: Sender,
        buffer: DurableBuffer,
        *,
        batch_size: int,
        flush_interval_s: float,
        memory_events: int,
        retry_interval_s: float,
        max_bytes: int,
    ) -> None:
        self._send = send
        self.buffer = buffer
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.memory_events = memory_events
        self.retry_interval_s = retry_interval_s
        self.max_bytes = max_bytes
        self._memory: collections.deque[dpb.PredictionEvent] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.drift_up = True
        self._next_attempt = 0.0
        self.sent = 0
        self.spilled = 0
        self.rejected = 0
        self._inflight = 0  # taken from memory, not yet acknowledged nor on disk
        # event id -> span context of the request that produced it (links of the delivery span)
        self._origins: dict[str, trace.SpanContext] = {}
        self.refusals = RefusalRecord("drift-service")
        """The drift-service's refusals of the gateway's credential (once per change of state)."""

    @property
    def full(self) -> bool:
        """True when the durable buffer reached its cap: stop admitting predictions."""
        return self.buffer.bytes >= self.max_bytes

    @property
    def pending(self) -> int:
        """Events not yet acknowledged by the drift-service (memory + disk)."""
        return len(self._memory) + self._inflight + self.buffer.count

    def submit(self, event: dpb.PredictionEvent) -> None:
        """Queue one event; returns at once. Remembers the current span for the delivery's link."""
        self._memory.append(event)
        origin = trace.get_current_span().get_span_context()
        if origin.is_valid and len(self._origins) < 4 * self.memory_events:
            self._origins[event.event_id] = origin
        metrics.LOG_EVENTS.labels("submitted").inc()
        if not event.primary_event_id:  # the answer's input, not a shadow's
            metrics.REQUESTED_FEATURES.inc(len(event.features))  # missing ones are there as nulls
            metrics.MISSING_FEATURES.inc(len(event.missing_features))
        if len(self._memory) >= self.batch_size or len(self._memory) * 2 >= self.memory_events:
            self._wake.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="prediction-logger")

    async def close(self) -> None:
        """Stop the sender and write what is left in memory to disk (durable)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._memory:
            left = list(self._memory)
            self._memory.clear()
            await asyncio.to_thread(self.buffer.append, left)
            self.spilled += len(left)
            _LOGGER.info("prediction log: %d events written to the disk buffer at shutdown", len(left))
        await asyncio.to_thread(self.buffer.close)

    async def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every event was acknowledged (tests, tools). Returns False on timeout."""
        end = time.monotonic() + timeout_s
        while self.pending:
            if time.monotonic() > end:
                return False
            self._wake.set()
            await asyncio.sleep(0.02)
        return True

    async def _deliver(self, events: list[dpb.PredictionEvent]) -> bool:
        links = [
            trace.Link(origin)
            for origin in (self._origins.get(e.event_id) for e in events)
            if origin is not None
        ]
        # A root span (empty context): the sender task must not inherit whatever context it had.
        with _TRACER.start_as_current_span(
            "prediction_log.deliver",
            context=otel_context.Context(),
            kind=trace.SpanKind.PRODUCER,
            links=links,
            attributes={"prediction_log.batch_size": len(events)},
        ) as span:
            delivered = await self._attempt(events)
            span.set_attribute("prediction_log.delivered", delivered)
        if delivered:
            for e in events:
                self._origins.pop(e.event_id, None)
            metrics.LOG_EVENTS.labels("delivered").inc(len(events))
        return delivered

    async def _attempt(self, events: list[dpb.PredictionEvent]) -> bool:
        try:
            await self._send(events)
        except Exception as exc:
            if isinstance(exc, CredentialRefused):
                self.refusals.refusal(exc)
            if self.drift_up:
                _LOGGER.warning(
                    "drift-service did not accept a batch (%s); buffering on disk", type(exc).__name__
                )
            self.drift_up = False
            self._next_attempt = time.monotonic() + self.retry_interval_s
            return False
        self.refusals.accepted()
        if not self.drift_up:
            _LOGGER.info("drift-service accepts events again; delivering the disk buffer")
        self.drift_up = True
        self.sent += len(events)
        return True

    async def _spill(self, events: list[dpb.PredictionEvent]) -> None:
        await asyncio.to_thread(self.buffer.append, events)
        self.spilled += len(events)
        metrics.LOG_EVENTS.labels("spilled").inc(len(events))

    def _take(self, n: int) -> list[dpb.PredictionEvent]:
        return [self._memory.popleft() for _ in range(min(n, len(self._memory)))]

    async def _run(self) -> None:
        while not self._stopping:
            if len(self._memory) < self.batch_size and not (self.buffer.count and self.drift_up):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_interval_s):
                        await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                break
            try:
                await self._step()
            except Exception:  # pragma: no cover - keep the sender alive whatever happens
                _LOGGER.exception("prediction logger step failed")
                await asyncio.sleep(self.retry_interval_s)

    async def _step(self) -> None:
        now = time.monotonic()
        # Backlog first, when the drift-service is up or it is time to try again.
        if self.buffer.count and (self.drift_up or now >= self._next_attempt):
            rows = await asyncio.to_thread(self.buffer.oldest, self.batch_size)
            if rows and await self._deliver([e for _, e in rows]):
                await asyncio.to_thread(self.buffer.delete, [s for s, _ in rows])
        if not self._memory:
            return
        if self.drift_up:
            batch = self._take(self.batch_size)
            self._inflight += len(batch)
            try:
                if not await self._deliver(batch):
                    await self._spill(batch)
            finally:
                self._inflight -= len(batch)
        if not self.drift_up:
            # Down: memory stays bounded: everything still in memory goes to disk, in batches.
            while self._memory:
                batch = self._take(self.batch_size)
                self._inflight += len(batch)
                try:
                    await self._spill(batch)
                finally:
                    self._inflight -= len(batch)
