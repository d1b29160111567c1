"""Bad values and a misspelled RayService field fail with a message that names the field."""

from __future__ import annotations

import copy
import shutil

import pytest

from tests.helm.chart import CHART, EXAMPLES, HelmError, lint, template
from tests.helm.crd import CrdError, validate_custom_resource

BROKEN_VALUES = """\
alray:
  serviceRoot: /data/alray        # a local path: pods share nothing but S3
cpuWorkers:
  minReplicas: -1
  maxReplicas: 4
gpuWorkers:
  gpus: 0
serve:
  replicaCpu: 0.5                 # misspelled key
"""


def test_a_broken_values_file_fails_naming_each_field(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text(BROKEN_VALUES)
    for run in (lambda: template([str(bad)]), lambda: lint([str(bad)])):
        with pytest.raises(HelmError) as err:
            run()
        msg = str(err.value)
        assert "values don't meet the specifications of the schema" in msg
        for field in ("alray.serviceRoot", "cpuWorkers.minReplicas", "gpuWorkers.gpus",
                      "replicaCpu"):
            assert field in msg, f"{field} not named in:\n{msg}"


@pytest.mark.parametrize(("values", "message"), [
    ({"secrets.existingSecret": ""},
     "secrets: set secrets.existingSecret to a Secret holding ALRAY_API_TOKENS"),
    ({"secrets.existingSecret": "", "secrets.apiTokens": "label:"},
     'secrets.apiTokens: "label:" has a scope but no token'),
    ({"secrets.existingSecret": "", "secrets.apiTokens": "a", "secrets.awsAccessKeyId": "k"},
     "set both secrets.awsAccessKeyId and secrets.awsSecretAccessKey"),
    ({"cpuWorkers.minReplicas": 3, "cpuWorkers.replicas": 3, "cpuWorkers.maxReplicas": 2},
     "cpuWorkers.minReplicas=3 is greater than cpuWorkers.maxReplicas=2"),
    ({"gpuWorkers.replicas": 9}, "gpuWorkers.replicas=9 must lie between"),
    ({"cpuWorkers.enabled": False, "gpuWorkers.enabled": False},
     "cpuWorkers.enabled and gpuWorkers.enabled are both false"),
    ({"gpuWorkers.groupName": "cpu"}, 'worker groups need distinct names'),
    ({"serve.minReplicas": 5}, "serve.minReplicas=5 is greater than serve.maxReplicas=4"),
    ({"gcsFaultTolerance.enabled": True}, "gcsFaultTolerance.redisAddress is empty"),
    ({"alray.projects": {"p": {"pool": {"uri": "s3://other-bucket/x/"}}}},
     'alray.projects.p.pool.uri="s3://other-bucket/x/" is not under any of alray.dataRoots'),
    ({"alray.projects": {"p": {"pool": {"uri": "s3://alray-data/pools/a/"},
                               "storage": {"uri": "s3://alray-data/s"}}}},
     "alray.projects.p.storage.uri: leave it out"),
    ({"gpuWorkers.enabled": False,
      "alray.projects": {"p": {"pool": {"uri": "s3://alray-data/pools/a/"},
                               "acquisition": {"actor_gpus": 1}}}},
     "alray.projects.p asks for GPUs"),
])
def test_render_time_checks_name_the_value(values, message):
    with pytest.raises(HelmError) as err:
        template(set_values=values)
    assert message in str(err.value)


@pytest.mark.parametrize(("values", "field"), [
    ({"alray.serviceRoot": "gs://bucket/x"}, "alray.serviceRoot"),
    ({"alray.dataRoots": []}, "alray.dataRoots"),
    ({"alray.ingress": "nginx"}, "alray.ingress"),
    ({"securityContext.runAsNonRoot": False}, "securityContext.runAsNonRoot"),
    ({"head.resources.limits": None}, "head.resources"),  # null deletes the key
    ({"cpuWorkers.resources.limits.memory": "lots"}, "cpuWorkers.resources.limits.memory"),
    ({"alray.projects": {"bad name": {"pool": {"uri": "s3://alray-data/pools/"}}}},
     "alray.projects"),
])
def test_schema_rejects_bad_values(values, field):
    with pytest.raises(HelmError) as err:
        template(set_values=values)
    assert field in str(err.value)


def test_a_misspelled_rayservice_field_in_the_chart_fails(tmp_path):
    """A template edit that misspells a RayService field renders fine (helm does not know
    the CRD, and an API server would drop the field silently); the CRD check catches it."""
    chart = tmp_path / "alray"
    shutil.copytree(CHART, chart)
    tpl = chart / "templates" / "rayservice.yaml"
    tpl.write_text(tpl.read_text().replace("        maxReplicas: {{ $w.maxReplicas | int }}",
                                           "        maxReplica: {{ $w.maxReplicas | int }}"))
    rendered = template(chart=chart)
    with pytest.raises(CrdError) as err:
        validate_custom_resource(rendered.ray_service)
    msg = str(err.value)
    assert "RayService alray does not match the KubeRay CRD" in msg
    assert ("spec.rayClusterConfig.workerGroupSpecs.0.maxReplica: unknown field "
            "(did you mean 'maxReplicas'?)") in msg


def test_crd_check_reports_wrong_types_and_missing_required_fields():
    rs = copy.deepcopy(template(EXAMPLES["default"]).ray_service)
    rc = rs["spec"]["rayClusterConfig"]
    rc["workerGroupSpecs"][0]["replicas"] = "two"
    del rc["workerGroupSpecs"][0]["groupName"]
    with pytest.raises(CrdError) as err:
        validate_custom_resource(rs)
    msg = str(err.value)
    assert "spec.rayClusterConfig.workerGroupSpecs.0.replicas: 'two' is not of type 'integer'" in msg
    assert "'groupName' is a required property" in msg


def test_crd_check_fills_defaults_and_takes_int_or_string():
    from tests.helm.crd import crd_schema, fill_defaults

    rs = copy.deepcopy(template(EXAMPLES["default"]).ray_service)
    ports = rs["spec"]["serveService"]["spec"]["ports"]
    del ports[0]["protocol"]
    ports[0]["targetPort"] = "serve"  # int-or-string
    full = validate_custom_resource(rs)
    assert full["spec"]["serveService"]["spec"]["ports"][0]["protocol"] == "TCP"
    assert fill_defaults({}, crd_schema("RayService", "v1")) == {}
    with pytest.raises(CrdError, match="is not served|not in the CRD"):
        validate_custom_resource({**rs, "apiVersion": "ray.io/v9"})
