"""The Kubernetes manifests (``lab_env/k8s``): rendered, validated offline, structure checked.

No cluster can be started here (every distribution pulls images), so the manifests are checked
the way they can be without one: ``kubectl kustomize`` renders the base and the overlay, every
rendered resource validates against the Kubernetes API schemas that ``kubernetes-validate``
bundles (with the network refused, to prove it is offline), and the structure tests check what
the lab needs of them: the pods' probes, the per-lab secret, the read-only origin, Redis
reachable only inside the cluster, and resource requests from the measured cost of a pod.

Without ``kubectl`` the tests fail, with what to install; they do not skip. ``kubectl`` is on
the machines this project runs its CI on, so a skip there would only hide a broken manifest;
a reader without it gets one clear failure and can deselect the file (``-k 'not k8s'``).
"""

from __future__ import annotations

import copy
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from stampede.config import LabConfig, LoadConfig
from stampede.lab import pod_command

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "lab_env" / "k8s"
KUBERNETES_VERSION = "1.32.0"  # the kubectl on these machines (v1.32)
SECRET = ("stampede-lab-secret", "secret")
# bench/cost.py's figure for the pods' CPU per request at the reference load (the three pods
# together; each request visits one pod, so it is one pod's cost of one request): 0.54-0.67 ms
# for naive, single_flight and swr (lab_env/k8s/base/pods.yaml says when and where).
POD_CPU_MS_PER_REQUEST = (0.54, 0.67)
POD_PEAK_RSS_MIB = 66  # a pod's VmHWM after three such runs

Doc = dict[str, Any]


def kustomize(path: Path) -> list[Doc]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(
            "kubectl is not on PATH: these tests render lab_env/k8s with `kubectl kustomize` "
            "(no cluster needed). Install kubectl (https://kubernetes.io/docs/tasks/tools/), "
            "or deselect them with `-k 'not k8s'`."
        )
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def base() -> list[Doc]:
    return kustomize(K8S)


@pytest.fixture(scope="module")
def more() -> list[Doc]:
    return kustomize(K8S / "overlays" / "more-replicas")


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def container(deployment: Doc, name: str, init: bool = False) -> Doc:
    spec = deployment["spec"]["template"]["spec"]
    found = [c for c in spec["initContainers" if init else "containers"] if c["name"] == name]
    assert len(found) == 1, name
    return found[0]


def env_of(c: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in c.get("env", [])}


def all_containers(docs: list[Doc]) -> list[Doc]:
    return [
        c
        for d in docs
        if d["kind"] == "Deployment"
        for key in ("initContainers", "containers")
        for c in d["spec"]["template"]["spec"].get(key, [])
    ]


# ---- rendering and schemas -------------------------------------------------------------------
def test_the_base_renders_what_the_lab_needs(base: list[Doc]) -> None:
    kinds = sorted((d["kind"], d["metadata"]["name"].split("-")[1]) for d in base)
    assert kinds == [
        ("ConfigMap", "lab"), ("Deployment", "pod"), ("Deployment", "redis"),
        ("NetworkPolicy", "redis"), ("Service", "pods"), ("Service", "redis"),
    ]  # fmt: skip
    assert one(base, "Deployment", "stampede-pod")["spec"]["replicas"] == 3


def test_the_overlay_runs_more_replicas_of_the_same_pods(base: list[Doc], more: list[Doc]) -> None:
    assert one(more, "Deployment", "stampede-pod")["spec"]["replicas"] == 6
    restored = copy.deepcopy(more)
    one(restored, "Deployment", "stampede-pod")["spec"]["replicas"] = 3
    assert restored == base, "the overlay changes more than the number of pods"


