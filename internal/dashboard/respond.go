package dashboard

import (
	"encoding/json"
	"html/template"
	"net/http"
)

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// apiError is the body of every failed API request.
type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, apiError{Error: msg})
}

var loginTemplate = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>goray dashboard: log in</title><link rel="stylesheet" href="/static/app.css"></head>
<body class="login"><main class="login-box">
<h1><span class="logo">goray</span> dashboard</h1>
<form method="post" action="/login">
<label for="token">Cluster token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus required
 placeholder="64 hex digits: the head's session directory, auth_token">
<button type="submit" id="login">Log in</button>
{{if .}}<p class="error" id="login-error">{{.}}</p>{{end}}
</form>
<p class="hint">The token is in the file <code>goray start --head</code> printed as "Auth token" (<code>&lt;session dir&gt;/auth_token</code>).</p>
</main></body></html>
`))

func writeLogin(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = loginTemplate.Execute(w, msg)
}
