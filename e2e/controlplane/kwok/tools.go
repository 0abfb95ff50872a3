//go:build tools

// Package tools pins kwok, which runs the fake nodes and pods of the local control plane.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
