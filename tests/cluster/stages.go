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

// slowStartDefs are jq definitions (KWOK evaluates Stage selectors and delays with gojq)
// for the slow-start convention of the test bed: a pod is slow to start when its
// annotation `shoal.dev/test-ready-after` holds a duration (`20s`, `1m30s`, `1500ms`), or
// when the tag of one of its images ends in `-ready-after-<duration>`, optionally followed
// by `-jitter-<duration>` (`registry.example/api:1-ready-after-20s-jitter-5s`). The
// annotation `shoal.dev/test-ready-jitter` gives the jitter too. With several sources the
// longest wins. A value that is not such a duration is ignored (the pod starts at once).
//
//   - secs: a duration string in seconds (a number), or nothing;
//   - readyAfter, jitter: the pod's delay and jitter in seconds (> 0), or nothing;
//   - deadline(s): "<ms>ms", the time from now until creationTimestamp + s: a Go duration
//     KWOK's delay accepts (negative when past: no wait). Measured from the creation
//     rather than from the moment the stage matches, so a pod updated while it warms up
//     (a label, an annotation) keeps its deadline instead of starting over.
const slowStartDefs = `def secs: select(type == "string" and test("^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$")) | [scan("([0-9]+(?:\\.[0-9]+)?)(ms|s|m|h)")] | map((.[0] | tonumber) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[.[1]]) | add; ` +
	`def tag(g): ((.spec.containers // [])[], (.spec.initContainers // [])[]) | .image | capture(":[^/]*-ready-after-(?<after>([0-9]+(\\.[0-9]+)?(ms|s|m|h))+)(-jitter-(?<jitter>([0-9]+(\\.[0-9]+)?(ms|s|m|h))+))?$") | g; ` +
	`def readyAfter: [(.metadata.annotations["shoal.dev/test-ready-after"] | secs), tag(.after | secs)] | max | select(. > 0); ` +
	`def jitter: [(.metadata.annotations["shoal.dev/test-ready-jitter"] | secs), tag(.jitter | secs)] | max | select(. > 0); ` +
	`def deadline(s): "\((((.metadata.creationTimestamp | fromdate) + s - now) * 1000) | floor)ms"; `

// slowStartQuery yields the pod's ready-after delay in seconds when it is slow to start.
const slowStartQuery = slowStartDefs + `readyAfter`

// podSlowStartStage starts a slow pod's containers without making it Ready: phase
// Running, containers running but not ready, Ready=False and ContainersReady=False
// (reason ContainersNotReady), a pod IP: what a kubelet shows while a readiness probe
// has not passed yet.
const podSlowStartStage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-slow-start
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
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values:
      - 'True'
    - key: '` + brokenImageQuery + `'
      operator: 'DoesNotExist'
    - key: '` + slowStartQuery + `'
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
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        {{ if eq .restartPolicy "Always" }}
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
        {{ else }}
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
        {{ end }}
      {{ end }}
      {{ $hostIPs := NodeIPsWith .spec.nodeName }}
      {{ with $hostIPs }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      {{ with $podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
`

// podSlowReadyStage makes a started slow pod Ready once its delay (plus a random part of
// its jitter) has passed since its creation.
const podSlowReadyStage = `apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-slow-ready
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
      - 'Running'
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'In'
      values:
      - 'False'
    - key: '` + brokenImageQuery + `'
      operator: 'DoesNotExist'
    - key: '` + slowStartQuery + `'
      operator: 'Exists'
  delay:
    durationMilliseconds: 0
    durationFrom:
      jq:
        expression: '` + slowStartDefs + `deadline(readyAfter)'
    jitterDurationFrom:
      jq:
        expression: '` + slowStartDefs + `deadline(readyAfter + jitter)'
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      containerStatuses:
      {{ range .status.containerStatuses }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        started: true
        state:
          running:
            startedAt: {{ .state.running.startedAt | Quote }}
      {{ end }}
`

// writeKwokConfig copies the stock stages (kwok-stages.yaml, made by build.sh from the
// kwok module), adds to the pod-ready stage selector requirements that skip pods with a
// ":broken" image and slow-starting pods, and appends podBrokenImageStage,
// podSlowStartStage and podSlowReadyStage.
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
	extra := "    - key: '" + brokenImageQuery + "'\n      operator: 'DoesNotExist'\n" +
		"    - key: '" + slowStartQuery + "'\n      operator: 'DoesNotExist'\n"
	s = s[:at] + extra + s[at:]
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	s += "---\n" + podBrokenImageStage + "---\n" + podSlowStartStage + "---\n" + podSlowReadyStage
	return os.WriteFile(out, []byte(s), 0o644)
}
