// orderbell admin: small progressive enhancements. Every page works without them.
(function () {
  "use strict";

  function minutes(text) {
    var m = /^\s*(\d{1,2}):(\d{2})\s*$/.exec(text || "");
    if (!m) return null;
    var h = +m[1], mi = +m[2];
    if (h > 24 || mi > 59 || (h === 24 && mi > 0)) return null;
    return (h * 60 + mi) % 1440;
  }

  // The 24-hour bar of the rule editor follows the hour range inputs as you type.
  function drawBar() {
    var bar = document.getElementById("hours-bar");
    var ranges = document.getElementById("ranges");
    if (!bar || !ranges) return;
    var track = bar.querySelector(".daybar-track");
    track.innerHTML = "";
    var labels = [];
    ranges.querySelectorAll(".range").forEach(function (row) {
      var inputs = row.querySelectorAll("input");
      var s = minutes(inputs[0].value), e = minutes(inputs[1].value);
      if (s === null || e === null) return;
      var pieces;
      if (s === e) pieces = [[0, 1440]];
      else if (e === 0) pieces = [[s, 1440]];
      else if (e > s) pieces = [[s, e]];
      else pieces = [[s, 1440], [0, e]];
      var label = inputs[0].value.trim() + "–" + inputs[1].value.trim();
      labels.push(label);
      pieces.forEach(function (p) {
        var seg = document.createElement("span");
        seg.className = "daybar-seg";
        seg.style.left = (p[0] / 14.4) + "%";
        seg.style.width = ((p[1] - p[0]) / 14.4) + "%";
        seg.title = label;
        track.appendChild(seg);
      });
    });
    bar.setAttribute("aria-label", "Hours on a 24-hour day: " + (labels.join(", ") || "none"));
  }

  function addRange() {
    var ranges = document.getElementById("ranges");
    var tpl = document.getElementById("range-template");
    if (!ranges || !tpl) return;
    var n = ranges.querySelectorAll(".range").length;
    var row = tpl.content.firstElementChild.cloneNode(true);
    var labels = row.querySelectorAll("label"), inputs = row.querySelectorAll("input");
    inputs[0].id = "hf-" + n; labels[0].htmlFor = inputs[0].id; labels[0].textContent = "Range " + (n + 1) + " from";
    inputs[1].id = "ht-" + n; labels[1].htmlFor = inputs[1].id;
    ranges.appendChild(row);
    inputs[0].focus();
  }

  // Variable picker: insert {{ name }} where the cursor was in the last text field used.
  var lastField = null;
  function insertVariable(text) {
    var field = lastField || document.querySelector("[data-var-target]");
    if (!field) return;
    var start = field.selectionStart != null ? field.selectionStart : field.value.length;
    var end = field.selectionEnd != null ? field.selectionEnd : start;
    field.value = field.value.slice(0, start) + text + field.value.slice(end);
    field.focus();
    field.selectionStart = field.selectionEnd = start + text.length;
    field.dispatchEvent(new Event("input", { bubbles: true }));
  }

  document.addEventListener("focusin", function (ev) {
    if (ev.target.matches && ev.target.matches("[data-var-target]")) lastField = ev.target;
  });

  document.addEventListener("input", function (ev) {
    if (ev.target.closest && ev.target.closest("#ranges")) drawBar();
  });

  document.addEventListener("click", function (ev) {
    var t = ev.target.closest ? ev.target.closest("button") : null;
    if (!t) return;
    if (t.id === "add-range") { ev.preventDefault(); addRange(); }
    if (t.dataset.insert) { ev.preventDefault(); insertVariable(t.dataset.insert); }
  });

  document.addEventListener("change", function (ev) {
    var el = ev.target;
    if (el.id === "tick-page") {
      document.querySelectorAll("input.pick").forEach(function (box) { box.checked = el.checked; });
    }
    if (el.id === "f-kind") {
      document.querySelectorAll("ul.vars").forEach(function (ul) { ul.hidden = ul.dataset.kind !== el.value; });
    }
    if (el.hasAttribute && el.hasAttribute("data-reload-on-change")) {
      var kind = document.getElementById("f-kind");
      var url = new URL(window.location.href);
      url.searchParams.set(el.name, el.value);
      if (kind) url.searchParams.set("kind", kind.value);
      window.location.assign(url.toString());
    }
  });

  // Dangerous buttons ask first.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) ev.preventDefault();
  }, true);

  // After a failed save, take keyboard focus to the list of problems.
  document.addEventListener("DOMContentLoaded", function () {
    var summary = document.getElementById("error-summary");
    if (summary) summary.focus();
  });
})();
