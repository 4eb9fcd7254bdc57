"""``vllmgen bench``: vLLM's own ``vllm bench serve`` against a deployed endpoint, kept and compared.

The benchmark runs inside the serving container (its image has vLLM and the model's tokenizer),
against the server's own address; the API key reaches it as ``OPENAI_API_KEY`` in the exec's
environment, never on a command line. Each run is stored with the spec's hash, so a later run of
the same spec is compared with the last one.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Preset:
    name: str
    input_len: int
    output_len: int
    concurrencies: tuple[int, ...]
    prompts_per_level: int  # at least this many requests at each concurrency, and 4 per concurrent slot

    def prompts(self, concurrency: int) -> int:
        return max(self.prompts_per_level, 4 * concurrency)


PRESETS = {
    "chat": Preset("chat", 1000, 200, (1, 4, 16), 16),  # random 1000 tokens in, 200 out
    "long": Preset("long", 8000, 500, (1, 4), 8),
    "smoke": Preset("smoke", 64, 16, (1, 2), 4),  # seconds on a CPU: proves the path end to end
}


def fitted(preset: Preset, max_model_len: int | None) -> tuple[Preset, str | None]:
    """The preset, shrunk to fit the server's context length (input + output), and why if it was.
    A tenth of the context is left for the chat template's own tokens."""
    room = None if max_model_len is None else int(max_model_len * 0.9)
    if room is None or preset.input_len + preset.output_len <= room:
        return preset, None
    scale = room / (preset.input_len + preset.output_len)
    input_len = max(1, math.floor(preset.input_len * scale))
    output_len = max(1, math.floor(preset.output_len * scale))
    shrunk = Preset(preset.name, input_len, output_len, preset.concurrencies, preset.prompts_per_level)
    return shrunk, (f"{preset.name}: {preset.input_len} in + {preset.output_len} out exceeds max-model-len "
                    f"{max_model_len}; using {input_len} in + {output_len} out")


def argv(preset: Preset, concurrency: int, *, base_url: str, model: str, tokenizer: str, result_dir: str,
         result_file: str, seed: int = 0) -> tuple[str, ...]:
    return (
        "vllm", "bench", "serve",
        "--backend", "openai-chat", "--endpoint", "/v1/chat/completions",
        "--base-url", base_url, "--model", model, "--tokenizer", tokenizer,
        "--dataset-name", "random", "--random-input-len", str(preset.input_len),
        "--random-output-len", str(preset.output_len), "--ignore-eos",
        "--num-prompts", str(preset.prompts(concurrency)), "--max-concurrency", str(concurrency),
        "--percentile-metrics", "ttft,tpot,itl,e2el",
        "--metric-percentiles", ",".join(map(str, PERCENTILES)),
        "--seed", str(seed), "--disable-tqdm",
        "--save-result", "--result-dir", result_dir, "--result-filename", result_file,
    )


@dataclass(frozen=True)
class Row:
    concurrency: int
    completed: int
    failed: int
    requests_per_s: float
    output_tokens_per_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float


def row(result: dict[str, Any]) -> Row:
    def number(key: str) -> float:
        value = result.get(key)
        return float(value) if isinstance(value, (int, float)) else float("nan")

    return Row(
        concurrency=int(result.get("max_concurrency") or 0),
        completed=int(result.get("completed") or 0),
        failed=int(result.get("failed") or 0),
        requests_per_s=number("request_throughput"),
        output_tokens_per_s=number("output_throughput"),
        ttft_p50_ms=number("p50_ttft_ms"),
        ttft_p99_ms=number("p99_ttft_ms"),
        itl_p50_ms=number("p50_itl_ms"),
        itl_p99_ms=number("p99_itl_ms"),
    )


_COLUMNS = (("concurrency", "conc", "{:>4}"), ("completed", "ok", "{:>4}"), ("failed", "fail", "{:>4}"),
            ("requests_per_s", "req/s", "{:>8.2f}"), ("output_tokens_per_s", "out tok/s", "{:>10.1f}"),
            ("ttft_p50_ms", "TTFT p50", "{:>9.1f}"), ("ttft_p99_ms", "TTFT p99", "{:>9.1f}"),
            ("itl_p50_ms", "ITL p50", "{:>8.1f}"), ("itl_p99_ms", "ITL p99", "{:>8.1f}"))
_COMPARED = ("requests_per_s", "output_tokens_per_s", "ttft_p50_ms", "itl_p50_ms")


def table(rows: list[Row], previous: list[Row] | None = None) -> str:
    """Rows as a table (times in ms); with ``previous``, the change of the main figures, in percent."""
    head = " ".join(f"{title:>{len(fmt.format(0))}}" for _, title, fmt in _COLUMNS)
    lines = [head]
    before = {r.concurrency: r for r in previous or []}
    for current in rows:
        line = " ".join(fmt.format(getattr(current, key)) for key, _, fmt in _COLUMNS)
        old = before.get(current.concurrency)
        if old is not None:
            line += "   vs last: " + ", ".join(_delta(key, getattr(old, key), getattr(current, key))
                                               for key in _COMPARED)
        lines.append(line)
    return "\n".join(lines) + "\n"


def _delta(key: str, old: float, new: float) -> str:
    label = dict((k, t) for k, t, _ in _COLUMNS)[key]
    if not old or math.isnan(old) or math.isnan(new):
        return f"{label} n/a"
    return f"{label} {100 * (new - old) / old:+.0f}%"


# --- results kept on the control machine ----------------------------------------------------------


def store(folder: Path, deployment: str, spec_sha256: str, preset: Preset, where: str, stamp: str,
          results: list[dict[str, Any]]) -> Path:
    """Write one run as ``folder/<deployment>/<stamp>-<preset>.json``; returns its path."""
    target = folder / deployment
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{stamp}-{preset.name}.json"
    document = {"deployment": deployment, "spec_sha256": spec_sha256, "preset": asdict(preset), "where": where,
                "stamp": stamp, "rows": [asdict(row(r)) for r in results], "results": results}
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def previous(folder: Path, deployment: str, spec_sha256: str, preset: str, before: str) -> list[Row] | None:
    """The rows of the latest earlier run of this spec (same hash) and preset, if any."""
    candidates = sorted((folder / deployment).glob(f"*-{preset}.json")) if (folder / deployment).is_dir() else []
    for path in reversed(candidates):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if document.get("spec_sha256") == spec_sha256 and document.get("stamp", "") < before:
            return [Row(**r) for r in document.get("rows", [])]
    return None
