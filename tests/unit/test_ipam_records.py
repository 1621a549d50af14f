"""Key and record helpers of ``flatnet.ipam.records``: the fast paths give what the slow ones gave."""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from flatnet.ipam import records as r


@given(st.text())
def test_q_quotes_exactly_like_quote(text: str) -> None:
    assert r.q(text) == quote(text, safe=":")


def test_q_on_the_usual_parts_and_the_unusual_ones() -> None:
    for part in ("", "pool-1", "2001:db8::1", "198.18.0.1", "a" * 64, "ns/pod", "sp ace", "%41", "ä", "x\n"):
        assert r.q(part) == quote(part, safe=":")


def test_ip_text_is_str_for_addresses_and_never_confuses_an_interface() -> None:
    for text in ("198.18.0.1", "2001:db8::1", "2001:db8:b::ffff", "::", "0.0.0.0"):
        ip = ipaddress.ip_address(text)
        assert r.ip_text(ip) == str(ip) == r.ip_text(ip)  # second call: from the cache
    v4 = ipaddress.ip_interface("198.18.0.1/24")
    assert r.ip_text(v4) == "198.18.0.1/24"  # an interface equals its address but prints otherwise
    assert r.ip_text(ipaddress.ip_address("198.18.0.1")) == "198.18.0.1"
    assert r.ip_key("p", ipaddress.ip_address("2001:db8::1")) == "pools/p/ips/2001:db8::1"


def test_dumps_is_canonical_json() -> None:
    obj = {"b": [1, {"z": None, "a": "ü"}], "a": 1.5, "c": True}
    assert r.dumps(obj) == json.dumps(obj, sort_keys=True, separators=(",", ":"))
