package main

// The cluster directory and what kube up needs from the host: free ports, the default route.

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

const dirMarker = ".kube-up"

// makeDir creates the cluster directory: a new temporary one, or --dir, which is wiped
// first if it holds a previous cluster (never if it holds anything else).
func (c *cluster) makeDir() error {
	if c.o.dir == "" {
		base := ""
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() && syscall.Access("/dev/shm", 2) == nil {
			base = "/dev/shm"
		}
		d, err := os.MkdirTemp(base, "shoal-kube-")
		if err != nil {
			return err
		}
		c.dir = d
	} else {
		d, err := filepath.Abs(c.o.dir)
		if err != nil {
			return err
		}
		entries, _ := os.ReadDir(d)
		if _, err := os.Stat(filepath.Join(d, dirMarker)); len(entries) > 0 && err != nil {
			return fmt.Errorf("refusing to wipe %s: not empty and not made by kube up (no %s file)", d, dirMarker)
		}
		if err := os.RemoveAll(d); err != nil {
			return err
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		c.dir = d
	}
	if err := os.WriteFile(filepath.Join(c.dir, dirMarker), nil, 0o644); err != nil {
		return err
	}
	return os.MkdirAll(filepath.Join(c.dir, "logs"), 0o755)
}

// freePorts reserves n distinct free loopback ports (all listeners are held until every
// port is picked, so the ports differ; they are released before the components bind).
func freePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func hasDefaultRoute() bool {
	data, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 2 && f[1] == "00000000" {
			return true
		}
	}
	return false
}
