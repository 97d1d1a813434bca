// alignzoo label: the page's logic. Model output is only ever inserted with textContent (never as HTML).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const meta = (name) => document.querySelector(`meta[name="${name}"]`).content;
  const csrf = meta("csrf-token");
  const annotator = new URLSearchParams(location.search).get("annotator") || meta("annotator");
  let state = null, ranking = [], shownAt = 0, busy = false;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function status(message, isError) {
    $("status").textContent = message;
    $("status").className = isError ? "error" : "";
  }

  function renderProgress(s) {
    $("progress-text").textContent = `${s.judged} / ${s.total}`;
    $("progress").max = s.total;
    $("progress").value = s.judged;
    const a = s.agreement;
    $("agreement").textContent = a.inter_annotator === null ? "" :
      `inter-annotator agreement ${a.inter_annotator.toFixed(2)} (${a.pairs} pairs on ${a.items} comparisons)`;
    const box = $("annotators");
    box.replaceChildren();
    if (s.annotators.length > 1) {
      const table = el("table");
      const head = el("tr");
      head.append(el("th", {}, "annotator"), el("th", {}, "judged"));
      table.append(head);
      for (const a of s.annotators) {
        const row = el("tr");
        row.append(el("td", {}, a.name), el("td", {}, String(a.judged)));
        table.append(row);
      }
      box.append(table);
    }
  }

  function render(s) {
    state = s;
    ranking = [];
    renderProgress(s);
    const item = s.item;
    document.body.dataset.judged = String(s.judged);
    document.body.dataset.item = item ? item.id : "";
    $("task").hidden = !item;
    $("done").hidden = !!item;
    if (!item) { document.body.dataset.ready = "1"; return; }
    $("prompt").textContent = item.prompt;
    const list = $("completions");
    list.replaceChildren();
    item.completions.forEach((text, i) => {
      const card = el("div", { class: "completion", "data-index": String(i) });
      const head = el("div", { class: "head" });
      head.append(el("kbd", {}, String(i + 1)), el("span", { class: "rank" }));
      const rating = el("select", { class: "rating", title: "optional rating" });
      rating.append(el("option", { value: "0" }, "rate"));
      for (let r = 1; r <= s.rating_scale; r++) rating.append(el("option", { value: String(r) }, `${r} / ${s.rating_scale}`));
      rating.addEventListener("click", (e) => e.stopPropagation());
      head.append(rating);
      card.append(head, el("pre", { class: "text" }, text));
      card.addEventListener("click", () => choose(i));
      list.append(card);
    });
    $("demonstration").value = "";
    $("demonstration").hidden = true;
    shownAt = performance.now();
    document.body.dataset.ready = "1";
  }

  function markRanks() {
    document.querySelectorAll(".completion").forEach((card) => {
      const pos = ranking.indexOf(Number(card.dataset.index));
      card.classList.toggle("ranked", pos >= 0);
      card.querySelector(".rank").textContent = pos >= 0 ? `#${pos + 1}` : "";
    });
  }

  function choose(i) {
    if (!state || !state.item || busy || i >= state.k || ranking.includes(i)) return;
    ranking.push(i);
    if (ranking.length === state.k - 1) {  // the last one is ranked last
      for (let j = 0; j < state.k; j++) if (!ranking.includes(j)) ranking.push(j);
    }
    markRanks();
    if (ranking.length === state.k) submit(state.k === 2 ? "pick" : "rank");
  }

  async function submit(judgment) {
    if (!state || !state.item || busy) return;
    busy = true;
    document.body.dataset.ready = "0";
    const ratings = Array.from(document.querySelectorAll(".completion .rating"), (s) => Number(s.value));
    const body = {
      item: state.item.id, annotator, judgment, ranking: judgment === "tie" || judgment === "both_bad" ? [] : ranking,
      ratings, demonstration: $("demonstration").value, seconds: (performance.now() - shownAt) / 1000,
    };
    try {
      const r = await fetch("api/judge", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body),
      });
      const data = await r.json();
      if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
      render(data);
      status(`saved: ${judgment.replace("_", " ")}`, false);
    } catch (err) {
      ranking = [];
      markRanks();
      document.body.dataset.ready = "1";
      status(`not saved: ${err.message}`, true);
    } finally {
      busy = false;
    }
  }

  function undo() { ranking.pop(); markRanks(); }

  function edit() {
    const box = $("demonstration");
    box.hidden = false;
    if (!box.value && ranking.length) box.value = state.item.completions[ranking[0]];
    box.focus();
  }

  document.addEventListener("keydown", (e) => {
    const typing = ["TEXTAREA", "INPUT", "SELECT"].includes(e.target.tagName);
    if (typing) { if (e.key === "Escape") e.target.blur(); return; }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (/^[1-9]$/.test(e.key)) { choose(Number(e.key) - 1); e.preventDefault(); }
    else if (e.key === "t") { submit("tie"); e.preventDefault(); }
    else if (e.key === "b") { submit("both_bad"); e.preventDefault(); }
    else if (e.key === "Backspace" || e.key === "u") { undo(); e.preventDefault(); }
    else if (e.key === "e") { edit(); e.preventDefault(); }
  });
  $("tie").addEventListener("click", () => submit("tie"));
  $("both-bad").addEventListener("click", () => submit("both_bad"));
  $("undo").addEventListener("click", undo);
  $("edit").addEventListener("click", edit);

  fetch(`api/state?annotator=${encodeURIComponent(annotator)}`, { credentials: "same-origin" })
    .then((r) => r.json().then((d) => { if (!r.ok) throw new Error(d.error || `HTTP ${r.status}`); return d; }))
    .then(render)
    .catch((err) => status(`cannot load: ${err.message}`, true));
})();
