"""The shipped vLLM flag catalogs and their lookup rules (no vLLM needed)."""

import json
from importlib import resources

import pytest

from vllmgen.spec.catalog import (
    Catalog,
    available_versions,
    load_catalog,
    normalise_flag,
    parse_version,
    split_flag,
    versions_with,
)


@pytest.fixture(scope="module")
def cat() -> Catalog:
    catalog, warning = load_catalog("0.32.0")
    assert warning is None
    return catalog


def test_shipped_versions():
    assert available_versions() == ["0.17.1", "0.32.0", "0.33.0"]


def test_catalog_files_are_canonical_json():
    # make_catalog.py writes sorted keys and a trailing newline; hand edits show up here
    for entry in (resources.files("vllmgen.spec") / "catalogs").iterdir():
        text = entry.read_text("utf-8")
        data = json.loads(text)
        assert text == json.dumps(data, indent=1, sort_keys=True) + "\n", entry.name
        assert entry.name == f"vllm-{data['vllm_version']}.json"
        assert all(name.startswith("--") and "_" not in name for name in data["flags"])


def test_value_flag(cat):
    info = cat.lookup("--tensor-parallel-size")
    assert info.name == "--tensor-parallel-size"
    assert info.takes_value and info.type == "int" and info.default == 1
    assert cat.lookup("-tp") is info
    assert cat.lookup("--tensor-parallel-size=4") is info


def test_removed_flag_is_absent(cat):
    assert cat.lookup("--enable-reasoning") is None
    old, _ = load_catalog("0.17.1")
    assert old.lookup("--enable-reasoning") is None  # gone since v0.10
    assert old.lookup("--swap-space") is not None and cat.lookup("--swap-space") is None
    assert versions_with("--swap_space") == ["0.17.1"]
    assert versions_with("--enable-reasoning") == []
    assert versions_with("-tp") == ["0.17.1", "0.32.0", "0.33.0"]


def test_underscores_normalise(cat):
    info = cat.lookup("--trust_remote_code")
    assert info.name == "--trust-remote-code" and not info.takes_value
    assert cat.lookup("--max_model_len=32k").name == "--max-model-len"
    assert normalise_flag("--compilation_config.cudagraph_capture_sizes") == (
        "--compilation-config.cudagraph_capture_sizes"
    )
    assert normalise_flag("-tp") == "-tp"


def test_boolean_pair(cat):
    pos = cat.lookup("--enable-prefix-caching")
    assert pos.boolean_pair == "--no-enable-prefix-caching" and not pos.negated
    neg = cat.lookup("--no-enable-prefix-caching")
    assert neg.negated and not neg.takes_value and neg.type == "bool"
    assert neg.boolean_pair == "--enable-prefix-caching"
    assert cat.lookup("--no_enable_prefix_caching") == neg
    # a plain store_true flag has no --no- form
    assert cat.lookup("--headless").boolean_pair is None
    assert cat.lookup("--no-headless") is None


def test_json_flag_dotted_keys(cat):
    assert cat.lookup("--compilation-config.mode").name == "--compilation-config"
    assert cat.lookup("-cc").name == "--compilation-config"
    assert cat.lookup("-cc.mode").name == "--compilation-config"
    assert cat.lookup("--port.x") is None  # dots only reach into JSON options


def test_split_flag():
    assert split_flag("--port=8000") == ("--port", "8000")
    assert split_flag("--served_model_name") == ("--served-model-name", None)
    assert split_flag("-O3") == ("--optimization-level", "3")
    assert split_flag("-O=2") == ("--optimization-level", "2")
    assert split_flag("-O") == ("--optimization-level", None)


def test_choices_and_types(cat):
    assert "bfloat16" in cat.lookup("--dtype").choices
    assert cat.lookup("--max-model-len").type == "human_int_or_auto"
    assert cat.lookup("--served-model-name").nargs == "+"
    assert cat.lookup("--port").choices is None


def test_registries(cat):
    assert "deepseek_r1" in cat.reasoning_parsers and "qwen3" in cat.reasoning_parsers
    assert "hermes" in cat.tool_call_parsers
    assert {"ngram", "eagle3", "mtp"} <= set(cat.speculative_methods)
    old, _ = load_catalog("0.17.1")
    assert "minimax" in old.tool_call_parsers and "minimax" not in cat.tool_call_parsers


def test_did_you_mean(cat):
    assert cat.suggest("--tensor-paralel-size") == "--tensor-parallel-size"
    assert cat.suggest("--tensor_paralel_size") == "--tensor-parallel-size"
    assert cat.suggest("--zzzz") is None
    assert (
        cat.suggest("--enable-reasoning") is None
    )  # nothing close: removed, not misspelt
    assert cat.suggest("deepseek-r1", cat.reasoning_parsers) == "deepseek_r1"


@pytest.mark.parametrize(
    "text", ["0.32.0", "v0.32.0", "0.32", "0.32.0+cpu", " v0.32.0 "]
)
def test_exact_version_spellings(text):
    catalog, warning = load_catalog(text)
    assert catalog.version == "0.32.0" and warning is None


def test_nearest_older_fallback():
    catalog, warning = load_catalog("0.19.0")
    assert catalog.version == "0.17.1"
    assert warning == (
        "no flag catalog for vLLM 0.19.0; checking serve options against "
        "the nearest older one, 0.17.1"
    )
    assert load_catalog("v0.40.2")[0].version == "0.33.0"


def test_nearest_newer_when_nothing_older():
    catalog, warning = load_catalog("0.9.2")
    assert catalog.version == "0.17.1"
    assert "0.9.2" in warning and "nearest newer one, 0.17.1" in warning


def test_latest():
    catalog, warning = load_catalog("latest")
    assert catalog.version == "0.33.0"
    assert "latest" in warning and "0.33.0" in warning


def test_bad_version():
    with pytest.raises(ValueError, match="not a vLLM version"):
        load_catalog("nightly")
    assert parse_version("0.11.0.post2") == (0, 11, 0)
    assert parse_version("0.10.1.1") == (0, 10, 1, 1)
    assert parse_version("0.32.0.0") == parse_version("0.32") == (0, 32, 0)


def test_cached(cat):
    assert load_catalog("v0.32.0")[0] is cat
