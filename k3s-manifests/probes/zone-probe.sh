#!/usr/bin/env bash
# Live check of the zone rules on a running facility cluster.
#
#   k3s-manifests/probes/zone-probe.sh --directory 10.30.0.10 [--image IMAGE]
#
# For each case it starts a short-lived pod that carries the labels of a
# Kiorex workload in that workload's namespace (so the same NetworkPolicies
# apply to it), tries one TCP connection with `nc -z`, and compares the result
# with the zone table in docs/ops/zones.md. The probe pods never become Ready
# (their readiness probe always fails), so no Service sends them traffic, and
# they are deleted when the connection attempt ends.
#
# Prints one line per case and "N passed, M failed"; exits 1 on any failure.
# Needs kubectl with access to the cluster and a busybox image in the
# appliance registry.
set -euo pipefail

IMAGE="registry.kiorex.local/mirror/busybox:1.36"
DIRECTORY=""
while (($#)); do
    case "$1" in
        --image) IMAGE="$2"; shift 2 ;;
        --directory) DIRECTORY="$2"; shift 2 ;;
        *) echo "usage: $0 --directory LDAP_SERVER_IP [--image IMAGE]" >&2; exit 2 ;;
    esac
done
[[ -n "$DIRECTORY" ]] || { echo "--directory is required (an LDAP server's address)" >&2; exit 2; }

passed=0
failed=0

# probe NAMESPACE COMPONENT(app.kubernetes.io/name=...,component=...) HOST PORT EXPECT(open|closed)
probe() {
    local ns="$1" labels="$2" host="$3" port="$4" expect="$5"
    local name="zone-probe-$RANDOM" placement='' got
    if [[ "$ns" == "kiorex-dmz" ]]; then
        placement='"nodeSelector": {"kiorex.io/zone": "dmz"},
          "tolerations": [{"key": "kiorex.io/zone", "operator": "Equal", "value": "dmz", "effect": "NoSchedule"}],'
    fi
    local overrides
    overrides=$(cat <<JSON
{
  "apiVersion": "v1",
  "spec": {
    $placement
    "automountServiceAccountToken": false,
    "securityContext": {"runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{
      "name": "$name",
      "image": "$IMAGE",
      "command": ["nc", "-z", "-w", "3", "$host", "$port"],
      "readinessProbe": {"exec": {"command": ["false"]}},
      "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}},
      "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                          "capabilities": {"drop": ["ALL"]}}
    }]
  }
}
JSON
)
    if kubectl -n "$ns" run "$name" --rm -i --quiet --restart=Never --image="$IMAGE" \
        --labels="$labels,kiorex.io/probe=true" --overrides="$overrides" >/dev/null 2>&1; then
        got=open
    else
        got=closed
    fi
    if [[ "$got" == "$expect" ]]; then
        passed=$((passed + 1)); printf 'ok    %-16s %-40s -> %s:%s %s\n' "$ns" "$labels" "$host" "$port" "$got"
    else
        failed=$((failed + 1)); printf 'FAIL  %-16s %-40s -> %s:%s %s (expected %s)\n' "$ns" "$labels" "$host" "$port" "$got" "$expect"
    fi
}

EDGE="app.kubernetes.io/name=kiorex,app.kubernetes.io/component=edge"
CORE="app.kubernetes.io/name=kiorex,app.kubernetes.io/component=core"
HL7="app.kubernetes.io/name=kiorex,app.kubernetes.io/component=hl7"
MEILI="app.kubernetes.io/name=meilisearch"

probe kiorex-dmz "$EDGE" kiorex-core-internal.kiorex-clinical.svc 8443 open
probe kiorex-dmz "$EDGE" kiorex-core.kiorex-clinical.svc 8080 closed
probe kiorex-dmz "$EDGE" kiorex-pg-rw.kiorex-data.svc 5432 closed
probe kiorex-dmz "$EDGE" meilisearch.kiorex-data.svc 7700 closed
probe kiorex-dmz "$EDGE" "$DIRECTORY" 636 closed
probe kiorex-clinical "$CORE" kiorex-pg-rw.kiorex-data.svc 5432 open
probe kiorex-clinical "$CORE" "$DIRECTORY" 636 open
probe kiorex-clinical "$HL7" meilisearch.kiorex-data.svc 7700 closed
probe kiorex-clinical "$HL7" "$DIRECTORY" 636 closed
probe kiorex-data "$MEILI" kiorex-core.kiorex-clinical.svc 8080 closed

echo "$passed passed, $failed failed"
((failed == 0))
