// Optional improvements; every page works without this file.
(function () {
  "use strict";
  // Quick exit: leave without this page staying behind the Back button.
  var exit = document.getElementById("quick-exit");
  if (exit) exit.addEventListener("click", function (e) {
    e.preventDefault();
    location.replace(exit.href);
  });
  // The receipt card: copy, save as an image, print; a warning before leaving until the
  // resident says the code is written down.
  var receipt = document.getElementById("receipt");
  var actions = document.getElementById("receipt-actions");
  if (receipt && actions) {
    actions.hidden = false;
    var code = receipt.textContent.trim();
    var copy = document.getElementById("copy-receipt");
    copy.addEventListener("click", function () {
      var done = function () { copy.textContent = copy.getAttribute("data-done"); };
      if (navigator.clipboard) navigator.clipboard.writeText(code).then(done, function () {});
    });
    var save = document.getElementById("save-receipt");
    save.addEventListener("click", function () {
      var c = document.createElement("canvas");
      c.width = 640; c.height = 200;
      var g = c.getContext("2d");
      g.fillStyle = "#fff"; g.fillRect(0, 0, c.width, c.height);
      g.fillStyle = "#000"; g.textAlign = "center";
      g.font = "24px sans-serif";
      g.fillText(document.getElementById("receipt-label").textContent, 320, 60);
      g.font = "bold 48px monospace";
      g.fillText(code, 320, 140);
      var a = document.createElement("a");
      a.href = c.toDataURL("image/png");
      a.download = save.getAttribute("data-name") + ".png";
      document.body.appendChild(a); a.click(); a.remove();
    });
    document.getElementById("print-receipt").addEventListener("click", function () { window.print(); });
    var kept = document.getElementById("receipt-kept");
    window.addEventListener("beforeunload", function (e) {
      if (kept && !kept.checked) { e.preventDefault(); e.returnValue = kept.getAttribute("data-leave"); }
    });
  }
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
    if (list.length === 1 && commune.value !== list[0].v) {
      commune.value = list[0].v;
      commune.dispatchEvent(new Event("change"));
    }
  };
  remember();
  search.hidden = all.length === 0;
  search.addEventListener("input", function () {
    var q = fold(search.value.trim());
    show(all.filter(function (c) { return c.k.indexOf(q) >= 0; }));
  });
  // The commune's villages as suggestions as soon as it is chosen.
  var villages = document.getElementById("villages");
  var pickCommune = document.getElementById("pick-commune");
  if (pickCommune) pickCommune.hidden = true;
  commune.addEventListener("change", function () {
    if (!villages) return;
    while (villages.firstChild) villages.removeChild(villages.firstChild);
    if (!commune.value) return;
    fetch("/api/v1/villages?commune=" + encodeURIComponent(commune.value))
      .then(function (r) { return r.json(); })
      .then(function (names) {
        names.forEach(function (n) { var o = document.createElement("option"); o.value = n; villages.appendChild(o); });
      })
      .catch(function () { if (pickCommune) pickCommune.hidden = false; });
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
