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
    // Never swap the page under a person filling in a form: focused, or already changed.
    var active = document.activeElement;
    if (active && live.contains(active) && /INPUT|TEXTAREA|SELECT/.test(active.tagName)) {
      return true;
    }
    var fields = live.querySelectorAll("input, textarea, select");
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.type === "hidden") continue;
      if (f.tagName === "SELECT") {
        for (var j = 0; j < f.options.length; j++) {
          if (f.options[j].selected !== f.options[j].defaultSelected) return true;
        }
      } else if (f.type === "checkbox" ? f.checked !== f.defaultChecked : f.value !== f.defaultValue) {
        return true;
      }
    }
    return false;
  }

  function refresh() {
    if (!live) return;
    if (running) { pending = true; return; }
    if (busy()) { setTimeout(soon, 2000); return; }
    running = true; pending = false;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (text === null) return;
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("live");
        if (!fresh || fresh.innerHTML === lastHtml) return;
        if (busy()) { setTimeout(soon, 2000); return; }  // changed while we fetched
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

  // An event is journaled a moment before the state it reports is written (a run file, a
  // status file): fetch soon, and once more a little later, so the page ends on the state.
  var timer = null, trailing = null;
  function soon() {
    if (!timer) timer = setTimeout(function () { timer = null; refresh(); }, 150);
    if (trailing) clearTimeout(trailing);
    trailing = setTimeout(function () { trailing = null; refresh(); }, 1000);
  }

  if (window.mermaid) {
    // A sequence diagram keeps its natural size (its box scrolls sideways): fitted to the
    // page, a pipeline thread's labels shrank to a few pixels.
    window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "default",
                                sequence: { useMaxWidth: false } });
    drawDiagrams();
  }
  // A page whose server stopped says so, rather than go on looking live; it clears once the
  // stream is back (the browser retries; a closed stream is opened again here).
  var leaving = false;
  window.addEventListener("pagehide", function () { leaving = true; });

  function showDisconnected(lost) {
    var banner = document.getElementById("disconnected");
    document.body.setAttribute("data-live", lost ? "no" : "yes");
    if (!lost) {
      if (banner) banner.remove();
      return;
    }
    if (banner) return;
    banner = document.createElement("div");
    banner.id = "disconnected";
    banner.className = "banner disconnected";
    banner.setAttribute("role", "alert");
    banner.textContent = "disconnected: the dashboard's server does not answer; " +
      "this page shows what it knew and is not live until the server is back";
    document.getElementById("halted").insertAdjacentElement("afterend", banner);
  }

  function listen() {
    var source = new EventSource("/events");
    source.addEventListener("journal", soon);
    source.addEventListener("open", function () {
      // What happened between this page's rendering and the stream's start is caught up here.
      showDisconnected(false);
      soon();
    });
    source.addEventListener("error", function () {
      // A moment's grace: a stream the server ends is opened again at once.
      setTimeout(function () {
        if (leaving || source.readyState === EventSource.OPEN) return;
        showDisconnected(true);
        if (source.readyState === EventSource.CLOSED) {
          setTimeout(listen, 2000);
        }
      }, 1500);
    });
  }
  if (live && window.EventSource) listen();
  var every = live && live.getAttribute("data-poll-s");
  if (every) setInterval(soon, parseFloat(every) * 1000);
})();
