"""The status page's templates (Jinja2, autoescaped), script and style, kept in the
package as text so an installed baton serves them with nothing to build or find."""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>baton</title>
<link rel="stylesheet" href="/ui/page.css">
<script src="/ui/page.js" defer></script>
</head>
<body data-every="{{ every }}">
<div id="conn" class="conn ok">live</div>
<main id="view">{{ body | safe }}</main>
</body>
</html>
"""

VIEW = """{% macro yes_no(said) %}{% if said is none %}-{% elif said %}<span class="yes">yes</span>
{%- else %}<span class="no">NO</span>{% endif %}{% endmacro %}<header>
  <h1><span id="me">{{ v.me }}</span> is
    <span id="role" class="role {{ v.role }}">{{ v.role }}</span></h1>
  <p>holder <strong id="holder" data-machine-id="{{ v.holder_id }}">{{ v.holder }}</strong>,
     epoch <strong id="epoch">{{ v.epoch }}</strong>
     <span class="muted">· updated <span id="updated">{{ v.updated }}</span></span></p>
</header>
<section id="alarms" class="{{ 'bad' if v.alarms else 'good' }}">
  <h2>Alarms</h2>
  {% if v.alarms %}<ul>{% for a in v.alarms %}
    <li data-kind="{{ a.kind }}"><strong>{{ a.kind }}</strong>: {{ a.detail }}</li>{% endfor %}
  </ul>{% else %}<p id="no-alarms">none</p>{% endif %}
</section>
<section id="lease">
  <h2>Lease</h2>
  <dl>
    <dt>holder</dt><dd>{{ v.holder }} (epoch {{ v.epoch }})</dd>
    <dt>time</dt><dd id="lease-left">{{ v.lease.left }}</dd>
    <dt>ttl</dt><dd>{{ v.lease.ttl }}</dd>
    <dt>store</dt><dd id="lease-store">{{ v.lease.store }}
      {% if v.lease.store_ok is false %}
        <span class="no">does not answer: {{ v.lease.store_error }}</span>
      {% elif v.lease.store_ok %}<span class="yes">answers</span>{% endif %}</dd>
  </dl>
</section>
<section id="mesh">
  <h2>Machines</h2>
  <table>
    <thead><tr><th>machine</th><th>role</th><th>version</th><th>reachable</th><th>round trip</th>
      <th>in sync</th><th>endpoint</th><th>last seen</th></tr></thead>
    <tbody>{% for m in v.machines %}
      <tr data-machine-id="{{ m.machine_id }}" data-role="{{ m.role }}">
        <td>{{ m.nickname }}{% if m.this %} <span class="muted">(this)</span>{% endif %}</td>
        <td class="role {{ m.role }}">{{ m.role }}</td>
        <td>{{ m.version }}</td>
        <td>{{ yes_no(m.reachable) }}</td>
        <td>{{ m.rtt }}</td>
        <td>{{ yes_no(m.in_sync) }}</td>
        <td class="mono">{{ m.via }}</td>
        <td>{{ m.seen }}</td>
      </tr>{% endfor %}
    </tbody>
  </table>
</section>
<section id="replies">
  <h2>Replies</h2>
  {% if v.replies %}<dl>
    <dt>answered</dt><dd id="answered">{{ v.replies.answered }}</dd>
    <dt>pending</dt><dd id="pending">{{ v.replies.pending }}</dd>
    <dt>queued to send</dt><dd>{{ v.replies.queued }}</dd>
    <dt>ambiguous sends</dt><dd>{{ v.replies.ambiguous }}</dd>
    <dt>channel</dt><dd>{{ v.replies.channel }} with {{ v.replies.agent }}
      ({{ 'answering' if v.replies.answering else 'standing by' }})</dd>
  </dl>{% else %}<p>no channel: this machine answers nothing</p>{% endif %}
  {% if v.tail %}<h3>Live tail</h3>
  <p>{{ v.tail.role }}: {{ v.tail.turns }} turns of {{ v.tail.topics }} topics</p>
  {% if v.tail.lag %}<ul id="tail-lag">{% for peer, n in v.tail.lag %}
    <li>{{ peer }}: {{ n }} turns behind</li>{% endfor %}</ul>{% endif %}{% endif %}
