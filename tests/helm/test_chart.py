"""The chart renders, lints and validates for the default and each example values file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.helm.chart import CHART, EXAMPLES, ROOT, lint, parse_quantity, template
from tests.helm.crd import validate_custom_resource

#: The Kubernetes version the core objects are validated against.
KUBERNETES_VERSION = "1.35.0"
#: Kinds validated against CRDs we do not ship (prometheus-operator): checked by selector.
MONITORING = {"ServiceMonitor", "PodMonitor"}

examples = pytest.mark.parametrize("example", sorted(EXAMPLES))


def _core_validate(obj: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@examples
def test_lint_strict(example):
    out = lint(EXAMPLES[example])
    assert "0 chart(s) failed" in out


@examples
def test_core_objects_validate_against_kubernetes(example):
    r = template(EXAMPLES[example])
    kinds = set()
    for obj in r.objects:
        kinds.add(obj["kind"])
        if obj["apiVersion"].startswith("ray.io/") or obj["kind"] in MONITORING:
            continue
        _core_validate(obj)
    # The RayService embeds pod templates and a Service: validate them as core objects too.
    for g in r.groups():
        _core_validate({"apiVersion": "v1", "kind": "PodTemplate",
                        "metadata": {"name": f"{g.name}-template"},
                        "template": {"spec": g.pod_spec}})
    serve = r.ray_service["spec"]["serveService"]
    _core_validate({"apiVersion": "v1", "kind": "Service", **serve})
    assert {"RayService", "ConfigMap", "ServiceAccount", "NetworkPolicy",
            "PodDisruptionBudget"} <= kinds


def test_a_broken_core_object_fails_validation():
    """The validator is strict: a field the Kubernetes schema lacks is an error."""
    import kubernetes_validate

    pdb = template().one("PodDisruptionBudget")
    pdb["spec"]["maxUnavailabe"] = 1
    with pytest.raises(kubernetes_validate.ValidationError, match="maxUnavailabe"):
        _core_validate(pdb)


@examples
def test_rayservice_matches_kuberay_crd(example):
    rs = template(EXAMPLES[example]).ray_service
    full = validate_custom_resource(rs)
    assert full["spec"]["serveService"]["spec"]["ports"][0]["protocol"] == "TCP"
    # KubeRay creates a RayCluster whose spec is rayClusterConfig: valid as one too
    validate_custom_resource({"apiVersion": "ray.io/v1", "kind": "RayCluster",
                              "metadata": {"name": f"{rs['metadata']['name']}-raycluster"},
                              "spec": rs["spec"]["rayClusterConfig"]})


@examples
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Serve's own pydantic fields
def test_serve_config_is_valid_for_ray_and_builds_the_app(example, monkeypatch):
    from ray.serve.schema import ServeDeploySchema

    from alray.service.app import build_app
    from alray.service.settings import ServiceSettings

    cfg = template(EXAMPLES[example]).serve_config
    ServeDeploySchema.model_validate(cfg)
    (app,) = cfg["applications"]
    assert app["import_path"] == "alray.service.app:build_app"
    assert app["route_prefix"] == "/"
    dep = app["deployments"][0]
    assert dep["name"] == "alray"  # the deployment build_app binds
    scaling = dep["autoscaling_config"]
    assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"]
    # the args are ServiceSettings fields, and alray's own builder accepts them
    settings = ServiceSettings(**app["args"])
    assert settings.service_root.startswith("s3://")
    monkeypatch.setenv("ALRAY_API_TOKENS", "admin:check-token")
    build_app(app["args"])


@examples
def test_project_configs_are_valid_alray_configs(example):
    from alray.config import validate_config

    r = template(EXAMPLES[example])
    data = r.config_map("alray-config")
    projects = {k: v for k, v in data.items() if k.startswith("project-")}
    for key, text in projects.items():
        cfg = validate_config(yaml.safe_load(text), source=key)
        assert cfg.pool.uri.startswith("s3://"), key
        assert any(cfg.pool.uri.startswith(root)
                   for root in r.serve_config["applications"][0]["args"]["data_roots"].split(","))
    if example != "default":
        assert projects, "the examples register a project"
        assert r.all("Job"), "a Job registers the projects"


@examples
def test_store_is_on_s3(example):
    r = template(EXAMPLES[example])
    args = r.serve_config["applications"][0]["args"]
    assert args["service_root"].startswith("s3://")
    assert all(x.startswith("s3://") for x in args["data_roots"].split(","))
    # the ConfigMap carries the same settings the builder gets
    assert yaml.safe_load(r.config_map("alray-config")["service.yaml"]) == args


@examples
def test_every_container_has_resources_and_a_non_root_security_context(example):
    r = template(EXAMPLES[example])
    containers = r.containers()
    assert len(containers) >= 3
    for where, c in containers:
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            for key in ("cpu", "memory"):
                assert key in res.get(part, {}), f"{where}: resources.{part}.{key} missing"
                parse_quantity(res[part][key])
        pod = c.get("_pod", {}).get("securityContext", {})
        sc = {**pod, **c.get("securityContext", {})}
        assert sc.get("runAsNonRoot") is True, f"{where}: runAsNonRoot"
        assert sc.get("runAsUser", 1000) != 0, f"{where}: runAsUser 0"
        assert c["securityContext"].get("allowPrivilegeEscalation") is False, where
        assert "ALL" in c["securityContext"].get("capabilities", {}).get("drop", []), where
        assert not c["securityContext"].get("privileged", False), where


@pytest.mark.parametrize("example", ["default", "gpu"])
def test_gpu_workers_request_gpus(example):
    r = template(EXAMPLES[example])
    gpu = r.group("gpu")
    res = gpu.container["resources"]
    assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"]
    assert int(res["limits"]["nvidia.com/gpu"]) >= 1
    assert gpu.gpus == int(res["limits"]["nvidia.com/gpu"]) == int(gpu.ray_start_params["num-gpus"])
    assert gpu.pod_spec["tolerations"] and gpu.pod_spec["nodeSelector"]
    assert gpu.min_replicas <= gpu.replicas <= gpu.max_replicas
    # no other group asks for GPUs
    for g in r.groups():
        if g.name != "gpu":
            assert not any(k.endswith("/gpu") for k in g.limits), g.name


def test_minimal_is_cpu_only_with_one_worker():
    r = template(EXAMPLES["minimal"])
    assert [g.name for g in r.groups()] == ["head", "cpu"]
    cpu = r.group("cpu")
    assert cpu.replicas == cpu.min_replicas == cpu.max_replicas == 1
    assert r.group("head").env["AWS_ENDPOINT_URL"] == "http://minio.storage:9000"


@pytest.mark.parametrize("ingress", ["haproxy", "proxy"])
def test_ingress_environment_is_alrays(ingress):
    """Every Ray pod gets exactly the Serve settings `alray serve --ingress` uses."""
    from alray.service.ingress import INGRESS_ENV

    r = template(set_values={"alray.ingress": ingress})
    for g in r.groups():
        assert INGRESS_ENV[ingress].items() <= g.env.items(), g.name


@examples
def test_autoscaling_and_ingress_environment(example):
    r = template(EXAMPLES[example])
    rc = r.ray_service["spec"]["rayClusterConfig"]
    assert rc["enableInTreeAutoscaling"] is True
    assert r.ray_service["spec"]["upgradeStrategy"]["type"] == "NewCluster"
    for g in r.groups():
        assert g.env["RAY_SERVE_ENABLE_HA_PROXY"] == "1", g.name  # README: "HTTP ingress"
        assert g.env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1", g.name
        assert g.env["AWS_REGION"]
        if not g.is_head:
            assert g.min_replicas <= g.replicas <= g.max_replicas


def test_gcs_fault_tolerance_takes_redis_from_a_secret():
    rc = template(EXAMPLES["gpu"]).ray_service["spec"]["rayClusterConfig"]
    ft = rc["gcsFaultToleranceOptions"]
    assert ft["redisAddress"] == "redis-master.redis:6379"
    assert ft["redisPassword"]["valueFrom"]["secretKeyRef"] == {"name": "alray-redis",
                                                                 "key": "password"}
    assert "gcsFaultToleranceOptions" not in template().ray_service["spec"]["rayClusterConfig"]


def test_monitors_select_rendered_objects():
    """ServiceMonitor/PodMonitor have no schema here: check their selectors and ports hit
    what the chart renders."""
    r = template(EXAMPLES["gpu"])
    serve = r.ray_service["spec"]["serveService"]
    sm = r.one("ServiceMonitor")
    assert sm["spec"]["selector"]["matchLabels"].items() <= serve["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in serve["spec"]["ports"]}
    pm = r.one("PodMonitor")
    for g in r.groups():
        assert pm["spec"]["selector"]["matchLabels"].items() <= g.pod_labels.items(), g.name
        assert "metrics" in {p["name"] for p in g.container["ports"]}, g.name
    ing = r.one("Ingress")
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == serve["metadata"]["name"]


def test_ray_start_parameters_for_hosts_without_gpus():
    """What the multi-host cluster test starts its hosts with: the GPU group's GPUs as a
    stand-in custom resource."""
    r = template()
    head, cpu, gpu = r.groups()
    assert head.ray_resources["CPU"] == 0  # num-cpus 0: nothing runs on the head
    assert cpu.ray_resources == {"CPU": 4.0, "memory": 16 * 2**30}
    args = gpu.ray_start_args(gpu_stand_in="gpu_stand_in", skip=["metrics-export-port"])
    assert "--num-gpus=0" in args and '--resources={"gpu_stand_in": 1.0}' in args
    assert "--num-cpus=8" in args and f"--memory={32 * 2**30}" in args
    assert "--num-gpus=1" in gpu.ray_start_args()


def test_ray_version_is_pinned_everywhere():
    """The chart's rayVersion, the image's pin (deploy/constraints.txt) and the installed Ray
    are one version."""
    import ray

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    pin = re.search(r"^ray==([0-9.]+)$", (ROOT / "deploy" / "constraints.txt").read_text(), re.M)
    assert pin, "deploy/constraints.txt pins ray"
    assert values["rayVersion"] == pin.group(1) == ray.__version__


def undocumented(values_yaml: str) -> list[str]:
    """Keys without a `# --` comment that sit under no documented key (helm-docs: a
    documented map documents its children)."""
    lines = values_yaml.splitlines()
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    missing = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z0-9_.\-/]+):", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        j = i - 1
        while j >= 0 and lines[j].lstrip().startswith("#") \
                and not lines[j].lstrip().startswith("# --"):
            j -= 1  # a `# --` comment may run over several lines
        documented = j >= 0 and lines[j].lstrip().startswith("# --")
        nxt = next((ln for ln in lines[i + 1:] if ln.strip()), "")
        section = len(nxt) - len(nxt.lstrip()) > indent and not nxt.strip().startswith("- ")
        if not documented and not section and not any(d for _, d in stack):
            missing.append(m.group(2))
        stack.append((indent, documented))
    return missing


def test_every_value_is_documented():
    assert not undocumented((CHART / "values.yaml").read_text())
    assert undocumented("a:\n  # -- yes\n  b: 1\n  c: 2\n# -- doc\nd:\n  e: 1\n") == ["c"]


def test_dockerfile_runs_the_install_script_as_non_root():
    text = (ROOT / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    froms = re.findall(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    assert len(froms) >= 2, "multi-stage"
    assert re.search(r"^RUN .*deploy/install\.sh", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, re.M)
    for m in re.finditer(r"^(?:ARG|ENV)\s+(\S+)", text, re.M):
        assert not re.search(r"TOKEN|SECRET|PASSWORD|ACCESS_KEY", m.group(1)), m.group(0)
    makefile = (ROOT / "Makefile").read_text()
    assert "deploy/install.sh" in makefile, "make install runs the image's install script"


def test_readme_and_guide_name_the_deploy_commands():
    guide = (ROOT / "deploy" / "README.md").read_text()
    for word in ("kuberay-operator", "helm install", "gpuWorkers.maxReplicas", "existingSecret",
                 "docker build", "ALRAY_API_TOKENS", "port-forward"):
        assert word in guide, word
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:40])
    assert "helm install" in first_screen


def test_values_files_are_yaml_with_known_keys():
    schema_keys = set(yaml.safe_load((CHART / "values.yaml").read_text()))
    for files in EXAMPLES.values():
        for f in files:
            assert set(yaml.safe_load(Path(f).read_text())) <= schema_keys, f


@examples
def test_notes_tell_how_to_reach_the_api_and_the_dashboard(example):
    from tests.helm.chart import notes

    text = notes(EXAMPLES[example])
    assert "kubectl -n alray get rayservice alray" in text
    assert "port-forward svc/alray-head-svc 8265:8265" in text
    if example == "gpu":
        assert "https://alray.acme.example/docs" in text
    else:
        assert "port-forward svc/alray-serve 8000:8000" in text
        assert "port-forward svc/alray-serve" in text


def test_register_job_runs_the_shipped_script():
    import importlib.util

    r = template(EXAMPLES["minimal"])
    job = r.one("Job")
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["python", "/etc/alray/register.py"]
    env = r.resolve_env(c)
    assert env["ALRAY_URL"] == "http://alray-serve:8000"
    script = CHART / "files" / "register.py"
    assert r.config_map("alray-config")["register.py"].strip() == script.read_text().strip()
    spec = importlib.util.spec_from_file_location("alray_register", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.admin_token("read:r1, label:l1,admin:a1,admin:a2") == "a1"
    assert mod.admin_token("plain-token,read:r") == "plain-token"
    with pytest.raises(SystemExit, match="no admin token"):
        mod.admin_token("read:r,label:l")


def test_extra_env_reaches_every_ray_container():
    r = template(set_values={"alray.extraEnv": [{"name": "ALRAY_PROGRESS", "value": "1"},
                                                {"name": "MALLOC_ARENA_MAX", "value": "2"}]})
    for g in r.groups():
        assert g.env["MALLOC_ARENA_MAX"] == "2", g.name


def test_what_the_cluster_test_needs_from_one_render():
    """The multi-host test (tests/cluster/test_chart_on_cluster.py) renders the minimal
    example against its own S3 and Secret, then starts Ray hosts with each group's flags and
    environment and deploys the Serve config."""
    r = template(EXAMPLES["minimal"], {
        "s3.endpointUrl": "http://10.0.0.2:8333", "alray.serviceRoot": "s3://alray-t/service",
        "alray.dataRoots": ["s3://alray-t/pools/"], "alray.projects": {},
        "secrets.existingSecret": "", "secrets.apiTokens": "admin:a-tok,label:l-tok",
        "secrets.awsAccessKeyId": "k", "secrets.awsSecretAccessKey": "s"})
    assert r.api_tokens() == {"admin": "a-tok", "label": "l-tok"}
    for g in r.groups():
        assert {"AWS_ENDPOINT_URL": "http://10.0.0.2:8333", "AWS_ACCESS_KEY_ID": "k",
                "AWS_SECRET_ACCESS_KEY": "s", "ALRAY_API_TOKENS": "admin:a-tok,label:l-tok",
                "RAY_SERVE_ENABLE_HA_PROXY": "1"}.items() <= g.env.items(), g.name
        assert g.ray_start_args(skip=["dashboard-host"])
    assert r.serve_config["applications"][0]["args"]["service_root"] == "s3://alray-t/service"
    assert r.group("cpu").ray_start_args() == ["--memory=6442450944", "--metrics-export-port=8080",
                                                "--num-cpus=2"]


@examples
def test_network_policy_admits_peers_the_cluster_needs(example):
    """Each rule as (ports, peers): the release's own pods on every port, the API on the
    Serve port, the KubeRay operator on the dashboard (it deploys serveConfigV2 there)."""
    r = template(EXAMPLES[example])
    pol = r.one("NetworkPolicy")
    pods = pol["spec"]["podSelector"]["matchLabels"]
    rules = [({p["port"] for p in rule.get("ports", [])}, rule.get("from"))
             for rule in pol["spec"]["ingress"]]
    own = [peers for ports, peers in rules if not ports]
    assert own and own[0] == [{"podSelector": {"matchLabels": pods}}]
    for g in r.groups():  # every Ray pod is governed (and admitted) by the policy
        assert pods.items() <= g.pod_labels.items(), g.name
    operator = [peers for ports, peers in rules if 8265 in ports and peers and any(
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
        == "kuberay-operator" for p in peers)]
    assert operator, "the KubeRay operator cannot reach the dashboard"
    assert any(8000 in ports for ports, _ in rules)
