/* localagent web view: the live parts. No inline script (the page's CSP forbids it), no dependencies.
 *
 * 1. Elements with data-live are refreshed every <body data-refresh> ms: the page's own URL is fetched again
 *    (with live=1) and those elements are swapped for their new versions. The HTML is rendered and escaped
 *    by the server's templates, exactly as on a full page load; nothing from the response is executed.
 * 2. A run's output (#output[data-follow="1"]) follows the API's long-poll, GET /api/flow_runs/{id}/logs?wait=,
 *    and every new line is built with textContent; ANSI colours become classes, other escapes are dropped.
 */
(function () {
  "use strict";

  var MAX_LIVE_LINES = 5000;
  var LINE_CHARS = 4000; /* as output.py: longer lines are cut on the page (the raw download has them whole) */

  function refreshLoop() {
    var every = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
    if (!every || !document.querySelector("[data-live]")) return;
    var timer = null;
    function schedule() { timer = setTimeout(tick, every); }
    function tick() {
      if (document.hidden) { schedule(); return; }
      var url = new URL(window.location.href);
      url.searchParams.set("live", "1");
      url.hash = "";
      fetch(url.toString(), { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (reply) {
          if (reply.redirected && new URL(reply.url).pathname === "/login") { window.location.reload(); return null; }
          return reply.ok ? reply.text() : null;
        })
        .then(function (text) { if (text) swap(text); })
        .catch(function () { /* the server is away: try again on the next tick */ })
        .then(schedule);
    }
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && timer !== null) { clearTimeout(timer); tick(); }
    });
    schedule();
  }

  function swap(text) {
    var fresh = new DOMParser().parseFromString(text, "text/html");
    document.querySelectorAll("[data-live]").forEach(function (old) {
      var next = fresh.getElementById(old.id);
      if (!next) return;
      // Keep what the reader opened (details) across the swap.
      old.querySelectorAll("details[id]").forEach(function (d) {
        var twin = next.querySelector("#" + CSS.escape(d.id));
        if (twin) twin.open = d.open;
      });
      old.replaceWith(document.importNode(next, true));
    });
  }

  /* ---- ANSI SGR -> classes (the same rules as localagent/server/web/ansi.py) ---- */
  var ESCAPE = /\x1b\[([0-9;?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?/g;
  var CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/g;

  function applySgr(params, cls) {
    var codes = params ? params.split(";").map(function (p) { return /^\d+$/.test(p) ? parseInt(p, 10) : 0; }) : [0];
    for (var i = 0; i < codes.length; i++) {
      var c = codes[i];
      if (c === 0) { for (var k in cls) delete cls[k]; }
      else if (c === 1) cls.weight = "a-b";
      else if (c === 2) cls.weight = "a-d";
      else if (c === 22) delete cls.weight;
      else if (c === 3) cls.italic = "a-i";
      else if (c === 23) delete cls.italic;
      else if (c === 4) cls.underline = "a-u";
      else if (c === 24) delete cls.underline;
      else if ((c >= 30 && c <= 37) || (c >= 90 && c <= 97)) cls.fg = "a-f" + (c < 90 ? c - 30 : c - 82);
      else if (c === 39) delete cls.fg;
      else if ((c >= 40 && c <= 47) || (c >= 100 && c <= 107)) cls.bg = "a-g" + (c < 100 ? c - 40 : c - 92);
      else if (c === 49) delete cls.bg;
      else if (c === 38 || c === 48) i += (i + 1 < codes.length && codes[i + 1] === 5) ? 2 : 4;
    }
  }

  function appendText(target, chunk, cls) {
    chunk = chunk.replace(CONTROL, "");
    if (!chunk) return;
    var names = Object.keys(cls).map(function (k) { return cls[k]; }).sort();
    if (!names.length) { target.appendChild(document.createTextNode(chunk)); return; }
    var span = document.createElement("span");
    span.className = names.join(" ");
    span.textContent = chunk;
    target.appendChild(span);
  }

  function renderAnsi(target, text) {
    var cls = {}, position = 0, match;
    ESCAPE.lastIndex = 0;
    while ((match = ESCAPE.exec(text)) !== null) {
      appendText(target, text.slice(position, match.index), cls);
      if (match[2] === "m") applySgr(match[1] || "", cls);
      position = ESCAPE.lastIndex;
      if (match[0].length === 0) ESCAPE.lastIndex++;
    }
    appendText(target, text.slice(position), cls);
  }

  function lineElement(runId, line) {
    var row = document.createElement("div");
    row.className = "ln" + (line.stream !== "stdout" ? " " + line.stream : "");
    row.id = "L" + line.seq;
    var number = document.createElement("a");
    number.className = "no";
    number.href = "/runs/" + encodeURIComponent(runId) + "?line=" + (line.seq + 1) + "#L" + line.seq;
    number.textContent = String(line.seq + 1);
    var text = document.createElement("span");
    text.className = "tx";
    var whole = String(line.text);
    renderAnsi(text, whole.length > LINE_CHARS ? whole.slice(0, LINE_CHARS) : whole);
    if (whole.length > LINE_CHARS) {
      var cut = document.createElement("span");
      cut.className = "cut";
      cut.textContent = " \u2026 " + (whole.length - LINE_CHARS).toLocaleString("en") + " more characters (see Raw)";
      text.appendChild(cut);
    }
    row.appendChild(number);
    row.appendChild(text);
    return row;
  }

  function followOutput(box) {
    var runId = box.getAttribute("data-run");
    var after = parseInt(box.getAttribute("data-after") || "-1", 10);
    var base = "/api/flow_runs/" + encodeURIComponent(runId) + "/logs?limit=1000&wait=25&after=";
    var failures = 0;
    function atBottom() { return box.scrollHeight - box.scrollTop - box.clientHeight < 40; }
    function next() {
      fetch(base + after, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (reply) { if (!reply.ok) throw new Error(String(reply.status)); return reply.json(); })
        .then(function (page) {
          failures = 0;
          var stick = atBottom();
          if (page.lines.length) {
            var empty = document.getElementById("no-output");
            if (empty) empty.remove();
            var batch = document.createDocumentFragment();
            page.lines.forEach(function (line) { batch.appendChild(lineElement(runId, line)); });
            box.appendChild(batch);
            trim(box);
          }
          after = page.next_after;
          box.setAttribute("data-after", String(after));
          if (stick) box.scrollTop = box.scrollHeight;
          if (page.finished) { box.setAttribute("data-follow", "done"); return; }
          next();
        })
        .catch(function () { failures++; setTimeout(next, Math.min(10000, 1000 * failures)); });
    }
    next();
  }

  function trim(box) {
    // Keep the page light on a run that prints for hours: the oldest live lines go (the raw download has all).
    var lines = box.querySelectorAll(".ln");
    for (var i = 0; i < lines.length - MAX_LIVE_LINES; i++) lines[i].remove();
  }

  function start() {
    refreshLoop();
    var box = document.getElementById("output");
    if (box && box.getAttribute("data-follow") === "1") {
      box.scrollTop = box.scrollHeight;
      followOutput(box);
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