def test_every_resource_validates_offline(
    base: list[Doc], more: list[Doc], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the schemas kubernetes-validate ships, strict (an unknown field is an error)."""

    def no_network(*args: object, **kwargs: object) -> socket.socket:
        raise AssertionError("kubernetes-validate tried to reach the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for doc in [*base, *more]:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_resource(base: list[Doc]) -> None:
    """So that the test above can fail: a misspelt field, and a port that is not a number."""
    deployment = one(base, "Deployment", "stampede-pod")
    misspelt = {**deployment, "spec": {**deployment["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSION, strict=True)
    service = one(base, "Service", "stampede-redis")
    bad_port = {**service, "spec": {**service["spec"], "ports": [{"port": "six"}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad_port, KUBERNETES_VERSION, strict=True)


# ---- the pods ----------------------------------------------------------------------------------
def test_the_pods_run_the_embedded_launchers_command(base: list[Doc]) -> None:
    pod = container(one(base, "Deployment", "stampede-pod"), "pod")
    assert pod["command"] == ["python", *pod_command(8000, "0.0.0.0")[1:]]
    assert [p["containerPort"] for p in pod["ports"]] == [8000]


def test_the_pods_have_readiness_and_liveness_on_health(base: list[Doc]) -> None:
    pod = container(one(base, "Deployment", "stampede-pod"), "pod")
    allowed = env_of(pod)["STAMPEDE_ALLOWED_HOSTS"]["value"].split(",")
    ports = {p["name"]: p["containerPort"] for p in pod["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = pod[probe]["httpGet"]
        assert check["path"] == "/health", probe
        assert ports.get(check["port"], check["port"]) == 8000, probe
        hosts = [h["value"] for h in check.get("httpHeaders", []) if h["name"] == "Host"]
        assert hosts and hosts[0] in allowed, f"{probe} sends a Host the pods refuse"


def test_the_pods_accept_their_services_name(base: list[Doc]) -> None:
    pod = container(one(base, "Deployment", "stampede-pod"), "pod")
    allowed = env_of(pod)["STAMPEDE_ALLOWED_HOSTS"]["value"].split(",")
    service = one(base, "Service", "stampede-pods")
    assert service["metadata"]["name"] in allowed
    assert {"127.0.0.1", "localhost"} <= set(allowed)  # kubectl port-forward's Host


def test_the_per_lab_secret_is_referenced_never_committed(base: list[Doc]) -> None:
    pod = container(one(base, "Deployment", "stampede-pod"), "pod")
    redis = container(one(base, "Deployment", "stampede-redis"), "redis")
    for c in (pod, redis):
        ref = env_of(c)["STAMPEDE_LAB_SECRET"]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == SECRET, c["name"]
    args = redis["args"]
    assert args[args.index("--requirepass") + 1] == "$(STAMPEDE_LAB_SECRET)"
    assert not [d for d in base if d["kind"] == "Secret"], "a secret value is in the manifests"
    for c in all_containers(base):
        for e in c.get("env", []):
            value = e.get("value", "").replace("$(STAMPEDE_LAB_SECRET)", "")  # a reference only
            assert "secret" not in value.lower(), (c["name"], e)


def test_the_origin_is_mounted_read_only(base: list[Doc]) -> None:
    deployment = one(base, "Deployment", "stampede-pod")
    pod = container(deployment, "pod")
    origin = Path(env_of(pod)["STAMPEDE_ORIGIN_PATH"]["value"])
    mounts = {m["mountPath"]: m for m in pod["volumeMounts"]}
    mount = mounts[str(origin.parent)]
    assert mount.get("readOnly") is True
    writer = container(deployment, "origin", init=True)
    assert str(origin) in writer["command"] and "stampede.origin" in writer["command"]
    written = {m["name"] for m in writer["volumeMounts"] if not m.get("readOnly")}
    assert mount["name"] in written, "the origin's volume is not the one the init step writes"
    assert pod["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_pods_reach_redis_by_its_service(base: list[Doc]) -> None:
    pod = container(one(base, "Deployment", "stampede-pod"), "pod")
    service = one(base, "Service", "stampede-redis")
    url = env_of(pod)["STAMPEDE_REDIS_URL"]["value"]
    names = list(env_of(pod))
    # the password is the per-lab secret, expanded by Kubernetes from a variable defined earlier
    assert names.index("STAMPEDE_LAB_SECRET") < names.index("STAMPEDE_REDIS_URL")
    host, port = service["metadata"]["name"], service["spec"]["ports"][0]["port"]
    assert url == f"redis://:$(STAMPEDE_LAB_SECRET)@{host}:{port}/0"


# ---- reachability -----------------------------------------------------------------------------
def test_redis_is_not_exposed_outside_the_cluster(base: list[Doc], more: list[Doc]) -> None:
    for docs in (base, more):
        redis = one(docs, "Service", "stampede-redis")
        assert redis["spec"].get("type", "ClusterIP") == "ClusterIP"
        assert not any("nodePort" in p for p in redis["spec"]["ports"])
        assert not redis["spec"].get("externalIPs")
        for d in docs:
            assert d["kind"] not in {"Ingress", "Gateway", "Route"}, d["metadata"]["name"]
            if d["kind"] == "Service":
                assert d["spec"].get("type", "ClusterIP") == "ClusterIP", d["metadata"]["name"]
            if d["kind"] == "Deployment":
                assert not d["spec"]["template"]["spec"].get("hostNetwork")
        for c in all_containers(docs):
            assert not any("hostPort" in p for p in c.get("ports", [])), c["name"]


def test_services_select_their_deployments(base: list[Doc]) -> None:
    pairs = [("stampede-pods", "stampede-pod"), ("stampede-redis", "stampede-redis")]
    for service, deployment in pairs:
        spec = one(base, "Service", service)["spec"]
        template = one(base, "Deployment", deployment)["spec"]["template"]
        assert spec["selector"].items() <= template["metadata"]["labels"].items()
        names = {p["name"] for c in template["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in spec["ports"]} <= names


def test_redis_takes_connections_from_the_pods_only(base: list[Doc]) -> None:
    policy = one(base, "NetworkPolicy", "stampede-redis")["spec"]
    redis = one(base, "Deployment", "stampede-redis")["spec"]["template"]["metadata"]["labels"]
    pods = one(base, "Deployment", "stampede-pod")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= redis.items()
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    assert source["podSelector"]["matchLabels"].items() <= pods.items()


# ---- resources --------------------------------------------------------------------------------
def millicores(value: str) -> float:
    return float(value[:-1]) if value.endswith("m") else 1000 * float(value)


def test_every_container_requests_cpu_and_memory(base: list[Doc]) -> None:
    for c in all_containers(base):
        requests = c["resources"]["requests"]
        assert {"cpu", "memory"} <= requests.keys(), c["name"]
        assert "memory" in c["resources"]["limits"], c["name"]
        assert "cpu" not in c["resources"].get("limits", {}), f"{c['name']}: CFS throttling"


def test_a_pods_cpu_request_is_its_measured_need_at_the_reference_load(base: list[Doc]) -> None:
    """CPU a request x the requests one pod serves at the reference load: within that range."""
    per_pod_rate = LoadConfig().rate / LabConfig().pods  # ~127 req/s
    low, high = (ms * per_pod_rate for ms in POD_CPU_MS_PER_REQUEST)  # ms/s = millicores, 69-85
    pod = container(one(base, "Deployment", "stampede-pod"), "pod")
    request = millicores(pod["resources"]["requests"]["cpu"])
    assert low <= request <= high, (low, request, high)


def mebibytes(value: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
    return float(value[:-2]) * units[value[-2:]]


def test_a_pods_memory_request_covers_its_measured_peak(base: list[Doc]) -> None:
    resources = container(one(base, "Deployment", "stampede-pod"), "pod")["resources"]
    request = mebibytes(resources["requests"]["memory"])
    assert POD_PEAK_RSS_MIB <= request <= 2 * POD_PEAK_RSS_MIB
    assert mebibytes(resources["limits"]["memory"]) >= request
