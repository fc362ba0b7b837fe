// bnlint draw: pan, zoom, search and details over the embedded SVG. No network, no library.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("bnlint-data").textContent);
  const canvas = document.getElementById("canvas");
  const svg = canvas.querySelector("svg");
  const viewport = svg.querySelector("#viewport");
  const search = document.getElementById("search");
  const results = document.getElementById("results");
  const details = document.getElementById("details");
  svg.removeAttribute("width");
  svg.removeAttribute("height");
  svg.removeAttribute("viewBox");
  let view = { x: 0, y: 0, k: 1 };

  function apply() {
    viewport.setAttribute("transform", `translate(${view.x},${view.y}) scale(${view.k})`);
    canvas.classList.toggle("far", view.k < 0.45);
    canvas.classList.toggle("very-far", view.k < 0.2);   // unreadable anyway: draw less
  }
  function fit() {
    const w = canvas.clientWidth, h = canvas.clientHeight;
    const k = Math.min(w / data.width, h / data.height, 1);
    view = { k: Math.max(k, 0.02), x: (w - data.width * Math.max(k, 0.02)) / 2, y: 0 };
    if (data.height * view.k < h) view.y = (h - data.height * view.k) / 2;
    apply();
  }
  // the start: the top of the net, readable (a 900-layer net fitted whole is a line)
  function home() {
    const w = canvas.clientWidth;
    const k = Math.max(Math.min(1, w / data.width, canvas.clientHeight / data.height), 0.6);
    view = { k: Math.min(k, 1), x: (w - data.width * Math.min(k, 1)) / 2, y: 0 };
    apply();
  }
  function zoomAt(factor, cx, cy) {
    const k = Math.min(8, Math.max(0.02, view.k * factor));
    view.x = cx - (cx - view.x) * (k / view.k);
    view.y = cy - (cy - view.y) * (k / view.k);
    view.k = k;
    apply();
  }
  // the wheel zooms at the pointer; a sideways (trackpad) scroll or shift+wheel pans
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = canvas.getBoundingClientRect();
    if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
      view.x -= e.shiftKey ? e.deltaY : e.deltaX;
      view.y -= e.shiftKey ? 0 : e.deltaY;
      apply();
    } else {
      const step = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaY;
      zoomAt(Math.exp(-step * 0.002), e.clientX - r.left, e.clientY - r.top);
    }
  }, { passive: false });
  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX, y: e.clientY, vx: view.x, vy: view.y, moved: false };
  });
  window.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    drag.moved = true;
    canvas.classList.add("dragging");
    view.x = drag.vx + dx; view.y = drag.vy + dy; apply();
  });
  window.addEventListener("pointerup", () => {
    if (drag && drag.moved) canvas.dataset.justDragged = "1";
    drag = null; canvas.classList.remove("dragging");
  });

  function centreOn(el) {
    const c = canvas.getBoundingClientRect(), r = el.getBoundingClientRect();
    if (view.k < 0.8) { zoomAt(1 / view.k, r.left + r.width / 2 - c.left, r.top + r.height / 2 - c.top); }
    const r2 = el.getBoundingClientRect();
    view.x += c.left + c.width / 2 - (r2.left + r2.width / 2);
    view.y += c.top + c.height / 2 - (r2.top + r2.height / 2);
    apply();
  }
  function clearMarks(cls) {
    svg.querySelectorAll("." + cls).forEach((el) => el.classList.remove(cls));
  }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const child of children) node.append(child);
    return node;
  }
  function human(n) {
    for (const [v, s] of [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
      if (n >= v) return (n / v).toPrecision(3) + " " + s;
    }
    return String(n);
  }
  function shapeText(shape) { return shape === null ? "?" : shape.join("\u00d7") || "scalar"; }
  function blobTable(rows) {
    const table = el("table");
    for (const [name, shape] of rows) table.append(el("tr", {}, el("td", {}, name), el("td", {}, shapeText(shape))));
    return table;
  }
  function findingItem(f, withLink) {
    const li = el("li", { "data-code": f.code }, el("span", { class: "sev " + f.severity }, f.code), " ",
      f.message, ` (line ${f.line}:${f.col}` + (f.phases.length ? `, ${f.phases.join(", ")}` : "") + ")");
    if (withLink && f.member !== null) {
      li.title = "show layer " + data.members[f.member].name;
      li.addEventListener("click", () => select(f.member, true));
    }
    return li;
  }

  function select(index, centre, removed) {
    clearMarks("selected");
    const m = removed ? data.removed[index] : data.members[index];
    const node = document.getElementById((removed ? "R" : "L") + index);
    if (node) { node.classList.add("selected"); if (centre) centreOn(node); }
    details.hidden = false;
    details.replaceChildren();
    details.append(el("h2", {}, m.name));
    const facts = el("table", {},
      el("tr", {}, el("td", {}, "type"), el("td", {}, m.type)),
      el("tr", {}, el("td", {}, "family"), el("td", {}, m.family)));
    if (m.kind === "layer") {
      facts.append(el("tr", {}, el("td", {}, "parameters"), el("td", {}, m.params.toLocaleString("en-US"))));
      facts.append(el("tr", {}, el("td", {}, "MACs"), el("td", {}, m.macs ? `${m.macs.toLocaleString("en-US")} (${human(m.macs)})` : "0")));
    }
    details.append(facts);
    if (m.doc) details.append(el("p", { class: "doc" }, m.doc));
    if (m.status) {
      details.append(el("h3", {}, "Change: ", el("span", { class: "status " + m.status }, m.status)));
      if (m.changes.length) details.append(el("ul", {}, ...m.changes.map((c) => el("li", {}, c))));
    }
    if (m.findings.length) {
      details.append(el("h3", {}, `Findings (${m.findings.length})`));
      const list = el("ul", { class: "layer-findings" });
      for (const fi of m.findings) {
        const f = data.findings[fi];
        const li = findingItem(f, false);
        if (data.rules[f.code]) li.append(el("pre", { class: "rule" }, `bnlint rules ${f.code}\n\n` + data.rules[f.code]));
        list.append(li);
      }
      details.append(list);
    }
    if (m.bottoms.length) details.append(el("h3", {}, "Bottoms"), blobTable(m.bottoms));
    if (m.tops.length) details.append(el("h3", {}, "Tops"), blobTable(m.tops));
    if (m.text) details.append(el("h3", {}, `As written (line ${m.line})`), el("pre", { class: "text" }, m.text));
  }

  svg.addEventListener("click", (e) => {
    if (canvas.dataset.justDragged) { delete canvas.dataset.justDragged; return; }
    const g = e.target.closest(".layer, .input, .removed-member, .removed-layer");
    if (g) select(Number(g.id.slice(1)), false, g.id[0] === "R");
  });

  // search: layers by name, blobs by name
  let hits = [];
  function runSearch() {
    const q = search.value.trim().toLowerCase();
    results.replaceChildren();
    clearMarks("match");
    hits = [];
    if (!q) return;
    data.members.forEach((m, i) => {
      if (m.name.toLowerCase().includes(q)) hits.push({ kind: "layer", index: i, text: `layer ${m.name} (${m.type})` });
    });
    for (const [blob, producers] of Object.entries(data.blobs)) {
      if (blob.toLowerCase().includes(q)) {
        for (const p of producers) hits.push({ kind: "blob", blob, index: p, text: `blob ${blob} (top of ${data.members[p].name})` });
      }
    }
    hits.sort((a, b) => (exact(b, q) - exact(a, q)));
    for (const [n, hit] of hits.slice(0, 50).entries()) {
      const li = el("li", { class: "hit hit-" + hit.kind + (n === 0 ? " active" : "") }, hit.text);
      li.addEventListener("click", () => go(hit));
      results.append(li);
    }
    if (hits.length > 50) results.append(el("li", {}, `... ${hits.length - 50} more`));
    for (const hit of hits) {
      if (hit.kind === "layer") document.getElementById("L" + hit.index)?.classList.add("match");
      else svg.querySelectorAll(".edge, .edge-label").forEach((e) => { if (e.dataset.blob === hit.blob) e.classList.add("match"); });
    }
  }
  function exact(hit, q) {
    const name = hit.kind === "layer" ? data.members[hit.index].name : hit.blob;
    return name.toLowerCase() === q ? 1 : 0;
  }
  function go(hit) {
    results.replaceChildren();
    select(hit.index, true);
  }
  search.addEventListener("input", runSearch);
  search.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && hits.length) go(hits[0]);
    if (e.key === "Escape") { search.value = ""; runSearch(); }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "/" && document.activeElement !== search) { e.preventDefault(); search.focus(); }
  });
  document.getElementById("fit").addEventListener("click", fit);
  document.getElementById("home").addEventListener("click", home);
  document.getElementById("zoom-in").addEventListener("click", () => zoomAt(1.25, canvas.clientWidth / 2, canvas.clientHeight / 2));
  document.getElementById("zoom-out").addEventListener("click", () => zoomAt(0.8, canvas.clientWidth / 2, canvas.clientHeight / 2));

  const list = document.getElementById("finding-list");
  data.findings.forEach((f) => list.append(findingItem(f, true)));
  if (!data.findings.length) list.append(el("li", {}, "none"));
  home();
  document.body.dataset.ready = "1";
})();
