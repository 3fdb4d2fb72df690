// legato dashboard: local times and live updates over Server-Sent Events.
// The server renders every fragment; this script only swaps them in.
(function () {
  "use strict";

  function localTimes(root) {
    root.querySelectorAll("time[data-epoch]").forEach(function (el) {
      var s = parseFloat(el.getAttribute("data-epoch"));
      if (!isNaN(s) && s > 0) {
        el.textContent = new Date(s * 1000).toLocaleString();
        el.setAttribute("datetime", new Date(s * 1000).toISOString());
      }
    });
  }

  function keepOpen(root) {
    var open = {};
    root.querySelectorAll("details[open][id]").forEach(function (d) { open[d.id] = true; });
    return open;
  }

  function restoreOpen(root, open) {
    root.querySelectorAll("details[id]").forEach(function (d) {
      if (open[d.id]) { d.setAttribute("open", ""); }
    });
  }

  // Changed rows only: replace or add each row sent, then put the rows in the page's order.
  function patchRows(patch) {
    var body = document.getElementById(patch.target);
    if (!body) { return; }
    var have = {};
    body.querySelectorAll("tr[data-run]").forEach(function (tr) { have[tr.getAttribute("data-run")] = tr; });
    Object.keys(patch.html).forEach(function (id) {
      var holder = document.createElement("tbody");
      holder.innerHTML = patch.html[id];
      var row = holder.querySelector("tr");
      if (!row) { return; }
      localTimes(row);
      if (have[id]) { body.replaceChild(row, have[id]); }
      have[id] = row;
    });
    if (patch.order.length) {
      body.querySelectorAll("tr:not([data-run])").forEach(function (tr) { tr.remove(); });
    }
    var keep = {};
    patch.order.forEach(function (id) { keep[id] = true; if (have[id]) { body.appendChild(have[id]); } });
    Object.keys(have).forEach(function (id) { if (!keep[id] && have[id].parentNode) { have[id].remove(); } });
  }

  function connect(el) {
    var url = el.getAttribute("data-live");
    if (!url || !window.EventSource) { return; }
    var dot = document.querySelector(".live-dot");
    var source = new EventSource(url);
    source.addEventListener("update", function (msg) {
      var data = JSON.parse(msg.data);
      Object.keys(data.fragments || {}).forEach(function (id) {
        var target = document.getElementById(id);
        if (!target) { return; }
        var open = keepOpen(target);
        target.innerHTML = data.fragments[id];
        restoreOpen(target, open);
        localTimes(target);
      });
      if (data.rows) { patchRows(data.rows); }
      if (data.status) { el.setAttribute("data-status", data.status); }
      document.dispatchEvent(new CustomEvent("legato:update", { detail: data }));
    });
    source.addEventListener("done", function () {
      el.setAttribute("data-terminal", "true");
      source.close();
      if (dot) { dot.classList.add("off"); }
    });
    source.onerror = function () { if (dot) { dot.classList.add("off"); } };
    source.onopen = function () { if (dot) { dot.classList.remove("off"); } };
  }

  // #step-NAME (a graph node, a shared link) and #call-ID (a step's model call) open
  // those details and show them.
  function openStep() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    if (id.indexOf("step-") !== 0 && id.indexOf("call-") !== 0) { return; }
    var el = document.getElementById(id);
    if (!el || el.tagName !== "DETAILS") { return; }
    el.open = true;
    el.scrollIntoView({ block: "start" });
  }

  window.addEventListener("hashchange", openStep);
  document.addEventListener("click", function (ev) {
    var link = ev.target.closest ? ev.target.closest("a[href^='#step-'], a[href^='#call-']") : null;
    if (link && link.getAttribute("href") === window.location.hash) { openStep(); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    openStep();
    document.querySelectorAll("[data-live]").forEach(function (el) {
      if (el.getAttribute("data-terminal") !== "true") { connect(el); }
    });
  });
})();
