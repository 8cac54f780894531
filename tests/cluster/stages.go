package main

import (
	"fmt"
	"os"
	"strings"
)

// brokenImageQuery is a jq expression (KWOK Stage selectors are gojq queries) that
// yields the image of every container or init container whose image ends with the tag
// ":broken". The test-bed convention: such pods never become Ready.
const brokenImageQuery = `((.spec.containers // [])[], (.spec.initContainers // [])[]) | .image | select(endswith(":broken"))`

// podBrokenImageStage leaves a pod with a ":broken" image Pending, with every container
// waiting in ImagePullBackOff, as a kubelet would when the image cannot be pulled.
const podBrokenImageStage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-broken-image
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Pending'
    - key: '.status.containerStatuses'
      operator: 'DoesNotExist'
    - key: '` + brokenImageQuery + `'
      operator: 'Exists'
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        message: "containers with unready status"
        reason: ContainersNotReady
        status: "False"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        message: "containers with unready status"
        reason: ContainersNotReady
        status: "False"
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          waiting:
            reason: ImagePullBackOff
            message: {{ printf "Back-off pulling image %s" .image | Quote }}
      {{ end }}
      {{ $hostIPs := NodeIPsWith .spec.nodeName }}
      {{ with $hostIPs }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Pending
      startTime: {{ $now | Quote }}
`

// writeKwokConfig copies the stock stages (kwok-stages.yaml, made by build.sh from the
// kwok module), adds to the pod-ready stage a selector requirement that skips pods with
// a ":broken" image, and appends podBrokenImageStage.
func writeKwokConfig(stock, out string) error {
	data, err := os.ReadFile(stock)
	if err != nil {
		return err
	}
	s := string(data)
	i := strings.Index(s, "\n  name: pod-ready\n")
	if i < 0 {
		return fmt.Errorf("%s: no pod-ready stage", stock)
	}
	const anchor = "\n    matchExpressions:\n"
	j := strings.Index(s[i:], anchor)
	if j < 0 {
		return fmt.Errorf("%s: pod-ready stage has no selector.matchExpressions", stock)
	}
	at := i + j + len(anchor)
	extra := "    - key: '" + brokenImageQuery + "'\n      operator: 'DoesNotExist'\n"
	s = s[:at] + extra + s[at:]
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	s += "---\n" + podBrokenImageStage
	return os.WriteFile(out, []byte(s), 0o644)
}
