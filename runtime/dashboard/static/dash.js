// jobrt dashboard: self-refreshing pages (the <main> of the same page fetched again and
// swapped in), confirmations for destructive actions, "select all". No dependencies.
"use strict";
(function () {
  function setUp(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
    root.querySelectorAll("input[data-select-all]").forEach(function (box) {
      box.addEventListener("change", function () {
        document.querySelectorAll('input[name="ids"]').forEach(function (b) { b.checked = box.checked; });
      });
    });
    if (window.jobrtCharts) window.jobrtCharts.drawAll(root);
  }

  function refresh() {
    var main = document.getElementById("main");
    var every = main && parseInt(main.getAttribute("data-refresh") || "0", 10);
    if (!every) return;
    window.setTimeout(function () {
      if (document.hidden) { refresh(); return; }
      fetch(window.location.href, {headers: {"Accept": "text/html"}, credentials: "same-origin"})
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (text) {
          var page = new DOMParser().parseFromString(text, "text/html");
          var fresh = page.getElementById("main");
          if (fresh) {
            main.replaceWith(fresh);
            setUp(fresh);
            document.body.setAttribute("data-refreshed", String(Date.now()));
          }
          refresh();
        })
        .catch(function () { window.setTimeout(refresh, every); });
    }, every);
  }

  document.addEventListener("DOMContentLoaded", function () { setUp(document); refresh(); });
})();
