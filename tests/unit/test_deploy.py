"""deploy/ checked against the code, without Docker or Kubernetes.

compose.yaml (with its default values and with deploy/ha.env), the Dockerfile and every manifest
under deploy/k8s are parsed and held against what the code defines: every FOODRISK_* variable is a
field of Settings and validates there, ports agree with the settings and between services, the
Kafka quorum names exactly the brokers that run, Prometheus scrapes exactly the workers, images are
pinned, the Dockerfile runs a real CLI command and probes a real web route, and the k8s selectors,
probes, ports and secret keys fit together.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from pipeline.cli import COMMANDS
from pipeline.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SETTING_VARS = frozenset(f"FOODRISK_{name.upper()}" for name in Settings.model_fields)
# The workers are the compose services named worker-N: add one, and the checks below cover it.
WORKER_SERVICES = tuple(
    sorted(n for n in yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"] if n.startswith("worker-"))
)
FOODRISK_SERVICES = ("migrate", *WORKER_SERVICES, "simulator")
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# registry/name:tag (no digest forms used here); a tag is required and is never `latest`.
IMAGE_REF = re.compile(
    r"^(?:[a-z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r":[\w][\w.-]{0,127}$"
)
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what the containers must bind, checked below


# --- compose: interpolation as docker compose does it ------------------------------------------------

_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}`` and ``$$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group("name"), m.group("op"), m.group("arg") or ""
        value = env.get(name)
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?"):
            if not value:
                raise AssertionError(f"compose needs {name}: {arg}")
            return value
        return value or ""

    return _VAR.sub(sub, text)


def resolve(obj: Any, env: Mapping[str, str]) -> Any:
    if isinstance(obj, str):
        return interpolate(obj, env)
    if isinstance(obj, list):
        return [resolve(x, env) for x in obj]
    if isinstance(obj, dict):
        return {k: resolve(v, env) for k, v in obj.items()}
    return obj


def read_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def compose_raw() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


STACKS = {"default": {}, "ha": read_env_file(DEPLOY / "ha.env")}


def stack(name: str) -> dict[str, dict[str, Any]]:
    """The services that run with ``name``'s variables and profiles, values interpolated."""
    env = STACKS[name]
    profiles = set(filter(None, env.get("COMPOSE_PROFILES", "").split(",")))
    services = resolve(compose_raw()["services"], env)
    return {n: s for n, s in services.items() if not s.get("profiles") or profiles & set(s["profiles"])}


