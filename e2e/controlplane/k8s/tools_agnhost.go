//go:build tools

package tools

// agnhost, Kubernetes' e2e test image binary (build.sh agnhost): the real-node conformance run
// (e2e/real/conformance.sh) starts Kubernetes' specs whose pods run it. Imported here so that
// `go mod tidy` records the modules it needs.
import _ "k8s.io/kubernetes/test/images/agnhost"
