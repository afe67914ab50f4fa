#!/usr/bin/env bash
# Configure one facility's Ceph cluster for Kiorex, in order:
#
#   1. hosts and their labels            (hosts.conf)
#   2. cluster-wide security settings    (msgr2 encryption on every connection)
#   3. mon, mgr and OSD services         (specs/*.yaml; OSDs encrypted at rest)
#   4. RGW pools                         (pools.conf)
#   5. RGW realm, zonegroup and zone
#   6. RGW service with TLS on the storage network (specs/rgw.yaml + certificate)
#   7. S3 users: `kiorex` (the application) and `kiorex-iam` (sets user policies)
#   8. buckets kiorex-documents, kiorex-quarantine, kiorex-backups with
#      versioning, lifecycle, bucket policies and the user policy
#   9. a read-only summary
#
# Run on the facility's Ceph admin host (label _admin), after
# `cephadm bootstrap`, from this directory:
#
#   CEPH_PUBLIC_NETWORK=10.110.40.0/24 CEPH_CLUSTER_NETWORK=10.110.41.0/24 \
#   RGW_HOSTNAME=rgw.fac-north-01.health-region.example ZONE=fac-north-01 \
#   RGW_TLS_CERT=/etc/kiorex/pki/rgw.crt RGW_TLS_KEY=/etc/kiorex/pki/rgw.key \
#   ./apply.sh
#
# Every step checks before it changes, so running it again is safe; each
# change prints a line starting with "changed:" (the ansible role ceph counts
# them). Secrets (S3 keys) are written only to $SECRETS_DIR, mode 0600, and
# never printed. Needs: ceph, radosgw-admin (cephadm shell or ceph-common),
# aws (AWS CLI v2, from the bundle), jq.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

: "${CEPH_PUBLIC_NETWORK:?storage (public) network, e.g. 10.110.40.0/24}"
: "${CEPH_CLUSTER_NETWORK:?replication network, e.g. 10.110.41.0/24}"
: "${RGW_HOSTNAME:?DNS name of the RGW endpoint on the storage network}"
: "${RGW_TLS_CERT:?PEM certificate for RGW}"
: "${RGW_TLS_KEY:?PEM private key for RGW}"
ZONE="${ZONE:-$(hostname -s | sed 's/-stor[0-9]*$//')}"
REALM="kiorex"
ZONEGROUP="kiorex"
HOSTS_FILE="${HOSTS_FILE:-$HERE/hosts.conf}"
SECRETS_DIR="${SECRETS_DIR:-/etc/kiorex/ceph}"
RGW_CA="${RGW_CA:-/etc/kiorex/pki/ca.crt}"
BUCKETS=(kiorex-documents kiorex-quarantine kiorex-backups)

log() { printf '== %s\n' "$*"; }
changed() { printf 'changed: %s\n' "$*"; }

for tool in ceph radosgw-admin aws jq; do
    command -v "$tool" >/dev/null || { echo "apply.sh: $tool not found" >&2; exit 1; }
