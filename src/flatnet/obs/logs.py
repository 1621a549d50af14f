"""Log setup for the agent (text or JSON lines) and redaction of secrets.

Text: ``2026-12-01 13:57:11.123 INFO flatnet.agent: ADD ...`` (date, time, level).
JSON (``--log-format json``, python-json-logger): one object per line with ``timestamp``,
``level``, ``logger``, ``message`` and, for a CNI request, ``verb``, ``network``, ``mode``,
``pod_namespace``, ``pod_name``, ``container_id``, ``ifname``, ``addresses``,
``duration_seconds``, ``result`` (the CNI code, 0 = success) and ``error``.

No secret reaches a log line or an error message: values of config keys named like
``password``, ``*secret*``, ``token`` (and the contents of their ``*File`` / ``*_file``
counterparts, e.g. ``passwordFile``, ``keyFile``) are remembered when a store is opened and replaced by ``***`` wherever they
appear; ``key=value`` / ``"key": "value"`` pairs with such keys and the password part of
``scheme://user:password@host`` are masked even when never seen before.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from typing import Any

MASK = "***"
_SECRET_KEY = re.compile(
    r"password|passwd|secret|token|credential|api[_-]?key|private[_-]?key"
    r"|(?:^|[_-])key(?:file|_file|path)?$",
    re.I,
)
_FILE_KEY = re.compile(r"(file|path)$", re.I)
_PAIR = re.compile(
    r"""(?P<key>["']?[\w.-]*(?:password|passwd|secret|token|credential|api[_-]?key)[\w.-]*["']?)"""
    r"""(?P<sep>\s*[:=]\s*)(?P<val>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;&}\])]+)""",
    re.I,
)
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@", re.I)
_secrets: set[str] = set()
_lock = threading.Lock()
MAX_SECRET_FILE = 64 * 1024


def remember_secret(value: str) -> None:
    """Mask ``value`` in every later log line and error message (too short ones are not)."""
    value = value.strip()
    if len(value) >= 4:
        with _lock:
            _secrets.add(value)


def remember_config_secrets(cfg: Any) -> None:
    """Remember the secrets of a config: secret-named keys, and the files they point to."""
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if isinstance(key, str) and _SECRET_KEY.search(key):
                if isinstance(value, str) and _FILE_KEY.search(key):
                    _remember_file(value)
                elif isinstance(value, str):
                    remember_secret(value)
            remember_config_secrets(value)
    elif isinstance(cfg, list):
        for item in cfg:
            remember_config_secrets(item)


def _remember_file(path: str) -> None:
    """The file's content, and each line of it (a PEM key is quoted line by line, if ever)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(MAX_SECRET_FILE)
    except OSError:
        return  # the store reports an unreadable file itself (and the path is no secret)
    remember_secret(text)
    for line in text.splitlines():
        if not line.startswith("-----") and len(line.strip()) >= 8:
            remember_secret(line)


def _mask_pair(m: re.Match[str]) -> str:
    key = m.group("key").strip("\"'")
    if _FILE_KEY.search(key):
        return m.group(0)  # a path to a secret is not the secret
    val = m.group("val")
    quote = val[0] if val[:1] in ("'", '"') else ""
    return f"{m.group('key')}{m.group('sep')}{quote}{MASK}{quote}"


def redact(text: str) -> str:
    """``text`` with every known secret and every secret-looking pair masked."""
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _PAIR.sub(_mask_pair, text)
    return _URL_PASSWORD.sub(lambda m: m.group("head") + MASK + "@", text)


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner``, then masks secrets in the finished line (message, extras, traceback)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))


class _TextFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return super().formatTime(record, "%Y-%m-%d %H:%M:%S") + f".{int(record.msecs):03d}"


def make_formatter(fmt: str) -> logging.Formatter:
    """The formatter for ``--log-format`` ``text`` or ``json`` (both redacting)."""
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        inner: logging.Formatter = JsonFormatter(
            "%(levelname)s %(name)s %(message)s", rename_fields={"levelname": "level", "name": "logger"}, timestamp=True
        )
    elif fmt == "text":
        inner = _TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        raise ValueError(f"log format {fmt!r}: use text or json")
    return RedactingFormatter(inner)


def setup_logging(fmt: str = "text", level: int = logging.INFO, stream: Any = None) -> logging.Handler:
    """Send every log record of the process to ``stream`` (stderr) in ``fmt``; returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
