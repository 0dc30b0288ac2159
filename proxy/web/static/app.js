// The page's wiring: builds the table, details, intercept drawer, dialogs and
// status bar, connects the toolbar, and starts the live feed. Each part
// lives in its own module; this one only connects them.

import { api } from "./api.js";
import { Details } from "./details.js";
import { Diff } from "./diff.js";
import { Exporter } from "./export.js";
import { FilterBox } from "./filter.js";
import { Intercept } from "./intercept.js";
import { Live } from "./live.js";
import { Resend, replay } from "./resend.js";
import { StatusBar } from "./statusbar.js";
import { FlowTable } from "./table.js";
import { $, fill, toast } from "./util.js";

const table = new FlowTable($("#flow-table"), { onSelect: (id) => openDetails(id) });
const status = new StatusBar($("#status-bar"), () => table.count);
const resend = new Resend($("#resend-dialog"));
const diff = new Diff($("#diff-dialog"));
const exporter = new Exporter($("#text-dialog"));
const intercept = new Intercept($("#intercept-panel"), $("#held-count"), {
  onOpenChange: (open) => $("#intercept-btn").classList.toggle("on", open),
});
const heldIds = new Set();

const details = new Details($("#details"), {
  close: () => {
    details.close();
    table.focus(null);
  },
  mark: (id, marked) => mark(id, marked),
  resend: (id) => resend.open(id).catch((err) => toast(err.message, "error")),
  replay: (id) => replay(id),
  diffWith: (id) => pickSecond(id),
  exportFlow: (id, format) => exporter.flow(id, format),
  editHeld: (id) => intercept.edit(id).catch((err) => toast(err.message, "error")),
});

const live = new Live({
  table,
  status,
  onFlows: (flows) => {
    let heldChanged = false;
    for (const f of flows) {
      if (f.id === details.id) details.refresh(table.get(f.id) || f); // (a change may be partial)
      if (f.held || heldIds.has(f.id)) heldChanged = true;
      if (f.held) heldIds.add(f.id);
      else heldIds.delete(f.id);
    }
    if (heldChanged) intercept.refreshSoon();
    $("#diff-btn").disabled = table.selection.size !== 2;
    status.render();
  },
});

function openDetails(id) {
  $("#diff-btn").disabled = table.selection.size !== 2;
  if (!id) return details.close();
  const f = table.get(id);
  if (f && f.held && intercept.isOpen) intercept.edit(id).catch((err) => toast(err.message, "error"));
  details.show(id, table.get(id)).catch((err) => toast(`could not load the flow: ${err.message}`, "error"));
}

async function mark(id, marked) {
  try {
    await api.post(`/api/flows/${encodeURIComponent(id)}/mark`, { marked });
    const f = table.get(id);
    if (f) table.upsert([{ ...f, marked }]);
    await details.show(id, table.get(id));
  } catch (err) {
    toast(`could not mark: ${err.message}`, "error");
  }
}

/** "Diff with...": the next click on a row picks the second flow. */
function pickSecond(id) {
  const a = table.get(id);
  const hint = $("#pick-hint");
  fill(hint, `Click the flow to compare with #${a ? a.seq : id} (Esc cancels)`);
  hint.hidden = false;
  document.body.classList.add("picking");
  table.pick = (other) => {
    endPick();
    showDiff(id, other);
  };
}

function endPick() {
  table.pick = null;
  $("#pick-hint").hidden = true;
  document.body.classList.remove("picking");
}

function showDiff(a, b) {
  const fa = table.get(a) || { id: a };
  const fb = table.get(b) || { id: b };
  diff.show(fa, fb).catch((err) => toast(`diff failed: ${err.message}`, "error"));
}

new FilterBox({
  input: $("#filter-input"),
  error: $("#filter-error"),
  help: $("#filter-help"),
  apply: (expr) => live.load(expr),
});

$("#filter-help-btn").addEventListener("click", () => ($("#filter-help").hidden = !$("#filter-help").hidden));

$("#pause-btn").addEventListener("click", () => {
  const paused = !live.paused;
  live.setPaused(paused);
  const button = $("#pause-btn");
  button.textContent = paused ? "▶ Resume" : "❚❚ Pause";
  button.classList.toggle("on", paused);
});

$("#clear-btn").addEventListener("click", async () => {
  if (!confirm("Delete every stored flow?")) return;
  try {
    await live.clear();
    details.close();
  } catch (err) {
    toast(`could not clear: ${err.message}`, "error");
  }
});

$("#diff-btn").addEventListener("click", () => {
  const [a, b] = [...table.selection];
  if (a && b) showDiff(a, b);
});

$("#intercept-btn").addEventListener("click", () => intercept.toggle());

for (const item of document.querySelectorAll("#export-menu button")) {
  item.addEventListener("click", () => {
    $("#export-menu").open = false;
    const what = item.dataset.scope === "view" ? { filter: live.filter } : { ids: [...table.selection] };
    exporter.many(item.dataset.format, what);
  });
}

// The export menu and the filter help close on a click elsewhere.
document.addEventListener("click", (e) => {
  if (!e.target.closest("#export-menu")) $("#export-menu").open = false;
  if (!e.target.closest("#filter-help, #filter-help-btn")) $("#filter-help").hidden = true;
});

document.addEventListener("keydown", (e) => {
  const typing = e.target.closest("input, textarea, select");
  if (e.key === "Escape") {
    if (table.pick) return endPick();
    if (!typing && !document.querySelector("dialog[open]")) details.actions.close();
  }
  if (e.key === "/" && !typing) {
    e.preventDefault();
    $("#filter-input").focus();
  }
});

status.render();
live.start();
intercept.load().catch(() => {}); // the held count and the breakpoint, before the drawer opens

// For the browser test and the curious: the parts, on window.
window.tapproxy = { table, live, details, intercept };
