"""The docs mention only real command-line flags.

Every ``flatnet SUB [SUB2] ... --flag`` in README.md and docs/*.md (inline code and code
blocks) is walked down the real argparse tree (``flatnet.cli.main.build_parser``, the
tooling's commands included): each subcommand must exist, and each ``--flag`` must be an
option of the command it follows.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from flatnet.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE = re.compile(r"```.*?\n(.*?)```|`([^`\n]+)`", re.S)
COMMAND = re.compile(r"(?<![\w./-])flatnet((?:[ \t]+[^\s;|&#)`]+)+)")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def commands() -> list[tuple[str, str]]:
    """(file, command text) for every flatnet command line in the docs."""
    out = []
    for doc in DOCS:
        for block, inline in CODE.findall(doc.read_text()):
            for line in (block or inline).splitlines():
                for m in COMMAND.finditer(line):
                    # "helm install flatnet charts/..", "kubectl -n flatnet ..": a name, not the command
                    before = line[: m.start()].rstrip()
                    if before.endswith((" -n", "install", "namespace", "upgrade", "--namespace")):
                        continue
                    # only a line that runs flatnet must name a real command ("flatnet never imports" is prose)
                    runs = before in ("", "$", "#", "sudo") or before.endswith(("--", "&&", "$(", "watch"))
                    out.append((doc.name, ("" if runs else "?") + "flatnet" + m.group(1)))
    return out


def check(text: str, root: argparse.ArgumentParser) -> list[str]:
    parser, path, problems = root, ["flatnet"], []
    text = text.split("$(", 1)[0]  # "flatnet ipam show $(podman ps -q --filter ...)": the rest is podman's
    words = [w.strip("[]{}(),'\"") for w in text.split()[1:]]
    if words and words[0] not in _subparsers(root):
        runs = not text.startswith("?")
        bare = re.fullmatch(r"[a-z][a-z-]*", text.split()[1])  # "flatnet (in-process)" is a label
        return [f"flatnet has no command {words[0]}"] if runs and bare else []
    for word in words:
        subs = _subparsers(parser)
        if word in subs and not word.startswith("-"):
            parser = subs[word]
            path.append(word)
            continue
        if word.startswith("--") and len(word) > 2:
            flag = word.split("=", 1)[0]
            if flag not in _options(parser) and "\0" not in parser.prefix_chars:
                problems.append(f"{' '.join(path)} has no {flag}")
    return problems


def test_the_walk_catches_a_made_up_flag() -> None:
    root = build_parser()
    assert check("flatnet ipam release --node x", root) == []
    assert check("flatnet ipam release --nod x", root) == ["flatnet ipam release has no --nod"]
    assert check("flatnet ipma ls", root) == ["flatnet has no command ipma"]
    assert check("?flatnet never imports flatnet_lab", root) == []
    assert check("flatnet ipam show $(podman ps -q --filter name=web)", root) == []


def test_docs_mention_only_real_flags() -> None:
    root = build_parser()
    found = commands()
    assert len(found) > 50, found  # the walk reads the docs at all
    problems = sorted({f"{name}: `{text}`: {p}" for name, text in found for p in check(text, root)})
    assert not problems, "\n".join(problems)


#: flags the docs name that belong to other programs (the owner says why they are not ours)
FOREIGN = {
    "--strict": "mypy",
    "--masquerade-all": "kube-proxy",
    "--service-cluster-ip-range": "kube-apiserver",
    "--set": "helm",
    "--create-namespace": "helm",
    "--include": "mmdebstrap",
    "--hook": "mmdebstrap",
    "--client-cert-auth": "etcd",
    "--sentinel": "redis-server",
    "--cap-add": "podman",
    "--kill": "python -m flatnet_lab.bench.scale",
    "--overlay": "python -m flatnet_lab.bench.scale",
    "--matrix": "python -m flatnet_lab.bench.ipambench",
    "--threads": "python -m flatnet_lab.bench.ipambench",
    "--cold": "python -m flatnet_lab.bench.ipambench",
}


def test_every_flag_named_alone_is_a_flatnet_flag_or_another_programs() -> None:
    """`--dead-node-grace` in prose: some flatnet command (or a named other program) has it."""
    ours: set[str] = set()

    def walk(parser: argparse.ArgumentParser) -> None:
        ours.update(_options(parser))
        for sub in _subparsers(parser).values():
            walk(sub)

    walk(build_parser())
    named = {m.group(1): doc.name for doc in DOCS for m in re.finditer(r"`(--[a-z][a-z0-9-]*)", doc.read_text())}
    unknown = sorted(f"{doc}: {flag}" for flag, doc in named.items() if flag not in ours and flag not in FOREIGN)
    assert not unknown, unknown
