"""Wiring: builds every component of a worker from one settings object (no I/O here)."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, cast

import faust
from aiohttp import web

from dialogue_worker.adapters.commits import KafkaPartitionLog, KafkaPositions, OffsetCommitter
from dialogue_worker.adapters.consumer_lag import ConsumerLag
from dialogue_worker.adapters.faust_app import RawSchema, WorkerApp
from dialogue_worker.adapters.mongo import MongoDatabase
from dialogue_worker.adapters.mongo_chats import MongoChats
from dialogue_worker.adapters.mongo_log import MongoMessageLog
from dialogue_worker.adapters.outbox import KafkaOutbox
from dialogue_worker.adapters.registration import ConsulRegistration, instance_id
from dialogue_worker.adapters.rewind import Rewinder
from dialogue_worker.domain.offsets import DurableOffsets
from dialogue_worker.entrypoints.agent import attach_agent
from dialogue_worker.entrypoints.http import InternalApi
from dialogue_worker.entrypoints.middleware import edge_middleware
from dialogue_worker.metrics import WorkerMetrics
from dialogue_worker.services.chat_book import ChatBook
from dialogue_worker.services.chat_lists import Change, ChatLists
from dialogue_worker.services.chats import ChatService
from dialogue_worker.services.health import PING_TIMEOUT, WorkerHealth
from dialogue_worker.services.ordering import PartitionOrder
from dialogue_worker.services.persistence import BatchPersister
from dialogue_worker.settings import WorkerSettings
from platform_common import kafka_records
from platform_common.events_feed import KafkaEventFeed
from platform_common.retry import Backoff

log = logging.getLogger(__name__)


@dataclass
class Components:
    settings: WorkerSettings
    instance_id: str
    app: faust.App
    database: MongoDatabase
    outbox: KafkaOutbox
    feed: KafkaEventFeed
    lists: ChatLists
    persister: BatchPersister
    committer: OffsetCommitter
    positions: KafkaPositions
    health: WorkerHealth
    metrics: WorkerMetrics
    registration: ConsulRegistration


def stream_buffer_size(batch_size: int) -> int:
    """Records faust may hold for the agent beyond the batch in hand: two batches."""
    return 2 * batch_size


def faust_app(settings: WorkerSettings) -> faust.App:
    """The faust app: consumer group = app id, raw bytes in, manual acks, quiet web server."""
    app = WorkerApp(
        settings.worker_app_id,
        # faust reads ~80 variables of its own (WEB_BIND, WEB_PORT, BROKER_URL, ...) and
        # lets each override what is passed here: a stray WEB_BIND=0.0.0.0 in a shell got
        # past the local loopback guard. Every setting comes from WorkerSettings instead.
        env={},
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        datadir=str(settings.data_dir / settings.worker_app_id),
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=10.0,
        broker_rebalance_timeout=10.0,
        broker_heartbeat_interval=1.0,
        # Records in hand are redelivered after a rebalance (writes are idempotent);
        # waiting for them could hang a rebalance while MongoDB is down.
        stream_wait_empty=False,
        # Records read ahead of the agent, counted in records (faust has no byte bound):
        # faust's default of 4,096 held ~4 GiB of an outside producer's 1 MiB junk
        # records. Two batches keep the next batch ready while one is written.
        stream_buffer_maxsize=stream_buffer_size(settings.batch_size),
        topic_allow_declare=False,  # topics are created by adapters.topics
        topic_disable_leader=True,
        topic_partitions=settings.topic_partitions,
        web_bind=settings.worker_host,
        web_host=settings.advertise_host,
        web_port=settings.worker_port,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_stats_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
    )
    app.kafka_topics = (settings.topic,)
    return app


def build(settings: WorkerSettings) -> Components:
    kafka_records.install()  # before any consumer: a header key must not stop a partition
    app = faust_app(settings)
    metrics = WorkerMetrics()
    database = MongoDatabase(settings.mongo_url, settings.mongo_db, settings.mongo_timeout)
    log_store = MongoMessageLog(database)
    outbox = KafkaOutbox(
        settings.kafka_bootstrap,
        dlq_topic=settings.dlq_topic,
        topic=settings.topic,
        events_topic=settings.events_topic,
    )
    ledger = DurableOffsets()
    lag = ConsumerLag(app, ledger)
    positions = KafkaPositions(settings.kafka_bootstrap, settings.worker_app_id, settings.topic)
    committer = OffsetCommitter(app, ledger, positions, settings.topic, metrics)
    order = PartitionOrder(
        ledger, KafkaPartitionLog(app, positions), metrics, learn=committer.learn
    )
    health = WorkerHealth(
        functools.partial(database.ping, PING_TIMEOUT),
        lag.per_partition,
        stall_after=settings.stall_after,
    )
    persister = BatchPersister(
        log_store,
        outbox,
        ChatBook(log_store, settings.chat_cache_ttl),
        health,
        metrics,
        backoff=lambda: Backoff(0.1, settings.retry_backoff_max),
        ledger=ledger,
        order=order,
    )
    # acks=False: faust neither tracks nor commits this topic; the worker commits what it
    # made durable (adapters.commits).
    topic: Any = app.topic(
        settings.topic, partitions=settings.topic_partitions, schema=RawSchema(), acks=False
    )
    attach_agent(app, topic, persister, settings.batch_size, settings.batch_within)

    def ours(tps: set[Any]) -> list[int]:
        return sorted(tp.partition for tp in tps if tp.topic == settings.topic)

    async def on_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        await committer.revoked(revoked)
        persister.forget_partitions(ours(revoked))
        log.info("partitions revoked: %s", ours(revoked), extra={"topic": settings.topic})

    async def on_assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        await committer.assigned(assigned)
        # Another worker may have written these chats since this one last held them (a
        # state read again while a write ended after a revoke): read them afresh.
        persister.forget_partitions(ours(assigned))
        log.info("partitions assigned: %s", ours(assigned), extra={"topic": settings.topic})

    app.on_partitions_revoked.connect(cast(Any, on_revoked))  # faust's signals, typed loosely
    app.on_partitions_assigned.connect(cast(Any, on_assigned))

    metrics.watch_partitions(lag.lags, lambda: len(health.stuck()))
    rewinder = Rewinder(app, health, metrics, every=settings.stall_after, mend=order.mend)

    async def watch_partitions() -> None:
        try:
            await lag.refresh_ends()
        except Exception as exc:  # Kafka unreachable: those partitions show no lag this time
            log.warning("could not read end offsets: %s", exc)
        try:  # an exception out of a faust timer stops the worker
            # A transaction's last marker is passed here, well before STALL_AFTER (two
            # periods at most), so a quiet transactional partition never shows as stuck.
            await order.mend_tails(lag.per_partition())
            await rewinder.run_once()
        except Exception:
            log.exception("looking for stuck partitions failed; again next period")

    app.timer(interval=max(1.0, settings.stall_after / 3))(watch_partitions)
    app.timer(interval=settings.commit_interval)(committer.tick)

    ident = instance_id(settings)
    web_app: web.Application = cast(Any, app.web).web_app  # faust's aiohttp application
    token = settings.entrypoint_token.get_secret_value()
    web_app.middlewares.append(edge_middleware(token, metrics, settings.mongo_timeout))
    store = MongoChats(database)
    feed = KafkaEventFeed(
        settings.kafka_bootstrap,
        settings.events_topic,
        client_id="dialogue-worker-lists",
        barrier=True,
        decode=Change.of,  # only which chat, marker or member changed
    )
    lists = ChatLists(
        store,
        feed,
        most=settings.chat_lists_max,
        ttl=settings.chat_lists_ttl,
        counted=lambda source: metrics.chat_lists.labels(source).inc(),
    )
    chats = ChatService(
        store,
        outbox,
        publish_timeout=settings.api_publish_timeout,
        max_members=settings.max_chat_members,
        lists=lists,
    )
    InternalApi(chats, health, metrics, ident).install(web_app)
    return Components(
        settings=settings,
        instance_id=ident,
        app=app,
        database=database,
        outbox=outbox,
        feed=feed,
        lists=lists,
        persister=persister,
        committer=committer,
        positions=positions,
        health=health,
        metrics=metrics,
        registration=ConsulRegistration(settings, ident, health),
    )
