// Command pause is the sandbox process of the local Kubernetes node's pods
// (containerd's sandbox_image): it holds the pod's namespaces, reaps the
// zombies it inherits as the pod's PID 1, and exits on SIGINT or SIGTERM.
// Kubernetes' own pause image is a C program fetched from a registry this
// machine cannot reach; this is the same contract, built by ko.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		// Reap every child that has exited; SIGCHLD signals coalesce.
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
