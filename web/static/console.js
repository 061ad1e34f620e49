// Live queue: a server-sent event says a new tip arrived; the page works without this file.
(function () {
  "use strict";
  var banner = document.getElementById("new-tips");
  if (!banner || !window.EventSource) return;
  var es = new EventSource("/console/events");
  es.addEventListener("tip", function () { banner.hidden = false; });
})();
