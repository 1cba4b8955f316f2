// The console's only script (no inline scripts: the Content-Security-Policy forbids them). Every page works
// without it; it adds times in the viewer's zone, the theme toggle, keyboard use and keeping row selections
// across live updates.
(function () {
  "use strict";
  var root = document.documentElement;
  var saved = localStorage.getItem("pgalert-theme");
  if (saved) root.dataset.theme = saved;

  // absolute times (class "abs") are written in UTC by the server and shown here in the viewer's zone, with
  // UTC kept on hover; relative ones ("5m") keep their text and gain the local time on hover
  function localTimes(scope) {
    scope.querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.dataset.local) return;
      var at = new Date(el.getAttribute("datetime"));
      if (isNaN(at)) return;
      el.dataset.local = "1";
      var utc = el.title;
      if (el.classList.contains("abs")) {
        var options = { weekday: "short", day: "2-digit", month: "short", hour: "2-digit", minute: "2-digit" };
        if (el.hasAttribute("data-seconds")) options = { hour: "2-digit", minute: "2-digit", second: "2-digit" };
        el.textContent = at.toLocaleString(undefined, options);
        el.title = utc;
      } else {
        el.title = at.toLocaleString() + " (" + utc + ")";
      }
    });
  }

  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr.alert[data-alert]")); }
  var current = null;
  function focusRow(row) {
    if (!row) return;
    if (current) current.classList.remove("selected");
    current = row;
    row.classList.add("selected");
    row.focus({ preventScroll: false });
  }

  var checked = new Set();
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (box.name === "alert_id") { box.checked ? checked.add(box.value) : checked.delete(box.value); }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    localTimes(event.target);
    document.querySelectorAll("input[name=alert_id]").forEach(function (box) { box.checked = checked.has(box.value); });
    if (current) focusRow(document.querySelector('tr.alert[data-alert="' + current.dataset.alert + '"]'));
  });

  function submitAction(name) {
    var form = document.querySelector('form[data-action="' + name + '"]');
    if (form) { form.requestSubmit(); return; }
    if (!current) return;
    if (name === "silence") { location.href = "/console/silences/new?alert=" + current.dataset.alert; return; }
    var bulk = document.getElementById("bulk");
    var box = current.querySelector("input[name=alert_id]");
    if (!bulk || !box) return;
    document.querySelectorAll("input[name=alert_id]").forEach(function (b) { b.checked = b === box; });
    var button = bulk.querySelector('button[value="' + name + '"]');
    if (button) bulk.requestSubmit(button);
  }

  document.addEventListener("keydown", function (event) {
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || event.ctrlKey || event.metaKey || event.altKey) return;
    var list = rows();
    var index = current ? list.indexOf(current) : -1;
    switch (event.key) {
      case "j": focusRow(list[Math.min(index + 1, list.length - 1)]); break;
      case "k": focusRow(list[Math.max(index - 1, 0)]); break;
      case "Enter": if (current) location.href = "/console/alerts/" + current.dataset.alert; else return; break;
      case "a": submitAction("acknowledge"); break;
      case "r": submitAction("resolve"); break;
      case "s":
        var link = document.querySelector('a[data-action="silence"]');
        if (link) location.href = link.href; else submitAction("silence");
        break;
      case "/": var filter = document.querySelector("[data-filter]"); if (filter) filter.focus(); break;
      case "?": var help = document.getElementById("keys"); if (help && help.showModal) help.showModal(); break;
      default: return;
    }
    event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    var toggle = document.querySelector("[data-theme-toggle]");
    if (toggle) toggle.addEventListener("click", function () {
      var dark = root.dataset.theme ? root.dataset.theme === "dark"
        : window.matchMedia("(prefers-color-scheme: dark)").matches;
      root.dataset.theme = dark ? "light" : "dark";
      localStorage.setItem("pgalert-theme", root.dataset.theme);
    });
  });
})();
