"""Apache Kafka, one KRaft node (broker + controller), jars from Maven Central."""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from infra.local.service import Progress, Service, ServiceError

POM = Path(__file__).with_name("kafka-pom.xml")

LOG4J = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def _cluster_id() -> str:
    """A random KRaft cluster id; like Kafka's own, never starting with '-' (read as a flag)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class Kafka(Service):
    name = "kafka"
    marker = "kafka.Kafka"

    @property
    def libs(self) -> Path:
        return self.settings.cache_dir / f"kafka-{self.settings.kafka_version}" / "libs"

    def provision(self, progress: Progress) -> None:
        stamp = self.libs / ".complete"
        if stamp.exists():
            return
        if shutil.which("mvn") is None or shutil.which("java") is None:
            raise ServiceError("kafka needs java and mvn on PATH (apt-get install maven)")
        progress.step(self.name, f"downloading Kafka {self.settings.kafka_version} jars (Maven)")
        shutil.rmtree(self.libs, ignore_errors=True)
        proc = subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-Dkafka.version={self.settings.kafka_version}",
                f"-DoutputDirectory={self.libs}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ServiceError(f"mvn failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        stamp.touch()

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            "java",
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def prepare(self, progress: Progress) -> None:
        s = self.settings
        config = self.data_dir / "server.properties"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "log4j2.properties").write_text(LOG4J)
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{s.host}:{s.kafka_controller_port}",
                    f"listeners=PLAINTEXT://{s.host}:{s.kafka_port},"
                    f"CONTROLLER://{s.host}:{s.kafka_controller_port}",
                    f"advertised.listeners=PLAINTEXT://{s.host}:{s.kafka_port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.data_dir / 'data'}",
                    "num.partitions=1",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=12",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.retention.hours=24",
                    "",
                ]
            )
        )
        if (self.data_dir / "data" / "meta.properties").exists():
            return
        progress.step(self.name, "formatting KRaft storage")
        cluster_id = _cluster_id()
        proc = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(config),
                "--ignore-formatted",
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ServiceError(f"kafka storage format failed:\n{proc.stdout}{proc.stderr}")

    def argv(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.data_dir / "server.properties"), heap="1g")

    def probe(self) -> None:
        # Its own loop in its own thread, so a caller inside a running loop can probe too.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, self._probe()).result()

    async def _probe(self) -> None:
        # aiokafka logs every refused connection at ERROR; a probe expects those.
        logger = logging.getLogger("aiokafka")
        level = logger.level
        logger.setLevel(logging.CRITICAL)
        try:
            await self._describe()
        finally:
            logger.setLevel(level)

    async def _describe(self) -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.settings.kafka_bootstrap, request_timeout_ms=2000
        )
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            # A KRaft broker answers before its controller unfences it, and lists itself
            # only then; until it does, a new topic gets no leader (seen on a cold start
            # under CPU load: the first worker gave up waiting for its topics' leaders).
            if not cluster.get("brokers"):
                raise ServiceError("kafka answers, but no broker is unfenced yet")
        finally:
            await admin.close()

    def endpoint(self) -> str:
        return self.settings.kafka_bootstrap
