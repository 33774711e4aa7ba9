"""The deployment files: valid manifests, and pods, image and Procfile that start safe nodes.

The Kubernetes checks run the service's own configuration code against what a pod of the
StatefulSet would be given: the image's ENV, ENTRYPOINT and CMD, the container's env with the
downward API filled in as the kubelet fills it, and a StatefulSet pod's host name.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement

from snowflake_tracker.__main__ import build_parser
from snowflake_tracker.config import SETTINGS, Config, ConfigError, load_config
from snowflake_tracker.ids.layout import MAX_WORKER_ID, WORKER_BITS, WORKER_COUNT
from snowflake_tracker.secrets import SecretFileError, load_secret_file, parse_secret_text
from snowflake_tracker.supervisor import KILL_GRACE_S
from snowflake_tracker.worker_id import NodeIdentity, WorkerIdError, plan_worker_ids

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY = REPO_ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
DOCKERFILE = DEPLOY / "Dockerfile"
PROCFILE = REPO_ROOT / "Procfile"
KUBERNETES_VERSION = "1.32"

# Core-schema manifests only: deploy/kubernetes/*.yaml. The PodMonitor lives in a subfolder
# because it is a custom resource (monitoring.coreos.com/v1), which kubernetes-validate has no
# schema for; it is checked on its own below.
MANIFESTS = sorted(KUBERNETES.glob("*.yaml"))
POD_MONITOR = KUBERNETES / "prometheus-operator" / "podmonitor.yaml"

POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
# What the kubelet sets in every container: the service's sign that it runs in Kubernetes.
KUBERNETES_ENV = {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}
# The supervisor waits this long past the drain before it kills the workers (supervisor.stop).
SUPERVISOR_MARGIN_S = 1.0

_LABEL_FIELD = re.compile(r"metadata\.labels\['(?P<key>[^']+)'\]")


# Reading the files.


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of a manifest file, skipping empty ones."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resources() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in load_documents(path)]


def resource(kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        doc
        for doc in resources()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def statefulset() -> dict[str, Any]:
    return resource("StatefulSet")


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = statefulset()["spec"]["template"]["spec"]
    return spec


def main_container() -> dict[str, Any]:
    (container,) = (c for c in pod_spec()["containers"] if c["name"] == "snowflake-tracker")
    return container


def literal_env() -> dict[str, str]:
    """The container's env entries that have a plain value."""
    return {var["name"]: var["value"] for var in main_container()["env"] if "value" in var}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def instruction(keyword: str) -> str:
    """The arguments of the last ``keyword`` instruction: the one that takes effect."""
    found = [arguments for kw, arguments in dockerfile_instructions() if kw == keyword]
    assert found, f"the Dockerfile has no {keyword}"
    return found[-1]


def image_env() -> dict[str, str]:
    """Every ENV of the image (KEY=VALUE form)."""
    env: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ENV":
            for item in shlex.split(arguments):
                name, equals, value = item.partition("=")
                assert equals, f"ENV {item!r} is not in KEY=VALUE form"
                env[name] = value
    return env


def image_argv() -> list[str]:
    """ENTRYPOINT followed by CMD, both in exec (JSON array) form."""
    entrypoint = json.loads(instruction("ENTRYPOINT"))
    cmd = json.loads(instruction("CMD"))
    assert isinstance(entrypoint, list)
    assert isinstance(cmd, list)
    return [*entrypoint, *cmd]


def procfile_argv(port: int) -> list[str]:
    """The web process's command line, with $PORT expanded as the platform's shell does."""
    processes = dict(
        line.split(":", 1) for line in PROCFILE.read_text().splitlines() if line.strip()
    )
    command = processes["web"].strip()
    return shlex.split(command.replace("$PORT", str(port)))


def serve_config(argv: list[str], env: Mapping[str, str]) -> Config:
    """The configuration a ``snowflake-tracker ...`` command line starts with, or a failure."""
    assert argv[0] == "snowflake-tracker", argv
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve", argv
    return load_config(vars(args), env)


# A pod of the StatefulSet, simulated.


