"""playbooks/rollout.yml, run for real against the example inventory.

Every facility of ansible/inventories/example is pointed at this machine
(ansible_connection=local) and at its own fake kiorexctl
(fixtures/fake_kiorexctl.py), which records every call. The tests then read
the record: the canary goes first, the batches follow the inventory order,
and an unhealthy facility stops every later batch.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TOOLS

ANSIBLE = REPO / "ansible"
VENV_BIN = Path(sys.executable).parent
FAKE = TOOLS / "fixtures" / "fake_kiorexctl.py"
VERSION = yaml.safe_load((ANSIBLE / "inventories/example/group_vars/all.yml").read_text())["kiorex_version"]


def facilities() -> list:
    inv = yaml.safe_load((ANSIBLE / "inventories/example/hosts.yml").read_text())
    return list(inv["all"]["children"]["facilities"]["hosts"])


def canary() -> str:
    inv = yaml.safe_load((ANSIBLE / "inventories/example/hosts.yml").read_text())
    (name,) = inv["all"]["children"]["canary"]["hosts"]
    return name


@pytest.fixture
def estate(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    overrides = {}
    for host in facilities():
        wrapper = tmp_path / "bin" / host / "kiorexctl"
        wrapper.parent.mkdir(parents=True)
        wrapper.write_text(f'#!/bin/sh\nFAKE_FACILITY={host} exec "{sys.executable}" "{FAKE}" "$@"\n')
        wrapper.chmod(0o755)
        overrides[host] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                           "kiorex_ctl_bin": str(wrapper)}
    (tmp_path / "overrides.yml").write_text(yaml.safe_dump({"all": {"hosts": overrides}}))
    bundle = tmp_path / "bundles" / f"kiorex-{VERSION}.tar"
    bundle.parent.mkdir()
    bundle.write_bytes(b"not a real bundle\n")
    extra = {
        "kiorex_bundle_path": str(bundle),
        "kiorex_bundle_sha256": hashlib.sha256(bundle.read_bytes()).hexdigest(),
        "rollout_canary_soak_seconds": 0,
        "kiorex_health_retries": 2,
        "kiorex_health_delay": 0,
        "ansible_become": False,
    }
    (tmp_path / "extra.yml").write_text(yaml.safe_dump(extra))

    def run(unhealthy=()):
        (state / "unhealthy").write_text("\n".join(unhealthy) + "\n")
        env = dict(os.environ, FAKE_STATE_DIR=str(state), ANSIBLE_HOME=str(tmp_path / "ansible-home"),
                   ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", PATH=f"{VENV_BIN}:{os.environ['PATH']}")
        proc = subprocess.run(
            [str(VENV_BIN / "ansible-playbook"), "-i", "inventories/example", "-i", str(tmp_path / "overrides.yml"),
             "-e", f"@{tmp_path / 'extra.yml'}", "playbooks/rollout.yml"],
            cwd=ANSIBLE, env=env, capture_output=True, text=True, timeout=300)
        log = (state / "calls.log").read_text().splitlines() if (state / "calls.log").exists() else []
        installs = [line.split()[0] for line in log if line.split()[1] == "install"]
        return proc, installs

    return run


def test_healthy_estate_upgrades_canary_first_then_batches_in_order(estate):
    proc, installs = estate()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    rest = [h for h in facilities() if h != canary()]
    assert installs[0] == canary()
    # serial [1, 10%, 25%, 100%] over the other facilities: batches of 1, 1, 1, then the rest
    assert installs[1:4] == rest[:3]
    assert sorted(installs[4:]) == sorted(rest[3:])
    assert len(installs) == len(facilities())


def test_unhealthy_facility_stops_later_batches(estate):
    rest = [h for h in facilities() if h != canary()]
    failing = rest[2]  # alone in the third batch
    proc, installs = estate(unhealthy=[failing])
    assert proc.returncode != 0
    assert installs == [canary()] + rest[:3]
    assert f"{failing} is not healthy" in proc.stdout


def test_unhealthy_canary_stops_everything_else(estate):
    proc, installs = estate(unhealthy=[canary()])
    assert proc.returncode != 0
    assert installs == [canary()]


def test_unhealthy_facility_before_start_blocks_the_whole_run(estate):
    proc, installs = estate(unhealthy=[facilities()[-1] + ":always"])
    assert proc.returncode != 0
    assert installs == []
