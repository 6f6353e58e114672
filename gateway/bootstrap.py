"""Opens the real adapters from the settings and builds the services on top of them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from discovery import WORKER_META_APP_ID, WORKER_TAG, BalancedClient, ServiceWatch
from gateway.adapters.kafka_bus import KafkaBus
from gateway.adapters.mysql_users import MySQLUserStore, mysql_pool
from gateway.adapters.passwords import Argon2Hasher
from gateway.adapters.workers import (
    REFUSALS,
    WorkerClient,
    bus_unavailable,
    handler_failed,
    pong_serves_reads,
    refuses_gateway,
)
from gateway.domain.idempotency import IdempotencyCache
from gateway.domain.throttle import FailureBudget, FailureLimit, SignInThrottle
from gateway.domain.tokens import TokenCodec
from gateway.entrypoints.state import Services
from gateway.services.auth import AuthService
from gateway.services.chats import ChatService, Membership
from gateway.services.directory import Directory
from gateway.services.limits import Action, RateLimits, Rules, Scope
from gateway.services.live import Hub, LiveMetrics, QueueLimits
from gateway.services.messages import MessageService
from gateway.services.ports import EventFeed, MessageBus, PasswordHasher, UserStore, Workers
from gateway.services.readiness import Readiness
from gateway.services.stream import StreamService
from gateway.settings import GatewaySettings
from platform_common import kafka_records
from platform_common.events_feed import KafkaEventFeed
from platform_common.http import TIMEOUT_HEADER


@dataclass(frozen=True)
class Adapters:
    users: UserStore
    hasher: PasswordHasher
    bus: MessageBus
    workers: Workers
    feed: EventFeed  # started by the app once the hub exists


AdaptersFactory = Callable[[GatewaySettings], AbstractAsyncContextManager[Adapters]]


def worker_balancer(settings: GatewaySettings, watch: ServiceWatch) -> BalancedClient:
    """The client the gateway reaches its workers with, over the instances `watch` sees:
    what counts as a worker's failure, what is passed on, and the retries."""
    return BalancedClient(
        watch,
        attempts=settings.upstream_attempts,
        deadline=settings.upstream_deadline,
        request_timeout=settings.upstream_request_timeout,
        cooldown=settings.upstream_cooldown,
        headers={"Authorization": f"Entrypoint {settings.secret('entrypoint_token')}"},
        refused=REFUSALS,
        refuses=refuses_gateway,
        probe_healthy=pong_serves_reads,
        passed_on=bus_unavailable,
        faulted=handler_failed,
        faults_to_eject=settings.upstream_faults_to_eject,
        timeout_header=TIMEOUT_HEADER,
    )


@asynccontextmanager
async def real_adapters(settings: GatewaySettings) -> AsyncIterator[Adapters]:
    """MySQL pool (migrated), Kafka producer, Consul watch and balancer; closed in reverse."""
    kafka_records.install()  # the events feed reads any header key without stopping
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(
            mysql_pool(
                host=settings.mysql_host,
                port=settings.mysql_port,
                user=settings.mysql_user,
                password=settings.secret("mysql_password"),
                database=settings.mysql_database,
                size=settings.mysql_pool_size,
                connect_wait=settings.mysql_connect_wait,
            )
        )
        bus = KafkaBus(settings.kafka_bootstrap, settings.topic, settings.kafka_send_timeout)
        stack.push_async_callback(bus.stop)
        await bus.start()
        watch = ServiceWatch(
            settings.consul_url,
            service=settings.worker_service,
            token=settings.consul_token.get_secret_value() if settings.consul_token else None,
            require_tag=WORKER_TAG,
            require_meta={WORKER_META_APP_ID: settings.worker_app_id},
        )
        stack.push_async_callback(watch.stop)
        await watch.start()
        client = worker_balancer(settings, watch)
        stack.push_async_callback(client.stop)
        await client.start()
        feed = KafkaEventFeed(settings.kafka_bootstrap, settings.events_topic)
        stack.push_async_callback(feed.stop)
        hasher = Argon2Hasher(
            settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
        )
        yield Adapters(
            users=MySQLUserStore(pool, settings.mysql_timeout),
            hasher=hasher,
            bus=bus,
            workers=WorkerClient(client),
            feed=feed,
        )


