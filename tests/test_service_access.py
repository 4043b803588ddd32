"""Who may use the service and with what options (issue 32, findings 8 and 13): the Host allow-list, the Origin check
on `POST /predict`, numeric options checked before anything loads; and what held before (static files stay in
their folder, loopback by default, no CORS headers, safetensors only)."""

import inspect
import pickle
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from mamer.cli.main import build_parser, main
from mamer.workflows.service.access import allowed_hosts
from mamer.workflows.service.app import create_app, serve
from mamer.workflows.service.limits import ServiceLimits
from serving import raw_request, running


@pytest.fixture(scope="module")
def run(train_tiny, tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("access_run"))


@pytest.fixture(scope="module")
def app(run):
    return create_app(run, asr=None, allow_hosts=["emotions.example"], allow_origins=["https://lab.example"])


def status(app, method: str, url: str, **headers: str) -> tuple[int, str]:
    """(status, detail or body) of one request, the Host and Origin as given."""
    with TestClient(app) as client:
        response = client.request(
            method, url, headers=headers, data={"text": "fine"} if method == "POST" else None
        )
    return response.status_code, response.text


# ---------------------------------------------------------------- finding 8: Host and Origin


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000", "192.168.1.5:8000", "EMOTIONS.example"],
)
def test_loopback_names_ip_addresses_and_allowed_hosts_are_answered(app, host):
    assert status(app, "GET", "/health", host=host)[0] == 200
    assert status(app, "POST", "/predict", host=host)[0] == 200


@pytest.mark.parametrize("host", ["rebind.example:8000", "testserver", "localhost.evil.example", "a:b:c"])
def test_other_host_names_are_refused_in_words(app, host):
    """A page whose own name resolves to 127.0.0.1 (DNS rebinding) names its host: refused, whatever it asks.
    Before, the Host was never checked, so such a page passed even the live Origin check."""
    for method, url in (("GET", "/info"), ("POST", "/predict"), ("GET", "/")):
        code, text = status(app, method, url, host=host, origin=f"http://{host}")
        assert code == 403 and "--allow-host" in text and "DNS rebinding" in text, (method, url, text)
    with TestClient(app) as client, pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/live", headers={"host": host}):
            pass
    assert refused.value.code == 1008


def test_predict_takes_the_services_own_page_and_clients_without_origin(app):
    """A page of another site can send a form to 127.0.0.1 (the answer stays unreadable to it, the work is
    done): refused 403 in words. Before, `POST /predict` had no Origin check."""
    assert status(app, "POST", "/predict", host="localhost:8000")[0] == 200  # curl, scripts
    assert status(app, "POST", "/predict", host="localhost:8000", origin="http://localhost:8000")[0] == 200
    assert status(app, "POST", "/predict", host="127.0.0.1", origin="https://lab.example/")[0] == 200
    for origin in ("https://elsewhere.example", "null", "http://localhost:9999"):
        code, text = status(app, "POST", "/predict", host="localhost:8000", origin=origin)
        assert code == 403 and f"the page at {origin} is another site" in text and "--allow-origin" in text
    # reading is not changing: a foreign page's GET is answered, without CORS headers it cannot read it
    assert status(app, "GET", "/info", host="localhost", origin="https://elsewhere.example")[0] == 200


def test_no_cors_headers_are_ever_sent(app):
    with TestClient(app, base_url="http://localhost") as client:
        answers = [
            client.get("/info", headers={"origin": "https://elsewhere.example"}),
            client.options("/predict", headers={"origin": "https://elsewhere.example",
                                                "access-control-request-method": "POST"}),
        ]  # fmt: skip
    for answer in answers:
        assert not [h for h in answer.headers if h.lower().startswith("access-control-")], answer.headers
    assert answers[1].status_code >= 400


def test_serve_answers_to_the_host_it_is_bound_to():
    """`mamer serve --host NAME` lets requests naming NAME in; a wildcard bind adds no name."""
    assert allowed_hosts("emotions.lan", ["proxy.example"]) == ["emotions.lan", "proxy.example"]
    assert allowed_hosts("0.0.0.0") == [] and allowed_hosts("::") == []


# ---------------------------------------------------------------- finding 13: numeric options


BAD_OPTIONS = [
    (["--workers", "0"], "workers=0", "at least 1"),
    (["--live-workers", "0"], "live_workers=0", "at least 1"),
    (["--max-live", "0"], "max_live=0", "at least 1"),
    (["--max-pending", "0"], "max_pending=0", "at least 1"),
    (["--max-seconds", "0"], "max_seconds=0.0", "more than 0"),
    (["--max-upload-mb", "-1"], "max_upload_mb=-1.0", "more than 0"),
    (["--body-timeout", "nan"], "body_timeout=nan", "finite number"),
    (["--live-idle", "0"], "live_idle=0.0", "more than 0"),
    (["--threads", "0"], "threads=0", "at least 1"),
    (["--port", "70000"], "port=70000", "0 to 65535"),
]


@pytest.mark.parametrize(("options", "named", "words"), BAD_OPTIONS)
def test_serve_checks_its_numbers_before_loading_anything(tmp_path, capsys, options, named, words):
    """Each number out of range is named before the model is even looked for (the folder does not exist).
    Before, `--workers 0` started a server whose every upload hung, `--max-live 0` took 8 streams and
    `--max-pending 0` behaved as 64."""
    assert main(["serve", str(tmp_path / "no-such-run"), *options]) == 2
    error = capsys.readouterr().err
    assert named in error and words in error and "mamer serve --" in error, error
    assert "no-such-run" not in error


def test_create_app_checks_the_same_numbers(run):
    for name, value in (("workers", 0), ("max_pending", 0), ("max_live", 0), ("body_timeout", -1.0)):
        with pytest.raises(ValueError, match=f"{name}={value}"):
            create_app(run, asr=None, **{name: value})
    with pytest.raises(ValueError, match="whole number"):
        ServiceLimits(workers=1.5)
    assert ServiceLimits().max_pending == 64 and ServiceLimits().max_live == 8


# ---------------------------------------------------------------- what held, and must keep holding


TRAVERSALS = [
    "/static/../app.py", "/static/..%2fapp.py", "/static/%2e%2e/app.py", "/static/%2e%2e%2fapp.py",
    "/static/..%5capp.py", "/static/..\\app.py", "/static/....//app.py", "/static/%252e%252e/app.py",
    "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/static/../../../../../../etc/passwd",
    "/static/..%00/app.py", "/static/.%2e/app.py", "/static/app.js/../../app.py",
]  # fmt: skip


def test_static_files_never_leave_their_folder(app):
    """14 spellings of a path out of `static/`, sent byte for byte over a socket: none is answered with a file."""
    with running(app) as port:
        for path in TRAVERSALS:
            answer = raw_request(port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1")
            assert answer.startswith(b"HTTP/1.1 404"), (path, answer[:200])
            assert b"create_app" not in answer and b"root:" not in answer, path


def test_serve_listens_on_loopback_by_default():
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"


class Payload:
    """A pickle that would create a file if anything unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_weights_are_read_as_safetensors_only(run, tmp_path):
    """A run folder whose weights file is a pickle is refused, and the pickle never runs."""
    folder = tmp_path / "run"
    shutil.copytree(run, folder)
    marker = tmp_path / "pickle-ran"
    (folder / "model.safetensors").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ValueError, match="model.safetensors"):
        create_app(folder, asr=None)
    assert not marker.exists()
