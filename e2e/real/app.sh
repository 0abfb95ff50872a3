# Sourced by the real-node journeys (journey.sh, cluster-ip.sh): where their pods go, and the
# first seed's app. Expects $repo, $ns, $hostnames_image and $client_image; sets placement
# (helm -f arguments) and on_real_nodes.

placement=()
on_real_nodes=""
if [[ -n "$(kubectl get nodes -l signpost.dev/real-node=true -o name 2>/dev/null)" ]]; then
  placement=(-f "$repo/e2e/real/placement.yaml")
  on_real_nodes=1
fi

# The journey's pods' placement, as YAML lines of a pod spec indented by $1 spaces.
pod_placement() { # indent
  [[ -n "$on_real_nodes" ]] || return 0
  local pad; pad="$(printf '%*s' "$1" '')"
  printf '\n%snodeSelector: {signpost.dev/real-node: "true"}' "$pad"
  printf '\n%stolerations: [{key: signpost.dev/real-node, operator: Exists, effect: NoSchedule}]' "$pad"
}

# The first seed's app in $ns: 3 hostnames pods with an HTTP readiness probe, their Service, and
# a client pod to resolve and connect from.
apply_seed_app() {
  kubectl apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: hostnames, namespace: $ns}
spec:
  replicas: 3
  selector: {matchLabels: {app: hostnames}}
  template:
    metadata: {labels: {app: hostnames}}
    spec:$(pod_placement 6)
      containers:
        - name: hostnames
          image: $hostnames_image
          imagePullPolicy: IfNotPresent
          ports: [{containerPort: 9376, protocol: TCP}]
          readinessProbe:
            httpGet: {path: /ready, port: 9376}
            periodSeconds: 1
            failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {name: hostnames, namespace: $ns}
spec:
  selector: {app: hostnames}
  ports: [{name: default, protocol: TCP, port: 80, targetPort: 9376}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: $ns}
spec:$(pod_placement 2)
  terminationGracePeriodSeconds: 0
  containers:
    - name: client
      image: $client_image
      imagePullPolicy: IfNotPresent
YAML
}