def env_of(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def settings_from(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings exactly as a process with only ``env``'s FOODRISK_* variables would build them."""
    for key in list(os.environ):
        if key.startswith("FOODRISK_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("FOODRISK_"):
            monkeypatch.setenv(key, value)
    return load_settings()


def published(service: Mapping[str, Any]) -> dict[int, tuple[str, int]]:
    """container port -> (host address, host port) of ``ports: ["ADDR:HOST:CONTAINER"]``."""
    out = {}
    for spec in service.get("ports", []):
        parts = str(spec).split(":")
        assert len(parts) == 3, f"publish with an explicit address: {spec!r}"
        out[int(parts[2])] = (parts[0], int(parts[1]))
    return out


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    out = {}
    for item in value.split(","):
        name, _, rest = item.partition("://")
        host, _, port = rest.rpartition(":")
        out[name] = (host, int(port))
    return out


# --- compose ------------------------------------------------------------------------------------------


def test_compose_has_the_whole_stack_and_its_profiles() -> None:
    services = compose_raw()["services"]
    for name in ("kafka", "clickhouse", "grafana", "prometheus", "alertmanager", *FOODRISK_SERVICES):
        assert name in services, name
    assert services["simulator"]["profiles"] == ["simulator"]
    assert len(WORKER_SERVICES) >= 2, "at least two workers in one group"
    assert services["kafka-2"]["profiles"] == services["kafka-3"]["profiles"] == ["ha"]
    assert set(stack("default")) == set(services) - {"kafka-2", "kafka-3", "simulator"}
    assert {"kafka", "kafka-2", "kafka-3"} <= set(stack("ha"))
    assert STACKS["ha"]["COMPOSE_PROFILES"] == "ha"


def test_every_foodrisk_variable_in_deploy_is_a_setting() -> None:
    used: dict[str, str] = {}
    for name, service in compose_raw()["services"].items():
        used.update({k: f"compose {name}" for k in env_of(service) if k.startswith("FOODRISK_")})
    text = (DEPLOY / "compose.yaml").read_text()
    used.update({m: "compose variable" for m in re.findall(r"\$\{(FOODRISK_\w+)", text)})
    used.update({k: "ha.env" for k in STACKS["ha"] if k.startswith("FOODRISK_")})
    used.update({k: "Dockerfile ENV" for k in dockerfile_env() if k.startswith("FOODRISK_")})
    for doc in k8s_docs():
        used.update({k: f"k8s {doc['kind']}" for k in k8s_env_names(doc) if k.startswith("FOODRISK_")})
    assert len(used) >= 12
    unknown = {k: where for k, where in used.items() if k not in SETTING_VARS}
    assert not unknown, f"not fields of pipeline.settings.Settings: {unknown}"


@pytest.mark.parametrize("name", list(STACKS))
def test_foodrisk_containers_get_valid_settings_that_fit_the_stack(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    services = stack(name)
    brokers = {n: s for n, s in services.items() if n.startswith("kafka")}
    clickhouse_ports = published(services["clickhouse"])
    web_ports: set[int] = set()
    for svc in (s for s in FOODRISK_SERVICES if s in services):
        env = env_of(services[svc])
        settings = settings_from(env, monkeypatch)
        assert not settings.embedded and not settings.uses_chdb
        # Every bootstrap address is a running broker's PLAINTEXT listener.
        for hostport in settings.bootstrap_servers():
            host, _, port = hostport.partition(":")
            assert host in brokers, f"{svc}: broker {host} does not run in the {name} stack"
            advertised = listeners(env_of(brokers[host])["KAFKA_ADVERTISED_LISTENERS"])
            assert advertised["PLAINTEXT"] == (host, int(port))
        assert set(settings.bootstrap_servers()) == {f"{b}:9092" for b in brokers}
        # Replication cannot exceed the brokers; min.insync leaves room for one broker down.
        assert settings.topic_replication <= len(brokers)
        assert settings.min_insync_replicas <= max(1, settings.topic_replication - 1)
        assert settings.topic_partitions >= len(WORKER_SERVICES)
        # ClickHouse: the service, its native port, the writer user of the users file.
        ch = urlsplit(settings.clickhouse_url)
        assert ch.hostname == "clickhouse" and ch.port in clickhouse_ports
        assert ch.username == "foodrisk" and ch.password == env_of(services["clickhouse"])["CLICKHOUSE_WRITER_PASSWORD"]
        assert settings.database == "foodrisk"
        am = urlsplit(settings.alertmanager_url or "")
        assert am.hostname == "alertmanager" and am.port in published(services["alertmanager"])
        assert settings.app_id == "foodrisk"
        if svc in WORKER_SERVICES:
            assert settings.web_host == ALL_INTERFACES
            ports = published(services[svc])
            assert list(ports) == [settings.web_port], f"{svc} publishes {ports}, web port {settings.web_port}"
            address, host_port = ports[settings.web_port]
            assert address == "127.0.0.1"
            assert host_port not in web_ports
            web_ports.add(host_port)
    assert services["simulator" if "simulator" in services else "migrate"]


@pytest.mark.parametrize("name", list(STACKS))
def test_kafka_quorum_names_exactly_the_brokers_that_run(name: str) -> None:
    services = stack(name)
    brokers = {n: env_of(s) for n, s in services.items() if n.startswith("kafka")}
    assert len(brokers) == (3 if name == "ha" else 1)
    voters: dict[str, str] = {}
    for env in brokers.values():
        voters_text = env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
        parsed = dict(v.split("@", 1) for v in voters_text.split(","))
        voters = voters or parsed
        assert parsed == voters, "every broker must name the same voters"
    assert voters == {env["KAFKA_NODE_ID"]: f"{n}:9093" for n, env in brokers.items()}
    replication = {int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) for env in brokers.values()}
    assert replication == {len(brokers)}
    for n, env in brokers.items():
        own = listeners(env["KAFKA_LISTENERS"])
        adv = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
        assert own["CONTROLLER"][1] == 9093 and own["PLAINTEXT"][1] == adv["PLAINTEXT"][1] == 9092
        assert adv["PLAINTEXT"][0] == n == services[n]["hostname"]
        assert published(services[n]) == {own["HOST"][1]: ("127.0.0.1", adv["HOST"][1])}
        assert int(env["KAFKA_MIN_INSYNC_REPLICAS"]) <= max(1, len(brokers) - 1)


def test_prometheus_scrapes_exactly_the_workers_and_alerts_the_alertmanager(monkeypatch: pytest.MonkeyPatch) -> None:
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"].startswith("foodrisk"))
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    services = stack("default")
    port = settings_from(env_of(services["worker-1"]), monkeypatch).web_port
    assert targets == {f"{w}:{port}" for w in WORKER_SERVICES}
    assert job.get("metrics_path", "/metrics") == "/metrics"
    ams = {t for a in prom["alerting"]["alertmanagers"] for sc in a["static_configs"] for t in sc["targets"]}
    assert ams == {f"alertmanager:{p}" for p in published(services["alertmanager"])}


def test_bind_mounts_and_config_paths_exist() -> None:
    services = stack("ha") | stack("default")
    checked = 0
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, _, target = str(volume).partition(":")
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} missing"
                checked += 1
                for arg in service.get("command", []):
                    # --config.file=/etc/prometheus/prometheus.yml under a mounted directory
                    flag, _, path = str(arg).partition("=")
                    target_dir = target.split(":")[0]
                    if flag == "--config.file" and path.startswith(target_dir + "/"):
                        assert (DEPLOY / source / path[len(target_dir) + 1 :]).is_file(), (name, path)
                        checked += 1
    assert checked >= 8
    grafana_mounts = [str(v).split(":")[1] for v in services["grafana"]["volumes"]]
    assert "/etc/grafana/provisioning" in grafana_mounts


def test_images_are_pinned_and_ours_carry_the_package_version() -> None:
    raw = compose_raw()["services"]
    for name, service in stack("ha").items():
        image = service["image"]
        assert IMAGE_REF.match(image), f"{name}: {image!r} is not name:tag"
        assert not image.endswith(":latest")
    assert {raw[s]["image"] for s in FOODRISK_SERVICES} == {"foodrisk:${IMAGE_TAG:-" + VERSION + "}"}
    assert all(raw[s]["build"]["dockerfile"] == "deploy/Dockerfile" for s in FOODRISK_SERVICES)
    assert (DEPLOY / raw["migrate"]["build"]["context"] / "pyproject.toml").is_file()
    kz = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (ours,) = kz["images"]
    assert ours["name"] == "foodrisk" and ours["newTag"] == VERSION
    job = next(d for d in k8s_docs(include_examples=True) if d["kind"] == "Job")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == f"{ours['newName']}:{VERSION}"


def test_foodrisk_commands_in_compose_are_cli_commands() -> None:
    raw = compose_raw()["services"]
    for name in FOODRISK_SERVICES:
        command = raw[name].get("command", dockerfile_instruction("CMD"))
        assert command[0] in COMMANDS, f"{name}: {command}"


def test_clickhouse_users_file_fits_compose_and_grafana() -> None:
    root = ET.parse(DEPLOY / "clickhouse" / "users.d" / "foodrisk-users.xml").getroot()  # noqa: S314 - our file
    users = root.find("users")
    assert users is not None
    clickhouse_env = env_of(stack("default")["clickhouse"])
    grafana_env = env_of(stack("default")["grafana"])
    for user in ("foodrisk", "analyst"):
        node = users.find(user)
        assert node is not None, user
        password = node.find("password")
        assert password is not None and password.get("from_env") in clickhouse_env
        assert next(d.text for d in node.findall("allow_databases/database")) == "foodrisk"
    analyst = users.find("analyst")
    assert analyst is not None
    profile = root.find(f"profiles/{analyst.findtext('profile')}")
    assert profile is not None and int(profile.findtext("readonly") or 0) >= 1
    assert grafana_env["CLICKHOUSE_ANALYST_USER"] == "analyst"
    assert grafana_env["CLICKHOUSE_ANALYST_PASSWORD"] == clickhouse_env["CLICKHOUSE_ANALYST_PASSWORD"]
    default_networks = [ip.text for ip in users.findall("default/networks/ip")]
    assert set(default_networks) <= {"127.0.0.1", "::1"}, "the password-less default user stays local"
    ET.parse(DEPLOY / "clickhouse" / "config.d" / "foodrisk.xml")  # noqa: S314 - our file


def test_grafana_provisioning_gets_every_variable_and_path_it_uses() -> None:
    grafana = stack("default")["grafana"]
    env = env_of(grafana)
    mounts = dict(str(v).split(":")[:2] for v in grafana["volumes"])
    provisioning = DEPLOY / "grafana" / "provisioning"
    used = set()
    for path in provisioning.rglob("*.y*ml"):
        used |= set(re.findall(r"\$\{(\w+)\}", json.dumps(yaml.safe_load(path.read_text()))))  # values, not comments
    assert used and used <= set(env), f"unset in compose's grafana service: {used - set(env)}"
    datasources = yaml.safe_load((provisioning / "datasources" / "foodrisk.yml").read_text())["datasources"]
    ch = next(d for d in datasources if d["type"] == "grafana-clickhouse-datasource")
    assert interpolate(ch["jsonData"]["host"], env) == "clickhouse"
    assert int(ch["jsonData"]["port"]) in published(stack("default")["clickhouse"])
    prom = next(d for d in datasources if d["type"] == "prometheus")
    assert interpolate(prom["url"], env) == f"http://prometheus:{next(iter(published(stack('default')['prometheus'])))}"
    boards = yaml.safe_load((provisioning / "dashboards" / "foodrisk.yml").read_text())["providers"]
    assert {b["options"]["path"] for b in boards} == {mounts["./grafana/dashboards"]}
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert "grafana-clickhouse-datasource" in env["GF_INSTALL_PLUGINS"]


# --- Dockerfile -----------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_instruction(word: str, *, stage: int = -1) -> Any:
    """The last ``word`` instruction of a stage (default: the final one); JSON form parsed."""
    stages: list[list[tuple[str, str]]] = []
    for instr, rest in dockerfile_instructions():
        if instr == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instr, rest))
    found = [rest for instr, rest in stages[stage] if instr == word]
    assert found, f"no {word} in stage {stage}"
    value = found[-1]
    return yaml.safe_load(value) if value.startswith("[") else value


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instr, rest in dockerfile_instructions():
        if instr == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def dockerfile_args() -> dict[str, str]:
    return dict(
        rest.split("=", 1) for instr, rest in dockerfile_instructions() if instr == "ARG" and "=" in rest
    )


