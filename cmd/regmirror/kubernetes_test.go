package main

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The manifests in deploy/kubernetes are read as plain YAML into the few
// fields this test checks, not into k8s.io/api's types: those would bring
// dozens of modules into go.sum for one test, and what can go wrong here
// is regmirror's side (ports, paths, names that must agree with each
// other, the Dockerfile and the code), which these fields cover.
const kubernetesDir = "../../deploy/kubernetes"

type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Resources  []string          `yaml:"resources"`  // Kustomization
	Data       map[string]string `yaml:"data"`       // ConfigMap
	StringData map[string]string `yaml:"stringData"` // Secret
	Spec       struct {
		// Service; a StatefulSet's and a PodDisruptionBudget's hold matchLabels
		Selector                 map[string]any `yaml:"selector"`
		ClusterIP                string         `yaml:"clusterIP"`
		PublishNotReadyAddresses *bool          `yaml:"publishNotReadyAddresses"`
		Ports                    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
		// StatefulSet
		Replicas    *int   `yaml:"replicas"`
		ServiceName string `yaml:"serviceName"`
		Template    struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec k8sPodSpec `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type k8sPodSpec struct {
	SecurityContext struct {
		RunAsNonRoot *bool `yaml:"runAsNonRoot"`
		RunAsUser    *int  `yaml:"runAsUser"`
		RunAsGroup   *int  `yaml:"runAsGroup"`
		FSGroup      *int  `yaml:"fsGroup"`
	} `yaml:"securityContext"`
	Containers []k8sContainer `yaml:"containers"`
	Volumes    []k8sVolume    `yaml:"volumes"`
}

type k8sVolume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
	} `yaml:"secret"`
}

type k8sContainer struct {
	Name string   `yaml:"name"`
	Args []string `yaml:"args"`
	Env  []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	StartupProbe   *k8sProbe `yaml:"startupProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

// k8sManifests reads every object of every YAML file in kubernetesDir,
// one of each kind.
func k8sManifests(t *testing.T) (files []string, objects map[string]k8sObject) {
	t.Helper()
	files, list := k8sObjectsIn(t, kubernetesDir)
	objects = map[string]k8sObject{}
	for _, obj := range list {
		if _, dup := objects[obj.Kind]; dup {
			t.Fatalf("two objects of kind %s", obj.Kind)
		}
		objects[obj.Kind] = obj
	}
	return files, objects
}

// k8sObjectsIn reads every object of every YAML file in dir.
func k8sObjectsIn(t *testing.T, dir string) (files []string, objects []k8sObject) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	for _, path := range paths {
		files = append(files, filepath.Base(path))
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var obj k8sObject
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if obj.APIVersion == "" || obj.Kind == "" {
				t.Fatalf("%s: an object without apiVersion or kind", path)
			}
			objects = append(objects, obj)
		}
	}
	return files, objects
}

// dockerfileFacts are what the image says about the user, the port and the
// data directory.
func dockerfileFacts(t *testing.T) (uid, gid, port int, dataDir string) {
	t.Helper()
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	find := func(re string) []string {
		m := regexp.MustCompile(re).FindStringSubmatch(string(data))
		if m == nil {
			t.Fatalf("the Dockerfile has no match for %s", re)
		}
		return m
	}
	user := find(`(?m)^USER (\d+):(\d+)$`)
	uid, _ = strconv.Atoi(user[1])
	gid, _ = strconv.Atoi(user[2])
	port, _ = strconv.Atoi(find(`(?m)^EXPOSE (\d+)$`)[1])
	return uid, gid, port, find(`REGMIRROR_DATA_DIR=(\S+)`)[1]
}