def container_env(pod_labels: Mapping[str, str]) -> dict[str, str]:
    """The container's env as the kubelet resolves it for a pod with these labels."""
    env: dict[str, str] = {}
    for var in main_container()["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        field_path = var["valueFrom"]["fieldRef"]["fieldPath"]
        match = _LABEL_FIELD.fullmatch(field_path)
        assert match is not None, f"no simulation for {var['name']} from {field_path}"
        # The downward API gives an empty string for a label the pod does not have.
        env[var["name"]] = pod_labels.get(match["key"], "")
    return env


def pod_environment(index: int | None) -> dict[str, str]:
    """The environment of pod ``index`` (None: a pod without the pod-index label)."""
    labels = dict(statefulset()["spec"]["template"]["metadata"]["labels"])
    if index is not None:
        labels[POD_INDEX_LABEL] = str(index)
    # The container's env overrides the image's.
    return {**image_env(), **container_env(labels), **KUBERNETES_ENV}


def plan_pod(index: int | None, hostname: str) -> tuple[NodeIdentity | None, list[int]]:
    """The node identity and worker IDs the service derives in that pod, or a refusal."""
    env = pod_environment(index)
    config = serve_config(image_argv(), env)
    return plan_worker_ids(
        processes=config.processes,
        worker_id=config.worker_id,
        node_id=config.node_id,
        env=env,
        hostname=hostname,
        node_bits=config.node_bits,
    )


def pod_name(index: int) -> str:
    return f"{statefulset()['metadata']['name']}-{index}"


def pod_config() -> Config:
    return serve_config(image_argv(), pod_environment(0))


# The manifests are valid Kubernetes.


def test_there_are_manifests_of_every_expected_kind() -> None:
    """deploy/kubernetes holds the StatefulSet, both Services, the PDB and the Secret."""
    kinds = sorted(doc["kind"] for doc in resources())
    assert kinds == ["PodDisruptionBudget", "Secret", "Service", "Service", "StatefulSet"]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda path: path.name)
def test_manifest_validates_strictly_against_kubernetes_1_32(path: Path) -> None:
    """Every document of the manifest matches the Kubernetes 1.32 schema, unknown fields refused."""
    documents = load_documents(path)
    assert documents
    for document in documents:
        # Raises ValidationError on a mismatch, and SchemaNotFoundError for a kind it does not
        # know, so a manifest can never pass by being skipped.
        assert kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True) == "1.32"


@pytest.mark.parametrize(
    ("valid", "broken"),
    [
        ("terminationGracePeriodSeconds:", "terminationGracePeriodSecond:"),
        ("podManagementPolicy: Parallel", "podManagementPolicy: [Parallel]"),
        ("  replicas: 3", "  replicas: three"),
    ],
)
def test_validation_rejects_a_broken_statefulset(valid: str, broken: str, tmp_path: Path) -> None:
    """The strict validation fails on a misspelled field or a wrong type, so it is not vacuous."""
    text = (KUBERNETES / "statefulset.yaml").read_text()
    assert text.count(valid) == 1
    path = tmp_path / "statefulset.yaml"
    path.write_text(text.replace(valid, broken))
    (document,) = load_documents(path)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_pod_monitor_scrapes_the_statefulset_pods() -> None:
    """The PodMonitor (a custom resource, outside the schema check) selects the pods' metrics."""
    (monitor,) = load_documents(POD_MONITOR)
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    pod_labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    port_names = {port["name"] for port in main_container()["ports"]}
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"


