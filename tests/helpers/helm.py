"""Render charts/flatnet without Helm: exactly the template subset the chart uses.

Helm is not installable from Debian or PyPI here. The chart keeps to a small subset of
Helm's Go templates, and this renderer implements that subset with Helm's documented
meaning (tests/unit/test_helm_subset.py pins each construct); anything else is refused
with an error, so the chart cannot grow a construct this renderer would get wrong.

Supported:
- text/template actions ``{{ ... }}`` with the whitespace trim markers ``{{-`` / ``-}}``
  (trim all whitespace, newlines included, before / after the action);
- ``{{ if PIPELINE }}`` ... ``{{ else }}`` ... ``{{ end }}``, Go's truth (false, 0, nil,
  "" and empty lists/maps are false; the string "false" is true);
- values: ``.Values.a.b``, ``.Release.Name``, ``.Release.Namespace``, ``.Chart.Name``,
  ``.Chart.Version``, ``.Chart.AppVersion``, ``$.Template.BasePath``, ``.`` (the context),
  string literals, parenthesised pipelines;
- functions: ``toJson`` (Go's json.Marshal: compact, map keys sorted, ``<>&`` escaped as
  ``\\u003c`` ``\\u003e`` ``\\u0026``), ``quote`` (Sprig), ``sha256sum`` (hex), ``default D V``,
  ``print`` (strings concatenated), ``include NAME CONTEXT`` (another template's output).
A missing value is an error here (Helm would print nothing): typos fail the tests.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

ACTION = re.compile(r"\{\{(-\s)?\s*(.*?)\s*(\s-)?\}\}", re.S)
TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<open>\()|(?P<close>\))|(?P<pipe>\|)'
    r'|(?P<word>[^\s()|"]+))'
)


class TemplateError(Exception):
    """The template uses something outside the supported subset, or a value is missing."""


@dataclass
class Chart:
    """A chart directory: Chart.yaml, values.yaml, templates/*.yaml."""

    path: Path
    meta: dict[str, Any] = field(init=False)
    values: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.meta = yaml.safe_load((self.path / "Chart.yaml").read_text())
        self.values = yaml.safe_load((self.path / "values.yaml").read_text())

    def templates(self) -> list[Path]:
        return sorted((self.path / "templates").glob("*.yaml"))

    def render(
        self, overrides: dict[str, Any] | None = None, *, release: str = "flatnet", namespace: str = "flatnet"
    ) -> dict[str, str]:
        """Every template rendered: {"templates/x.yaml": text}."""
        values = merge(self.values, overrides or {})
        ctx = {
            "Values": values,
            "Release": {"Name": release, "Namespace": namespace},
            "Chart": {
                "Name": self.meta["name"],
                "Version": self.meta["version"],
                "AppVersion": self.meta.get("appVersion", ""),
            },
            "Template": {"BasePath": f"{self.meta['name']}/templates"},
        }
        sources = {f"{self.meta['name']}/templates/{t.name}": t.read_text() for t in self.templates()}
        out: dict[str, str] = {}
        for name, text in sources.items():
            out["templates/" + name.rsplit("/", 1)[1]] = render(text, ctx, sources)
        return out

    def docs(self, overrides: dict[str, Any] | None = None, **kw: str) -> list[dict[str, Any]]:
        """The rendered objects (empty documents dropped, as Helm does)."""
        docs: list[dict[str, Any]] = []
        for text in self.render(overrides, **kw).values():
            docs.extend(d for d in yaml.safe_load_all(text) if d)
        return docs


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied; keys may be dotted paths ("network.mode")."""
    out = json.loads(json.dumps(base))
    for path, value in overrides.items():
        *head, last = path.split(".")
        cur = out
        for part in head:
            cur = cur.setdefault(part, {})
        cur[last] = value
    return out


# --- parsing -----------------------------------------------------------------------------


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    expr: str


@dataclass
class _If:
    cond: str
    then: list[Any]
    other: list[Any]


def _lex(text: str) -> list[_Text | tuple[str, str]]:
    """Text and ("action", body) pieces with the trim markers applied."""
    pieces: list[_Text | tuple[str, str]] = []
    pos, trim_next = 0, False
    for m in ACTION.finditer(text):
        chunk = text[pos : m.start()]
        if trim_next:
            chunk = chunk.lstrip()
        if m.group(1):
            chunk = chunk.rstrip()
        pieces.append(_Text(chunk))
        pieces.append(("action", m.group(2)))
        pos, trim_next = m.end(), bool(m.group(3))
    tail = text[pos:]
    pieces.append(_Text(tail.lstrip() if trim_next else tail))
    return pieces


def _parse(pieces: list[_Text | tuple[str, str]], i: int = 0, top: bool = True) -> tuple[list[Any], int, str]:
    nodes: list[Any] = []
    while i < len(pieces):
        p = pieces[i]
        if isinstance(p, _Text):
            nodes.append(p)
            i += 1
            continue
        body = p[1]
        if body.startswith("/*"):
            i += 1
            continue
        word = body.split(None, 1)[0] if body else ""
        if word == "if":
            then, i, stop = _parse(pieces, i + 1, top=False)
            other: list[Any] = []
            if stop == "else":
                other, i, stop = _parse(pieces, i, top=False)
            if stop != "end":
                raise TemplateError(f"{{{{ if {body[3:]} }}}} has no {{{{ end }}}}")
            nodes.append(_If(body[3:].strip(), then, other))
        elif word in ("else", "end"):
            if top:
                raise TemplateError(f"{{{{ {word} }}}} without {{{{ if }}}}")
            return nodes, i + 1, word
        elif word in ("range", "with", "define", "template", "block"):
            raise TemplateError(f"{{{{ {word} }}}} is outside the subset tests/helpers/helm.py renders")
        else:
            nodes.append(_Action(body))
            i += 1
    if not top:
        raise TemplateError("{{ if }} has no {{ end }}")
    return nodes, i, ""


def render(text: str, ctx: dict[str, Any], sources: dict[str, str] | None = None) -> str:
    """Render one template text with context ``ctx`` (``sources``: templates for include)."""
    nodes, _, _ = _parse(_lex(text))
    return _Evaluator(ctx, sources or {}).run(nodes)


# --- evaluation --------------------------------------------------------------------------


def truth(value: Any) -> bool:
    """Go template truth: the zero value of its type is false."""
    return not (
        value is None
        or value is False
        or value == 0
        and not isinstance(value, bool)
        or (isinstance(value, (str, list, dict)) and len(value) == 0)
    )


def to_json(value: Any) -> str:
    """Go's json.Marshal: compact, sorted map keys, HTML characters escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TemplateError(f"cannot print {type(value).__name__} {value!r} as text: pipe it to toJson")


def _quote(*args: Any) -> str:
    return " ".join(json.dumps(_text(a), ensure_ascii=False) for a in args if a is not None)


class _Evaluator:
    def __init__(self, ctx: dict[str, Any], sources: dict[str, str]) -> None:
        self.ctx, self.sources = ctx, sources
        self.funcs: dict[str, Callable[..., Any]] = {
            "toJson": to_json,
            "quote": _quote,
            "sha256sum": lambda s: hashlib.sha256(_text(s).encode()).hexdigest(),
            "default": lambda d, v=None: v if truth(v) else d,
            "print": lambda *a: "".join(_text(x) for x in a),
            "include": self._include,
        }

    def run(self, nodes: list[Any]) -> str:
        out: list[str] = []
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _If):
                out.append(self.run(node.then if truth(self.pipeline(node.cond)) else node.other))
            else:
                out.append(_text(self.pipeline(node.expr)))
        return "".join(out)

    def _include(self, name: str, _ctx: Any) -> str:
        if name not in self.sources:
            raise TemplateError(f"include: no template {name!r} (have {sorted(self.sources)})")
        return render(self.sources[name], self.ctx, self.sources)

    def pipeline(self, expr: str) -> Any:
        tokens = [(m.lastgroup, m.group(m.lastgroup)) for m in TOKEN.finditer(expr) if m.lastgroup]  # type: ignore[arg-type]
        value, rest = self._pipe(tokens)
        if rest:
            raise TemplateError(f"cannot parse {expr!r}")
        return value

    def _pipe(self, tokens: list[tuple[str, str]]) -> tuple[Any, list[tuple[str, str]]]:
        value, tokens = self._command(tokens, None, first=True)
        while tokens and tokens[0][0] == "pipe":
            value, tokens = self._command(tokens[1:], value, first=False)
        return value, tokens

    def _command(self, tokens: list[tuple[str, str]], piped: Any, first: bool) -> tuple[Any, list[tuple[str, str]]]:
        args: list[Any] = []
        name = None
        if tokens and tokens[0][0] == "word" and tokens[0][1] in self.funcs:
            name, tokens = tokens[0][1], tokens[1:]
        elif tokens and tokens[0][0] == "word" and tokens[0][1][0].isalpha():
            raise TemplateError(f"function {tokens[0][1]!r} is outside the subset tests/helpers/helm.py renders")
        while tokens and tokens[0][0] not in ("pipe", "close"):
            kind, text = tokens[0]
            if kind == "open":
                inner, tokens = self._pipe(tokens[1:])
                if not tokens or tokens[0][0] != "close":
                    raise TemplateError("unbalanced parentheses")
                args.append(inner)
                tokens = tokens[1:]
                continue
            args.append(self._term(kind, text))
            tokens = tokens[1:]
        if not first:
            args.append(piped)
        if name is None:
            if len(args) != 1:
                raise TemplateError(f"expected one value, got {args!r}")
            return args[0], tokens
        try:
            return self.funcs[name](*args), tokens
        except TypeError as exc:
            raise TemplateError(f"{name}: wrong arguments {args!r}") from exc

    def _term(self, kind: str, text: str) -> Any:
        if kind == "str":
            return json.loads(text)
        if text in (".", "$"):
            return self.ctx
        if text.startswith((".", "$.")):
            cur: Any = self.ctx
            path = text.lstrip("$").lstrip(".")
            for part in path.split("."):
                if not isinstance(cur, dict) or part not in cur:
                    raise TemplateError(f"{text}: no such value (check values.yaml)")
                cur = cur[part]
            return cur
        raise TemplateError(f"{text!r} is outside the subset tests/helpers/helm.py renders")
