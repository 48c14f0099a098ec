// Keyboard shortcuts and category completion for the review pages. No framework: event delegation on
// `document`, so it keeps working after htmx swaps the item in #review-work.
(function () {
  "use strict";

  function $(sel) { return document.querySelector(sel); }

  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    // A slider or a checkbox holds focus but takes no letters: shortcuts keep working there.
    if (tag === "INPUT" && /^(range|checkbox|radio|button|submit)$/.test(el.type)) return false;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  function submit(formId) {
    var form = document.getElementById(formId);
    if (!form) return false;
    form.requestSubmit ? form.requestSubmit() : form.submit();
    return true;
  }

  function busy() {
    // Ignore keys while a request is in flight: one key press, one decision.
    return !!document.querySelector(".htmx-request");
  }

  function openPanel(id, focusSel) {
    var panel = document.getElementById(id);
    if (!panel) return false;
    panel.open = true;
    var field = panel.querySelector(focusSel);
    if (field) { field.focus(); field.select && field.select(); }
    return true;
  }

  function toggleHelp(force) {
    var help = $("#rv-help");
    if (!help) return;
    help.hidden = force === undefined ? !help.hidden : !force;
  }

  // Heatmap opacity: one value for every item (kept in localStorage), so it survives the htmx swaps.
  var OPACITY_KEY = "fr.heatOpacity";
  function savedOpacity() {
    var v = parseInt(window.localStorage ? localStorage.getItem(OPACITY_KEY) : "", 10);
    return isNaN(v) ? 55 : Math.max(0, Math.min(100, v));
  }
  function applyOpacity(v) {
    var heat = $("#rv-heat"), slider = $("#rv-heat-opacity");
    if (v === undefined) v = savedOpacity();
    v = Math.max(0, Math.min(100, v));
    if (heat) heat.style.opacity = String(v / 100);
    if (slider && String(slider.value) !== String(v)) slider.value = v;
    try { localStorage.setItem(OPACITY_KEY, String(v)); } catch (e) { /* private mode: not kept */ }
  }
  function nudgeOpacity(delta) {
    if (!$("#rv-heat")) return false;
    applyOpacity(savedOpacity() + delta);
    return true;
  }

  function toggleHeat() {
    var box = $("#rv-heat-toggle");
    if (!box) return;
    box.checked = !box.checked;
    box.dispatchEvent(new Event("change", { bubbles: true }));
  }

  // --- category results: arrows move, Enter picks ---------------------------------------------
  function options() { return Array.prototype.slice.call(document.querySelectorAll("#cat-results .rv-cat-opt")); }

  function activate(idx) {
    var opts = options();
    if (!opts.length) return;
    idx = (idx + opts.length) % opts.length;
    opts.forEach(function (o, i) {
      o.classList.toggle("active", i === idx);
      o.setAttribute("aria-selected", i === idx ? "true" : "false");
    });
    opts[idx].scrollIntoView({ block: "nearest" });
    var search = $("#cat-search");
    if (search) search.setAttribute("aria-activedescendant", opts[idx].id || "");
  }

  // The list answers the query in its marker; while the search box says something else a request is
  // still coming, and Enter waits for it rather than picking a stale entry.
  var pendingPick = false;
  function listIsCurrent() {
    var marker = $("#cat-results .rv-cat-q"), search = $("#cat-search");
    if (!marker || !search) return true;
    return (marker.getAttribute("data-q") || "").trim() === search.value.trim();
  }

  function pick(opt) {
    if (!opt) return false;
    $("#cat-id").value = opt.getAttribute("data-id");
    var chosen = $("#cat-chosen");
    chosen.textContent = "Picked: " + opt.getAttribute("data-label");  // textContent: never markup
    chosen.classList.add("picked");
    $("#cat-results").innerHTML = "";
    var brand = $("#brand-input");
    if (brand) { brand.focus(); brand.select(); }
    return true;
  }

  document.addEventListener("click", function (ev) {
    var opt = ev.target.closest && ev.target.closest(".rv-cat-opt");
    if (opt) { pick(opt); return; }
    if (ev.target.closest && ev.target.closest("[data-help-toggle]")) toggleHelp();
  });

  document.addEventListener("input", function (ev) {
    if (ev.target && ev.target.id === "rv-heat-opacity") applyOpacity(parseInt(ev.target.value, 10));
  });

  document.addEventListener("change", function (ev) {
    if (ev.target && ev.target.id === "rv-heat-toggle") {
      var heat = $("#rv-heat");
      if (heat) heat.hidden = !ev.target.checked;
    }
  });

  document.addEventListener("keydown", function (ev) {
    var el = document.activeElement;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;

    if (el && el.id === "cat-search") {
      var opts = options();
      var cur = opts.findIndex(function (o) { return o.classList.contains("active"); });
      // With the box still empty, 1-9 pick that entry of the list (the model's suggestions come first).
      if (!el.value && /^[1-9]$/.test(ev.key) && opts[parseInt(ev.key, 10) - 1]) {
        ev.preventDefault();
        pick(opts[parseInt(ev.key, 10) - 1]);
        return;
      }
      if (ev.key === "ArrowDown") { ev.preventDefault(); activate(cur + 1); return; }
      if (ev.key === "ArrowUp") { ev.preventDefault(); activate(cur - 1); return; }
      if (ev.key === "Enter") {
        ev.preventDefault();  // Enter in the search never submits: it picks
        if (!listIsCurrent()) { pendingPick = true; return; }  // picked when the results arrive
        if (opts.length) pick(opts[Math.max(cur, 0)]);
        return;
      }
      pendingPick = false;
    }
    if (ev.key === "Escape") {
      toggleHelp(false);
      document.querySelectorAll("details.rv-panel[open]").forEach(function (d) { d.open = false; });
      if (typing(el)) el.blur();
      return;
    }
    if (typing(el)) return;
    if (busy()) { if ("acsuen".indexOf(ev.key.toLowerCase()) >= 0) ev.preventDefault(); return; }

    var key = ev.key;
    var handled = true;
    switch (key) {
      case "a": case "A": handled = submit("form-approve"); break;
      case "c": case "C": handled = openPanel("panel-correct", "#cat-search"); break;
      case "/": handled = openPanel("panel-correct", "#cat-search"); break;
      case "s": case "S": handled = submit("form-skip"); break;
      case "e": case "E": handled = openPanel("panel-escalate", "#escalate-comment"); break;
      case "u": case "U": handled = submit("form-undo"); break;
      case "n": case "N": handled = submit("form-next") || submit("start-form"); break;
      case "h": case "H": toggleHeat(); break;
      case "[": handled = nudgeOpacity(-15); break;
      case "]": handled = nudgeOpacity(15); break;
      case "?": toggleHelp(); break;
      default: handled = false;
    }
    if (handled) ev.preventDefault();
  });

  // After each swap: the search list opens as results arrive; focus leaves stale inputs.
  document.addEventListener("htmx:afterSwap", function (ev) {
    if (ev.detail && ev.detail.target && ev.detail.target.id === "review-work") {
      if (document.activeElement && document.activeElement !== document.body) document.activeElement.blur();
      window.scrollTo({ top: 0 });
    }
    var search = $("#cat-search");
    if (search) search.setAttribute("aria-expanded", options().length ? "true" : "false");
    if (pendingPick && ev.detail && ev.detail.target && ev.detail.target.id === "cat-results" && listIsCurrent()) {
      pendingPick = false;
      var opts = options();
      if (opts.length) pick(opts.find(function (o) { return o.classList.contains("active"); }) || opts[0]);
    }
    applyOpacity();
  });
  document.addEventListener("DOMContentLoaded", function () { applyOpacity(); });
})();
