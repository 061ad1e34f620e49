// Optional improvements; every page works without this file.
(function () {
  "use strict";
  // Quick exit: leave without this page staying behind the Back button.
  var exit = document.getElementById("quick-exit");
  if (exit) exit.addEventListener("click", function (e) {
    e.preventDefault();
    location.replace(exit.href);
  });
  // A missing description is caught before a long upload, with the server's own words.
  var tipForm = document.getElementById("tip-form");
  var desc = document.getElementById("f-description");
  if (tipForm && desc) tipForm.addEventListener("submit", function (e) {
    var by = e.submitter;
    if ((by && by.value !== "submit") || desc.value.trim()) return;
    e.preventDefault();
    var box = document.getElementById("desc-missing");
    if (!box) {
      box = document.createElement("p");
      box.id = "desc-missing";
      box.className = "errors";
      box.setAttribute("role", "alert");
      box.textContent = desc.getAttribute("data-required") || "";
      desc.parentNode.insertBefore(box, desc);
    }
    desc.focus();
  });
  var fold = function (s) {
    return s.normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/đ/g, "d").replace(/Đ/g, "D").toLowerCase();
  };
  var province = document.getElementById("f-province");
  var commune = document.getElementById("f-commune");
  if (!province || !commune) return;
  var pick = document.getElementById("pick-province");
  var hint = document.getElementById("commune-hint");
  if (pick) pick.hidden = true;
  var all = [];
  var search = document.createElement("input");
  search.type = "search";
  search.placeholder = commune.getAttribute("data-search") || "";
  search.setAttribute("aria-label", search.placeholder);
  commune.parentNode.insertBefore(search, commune);
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
  remember();
  search.hidden = all.length === 0;
  search.addEventListener("input", function () {
    var q = fold(search.value.trim());
    show(all.filter(function (c) { return c.k.indexOf(q) >= 0; }));
  });
  province.addEventListener("change", function () {
    if (!province.value) { all = []; show(all); search.hidden = true; return; }
    fetch("/api/v1/communes?province=" + encodeURIComponent(province.value))
      .then(function (r) { return r.json(); })
      .then(function (list) {
        all = list.map(function (c) { return { v: String(c.code), t: c.name, k: fold(c.name) }; });
        search.value = "";
        show(all);
        search.hidden = false;
        if (hint) hint.hidden = true;
      })
      .catch(function () { if (pick) pick.hidden = false; });
  });
})();
