// Copy buttons and live figures for / and /humans. Same origin only, no
// inline code: the pages are served under `script-src 'self'`.
"use strict";

(function () {
  var REFRESH_MS = 15000;

  function select(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function copy(button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target) {
      return;
    }
    var label = button.textContent;
    function done(text) {
      button.textContent = text;
      window.setTimeout(function () { button.textContent = label; }, 2000);
    }
    function fallback() {
      select(target);
      done("Selected: press Ctrl+C");
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(target.textContent).then(function () { done("Copied"); }, fallback);
    } else {
      fallback();
    }
  }

  function show(value) {
    if (value === true) { return "yes"; }
    if (value === false) { return "no"; }
    if (value === null || value === undefined) { return "–"; }
    return String(value);
  }

  // Fill every [data-live=name] in the box from the JSON at its data-source.
  function refresh(box) {
    fetch(box.getAttribute("data-source"), { headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        box.querySelectorAll("[data-live]").forEach(function (node) {
          var name = node.getAttribute("data-live");
          if (Object.prototype.hasOwnProperty.call(data, name)) {
            node.textContent = show(data[name]);
          }
        });
        box.setAttribute("data-state", "live");
        box.setAttribute("data-updated", new Date().toISOString());
      })
      .catch(function () { box.setAttribute("data-state", "unreachable"); });
  }

  function start() {
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () { copy(button); });
    });
    document.querySelectorAll("[data-source]").forEach(function (box) {
      refresh(box);
      window.setInterval(function () { refresh(box); }, REFRESH_MS);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
