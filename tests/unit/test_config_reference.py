"""docs/CONFIG.md is the parser's own reference, and the parser and it agree key by key.

- the file is exactly ``python -m flatnet.cni.reference`` (regenerate it after adding a key);
- every key a strict section accepts (``ipam``, pools, routes, store) was read through a field
  reader that recorded its type: a key accepted without a definition fails here;
- every listed key is really checked by the parser: given a value of the wrong type, in a
  config of a mode (or store type) it is listed for, the parse fails naming that key — not as
  an unknown key.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from flatnet.cni import reference
from flatnet.cni.config import parse_conflist, parse_netconf
from flatnet.errors import FlatnetError
from flatnet.fieldref import path

ROOT = Path(__file__).resolve().parents[2]
ROWS = reference.collect()
#: keys the conflist carries (and hands to each plugin): set there
AT_CONFLIST = {"name", "cniVersion", *reference.CONFLIST_KEYS}


def test_docs_config_md_is_the_generated_reference() -> None:
    doc = (ROOT / "docs" / "CONFIG.md").read_text()
    assert doc == reference.render(), "docs/CONFIG.md is stale: python -m flatnet.cni.reference > docs/CONFIG.md"


def test_every_accepted_key_has_a_recorded_definition() -> None:
    undefined = sorted(w for w, r in ROWS.items() if not r.type)
    assert not undefined, f"keys a strict section accepts but no field reader defines: {undefined}"
    assert {"clusterSubnet", "vni", "vxlanPort", "nodeBlockPrefix", "nodeName", "vtepAddress", "snat"} <= set(ROWS)
    assert {"bridge", "vlan", "mac", "dns", "ipam.pools[].routes", "ipam.store.prefix"} <= set(ROWS)
    assert ROWS["ipam.store.timeout"].hi == 600 and ROWS["mode"].default == "macvlan"


def _set(doc: Any, parts: list[str], value: Any) -> None:
    """Put ``value`` at a dotted path of the sample (``[]`` = the first item, made if absent)."""
    key, rest = parts[0], parts[1:]
    item = key.endswith("[]")
    key = key.removesuffix("[]")
    if not rest and not item:
        doc[key] = value
        return
    if item:
        lst = doc.setdefault(key, [{}]) if isinstance(doc.get(key), list) and doc[key] else doc.setdefault(key, [])
        if not lst:
            lst.append({})
        if not rest:
            lst[0] = value
            return
        if not isinstance(lst[0], dict):
            lst[0] = {}
        _set(lst[0], rest, value)
        return
    if not isinstance(doc.get(key), dict):
        doc[key] = {}
    _set(doc[key], rest, value)


def _split(where: str) -> list[str]:
    """Dotted path -> parts, keeping the runtime keys with a dot in their name whole."""
    for root in reference.RUNTIME_ROOTS:
        if where == root or where.startswith((root + ".", root + "[")):
            rest = where[len(root) :]
            head = root + (rest.split(".")[0] if rest.startswith("[") else "")
            tail = rest.split(".")[1:] if "." in rest else []
            return [head, *tail]
    return where.split(".")


def _bad_config(row: reference.Row) -> dict[str, Any]:
    mode = next(m for m in reference.modes.names() if m in row.modes)
    kind = next((k for k in reference.STORES if k in row.stores), "sqlite")
    conflist = next(c for m, k, c in reference.samples() if m == mode and k == kind)
    conflist = copy.deepcopy(conflist)
    plugin = conflist["plugins"][0]
    parts = _split(row.where)
    for root in reference.RUNTIME_ROOTS:  # only the runtime input under test (one GC key shadows the other)
        if root != parts[0].removesuffix("[]"):
            plugin.pop(root, None)
    bad = "x" if row.type in ("integer", "boolean", "number (seconds)") else 5
    _set(conflist if parts[0].removesuffix("[]") in AT_CONFLIST else plugin, parts, bad)
    return conflist


@pytest.mark.parametrize("where", sorted(ROWS))
def test_every_listed_key_is_checked_by_the_parser(where: str) -> None:
    conflist = _bad_config(ROWS[where])
    with pytest.raises(FlatnetError) as err:
        conf = parse_conflist(json.dumps(conflist).encode())
        parse_netconf(json.dumps(conf.plugin_config(0)).encode())
    msg = path(err.value.msg)
    assert where.rsplit(".", 1)[-1].removesuffix("[]") in msg and "unknown key" not in msg, msg
