"""docker-compose.yml, the Dockerfiles and the Kubernetes manifests stay true to the code.

Docker has no engine on the CI machine, so these files are checked by reading them: every
variable they set is a setting the service really reads, every image is built from a
Dockerfile that exists and starts the right module.
"""

from __future__ import annotations

import importlib
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


def settings_class(service: str) -> type[ServiceSettings]:
    module, name = SETTINGS[service].split(":")
    cls: type[ServiceSettings] = getattr(importlib.import_module(module), name)
    return cls


def setting_names(service: str) -> set[str]:
    return {f"{service.upper()}_{field.upper()}" for field in settings_class(service).model_fields}


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