def test_dockerfile_is_multi_stage_slim_and_unprivileged() -> None:
    froms = [rest for instr, rest in dockerfile_instructions() if instr == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build") and froms[1].endswith(" AS runtime")
    base = dockerfile_args()["PYTHON_IMAGE"]
    assert re.match(r"^python:3\.11(\.\d+)?-slim", base), base
    assert IMAGE_REF.match(base)
    user = dockerfile_instruction("USER")
    uid = int(str(user).split(":")[0])
    assert uid >= 1000
    copies = [rest for instr, rest in dockerfile_instructions() if instr == "COPY" and not rest.startswith("--from")]
    sources = {src.rstrip("/") for rest in copies for src in rest.split()[:-1]}
    assert all((ROOT / s).exists() for s in sources), sources
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= sources, "the image must contain every package pyproject installs"
    k8s_uid = deployment()["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert k8s_uid == uid


def test_dockerfile_runs_the_worker_and_checks_a_real_route(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert dockerfile_instruction("ENTRYPOINT") == ["foodrisk"] and "foodrisk" in scripts
    assert dockerfile_instruction("CMD") == ["worker"] and "worker" in COMMANDS
    env = dockerfile_env()
    settings = settings_from(env, monkeypatch)
    assert settings.web_host == ALL_INTERFACES and not settings.embedded and not settings.uses_chdb
    assert int(dockerfile_instruction("EXPOSE")) == settings.web_port
    health = str(dockerfile_instruction("HEALTHCHECK"))
    assert "/healthz" in health and "FOODRISK_WEB_PORT" in health and str(settings.web_port) in health
    assert {"/healthz", "/readyz", "/metrics"} <= web_routes(tmp_path)


def web_routes(tmp_path: Path) -> set[str]:
    """The routes the worker's web server really registers (the app built without a broker)."""
    from pipeline.app import build_runtime
    from sinks.clickhouse import Features

    class NoClickHouse:
        database = "foodrisk"
        server_version = (25, 8, 0)
        features = Features.for_version((25, 8, 0))

        def execute(self, sql: str, params: Any = None) -> None:
            raise AssertionError(f"no ClickHouse call expected while building the app: {sql}")

        query = insert = execute

        def close(self) -> None:
            pass

    settings = Settings(broker_url="kafka://127.0.0.1:9", data_dir=tmp_path)
    rt = build_runtime(settings, ["127.0.0.1:9"], NoClickHouse())  # type: ignore[arg-type]
    web: Any = rt.app.web  # faust's aiohttp driver
    return {route.resource.canonical for route in web.web_app.router.routes()}


# --- Kubernetes ------------------------------------------------------------------------------------------


def k8s_docs(*, include_examples: bool = False) -> Iterator[dict[str, Any]]:
    kz = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = [K8S / f for f in kz["resources"]]
    if include_examples:
        files += [K8S / "secret.example.yaml", K8S / "migrate-job.yaml"]
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), path
                yield doc


def k8s_env_names(doc: Mapping[str, Any]) -> set[str]:
    if doc["kind"] == "ConfigMap":
        return set(doc.get("data", {}))
    pod = pod_spec(doc)
    return {e["name"] for c in pod.get("containers", []) for e in c.get("env", [])} if pod else set()


def pod_spec(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    template = doc.get("spec", {}).get("template")
    return template["spec"] if template else None


def one(kind: str, *, include_examples: bool = False) -> dict[str, Any]:
    (doc,) = [d for d in k8s_docs(include_examples=include_examples) if d["kind"] == kind]
    return doc


def deployment() -> dict[str, Any]:
    return one("Deployment")


def test_k8s_manifests_parse_and_cover_the_brief() -> None:
    kinds = sorted(d["kind"] for d in k8s_docs())
    assert kinds == ["ConfigMap", "Deployment", "Namespace", "PodDisruptionBudget", "Service"]
    assert sorted(d["kind"] for d in k8s_docs(include_examples=True)) == sorted([*kinds, "Job", "Secret", "Secret"])


def test_k8s_selectors_ports_and_probes_fit_together(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dep = deployment()
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    svc, pdb = one("Service"), one("PodDisruptionBudget")
    assert svc["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    (svc_port,) = svc["spec"]["ports"]
    assert svc_port["targetPort"] in ports
    config = one("ConfigMap")
    settings = settings_from(
        {**config["data"], "FOODRISK_CLICKHOUSE_URL": secret_values()["clickhouse-url"]}, monkeypatch
    )
    assert ports["http"] == settings.web_port and settings.web_host == ALL_INTERFACES
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == settings.web_port
    routes = web_routes(tmp_path)
    assert annotations["prometheus.io/path"] in routes
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] in ports and get["path"] in routes, probe
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Scaling: every replica gets partitions only while replicas <= partitions.
    assert 2 <= dep["spec"]["replicas"] <= settings.topic_partitions
    assert settings.topic_replication == 3 and settings.min_insync_replicas == 2
    assert pdb["spec"]["maxUnavailable"] == 1
    requests = container["resources"]["requests"]
    assert requests["cpu"] and requests["memory"] and container["resources"]["limits"]["memory"]
    assert container["args"][0] in COMMANDS and container["image"] == "foodrisk"


@pytest.mark.parametrize("name", list(STACKS))
def test_the_query_port_stays_on_loopback_and_is_never_exposed(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Analyst queries never reach the port that faces instruments: every deploy file keeps
    FOODRISK_QUERY_HOST on loopback, publishes, exposes or routes only the device port, and the
    device port does not serve /v1/query."""
    loopback = "127.0.0.1"
    # compose: the workers' query host is loopback and only the device port is published.
    services = stack(name)
    for svc in WORKER_SERVICES:
        settings = settings_from(env_of(services[svc]), monkeypatch)
        assert settings.query_host == loopback, svc
        assert settings.query_port not in published(services[svc]), svc
        assert settings.query_port != settings.web_port
    # Dockerfile: the query port is loopback and not EXPOSEd.
    docker = settings_from(dockerfile_env(), monkeypatch)
    assert docker.query_host == loopback
    assert [int(p) for p in str(dockerfile_instruction("EXPOSE")).split()] == [docker.web_port]
    # Kubernetes: loopback in the ConfigMap, not a container port, not a Service target.
    k8s = settings_from({**one("ConfigMap")["data"], "FOODRISK_CLICKHOUSE_URL": secret_values()["clickhouse-url"]},
                        monkeypatch)
    assert k8s.query_host == loopback
    (container,) = deployment()["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert k8s.query_port not in ports.values() and list(ports.values()) == [k8s.web_port]
    for svc_doc in (d for d in k8s_docs(include_examples=True) if d["kind"] == "Service"):
        for port in svc_doc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert ports.get(target, target) == k8s.web_port, svc_doc["metadata"]["name"]
    assert "/v1/query" not in web_routes(tmp_path)


def secrets() -> dict[str, dict[str, str]]:
    """name -> stringData of the example Secrets."""
    return {d["metadata"]["name"]: d["stringData"] for d in k8s_docs(include_examples=True) if d["kind"] == "Secret"}


def secret_values() -> dict[str, str]:
    return secrets()["foodrisk-secrets"]


def test_k8s_config_and_secret_references_resolve() -> None:
    config_name = one("ConfigMap")["metadata"]["name"]
    examples = secrets()
    for doc in (deployment(), one("Job", include_examples=True)):
        pod = pod_spec(doc)
        assert pod is not None
        for container in pod["containers"]:
            assert [e["configMapRef"]["name"] for e in container["envFrom"]] == [config_name]
            for env in container.get("env", []):
                ref = env["valueFrom"]["secretKeyRef"]
                assert ref["key"] in examples[ref["name"]]
            mounted = {v["name"] for v in pod["volumes"]}
            assert {m["name"] for m in container["volumeMounts"]} <= mounted
        for volume in pod["volumes"]:
            if "secret" in volume:
                assert volume["secret"]["secretName"] in examples
        assert pod["securityContext"]["runAsNonRoot"] is True
    assert one("Job", include_examples=True)["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_ingest_token_registry_is_shared_by_the_workers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pipeline.ingest.tokens import load_entries
    # compose: one named volume holds the registry for every worker (tokens work on any of them).
    services = stack("default")
    volumes = []
    for name in WORKER_SERVICES:
        path = settings_from(env_of(services[name]), monkeypatch).ingest_tokens_path
        mounts = dict(str(v).split(":")[::-1] for v in services[name]["volumes"])  # target -> source
        (volume,) = [src for target, src in mounts.items() if path.parent == Path(target)]
        volumes.append(volume)
    assert len(set(volumes)) == 1 and not volumes[0].startswith(".")
    assert "install -d -o foodrisk -g foodrisk " + str(path.parent) in (DEPLOY / "Dockerfile").read_text()
    # Kubernetes: the registry is a Secret mounted read-only where the ConfigMap points.
    config = one("ConfigMap")["data"]
    settings = settings_from({**config, "FOODRISK_CLICKHOUSE_URL": secret_values()["clickhouse-url"]}, monkeypatch)
    pod = pod_spec(deployment())
    assert pod is not None
    mounts_k8s = pod["containers"][0]["volumeMounts"]
    (mount,) = [m for m in mounts_k8s if Path(m["mountPath"]) == settings.ingest_tokens_path.parent]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    example = secrets()[volume["secret"]["secretName"]]
    registry = tmp_path / settings.ingest_tokens_path.name
    registry.write_text(example[settings.ingest_tokens_path.name])
    assert load_entries(registry) == {}  # the example is a valid, empty registry


def test_kustomize_renders_the_manifests() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize deploy/k8s` not run (the YAML checks above ran)")
    out = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"foodrisk"}
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    kz = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"{kz['images'][0]['newName']}:{VERSION}"


def test_the_docker_path_skips_only_without_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.integration.test_containers import docker_unavailable

    monkeypatch.delenv("FOODRISK_TEST_DOCKER", raising=False)
    assert "FOODRISK_TEST_DOCKER is not 1" in str(docker_unavailable())
    monkeypatch.setenv("FOODRISK_TEST_DOCKER", "1")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")  # nothing listens on port 1
    assert "no Docker engine answers" in str(docker_unavailable())
