"""The demo under abuse: a request body over the limit is refused at the HTTP layer before it is read (413), a
request that runs past its time budget is stopped with a clear message, unscored text is shown, and the server
keeps answering."""

import http.client
import json
import time
from urllib.parse import urlparse

import pytest
import torch
from conftest import make_tiny_backbone
from test_demo import QUESTION, SOLUTION, served

from modeling_sprm import SPRMForStepScoring
from modeling_sprm.apps.demo import DemoLimits, DemoScorer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny(smollm2_tokenizer):
    backbone = make_tiny_backbone(len(smollm2_tokenizer), smollm2_tokenizer.pad_token_id)
    torch.manual_seed(1)
    return SPRMForStepScoring.from_backbone(backbone, backbone_name_or_path="tiny"), smollm2_tokenizer


@pytest.fixture(scope="module")
def app(tiny):
    with served(*tiny, "tiny", DemoLimits(max_request_bytes=100_000)) as (demo, url):
        yield url


def post(url: str, headers: dict, chunks: list[bytes]) -> tuple[int, bytes, float]:
    """POST to the score endpoint with these headers and body chunks (sent one by one); ``(status, body, s)``."""
    parsed = urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    start = time.monotonic()
    connection.putrequest("POST", "/gradio_api/call/score")
    for key, value in {"Content-Type": "application/json", **headers}.items():
        connection.putheader(key, value)
    connection.endheaders()
    try:
        for chunk in chunks:
            connection.send(chunk)
    except (BrokenPipeError, ConnectionResetError):  # the server answered and closed: that is the point
        pass
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, body, time.monotonic() - start


def test_a_50_mb_body_is_refused_before_it_is_read(app):
    # The headers announce 50 MB; only 1 kB is sent. An answer before the rest arrives shows nothing waited for it.
    status, body, seconds = post(app, {"Content-Length": str(50_000_000)}, [b"{" + b" " * 1000])
    assert status == 413 and b"at most 100,000 bytes" in body and seconds < 20


def test_a_chunked_body_over_the_limit_is_refused(app):
    chunk = b" " * 50_000
    frames = [b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(4)] + [b"0\r\n\r\n"]
    status, body, _ = post(app, {"Transfer-Encoding": "chunked"}, frames)
    assert status == 413 and b"too large" in body


def test_normal_requests_still_answer(app):
    data = json.dumps({"data": [QUESTION, SOLUTION]}).encode()
    status, body, _ = post(app, {"Content-Length": str(len(data))}, [data])
    assert status == 200 and "event_id" in json.loads(body)


def test_a_request_past_its_time_budget_is_stopped_with_a_message(tiny):
    model, tokenizer = tiny
    slow = DemoScorer(model, tokenizer, "tiny", DemoLimits(time_budget_s=1e-9, generate_time_budget_s=1e-9))
    with pytest.raises(TimeoutError, match="time budget of 1e-09 s"):
        slow.score_api(QUESTION, SOLUTION)
    with pytest.raises(TimeoutError, match="time budget"):
        slow.generate(QUESTION, "low")
    # The budget belongs to the request: another scorer of the same model, and the next request, run normally.
    assert len(DemoScorer(model, tokenizer, "tiny").score_api(QUESTION, SOLUTION)["steps"]) == 3


def test_the_api_reports_the_time_budget(tiny):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    with served(*tiny, "tiny", DemoLimits(time_budget_s=1e-9)) as (_, url):
        client = Client(url, verbose=False)
        with pytest.raises(AppError, match="time budget"):
            client.predict(QUESTION, SOLUTION, api_name="/score")
