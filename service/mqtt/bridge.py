"""The MQTT bridge: readings from a broker applied through the engine, answers published back.

Each message on the readings topic is decoded (``payloads``) and observed by the same
``Forecaster`` every other interface calls, as the bridge's one tenant. The engine skips a
reading at or before its stream's last timestamp, so a QoS 1 redelivery, a retained message
replayed on subscribing or a sensor's resend is skipped, never applied twice. Readings of one
stream are applied in the order they arrived; those of different streams concurrently (the
engine batches them).

Replicas each subscribe to every reading by default, and race to apply it: the store's
compare-and-set lets one win, the others see a duplicate, so each reading is applied once
and, since every replica takes a stream's readings in order, none is skipped unapplied. (A
shared subscription, ``mqtt_share_group``, splits the readings between replicas instead, and
with them the order of one stream's readings.) Only the replica that applied a reading
publishes its answer.

The answers are not published by the message handler but heard through the bus's announcer
(``service.bus.announce``): every update of the tenant's streams made in this process, by
MQTT, REST or WebSocket alike, is published to the forecasts topic, the body an observe
request answers. A message that cannot be applied goes to the errors topic with its reason;
the handler never dies of one.

The connection is retried forever with exponential backoff (0.5 s doubling up to
``mqtt_reconnect_max_seconds``, with jitter); while the broker is away the HTTP side serves as
ever, and answers made meanwhile wait in a bounded inbox (the oldest dropped first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator

import aiomqtt
from prometheus_client import CollectorRegistry

from service.bus.announce import Heard
from service.core.answers import ObserveResult
from service.core.observations import Observations
from service.errors import ForecastError, UnknownStream
from service.forecaster import Forecaster
from service.mqtt.connection import Broker
from service.mqtt.instruments import MqttMetrics
from service.mqtt.payloads import Refusal, readings
from service.mqtt.topics import ReadingsTopic, publish_topic
from service.settings import Settings

log = logging.getLogger("service.mqtt")

#: Messages being applied at once; more wait in the client's queue (already acknowledged:
#: the client acknowledges QoS 1 on receipt, so a crash loses what waits there).
IN_FLIGHT = 256
#: First pause before reconnecting; it doubles after each failed attempt.
FIRST_BACKOFF_SECONDS = 0.5
#: Time a stopping bridge gives the messages it is applying.
STOP_GRACE_SECONDS = 5.0


class Bridge:
    """One MQTT connection for one tenant, reconnected until ``stop``."""

    def __init__(self, forecaster: Forecaster, settings: Settings, registry: CollectorRegistry):
        if not settings.mqtt_url:
            raise ValueError("the MQTT bridge needs FORECAST_MQTT_URL")
        self._forecaster = forecaster
        self._settings = settings
        self.tenant = settings.mqtt_tenant or settings.tenant
        self._topic = ReadingsTopic.parse(settings.mqtt_readings_topic)
        self.broker = Broker.from_url(
            settings.mqtt_url, username=settings.mqtt_username, password=settings.mqtt_password
        )
        self.metrics = MqttMetrics(registry)
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._slots = asyncio.Semaphore(IN_FLIGHT)
        #: Per stream, the lock that keeps its readings in order and how many messages hold it.
        self._order: dict[str, tuple[asyncio.Lock, int]] = {}
        self._work: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    # -- lifetime ------------------------------------------------------------------------

    def start(self) -> None:
        self._runner = asyncio.create_task(self.run(), name="mqtt-bridge")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    @property
    def connected(self) -> bool:
        """Whether the bridge is connected and subscribed now."""
        return self._connected.is_set()

    async def run(self) -> None:
        """Connect, subscribe and apply messages; reconnect with backoff; until cancelled."""
        listening = self._forecaster.announcer.listen(
            self.tenant, on_drop=self.metrics.unpublished.inc
        )
        async with listening as heard:
            publisher = asyncio.create_task(self._publish_all(heard), name="mqtt-publisher")
            try:
                await self._connect_forever()
            finally:
                publisher.cancel()
                await self._finish_work()
                with contextlib.suppress(asyncio.CancelledError):
                    await publisher

    async def _connect_forever(self) -> None:
        delay = FIRST_BACKOFF_SECONDS
        while True:
            try:
                async with self._client_for_broker() as client:
                    await client.subscribe(
                        self._topic.subscription(self._settings.mqtt_share_group),
                        qos=self._settings.mqtt_qos,
                    )
                    self._up(client)
                    delay = FIRST_BACKOFF_SECONDS
                    async for message in client.messages:
                        await self._take(message)
                log.warning("MQTT %s ended the session; reconnecting in %.1f s", self.broker, delay)
            except aiomqtt.MqttError as exc:
                log.warning("MQTT %s: %s; reconnecting in %.1f s", self.broker, exc, delay)
            except Exception:  # never a dead bridge: log it and connect again
                log.exception(
                    "MQTT bridge to %s failed; reconnecting in %.1f s", self.broker, delay
                )
            finally:
                self._down()
            await asyncio.sleep(delay * random.uniform(0.75, 1.0))
            delay = min(delay * 2, self._settings.mqtt_reconnect_max_seconds)

    def _client_for_broker(self) -> aiomqtt.Client:
        client_id = self._settings.mqtt_client_id
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username=self.broker.username,
            password=self.broker.password,
            identifier=client_id,
            clean_session=client_id is None,
            tls_context=self.broker.tls_context(),
        )

    def _up(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._connected.set()
        self.metrics.connected.set(1)
        self.metrics.connects.inc()
        log.info(
            "MQTT bridge connected to %s: readings from %s, tenant %r",
            self.broker,
            self._topic.subscription(self._settings.mqtt_share_group),
            self.tenant,
        )

    def _down(self) -> None:
        self._client = None
        self._connected.clear()
        self.metrics.connected.set(0)

    async def _finish_work(self) -> None:
        if self._work:
            _, late = await asyncio.wait(set(self._work), timeout=STOP_GRACE_SECONDS)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # -- readings in ---------------------------------------------------------------------

    async def _take(self, message: aiomqtt.Message) -> None:
        """Start applying one message, after the earlier ones of its stream."""
        self.metrics.received.inc()
        topic = str(message.topic)
        payload = message.payload
        raw = payload if isinstance(payload, bytes) else str(payload or "").encode()
        stream_id = self._topic.stream_id(topic)
        await self._slots.acquire()
        order = stream_id or ""
        lock, holders = self._order.get(order, (asyncio.Lock(), 0))
        self._order[order] = (lock, holders + 1)
        task = asyncio.create_task(self._apply_in_order(lock, order, topic, stream_id, raw))
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def _apply_in_order(
        self, lock: asyncio.Lock, order: str, topic: str, stream_id: str | None, raw: bytes
    ) -> None:
        try:
            async with lock:  # tasks start in arrival order, so they queue here in it
                await self._apply(topic, stream_id, raw)
        except Exception:
            log.exception("MQTT message on %s was not handled", topic)
        finally:
            self._slots.release()
            lock_now, holders = self._order[order]
            if holders > 1:
                self._order[order] = (lock_now, holders - 1)
            else:
                del self._order[order]

    async def _apply(self, topic: str, stream_id: str | None, raw: bytes) -> None:
        try:
            if stream_id is None:
                raise Refusal("invalid-input", f"topic {topic!r} names no stream", "topic")
            result = await self._observe(stream_id, readings(raw))
        except Refusal as refusal:
            await self._refuse(topic, stream_id, refusal)
        except ForecastError as exc:
            await self._refuse(topic, stream_id, Refusal.of(exc))
        else:
            (self.metrics.applied if result.applied else self.metrics.skipped).inc()

    async def _observe(self, stream_id: str, obs: Observations) -> ObserveResult:
        """Observe; a stream never seen is created first when a default model is set."""
        try:
            return await self._forecaster.observe(self.tenant, stream_id, obs)
        except UnknownStream:
            model = self._settings.mqtt_default_model
            if model is None:
                raise Refusal(
                    "unknown-stream",
                    f"stream {stream_id!r} does not exist (create it, or set "
                    "FORECAST_MQTT_DEFAULT_MODEL to create streams on their first reading)",
                    "stream_id",
                ) from None
        # Never replaces: another replica may have created it (and fed it) meanwhile.
        await self._forecaster.create_stream(self.tenant, stream_id, model, replace=False)
        return await self._forecaster.observe(self.tenant, stream_id, obs)

    async def _refuse(self, topic: str, stream_id: str | None, refusal: Refusal) -> None:
        self.metrics.rejected.labels(refusal.code).inc()
        log.info("MQTT message on %s refused: %s", topic, refusal.detail)
        where = publish_topic(self._settings.mqtt_errors_topic, stream_id or "_")
        if where is not None:
            await self._send(where, refusal.body(topic, stream_id))

    # -- answers out ---------------------------------------------------------------------

    async def _publish_all(self, heard: AsyncIterator[Heard]) -> None:
        """Publish every update of the tenant's streams made in this process, in order."""
        async for stream_id, payload in heard:
            topic = publish_topic(self._settings.mqtt_forecasts_topic, stream_id)
            if topic is None:
                self.metrics.unpublished.inc()
                continue
            await self._connected.wait()  # answers made while the broker is away wait here
            sent = asyncio.create_task(self._send(topic, payload, counted=True))
            self._work.add(sent)
            sent.add_done_callback(self._work.discard)

    async def _send(self, topic: str, payload: bytes, *, counted: bool = False) -> None:
        """Publish at the configured QoS; a broker gone meanwhile loses the message (counted)."""
        client = self._client
        try:
            if client is None:
                raise aiomqtt.MqttError("not connected")
            await client.publish(topic, payload, qos=self._settings.mqtt_qos)
        except aiomqtt.MqttError as exc:
            if counted:
                self.metrics.unpublished.inc()
            log.debug("MQTT publish to %s failed: %s", topic, exc)
            return
        if counted:
            self.metrics.published.inc()


@contextlib.asynccontextmanager
async def bridged(
    forecaster: Forecaster, settings: Settings, registry: CollectorRegistry
) -> AsyncIterator[Bridge | None]:
    """A running bridge while the block runs when ``mqtt_url`` is set, else None."""
    if not settings.mqtt_url:
        yield None
        return
    bridge = Bridge(forecaster, settings, registry)
    bridge.start()
    try:
        yield bridge
    finally:
        await bridge.stop()


__all__ = ["Bridge", "bridged"]
