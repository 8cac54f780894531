package main

// `kube up`: starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok,
// metrics-server and optionally Prometheus as child processes, waits until the cluster
// is usable, writes DIR/env and DIR/ready, and tears everything down on SIGTERM/SIGINT
// (or stdin EOF with --exit-on-stdin-eof). See docs/test-bed.md.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

const nodeName = "kwok-node-0"

type upOptions struct {
	dir, bin                   string
	prometheus, stdinEOF, keep bool
	apf, auditReads            bool // see control.go
}

type proc struct {
	name, logPath string
	cmd           *exec.Cmd
	done          chan struct{}
	err           error
	expected      atomic.Bool // stopped on purpose (a restart): its exit is no failure
}

type cluster struct {
	o               upOptions
	dir, self       string
	pki             *pki
	port            map[string]int
	procs           []*proc
	died            chan *proc
	stop            chan string
	admin, insecure *http.Client // insecure: admin client cert, server certificate not verified
	api             string
	apiArgs         []string // kube-apiserver's flags, for a restart
}

func logf(format string, a ...any) { fmt.Fprintf(os.Stderr, "kube up: "+format+"\n", a...) }

func up(args []string) int {
	var o upOptions
	fs := flag.NewFlagSet("kube up", flag.ContinueOnError)
	fs.StringVar(&o.dir, "dir", "", "cluster directory, wiped and reused (default: a new temporary directory under /dev/shm or $TMPDIR)")
	fs.StringVar(&o.bin, "bin", "", "directory with etcd, kwok, metrics-server and kwok-stages.yaml (default: the directory of this executable)")
	fs.BoolVar(&o.prometheus, "prometheus", false, "also start Prometheus (Debian's prometheus, from PATH)")
	fs.BoolVar(&o.stdinEOF, "exit-on-stdin-eof", false, "tear down when stdin reaches EOF")
	fs.BoolVar(&o.keep, "keep", false, "do not remove the cluster directory on teardown")
	fs.BoolVar(&o.apf, "apf", false, "enable API Priority and Fairness (off by default)")
	fs.BoolVar(&o.auditReads, "audit-reads", false, "audit reads (get, list, watch) too, not only writes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		logf("unexpected arguments %q", fs.Args())
		return 2
	}
	c := &cluster{o: o, died: make(chan *proc, 16), stop: make(chan string, 2), port: map[string]int{}}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() { c.stop <- "received " + (<-sigs).String() }()
	if o.stdinEOF {
		go func() { _, _ = io.Copy(io.Discard, os.Stdin); c.stop <- "stdin reached EOF" }()
	}
	t0 := time.Now()
	if err := c.start(); err != nil {
		logf("%v", err)
		c.teardown()
		return 1
	}
	logf("cluster ready in %.1fs (dir %s)", time.Since(t0).Seconds(), c.dir)
	poll := time.NewTicker(200 * time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case why := <-c.stop:
			logf("%s, tearing down", why)
			c.teardown()
			return 0
		case p := <-c.died:
			logf("%v", c.diedErr(p))
			c.teardown()
			return 1
		case <-poll.C:
			c.pollControl()
		}
	}
}

