"""A LangChain chain and a tool call through a gateway, with what the gateway said.

Runs against an embedded MockGateway; point GATEWAY_URL / GATEWAY_KEY / GATEWAY_MODEL at a real
LiteLLM proxy to use it there.
"""

from __future__ import annotations

import os

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool

from gatewaykit import GatewayChatModel
from gatewaykit.testing import MockGateway


@tool
def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


def main(base_url: str, api_key: str, model: str) -> None:
    llm = GatewayChatModel(
        base_url=base_url,
        api_key=api_key,
        model=model,
        gateway_tags=["examples"],
        map_run_tags=True,
    )
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer briefly."), ("human", "{question}")]
    )
    answer = (prompt | llm).invoke(
        {"question": "Why route LLM calls through a gateway?"}, config={"tags": ["faq"]}
    )
    info = answer.response_metadata["gateway"]
    print("answer:", answer.content)
    print("served by:", info.get("deployment_id"), "cost $", info.get("response_cost"))

    text_only = (prompt | llm | StrOutputParser()).invoke({"question": "And in one word?"})
    print("as text:", text_only)

    call = llm.bind_tools([word_count]).invoke("How many words in 'the quick brown fox'?")
    print("tool calls:", call.tool_calls)


if __name__ == "__main__":
    if os.environ.get("GATEWAY_URL"):
        main(
            os.environ["GATEWAY_URL"],
            os.environ.get("GATEWAY_KEY", ""),
            os.environ.get("GATEWAY_MODEL", "gpt-4o"),
        )
    else:
        with MockGateway() as gw:
            main(gw.base_url, "sk-example", "smart")
