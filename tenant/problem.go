package tenant

import (
	"encoding/json"
	"net/http"
)

// Problem is an RFC 9457 problem detail, the body the [Middleware] sends for
// every request it refuses. Services can use [WriteProblem] for their own
// errors so clients see one error format.
type Problem struct {
	// Type is a URI naming the problem type. Defaults to "about:blank".
	Type string `json:"type"`
	// Title is a short summary. Defaults to the HTTP status text.
	Title string `json:"title"`
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Detail explains this occurrence to the client. It must not carry
	// internal details such as SQL errors.
	Detail string `json:"detail,omitempty"`
	// Instance is a URI naming this occurrence, usually the request path.
	Instance string `json:"instance,omitempty"`
}

// WriteProblem writes p as application/problem+json with p.Status as the
// response code.
func WriteProblem(w http.ResponseWriter, p Problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	body, err := json.Marshal(p)
	if err != nil { // unreachable: Problem holds only strings and an int
		http.Error(w, p.Title, p.Status)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}
