# shellcheck shell=bash
# Sourced by the scripts that check which Service addresses Signpost chose (demo.sh,
# real/cluster-ip.sh, and through e2e-test.sh the two conformance runs). Needs python3 and, for
# probe_service_address, kubectl against the cluster.

# The arguments among $2... that are not addresses in one of the CIDRs listed (space-separated)
# in $1; anything that is not an address at all (an empty ClusterIP) is printed too.
addresses_outside() { # "cidr..." address...
  python3 -c '
import ipaddress, sys
nets = [ipaddress.ip_network(c) for c in sys.argv[1].split()]
for a in sys.argv[2:]:
    try:
        inside = any(ipaddress.ip_address(a) in n for n in nets)
    except ValueError:
        inside = False
    if not inside:
        print(a or "(no address)")' "$@"
}

# Whether the address $1 is in one of the CIDRs listed in $2.
in_cidrs() { # address "cidr..."
  [[ -z "$(addresses_outside "$2" "$1")" ]]
}

# Creates the ClusterIP Service $2 in namespace $1, deletes it again and prints the address it
# got; succeeds when that address is in one of the CIDRs $3, that is, once the API server calls
# Signpost's webhook (a moment after its configuration is registered). Not a dry run: the
# webhook leaves those to the API server, which checks a dry run's address against a ServiceCIDR
# picked at random (docs/decisions.md).
probe_service_address() { # namespace name "cidr..."
  local ip
  ip="$(kubectl -n "$1" create service clusterip "$2" --tcp=80 -o jsonpath='{.spec.clusterIP}')" || return 1
  kubectl -n "$1" delete service "$2" >/dev/null || return 1
  echo "$ip"
  in_cidrs "$ip" "$3"
}
