"""Grammar-aware mutations of the example specs, and an in-process run of the CLI on each.

Used by tests/test_fuzz.py (a bounded, seeded number of inputs in the fast tier) and by
bench/fuzz.py (ten minutes, with counts, times and memory). A mutation works on the spec's
lines, knowing which are `key: value`, list items or flow collections, so most inputs still
parse and reach validate, plan and render rather than stopping at the first YAML error.
"""

from __future__ import annotations

import contextlib
import gc
import io
import random
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted((ROOT / "specs").glob("*.yaml"))
_ENTRY = re.compile(r"^(?P<indent>\s*(?:- )?)(?P<key>[A-Za-z_][\w.-]*):(?P<gap>\s*)(?P<value>.*)$")

TAGS = ["!!float abc", "!!int abc", "!!bool maybe", "!!timestamp 2020-13-45", "!!binary '@@'", "!!set {a, b}",
        "!!omap [a: 1]", "!!map x", "!!seq x", "!!str 8", "!!null x", "!env HOME", "!!python/object:os.system x",
        "!<tag:yaml.org,2002:int> 0x", "!!merge x", "!!value =", "!!int 0o9", "!!float .nan", "! 12"]
SCALARS = ["0", "-1", "1e400", "0x10", "0o17", ".inf", "-.inf", ".nan", "~", "null", "true", "yes", "''", '""',
           "[]", "{}", "[[]]", "{a: {b: {c: 1}}}", "65536", "9" * 5000, "1" * 4301, "'\\n'", '"demo\\n"',
           '"\\ud800"', '"\\udfff\\ud800"', '"\\x00"', '"\\e[31m"', '"\\u2028"', "'$(reboot)'", "'`id`'",
           "\"a'b\\\"c\"", "'~/x'", "fe80::1%eth0", "'fe80::1%$(x)'", "fd00:0:0::0001", "'::'", "192.0.2.300",
           "hf_" + "a" * 34, "sk-" + "b" * 30, "2020-01-01", "2020-01-01T00:00:00Z", "1:30", "<<", "=", "-", "|"]
CONTROL = [chr(c) for c in (*range(0, 32), 127, 0x85, 0x9B, 0xFEFF, 0xFFFE, 0x2028, 0xD7FF, 0xE000)]
FLAGS = ["--cudagraph-capture-sizes", "--kv-cache-dtype", "--seed", "--max-num-batched-tokens", "-O3", "-tp",
         "--compilation-config", "--compilation-config.mode", "--no-enable-prefix-caching", "--port", "--bogus",
         "--enable-reasoning", "--max-lora-rank", "--disable-log-stats=1", "--swap-space", "-O", "--", "-"]


