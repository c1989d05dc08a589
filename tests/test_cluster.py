"""The embedded Redis Cluster: started, joined, served and stopped like the single Redis.

Three primaries on free 127.0.0.1 ports behind the lab's secret, three pods speaking the
cluster protocol. What a cluster changes is checked where it shows: every slot served, each
node ours (PID behind our password) and closed to anonymous clients, an item's keys on the
node that owns its hash tag, the ready message sharded (``SPUBLISH`` on that node only), and
nothing left running after ``stop()``.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from redis.crc import key_slot

from stampede import auth, procs
from stampede.cache import CacheStore
from stampede.config import LabConfig, StrategyConfig
from stampede.errors import ConfigError, LabError
from stampede.lab import Lab
from stampede.runner import run, split_params
from tests.helpers import child_pids
from tests.test_lab import assert_everyone_got_the_value, herd, origin_reads

PRIMARIES = 3


@pytest.fixture(scope="module")
def cluster_lab() -> Iterator[Lab]:
    with Lab.embedded(LabConfig(redis_cluster=PRIMARIES)) as running:
        yield running


def node_ports(lab: Lab) -> list[int]:
    """The ports of the lab's cluster nodes, as the cluster itself lists them."""
    with lab.redis() as client:
        assert isinstance(client, redis.RedisCluster)
        return sorted(int(node.port) for node in client.get_nodes())


def owner_port(lab: Lab, key: str) -> int:
    with lab.redis() as client:
        assert isinstance(client, redis.RedisCluster)
        node = client.get_node_from_key(key)
        assert node is not None
        return int(node.port)


def test_the_lab_names_a_cluster_and_every_slot_is_served(cluster_lab: Lab) -> None:
    assert cluster_lab.cluster and cluster_lab.redis_url.startswith("redis-cluster://")
    ports = node_ports(cluster_lab)
    assert len(ports) == PRIMARIES
    assert cluster_lab.redis_nodes == PRIMARIES  # processes: the nodes first, then the pods
    served = 0
    for port in ports:
        with redis.Redis(port=port, password=cluster_lab.secret) as node:
            info = node.cluster("info")
            assert info["cluster_state"] == "ok"
            assert int(info["cluster_known_nodes"]) == PRIMARIES
            served += sum(end - start + 1 for start, end in _own_slots(node))
    assert served == 16384  # every slot, each by exactly one primary


def _own_slots(node: redis.Redis) -> list[tuple[int, int]]:
    myself = node.execute_command("CLUSTER", "MYID").decode()
    return [
        (int(start), int(end))
        for start, end, primary, *_ in node.execute_command("CLUSTER", "SLOTS")
        if primary[2].decode() == myself
    ]


def test_every_node_is_ours_and_refuses_a_client_without_the_password(cluster_lab: Lab) -> None:
    ours = set(cluster_lab.pids[: cluster_lab.redis_nodes])
    for port in node_ports(cluster_lab):
        with (
            redis.Redis(port=port, socket_timeout=2) as anonymous,
            pytest.raises(redis.AuthenticationError),
        ):
            anonymous.ping()
        with redis.Redis(port=port, password=cluster_lab.secret) as node:
            assert int(node.info("server")["process_id"]) in ours


@pytest.mark.parametrize("wait", ["poll", "notify"])
async def test_single_flight_reads_once_across_pods_on_the_cluster(
    cluster_lab: Lab, wait: str
) -> None:
    cluster_lab.configure(StrategyConfig(strategy="single_flight", wait=wait))
    before = cluster_lab.commandstats_by_node()
    outcomes = assert_everyone_got_the_value(await herd(cluster_lab))
    assert origin_reads(cluster_lab) == 1
    assert outcomes["miss"] == 1
    after = cluster_lab.commandstats_by_node()
    delta = {
        node: Counter({k: v - before[node].get(k, 0) for k, v in stats.items()})
        for node, stats in after.items()
    }
    owner = f"127.0.0.1:{owner_port(cluster_lab, CacheStore.key(1))}"
    others = [node for node in delta if node != owner]
    assert len(others) == PRIMARIES - 1
    # the item's commands all reached its slot's node; the others saw none of them
    scripts = delta[owner]["evalsha"] + delta[owner]["eval"]  # claims and the fill
    assert delta[owner]["get"] >= 1 and scripts >= 2
    item_commands = ("get", "set", "del", "evalsha", "eval")
    assert all(delta[n][c] == 0 for n in others for c in item_commands)
    assert all(stats["publish"] == 0 for stats in delta.values())  # never broadcast
    if wait == "notify":
        assert delta[owner]["spublish"] == 1  # the fill's one sharded message
        port = owner_port(cluster_lab, CacheStore.ready_channel(1))
        with redis.Redis(port=port, password=cluster_lab.secret) as node:
            _, subscribers = node.execute_command(
                "PUBSUB", "SHARDNUMSUB", CacheStore.ready_channel(1)
            )
        assert 1 <= subscribers <= len(cluster_lab.pods)  # the pods that waited, on that node
    with cluster_lab.redis() as client:
        keys = client.keys("*", target_nodes=redis.RedisCluster.PRIMARIES)
    assert keys == [CacheStore.key(1).encode()]