def rate_rules(settings: GatewaySettings) -> Rules:
    """The token buckets of GatewaySettings, by action and scope."""
    return {
        (Action.SIGN_UP, Scope.ADDRESS): settings.rate_sign_up_per_address,
        (Action.SIGN_IN, Scope.ADDRESS): settings.rate_sign_in_per_address,
        (Action.SIGN_IN, Scope.USER): settings.rate_sign_in_per_user,
        (Action.REFRESH_TOKEN, Scope.USER): settings.refresh_rate,
        (Action.CREATE_CHAT, Scope.ADDRESS): settings.rate_chats_per_address,
        (Action.CREATE_CHAT, Scope.USER): settings.rate_chats_per_user,
        (Action.POST_MESSAGE, Scope.ADDRESS): settings.rate_messages_per_address,
        (Action.POST_MESSAGE, Scope.USER): settings.rate_messages_per_user,
        (Action.OPEN_STREAM, Scope.ADDRESS): settings.rate_streams_per_address,
        (Action.LOOK_UP_USERS, Scope.USER): settings.rate_user_lookups_per_user,
        (Action.ADD_MEMBERS, Scope.ADDRESS): settings.rate_members_per_address,
        (Action.ADD_MEMBERS, Scope.USER): settings.rate_members_per_user,
        (Action.MARK_READ, Scope.ADDRESS): settings.rate_reads_per_address,
        (Action.MARK_READ, Scope.USER): settings.rate_reads_per_user,
    }


def sign_in_throttle(settings: GatewaySettings) -> SignInThrottle:
    window, lockout = settings.signin_window, settings.signin_lockout
    return SignInThrottle(
        account=FailureLimit(settings.signin_max_failures, window, lockout),
        address=FailureLimit(settings.signin_address_max_failures, window, lockout),
        overall=FailureBudget(settings.signin_global_max_failures, window),
    )


def build_services(
    settings: GatewaySettings,
    adapters: Adapters,
    live_metrics: LiveMetrics,
    clock: Callable[[], float] = time.time,
) -> Services:
    tokens = TokenCodec(
        settings.secret("jwt_secret"),
        settings.jwt_issuer,
        settings.jwt_ttl,
        settings.session_max_age,
    )
    # Wall time (`clock`) where a moment is stored or sent (tokens, createdAt);
    # time.monotonic for how long something lasts (lockouts, buckets, caches, idempotency
    # entries): a step of the wall clock lengthened or ended every running lockout and
    # bucket, and expired keys early.
    membership = Membership(adapters.workers, settings.membership_cache_ttl, time.monotonic)
    idempotency = IdempotencyCache(
        settings.idempotency_ttl,
        settings.idempotency_max_keys,
        settings.idempotency_max_bytes,
        settings.idempotency_keys_per_user,
    )
    auth = AuthService(
        adapters.users, adapters.hasher, tokens, sign_in_throttle(settings), clock, time.monotonic
    )
    return Services(
        auth=auth,
        chats=ChatService(adapters.workers, adapters.users, membership),
        messages=MessageService(
            adapters.workers, adapters.bus, membership, idempotency, clock, time.monotonic
        ),
        readiness=Readiness(adapters.bus, adapters.users, adapters.workers, adapters.feed),
        workers=adapters.workers,
        limits=RateLimits(rate_rules(settings), time.monotonic, settings.rate_limit_max_keys),
        directory=Directory(adapters.users),
        stream=StreamService(
            Hub(),
            adapters.workers,
            adapters.feed,
            live_metrics,
            QueueLimits(settings.stream_queue_frames, settings.stream_queue_bytes),
            settings.stream_catch_ups,
            clock,
            max_per_user=settings.stream_max_per_user,
            max_per_address=settings.stream_max_per_address,
        ),
        idempotency=idempotency,
    )
