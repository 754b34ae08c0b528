"""The local model's own speed (SmolLM2-135M via llama.cpp), apart from client overhead."""

from __future__ import annotations

import time

import apex_grpc as mc

from ._common import BENCH_KEY
from ._server import echo_server

PROMPT = "Write a detailed, 200-word description of how a rocket reaches orbit."


def model_tokens_per_second(runs: int, max_new_tokens: int = 256) -> dict[str, float]:
    """Tokens/s of streamed completions from the `local` engine (median of `runs`)."""
    rates, first_token = [], []
    with echo_server(8, 16, engine="local") as target:
        client = mc.ApexClient(api_key=BENCH_KEY, base_url=target, secure=False, timeout=300)
        for _ in range(runs + 1):
            started = time.perf_counter()
            stream = client.chat.completions.create(
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
                sampling_parameters={"max_new_tokens": max_new_tokens, "temperature": 0.7},
                seed=1,
            )
            first = None
            for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter()
            final = stream.get_final_response()
            ended = time.perf_counter()
            tokens = final.usage.completion_tokens
            if first is not None and tokens > 1:
                rates.append((tokens - 1) / (ended - first))
                first_token.append(first - started)
        client.close()
    rates, first_token = rates[1:], first_token[1:]  # the first run warms the model
    return {
        "tokens_per_s": sorted(rates)[len(rates) // 2] if rates else 0.0,
        "first_token_s": sorted(first_token)[len(first_token) // 2] if first_token else 0.0,
        "runs": float(len(rates)),
    }
