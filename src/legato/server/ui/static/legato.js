// Legato UI: local times, tabs, confirmations, the log filter and the live tail of a running run.
(function () {
  "use strict";
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) { el.title = el.textContent; el.textContent = d.toLocaleString(); }
    });
  }
  function tabs() {
    document.querySelectorAll("[data-tabs]").forEach(function (bar) {
      var group = bar.getAttribute("data-tabs");
      bar.querySelectorAll("[data-tab]").forEach(function (a) {
        a.addEventListener("click", function (ev) {
          ev.preventDefault();
          var key = a.getAttribute("data-tab");
          bar.querySelectorAll("[data-tab]").forEach(function (b) { b.classList.toggle("on", b === a); });
          document.querySelectorAll("[data-panel^='" + group + ":']").forEach(function (p) {
            p.hidden = p.getAttribute("data-panel") !== group + ":" + key;
          });
          if (group === "main") { history.replaceState(null, "", "?tab=" + key); }
        });
      });
    });
  }
  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (ev) {
        if (!window.confirm(f.getAttribute("data-confirm"))) { ev.preventDefault(); }
      });
    });
  }
  // one request at a time: the log lines after the cursor, and the run's state in headers
  function logs() {
    var form = document.querySelector("form[data-logs]");
    if (!form) { return; }
    var box = document.getElementById("logs"), more = document.getElementById("more-logs");
    var url = form.getAttribute("data-logs"), cursor = form.getAttribute("data-cursor") || "";
    var live = form.getAttribute("data-live") === "true", busy = false, timer = null;
    function query(after) {
      var p = new URLSearchParams(new FormData(form));
      if (after) { p.set("after", after); }
      return url + "?" + p.toString();
    }
    function fetchRows(replace) {
      if (busy) { return Promise.resolve(); }
      busy = true;
      return fetch(query(replace ? "" : cursor), { headers: { "X-Legato-Fragment": "1" } })
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); throw new Error("signed out"); }
          if (!r.ok) { return r.text().then(function (t) { throw new Error(t); }); }
          cursor = r.headers.get("X-Log-Cursor") || cursor;
          more.hidden = r.headers.get("X-Log-More") !== "1";
          var state = r.headers.get("X-Run-State");
          return r.text().then(function (html) {
            if (replace) { box.innerHTML = html; } else if (html.trim()) { box.insertAdjacentHTML("beforeend", html); }
            var none = document.getElementById("no-logs");
            if (none && box.children.length) { none.hidden = true; }
            localTimes(box);
            if (live && state && ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"].indexOf(state) >= 0) {
              live = false; stop();
              window.location.replace(window.location.pathname); // the finished run: final state, tasks
            }
          });
        })
        .finally(function () { busy = false; });
    }
    function stop() { if (timer) { clearInterval(timer); timer = null; } }
    form.addEventListener("change", function () { cursor = ""; fetchRows(true); });
    form.addEventListener("submit", function (ev) { ev.preventDefault(); cursor = ""; fetchRows(true); });
    more.addEventListener("click", function () { fetchRows(false); });
    if (live) { timer = setInterval(function () { fetchRows(false).catch(function () {}); }, 1500); }
  }
  // forms that check their fields before sending (JSON fields must parse)
  function checkedForms() {
    document.querySelectorAll("form[data-check]").forEach(function (f) {
      // the browser checks constraints before "submit" fires: a corrected field must be clear
      f.querySelectorAll("textarea[data-json]").forEach(function (t) {
        t.addEventListener("input", function () { t.setCustomValidity(""); t.classList.remove("invalid"); });
      });
      f.addEventListener("submit", function (ev) {
        var bad = null;
        f.querySelectorAll("textarea[data-json]").forEach(function (t) {
          var msg = "";
          if (t.value.trim()) { try { JSON.parse(t.value); } catch (e) { msg = t.name + " is not valid JSON: " + e.message; } }
          t.setCustomValidity(msg); t.classList.toggle("invalid", !!msg);
          if (msg && !bad) { bad = t; }
        });
        if (bad || !f.checkValidity()) { ev.preventDefault(); (bad || f).reportValidity(); }
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document); tabs(); confirmations(); logs(); checkedForms();
  });
})();
