"""A bounded, seeded fuzz of the CLI (issue 10): mutated example specs through validate and render,
in this process. Never exit 123, never a traceback. bench/fuzz.py runs the same for ten minutes and
measures time and memory per input; the depth cases that would need a subprocess are bounded here."""

import random

import pytest
from fuzzing import SEEDS, Mutator, check, run_cli, write_input

INPUTS = 40  # per seed spec: a few seconds in all


@pytest.mark.parametrize("seed", SEEDS, ids=lambda p: p.stem)
def test_mutated_specs_never_crash(seed, tmp_path):
    rng = random.Random(f"vllmgen-{seed.name}")
    mutator = Mutator(rng, max_depth=3000)
    text = seed.read_text()
    spec, out = tmp_path / "spec.yaml", tmp_path / "out"
    problems = []
    for number in range(INPUTS):
        data = mutator.mutate(text)
        write_input(spec, data)
        outcome = run_cli(["validate", str(spec)])
        if outcome.code == 0:
            outcome = run_cli(["render", str(spec), "-o", str(out)])
        problem = check(outcome)
        if problem:
            problems.append(f"input {number}: {problem}\n--- input ---\n{data[:3000]!r}")
    assert not problems, "\n\n".join(problems[:3])
