"""LangChain's ChatOpenAI and OpenAIEmbeddings, unmodified, against the running local stack."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

pytestmark = pytest.mark.integration


class GetWeather(BaseModel):
    """Current weather for a city."""

    city: str = Field(description="The city")


class Person(BaseModel):
    name: str
    age: int


@pytest.fixture
def chat(dev_info):
    from langchain_openai import ChatOpenAI

    def make(model: str = "nova-micro", **kwargs):
        return ChatOpenAI(
            model=model, base_url=dev_info["base_url"], api_key=dev_info["api_key"], max_retries=0, timeout=30, **kwargs
        )

    return make


def test_invoke(chat) -> None:
    reply = chat().invoke("Hello from LangChain")
    assert reply.content == 'You said: "Hello from LangChain"'
    assert reply.usage_metadata["input_tokens"] > 0 and reply.usage_metadata["output_tokens"] > 0
    assert reply.response_metadata["finish_reason"] == "stop"


def test_stream(chat) -> None:
    chunks = list(chat("claude-haiku-4-5", stream_usage=True).stream("Stream through LangChain"))
    assert len(chunks) > 2
    assert "".join(chunk.content for chunk in chunks) == 'You said: "Stream through LangChain"'
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.usage_metadata["total_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_bind_tools_round_trip(chat, stream: bool) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage

    llm = chat("claude-haiku-4-5").bind_tools([GetWeather])
    question = HumanMessage("Use GetWeather: weather in Paris?")
    if stream:
        message = None
        for chunk in llm.stream([question]):
            message = chunk if message is None else message + chunk
    else:
        message = llm.invoke([question])
    [call] = message.tool_calls
    assert call["name"] == "GetWeather" and isinstance(call["args"]["city"], str) and call["id"]
    answer = llm.invoke([question, message, ToolMessage("sunny, 21 C", tool_call_id=call["id"])])
    assert not answer.tool_calls and "sunny, 21 C" in answer.content


def test_structured_output(chat) -> None:
    person = chat().with_structured_output(Person).invoke("Describe someone")
    assert isinstance(person, Person)


def test_embeddings_with_langchains_default_token_arrays(dev_info) -> None:
    # LangChain tokenises with tiktoken (cl100k_base) and sends token ids; the gateway decodes them.
    # LiteLLM's import points tiktoken at its bundled encodings, so no download is needed here.
    import litellm.litellm_core_utils.default_encoding  # noqa: F401
    from langchain_openai import OpenAIEmbeddings

    common = {"model": "titan-embed-text-v2", "base_url": dev_info["base_url"], "api_key": dev_info["api_key"]}
    as_tokens = OpenAIEmbeddings(**common, max_retries=0)
    as_text = OpenAIEmbeddings(**common, max_retries=0, check_embedding_ctx_length=False)
    texts = ["LangChain embeds this.", "And this."]
    vectors = as_tokens.embed_documents(texts)
    assert len(vectors) == 2 and len(vectors[0]) == 1024
    for got, expected in zip(vectors, as_text.embed_documents(texts), strict=True):
        assert got == pytest.approx(expected, abs=1e-6)
    assert as_text.embed_query("And this.") == pytest.approx(vectors[1], abs=1e-6)
