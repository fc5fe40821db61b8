package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// engine speaks the Docker Engine API (the subset testenv needs) over
// DOCKER_HOST: unix:// (the default, /var/run/docker.sock) or tcp:// without
// TLS. It is written against the API itself so that no Docker client library
// enters the module's dependency graph: the library's users build with
// nothing of Docker (go mod graph shows none).
type engine struct {
	http *http.Client
	base string // "http://docker" for a socket, "http://host:port" for tcp
}

// newEngine returns a client for DOCKER_HOST.
func newEngine() (*engine, error) {
	host := os.Getenv("DOCKER_HOST")
	if host == "" {
		host = "unix:///var/run/docker.sock"
	}
	u, err := url.Parse(host)
	if err != nil {
		return nil, fmt.Errorf("DOCKER_HOST %q: %w", host, err)
	}
	switch u.Scheme {
	case "unix":
		path := u.Path
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}}
		return &engine{http: &http.Client{Transport: tr}, base: "http://docker"}, nil
	case "tcp", "http":
		if os.Getenv("DOCKER_TLS_VERIFY") != "" {
			return nil, fmt.Errorf("DOCKER_HOST %q with DOCKER_TLS_VERIFY: testenv speaks to an engine on a socket or plain tcp only", host)
		}
		return &engine{http: &http.Client{}, base: "http://" + u.Host}, nil
	}
	return nil, fmt.Errorf("DOCKER_HOST %q: unix:// or tcp:// expected", host)
}

// engineError is a status the engine answered with, and its message.
type engineError struct {
	Status  int
	Message string
}

func (e *engineError) Error() string { return fmt.Sprintf("docker engine: %d %s", e.Status, e.Message) }

// do sends a request (body marshalled as JSON unless nil) and decodes a 2xx
// JSON answer into out (unless nil).
func (e *engine) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	u := e.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var msg struct{ Message string }
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(b, &msg) != nil || msg.Message == "" {
			msg.Message = strings.TrimSpace(string(b))
		}
		return &engineError{Status: resp.StatusCode, Message: msg.Message}
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (e *engine) ping(ctx context.Context) error {
	return e.do(ctx, http.MethodGet, "/_ping", nil, nil, nil)
}

// hasImage reports whether the engine holds image (repository:tag).
func (e *engine) hasImage(ctx context.Context, image string) (bool, error) {
	err := e.do(ctx, http.MethodGet, "/images/"+image+"/json", nil, nil, nil)
	var ee *engineError
	if errors.As(err, &ee) && ee.Status == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

// pull fetches repo:tag; the engine streams progress, with an "error" field
// when the pull fails.
func (e *engine) pull(ctx context.Context, repo, tag string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.base+"/images/create?"+url.Values{"fromImage": {repo}, "tag": {tag}}.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return &engineError{Status: resp.StatusCode, Message: strings.TrimSpace(string(b))}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m struct{ Error string }
		if json.Unmarshal(sc.Bytes(), &m) == nil && m.Error != "" {
			return errors.New(m.Error)
		}
	}
	return sc.Err()
}

// ContainerInfo is what testenv and its tests read of a container
// (GET /containers/{id}/json).
type ContainerInfo struct {
	ID    string
	State struct{ Running bool }
	// Config is the container's configuration.
	Config struct {
		Env    []string
		Cmd    []string
		Labels map[string]string
	}
	// HostConfig holds the network mode ("host", "bridge", "default").
	HostConfig struct{ NetworkMode string }
	// NetworkSettings holds the published ports, by "5432/tcp".
	NetworkSettings struct {
		Ports map[string][]struct{ HostIP, HostPort string }
	}
}

// runSpec is a container to create and start.
type runSpec struct {
	image  string
	cmd    []string
	env    []string
	labels map[string]string
	port   string // published on a free 127.0.0.1 port unless host
	host   bool   // the host's network
}

// run creates and starts a container, removed by the engine when it stops,
// and returns its ID. A container that fails to start is removed.
func (e *engine) run(ctx context.Context, s runSpec) (string, error) {
	type binding struct{ HostIP, HostPort string }
	hostConfig := map[string]any{"AutoRemove": true, "RestartPolicy": map[string]string{"Name": "no"}}
	body := map[string]any{"Image": s.image, "Env": s.env, "Labels": s.labels, "HostConfig": hostConfig}
	if len(s.cmd) > 0 {
		body["Cmd"] = s.cmd
	}
	if s.host {
		hostConfig["NetworkMode"] = "host"
	} else {
		body["ExposedPorts"] = map[string]struct{}{s.port + "/tcp": {}}
		hostConfig["PortBindings"] = map[string][]binding{s.port + "/tcp": {{HostIP: "127.0.0.1"}}}
	}
	var created struct{ ID string }
	if err := e.do(ctx, http.MethodPost, "/containers/create", nil, body, &created); err != nil {
		return "", err
	}
	if err := e.do(ctx, http.MethodPost, "/containers/"+created.ID+"/start", nil, nil, nil); err != nil {
		_ = e.remove(context.WithoutCancel(ctx), created.ID)
		return "", err
	}
	return created.ID, nil
}

// inspect reads a container.
func (e *engine) inspect(ctx context.Context, id string) (ContainerInfo, error) {
	var c ContainerInfo
	err := e.do(ctx, http.MethodGet, "/containers/"+id+"/json", nil, nil, &c)
	return c, err
}

// remove force-removes a container and its volumes; one already gone (the
// engine removes a stopped container itself) is no error.
func (e *engine) remove(ctx context.Context, id string) error {
	err := e.do(ctx, http.MethodDelete, "/containers/"+id, url.Values{"force": {"true"}, "v": {"true"}}, nil, nil)
	var ee *engineError
	if errors.As(err, &ee) && (ee.Status == http.StatusNotFound || ee.Status == http.StatusConflict) {
		return nil // gone, or being removed already
	}
	return err
}

// InspectContainer reads a container testenv started (Service.Container),
// for tests that check where a service runs.
func InspectContainer(ctx context.Context, id string) (ContainerInfo, error) {
	e, err := dockerEngine()
	if err != nil {
		return ContainerInfo{}, err
	}
	return e.inspect(ctx, id)
}

// retry calls f until it succeeds or wait has passed, backing off from
// 100 ms to 2 s.
func retry(ctx context.Context, wait time.Duration, f func() error) error {
	deadline := time.Now().Add(wait)
	delay := 100 * time.Millisecond
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 2*time.Second)
	}
}
