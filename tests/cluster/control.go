package main

// Control of a running `kube up` by the tests (docs/test-bed.md): a file DIR/control/NAME
// asks for command NAME (its content: the command's argument); kube up carries it out,
// writes the outcome to DIR/control/NAME.done ("ok ..." or "error: ...") and removes
// DIR/control/NAME. Names with a dot are ignored, so a test writes NAME.tmp and renames it.
//
//   - restart-apiserver [SECONDS]: stops kube-apiserver (SIGTERM, SIGKILL after 5 s), keeps it down SECONDS
//     (default 0), starts it again with the same flags on the same port and etcd, and waits
//     until it is ready. Its watch cache starts empty: clients watching from an older
//     resourceVersion get 410 Gone and must list again.
//   - compact-etcd: compacts etcd's history up to its current revision, so no watch can
//     resume from before it.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func (c *cluster) pollControl() {
	dir := filepath.Join(c.dir, "control")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.Contains(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		arg, _ := os.ReadFile(path)
		logf("control: %s %s", name, bytes.TrimSpace(arg))
		out, err := c.control(name, strings.TrimSpace(string(arg)))
		result := "ok " + out
		if err != nil {
			result = "error: " + err.Error()
		}
		logf("control: %s: %s", name, result)
		_ = os.WriteFile(path+".done", []byte(result+"\n"), 0o644)
		_ = os.Remove(path)
	}
}

func (c *cluster) control(name, arg string) (string, error) {
	switch name {
	case "restart-apiserver":
		down := 0.0
		if arg != "" {
			var err error
			if down, err = strconv.ParseFloat(arg, 64); err != nil || down < 0 {
				return "", fmt.Errorf("restart-apiserver takes a number of seconds, not %q", arg)
			}
		}
		return c.restartAPIServer(time.Duration(down * float64(time.Second)))
	case "compact-etcd":
		return c.compactEtcd()
	default:
		return "", fmt.Errorf("unknown command %q", name)
	}
}

// restartAPIServer stops kube-apiserver, waits `down`, starts it again with the same flags
// and waits until it is ready; it reports how long it took to stop and to become ready.
func (c *cluster) restartAPIServer(down time.Duration) (string, error) {
	i := -1
	for j, p := range c.procs {
		if p.name == "kube-apiserver" {
			i = j
		}
	}
	if i < 0 {
		return "", fmt.Errorf("no kube-apiserver running")
	}
	old := c.procs[i]
	old.expected.Store(true)
	t0 := time.Now()
	pgid := old.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-old.done:
	case <-time.After(5 * time.Second):
		// Its graceful shutdown waits for long-running requests (watches) far longer.
		logf("kube-apiserver still running 5s after SIGTERM, killing it")
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-old.done
	}
	stopped := time.Since(t0)
	time.Sleep(down)
	t1 := time.Now()
	p, err := c.spawn("kube-apiserver", c.self, c.apiArgs...)
	if err != nil {
		return "", err
	}
	// spawn appended it: it takes the old one's place, so teardown keeps its order.
	c.procs = c.procs[:len(c.procs)-1]
	c.procs[i] = p
	for c.get(c.admin, c.api+"/readyz", "") != nil {
		select {
		case <-p.done:
			return "", fmt.Errorf("kube-apiserver exited while restarting (%v)%s", p.err, tail(p))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Since(t1) > 180*time.Second {
			return "", fmt.Errorf("kube-apiserver not ready 180s after its restart%s", tail(p))
		}
	}
	return fmt.Sprintf("stopped %.2fs down %.2fs ready %.2fs", stopped.Seconds(), down.Seconds(), time.Since(t1).Seconds()), nil
}

// compactEtcd compacts etcd up to its current revision through its JSON gateway.
func (c *cluster) compactEtcd() (string, error) {
	url := "http://127.0.0.1:" + strconv.Itoa(c.port["etcd"])
	var head struct {
		Header struct{ Revision string }
	}
	key := base64.StdEncoding.EncodeToString([]byte("/"))
	if err := etcdPost(url+"/v3/kv/range", map[string]any{"key": key, "count_only": true}, &head); err != nil {
		return "", err
	}
	if head.Header.Revision == "" {
		return "", fmt.Errorf("etcd reported no revision")
	}
	if err := etcdPost(url+"/v3/kv/compaction", map[string]any{"revision": head.Header.Revision, "physical": true}, nil); err != nil {
		return "", err
	}
	return "revision " + head.Header.Revision, nil
}

func etcdPost(url string, body any, out any) error {
	data, _ := json.Marshal(body)
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Post(url, "application/json", bytes.NewReader(data))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, bytes.TrimSpace(buf.Bytes()))
	}
	if out != nil {
		return json.Unmarshal(buf.Bytes(), out)
	}
	return nil
}
