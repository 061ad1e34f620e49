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

// Campaign messages: live characters/SMS counter while typing, live progress while a
// broadcast sends, a confirmation before cancelling, and the poster's print button.
// Without this file the server's preview and a reload show the same.
(function () {
  "use strict";
  var GSM = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var EXT = "^{}\\[~]|€\f";
  var count = function (text) {
    text = text.normalize ? text.normalize("NFC") : text;
    var units = [], gsm = true, i, c;
    for (i = 0; i < text.length; i++) {
      c = text.charAt(i);
      if (GSM.indexOf(c) >= 0) units.push(1);
      else if (EXT.indexOf(c) >= 0) units.push(2);
      else { gsm = false; break; }
    }
    if (!gsm) {
      units = [];
      for (i = 0; i < text.length; i++) units.push(1);
    }
    var single = gsm ? 160 : 70, part = gsm ? 153 : 67, total = 0;
    units.forEach(function (u) { total += u; });
    var parts = 1, used = 0;
    if (total > single) {
      units.forEach(function (u) { if (used + u > part) { parts++; used = 0; } used += u; });
    }
    return { chars: Array.from ? Array.from(text).length : text.length, segments: parts };
  };
  Array.prototype.forEach.call(document.querySelectorAll("textarea[data-counter]"), function (area) {
    var out = document.getElementById(area.getAttribute("data-counter"));
    if (!out) return;
    var tpl = out.getAttribute("data-template");
    var update = function () {
      var r = count(area.value);
      out.textContent = tpl.replace("{chars}", r.chars).replace("{segments}", r.segments);
    };
    area.addEventListener("input", update);
  });

  var panel = document.getElementById("progress");
  if (panel && panel.getAttribute("data-live") && window.fetch) {
    var poll = function () {
      fetch(panel.getAttribute("data-url"), { credentials: "same-origin" })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (d) {
          var p = d.progress;
          ["queued", "sent", "delivered", "failed", "opted_out", "cancelled"].forEach(function (k) {
            var el = document.getElementById("pg-" + k);
            if (el) el.textContent = p[k];
          });
          var bar = document.getElementById("pg-bar");
          if (bar) { bar.value = d.percent; bar.textContent = d.percent + "%"; }
          var eta = document.getElementById("pg-eta");
          if (eta) eta.textContent = d.eta || "—";
          var st = document.getElementById("b-status");
          if (st) st.textContent = d.status_text;
          if (["pending", "scheduled", "sending"].indexOf(d.status) >= 0) setTimeout(poll, 2000);
          else location.reload();
        })
        .catch(function () { setTimeout(poll, 5000); });
    };
    setTimeout(poll, 2000);
  }

  var cancel = document.getElementById("cancel-form");
  if (cancel) {
    cancel.addEventListener("submit", function (e) {
      if (!window.confirm(cancel.getAttribute("data-confirm"))) e.preventDefault();
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("[data-print]"), function (b) {
    b.addEventListener("click", function () { window.print(); });
  });
})();

// Transfer picker: the commune list follows the province, and a search box finds
// "Hoàn Kiếm" from "hoan kiem". Without this file the "Chọn" button lists them.
(function () {
  "use strict";
  var province = document.getElementById("f-tp");
  var commune = document.getElementById("f-tc");
  if (!province || !commune || !window.fetch) return;
  var pick = document.getElementById("transfer-pick");
  if (pick) pick.hidden = true;
  var fold = function (s) {
    return s.normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/đ/g, "d").replace(/Đ/g, "D").toLowerCase();
  };
  var all = [];
  var remember = function () {
    all = Array.prototype.slice.call(commune.options, 1).map(function (o) {
      return { v: o.value, t: o.text, k: fold(o.text) };
    });
  };
  var show = function (list) {
    var keep = commune.value;
    while (commune.options.length > 1) commune.remove(1);
    list.forEach(function (c) { commune.add(new Option(c.t, c.v, false, c.v === keep)); });
    if (list.length === 1) commune.value = list[0].v;
  };
  var search = document.createElement("input");
  search.type = "search";
  search.id = "f-tc-search";
  search.placeholder = commune.getAttribute("data-search") || "";
  search.setAttribute("aria-label", search.placeholder);
  commune.parentNode.insertBefore(search, commune);
  remember();
  search.addEventListener("input", function () {
    var q = fold(search.value.trim());
    show(all.filter(function (c) { return c.k.indexOf(q) >= 0; }));
  });
  province.addEventListener("change", function () {
    fetch("/api/v1/communes?province=" + encodeURIComponent(province.value))
      .then(function (r) { return r.json(); })
      .then(function (list) {
        all = list.map(function (c) { return { v: String(c.code), t: c.name, k: fold(c.name) }; });
        search.value = "";
        show(all);
      })
      .catch(function () { if (pick) pick.hidden = false; });
  });
})();
