"""examples/kuberay against Kubernetes' own schemas, and against the code it configures.

No Kubernetes API server runs here, so nothing is applied. What is checked: every native object
(Job, ServiceAccount, NetworkPolicy) and every pod template inside the RayCluster validates
strictly (unknown fields refused) against the OpenAPI schemas of the pinned Kubernetes release
(kubernetes-validate); the RayCluster's own fields are the ones KubeRay's ray.io/v1 API has, with
``rayStartParams`` as strings; and the names that tie the manifests to rollouts.py (the env_host
resource, the node labels, the script's mount) agree with it.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

KUBERNETES = "1.35.0"  # validate against this release's schemas
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kuberay"
ROLLOUTS = EXAMPLE / "rollouts.py"

# KubeRay's ray.io/v1 RayCluster fields that the example may use.
RAYCLUSTER_SPEC = {"rayVersion", "headGroupSpec", "workerGroupSpecs", "enableInTreeAutoscaling"}
HEAD_GROUP = {"rayStartParams", "template", "serviceType"}
WORKER_GROUP = {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams",
                "template"}  # fmt: skip


def documents() -> list[dict[str, Any]]:
    found = []
    for path in sorted(EXAMPLE.glob("*.yaml")):
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def strictly_valid(resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, KUBERNETES, strict=True)


def pod_templates(cluster: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    spec = cluster["spec"]
    groups = [("head", spec["headGroupSpec"])]
    groups += [(group["groupName"], group) for group in spec["workerGroupSpecs"]]
    return [(name, group["template"]) for name, group in groups]


def as_pod_template(name: str, template: dict[str, Any]) -> dict[str, Any]:
    """A RayCluster's group template is a PodTemplateSpec: check it as a core PodTemplate."""
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name},
            "template": template}  # fmt: skip


def ray_clusters() -> list[dict[str, Any]]:
    return [doc for doc in documents() if doc["kind"] == "RayCluster"]


def test_the_example_has_a_raycluster_and_a_job() -> None:
    kinds = [doc["kind"] for doc in documents()]
    assert kinds.count("RayCluster") == 1
    assert "Job" in kinds


@pytest.mark.parametrize("doc", [d for d in documents() if d["kind"] != "RayCluster"],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")  # fmt: skip
def test_native_objects_validate_strictly(doc: dict[str, Any]) -> None:
    strictly_valid(doc)


@pytest.mark.parametrize("group", [name for name, _ in pod_templates(ray_clusters()[0])])
def test_raycluster_pod_templates_validate_strictly(group: str) -> None:
    template = dict(pod_templates(ray_clusters()[0]))[group]
    strictly_valid(as_pod_template(group, template))


def test_the_validator_refuses_what_kubernetes_would() -> None:
    """The checks above can fail: a misspelt field and a wrong type are refused."""
    template = dict(pod_templates(ray_clusters()[0]))["envs-process"]
    misspelt = json.loads(json.dumps(template))
    misspelt["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        strictly_valid(as_pod_template("misspelt", misspelt))
    wrong = json.loads(json.dumps(template))
    wrong["spec"]["containers"][0]["resources"]["limits"]["cpu"] = ["4"]
    with pytest.raises(kubernetes_validate.ValidationError):
        strictly_valid(as_pod_template("wrong", wrong))


def test_raycluster_fields_are_kuberays() -> None:
    cluster = ray_clusters()[0]
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert set(spec) <= RAYCLUSTER_SPEC
    assert set(spec["headGroupSpec"]) <= HEAD_GROUP
    for group in spec["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP, group["groupName"]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        # KubeRay's rayStartParams is a map of strings (numbers must be quoted).
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())


def rollouts_options() -> dict[str, Any]:
    """The keyword arguments rollouts.py gives RayProvider, read from its source."""
    tree = ast.parse(ROLLOUTS.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "RayProvider":
            return {
                kw.arg: ast.literal_eval(kw.value)
                for kw in node.keywords
                if kw.arg in ("node_resource", "node_labels")
            }
    raise AssertionError("rollouts.py makes no RayProvider")


def test_env_host_groups_offer_what_rollouts_asks_for() -> None:
    options = rollouts_options()
    groups = ray_clusters()[0]["spec"]["workerGroupSpecs"]
    matching = []
    for group in groups:
        params = group["rayStartParams"]
        # KubeRay passes `resources` to `ray start --resources=...` as written: a quoted JSON.
        resources = json.loads(json.loads(params["resources"]))
        labels = dict(item.split("=", 1) for item in params["labels"].split(","))
        if resources.get(options["node_resource"], 0) > 0 and all(
            labels.get(k) == v for k, v in options["node_labels"].items()
        ):
            matching.append(group["groupName"])
    assert matching == ["envs-process"]


def test_the_job_runs_rollouts_py_from_its_configmap() -> None:
    job = next(doc for doc in documents() if doc["kind"] == "Job")
    pod = job["spec"]["template"]
    container = pod["spec"]["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "rollouts")
    assert container["command"][-1] == f"{mount['mountPath']}/{ROLLOUTS.name}"
    # The NetworkPolicy lets the job's pods reach the env servers.
    policy = next(doc for doc in documents() if doc["kind"] == "NetworkPolicy")
    allowed = [rule["podSelector"]["matchLabels"] for rule in policy["spec"]["ingress"][0]["from"]]
    assert pod["metadata"]["labels"] in allowed
