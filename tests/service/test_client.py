"""The Python client and the CLI verbs on top of it, against the running service."""

from __future__ import annotations

import json

import pytest

from alray.cli import main
from alray.client import AlrayError, Client
from tests.service.conftest import TOKEN, Served


@pytest.fixture()
def remote(served: Served) -> list[str]:
    return ["--url", served.url, "--token", TOKEN]


def test_client_reads_and_pages(served: Served, seeded):
    with Client(served.url, TOKEN) as c:
        assert c.project("api")["name"] == "api"
        assert c.round("api", 0)["selected"] == 20
        jsonl = [x["frame_id"] for x in c.selection("api", 0, limit=7)]
        assert jsonl == sorted(seeded["ids"])  # three pages, in frame order, none twice
        coco = c.export_coco("api", 0)
        assert [im["id"] for im in coco["images"]] == list(range(1, 21))
        with pytest.raises(AlrayError) as err:
            c.round("api", 99)
        assert err.value.status == 404 and err.value.body["error"] == "not_found"
    with Client(served.url, "wrong") as c, pytest.raises(AlrayError) as err:
        c.project("api")
    assert err.value.status == 403


def test_cli_verbs(served: Served, seeded, remote, tmp_path, capsys):
    assert main(["rounds", "show", "api", *remote]) == 0
    assert "AWAITING_LABELS" in capsys.readouterr().out
    assert main(["rounds", "show", "api", "0", *remote]) == 0
    assert json.loads(capsys.readouterr().out)["round"] == 0

    out = tmp_path / "tasks.json"
    assert main(["selection", "export", "api", "0", "--format", "label-studio",
                 "--out", str(out), *remote]) == 0
    tasks = json.loads(out.read_text())
    assert len(tasks) == 20 and tasks[0]["data"]["image"].startswith(served.url + "/media/")

    ids = seeded["ids"][10:14]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"frame_id": f, "label": 2, "idempotency_key": f})
                              + "\n" for f in [*ids, "no-such-frame:9"]))
    capsys.readouterr()
    assert main(["labels", "push", "api", str(labels), *remote]) == 1  # one item rejected
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"accepted": 4, "duplicate": 0, "conflict": 0,
                                        "rejected": 1}
    assert "no-such-frame:9: unknown frame_id" in captured.err
    assert main(["labels", "push", "api", str(labels), *remote]) == 1
    assert json.loads(capsys.readouterr().out)["duplicate"] == 4

    # The service's refusal is one line and exit status 2, not a traceback.
    assert main(["rounds", "start", "api", *remote]) == 2
    assert "awaits" in capsys.readouterr().err