// The manifests agree with each other, with the Dockerfile and with the
// code: the probes hit the daemon's health endpoints on its port, the
// config's listen port and data directory are the container's port and
// its volume, the password files are keys of the Secret, and the
// container runs as the image's unprivileged user with nothing to spare.
func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	files, objects := k8sManifests(t)
	uid, gid, imagePort, imageDataDir := dockerfileFacts(t)

	kustomize := objects["Kustomization"]
	if want := slices.DeleteFunc(slices.Clone(files), func(f string) bool { return f == "kustomization.yaml" }); !sameStrings(kustomize.Resources, want) {
		t.Errorf("kustomization.yaml lists %v, want every manifest: %v", kustomize.Resources, want)
	}
	cm, secret, svc, sts := objects["ConfigMap"], objects["Secret"], objects["Service"], objects["StatefulSet"]
	if cm.Kind == "" || secret.Kind == "" || svc.Kind == "" || sts.Kind == "" {
		t.Fatalf("want a ConfigMap, a Secret, a Service and a StatefulSet; have %v", slices.Collect(maps.Keys(objects)))
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

	// The config file: the ConfigMap's key at the path serve is given.
	configPath := flagValue(c.Args, "--config")
	configVolume := volumeAt(t, mounts, filepath.Dir(configPath))
	if v := podVolume(pod, configVolume); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != cm.Metadata.Name {
		t.Errorf("--config %s is not in the ConfigMap %s", configPath, cm.Metadata.Name)
	}
	configText, ok := cm.Data[filepath.Base(configPath)]
	if !ok || c.Args[0] != "serve" {
		t.Fatalf("args %v: want serve with the ConfigMap's %s", c.Args, filepath.Base(configPath))
	}
	configFile := writeConfig(t, configText)
	if code, _, stderr := runExit(t, "config", "check", "--quiet", "--no-files", "--config", configFile); code != exitOK {
		t.Fatalf("the ConfigMap's config fails config check:\n%s", stderr)
	}
	cfg, err := loadConfig(configFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.withDefaults()

	// Ports: the config's, the image's, the container's, the Service's.
	_, listenPort, _ := net.SplitHostPort(cfg.Listen)
	_, defaultPort, _ := net.SplitHostPort(defaultListen)
	if listenPort != defaultPort || listenPort != strconv.Itoa(imagePort) {
		t.Errorf("listen %s: want the default port %s, which the Dockerfile exposes (%d)", cfg.Listen, defaultPort, imagePort)
	}
	portNames := map[string]int{}
	for _, p := range c.Ports {
		portNames[p.Name] = p.ContainerPort
	}
	if len(c.Ports) != 1 || strconv.Itoa(c.Ports[0].ContainerPort) != listenPort {
		t.Errorf("container ports %+v, want the one the config listens on, %s", c.Ports, listenPort)
	}
	if len(svc.Spec.Ports) != 1 || k8sPort(svc.Spec.Ports[0].TargetPort, portNames) != c.Ports[0].ContainerPort ||
		strconv.Itoa(svc.Spec.Ports[0].Port) != listenPort {
		t.Errorf("Service ports %+v do not lead to the container's %+v", svc.Spec.Ports, c.Ports)
	}
	for k, v := range svc.Spec.Selector {
		if sts.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("the Service selects %s=%v, which the pod does not carry", k, v)
		}
	}

	// The data directory: the image's volume, on the claim.
	if cfg.DataDir != imageDataDir || mounts[sts.Spec.VolumeClaimTemplates[0].Metadata.Name] != cfg.DataDir {
		t.Errorf("data_dir %s: want the Dockerfile's %s, mounted from the volume claim", cfg.DataDir, imageDataDir)
	}
	if r := sts.Spec.Replicas; r == nil || *r != 1 {
		t.Error("replicas: want 1, the one pod that may lock the cache")
	}

	// Credentials: every password_file is a key of the Secret, where it is mounted.
	secretVolume := ""
	for _, u := range cfg.Upstreams {
		if u.PasswordFile == "" {
			continue
		}
		secretVolume = volumeAt(t, mounts, filepath.Dir(u.PasswordFile))
		if v := podVolume(pod, secretVolume); v == nil || v.Secret == nil || v.Secret.SecretName != secret.Metadata.Name {
			t.Errorf("%s: password_file %s is not in the Secret %s", u.Host, u.PasswordFile, secret.Metadata.Name)
		}
		if _, ok := secret.StringData[filepath.Base(u.PasswordFile)]; !ok {
			t.Errorf("%s: the Secret has no key %s", u.Host, filepath.Base(u.PasswordFile))
		}
	}
	if secretVolume == "" {
		t.Error("no upstream reads its password from the Secret")
	}
	checkVolumesMounted(t, pod, mounts, sts.Spec.VolumeClaimTemplates[0].Metadata.Name)
	checkHardened(t, pod, c, uid, gid)

	// Probes: the daemon, run with this config, answers them.
	for i := range cfg.Upstreams {
		if cfg.Upstreams[i].PasswordFile != "" {
			cfg.Upstreams[i].PasswordFile = writeConfig(t, secret.StringData[filepath.Base(cfg.Upstreams[i].PasswordFile)])
		}
	}
	cfg.DataDir = shortTempDir(t)
	checkProbesAnswered(t, c, portNames, cfg)
}

