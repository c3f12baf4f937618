//go:build tools

// Package tools names the main packages build.sh builds, so `go mod tidy` keeps their whole dependency
// graph in go.mod and go.sum. It is never compiled (the build tag is never set).
package tools

import (
	_ "go.etcd.io/etcd/server/v3"                     // the etcd binary (main.go at the module root)
	_ "k8s.io/kubernetes/cmd/kube-apiserver"          // real validation, admission, server-side apply
	_ "k8s.io/kubernetes/cmd/kube-controller-manager" // the Deployment, ReplicaSet, Job and CronJob controllers
	_ "k8s.io/kubernetes/cmd/kube-scheduler"          // binds pods to the kwok nodes
	_ "sigs.k8s.io/kwok/cmd/kwok"                     // simulated nodes: there is no kubelet here
)