def test_services_and_budget_select_the_statefulset_pods() -> None:
    """Both Services and the PodDisruptionBudget select the pods, on the container's port."""
    pod_labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    port_names = {port["name"] for port in main_container()["ports"]}
    headless = resource("Service", statefulset()["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    for service in (headless, resource("Service", "snowflake-tracker")):
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names
    budget = resource("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert statefulset()["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


# Pods of the StatefulSet get distinct worker IDs, or refuse to start.


def test_statefulset_pods_get_distinct_worker_ids() -> None:
    """Pods 0, 1 and 5 each take their index as node ID and hold disjoint worker IDs."""
    config = pod_config()
    processes = int(literal_env()["SNOWFLAKE_TRACKER_PROCESSES"])
    slot_bits = WORKER_BITS - config.node_bits
    held: dict[int, list[int]] = {}
    for index in (0, 1, 5):
        node, worker_ids = plan_pod(index, pod_name(index))
        assert node is not None
        assert (node.node_id, node.source) == (index, "POD_INDEX")
        assert len(worker_ids) == processes
        held[index] = worker_ids
    every_id = [worker_id for worker_ids in held.values() for worker_id in worker_ids]
    assert len(set(every_id)) == len(every_id) == 3 * processes
    # Each node's block starts at node ID << slot bits: with 7 node bits and 2 processes,
    # pod 0 holds 0 and 1, pod 1 holds 8 and 9, pod 5 holds 40 and 41.
    for index, worker_ids in held.items():
        assert worker_ids == [(index << slot_bits) | slot for slot in range(processes)]


def test_pods_without_the_index_label_fall_back_to_the_same_ids() -> None:
    """Where the pod-index label is missing, the host name's ordinal gives the same worker IDs."""
    for index in (0, 1, 5):
        node, worker_ids = plan_pod(None, pod_name(index))
        assert node is not None
        assert node.node_id == index
        assert node.source.startswith("host name")
        assert worker_ids == plan_pod(index, pod_name(index))[1]


@pytest.mark.parametrize(
    "hostname", ["snowflake-tracker", "snowflake-tracker-7d9f8b6c5-x2k4z", "tracker-007"]
)
def test_pod_without_an_index_refuses_to_start(hostname: str) -> None:
    """In Kubernetes, with no pod-index label and no ordinal in the host name, start is refused."""
    with pytest.raises(WorkerIdError, match="Running in Kubernetes, but no node ID is set"):
        plan_pod(None, hostname)


def test_scaling_past_the_node_ids_is_refused_at_start() -> None:
    """Pod 2^node_bits - 1 starts with worker IDs in range; pod 2^node_bits refuses to start."""
    config = pod_config()
    nodes = 1 << config.node_bits
    assert (nodes << (WORKER_BITS - config.node_bits)) == WORKER_COUNT
    node, worker_ids = plan_pod(nodes - 1, pod_name(nodes - 1))
    assert node is not None
    assert max(worker_ids) <= MAX_WORKER_ID
    with pytest.raises(WorkerIdError, match=f"node ID {nodes},"):
        plan_pod(nodes, pod_name(nodes))


def test_replicas_and_processes_fit_the_worker_ids() -> None:
    """The manifest's replicas x processes fit the node/slot split it pins for the deployment."""
    config = pod_config()
    replicas = statefulset()["spec"]["replicas"]
    assert literal_env()["SNOWFLAKE_TRACKER_NODE_BITS"] == str(config.node_bits)
    assert replicas <= 1 << config.node_bits
    assert config.processes <= 1 << (WORKER_BITS - config.node_bits)
    assert replicas * config.processes <= WORKER_COUNT


def test_service_links_are_off_since_they_would_shadow_a_setting() -> None:
    """Service links are off: the client Service's link variable is a setting's name and a URL."""
    assert pod_spec()["enableServiceLinks"] is False
    # What the kubelet would set for the client Service: <NAME>_PORT=tcp://<cluster IP>:<port>.
    service = resource("Service", "snowflake-tracker")
    link = service["metadata"]["name"].upper().replace("-", "_") + "_PORT"
    assert link in {setting.env for setting in SETTINGS}
    with pytest.raises(ConfigError, match=link):
        load_config({}, {link: f"tcp://10.96.0.10:{service['spec']['ports'][0]['port']}"})


# The StatefulSet's pod template.


def test_stop_fits_in_the_termination_grace_period() -> None:
    """The grace period outlasts the preStop pause, the drain and the supervisor's kill margin."""
    config = pod_config()
    pause = main_container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    needed = pause + config.drain_seconds + SUPERVISOR_MARGIN_S + KILL_GRACE_S
    assert pod_spec()["terminationGracePeriodSeconds"] > needed
    assert config.drain_seconds == float(literal_env()["SNOWFLAKE_TRACKER_DRAIN_SECONDS"])


def test_probes_use_readyz_and_healthz_on_the_service_port() -> None:
    """Readiness asks /readyz and liveness /healthz, on the port the service listens on."""
    container = main_container()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    readiness = container["readinessProbe"]["httpGet"]
    liveness = container["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz"
    assert liveness["path"] == "/healthz"
    assert ports[readiness["port"]] == ports[liveness["port"]] == pod_config().port


def test_pods_are_managed_in_parallel() -> None:
    """The StatefulSet starts and stops its pods in parallel, and updates them rolling."""
    spec = statefulset()["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    assert spec["updateStrategy"]["type"] == "RollingUpdate"


def test_each_pod_keeps_its_leases_on_its_own_claim() -> None:
    """The volume claim template is mounted, writable, at the state directory the env names."""
    spec = statefulset()["spec"]
    (template,) = spec["volumeClaimTemplates"]
    mounts = {mount["name"]: mount for mount in main_container()["volumeMounts"]}
    state = mounts[template["metadata"]["name"]]
    assert not state.get("readOnly", False)
    assert PurePosixPath(state["mountPath"]) == pod_config().state_dir
    assert template["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert spec["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }


def test_cpu_limit_matches_the_processes() -> None:
    """Each process has a CPU of its own: requests equal limits, and the CPUs equal processes."""
    resources_ = main_container()["resources"]
    assert resources_["requests"] == resources_["limits"]
    assert int(resources_["limits"]["cpu"]) == pod_config().processes


def test_pods_run_unprivileged_on_a_read_only_root() -> None:
    """Every container runs as the image's non-root user, read-only root, no capabilities."""
    pod_security = pod_spec()["securityContext"]
    user = int(instruction("USER").split(":")[0])
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == pod_security["fsGroup"] == user
    for container in [*pod_spec()["initContainers"], *pod_spec()["containers"]]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]


def test_prometheus_annotations_point_at_the_metrics_endpoint() -> None:
    """The scrape annotations name /metrics on the port the service serves it on."""
    annotations = statefulset()["spec"]["template"]["metadata"]["annotations"]
    config = pod_config()
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    metrics_port = config.metrics_port if config.separate_metrics else config.port
    assert annotations["prometheus.io/port"] == str(metrics_port)


# The key file.


def test_example_secret_placeholder_is_refused_by_the_service() -> None:
    """The example Secret's placeholder parses as YAML but the service refuses it as a key."""
    secret = resource("Secret")
    (text,) = secret["stringData"].values()
    assert "REPLACE-ME" in text
    with pytest.raises(SecretFileError, match="shorter than 16 bytes"):
        parse_secret_text(text)


def test_key_file_path_is_wired_from_secret_to_service() -> None:
    """The init container copies the Secret's key to the file the service's setting names."""
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    (init,) = pod_spec()["initContainers"]
    *_, source, target = init["command"]
    init_mounts = {mount["name"]: mount["mountPath"] for mount in init["volumeMounts"]}
    secret_mounts = [name for name in init_mounts if "secret" in volumes[name]]
    (secret_volume,) = secret_mounts
    assert volumes[secret_volume]["secret"]["secretName"] == resource("Secret")["metadata"]["name"]
    assert PurePosixPath(source).parent == PurePosixPath(init_mounts[secret_volume])
    assert PurePosixPath(source).name in resource("Secret")["stringData"]
    (copy_volume,) = (name for name in init_mounts if name != secret_volume)
    assert volumes[copy_volume]["emptyDir"]["medium"] == "Memory"
    main_mounts = {mount["name"]: mount for mount in main_container()["volumeMounts"]}
    assert main_mounts[copy_volume]["mountPath"] == init_mounts[copy_volume]
    assert main_mounts[copy_volume]["readOnly"] is True
    assert PurePosixPath(target).parent == PurePosixPath(init_mounts[copy_volume])
    assert pod_config().secret_file == PurePosixPath(target)


def test_init_container_turns_a_group_readable_secret_into_an_accepted_key_file(
    tmp_path: Path,
) -> None:
    """The init container's command makes a 0600 copy the service accepts of a 0440 secret."""
    # With fsGroup set, the kubelet leaves secret volume files at mode 0440 whatever defaultMode
    # says, and behind ..data symlinks: lay out the same here.
    (init,) = pod_spec()["initContainers"]
    *command, source, target = init["command"]
    secret_dir = tmp_path / "secret"
    data_dir = secret_dir / "..2025_01_01_00_00_00.000000000"
    data_dir.mkdir(parents=True)
    (data_dir / PurePosixPath(source).name).write_text("1 " + "k" * 43 + "\n")
    (data_dir / PurePosixPath(source).name).chmod(0o440)
    (secret_dir / "..data").symlink_to(data_dir.name)
    mounted = secret_dir / PurePosixPath(source).name
    mounted.symlink_to(f"..data/{PurePosixPath(source).name}")
    copy = tmp_path / "run" / PurePosixPath(target).name
    copy.parent.mkdir()
    with pytest.raises(SecretFileError, match="mode 0440"):
        load_secret_file(mounted)
    assert shutil.which(command[0]) is not None, f"{command[0]} is not installed"
    subprocess.run([*command, str(mounted), str(copy)], check=True, timeout=30)
    assert load_secret_file(copy).versions == (1,)


# The image and the Procfile start the documented command.


def test_image_is_python_3_11_slim_running_as_non_root() -> None:
    """The image builds on python:3.11-slim and runs as a numeric, non-root user."""
    (base,) = (arguments for keyword, arguments in dockerfile_instructions() if keyword == "FROM")
    assert re.fullmatch(r"python:3\.11-slim(@sha256:[0-9a-f]{64})?", base)
    user, _, group = instruction("USER").partition(":")
    assert user.isdigit()
    assert int(user) != 0
    assert group.isdigit()
    assert int(group) != 0


def test_image_starts_snowflake_tracker_serve_on_every_interface() -> None:
    """ENTRYPOINT and CMD run `snowflake-tracker serve --host 0.0.0.0`, a valid serve line."""
    argv = image_argv()
    assert argv[:3] == ["snowflake-tracker", "serve", "--host"]
    config = serve_config(argv, image_env())
    assert config.host == "0.0.0.0"
    # Arguments given to `docker run` replace CMD; the image's ENV keeps the host.
    entrypoint = json.loads(instruction("ENTRYPOINT"))
    assert serve_config([*entrypoint, "serve", "--processes", "2"], image_env()).host == "0.0.0.0"


def test_image_keeps_its_state_on_a_volume() -> None:
    """The image's state directory is its VOLUME, and the one the StatefulSet mounts."""
    (volume,) = json.loads(instruction("VOLUME"))
    assert image_env()["SNOWFLAKE_TRACKER_STATE_DIR"] == volume
    assert serve_config(image_argv(), image_env()).state_dir == Path(volume)
    assert pod_config().state_dir == Path(volume)


def test_image_installs_exactly_the_package_dependencies(tmp_path: Path) -> None:
    """The Dockerfile's dependency layer installs the distribution's own requirement list."""
    instructions = dockerfile_instructions()
    (step,) = (
        i for i, (kw, args) in enumerate(instructions) if kw == "RUN" and "install_requires" in args
    )
    extract = shlex.split(instructions[step][1].split("&&")[0])
    assert extract[:2] == ["python", "-c"]
    assert extract[3:] == [">", "/tmp/requirements.txt"]
    # As in the image: only the files copied before this step are in the working directory.
    copied = [args.split()[:-1] for kw, args in instructions[:step] if kw == "COPY"]
    for source in (source for sources in copied for source in sources):
        shutil.copy(REPO_ROOT / source, tmp_path / source)
    result = subprocess.run(
        [sys.executable, "-c", extract[2]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    listed = {str(Requirement(line)) for line in result.stdout.split("\n") if line.strip()}
    declared = {
        str(Requirement(line))
        for line in importlib.metadata.requires("snowflake-tracker") or []
        if "extra ==" not in line
    }
    assert listed == declared
    assert listed


def test_dockerignore_admits_exactly_what_the_dockerfile_copies() -> None:
    """The top-level .dockerignore excludes everything but the sources the Dockerfile copies."""
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    admitted = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    sources: set[str] = set()
    for keyword, arguments in dockerfile_instructions():
        if keyword == "COPY" and not arguments.startswith("--from"):
            *copied, _destination = arguments.split()
            sources.update(source.rstrip("/") for source in copied)
    assert sources == admitted


def test_procfile_starts_snowflake_tracker_serve_on_the_platform_port() -> None:
    """The Procfile's web process is a valid `snowflake-tracker serve` on 0.0.0.0 and $PORT."""
    argv = procfile_argv(5000)
    assert argv[:2] == ["snowflake-tracker", "serve"]
    config = serve_config(argv, {"PORT": "5000"})
    assert (config.host, config.port) == ("0.0.0.0", 5000)
    assert config.worker_id is None
    assert config.node_id is None


def test_deploy_procfile_is_the_top_level_procfile() -> None:
    """deploy/Procfile is a link to the top-level Procfile, the one platforms read: one file."""
    link = DEPLOY / "Procfile"
    assert link.is_symlink()
    assert link.resolve() == PROCFILE.resolve()


def test_deploy_readme_documents_the_commands_the_files_run() -> None:
    """deploy/README.md shows the image's and the Procfile's command lines as they are."""
    readme = (DEPLOY / "README.md").read_text()
    assert shlex.join(image_argv()) in readme
    assert PROCFILE.read_text().strip() in readme


def test_console_script_is_named_as_the_image_and_procfile_call_it() -> None:
    """setup.cfg installs the `snowflake-tracker` command that the image and Procfile run."""
    parser = configparser.ConfigParser()
    parser.read(REPO_ROOT / "setup.cfg")
    scripts = parser["options.entry_points"]["console_scripts"]
    assert re.search(r"^snowflake-tracker\s*=", scripts.strip(), re.MULTILINE)
    assert image_argv()[0] == procfile_argv(5000)[0] == "snowflake-tracker"