func (c *cluster) start() error {
	self, err := os.Executable()
	if err == nil {
		self, err = filepath.EvalSymlinks(self)
	}
	if err != nil {
		return fmt.Errorf("locating own executable: %w", err)
	}
	c.self = self
	if c.o.bin == "" {
		c.o.bin = filepath.Dir(self)
	}
	for _, f := range []string{"etcd", "kwok", "metrics-server", "kwok-stages.yaml"} {
		if _, err := os.Stat(filepath.Join(c.o.bin, f)); err != nil {
			return fmt.Errorf("%v (build the test bed with: bash tests/cluster/build.sh)", err)
		}
	}
	var promBin string
	if c.o.prometheus {
		if promBin, err = exec.LookPath("prometheus"); err != nil {
			return errors.New("prometheus not found: apt-get install --no-install-recommends prometheus")
		}
	}
	if err := c.makeDir(); err != nil {
		return err
	}
	names := []string{"etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok", "metrics-server", "prometheus"}
	ports, err := freePorts(len(names))
	if err != nil {
		return err
	}
	for i, n := range names {
		c.port[n] = ports[i]
	}
	if c.pki, err = makePKI(filepath.Join(c.dir, "pki")); err != nil {
		return fmt.Errorf("making PKI: %w", err)
	}
	c.admin = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: c.pki.tlsConfig(true)}}
	c.insecure = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: c.pki.tlsConfig(false)}}
	c.api = "https://127.0.0.1:" + strconv.Itoa(c.port["apiserver"])
	kc := filepath.Join(c.dir, "kubeconfig")
	if err := c.pki.writeKubeconfig(kc, c.api); err != nil {
		return err
	}
	kwokConfig := filepath.Join(c.dir, "kwok.yaml")
	if err := writeKwokConfig(filepath.Join(c.o.bin, "kwok-stages.yaml"), kwokConfig); err != nil {
		return err
	}
	p := func(n string) string { return strconv.Itoa(c.port[n]) }
	pk := c.pki.path
	loop := "http://127.0.0.1:"

	var prom *proc
	if c.o.prometheus {
		if prom, err = c.startPrometheus(promBin); err != nil {
			return err
		}
	}

	etcdURL, peerURL := loop+p("etcd"), loop+p("etcd-peer")
	etcd, err := c.spawn("etcd", filepath.Join(c.o.bin, "etcd"), "--name=n0", "--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL, "--initial-cluster=n0="+peerURL,
		"--unsafe-no-fsync", "--auto-compaction-retention=1", "--quota-backend-bytes=8589934592", "--log-level=warn")
	if err != nil {
		return err
	}
	if err := c.waitFor("etcd", 60*time.Second, etcd, func() error { return c.get(http.DefaultClient, etcdURL+"/health", `"health":"true"`) }); err != nil {
		return err
	}

	apiArgs := []string{"--etcd-servers=" + etcdURL, "--bind-address=127.0.0.1", "--secure-port=" + p("apiserver"),
		"--tls-cert-file=" + pk("admin.crt"), "--tls-private-key-file=" + pk("admin.key"), "--client-ca-file=" + pk("ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pk("sa.pub"), "--service-account-signing-key-file=" + pk("sa.key"),
		"--authorization-mode=RBAC", "--service-cluster-ip-range=10.96.0.0/16", "--endpoint-reconciler-type=none",
		"--allow-privileged=true", "--enable-priority-and-fairness=" + strconv.FormatBool(c.o.apf),
		"--proxy-client-cert-file=" + pk("admin.crt"), "--proxy-client-key-file=" + pk("admin.key"),
		"--requestheader-client-ca-file=" + pk("ca.crt"), "--requestheader-allowed-names=kube-admin",
		"--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-"}
	if !hasDefaultRoute() {
		// The apiserver derives its advertise address from the default route's interface and
		// refuses loopback; with --endpoint-reconciler-type=none nothing ever dials it.
		apiArgs = append(apiArgs, "--advertise-address=192.0.2.1")
	}
	audit, err := auditFlags(c.dir, c.o.auditReads)
	if err != nil {
		return err
	}
	c.apiArgs = append(apiArgs, audit...)
	apiserver, err := c.spawn("kube-apiserver", c.self, c.apiArgs...)
	if err != nil {
		return err
	}
	if err := c.waitFor("kube-apiserver", 180*time.Second, apiserver, func() error { return c.get(c.admin, c.api+"/readyz", "") }); err != nil {
		return err
	}
	if err := c.waitFor("bootstrap objects", 60*time.Second, apiserver, c.createObjects); err != nil {
		return err
	}

	kcFlags := []string{"--kubeconfig=" + kc, "--authentication-kubeconfig=" + kc, "--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1", "--tls-cert-file=" + pk("admin.crt"), "--tls-private-key-file=" + pk("admin.key")}
	kcm, err := c.spawn("kube-controller-manager", c.self, append(kcFlags, "--secure-port="+p("controller-manager"),
		"--leader-elect=false", "--root-ca-file="+pk("ca.crt"), "--service-account-private-key-file="+pk("sa.key"),
		// Its own client's limit, 20 requests/s by default, made Deployments wait minutes
		// for their ReplicaSets when thousands are created at once (make bench-scale).
		"--kube-api-qps=100", "--kube-api-burst=200",
		"--controllers=*", "--horizontal-pod-autoscaler-sync-period=5s",
		"--horizontal-pod-autoscaler-downscale-stabilization=15s", "--horizontal-pod-autoscaler-cpu-initialization-period=10s",
		"--horizontal-pod-autoscaler-initial-readiness-delay=5s")...)
	if err != nil {
		return err
	}
	sched, err := c.spawn("kube-scheduler", c.self, append(kcFlags, "--secure-port="+p("scheduler"), "--leader-elect=false")...)
	if err != nil {
		return err
	}
	kwok, err := c.spawn("kwok", filepath.Join(c.o.bin, "kwok"), "--kubeconfig="+kc, "--config="+kwokConfig,
		"--manage-all-nodes=false", "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--node-ip=127.0.0.1", "--node-name=localhost", "--node-port="+p("kwok"), "--server-address=127.0.0.1:"+p("kwok"),
		"--tls-cert-file="+pk("admin.crt"), "--tls-private-key-file="+pk("admin.key"),
		"--node-lease-duration-seconds=40", "--cidr=10.244.0.0/16")
	if err != nil {
		return err
	}
	ms, err := c.spawn("metrics-server", filepath.Join(c.o.bin, "metrics-server"), append(kcFlags,
		"--secure-port="+p("metrics-server"), "--kubelet-insecure-tls", "--kubelet-use-node-status-port",
		"--kubelet-preferred-address-types=InternalIP,Hostname", "--metric-resolution=10s", "--kubelet-request-timeout=5s")...)
	if err != nil {
		return err
	}
	https := "https://127.0.0.1:"
	for _, w := range []struct {
		p   *proc
		url string
	}{{kcm, https + p("controller-manager") + "/healthz"}, {sched, https + p("scheduler") + "/healthz"},
		{kwok, loop + p("kwok") + "/healthz"}, {ms, https + p("metrics-server") + "/healthz"}} {
		if err := c.waitFor(w.p.name, 120*time.Second, w.p, func() error { return c.get(c.insecure, w.url, "") }); err != nil {
			return err
		}
	}
	if err := c.waitFor("node "+nodeName, 120*time.Second, kwok, c.nodeReady); err != nil {
		return err
	}
	if err := c.waitFor("serviceaccount default/default", 120*time.Second, kcm, func() error {
		return c.get(c.admin, c.api+"/api/v1/namespaces/default/serviceaccounts/default", "")
	}); err != nil {
		return err
	}
	env := fmt.Sprintf("KUBECONFIG=%s\nCLUSTER_DIR=%s\nKUBE_APISERVER=%s\n", kc, c.dir, c.api)
	if prom != nil {
		url := loop + p("prometheus")
		if err := c.waitFor("prometheus", 60*time.Second, prom, func() error { return c.get(http.DefaultClient, url+"/-/ready", "") }); err != nil {
			return err
		}
		env += fmt.Sprintf("PROMETHEUS_URL=%s\nPROMETHEUS_SD_DIR=%s\n", url, filepath.Join(c.dir, "prometheus", "targets"))
	}
	if err := os.MkdirAll(filepath.Join(c.dir, "control"), 0o755); err != nil {
		return err
	}
	env += fmt.Sprintf("ETCD_URL=%s\n", etcdURL)
	if err := os.WriteFile(filepath.Join(c.dir, "env"), []byte(env), 0o644); err != nil {
		return err
	}
	os.Stdout.WriteString(env)
	return os.WriteFile(filepath.Join(c.dir, "ready"), nil, 0o644)
}