# 6 s at 60 req/s, TTL 1 s: five complete hot-key cycles; 95 % of requests on item 1
SHORT = {"duration_s": 6.0, "rate": 60.0, "clients": 6, "ttl_s": 1.0, "origin_latency_ms": 100.0}


@pytest.mark.parametrize("wait", ["poll", "notify"])
def test_a_run_on_the_cluster_counts_commands_by_shard(cluster_lab: Lab, wait: str) -> None:
    """Single-flight on three shards: one hot read per window, the hot shard carries most.

    95 % of requests are for the hot key, so its shard takes at least the hits of 95 % of
    them; the other two share the 5 % cold traffic. Half of all commands is a loose floor
    that still fails if the accounting lost a node or summed the wrong one.
    """
    result = run("single_flight", lab=cluster_lab, fresh=True, progress=False, wait=wait, **SHORT)
    summary = result.summary
    assert summary["lost"] == 0
    windows = summary["hot_reads_per_window"]
    assert len(windows) >= 4 and set(windows) == {1}  # exactly one read per TTL window
    by_shard = summary["redis_commands_by_shard"]
    assert len(by_shard) == PRIMARIES
    assert sum(by_shard.values()) == summary["redis_commands"]
    hot = by_shard[cluster_lab.node_of(CacheStore.key(1))]
    assert summary["hot_shard_command_share"] == pytest.approx(hot / summary["redis_commands"])
    assert hot == max(by_shard.values())
    assert summary["hot_shard_command_share"] > 0.5
    assert "publish" not in result.commands  # sharded: SPUBLISH only
    assert not any(name.startswith("cluster|") for name in result.commands)  # bookkeeping


def test_items_spread_over_the_shards(cluster_lab: Lab) -> None:
    """Distinct hash tags land on distinct nodes: the hot key's shard is one of three."""
    cluster_lab.configure(StrategyConfig(strategy="naive", origin_latency_ms=5))
    for item in range(1, 31):
        assert httpx.get(f"{cluster_lab.pods[item % 3]}/items/{item}").status_code == 200
    with cluster_lab.redis() as client:
        assert isinstance(client, redis.RedisCluster)
        per_node = client.dbsize(target_nodes=redis.RedisCluster.PRIMARIES)
        owners = {owner_port(cluster_lab, CacheStore.key(i)) for i in range(1, 31)}
    assert per_node == 30
    assert len(owners) == PRIMARIES
    assert len({key_slot(CacheStore.key(i).encode()) for i in range(1, 31)}) == 30


def test_a_peer_with_its_own_client_is_refused_on_a_cluster(cluster_lab: Lab) -> None:
    pytest.importorskip("dogpile.cache", reason="PEER: needs the peers extra")
    with pytest.raises(LabError, match="Redis Cluster"):
        cluster_lab.configure(StrategyConfig(strategy="dogpile"))
    cluster_lab.configure(StrategyConfig(strategy="naive"))  # the pods still take a strategy


def test_restart_redis_is_refused_on_a_cluster(cluster_lab: Lab) -> None:
    with pytest.raises(LabError, match="cluster"):
        cluster_lab.restart_redis(0.1)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis_cluster": 2}, "needs 3 primaries"),
        ({"redis_replicas": 1}, "needs redis_cluster"),
        ({"redis_cluster": 3, "faults": [{"kind": "redis_restart", "at_s": 1, "down_s": 1}]},
         "not with redis_cluster"),
    ],
)  # fmt: skip
def test_impossible_cluster_shapes_are_refused_in_one_line(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        split_params({"strategy": "naive", **values})


def test_a_cluster_lab_stops_every_process_and_port_it_started(tmp_path: Path) -> None:
    before = child_pids()
    lab = Lab.embedded(LabConfig(pods=1, redis_cluster=PRIMARIES), log_dir=tmp_path / "logs")
    pids = lab.pids
    ports = [*node_ports(lab), int(urlsplit(lab.pods[0]).port or 0)]
    assert len(pids) == PRIMARIES + 1 and all(procs.pid_alive(p) for p in pids)
    assert child_pids() - before == set(pids)  # the nodes and the pod; redis-cli has exited
    assert sorted((tmp_path / "logs").glob("redis-*.log"))  # one log per node
    lab.stop()
    assert not any(procs.pid_alive(p) for p in pids)
    assert child_pids() - before == set()
    for port in ports:
        with socket.socket() as sock:
            assert sock.connect_ex(("127.0.0.1", port)) != 0  # nobody listens there any more


def test_the_cluster_url_round_trips_the_secret() -> None:
    url = auth.cluster_url("127.0.0.1", 7000, "s3cret")
    assert auth.is_cluster_url(url) and not auth.is_cluster_url(auth.redis_url("h", 1, "s"))
    assert auth.url_password(url) == "s3cret"
    assert auth.client_url(url) == auth.redis_url("127.0.0.1", 7000, "s3cret")
    assert "s3cret" not in auth.redacted(url)
