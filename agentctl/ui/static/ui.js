// agentctl ui: keep the page live. Each journal event (server-sent, /events) makes the page
// fetch itself again and swap its #live part; the agents page also refreshes on a timer
// (heartbeats are not journal events). Mermaid diagrams are drawn here, from the vendored file.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var lastHtml = live ? live.innerHTML : "";
  var pending = false, running = false;

  function drawDiagrams() {
    if (!window.mermaid) return;
    var nodes = document.querySelectorAll("pre.mermaid:not([data-processed])");
    if (!nodes.length) return;
    window.mermaid.run({ nodes: nodes }).catch(function (err) {
      console.error("mermaid:", err);
    });
  }

  function busy() {
    // Never swap the page under a person typing in a form, or a diagram being drawn.
    var active = document.activeElement;
    if (active && live && live.contains(active) && /INPUT|TEXTAREA|SELECT/.test(active.tagName)) {
      return true;
    }
    return false;
  }

  function refresh() {
    if (!live) return;
    if (running || busy()) { pending = true; return; }
    running = true; pending = false;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (text === null) return;
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("live");
        if (!fresh || fresh.innerHTML === lastHtml) return;
        var open = {};
        live.querySelectorAll("details[data-key]").forEach(function (d) {
          open[d.getAttribute("data-key")] = d.open;
        });
        lastHtml = fresh.innerHTML;
        live.innerHTML = fresh.innerHTML;
        live.querySelectorAll("details[data-key]").forEach(function (d) {
          var key = d.getAttribute("data-key");
          if (key in open) d.open = open[key];
        });
        var banner = document.getElementById("halted"), freshBanner = doc.getElementById("halted");
        if (banner && freshBanner) banner.outerHTML = freshBanner.outerHTML;
        document.body.setAttribute("data-refreshed", String(Date.now()));
        drawDiagrams();
      })
      .finally(function () {
        running = false;
        if (pending) setTimeout(refresh, 100);
      });
  }

  var timer = null;
  function soon() {
    if (timer) return;
    timer = setTimeout(function () { timer = null; refresh(); }, 150);
  }

  if (window.mermaid) {
    window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "default" });
    drawDiagrams();
  }
  if (live && window.EventSource) {
    var source = new EventSource("/events");
    source.addEventListener("journal", soon);
    source.addEventListener("open", function () {
      document.body.setAttribute("data-live", "yes");
    });
  }
  var every = live && live.getAttribute("data-poll-s");
  if (every) setInterval(soon, parseFloat(every) * 1000);
})();