done
umask 077
mkdir -p "$SECRETS_DIR"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# --- 1. hosts -----------------------------------------------------------------
log "1. hosts and labels from $HOSTS_FILE"
known_hosts="$(ceph orch host ls --format json | jq -r '.[].hostname')"
while read -r host addr labels; do
    [[ -z "$host" || "$host" == \#* ]] && continue
    if ! grep -qx "$host" <<<"$known_hosts"; then
        ceph orch host add "$host" "$addr" --labels "$labels"
        changed "host $host added with labels $labels"
    else
        current="$(ceph orch host ls --format json | jq -r --arg h "$host" '.[] | select(.hostname == $h) | .labels[]')"
        for label in ${labels//,/ }; do
            if ! grep -qx "$label" <<<"$current"; then
                ceph orch host label add "$host" "$label"
                changed "label $label on $host"
            fi
        done
    fi
done <"$HOSTS_FILE"

# --- 2. cluster-wide settings -------------------------------------------------------
log "2. networks and wire encryption"
set_config() { # who option value
    if [[ "$(ceph config get "$1" "$2")" != "$3" ]]; then
        ceph config set "$1" "$2" "$3"
        changed "config $1 $2 = $3"
    fi
}
set_config global public_network "$CEPH_PUBLIC_NETWORK"
set_config global cluster_network "$CEPH_CLUSTER_NETWORK"
# msgr2 "secure" mode: AES-GCM on every daemon and client connection.
set_config global ms_cluster_mode secure
set_config global ms_service_mode secure
set_config global ms_client_mode secure
set_config global ms_mon_cluster_mode secure
set_config global ms_mon_service_mode secure
set_config global ms_mon_client_mode secure
set_config mon auth_allow_insecure_global_id_reclaim false

# --- 3. mon, mgr, osd -----------------------------------------------------------------
log "3. mon, mgr and encrypted OSD services"
apply_spec() { # file
    local out
    out="$(ceph orch apply -i "$1")"
    echo "$out"
    # `ceph orch apply` is declarative; it says "Scheduled ..." for new or
    # changed services and "... already up to date" otherwise.
    grep -qi "already" <<<"$out" || changed "spec $(basename "$1")"
}
apply_spec specs/mon.yaml
apply_spec specs/mgr.yaml
apply_spec specs/osd.yaml

# --- 4. pools ---------------------------------------------------------------------------
log "4. RGW pools for zone $ZONE"
existing_pools="$(ceph osd pool ls)"
while read -r pool size min_size app; do
    [[ -z "$pool" || "$pool" == \#* ]] && continue
    pool="${pool//@ZONE@/$ZONE}"
    if ! grep -qx "$pool" <<<"$existing_pools"; then
        ceph osd pool create "$pool" --autoscale-mode=on
        changed "pool $pool"
    fi
    [[ "$(ceph osd pool get "$pool" size -f json | jq -r .size)" == "$size" ]] \
        || { ceph osd pool set "$pool" size "$size"; changed "pool $pool size $size"; }
    [[ "$(ceph osd pool get "$pool" min_size -f json | jq -r .min_size)" == "$min_size" ]] \
        || { ceph osd pool set "$pool" min_size "$min_size"; changed "pool $pool min_size $min_size"; }
    if ! ceph osd pool application get "$pool" -f json | jq -e --arg a "$app" 'has($a)' >/dev/null; then
        ceph osd pool application enable "$pool" "$app"
        changed "pool $pool application $app"
    fi
done <pools.conf

# --- 5. realm, zonegroup, zone -------------------------------------------------------------
log "5. RGW realm $REALM, zonegroup $ZONEGROUP, zone $ZONE"
period_dirty=0
if ! radosgw-admin realm get --rgw-realm="$REALM" >/dev/null 2>&1; then
    radosgw-admin realm create --rgw-realm="$REALM" --default >/dev/null
    changed "realm $REALM"; period_dirty=1
fi
if ! radosgw-admin zonegroup get --rgw-zonegroup="$ZONEGROUP" >/dev/null 2>&1; then
    radosgw-admin zonegroup create --rgw-zonegroup="$ZONEGROUP" --rgw-realm="$REALM" \
        --endpoints="https://$RGW_HOSTNAME" --master --default >/dev/null
    changed "zonegroup $ZONEGROUP"; period_dirty=1
fi
if ! radosgw-admin zone get --rgw-zone="$ZONE" >/dev/null 2>&1; then
    radosgw-admin zone create --rgw-zonegroup="$ZONEGROUP" --rgw-zone="$ZONE" \
        --endpoints="https://$RGW_HOSTNAME" --master --default >/dev/null
    changed "zone $ZONE"; period_dirty=1
fi
if [[ "$period_dirty" == 1 ]]; then
    radosgw-admin period update --rgw-realm="$REALM" --commit >/dev/null
    changed "period committed"
fi

# --- 6. RGW service with TLS ------------------------------------------------------------------
log "6. RGW service, HTTPS on $CEPH_PUBLIC_NETWORK"
sed -e "s#@ZONE@#$ZONE#g" -e "s#@PUBLIC_NETWORK@#$CEPH_PUBLIC_NETWORK#g" specs/rgw.yaml >"$WORK/rgw.yaml"
{
    echo "  rgw_frontend_ssl_certificate: |"
    sed 's/^/    /' "$RGW_TLS_CERT" "$RGW_TLS_KEY"
} >>"$WORK/rgw.yaml"
apply_spec "$WORK/rgw.yaml"
export AWS_CA_BUNDLE="$RGW_CA"
ENDPOINT="https://$RGW_HOSTNAME"
for _ in $(seq 1 60); do
    curl -fsS --cacert "$RGW_CA" -o /dev/null "$ENDPOINT" && break
    sleep 5
done
curl -fsS --cacert "$RGW_CA" -o /dev/null "$ENDPOINT" || { echo "RGW not answering on $ENDPOINT" >&2; exit 1; }

# --- 7. S3 users ----------------------------------------------------------------------------------
log "7. S3 users"
ensure_user() { # uid display-name max-buckets
    if ! radosgw-admin user info --uid="$1" >/dev/null 2>&1; then
        radosgw-admin user create --uid="$1" --display-name="$2" --max-buckets="$3" >/dev/null
        changed "user $1"
    fi
    radosgw-admin user info --uid="$1" \
        | jq '{access_key_id: .keys[0].access_key, secret_access_key: .keys[0].secret_key}' \
        >"$SECRETS_DIR/$1-s3.json"
}
ensure_user kiorex "Kiorex application" 3
# kiorex-purge owns no buckets; the documents bucket policy lets it erase object versions (and
# nothing else), for `kiorex objects purge --apply` after the retention period.
ensure_user kiorex-purge "Kiorex purge after retention" 0
# kiorex-iam owns no buckets; it may only attach user policies.
ensure_user kiorex-iam "Kiorex IAM policy administrator" 0
if ! radosgw-admin user info --uid=kiorex-iam | jq -e '.caps[] | select(.type == "user-policy")' >/dev/null; then
    radosgw-admin caps add --uid=kiorex-iam --caps="user-policy=*" >/dev/null
    changed "caps user-policy on kiorex-iam"
fi

as_user() { # uid aws-args...
    local uid="$1"; shift
    AWS_ACCESS_KEY_ID="$(jq -r .access_key_id "$SECRETS_DIR/$uid-s3.json")" \
    AWS_SECRET_ACCESS_KEY="$(jq -r .secret_access_key "$SECRETS_DIR/$uid-s3.json")" \
    AWS_DEFAULT_REGION="$ZONEGROUP" \
        aws --endpoint-url "$ENDPOINT" "$@"
}

# --- 8. buckets -----------------------------------------------------------------------------------
log "8. buckets, versioning, lifecycle and policies"
for bucket in "${BUCKETS[@]}"; do
    if ! as_user kiorex s3api head-bucket --bucket "$bucket" >/dev/null 2>&1; then
        as_user kiorex s3api create-bucket --bucket "$bucket" \
            --create-bucket-configuration "LocationConstraint=$ZONEGROUP" >/dev/null
        changed "bucket $bucket"
    fi
done

# Versioning before the policy: the documents policy forbids changing it later.
if [[ "$(as_user kiorex s3api get-bucket-versioning --bucket kiorex-documents | jq -r '.Status // ""')" != "Enabled" ]]; then
    as_user kiorex s3api put-bucket-versioning --bucket kiorex-documents \
        --versioning-configuration file://versioning-kiorex-documents.json
    changed "versioning on kiorex-documents"
fi

for bucket in "${BUCKETS[@]}"; do
    want="$(jq -S . "lifecycle/$bucket.json")"
    have="$(as_user kiorex s3api get-bucket-lifecycle-configuration --bucket "$bucket" 2>/dev/null | jq -S '{Rules: .Rules}' || true)"
    if [[ "$want" != "$have" ]]; then
        as_user kiorex s3api put-bucket-lifecycle-configuration --bucket "$bucket" \
            --lifecycle-configuration "file://lifecycle/$bucket.json"
        changed "lifecycle on $bucket"
    fi
    want="$(jq -S . "policies/bucket-policy-$bucket.json")"
    have="$(as_user kiorex s3api get-bucket-policy --bucket "$bucket" 2>/dev/null | jq -r .Policy | jq -S . || true)"
    if [[ "$want" != "$have" ]]; then
        as_user kiorex s3api put-bucket-policy --bucket "$bucket" --policy "file://policies/bucket-policy-$bucket.json"
        changed "bucket policy on $bucket"
    fi
done

want="$(jq -S . policies/kiorex-user-policy.json)"
have="$(as_user kiorex-iam iam get-user-policy --user-name kiorex --policy-name kiorex-buckets-only 2>/dev/null \
        | jq -S '.PolicyDocument | if type == "string" then fromjson else . end' || true)"
if [[ "$want" != "$have" ]]; then
    as_user kiorex-iam iam put-user-policy --user-name kiorex --policy-name kiorex-buckets-only \
        --policy-document file://policies/kiorex-user-policy.json
    changed "user policy kiorex-buckets-only on kiorex"
fi

# --- 9. summary -----------------------------------------------------------------------------------
log "9. summary"
ceph health
ceph orch ls
radosgw-admin bucket list --uid=kiorex
as_user kiorex s3api get-bucket-versioning --bucket kiorex-documents
as_user kiorex s3api get-bucket-lifecycle-configuration --bucket kiorex-quarantine
echo "S3 credentials for kiorexctl: $SECRETS_DIR/kiorex-s3.json"
echo "S3 credentials for the purge job (kiorex objects purge): $SECRETS_DIR/kiorex-purge-s3.json"
