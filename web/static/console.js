// Live queue: a server-sent event says a new tip arrived in this account's scope; the
// queue list and counts are fetched again and swapped in. Without this file a reload
// shows the same.
(function () {
  "use strict";
  var queue = document.getElementById("queue");
  var banner = document.getElementById("new-tips");
  if (!queue || !banner || !window.EventSource || !window.fetch) return;
  var refresh = function () {
    fetch(location.href, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        ["queue", "counts"].forEach(function (id) {
          var fresh = doc.getElementById(id), cur = document.getElementById(id);
          if (fresh && cur) cur.replaceWith(fresh);
        });
      })
      .catch(function () { banner.hidden = false; });
  };
  new EventSource("/console/events").addEventListener("tip", refresh);
})();
