package main

import (
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/internal/cluster"
	"github.com/regmirror/regmirror/internal/s3test"
)

// kubernetesClusterDir holds the manifests of three replicas in a cluster.
const kubernetesClusterDir = "../../deploy/kubernetes/cluster"

// k8sPodIP stands for the address the downward API gives a pod.
const k8sPodIP = "10.244.1.7"

// k8sByName finds the object of kind and name among objects.
func k8sByName(t *testing.T, objects []k8sObject, kind, name string) k8sObject {
	t.Helper()
	for _, o := range objects {
		if o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	t.Fatalf("no %s %s among the manifests", kind, name)
	return k8sObject{}
}

// k8sMatchLabels is a StatefulSet's or PodDisruptionBudget's
// selector.matchLabels.
func k8sMatchLabels(selector map[string]any) map[string]any {
	m, _ := selector["matchLabels"].(map[string]any)
	return m
}

// checkSelects checks that a non-empty selector picks the pods' labels.
func checkSelects(t *testing.T, who string, selector map[string]any, labels map[string]string) {
	t.Helper()
	if len(selector) == 0 {
		t.Errorf("%s selects nothing", who)
	}
	for k, v := range selector {
		if labels[k] != v {
			t.Errorf("%s selects %s=%v, which the pods do not carry", who, k, v)
		}
	}
}

// k8sEnv is the container's environment as the kubelet gives it to the
// process, with $(VAR) references to earlier variables expanded and
// fieldRefs answered from fields.
func k8sEnv(t *testing.T, c k8sContainer, fields map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			v, ok := fields[e.ValueFrom.FieldRef.FieldPath]
			if !ok {
				t.Fatalf("env %s: fieldRef %s is not one this test knows", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
			env[e.Name] = v
		default:
			v := e.Value
			for name, value := range env {
				v = strings.ReplaceAll(v, "$("+name+")", value)
			}
			if strings.Contains(v, "$(") {
				t.Errorf("env %s = %q refers to a variable not defined before it", e.Name, e.Value)
			}
			env[e.Name] = v
		}
	}
	return env
}

// The cluster's manifests agree with each other, the Dockerfile and the
// code: the config every pod reads, with cluster.self from the pod's IP,
// passes config check; self is the URL its peers build from the headless
// Service's address for the pod; the headless Service is the StatefulSet's
// and selects its pods; the secret file is a key of the mounted Secret,
// whose placeholder the daemon refuses; and a daemon run with the config
// answers the probes.
func TestKubernetesClusterManifests(t *testing.T) {
	t.Parallel()
	files, objects := k8sObjectsIn(t, kubernetesClusterDir)
	uid, gid, imagePort, imageDataDir := dockerfileFacts(t)

	kustomize := k8sByName(t, objects, "Kustomization", "")
	if want := slices.DeleteFunc(slices.Clone(files), func(f string) bool { return f == "kustomization.yaml" }); !sameStrings(kustomize.Resources, want) {
		t.Errorf("kustomization.yaml lists %v, want every manifest: %v", kustomize.Resources, want)
	}
	sts := k8sByName(t, objects, "StatefulSet", "regmirror")
	cm := k8sByName(t, objects, "ConfigMap", "regmirror-config")
	clients := k8sByName(t, objects, "Service", "regmirror")
	peers := k8sByName(t, objects, "Service", sts.Spec.ServiceName)
	pdb := k8sByName(t, objects, "PodDisruptionBudget", "regmirror")

	// Three pods, each with a claim of its own, found by the headless Service.
	if r := sts.Spec.Replicas; r == nil || *r != 3 {
		t.Errorf("replicas %v: want 3", r)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("%d volume claim templates, want 1: each replica's cache", len(sts.Spec.VolumeClaimTemplates))
	}
	labels := sts.Spec.Template.Metadata.Labels
	checkSelects(t, "the StatefulSet", k8sMatchLabels(sts.Spec.Selector), labels)
	checkSelects(t, "the headless Service "+peers.Metadata.Name, peers.Spec.Selector, labels)
	checkSelects(t, "the Service "+clients.Metadata.Name, clients.Spec.Selector, labels)
	checkSelects(t, "the PodDisruptionBudget", k8sMatchLabels(pdb.Spec.Selector), labels)
	if peers.Spec.ClusterIP != "None" {
		t.Errorf("the StatefulSet's serviceName %s has clusterIP %q: want a headless Service (None)", peers.Metadata.Name, peers.Spec.ClusterIP)
	}
	if peers.Spec.PublishNotReadyAddresses == nil {
		t.Error("the headless Service should say whether pods not ready are peers (publishNotReadyAddresses)")
	}
	if clients.Spec.ClusterIP == "None" {
		t.Error("the clients' Service is headless: want one address spread over the pods")
	}

	pod := sts.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	mounts := map[string]string{} // volume name -> mount path
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	portNames := map[string]int{}
	for _, p := range c.Ports {
		portNames[p.Name] = p.ContainerPort
	}

	// The config file: the ConfigMap's key at the path serve is given, with
	// the environment the pod gets.
	configPath := flagValue(c.Args, "--config")
	if v := podVolume(pod, volumeAt(t, mounts, filepath.Dir(configPath))); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != cm.Metadata.Name {
		t.Errorf("--config %s is not in the ConfigMap %s", configPath, cm.Metadata.Name)
	}
	configText, ok := cm.Data[filepath.Base(configPath)]
	if !ok || c.Args[0] != "serve" {
		t.Fatalf("args %v: want serve with the ConfigMap's %s", c.Args, filepath.Base(configPath))
	}
	env := k8sEnv(t, c, map[string]string{"status.podIP": k8sPodIP})
	self, ok := env["REGMIRROR_CLUSTER_SELF"]
	if !ok {
		t.Fatal("no REGMIRROR_CLUSTER_SELF: every pod would need a config file of its own")
	}
	configFile := writeConfig(t, configText)
	if code, _, stderr := runExit(t, "config", "check", "--quiet", "--no-files", "--config", configFile, "--cluster-self", self); code != exitOK {
		t.Fatalf("the ConfigMap's config with cluster.self %s fails config check:\n%s", self, stderr)
	}
	cfg, err := loadConfig(configFile)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cluster.Self != "" {
		t.Errorf("the ConfigMap sets cluster.self %s, the same for every pod", cfg.Cluster.Self)
	}
	cfg.Cluster.Self = self
	cfg = cfg.withDefaults()

	// Ports: the config's, the image's, the container's, both Services', the peers'.
	_, listenPort, _ := net.SplitHostPort(cfg.Listen)
	if listenPort != strconv.Itoa(imagePort) || len(c.Ports) != 1 || strconv.Itoa(c.Ports[0].ContainerPort) != listenPort {
		t.Errorf("listen %s, container ports %+v: want the Dockerfile's port %d", cfg.Listen, c.Ports, imagePort)
	}
	for _, svc := range []k8sObject{clients, peers} {
		if len(svc.Spec.Ports) != 1 || k8sPort(svc.Spec.Ports[0].TargetPort, portNames) != imagePort || svc.Spec.Ports[0].Port != imagePort {
			t.Errorf("Service %s ports %+v do not lead to the container's %d", svc.Metadata.Name, svc.Spec.Ports, imagePort)
		}
	}
	checkPeersFindSelf(t, cfg.Cluster, peers, listenPort)

	// The data directory: each pod's claim.
	if cfg.DataDir != imageDataDir || mounts[sts.Spec.VolumeClaimTemplates[0].Metadata.Name] != cfg.DataDir {
		t.Errorf("data_dir %s: want the Dockerfile's %s, mounted from the volume claim", cfg.DataDir, imageDataDir)
	}

	// Secrets: each file the config names is a key of a Secret mounted there.
	if cfg.Storage.S3 == nil || cfg.Storage.S3.SecretAccessKeyFile == "" {
		t.Fatal("the ConfigMap has no storage.s3 with a secret_access_key_file: the replicas would not share a bucket")
	}
	secretFiles := map[string]string{"cluster.secret_file": cfg.Cluster.SecretFile,
		"storage.s3.secret_access_key_file": cfg.Storage.S3.SecretAccessKeyFile}
	for _, u := range cfg.Upstreams {
		if u.PasswordFile != "" {
			secretFiles[u.Host+" password_file"] = u.PasswordFile
		}
	}
	contents := map[string]string{} // path in the pod -> the Secret's value
	for key, path := range secretFiles {
		v := podVolume(pod, volumeAt(t, mounts, filepath.Dir(path)))
		if v == nil || v.Secret == nil {
			t.Fatalf("%s %s is not in a Secret", key, path)
		}
		value, ok := k8sByName(t, objects, "Secret", v.Secret.SecretName).StringData[filepath.Base(path)]
		if !ok {
			t.Fatalf("%s %s: the Secret %s has no key %s", key, path, v.Secret.SecretName, filepath.Base(path))
		}
		contents[path] = value
	}
	checkVolumesMounted(t, pod, mounts, sts.Spec.VolumeClaimTemplates[0].Metadata.Name)
	checkHardened(t, pod, c, uid, gid)

	// The placeholder cluster secret is refused: nobody runs on a published key.
	withFiles := cfg
	withFiles.Cluster.SecretFile = writeConfig(t, contents[cfg.Cluster.SecretFile])
	if err := withFiles.Cluster.fileErrors(); len(err) == 0 {
		t.Error("the Secret's placeholder cluster secret is accepted: replace it with one too short to run on")
	}

	// Probes: the daemon, run with this config and a real secret, answers them.
	for i, u := range cfg.Upstreams {
		if u.PasswordFile != "" {
			cfg.Upstreams[i].PasswordFile = writeConfig(t, contents[u.PasswordFile])
		}
	}
	cfg.Cluster.SecretFile = writeClusterSecret(t, clusterSecret)
	cfg.DataDir = shortTempDir(t)
	// The bucket: a real S3 server in place of the ConfigMap's.
	srv := s3test.Start(t)
	s3 := *cfg.Storage.S3
	s3.Endpoint, s3.Bucket, s3.Region, s3.AccessKeyID = "http://"+srv.Endpoint, srv.NewBucket(t), s3test.Region, srv.AccessKey
	s3.SecretAccessKeyFile = writeConfig(t, srv.SecretKey)
	cfg.Storage.S3 = &s3
	checkProbesAnswered(t, c, portNames, cfg)
}

// checkPeersFindSelf checks that cluster.dns names the headless Service
// on the registry's port, and that the URL a peer builds from the
// Service's address for this pod (cluster.dns's port, self's scheme) is
// self: both are the pod's identity for ownership, and a mismatch would
// make every replica count itself twice.
func checkPeersFindSelf(t *testing.T, cc ClusterConfig, peers k8sObject, listenPort string) {
	t.Helper()
	host, port, err := cc.dnsName()
	if err != nil {
		t.Fatalf("cluster.dns: %v", err)
	}
	if name, _, _ := strings.Cut(host, "."); name != peers.Metadata.Name {
		t.Errorf("cluster.dns %s does not name the headless Service %s", cc.DNS, peers.Metadata.Name)
	}
	if strconv.Itoa(port) != listenPort {
		t.Errorf("cluster.dns port %d, want the registry's %s", port, listenPort)
	}
	self, err := cluster.ParsePeer(cc.Self)
	if err != nil {
		t.Fatalf("cluster.self %s: %v", cc.Self, err)
	}
	scheme, _, _ := strings.Cut(self.URL, "://")
	asPeer, err := cluster.ParsePeer(scheme + "://" + net.JoinHostPort(k8sPodIP, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	if self != asPeer {
		t.Errorf("cluster.self %s, but its peers know the pod as %s", self.URL, asPeer.URL)
	}
}
