"""The official openai SDK against the running local stack, as a user's code would call it."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import openai
import pytest

from tests.openai_schema import assert_valid

pytestmark = pytest.mark.integration


def test_chat_completion(openai_client) -> None:
    completion = openai_client.chat.completions.create(
        model="nova-micro", messages=[{"role": "user", "content": "Hello, pennyworth!"}]
    )
    assert completion.choices[0].message.content == 'You said: "Hello, pennyworth!"'
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens
    assert_valid("CreateChatCompletionResponse", completion.model_dump(mode="json", exclude_unset=True))


def test_streamed_chat_reassembles(openai_client) -> None:
    stream = openai_client.chat.completions.create(
        model="claude-haiku-4-5",
        messages=[{"role": "user", "content": "Stream me a reply"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == 'You said: "Stream me a reply"'
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    for chunk in chunks:
        assert_valid("CreateChatCompletionStreamResponse", chunk.model_dump(mode="json", exclude_unset=True))


def test_model_listing(openai_client) -> None:
    models = {m.id for m in openai_client.models.list()}
    assert {"nova-micro", "claude-haiku-4-5", "titan-embed-text-v2"} <= models
    assert openai_client.models.retrieve("nova-micro").owned_by == "amazon"


@pytest.mark.parametrize(
    ("kwargs", "exception", "status"),
    [
        ({"model": "gpt-4o"}, openai.NotFoundError, 404),
        ({"messages": [{"role": "user", "content": "go #emulator:throttle"}]}, openai.RateLimitError, 429),
        ({"temperature": 1.7}, openai.BadRequestError, 400),
        ({"messages": []}, openai.BadRequestError, 400),
        ({"messages": [{"role": "user", "content": "x #emulator:error"}]}, openai.InternalServerError, 502),
    ],
)
def test_errors_raise_the_matching_sdk_exception(openai_client, kwargs, exception, status) -> None:
    arguments = {"model": "nova-micro", "messages": [{"role": "user", "content": "hi"}], **kwargs}
    with pytest.raises(exception) as caught:
        openai_client.chat.completions.create(**arguments)
    assert caught.value.status_code == status
    body = caught.value.response.json()
    assert_valid("ErrorResponse", body)
    assert caught.value.type == body["error"]["type"]


def test_wrong_key_raises_authentication_error(dev_info) -> None:
    client = openai.OpenAI(base_url=dev_info["base_url"], api_key="pw-nonexistent000-" + "x" * 40, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="nova-micro", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 401
    assert dev_info["api_key"] not in str(caught.value)


def test_the_readme_curl_example_works(dev_info) -> None:
    result = subprocess.run(
        ["bash", "-c", dev_info["examples"]["curl"]], capture_output=True, text=True, timeout=60, check=True
    )
    body = json.loads(result.stdout)
    assert body["object"] == "chat.completion"
    assert "Hello, pennyworth!" in body["choices"][0]["message"]["content"]


def test_health_is_public(dev_info) -> None:
    base = dev_info["base_url"].removesuffix("/v1")
    with urllib.request.urlopen(f"{base}/health", timeout=10) as response:
        assert json.load(response) == {"status": "ok"}


def test_the_readme_openai_example_works(dev_info) -> None:
    import shlex
    import sys

    command = shlex.split(dev_info["examples"]["openai"])
    assert command[0] == "python"
    result = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == 'You said: "Hello, pennyworth!"'


def test_no_plaintext_key_in_the_servers_logs(stack, dev_info, openai_client) -> None:
    # GIVEN traffic with the good key and a wrong one
    openai_client.chat.completions.create(model="nova-micro", messages=[{"role": "user", "content": "log me"}])
    bad = openai.OpenAI(base_url=dev_info["base_url"], api_key=dev_info["api_key"][:-2] + "zz", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    # THEN neither key's secret appears in anything the servers logged
    logs = "".join(path.read_text(errors="replace") for path in stack.log_dir.glob("*.log"))
    assert "chat completion" in logs  # the request log line is there...
    secret = dev_info["api_key"].rsplit("-", 1)[1]
    assert secret not in logs and secret[:-2] not in logs  # ...but no key