// checkVolumesMounted checks that every mount has its volume (or is the
// claim's) and every volume is mounted.
func checkVolumesMounted(t *testing.T, pod k8sPodSpec, mounts map[string]string, claim string) {
	t.Helper()
	for name := range mounts {
		if podVolume(pod, name) == nil && name != claim {
			t.Errorf("volume mount %s has no volume", name)
		}
	}
	for _, v := range pod.Volumes {
		if _, ok := mounts[v.Name]; !ok {
			t.Errorf("volume %s is not mounted", v.Name)
		}
	}
}

// checkHardened checks that the container runs as the image's user with
// no privileges and a read-only root, and has resources set.
func checkHardened(t *testing.T, pod k8sPodSpec, c k8sContainer, uid, gid int) {
	t.Helper()
	sc := pod.SecurityContext
	if !isTrue(sc.RunAsNonRoot) || sc.RunAsUser == nil || *sc.RunAsUser != uid || sc.RunAsGroup == nil || *sc.RunAsGroup != gid ||
		sc.FSGroup == nil || *sc.FSGroup != gid {
		t.Errorf("pod securityContext %+v: want runAsNonRoot, the Dockerfile's user %d:%d and fsGroup %d", sc, uid, gid, gid)
	}
	csc := c.SecurityContext
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation || !isTrue(csc.ReadOnlyRootFilesystem) ||
		!slices.Equal(csc.Capabilities.Drop, []string{"ALL"}) {
		t.Errorf("container securityContext %+v: want no privilege escalation, a read-only root, every capability dropped", csc)
	}
	if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
}

// checkProbesAnswered runs the daemon with cfg and checks that it answers
// the container's probes on the registry's port: liveness on /healthz,
// readiness on /readyz.
func checkProbesAnswered(t *testing.T, c k8sContainer, portNames map[string]int, cfg Config) {
	t.Helper()
	probes := map[string]*k8sProbe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Fatal("want a liveness probe on /healthz and a readiness probe on /readyz")
	}
	url, _ := startDaemon(t, cfg, &logBuffer{})
	for kind, p := range probes {
		if p == nil {
			continue
		}
		if k8sPort(p.HTTPGet.Port, portNames) != c.Ports[0].ContainerPort {
			t.Errorf("%s probe on port %v, want the registry's", kind, p.HTTPGet.Port)
		}
		resp, err := http.Get(url + p.HTTPGet.Path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s probe GET %s = %d on a healthy daemon", kind, p.HTTPGet.Path, resp.StatusCode)
		}
	}
}

// flagValue is the value of --name in args ("--name value" or "--name=value").
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// volumeAt is the volume mounted at dir.
func volumeAt(t *testing.T, mounts map[string]string, dir string) string {
	t.Helper()
	for name, path := range mounts {
		if path == dir {
			return name
		}
	}
	t.Errorf("nothing is mounted at %s", dir)
	return ""
}

func podVolume(pod k8sPodSpec, name string) *k8sVolume {
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

// k8sPort resolves a port given by number or by the container port's name.
func k8sPort(port any, names map[string]int) int {
	switch p := port.(type) {
	case int:
		return p
	case string:
		return names[p]
	}
	return 0
}

func isTrue(b *bool) bool { return b != nil && *b }

func sameStrings(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
