// Knowledge editor: drag a tree node onto another to move it (posts the same form as "Move").
(function () {
  "use strict";
  var dragged = null;
  function csrf() {
    var h = document.body.getAttribute("hx-headers");
    try { return JSON.parse(h)["X-CSRFToken"]; } catch (e) { return ""; }
  }
  document.addEventListener("dragstart", function (ev) {
    var li = ev.target.closest && ev.target.closest("li.kg-node[draggable=true]");
    if (!li) return;
    dragged = li;
    ev.dataTransfer.effectAllowed = "move";
    ev.dataTransfer.setData("text/plain", li.dataset.category);
    ev.stopPropagation();
  });
  document.addEventListener("dragover", function (ev) {
    var li = ev.target.closest && ev.target.closest("li.kg-node");
    if (!li || !dragged || li === dragged || dragged.contains(li)) return;
    ev.preventDefault();
    document.querySelectorAll(".kg-node.drag-over").forEach(function (n) { n.classList.remove("drag-over"); });
    li.classList.add("drag-over");
  });
  document.addEventListener("drop", function (ev) {
    var li = ev.target.closest && ev.target.closest("li.kg-node");
    document.querySelectorAll(".kg-node.drag-over").forEach(function (n) { n.classList.remove("drag-over"); });
    if (!li || !dragged || li === dragged || dragged.contains(li)) return;
    ev.preventDefault();
    window.htmx.ajax("POST", dragged.dataset.moveUrl, {
      target: "#panel",
      values: { parent: li.dataset.category, version: dragged.dataset.version, reason: "dragged in the tree" },
      headers: { "X-CSRFToken": csrf() },
    });
    dragged = null;
  });
  document.addEventListener("dragend", function () { dragged = null; });
})();
