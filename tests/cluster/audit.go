package main

import (
	"os"
	"path/filepath"
)

// auditPolicy records every request that changes state (at Metadata level: who, what verb,
// which object, which User-Agent) and nothing else, so tests can prove from the apiserver's
// own records how many writes a client made. Reads and watches are not logged, unless
// `kube up --audit-reads` (readsRule): then get, list and watch are logged at Metadata
// level too, for tests that count every request of a client (a relist, a throttled client).
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
`

const readsRule = `- level: Metadata
  verbs: ["get", "list", "watch"]
`

const noneRule = `- level: None
`

// auditFlags writes the audit policy into dir and returns the kube-apiserver flags that
// log to dir/logs/audit.log as JSON lines.
func auditFlags(dir string, reads bool) ([]string, error) {
	policy := filepath.Join(dir, "audit-policy.yaml")
	text := auditPolicy
	if reads {
		text += readsRule
	}
	text += noneRule
	if err := os.WriteFile(policy, []byte(text), 0o600); err != nil {
		return nil, err
	}
	return []string{
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + filepath.Join(dir, "logs", "audit.log"),
		"--audit-log-format=json",
		"--audit-log-mode=blocking",
		"--audit-log-maxsize=0",
	}, nil
}
