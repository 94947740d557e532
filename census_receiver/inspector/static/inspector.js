// census_receiver inspector: live rows for the deliveries list, and whole rows as links.
// Served as a file of the package: the Content-Security-Policy forbids inline script.
// Rows arrive as HTML rendered (and escaped) by the server, one Server-Sent Event each.
(function () {
  "use strict";

  function follow(event) {
    if (event.defaultPrevented || event.button !== 0 || event.ctrlKey || event.metaKey) {
      return;
    }
    if (event.target.closest("a, button, input, select")) {
      return;
    }
    var row = event.target.closest("tr[data-href]");
    if (row) {
      window.location.assign(row.getAttribute("data-href"));
    }
  }

  function parse(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content;
  }

  function live(rows) {
    var url = rows.getAttribute("data-live");
    var badge = document.getElementById("live");
    if (!url || !window.EventSource) {
      return;
    }
    function show(state, text) {
      if (badge) {
        badge.setAttribute("data-state", state);
        badge.textContent = text;
      }
    }
    var source = new EventSource(url);
    source.addEventListener("open", function () { show("open", "Live"); });
    source.addEventListener("error", function () { show("error", "Reconnecting…"); });
    source.addEventListener("delivery", function (event) {
      var row = parse(event.data).firstElementChild;
      if (!row) {
        return;
      }
      var old = document.getElementById(row.id);
      if (old) {
        old.replaceWith(row);
        return;
      }
      row.classList.add("new");
      rows.insertBefore(row, rows.firstElementChild);
      var empty = document.getElementById("empty");
      if (empty) {
        empty.remove();
      }
    });
    source.addEventListener("counts", function (event) {
      var counts = document.getElementById("counts");
      if (counts) {
        counts.replaceChildren(parse(event.data));
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var rows = document.getElementById("rows");
    document.addEventListener("click", follow);
    if (rows) {
      live(rows);
    }
  });
})();
