"""Test certificates made with the openssl CLI: a CA, a server cert for 127.0.0.1, clients.

Every key is a fresh P-256 key in a temp dir the caller owns; nothing is reused between
runs. ``make_pki`` returns paths, ready for etcd's flags and for the store's settings.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def _openssl(*args: str) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("openssl not found: install it with `apt-get install openssl` (scripts/setup.sh)")
    res = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {args[0]}: {res.stderr.strip()}")


def _req(key: Path, out: Path, name: str, self_signed: bool) -> None:
    """A fresh P-256 key in ``key``; ``out``: a 2-day self-signed certificate, else a CSR."""
    _openssl(
        "req",
        *(["-x509"] if self_signed else []),
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(out),
        *(["-days", "2"] if self_signed else []),
        "-subj",
        f"/CN=fne-{name}",
    )


def make_ca(d: Path, name: str) -> tuple[str, str]:
    crt, key = d / f"{name}.crt", d / f"{name}.key"
    _req(key, crt, name, self_signed=True)
    return str(crt), str(key)


def make_cert(d: Path, name: str, ca: tuple[str, str], server: bool) -> tuple[str, str]:
    crt, key, csr, ext = (d / f"{name}.crt", d / f"{name}.key", d / f"{name}.csr", d / f"{name}.ext")
    ext.write_text(
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
        if server
        else "extendedKeyUsage=clientAuth\n"
    )
    _req(key, csr, name, self_signed=False)
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        ca[0],
        "-CAkey",
        ca[1],
        "-CAcreateserial",
        "-out",
        str(crt),
        "-days",
        "2",
        "-extfile",
        str(ext),
    )
    return str(crt), str(key)


def make_pki(d: Path) -> dict[str, str]:
    """CA + server + client, and a second CA with its own client (the "wrong" ones)."""
    d.mkdir(parents=True, exist_ok=True)
    ca = make_ca(d, "ca")
    other = make_ca(d, "other-ca")
    server = make_cert(d, "server", ca, server=True)
    client = make_cert(d, "client", ca, server=False)
    stranger = make_cert(d, "stranger", other, server=False)
    return {
        "ca": ca[0],
        "cert": server[0],
        "key": server[1],
        "client_cert": client[0],
        "client_key": client[1],
        "other_ca": other[0],
        "stranger_cert": stranger[0],
        "stranger_key": stranger[1],
    }
