"""Secrets reach the pods only through a Secret: never a ConfigMap, the RayService or args."""

from __future__ import annotations

import base64
import re

import pytest

from tests.helm.chart import EXAMPLES, HelmError, template

SENTINELS = {
    "secrets.apiTokens": "admin:adm-SENTINEL-1,label:lab-SENTINEL-2,read:rd-SENTINEL-3",
    "secrets.metricsToken": "met-SENTINEL-4",
    "secrets.signingKey": "sig-SENTINEL-5",
    "secrets.awsAccessKeyId": "akid-SENTINEL-6",
    "secrets.awsSecretAccessKey": "sak-SENTINEL-7",
}
_SECRETISH = re.compile(r"TOKEN|SECRET|PASSWORD|SIGNING_KEY|ACCESS_KEY", re.I)


def _chart_made_secret(**extra):
    return template(set_values={"secrets.existingSecret": "", **SENTINELS, **extra})


def _secret_values() -> list[str]:
    out = []
    for v in SENTINELS.values():
        out += [v, *(part.split(":", 1)[-1] for part in v.split(","))]
    return out


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_default_and_examples_render_no_secret_value(example):
    r = template(EXAMPLES[example])
    assert not r.all("Secret"), "the examples use an existing Secret"
    for _, c in r.containers():
        for e in c.get("env", []):
            if _SECRETISH.search(e["name"]):
                assert "value" not in e, f"{e['name']} has a literal value"
                assert "secretKeyRef" in e["valueFrom"], e["name"]
    for cm in r.all("ConfigMap"):
        for key in cm["data"]:
            assert not _SECRETISH.search(key), f"ConfigMap {cm['metadata']['name']}: {key}"


def test_secret_values_appear_only_in_the_secret():
    r = _chart_made_secret()
    secret = r.one("Secret")
    assert secret["metadata"]["name"] == "alray-secrets"
    rest = "\n".join(chunk for chunk in r.text.split("\n---") if "kind: Secret\n" not in chunk)
    for value in _secret_values():
        assert value not in rest, f"{value} leaks outside the Secret"
        assert base64.b64encode(value.encode()).decode() not in rest
    for cm in r.all("ConfigMap"):
        for text in cm["data"].values():
            assert "SENTINEL" not in text
    assert "SENTINEL" not in r.ray_service["spec"]["serveConfigV2"]


def test_pods_read_tokens_with_scopes_from_the_secret():
    r = _chart_made_secret()
    assert r.api_tokens() == {"admin": "adm-SENTINEL-1", "label": "lab-SENTINEL-2",
                              "read": "rd-SENTINEL-3"}
    for g in r.groups():
        assert g.env["ALRAY_API_TOKENS"] == SENTINELS["secrets.apiTokens"], g.name
        assert g.env["ALRAY_SIGNING_KEY"] == "sig-SENTINEL-5"
        assert g.env["AWS_SECRET_ACCESS_KEY"] == "sak-SENTINEL-7"
    # the scopes parse the way the service parses them
    from alray.service.settings import hash_token, parse_tokens

    scopes = parse_tokens(r.group("head").env["ALRAY_API_TOKENS"])
    assert scopes[hash_token("lab-SENTINEL-2")] == "label"


def test_optional_secret_keys_are_left_out_when_empty():
    r = template(set_values={"secrets.existingSecret": "", "secrets.apiTokens": "only-admin"})
    data = r.secret_data("alray-secrets")
    assert data == {"ALRAY_API_TOKENS": "only-admin"}
    assert r.api_tokens() == {"admin": "only-admin"}
    assert "AWS_ACCESS_KEY_ID" not in r.group("cpu").env  # workload identity instead


def test_existing_secret_is_referenced_not_rendered():
    r = template(set_values={"secrets.existingSecret": "team-alray"})
    assert not r.all("Secret")
    ref = r.group("head").container["env"][0]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "team-alray", "key": "ALRAY_API_TOKENS"}
    with pytest.raises(LookupError, match="team-alray is not rendered"):
        r.api_tokens()


def test_secret_values_with_an_existing_secret_are_refused():
    with pytest.raises(HelmError, match="secrets.existingSecret=\"alray-secrets\" is set"):
        template(set_values={"secrets.apiTokens": "admin:x"})


def test_notes_show_no_secret_value():
    from tests.helm.chart import notes

    text = notes(set_values={"secrets.existingSecret": "", **SENTINELS})
    assert "SENTINEL" not in text
    assert "get secret alray-secrets" in text  # how to read the token, not the token
