"""flatnet._wirejson must agree with the json module on everything the plugin feeds it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flatnet import _wirejson

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text()
documents = st.recursive(
    scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
writable = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(documents, st.sampled_from(["", " ", "\n\t "]))
@settings(max_examples=300)
def test_loads_agrees_with_json(doc: object, ws: str) -> None:
    text = ws + json.dumps(doc, indent=2 if ws else None) + ws
    assert _wirejson.loads(text) == json.loads(text)


@given(writable)
@settings(max_examples=300)
def test_dumps_is_read_back_by_json(value: object) -> None:
    assert json.loads(_wirejson.dumps(value)) == value


@given(st.text(max_size=40))
@settings(max_examples=500)
def test_loads_rejects_exactly_what_json_rejects(text: str) -> None:
    try:
        expected = json.loads(text)
    except (ValueError, RecursionError):
        with pytest.raises((ValueError, RecursionError)):
            _wirejson.loads(text)
    else:
        got = _wirejson.loads(text)
        assert got == expected or (got != got and expected != expected)  # NaN


@pytest.mark.parametrize("text", ["", "   ", "{", '{"a": 1} x', "[1,]", "{'a': 1}", '"\\x"', "01"])
def test_bad_documents_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError):
        _wirejson.loads(text)


def test_dumps_refuses_what_it_cannot_write() -> None:
    with pytest.raises(TypeError):
        _wirejson.dumps({1: "a"})
    with pytest.raises(TypeError):
        _wirejson.dumps({"a": object()})


def test_the_plugin_hot_path_imports_no_json_re_enum_or_typing() -> None:
    """The reason this module exists: start-up of the exec'd plugin (see plugin.py)."""
    code = ("import sys; import flatnet.plugin; "
            "print(sorted(m for m in ('json', 're', 'enum', 'typing', 'socket') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:0] = {sys.path!r}; {code}"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.strip() == "[]"


def test_version_answers_without_importing_json() -> None:
    """VERSION (libcni asks it when validating a network) stays on the light path too."""
    code = ("import sys, flatnet.plugin as p; code, out = p.run({'CNI_COMMAND': 'VERSION'}, "
            "b'{\"cniVersion\": \"0.4.0\"}'); print(code, out.strip()); "
            "print(sorted(m for m in ('json', 're', 'enum', 'typing') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path[:0] = {sys.path!r}; {code}"],
                         capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
    assert out[0].startswith('0 {"cniVersion": "0.4.0", "supportedVersions": [')
    assert out[1] == "[]"
