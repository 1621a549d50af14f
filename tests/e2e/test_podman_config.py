"""A bad flatnet network config, as podman users meet it: the error podman prints names the
config key and the fix, says the right thing for the no-agent mode, and leaves nothing held.

Each case is a second network written beside the fixture's good one (podman reads its
network_config_dir on every command).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from flatnet import defaults

from .conftest import Env, flatnet_conflist
from .test_podman import held

pytestmark = [pytest.mark.podman, pytest.mark.netns, pytest.mark.timeout(240)]


def bad_network(env: Env, suffix: str, change: dict, drop: tuple[str, ...] = ()) -> str:
    """Write network ``<network>-<suffix>``: the good config with ``change`` made."""
    name = f"{env.network}-{suffix}"
    conf = copy.deepcopy(flatnet_conflist(name, env.seg, env.db.parent, env.entry))
    plugin = conf["plugins"][0]
    plugin.update(change)
    for key in drop:
        plugin.pop(key, None)
    (env.db.parent / "net.d" / f"{name}.conflist").write_text(json.dumps(conf, indent=2))
    return name


def run_fails(env: Env, network: str, name: str) -> str:
    proc = env.podman("run", "-d", "--name", name, "--network", network, "--rootfs", str(env.rootfs), "/bin/sleep", "60", check=False)  # fmt: skip
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr
    print(proc.stderr)  # the real text podman prints, for docs/PODMAN.md's troubleshooting
    return proc.stderr


def nothing_held(env: Env) -> None:
    assert held(env) == {}
    records = Path(defaults.INPROCESS_DIR)
    left = [p for p in records.iterdir() if p.read_text().startswith(env.entry)] if records.is_dir() else []
    assert left == [], left


def test_a_typo_of_inprocess_is_named_not_reported_as_a_missing_agent(flat: Env) -> None:
    net = bad_network(flat, "typo", {"inprocess": flat.entry}, drop=("inProcess",))
    err = run_fails(flat, net, "typo-0")
    assert '"inprocess"' in err and 'did you mean "inProcess"?' in err, err
    # podman keeps the container it could not start (state Created): the doc says to rm it
    state = flat.podman("inspect", "--format", "{{.State.Status}}", "typo-0").stdout.strip()
    assert state in ("created", "configured"), state
    flat.podman("rm", "typo-0")
    nothing_held(flat)


def test_a_typo_of_a_plugin_key_gets_did_you_mean(flat: Env) -> None:
    net = bad_network(flat, "mastr", {"mastr": flat.seg.parent}, drop=("master",))
    err = run_fails(flat, net, "mastr-0")
    assert "unknown key 'mastr'; did you mean 'master'?" in err, err
    flat.podman("rm", "mastr-0")
    nothing_held(flat)


def test_a_missing_master_in_no_agent_mode_never_mentions_an_agent(flat: Env) -> None:
    net = bad_network(flat, "nomaster", {"master": "fnenope0"}, drop=("hostNetns",))
    err = run_fails(flat, net, "nomaster-0")
    assert "master link 'fnenope0' does not exist in the host's netns" in err, err
    assert "agent" not in err.lower(), err
    flat.podman("rm", "nomaster-0")
    nothing_held(flat)


def test_cni_version_1_1_0_fails_at_run_and_holds_nothing(flat: Env) -> None:
    """podman 4.3's libcni cannot read 1.1.0 results: the run fails, and podman's teardown
    (DEL) releases what ADD took. `flatnet network check` warns of it beforehand."""
    net = bad_network(flat, "v11", {})
    path = flat.db.parent / "net.d" / f"{net}.conflist"
    conf = json.loads(path.read_text())
    conf["cniVersion"] = "1.1.0"
    path.write_text(json.dumps(conf))
    err = run_fails(flat, net, "v11-0")
    assert 'failed (add): unsupported CNI result version "1.1.0"' in err, err
    flat.podman("rm", "v11-0")
    nothing_held(flat)
