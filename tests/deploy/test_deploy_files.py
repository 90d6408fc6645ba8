"""docker-compose.yml, the Dockerfiles and the Kubernetes manifests stay true to the code.

Docker has no engine on the CI machine, so these files are checked by reading them: every
variable they set is a setting the service really reads, every image is built from a
Dockerfile that exists and starts the right module.
"""

from __future__ import annotations

import importlib
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {"identity": 8001, "teams": 8002, "projects": 8003, "notifications": 8004}
SETTINGS = {
    "identity": "identity.config:IdentitySettings",
    "teams": "teams.config:TeamsSettings",
    "projects": "projects.config:ProjectsSettings",
    "notifications": "notifications.config:NotificationsSettings",
}


#: settings a service inherits from ``ServiceSettings`` but never reads (tests/deploy/
#: test_unread_settings.py holds each to it): setting one would only mislead whoever deploys
UNREAD = {
    # identity checks tokens against its own key set, never over HTTP
    "identity": {"jwks_url", "jwks_cache_seconds"},
    # neither signs nor derives anything
    "teams": {"secret_key"},
    "notifications": {"secret_key"},
}


def settings_class(service: str) -> type[ServiceSettings]:
    module, name = SETTINGS[service].split(":")
    cls: type[ServiceSettings] = getattr(importlib.import_module(module), name)
    return cls


def setting_names(service: str) -> set[str]:
    """The variables ``service`` reads."""
    fields = set(settings_class(service).model_fields) - UNREAD.get(service, set())
    return {f"{service.upper()}_{field.upper()}" for field in fields}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("service", SERVICES)
def test_compose_sets_only_settings_the_service_reads(compose: dict[str, Any], service: str) -> None:
    environment = compose["services"][service]["environment"]
    unknown = {name for name in environment if name not in setting_names(service)}
    assert unknown == set(), f"{service} is given variables it never reads: {unknown}"
    assert environment[f"{service.upper()}_DATABASE_URL"].endswith(f"/{service}")


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_is_migrated_before_it_starts(compose: dict[str, Any], service: str) -> None:
    migrate = compose["services"][f"{service}-migrate"]
    assert migrate["command"] == ["python", "-m", service, "migrate"]
    assert compose["services"][service]["depends_on"][f"{service}-migrate"] == {
        "condition": "service_completed_successfully"
    }
    dockerfile = ROOT / migrate["build"]["dockerfile"]
    assert dockerfile == ROOT / "services" / service / "Dockerfile"


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_installs_only_its_service_and_serves_it(service: str) -> None:
    text = (ROOT / "services" / service / "Dockerfile").read_text(encoding="utf-8")
    packages = set(re.findall(r"--package (vs-[a-z]+)", text))
    assert packages == {f"vs-{service}"}
    port = SERVICES[service]
    assert f'CMD ["python", "-m", "{service}", "serve", "--host", "0.0.0.0", "--port", "{port}"]' in text
    assert f"EXPOSE {port}" in text
    assert "USER vs" in text


def test_databases_created_for_every_service() -> None:
    sql = (ROOT / "deploy" / "postgres" / "init-databases.sql").read_text(encoding="utf-8")
    assert set(re.findall(r"CREATE DATABASE (\w+);", sql)) == set(SERVICES)


def test_kubernetes_manifests_name_real_settings_and_probes() -> None:
    documents = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "volunteer-system.yaml").read_text("utf-8")))
    deployments = {d["metadata"]["name"]: d for d in documents if d and d["kind"] == "Deployment"}
    assert set(deployments) == set(SERVICES)
    for document in documents:
        if document and document["kind"] == "ConfigMap":
            service = document["metadata"]["name"].removeprefix("vs-")
            assert set(document["data"]) <= setting_names(service)
    configs = {d["metadata"]["name"]: d["data"] for d in documents if d and d["kind"] == "ConfigMap"}
    for service, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["args"][:3] == ["python", "-m", service]
        # a stop may take the HTTP grace and the runtime's four steps, each _SHUTDOWN_STEP_SECONDS,
        # before Kubernetes kills the pod and the stop with it
        step = float(configs.get(f"vs-{service}", {}).get(f"{service.upper()}_SHUTDOWN_STEP_SECONDS", 20))
        assert pod["terminationGracePeriodSeconds"] >= 5 * step


