// The report page's script: the task table (only the rows in view are in
// the DOM) and selection across the DAG, the timeline and the table.
// Strings from the report are only ever set as textContent.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("data").textContent);
  const tasks = data.tasks;
  const ROW = 24, SPARE = 10;
  const box = document.getElementById("table-box");
  const body = document.querySelector("#tasks tbody");
  let order = tasks.map((_, i) => i);
  let selected = -1, sortKey = null, sortDir = 1;

  function cell(row, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    row.appendChild(td);
  }
  function pad(height) {
    const row = document.createElement("tr");
    row.className = "pad";
    row.style.height = height + "px";
    return row;
  }
  let drawn = "";
  // Only the rows in view (and SPARE around them); rebuilt only when that
  // window moved or `changed` (a sort, a selection), so rows stay put.
  function drawRows(changed) {
    const first = Math.max(0, Math.floor(box.scrollTop / ROW) - SPARE);
    const count = Math.ceil(box.clientHeight / ROW) + 2 * SPARE;
    const last = Math.min(order.length, first + count);
    if (!changed && drawn === first + ":" + last) return;
    drawn = first + ":" + last;
    const rows = [pad(first * ROW)];
    for (let at = first; at < last; at++) {
      const i = order[at], t = tasks[i];
      const row = document.createElement("tr");
      row.dataset.i = i;
      if (i === selected) row.className = "sel";
      cell(row, t.name);
      cell(row, t.state, "s-" + t.state);
      cell(row, String(t.attempts.length));
      cell(row, t.wait.toFixed(3));
      cell(row, t.run.toFixed(3));
      cell(row, t.error || "", "error");
      rows.push(row);
    }
    rows.push(pad((order.length - last) * ROW));
    body.replaceChildren(...rows);
  }
  const keys = {
    name: (t) => t.name, state: (t) => t.state, attempts: (t) => t.attempts.length,
    wait: (t) => t.wait, run: (t) => t.run, error: (t) => t.error || "",
  };
  function sortBy(key) {
    sortDir = key === sortKey ? -sortDir : 1;
    sortKey = key;
    const get = keys[key];
    order.sort((a, b) => {
      const x = get(tasks[a]), y = get(tasks[b]);
      return (x < y ? -1 : x > y ? 1 : a - b) * sortDir;
    });
    document.querySelectorAll("#tasks th").forEach((th) => {
      th.className = th.dataset.key === key ? (sortDir > 0 ? "asc" : "desc") : "";
    });
    drawRows(true);
  }
  function marks(i) {
    const node = tasks[i].parent >= 0 ? tasks[i].parent : i;
    return [document.getElementById("n" + node),
      ...document.querySelectorAll('#timeline [data-i="' + i + '"]')].filter(Boolean);
  }
  function fmt(v) { return v === null ? "?" : v.toFixed(3) + " s"; }
  function showDetail(i) {
    const t = tasks[i], panel = document.getElementById("detail");
    const title = document.createElement("h2");
    title.textContent = t.name + ": " + t.state;
    const parts = [title];
    const deps = document.createElement("p");
    deps.textContent = "Depends on: " + (t.deps.length ? t.deps.join(", ") : "nothing");
    parts.push(deps);
    const list = document.createElement("ol");
    for (const a of t.attempts) {
      const item = document.createElement("li");
      item.textContent = "attempt " + a.n + ": " + (a.outcome || "running") +
        (a.reason ? " (" + a.reason + ")" : "") + ", ready " + fmt(a.ready) +
        ", started " + fmt(a.start) + ", ended " + fmt(a.end);
      if (a.error) {
        const pre = document.createElement("pre");
        pre.textContent = a.error;
        item.appendChild(pre);
      }
      list.appendChild(item);
    }
    if (!t.attempts.length) list.textContent = "No attempts (it never ran).";
    parts.push(list);
    panel.replaceChildren(...parts);
    panel.hidden = false;
  }
  function select(i, from) {
    if (selected >= 0) marks(selected).forEach((el) => el.classList.remove("sel"));
    selected = i;
    const found = marks(i);
    found.forEach((el) => el.classList.add("sel"));
    showDetail(i);
    if (from !== "dag" && found[0]) reveal(document.getElementById("dag-box"), found[0]);
    if (from !== "timeline" && found[1]) reveal(document.getElementById("timeline-box"), found[1]);
    if (from !== "table") {
      const at = order.indexOf(i);
      box.scrollTop = Math.max(0, at * ROW - box.clientHeight / 2);
    }
    drawRows(true);
  }
  // Scroll the box (never the window) so that the element is in view.
  function reveal(scroller, el) {
    const outer = scroller.getBoundingClientRect(), inner = el.getBoundingClientRect();
    if (inner.top < outer.top || inner.bottom > outer.bottom) {
      scroller.scrollTop += inner.top - outer.top - scroller.clientHeight / 2;
    }
    if (inner.left < outer.left || inner.right > outer.right) {
      scroller.scrollLeft += inner.left - outer.left - scroller.clientWidth / 2;
    }
  }
  function clicked(from) {
    return (ev) => {
      const el = ev.target.closest("[data-i]");
      if (el) select(Number(el.dataset.i), from);
    };
  }
  document.getElementById("dag").addEventListener("click", clicked("dag"));
  document.getElementById("timeline").addEventListener("click", clicked("timeline"));
  body.addEventListener("click", clicked("table"));
  document.querySelector("#tasks thead").addEventListener("click", (ev) => {
    const th = ev.target.closest("th");
    if (th) sortBy(th.dataset.key);
  });
  let pending = false;
  box.addEventListener("scroll", () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; drawRows(false); });
  });
  drawRows(true);
  document.body.dataset.ready = String(performance.now());
})();