</section>
<section id="topics">
  <h2>Topics</h2>
  {% if v.topics is none %}<p class="muted">the pool is off: every topic runs on the holder</p>
  {% elif v.topics.error %}<p class="no">{{ v.topics.error }}</p>
  {% else %}<table>
    <thead><tr><th>topic</th><th>runs on</th><th>why</th></tr></thead>
    <tbody>{% for t in v.topics.rows %}
      <tr><td>{{ t.topic }}</td>
        <td>{{ t.machine }}{% if not t.alive %} <span class="no">(not alive)</span>{% endif %}</td>
        <td>{{ t.why }}{% if t.waiting %} (waiting){% endif %}</td></tr>{% endfor %}
    </tbody>
  </table>{% if v.topics.total > v.topics.rows | length %}
  <p class="muted">{{ v.topics.total }} in all</p>{% endif %}{% endif %}
</section>
<section id="timeline">
  <h2>Timeline</h2>
  <ol>{% for e in v.timeline %}
    <li class="{{ e.kind }}"><time>{{ e.at }}</time> {{ e.what }}</li>{% endfor %}
  </ol>
</section>
"""

SIGN_IN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>baton: sign in</title>
<link rel="stylesheet" href="/ui/page.css"></head>
<body><main><h1>baton</h1>
<p id="sign-in">Run <code>baton ui</code> on this machine and open the one-time URL it prints.</p>
</main></body></html>
"""

USED = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>baton: login refused</title>
<link rel="stylesheet" href="/ui/page.css"></head>
<body><main><h1>baton</h1>
<p id="login-refused">This login URL was used already or has expired.
Run <code>baton ui</code> again for a new one.</p>
</main></body></html>
"""

SCRIPT = """'use strict';
// Fetch the page's body every few seconds and swap it in; say so when the node does not
// answer (the last view stays, marked stale) or the session has ended. While the body
// has data-hold set, the view is held still (to read or to capture it) and updates wait.
(function () {
  const every = Number(document.body.dataset.every) || 2000;
  const conn = document.getElementById('conn');
  const view = document.getElementById('view');
  let failingSince = null;
  function say(text, kind) { conn.textContent = text; conn.className = 'conn ' + kind; }
  async function update() {
    if (document.body.dataset.hold) { setTimeout(update, every); return; }
    try {
      const r = await fetch('/ui/view', {credentials: 'same-origin', cache: 'no-store'});
      if (r.status === 401) {
        say('signed out: run baton ui for a new login URL', 'bad');
        return;  // no more updates
      }
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const body = await r.text();
      if (document.body.dataset.hold) { setTimeout(update, every); return; }
      view.innerHTML = body;
      view.classList.remove('stale');
      failingSince = null;
      say('live', 'ok');
    } catch (e) {
      failingSince = failingSince || new Date();
      view.classList.add('stale');
      say('the node does not answer since ' + failingSince.toLocaleTimeString(), 'bad');
    }
    setTimeout(update, every);
  }
  setTimeout(update, every);
})();
"""

STYLE = """body { font: 15px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 70em;
  padding: 1em; color: #1b1f24; background: #fafafa; }
h1 { font-size: 1.5em; margin: 0.2em 0; } h2 { font-size: 1.1em; margin: 1em 0 0.3em; }
section { background: #fff; border: 1px solid #d8dde3; border-radius: 6px;
  padding: 0.5em 1em; margin: 0.8em 0; }
#alarms.bad { border-color: #c62828; background: #fdecea; } #alarms.good p { color: #2e7d32; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.25em 0.6em; border-bottom: 1px solid #eceff3; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; margin: 0; }
dt { color: #57606a; } dd { margin: 0; }
.role.awake { color: #1b5e20; font-weight: bold; } .role.standby { color: #0d47a1; }
.yes { color: #2e7d32; } .no { color: #c62828; font-weight: bold; }
.muted { color: #6a737d; } .mono, code { font-family: ui-monospace, monospace; }
.conn { position: fixed; top: 0.5em; right: 0.5em; padding: 0.2em 0.6em;
  border-radius: 4px; font-size: 0.85em; }
.conn.ok { background: #e8f5e9; color: #1b5e20; } .conn.bad { background: #c62828; color: #fff; }
.stale { opacity: 0.55; }
#timeline ol { list-style: none; padding: 0; margin: 0; }
#timeline li { padding: 0.15em 0; } #timeline li.holder { font-weight: bold; }
#timeline time { color: #57606a; font-family: ui-monospace, monospace; margin-right: 0.6em; }
"""
