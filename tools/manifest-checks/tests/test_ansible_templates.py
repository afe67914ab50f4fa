"""The roles' templates, rendered by Ansible for each kind of host in the
example inventory (core server, DMZ agent, storage host) and read back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

ANSIBLE = REPO / "ansible"
HOSTS = {"core": "fac-north-01", "dmz": "fac-north-01-dmz01", "storage": "fac-north-01-stor01"}
TEMPLATES = {
    "nftables.conf": "roles/hardening/templates/nftables.conf.j2",
    "sysctl.conf": "roles/hardening/templates/sysctl.conf.j2",
    "sshd.conf": "roles/hardening/templates/sshd_kiorex.conf.j2",
    "chrony.conf": "roles/hardening/templates/chrony.conf.j2",
    "audit.rules": "roles/hardening/templates/audit.rules.j2",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Render through a throwaway role that shares hardening's defaults and
    templates, so variable precedence is the real one (role defaults below
    group_vars and host_vars)."""
    out = tmp_path_factory.mktemp("templates")
    role = out / "roles" / "render_hardening"
    (role / "tasks").mkdir(parents=True)
    (role / "defaults").symlink_to(ANSIBLE / "roles/hardening/defaults")
    (role / "templates").symlink_to(ANSIBLE / "roles/hardening/templates")
    tasks = [{"name": f"Render {name}",
              "ansible.builtin.template": {"src": Path(src).name,
                                           "dest": f"{out}/{{{{ inventory_hostname }}}}-{name}", "mode": "0600"}}
             for name, src in TEMPLATES.items()]
    (role / "tasks" / "main.yml").write_text(yaml.safe_dump(tasks))
    play = [{"name": "Render role templates", "hosts": ",".join(HOSTS.values()), "gather_facts": False,
             "roles": ["render_hardening"]}]
    (out / "render.yml").write_text(yaml.safe_dump(play))
    venv = Path(sys.executable).parent
    env = dict(os.environ, ANSIBLE_HOME=str(out / "home"), ANSIBLE_LOCAL_TEMP=str(out / "tmp"),
               ANSIBLE_ROLES_PATH=str(out / "roles"), PATH=f"{venv}:{os.environ['PATH']}")
    proc = subprocess.run(
        [str(venv / "ansible-playbook"), "-i", "inventories/example", str(out / "render.yml"),
         "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", "-e", "ansible_become=false"],
        cwd=ANSIBLE, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return lambda kind, name: (out / f"{HOSTS[kind]}-{name}").read_text()


def test_dmz_node_firewall_opens_the_portal_and_not_the_lan(rendered):
    nft = rendered("dmz", "nftables.conf")
    assert "policy drop;" in nft
    assert "\n        tcp dport 443 accept" in nft
    assert "2575" not in nft and "lan_clients" not in nft
    assert "flush ruleset" not in nft


def test_core_node_firewall_limits_portal_and_hl7_to_their_networks(rendered):
    nft = rendered("core", "nftables.conf")
    assert "ip saddr @lan_clients tcp dport 443 accept" in nft
    assert "ip saddr @hl7_senders tcp dport 2575 accept" in nft
    assert "\n        tcp dport 443 accept" not in nft
    assert "ip saddr @management tcp dport 22 accept" in nft


def test_storage_host_firewall_has_ceph_and_no_kubernetes(rendered):
    nft = rendered("storage", "nftables.conf")
    assert "6789" in nft and "6443" not in nft and "10250" not in nft
    assert "ip saddr { @nodes, @k8s_nodes } tcp dport 443 accept" in nft


def test_every_node_gets_the_kernel_settings_k3s_requires(rendered):
    for kind in HOSTS:
        sysctl = rendered(kind, "sysctl.conf")
        for line in ("vm.panic_on_oom = 0", "vm.overcommit_memory = 1", "kernel.panic = 10",
                     "kernel.panic_on_oops = 1", "net.ipv4.ip_forward = 1"):
            assert line in sysctl.splitlines(), (kind, line)


def test_sshd_and_time(rendered):
    for kind in HOSTS:
        sshd = rendered(kind, "sshd.conf").splitlines()
        assert "PermitRootLogin no" in sshd and "PasswordAuthentication no" in sshd
        chrony = rendered(kind, "chrony.conf")
        assert "server 10.1.0.1 iburst" in chrony  # region_north's time servers
        assert "-w /etc/kiorex/ -p wa -k kiorex-config" in rendered(kind, "audit.rules")
