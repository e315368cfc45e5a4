"""Offline checks of the Kubernetes manifests (docker/k8s): nothing here talks to a cluster.

1. Every kustomization renders (`kubectl kustomize` when kubectl is installed; otherwise the files are read
   one by one and the overlays' patches, which by rule merge maps only, are applied by `merge_patch` below,
   which is itself checked against kubectl's output when kubectl is there) and every document validates
   against the JSON schemas of Kubernetes K8S_VERSION (`kubernetes-validate`, strict: unknown fields fail).
   Custom resources (ServiceMonitor, InferenceService) have no schema there: that is asserted, and their
   required fields are checked by hand.
2. yamllint with docker/k8s/.yamllint on every file.
3. The manifests agree with the gateway: every SERVING_* name is a Settings field, probe paths and ports are
   the gateway's routes and settings, the grace period covers the preStop pause and the drain timeout.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from yamllint import config as yamllint_config
from yamllint import linter

from serving.runtime.settings import Settings

K8S_VERSION = "1.32.0"  # the schemas validated against (the kubectl client on the dev machines is 1.32)
ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "docker" / "k8s"
KUSTOMIZATIONS = {"base": K8S / "base", "cpu": K8S / "overlays" / "cpu", "gpu": K8S / "overlays" / "gpu"}
STANDALONE = [K8S / "kserve" / "inferenceservice.yaml"]
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("serving.kserve.io/v1beta1", "InferenceService")}
CLUSTER_SCOPED = {"Namespace"}
KUBECTL = shutil.which("kubectl")
PREFIX = Settings.model_config["env_prefix"]


# -- rendering -------------------------------------------------------------------------------------------


def _load(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _key(doc: dict) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def merge_patch(target: dict, patch: dict) -> dict:
    """Strategic merge of a patch that holds maps and scalars only (the overlays' rule): maps merge, scalars
    replace, a None value deletes the key. Lists are refused: their strategic merge depends on patch keys."""
    out = copy.deepcopy(target)
    for key, value in patch.items():
        if isinstance(value, list):
            raise ValueError(f"list at {key!r}: overlay patches must merge maps only")
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_patch(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def render_python(directory: Path) -> list[dict]:
    """The subset of kustomize the manifests use: resources (files or directories), namespace, patches."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - {"apiVersion", "kind", "namespace", "resources", "patches"}
    assert not unknown, f"{directory}: kustomization fields the offline renderer does not know: {unknown}"
    docs: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        docs += render_python(path) if path.is_dir() else _load(path)
    by_key = {_key(d): d for d in docs}
    assert len(by_key) == len(docs), f"{directory}: duplicate resources"
    for patch_entry in kustomization.get("patches", []):
        assert set(patch_entry) == {"path"}, f"{directory}: only file patches are supported: {patch_entry}"
        for patch in _load(directory / patch_entry["path"]):
            key = _key(patch)
            assert key in by_key, f"{directory}: patch {key} matches no resource"
            by_key[key] = merge_patch(by_key[key], patch)
    docs = list(by_key.values())
    if namespace := kustomization.get("namespace"):
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = namespace
    return docs


def render_kubectl(directory: Path) -> list[dict]:
    proc = subprocess.run(
        [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def render(directory: Path) -> list[dict]:
    return render_kubectl(directory) if KUBECTL else render_python(directory)


@pytest.fixture(scope="module", params=sorted(KUSTOMIZATIONS))
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(KUSTOMIZATIONS[request.param])


def _one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if _key(d) == (kind, name)]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


# -- the merge itself ------------------------------------------------------------------------------------


def test_merge_patch_merges_maps_replaces_scalars_and_refuses_lists():
    target = {"a": {"x": 1, "y": 2}, "b": [1, 2], "c": "keep"}
    assert merge_patch(target, {"a": {"y": 3, "z": 4}}) == {"a": {"x": 1, "y": 3, "z": 4}, "b": [1, 2], "c": "keep"}
    assert merge_patch(target, {"a": {"x": None}})["a"] == {"y": 2}
    assert merge_patch(target, {"c": {"now": "a map"}})["c"] == {"now": "a map"}
    assert target == {"a": {"x": 1, "y": 2}, "b": [1, 2], "c": "keep"}  # not modified
    with pytest.raises(ValueError, match="maps only"):
        merge_patch(target, {"b": [3]})


@pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed: nothing to compare the offline renderer with")
@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_offline_render_equals_kubectl_kustomize(name):
    ours = {_key(d): d for d in render_python(KUSTOMIZATIONS[name])}
    theirs = {_key(d): d for d in render_kubectl(KUSTOMIZATIONS[name])}
    assert ours == theirs


# -- 1. schemas ------------------------------------------------------------------------------------------


def _check_custom(doc: dict) -> None:
    spec = doc.get("spec")
    assert doc["metadata"].get("name") and isinstance(spec, dict), doc
    if doc["kind"] == "ServiceMonitor":
        assert spec["selector"]["matchLabels"], "a ServiceMonitor needs a selector"
        assert spec["endpoints"], "a ServiceMonitor needs endpoints"
        for endpoint in spec["endpoints"]:
            assert endpoint.get("port") or endpoint.get("targetPort"), endpoint
    else:  # InferenceService
        model = spec["predictor"]["model"]
        assert model["modelFormat"]["name"] == "triton"
        assert model["protocolVersion"] == "v2"
        assert model["storageUri"].startswith(("pvc://", "s3://", "gs://", "https://"))


def _validate(doc: dict) -> None:
    if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
        with pytest.raises(kubernetes_validate.SchemaNotFoundError):  # a CRD: no schema in the package
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        _check_custom(doc)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_every_rendered_document_validates(rendered):
    name, docs = rendered
    kinds = {d["kind"] for d in docs}
    expected = {
        "Namespace", "PersistentVolumeClaim", "ConfigMap", "Deployment", "Service",
        "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor", "Job",
    }  # fmt: skip
    assert expected <= kinds, f"{name}: missing {expected - kinds}"
    for doc in docs:
        _validate(doc)


def test_every_file_validates_on_its_own():
    """Base resources, overlay resources and patches (complete ConfigMaps), and the standalone KServe file."""
    files = [p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml"]
    assert len(files) >= 12
    for path in files:
        for doc in _load(path):
            _validate(doc)


def test_kserve_alternative_is_a_crd_that_kubernetes_validate_skips():
    (doc,) = _load(STANDALONE[0])
    assert (doc["apiVersion"], doc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    _check_custom(doc)


def test_validation_can_fail():
    deployment = copy.deepcopy(_one(render_python(KUSTOMIZATIONS["base"]), "Deployment", "gateway"))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    deployment["spec"]["replicas"] = 2
    deployment["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}  # a typo: strict refuses it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


# -- 2. yamllint -----------------------------------------------------------------------------------------


def _lint(text: str) -> list:
    conf = yamllint_config.YamlLintConfig(file=str(K8S / ".yamllint"))
    return list(linter.run(text, conf))


def test_yamllint_passes_on_every_file():
    problems = [
        f"{p.relative_to(ROOT)}:{e.line}: {e.message}" for p in K8S.rglob("*.yaml") for e in _lint(p.read_text())
    ]
    assert not problems, "\n".join(problems)


def test_yamllint_config_catches_problems():
    assert _lint("key: yes\nother:  1\n" + "x: " + "a" * 130 + "\n")


# -- 3. agreement with the gateway -----------------------------------------------------------------------


def _gateway(docs: list[dict]) -> tuple[dict, dict, dict]:
    deployment = _one(docs, "Deployment", "gateway")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "gateway"]
    config = _one(docs, "ConfigMap", "gateway-config")["data"]
    return deployment, container, config


def test_env_names_are_gateway_settings(rendered):
    name, docs = rendered
    _, container, config = _gateway(docs)
    fields = {f"{PREFIX}{field}".upper() for field in Settings.model_fields}
    names = set(config) | {e["name"] for e in container.get("env", []) if e["name"].startswith(PREFIX)}
    assert all(n.startswith(PREFIX) for n in config), f"{name}: non-{PREFIX} keys in the ConfigMap"
    assert names <= fields, f"{name}: not gateway settings: {sorted(names - fields)}"
    Settings(**{k[len(PREFIX) :].lower(): v for k, v in config.items()})  # every value parses as the gateway would
    assert {"gateway-config"} == {s["configMapRef"]["name"] for s in container["envFrom"]}


def test_probes_and_ports_agree_with_the_gateway(rendered):
    _, docs = rendered
    deployment, container, config = _gateway(docs)
    settings = Settings(**{k[len(PREFIX) :].lower(): v for k, v in config.items()})
    assert settings.host == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": settings.port, "grpc": settings.grpc_port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    from serving.http.health import router  # the gateway's own health and metrics routes

    paths = {r.path for r in router.routes}
    monitor = _one(docs, "ServiceMonitor", "gateway")
    assert {"/readyz", "/healthz"} <= paths and {e["path"] for e in monitor["spec"]["endpoints"]} <= paths
    service = _one(docs, "Service", "gateway")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == ports
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= set(ports)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (service["spec"]["selector"], monitor["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert deployment["spec"]["replicas"] >= 2
    assert settings.model_repository.as_posix() in {m["mountPath"] for m in container["volumeMounts"]}
    assert settings.artifacts.as_posix() in {m["mountPath"] for m in container["volumeMounts"]}


def test_drain_fits_in_the_grace_period(rendered):
    _, docs = rendered
    deployment, container, config = _gateway(docs)
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = Settings(drain_timeout_s=config.get(f"{PREFIX}DRAIN_TIMEOUT_S", Settings().drain_timeout_s)).drain_timeout_s
    assert grace > drain + float(pre_stop[1])


def test_hpa_pdb_and_security(rendered):
    _, docs = rendered
    deployment, container, _ = _gateway(docs)
    hpa = _one(docs, "HorizontalPodAutoscaler", "gateway")["spec"]
    assert hpa["minReplicas"] >= 2 and hpa["scaleTargetRef"]["name"] == "gateway"
    metrics = {m["type"]: m for m in hpa["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "gateway_inflight_requests"
    from serving.runtime.metrics import Metrics  # the gauge the HPA scales on exists under that name

    assert "gateway_inflight_requests" in {m.name for m in Metrics().registry.collect()}
    pdb = _one(docs, "PodDisruptionBudget", "gateway")["spec"]
    assert pdb["minAvailable"] < deployment["spec"]["replicas"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_images_are_the_ones_docker_builds_and_compose_runs(rendered):
    _, docs = rendered
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]
    _, container, _ = _gateway(docs)
    assert container["image"] == compose["gateway"]["image"].replace("${TAG:-0.1.0}", "0.1.0")
    job = _one(docs, "Job", "export")["spec"]["template"]["spec"]["containers"][0]
    assert job["args"][:3] == ["python", "-m", "export"] and "--checkpoints" in job["args"]
    assert "--artifacts" in job["args"]
    triton = [d for d in docs if _key(d) == ("Deployment", "triton")]
    if triton:
        (t,) = triton[0]["spec"]["template"]["spec"]["containers"]
        assert t["image"] == compose["triton"]["image"].replace("${TRITON_TAG:-24.08-py3}", "24.08-py3")


def test_gpu_overlay_sends_model_calls_to_triton():
    docs = render(KUSTOMIZATIONS["gpu"])
    _, _, config = _gateway(docs)
    assert config["SERVING_BACKEND"] == "triton"
    host, port = config["SERVING_TRITON_URL"].split(":")
    service = _one(docs, "Service", host)
    triton = _one(docs, "Deployment", "triton")["spec"]["template"]["spec"]
    (container,) = triton["containers"]
    grpc_port = next(p for p in service["spec"]["ports"] if p["port"] == int(port))
    assert grpc_port["targetPort"] in {p["name"] for p in container["ports"]}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert triton["nodeSelector"] and triton["tolerations"]
    assert {"--model-control-mode=poll", "--repository-poll-secs=30", "--model-repository=/models"} <= set(
        container["args"]
    )
    assert {"/models"} == {m["mountPath"] for m in container["volumeMounts"] if m["name"] == "models"}
    cpu_config = _gateway(render(KUSTOMIZATIONS["cpu"]))[2]
    assert cpu_config["SERVING_BACKEND"] == "embedded" and "SERVING_TRITON_URL" not in cpu_config


def test_consistency_checks_can_fail():
    docs = render_python(KUSTOMIZATIONS["base"])
    _, container, config = _gateway(docs)
    config["SERVING_DRAIN_TIMEOUT_S"] = "40"
    with pytest.raises(AssertionError):
        test_drain_fits_in_the_grace_period(("mutated", docs))
    config["SERVING_DRAIN_TIMEOUT_S"] = "10"
    config["SERVING_DRAIN_TIMEOUT"] = "10"  # not a setting
    with pytest.raises(AssertionError, match="not gateway settings"):
        test_env_names_are_gateway_settings(("mutated", docs))
    del config["SERVING_DRAIN_TIMEOUT"]
    container["readinessProbe"]["httpGet"]["path"] = "/ready"
    with pytest.raises(AssertionError):
        test_probes_and_ports_agree_with_the_gateway(("mutated", docs))
