#!/usr/bin/env python3
"""Checks the pods of `kubectl get pods -o json` (stdin) as a user checks an install: at least
MIN pods, each Running, every container ready with no restart, a read-only root filesystem, and
non-root except the containers named on the command line.
Prints one line per problem and exits 1 when there is any.
Usage: check_pods.py MIN [root-allowed-container...]"""
import json
import sys


def problems(pods, minimum, root_allowed):
    if len(pods) < minimum:
        yield f"{len(pods)} pods, expected at least {minimum}"
    for pod in pods:
        name, status, spec = pod["metadata"]["name"], pod["status"], pod["spec"]
        phase = status.get("phase")
        if phase != "Running":
            yield f"{name}: phase {phase}"
        for c in status.get("containerStatuses", []):
            if not c.get("ready") or c.get("restartCount", 0) != 0:
                yield f"{name}/{c['name']}: ready {c.get('ready')}, restarts {c.get('restartCount')}"
        pod_context = spec.get("securityContext", {})
        for c in spec["containers"]:
            context = {**pod_context, **c.get("securityContext", {})}
            if not context.get("readOnlyRootFilesystem"):
                yield f"{name}/{c['name']}: writable root filesystem"
            if c["name"] in root_allowed:
                continue
            if not context.get("runAsNonRoot") or context.get("runAsUser", 0) == 0:
                yield f"{name}/{c['name']}: may run as root"


def main():
    minimum, root_allowed = int(sys.argv[1]), set(sys.argv[2:])
    found = list(problems(json.load(sys.stdin)["items"], minimum, root_allowed))
    print("\n".join(found))
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