func (c *cluster) startPrometheus(bin string) (*proc, error) {
	pd := filepath.Join(c.dir, "prometheus")
	if err := os.MkdirAll(filepath.Join(pd, "targets"), 0o755); err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(c.port["prometheus"])
	cfg := fmt.Sprintf(`global:
  scrape_interval: 2s
  scrape_timeout: 2s
  evaluation_interval: 2s
scrape_configs:
- job_name: prometheus
  static_configs:
  - targets: ['%s']
- job_name: targets
  file_sd_configs:
  - files: ['%s']
    refresh_interval: 1s
`, addr, filepath.Join(pd, "targets", "*.json"))
	if err := os.WriteFile(filepath.Join(pd, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return c.spawn("prometheus", bin, "--config.file="+filepath.Join(pd, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(pd, "data"), "--web.listen-address="+addr, "--web.enable-lifecycle")
}

// createObjects registers the fake node and metrics-server's APIService (reached through an
// ExternalName Service pointing at 127.0.0.1, as kwokctl's binary runtime does).
func (c *cluster) createObjects() error {
	ms := c.port["metrics-server"]
	res := map[string]string{"cpu": "64", "memory": "256Gi", "pods": "500"}
	objs := []struct {
		path string
		obj  any
	}{
		{"/api/v1/nodes", map[string]any{"apiVersion": "v1", "kind": "Node", "metadata": map[string]any{
			"name": nodeName,
			"annotations": map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0",
				"metrics.k8s.io/resource-metrics-path": "/metrics/nodes/" + nodeName + "/metrics/resource"},
			"labels": map[string]string{"type": "kwok", "kubernetes.io/hostname": nodeName,
				"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
			"status": map[string]any{"capacity": res, "allocatable": res}}},
		{"/api/v1/namespaces/kube-system/services", map[string]any{"apiVersion": "v1", "kind": "Service",
			"metadata": map[string]any{"name": "metrics-server", "namespace": "kube-system"},
			"spec": map[string]any{"type": "ExternalName", "externalName": "127.0.0.1",
				"ports": []any{map[string]any{"name": "https", "port": ms, "protocol": "TCP"}}}}},
		{"/apis/apiregistration.k8s.io/v1/apiservices", map[string]any{"apiVersion": "apiregistration.k8s.io/v1",
			"kind": "APIService", "metadata": map[string]any{"name": "v1beta1.metrics.k8s.io"},
			"spec": map[string]any{"group": "metrics.k8s.io", "version": "v1beta1", "insecureSkipTLSVerify": true,
				"groupPriorityMinimum": 100, "versionPriority": 100,
				"service": map[string]any{"namespace": "kube-system", "name": "metrics-server", "port": ms}}}},
	}
	for _, o := range objs {
		body, _ := json.Marshal(o.obj)
		resp, err := c.admin.Post(c.api+o.path, "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusConflict {
			return fmt.Errorf("POST %s: %s: %s", o.path, resp.Status, msg)
		}
	}
	return nil
}

func (c *cluster) nodeReady() error {
	resp, err := c.admin.Get(c.api + "/api/v1/nodes/" + nodeName)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var n struct {
		Status struct {
			Conditions []struct{ Type, Status string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&n); err != nil {
		return err
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == "Ready" && cond.Status == "True" {
			return nil
		}
	}
	return errors.New("node not Ready yet")
}

// get succeeds when url answers 200 and the body contains want.
func (c *cluster) get(client *http.Client, url, want string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// waitFor polls check until it succeeds, failing early when a child exits or a stop is requested.
func (c *cluster) waitFor(what string, timeout time.Duration, owner *proc, check func() error) error {
	t0 := time.Now()
	logf("waiting for %s", what)
	for {
		err := check()
		if err == nil {
			logf("%s ready in %.1fs", what, time.Since(t0).Seconds())
			return nil
		}
		if time.Since(t0) > timeout {
			return fmt.Errorf("%s not ready after %s: %v%s", what, timeout, err, tail(owner))
		}
		select {
		case p := <-c.died:
			return c.diedErr(p)
		case why := <-c.stop:
			return fmt.Errorf("%s during startup", why)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *cluster) diedErr(p *proc) error {
	return fmt.Errorf("%s exited unexpectedly (%v)%s", p.name, p.err, tail(p))
}

// tail returns the last 30 lines of a component's log, for error messages.
func tail(p *proc) string {
	if p == nil {
		return ""
	}
	data, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return fmt.Sprintf("\n--- last %d lines of %s ---\n%s\n---", len(lines), p.logPath, strings.Join(lines, "\n"))
}

func (c *cluster) spawn(name, path string, args ...string) (*proc, error) {
	logPath := filepath.Join(c.dir, "logs", name+".log")
	// Appended to: a restarted component keeps its earlier log.
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Args[0] = name // the multi-call binary dispatches on argv[0]
	cmd.Dir, cmd.Stdout, cmd.Stderr = c.dir, f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logf("starting %s", name)
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	c.procs = append(c.procs, p)
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
		if !p.expected.Load() {
			c.died <- p
		}
	}()
	return p, nil
}

// teardown stops the children in reverse start order (SIGTERM to each process group,
// SIGKILL after 10 s) and removes the cluster directory unless --keep.
func (c *cluster) teardown() {
	t0 := time.Now()
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		pgid := p.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			logf("%s still running 10s after SIGTERM, killing it", p.name)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // anything left in its process group
	}
	if c.dir != "" && !c.o.keep {
		if err := os.RemoveAll(c.dir); err != nil {
			logf("removing %s: %v", c.dir, err)
		}
	}
	logf("stopped in %.1fs", time.Since(t0).Seconds())
}
