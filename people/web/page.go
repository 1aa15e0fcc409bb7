package web

// pageHTML is the one template of the pages: plain HTML, no script or inline style (the
// web listener's content security policy allows neither).
const pageHTML = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} · maintproxy</title></head>
<body>
<h1>{{.Title}}</h1>
{{if .Error}}<p role="alert" id="error">{{.Error}}</p>{{end}}
{{if .Done}}<p id="done">{{.Done}}</p>{{end}}
{{if .SignIn}}
<form method="post" action="/account/signin">
<label>Username <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form>
{{else}}
<p id="me">Signed in as <b>{{.Me.Username}}</b> ({{.Me.Role}}{{if .Me.Org}}, {{.Me.Org}}{{end}}{{if .Me.Customer}}, customer {{.Me.Customer}}{{end}}).</p>
<form method="post" action="/account/signout"><input type="hidden" name="csrf" value="{{.CSRF}}"><button type="submit">Sign out</button></form>

<h2>Change your password</h2>
<form method="post" action="/account/action" id="password">
<input type="hidden" name="csrf" value="{{.CSRF}}"><input type="hidden" name="action" value="password">
<label>Current <input name="current" type="password" autocomplete="current-password" required></label>
<label>New <input name="new" type="password" autocomplete="new-password" required></label>
<button type="submit">Change</button>
</form>

{{if .Supervisor}}
<h2>Proxy account password</h2>
<p>The password of the organisation's shared proxy account <b>{{.Me.Org}}</b>. The old one stops working at once; tunnels already open stay open.</p>
<form method="post" action="/account/action" id="account-password">
<input type="hidden" name="csrf" value="{{.CSRF}}"><input type="hidden" name="action" value="account-password">
<label>New <input name="new" type="password" autocomplete="new-password" required></label>
<label>Repeat <input name="repeat" type="password" autocomplete="new-password" required></label>
<button type="submit">Change</button>
</form>

<h2>People</h2>
<table id="people"><tr><th>Username</th><th>Name</th><th>Organisation</th><th>Role</th><th>State</th><th></th></tr>
{{range .People}}<tr><td>{{.Username}}</td><td>{{.Name}}</td><td>{{.Org}}</td><td>{{.Role}}</td><td>{{if .Disabled}}disabled{{else}}enabled{{end}}</td>
<td>{{if ne .Username $.Me.Username}}<form method="post" action="/account/action"><input type="hidden" name="csrf" value="{{$.CSRF}}">
<input type="hidden" name="username" value="{{.Username}}">{{if .Disabled}}<button name="action" value="enable">Enable</button>{{else}}<button name="action" value="disable">Disable</button>{{end}}</form>{{end}}</td></tr>
{{end}}</table>
<form method="post" action="/account/action" id="add-person">
<input type="hidden" name="csrf" value="{{.CSRF}}"><input type="hidden" name="action" value="add-person">
<label>Username <input name="username" required></label><label>Name <input name="name"></label>
<label>Role <select name="role"><option>operator</option><option>readonly</option><option>supervisor</option></select></label>
<label>Password <input name="password" type="password" autocomplete="new-password" required></label>
<button type="submit">Add</button>
</form>
{{end}}

{{if .CustomerAdm}}
<h2>Access modes</h2>
<p>Systems not listed let every technician of your provider in (always).</p>
<table id="modes"><tr><th>System</th><th>Mode</th></tr>{{range .Modes}}<tr><td>{{.Customer}}-{{.System}}</td><td>{{.Mode}}</td></tr>{{end}}</table>
<form method="post" action="/account/action" id="mode">
<input type="hidden" name="csrf" value="{{.CSRF}}"><input type="hidden" name="action" value="mode"><input type="hidden" name="customer" value="{{.Me.Customer}}">
<label>System <input name="system" required></label>
<label>Mode <select name="mode"><option>approval</option><option>always</option></select></label>
<button type="submit">Set</button>
</form>
<h2>Access requests</h2>
<table id="requests"><tr><th>When</th><th>Who</th><th>System</th><th>State</th><th></th></tr>
{{range .Requests}}<tr><td>{{when .At}}</td><td>{{.Username}} ({{.Org}})</td><td>{{.Customer}}-{{.System}}</td><td>{{.State}}</td>
<td>{{if eq .State "pending"}}<form method="post" action="/account/action"><input type="hidden" name="csrf" value="{{$.CSRF}}"><input type="hidden" name="id" value="{{.ID}}">
<select name="duration"><option>1h</option><option selected>4h</option><option>8h</option><option>24h</option></select>
<button name="action" value="grant">Grant</button><button name="action" value="deny">Deny</button></form>{{end}}</td></tr>
{{end}}</table>
<h2>Grants in force</h2>
<table id="grants"><tr><th>Who</th><th>System</th><th>Until</th><th>By</th></tr>{{range .Grants}}<tr><td>{{.Username}}</td><td>{{.Customer}}-{{.System}}</td><td>{{when .Until}}</td><td>{{.By}}</td></tr>{{end}}</table>
{{end}}

{{if .Tunnels}}
<h2>Open tunnels</h2>
<table id="tunnels"><tr><th>Since</th><th>Who</th><th>Target</th><th>From</th><th></th></tr>
{{range .Tunnels}}<tr><td>{{when .Since}}</td><td>{{.Person}} ({{.Org}})</td><td>{{.Target}}</td><td>{{.Client}}</td>
<td><form method="post" action="/account/action"><input type="hidden" name="csrf" value="{{$.CSRF}}"><input type="hidden" name="session" value="{{.Session}}">
<button name="action" value="end-tunnel">End</button></form></td></tr>{{end}}</table>
{{end}}

<h2>History (30 days, newest last)</h2>
<table id="history"><tr><th>When</th><th>What</th><th>Who</th><th>System</th><th>Result</th><th>Bytes up/down</th><th>Duration</th></tr>
{{range .History}}<tr><td>{{when .Time}}</td><td>{{.Kind}}</td><td>{{.Person}}{{if .Org}} ({{.Org}}){{end}}</td><td>{{.Target}}</td><td>{{.Result}} {{.Detail}}</td><td>{{.BytesUp}}/{{.BytesDn}}</td><td>{{.Duration}} ms</td></tr>{{end}}
</table>
{{end}}
</body></html>
`
