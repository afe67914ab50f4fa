"""ceph-config/: service specs, pools, S3 policies, lifecycle, apply.sh.

There is no Ceph cluster on the build machine; apply.sh is documentation that
runs on a real one. These tests check what can be checked without one: the
specs and JSON documents say what docs/ops/ceph.md says they do, and
apply.sh is well-formed bash that uses every file it is shipped with.
"""

from __future__ import annotations

import json
import re
import subprocess
import shutil

import pytest
import yaml
from conftest import REPO

CEPH = REPO / "ceph-config"
BUCKETS = {"kiorex-documents", "kiorex-quarantine", "kiorex-backups"}


def spec(name):
    return yaml.safe_load((CEPH / "specs" / name).read_text())


def test_mon_and_mgr_specs():
    mon, mgr = spec("mon.yaml"), spec("mgr.yaml")
    assert mon["service_type"] == "mon" and mon["placement"]["count"] % 2 == 1
    assert mgr["service_type"] == "mgr" and mgr["placement"]["count"] >= 2


def test_osds_are_encrypted():
    osd = spec("osd.yaml")
    assert osd["service_type"] == "osd"
    assert osd["spec"]["encrypted"] is True
    assert osd["spec"]["objectstore"] == "bluestore"


def test_rgw_is_tls_only_on_the_storage_network():
    rgw = spec("rgw.yaml")
    assert rgw["service_type"] == "rgw"
    assert rgw["spec"]["ssl"] is True and rgw["spec"]["rgw_frontend_port"] == 443
    assert rgw["networks"] == ["@PUBLIC_NETWORK@"]
    assert rgw["spec"]["rgw_realm"] == "kiorex" and rgw["spec"]["rgw_zone"] == "@ZONE@"
    # apply.sh appends the certificate under `spec:`, so spec must come last
    assert list(rgw)[-1] == "spec"
    assert "rgw_frontend_ssl_certificate" not in rgw["spec"], "no key material in git"


def test_pools_are_replicated_three_ways():
    for line in (CEPH / "pools.conf").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, size, min_size, app = line.split()
        assert int(size) == 3 and int(min_size) == 2 and app == "rgw", line


def _resources(doc):
    for st in doc["Statement"]:
        for key in ("Resource", "NotResource"):
            value = st.get(key, [])
            yield from ([value] if isinstance(value, str) else value)


def _bucket_of(arn):
    m = re.fullmatch(r"arn:aws:s3:::([a-z0-9.-]+)(/\*)?", arn)
    assert m, arn
    return m.group(1)


def test_user_policy_allows_only_the_three_buckets():
    doc = json.loads((CEPH / "policies/kiorex-user-policy.json").read_text())
    allow = [s for s in doc["Statement"] if s["Effect"] == "Allow"]
    deny = [s for s in doc["Statement"] if s["Effect"] == "Deny"]
    assert {_bucket_of(a) for s in allow for a in s["Resource"]} == BUCKETS
    assert len(deny) == 1 and {_bucket_of(a) for a in deny[0]["NotResource"]} == BUCKETS
    assert sorted(deny[0]["NotResource"]) == sorted(allow[0]["Resource"])


@pytest.mark.parametrize("bucket", sorted(BUCKETS))
def test_bucket_policy(bucket):
    doc = json.loads((CEPH / f"policies/bucket-policy-{bucket}.json").read_text())
    assert {_bucket_of(a) for a in _resources(doc)} == {bucket}
    allows = [s for s in doc["Statement"] if s["Effect"] == "Allow"]
    purge = [s for s in allows if s["Principal"] == {"AWS": ["arn:aws:iam:::user/kiorex-purge"]}]
    allows = [s for s in allows if s not in purge]
    assert all(s["Principal"] == {"AWS": ["arn:aws:iam:::user/kiorex"]} for s in allows)
    # Only the purge job's user may erase versions, on the documents bucket, and read nothing.
    assert not purge or bucket == "kiorex-documents"
    assert all(not any(a in ("s3:GetObject", "s3:GetObjectVersion", "s3:PutObject") for a in s["Action"]) for s in purge)
    assert not any(a in ("s3:*", "*") for s in allows for a in s["Action"])
    tls = [s for s in doc["Statement"] if s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}]
    assert tls and tls[0]["Effect"] == "Deny"
    if bucket == "kiorex-documents":
        keep = [s for s in doc["Statement"] if s["Sid"] == "KeepDocumentHistory"]
        assert keep and "s3:DeleteObjectVersion" in keep[0]["Action"]
        assert keep[0]["Principal"] == {"AWS": ["arn:aws:iam:::user/kiorex"]}, "core cannot erase history"
        versioning = [s for s in doc["Statement"] if s["Sid"] == "KeepVersioningOn"]
        assert versioning and versioning[0]["Principal"] == "*"


def test_quarantine_expires_after_30_days_and_nothing_else_expires():
    for bucket in BUCKETS:
        rules = json.loads((CEPH / f"lifecycle/{bucket}.json").read_text())["Rules"]
        expiring = [r for r in rules if "Expiration" in r or "NoncurrentVersionExpiration" in r]
        if bucket == "kiorex-quarantine":
            assert len(expiring) == 1 and expiring[0]["Expiration"] == {"Days": 30}
            assert expiring[0]["Status"] == "Enabled" and expiring[0]["Filter"] == {"Prefix": ""}
        else:
            assert expiring == [], f"{bucket}: records and backups are never expired by lifecycle"
        assert any("AbortIncompleteMultipartUpload" in r for r in rules)


def test_documents_are_versioned():
    assert json.loads((CEPH / "versioning-kiorex-documents.json").read_text()) == {"Status": "Enabled"}


def test_apply_sh_is_strict_bash():
    text = (CEPH / "apply.sh").read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    subprocess.run(["bash", "-n", str(CEPH / "apply.sh")], check=True)


def test_apply_sh_uses_every_shipped_file():
    text = (CEPH / "apply.sh").read_text()
    for path in sorted(CEPH.rglob("*")):
        if path.is_dir() or path.name in ("apply.sh", "README.md", "hosts.conf.example"):
            continue
        rel = path.relative_to(CEPH).as_posix()
        generic = re.sub(r"kiorex-(documents|quarantine|backups)", "$bucket", rel)
        assert rel in text or generic in text, f"{rel} is never used by apply.sh"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_apply_sh_passes_shellcheck():
    subprocess.run(["shellcheck", "-S", "style", str(CEPH / "apply.sh")], check=True)
