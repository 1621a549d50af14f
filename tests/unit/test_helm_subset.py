"""tests/helpers/helm.py against Helm's documented behaviour, one construct at a time.

Each expected string is what ``helm template`` prints for the same input (Go text/template
and Sprig semantics, as documented in the Helm "Chart Template Guide" and the Go
text/template package docs), so the chart rendered here is the chart Helm renders.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.helpers.helm import TemplateError, render

CTX = {
    "Values": {
        "s": "flat",
        "n": 1500,
        "t": True,
        "f": False,
        "zero": 0,
        "empty": "",
        "none": None,
        "list": [],
        "items": ["a"],
        "map": {"b": 2, "a": "x&<y>"},
        "word": "false",
        "nested": {"k": "v"},
    },
    "Release": {"Name": "rel", "Namespace": "kube-system"},
    "Chart": {"Name": "flatnet", "Version": "0.1.0", "AppVersion": "0.1.0"},
    "Template": {"BasePath": "flatnet/templates"},
}


def r(text: str, sources: dict[str, str] | None = None) -> str:
    return render(text, CTX, sources)


def test_values_print_as_go_prints_them() -> None:
    assert r("{{ .Values.s }} {{ .Values.n }} {{ .Values.t }} {{ .Values.nested.k }}") == "flat 1500 true v"
    assert r("{{ .Release.Namespace }}/{{ .Release.Name }}:{{ .Chart.AppVersion }}") == "kube-system/rel:0.1.0"


def test_trim_markers_eat_whitespace_and_newlines_on_their_side_only() -> None:
    # text/template: "{{- " trims all preceding white space, " -}}" all following
    assert r("a  \n  {{- .Values.s }}  \nb") == "aflat  \nb"
    assert r("a  \n{{ .Values.s -}}  \n  b") == "a  \nflatb"
    assert r("x:\n  {{- if .Values.t }}\n  y: 1\n  {{- end }}\nz") == "x:\n  y: 1\nz"


def test_if_uses_go_truth() -> None:
    for falsy in ("f", "zero", "empty", "none", "list"):
        assert r(f"{{{{ if .Values.{falsy} }}}}yes{{{{ else }}}}no{{{{ end }}}}") == "no", falsy
    for truthy in ("t", "n", "s", "items", "map", "word"):  # the string "false" is true
        assert r(f"{{{{ if .Values.{truthy} }}}}yes{{{{ else }}}}no{{{{ end }}}}") == "yes", truthy
    assert r("{{ if .Values.t }}{{ if .Values.f }}a{{ else }}b{{ end }}{{ end }}") == "b"


def test_tojson_is_go_json_marshal() -> None:
    # sorted map keys, no spaces, HTML-safe escaping of & < >
    assert r("{{ .Values.map | toJson }}") == '{"a":"x\\u0026\\u003cy\\u003e","b":2}'
    assert r("{{ .Values.items | toJson }} {{ .Values.n | toJson }} {{ .Values.s | toJson }}") == '["a"] 1500 "flat"'


def test_quote_and_default_and_sha256sum_are_sprig_s() -> None:
    assert r("{{ .Values.s | quote }} {{ .Values.n | quote }} {{ .Values.t | quote }}") == '"flat" "1500" "true"'
    assert r("{{ .Values.map | toJson | quote }}") == '"{\\"a\\":\\"x\\\\u0026\\\\u003cy\\\\u003e\\",\\"b\\":2}"'
    assert r('{{ .Values.empty | default "dflt" }} {{ .Values.s | default "dflt" }}') == "dflt flat"
    assert r("{{ .Values.empty | default .Chart.AppVersion }}") == "0.1.0"
    assert r("{{ .Values.s | sha256sum }}") == hashlib.sha256(b"flat").hexdigest()


def test_include_renders_another_template_by_its_path() -> None:
    sources = {"flatnet/templates/cm.yaml": "data: {{ .Values.s }}\n"}
    out = r('{{ include (print $.Template.BasePath "/cm.yaml") . | sha256sum }}', sources)
    assert out == hashlib.sha256(b"data: flat\n").hexdigest()


@pytest.mark.parametrize(
    "text",
    [
        "{{ range .Values.items }}x{{ end }}",  # not in the subset
        "{{ .Values.s | upper }}",  # unknown function
        "{{ .Values.nope }}",  # missing value: an error, not ""
        "{{ if .Values.t }}never closed",
        "{{ end }}",
        "{{ .Values.map }}",  # a map printed as text: needs toJson
        '{{ include "missing.yaml" . }}',
    ],
)
def test_anything_outside_the_subset_is_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        r(text)