def test_env_example_names_real_settings() -> None:
    names = {
        line.split("=", 1)[0]
        for line in (ROOT / "deploy" / "env.example").read_text("utf-8").splitlines()
        if line and not line.startswith("#")
    }
    known = set().union(*(setting_names(service) for service in SERVICES))
    assert names - known == set()


def k8s_documents() -> list[dict[str, Any]]:
    text = (ROOT / "deploy" / "k8s" / "volunteer-system.yaml").read_text("utf-8")
    return [d for d in yaml.safe_load_all(text) if d]


#: PostgreSQL's default max_connections, less superuser_reserved_connections (3): what the four
#: services may open on the one server they share, as the manifest's comment sums it up
SERVER_CONNECTIONS = 100 - 3
#: sessions outside the pods: a migrate run by hand, psql, monitoring
OUTSIDE_PODS = 7


def connections_per_pod(service: str, config: dict[str, str]) -> int:
    """The database connections one pod of ``service`` may hold: its pool at full overflow, the
    relay's LISTEN, and what the service opens beside the pool."""
    defaults = settings_class(service)()
    prefix = service.upper()

    def value(name: str) -> Any:
        return config.get(f"{prefix}_{name.upper()}", getattr(defaults, name))

    count = int(value("database_pool_size")) + int(value("database_max_overflow"))
    count += str(value("run_relay")).lower() not in ("false", "0")  # the relay's LISTEN
    if service == "identity":
        count += int(value("import_concurrency"))  # one loader connection per uploaded import
    if service == "notifications":
        count += 1  # the mail sender's LISTEN
    return count


def test_kubernetes_pods_at_their_most_fit_the_database_servers_connections() -> None:
    documents = k8s_documents()
    configs = {d["metadata"]["name"].removeprefix("vs-"): d["data"] for d in documents if d["kind"] == "ConfigMap"}
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    autoscaled = {
        d["spec"]["scaleTargetRef"]["name"]: d["spec"]["maxReplicas"]
        for d in documents
        if d["kind"] == "HorizontalPodAutoscaler"
    }
    total, largest_surge = OUTSIDE_PODS, 0
    for service, deployment in deployments.items():
        per_pod = connections_per_pod(service, configs[service])
        pods = autoscaled.get(service, deployment["spec"].get("replicas", 1))
        # a rolling update starts maxSurge more pods (25 % by default, rounded up) before it stops old ones
        surge = deployment["spec"].get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", "25%")
        extra = math.ceil(pods * int(surge[:-1]) / 100) if isinstance(surge, str) else int(surge)
        total += pods * per_pod
        largest_surge = max(largest_surge, extra * per_pod)
    total += largest_surge  # one Deployment rolls out at a time
    assert total <= SERVER_CONNECTIONS, f"{total} connections at the most, the server takes {SERVER_CONNECTIONS}"


def test_an_autoscaled_deployment_leaves_its_replicas_to_the_autoscaler() -> None:
    # a `replicas:` in the manifest would reset the autoscaler's count on every `kubectl apply`
    documents = k8s_documents()
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    for hpa in (d for d in documents if d["kind"] == "HorizontalPodAutoscaler"):
        target = deployments[hpa["spec"]["scaleTargetRef"]["name"]]
        assert "replicas" not in target["spec"]
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_notifications_senders_leave_pooled_connections_to_the_rest() -> None:
    # each send loop holds a pooled connection for a whole batch: at most half the pool, the rest
    # is the consumers' and the API's
    [config] = [d["data"] for d in k8s_documents() if d["metadata"]["name"] == "vs-notifications"]
    defaults = settings_class("notifications")()
    pool = int(config.get("NOTIFICATIONS_DATABASE_POOL_SIZE", defaults.database_pool_size))
    overflow = int(config.get("NOTIFICATIONS_DATABASE_MAX_OVERFLOW", defaults.database_max_overflow))
    assert int(config.get("NOTIFICATIONS_MAIL_SENDERS", defaults.mail_senders)) <= (pool + overflow) // 2


def test_no_deploy_file_sets_a_setting_its_service_never_reads() -> None:
    texts = {
        path.name: path.read_text("utf-8")
        for path in (
            ROOT / "docker-compose.yml",
            ROOT / "deploy" / "env.example",
            ROOT / "deploy" / "k8s" / "volunteer-system.yaml",
        )
    }
    for service, fields in UNREAD.items():
        for field in fields:
            name = f"{service.upper()}_{field.upper()}"
            for file, text in texts.items():
                assert not re.search(rf"^\s*{name}\s*[=:]", text, re.MULTILINE), f"{file} sets {name}"
