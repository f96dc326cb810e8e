"""What a whole (non-streamed) answer costs when the gateway reads it from ConverseStream instead of Converse.

The gateway calls Bedrock with ConverseStream even when the client asked for one JSON answer, so
that giving up at a deadline closes the stream and bills what was generated (issue 20). This
measures what that costs, both paths in the same run, alternating, against the same Bedrock
emulator (a separate process, so its CPU is not ours):

* **converse**  – ``litellm.completion(stream=False)`` and the whole answer's text and usage (the old path);
* **stream**    – ``Gateway.chat`` (ConverseStream, read on the deadline guard's worker thread),
  accumulated into the same ``Completion``: what every chat call now does.

Per answer size: wall time and this process's CPU time per answer (median), and their difference.

Usage: ``python bench/whole_answers.py [--rounds N] [--sizes 30,300,3000]``; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# The emulator takes any credentials; LiteLLM signs with whatever it finds.
for _name, _value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"), ("AWS_REGION", "us-east-1")):
    os.environ.setdefault(_name, _value)

MODEL = "nova-micro"


def start_emulator() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "local.bedrock_emulator", "--port", str(port)],
        cwd=Path(__file__).resolve().parent.parent,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(f"{url}/ping", timeout=1).close()
            return process, url
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the Bedrock emulator did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="measured answers per path and size")
    parser.add_argument("--sizes", default="30,300,3000", help="answer sizes in tokens, comma-separated")
    args = parser.parse_args(argv)

    from chalicelib.catalog.catalog import load_catalog
    from chalicelib.conversation import deadline
    from chalicelib.conversation.events import Completion, Finished, TextDelta
    from chalicelib.conversation.request import Conversation
    from chalicelib.gateway import CallPolicy, Gateway, Target, UpstreamConfig, bedrock_prompt, load_litellm
    from chalicelib.gateway.events import usage_report
    from chalicelib.settings import DEFAULT_CATALOG

    litellm = load_litellm()
    model = load_catalog(DEFAULT_CATALOG, region="us-east-1").resolve(MODEL)
    process, url = start_emulator()
    gateway = Gateway(UpstreamConfig(region="us-east-1", endpoint_url=url, timeout_seconds=60))

    def converse(conversation: Conversation) -> Completion:
        messages, options = bedrock_prompt(conversation)
        response = litellm.completion(
            model=model.litellm_model,
            messages=messages,
            stream=False,
            timeout=60,
            num_retries=0,
            aws_region_name="us-east-1",
            aws_bedrock_runtime_endpoint=url,
            **options,
        )
        # What the gateway made of a whole Converse answer before it always streamed: its text and usage.
        message = response.choices[0].message
        return Completion.of([TextDelta(message.content or ""), Finished("stop"), usage_report(response.usage)])

    def stream(conversation: Conversation) -> Completion:
        conversation = conversation.but(stream=True)  # a no-op once the gateway always streams
        policy = CallPolicy((Target(model, "us-east-1"),))
        events = gateway.chat(conversation, policy, bedrock_prompt(conversation), stop_at=time.time() + 60).events
        return Completion.of(deadline.until(events, time.time() + 60))

    paths = {"converse": converse, "stream": stream}
    report: dict[str, object] = {"benchmark": "whole_answers", "rounds": args.rounds, "sizes": {}}
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            text = f"Answer at length #emulator:tokens={size}"
            conversation = Conversation(model=MODEL, messages=[{"role": "user", "content": text}], max_tokens=size)
            samples: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in paths}
            for n in range(args.rounds + 2):  # two warm-up rounds
                for name in paths if n % 2 == 0 else reversed(list(paths)):
                    wall, cpu = time.perf_counter(), time.process_time()
                    completion = paths[name](conversation)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    assert completion.usage.output_tokens == size, (name, completion.usage)
                    if n >= 2:
                        samples[name]["wall"].append(wall)
                        samples[name]["cpu"].append(cpu)
            row = {
                name: {f"{k}_ms": round(statistics.median(v) * 1000, 2) for k, v in measured.items()}
                for name, measured in samples.items()
            }
            row["stream_minus_converse_ms"] = {
                k: round(
                    (statistics.median(samples["stream"][k]) - statistics.median(samples["converse"][k])) * 1000, 2
                )
                for k in ("wall", "cpu")
            }
            report["sizes"][str(size)] = row  # type: ignore[index]
    finally:
        process.terminate()
        process.wait(timeout=10)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
