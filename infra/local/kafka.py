"""Apache Kafka in KRaft mode, jars from Maven Central: one node, or a cluster of three.

Each node is a combined broker + controller process with its own ports, data folder and
log. One node ("kafka") is the default: it starts fastest and holds one copy of each
record. Three ("kafka-1" … "kafka-3", LOCAL_KAFKA_NODES=3) keep three copies, take a
write only when two have it (min.insync.replicas=2), and go on when one node is lost.

Failover settings of the cluster (Kafka's defaults in brackets), so that a lost leader is
replaced well inside the gateway's KAFKA_SEND_TIMEOUT (10 s); docs/running.md says why:
- broker.session.timeout.ms=2000 [9000], broker.heartbeat.interval.ms=250 [2000]: the
  controller fences a silent broker after 2 s and moves its leaderships;
- controller.quorum.fetch.timeout.ms=1000 [2000], controller.quorum.election.timeout.ms=500
  [1000]: a lost active controller is replaced within about 1-2 s;
- replica.lag.time.max.ms=10000 [30000]: a dead follower leaves the ISR after 10 s;
- leader.imbalance.check.interval.seconds=30 [300]: a node that returns gets its
  preferred leaderships back within half a minute.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import shutil
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from infra.local.downloads import cache_lock, run_fetching
from infra.local.service import Progress, Service, ServiceError
from infra.local.settings import LocalSettings

POM = Path(__file__).with_name("kafka-pom.xml")
#: The cluster id the nodes of a 3-node cluster share, in the run folder.
CLUSTER_ID_FILE = "kafka-cluster-id"
#: Seconds the download of Kafka's jars may take (about 20 s here).
MVN_TIMEOUT = 900.0

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


#: One provisioning at a time in this process, quietly: the nodes of a cluster share
#: their jar folder (the cache's lock keeps other processes out, and says so).
_PROVISIONING = threading.Lock()

#: Failover settings of a multi-node cluster (see the module docstring).
CLUSTER_TUNING = [
    "broker.session.timeout.ms=2000",
    "broker.heartbeat.interval.ms=250",
    "controller.quorum.election.timeout.ms=500",
    "controller.quorum.fetch.timeout.ms=1000",
    "replica.lag.time.max.ms=10000",
    "leader.imbalance.check.interval.seconds=30",
    "unclean.leader.election.enable=false",
]


def node_names(nodes: int) -> list[str]:
    """The service names of a cluster's nodes: "kafka" alone, else kafka-1 … kafka-N."""
    return ["kafka"] if nodes == 1 else [f"kafka-{n}" for n in range(1, nodes + 1)]


class Kafka(Service):
    ready_timeout = 120.0

    def __init__(self, settings: LocalSettings, node: int = 1) -> None:
        super().__init__(settings)
        self.node = node
        self.name = node_names(settings.kafka_nodes)[node - 1]
        self.port, self.controller_port = settings.kafka_ports(node)
        self.marker = str(self.data_dir / "server.properties")  # in its command line only

    @property
    def libs(self) -> Path:
        """The jars, a folder per POM content: a clone with another dependency list
        provisions its own rather than empty the one a running broker of another clone
        loads its classes from (found in review)."""
        digest = hashlib.sha1(POM.read_bytes()).hexdigest()[:12]
        return self.settings.cache_dir / f"kafka-{self.settings.kafka_version}" / f"libs-{digest}"

    @property
    def _stamp(self) -> Path:
        """Written once the jars are complete."""
        return self.libs / ".complete"

    def provision(self, progress: Progress) -> None:
        if self._stamp.exists():
            return
        # The folder is emptied and filled again: one provisioning of it at a time, by
        # the nodes of a cluster (side by side here) and by other clones sharing the cache.
        name = f"kafka-{self.settings.kafka_version}-{self.libs.name}"
        with _PROVISIONING, cache_lock(self.settings.cache_dir, name, self.name, progress):
            self._provision(progress)

    def _provision(self, progress: Progress) -> None:
        stamp = self._stamp
        if stamp.exists():  # provisioned while this one waited for the lock
            return
        if shutil.which("mvn") is None or shutil.which("java") is None:
            raise ServiceError("kafka needs java and mvn on PATH (apt-get install maven)")
        progress.step(self.name, f"downloading Kafka {self.settings.kafka_version} jars (Maven)")
        shutil.rmtree(self.libs, ignore_errors=True)
        run_fetching(
            [
                "mvn",
                "-q",
                "-B",
                "-C",  # a jar whose checksum does not match fails (Maven 3 only warns)
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                f"-Dkafka.version={self.settings.kafka_version}",
                f"-DoutputDirectory={self.libs}",
                "-DincludeScope=runtime",
            ],
            what=self.name,
            timeout=MVN_TIMEOUT,
        )
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

    def _properties(self) -> list[str]:
        s = self.settings
        nodes = s.kafka_nodes
        replicas = min(3, nodes)
        min_isr = 2 if replicas >= 3 else 1
        voters = ",".join(f"{n}@{s.host}:{s.kafka_ports(n)[1]}" for n in range(1, nodes + 1))
        lines = [
            "process.roles=broker,controller",
            f"node.id={self.node}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://{s.host}:{self.port},"
            f"CONTROLLER://{s.host}:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://{s.host}:{self.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={self.data_dir / 'data'}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            f"default.replication.factor={replicas}",
            f"min.insync.replicas={min_isr}",
            f"offsets.topic.replication.factor={replicas}",
            "offsets.topic.num.partitions=12",
            f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={min_isr}",
            f"share.coordinator.state.topic.replication.factor={replicas}",
            f"share.coordinator.state.topic.min.isr={min_isr}",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.hours=24",
        ]
        return lines + (CLUSTER_TUNING if nodes > 1 else [])

    def _cluster_id(self) -> str:
        """One id for every node of the cluster (a file beside their data folders)."""
        if self.settings.kafka_nodes == 1:
            return _cluster_id()
        path = self.run_dir / CLUSTER_ID_FILE
        if not path.exists():
            path.write_text(_cluster_id())
        return path.read_text().strip()

    def prepare(self, progress: Progress) -> None:
        config = self.data_dir / "server.properties"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "log4j2.properties").write_text(LOG4J)
        config.write_text("\n".join([*self._properties(), ""]))
        if (self.data_dir / "data" / "meta.properties").exists():
            return
        progress.step(self.name, "formatting KRaft storage")
        proc = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                self._cluster_id(),
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
        heap = "1g" if self.settings.kafka_nodes == 1 else "512m"
        return self._java("kafka.Kafka", str(self.data_dir / "server.properties"), heap=heap)

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
        admin = AIOKafkaAdminClient(bootstrap_servers=self.endpoint(), request_timeout_ms=2000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            # A KRaft broker answers before its controller unfences it, and lists itself
            # only then; until it does, a new topic gets no leader (seen on a cold start
            # under CPU load: the first worker gave up waiting for its topics' leaders).
            if self.node not in {b["node_id"] for b in cluster.get("brokers", [])}:
                raise ServiceError(f"{self.name} answers, but is not an unfenced broker yet")
        finally:
            await admin.close()

    def endpoint(self) -> str:
        return f"{self.settings.host}:{self.port}"