def _anchors(rng: random.Random) -> str:
    levels = rng.randint(1, 12)
    width = rng.randint(2, 12)
    lines = [f"x-a0: &a0 [{', '.join(['x'] * width)}]"]
    for level in range(1, levels + 1):
        lines.append(f"x-a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n", f"*a{levels}"


def _nest(rng: random.Random, limit: int) -> str:
    depth = rng.choice([2, 10, 63, 64, 65, 100, limit])
    opener, closer = rng.choice([("[", "]"), ("{a: ", "}"), ("[{a: ", "}]")])
    return opener * depth + "x" + closer * rng.choice([0, depth])


@dataclass
class Mutator:
    rng: random.Random
    max_depth: int = 2000  # in-process; deeper inputs run in a subprocess (bench/fuzz.py)

    def mutate(self, text: str) -> str | bytes:
        for _ in range(self.rng.choice([1, 1, 1, 1, 2, 3])):
            text = self.rng.choice(self.OPERATIONS)(self, text)
        if self.rng.random() < 0.03:  # bytes that are not UTF-8
            data = text.encode("utf-8", "surrogatepass")
            at = self.rng.randrange(len(data) + 1)
            return data[:at] + self.rng.choice([b"\xff", b"\xc3", b"\xe9", b"\xed\xa0\x80", b"\x80"]) + data[at:]
        return text

    def _lines(self, text: str) -> tuple[list[str], list[int]]:
        lines = text.split("\n")
        return lines, [i for i, line in enumerate(lines) if _ENTRY.match(line)] or [0]

    def _set(self, text: str, make: Callable[[re.Match], str]) -> str:
        lines, entries = self._lines(text)
        index = self.rng.choice(entries)
        match = _ENTRY.match(lines[index])
        if match:
            lines[index] = make(match)
        return "\n".join(lines)

    def value(self, text: str) -> str:
        new = self.rng.choice(SCALARS)
        return self._set(text, lambda m: f"{m['indent']}{m['key']}: {new}")

    def tag(self, text: str) -> str:
        new = self.rng.choice(TAGS)
        return self._set(text, lambda m: f"{m['indent']}{m['key']}: {new}")

    def alias(self, text: str) -> str:
        anchors, alias = _anchors(self.rng)
        return anchors + self._set(text, lambda m: f"{m['indent']}{m['key']}: {alias}")

    def merge(self, text: str) -> str:
        return "x-m: &m {gpus: 8, nic: eth0, role: worker}\n" + self._set(
            text, lambda m: f"{m['indent']}<<: {self.rng.choice(['*m', '[*m, *m]', '{a: 1}', '5', '*m'])}\n"
            f"{' ' * len(m['indent'])}{m['key']}: {m['value']}"
        )

    def depth(self, text: str) -> str:
        nested = _nest(self.rng, self.max_depth)
        return self._set(text, lambda m: f"{m['indent']}{m['key']}: {nested}")

    def control(self, text: str) -> str:
        at = self.rng.randrange(len(text) + 1)
        return text[:at] + self.rng.choice(CONTROL) + text[at:]

    def huge(self, text: str) -> str:
        size = self.rng.choice([16383, 16384, 16385, 100_000, 1_100_000])
        return self._set(text, lambda m: f"{m['indent']}{m['key']}: {'a' * size}")

    def swap(self, text: str) -> str:
        return self._set(text, lambda m: f"{m['indent']}{m['value'] or 'x'}: {m['key']}")

    def key(self, text: str) -> str:
        new = self.rng.choice(["gpu", "hf_" + "c" * 34, "'1'", "1", "true", "null", "~", "''", "<<", "? a", "[a]",
                               "{a: 1}", "'a\\nb'", "x" * 20000, "nodes", "name"])
        return self._set(text, lambda m: f"{m['indent']}{new}: {m['value']}")

    def indent(self, text: str) -> str:
        lines, entries = self._lines(text)
        index = self.rng.choice(entries)
        lines[index] = " " * self.rng.choice([0, 1, 3, 8]) + lines[index].lstrip()
        return "\n".join(lines)

    def lines(self, text: str) -> str:
        lines, entries = self._lines(text)
        index = self.rng.choice(entries)
        if self.rng.random() < 0.5:
            del lines[index]
        else:
            lines.insert(index, lines[self.rng.choice(entries)])
        return "\n".join(lines)

    def extra_args(self, text: str) -> str:
        words = [self.rng.choice(FLAGS + SCALARS[:20] + ["1", "fp8", "'{\"a\": 1}'", "32k"])
                 for _ in range(self.rng.randint(1, 6))]
        text = re.sub(r"(?m)^\s+extra_args:.*$", "", text)
        if "\nserve:" not in text:
            return text + f"\nserve:\n  extra_args: [{', '.join(words)}]\n"
        return text.replace("\nserve:", f"\nserve:\n  extra_args: [{', '.join(words)}]", 1)

    def documents(self, text: str) -> str:
        return self.rng.choice(["%YAML 1.1\n---\n" + text, text + "\n---\nb: 1\n", "", "---\n", "[]", "x", "~",
                                "%YAML 1.3\n---\n" + text, "%YAML\n---\n" + text, "%YAML 1.1\n---\n%YAML 1.3\n---\n" + text, "%TAG ! tag:x,2000:\n---\n" + text, text + "\n...\n"])

    def text(self, text: str) -> str:
        """Valid-looking free text where the spec allows it, so the input reaches render."""
        weird = self.rng.choice(["'a b'", "'$(id)'", "'`id`'", "\"it's\"", "'a\\b'", "'~/x'", "'x;y|z&'", "'é中文🙂'",
                                 "'--flag'", "'-'", "'%s'", "'{{ x }}'", "'${HOME}'", "'a:b'", "'#x'", "\"'\"", "'\\u0000'"])
        field = self.rng.choice(["served_name", "revision", "quantization", "reasoning_parser", "tool_call_parser",
                                 "source", "host"])
        if f" {field}:" in text:
            return re.sub(rf"(?m)^(\s+{field}:).*$", lambda m: f"{m[1]} {weird}", text, count=1)
        return text.replace("\nmodel:\n", f"\nmodel:\n  {field}: {weird}\n", 1) if field != "host" else text

    def env(self, text: str) -> str:
        name = self.rng.choice(["A", "_X", "PATH", "LD_PRELOAD", "A1", "VLLM_HOST_IP", "a-b", "1A", "A B"])
        value = self.rng.choice(["'$(id)'", "'a b'", "\"q'\"", "'~/x'", "''", "1", "true", "'%'", "'\\'"])
        return text.replace("\nruntime:\n", "\nruntime:\n", 1) + f"\nruntime:\n  env: {{{name}: {value}}}\n" \
            if "\nruntime:" not in text else text.replace("\nruntime:\n", f"\nruntime:\n  env: {{{name}: {value}}}\n", 1)

    def bulk(self, text: str) -> str:
        """Many values: a long list or mapping in place of one value (the loader caps the count)."""
        count = self.rng.choice([100, 1000, 5000, 19_000, 25_000])
        item = self.rng.choice(["1", "x", "--port", "{name: n, address: 10.0.0.1, gpus: 1}", "[a]"])
        many = "[" + ", ".join([item] * count) + "]" if self.rng.random() < 0.7 else \
            "{" + ", ".join(f"k{i}: {item}" for i in range(count)) + "}"
        return self._set(text, lambda m: f"{m['indent']}{m['key']}: {many}")

    OPERATIONS = [bulk, text, text, env, value, value, tag, alias, merge, depth, control, huge, swap, key, indent, lines, extra_args,
                  extra_args, documents]


@dataclass
class Outcome:
    command: str
    code: int
    output: str


def run_cli(args: list[str]) -> Outcome:
    """``vllmgen ARGS`` in this process, as the console script runs it; its exit code and output."""
    from vllmgen.cli.commands import main

    out = io.StringIO()
    old_argv = sys.argv
    sys.argv = ["vllmgen", *args]
    code: int | None = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old_argv
        gc.unfreeze()  # main() freezes the heap for a fast exit; this process goes on
    return Outcome(args[0], code or 0, out.getvalue())


def check(outcome: Outcome) -> str | None:
    """What is wrong with how vllmgen answered, or None."""
    if outcome.code == 123:
        return f"{outcome.command}: exit 123: {outcome.output[-2000:]}"
    if "Traceback" in outcome.output:
        return f"{outcome.command}: a traceback: {outcome.output[-2000:]}"
    if outcome.code not in (0, 3):
        return f"{outcome.command}: exit {outcome.code}: {outcome.output[-2000:]}"
    return None


def write_input(path: Path, data: str | bytes) -> None:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    path.write_bytes(data)
