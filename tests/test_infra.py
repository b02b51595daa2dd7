"""infra/ validated offline: every Kubernetes manifest against the Kubernetes schemas (strict:
no unknown fields), the compose file against the Compose specification."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).resolve().parents[1] / "infra"
KUBERNETES = "1.33"  # the oldest release still supported upstream when these were written


def _manifests() -> list[tuple[str, dict]]:
    found = []
    for path in sorted((INFRA / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return found


def _validate(doc: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, KUBERNETES, strict=True)


@pytest.mark.parametrize(("name", "doc"), _manifests(), ids=[n for n, _ in _manifests()])
def test_kubernetes_manifest_matches_the_schema(name, doc):
    _validate(doc)


def test_the_kubernetes_check_refuses_a_misspelt_field_and_a_wrong_type():
    import kubernetes_validate

    job = next(doc for name, doc in _manifests() if name.startswith("training-job.yaml:Job"))
    misspelt = json.loads(json.dumps(job))
    misspelt["spec"]["completionMod"] = misspelt["spec"].pop("completionMode")
    with pytest.raises(kubernetes_validate.ValidationError, match="completionMod"):
        _validate(misspelt)
    wrong_type = json.loads(json.dumps(job))
    wrong_type["spec"]["completions"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(wrong_type)


def _compose(text: str):
    from compose_spec import PyCompose

    # YAML merge keys (<<: *env) are resolved by the YAML loader, as Compose does
    return PyCompose.from_json(json.dumps(yaml.safe_load(text)))


def test_compose_file_matches_the_compose_specification():
    text = (INFRA / "compose.yaml").read_text()
    compose = _compose(text)
    services = set(compose.service_names())
    assert {"postgres", "minio", "mlflow", "prefect-server", "cpu-worker", "gpu-worker"} <= services
    # what the specification's parser leaves to the engine: every dependency names a service
    for name, service in yaml.safe_load(text)["services"].items():
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on unknown service {needed}"
    if shutil.which("docker") and (
        subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        subprocess.run(
            ["docker", "compose", "--env-file", str(INFRA / ".env.example"), "-f",
             str(INFRA / "compose.yaml"), "config", "--quiet"],
            check=True,
        )  # fmt: skip


def test_the_compose_check_refuses_an_unknown_key_and_a_bad_value():
    text = (INFRA / "compose.yaml").read_text()
    with pytest.raises(ValueError, match="healthchek"):
        _compose(text.replace("healthcheck:", "healthchek:", 1))
    with pytest.raises(ValueError, match="unit"):
        _compose(text.replace("shm_size: 16gb", "shm_size: plenty", 1))


def _gpu_pool_job(**values):
    """The GPU pool's base job template, rendered as Prefect's worker does for one flow run."""
    from prefect.utilities.templating import apply_values

    template = json.loads((INFRA / "k8s" / "gpu-pool-base-job-template.json").read_text())
    props = template["variables"]["properties"]
    run = {
        "name": "train-demo-policy-x7k2p",
        "env": [{"name": "PREFECT__FLOW_RUN_ID", "value": "0b8f3c1e"}],
        "labels": {"prefect.io/flow-run-id": "0b8f3c1e"},
        "command": ["prefect", "flow-run", "execute"],
    }
    defaults = {k: v["default"] for k, v in props.items() if "default" in v}
    return template, apply_values(
        template["job_configuration"]["job_manifest"], defaults | run | values
    )


def test_the_gpu_pool_job_template_renders_a_valid_job_that_requests_gpus():
    import re

    template, job = _gpu_pool_job()
    _validate(job)
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert job["spec"]["backoffLimit"] == 0  # a failed training is reported, not retried blind
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"alignment/gpu": "true"}
    # every placeholder is a declared variable (an undeclared one would render as nothing)
    used = set(re.findall(r"{{\s*(\w+)\s*}}", json.dumps(template["job_configuration"])))
    assert used <= set(template["variables"]["properties"]), used
    _, eight = _gpu_pool_job(gpus=8)
    _validate(eight)
    assert eight["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "memory": "64Gi",
        "nvidia.com/gpu": 8,
    }
    bad = json.loads(json.dumps(job))
    bad["spec"]["template"]["spec"]["containers"][0]["resource"] = bad["spec"]["template"]["spec"][
        "containers"
    ][0].pop("resources")
    import kubernetes_validate

    with pytest.raises(kubernetes_validate.ValidationError, match="resource"):
        _validate(bad)


def test_prefect_yaml_puts_the_retrain_check_on_cpu_and_training_on_gpu():
    deployments = {
        d["name"]: d
        for d in yaml.safe_load((INFRA.parent / "prefect.yaml").read_text())["deployments"]
    }
    retrain, training = deployments["retrain-demo-policy"], deployments["train-demo-policy"]
    assert (retrain["work_pool"]["name"], training["work_pool"]["name"]) == ("cpu", "gpu")
    assert retrain["entrypoint"] == "flows/retrain.py:retrain" and retrain["schedules"]
    assert training["entrypoint"] == "flows/pipeline.py:alignment_pipeline"
    assert "schedules" not in training  # only the retrain (or a person) starts a training run
    # the retrain's override names the training deployment as run_deployment wants it
    (override,) = [o for o in retrain["parameters"]["overrides"] if "training_deployment" in o]
    assert override == "retrain.training_deployment=alignment-pipeline/train-demo-policy"
    assert set(training["parameters"]) == {"config_path", "overrides", "data_version"}
