// modsab view: the instance browser of a local server. Filters, sorting and paging run on
// the server (/api/instances); this script builds the filter text from the controls, shows
// one page of rows and opens an instance (/api/instance). Every text from the data goes
// through textContent (never innerHTML), so nothing in the data can become markup.
(function () {
  "use strict";
  var S = JSON.parse(document.getElementById("summary-data").textContent);
  var agents = S.agents, labels = S.labels, columns = {};
  S.columns.forEach(function (c) { columns[c.name] = c.kind; });
  var state = { page: 1, pages: 1, seq: 0, detailSeq: 0 };
  var KEYWORDS = { and: 1, or: 1, not: 1, "in": 1, contains: 1, is: 1, "null": 1, "true": 1, "false": 1 };

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function option(select, value, text) { var o = el("option", null, text); o.value = value; select.appendChild(o); }
  function num(v, digits) { return v === null || v === undefined ? "–" : (+v).toFixed(digits === undefined ? 3 : digits); }

  // -- the filter language: quoting that the server's tokenizer reads back exactly --
  function quoteValue(v) { return '"' + String(v).replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"'; }
  function quoteColumn(name) {
    return /^[A-Za-z_][A-Za-z0-9_.\-]*$/.test(name) && !KEYWORDS[name.toLowerCase()]
      ? name : "`" + name.replace(/`/g, "``") + "`";
  }

  // -- summary --
  function summary() {
    var box = $("summary-body"), d = S.diagnosis || {};
    $("engine").textContent = "server-side filters (" + S.engine + ")";
    if (d.fusion_topk) {
      var ks = Object.keys(d.fusion_topk).sort(function (a, b) { return a - b; });
      var t = el("table"), head = el("tr"), row = el("tr");
      head.appendChild(el("th", null, "Base T1"));
      row.appendChild(el("td", "num", d.baseline_top1 === null || d.baseline_top1 === undefined ? "–" : num(d.baseline_top1)));
      ks.forEach(function (k) { head.appendChild(el("th", null, "Fus T" + k)); row.appendChild(el("td", "num", num(d.fusion_topk[k]))); });
      var th = el("thead"), tb = el("tbody"); th.appendChild(head); tb.appendChild(row); t.appendChild(th); t.appendChild(tb);
      box.appendChild(el("h3", null, "Fused top-k" + (d.baseline ? " (baseline " + d.baseline + ")" : "")));
      box.appendChild(t);
    }
    if (d.agents) {
      var keys = [["n", "answered", 0], ["top1", "top-1", 3], ["contributor_rate", "contributor", 3],
        ["potential_sabotage_rate", "potential sabotage", 3], ["successful_sabotage_rate", "successful sabotage", 3]];
      var at = el("table"), ah = el("tr"), ab = el("tbody");
      ah.appendChild(el("th", null, "agent"));
      keys.forEach(function (k) { ah.appendChild(el("th", null, k[1])); });
      Object.keys(d.agents).forEach(function (a) {
        var e = d.agents[a] || {}, tr = el("tr");
        tr.appendChild(el("td", null, a + (e.fused === false ? " (not fused)" : "")));
        keys.forEach(function (k) {
          var v = e[k[0]];
          tr.appendChild(el("td", "num", v === null || v === undefined ? "–" : k[2] ? num(v, k[2]) : (+v).toLocaleString("en")));
        });
        ab.appendChild(tr);
      });
      var ahd = el("thead"); ahd.appendChild(ah); at.appendChild(ahd); at.appendChild(ab);
      box.appendChild(el("h3", null, "Per agent (rates over the instances each answered)"));
      box.appendChild(at);
    }
    (S.notes || []).forEach(function (n) { box.appendChild(el("p", "note", n)); });
  }

  // -- controls --
  var fRole = $("f-role"), fAgent = $("f-agent"), fGold = $("f-gold"), fPred = $("f-pred"), fDs = $("f-dataset"),
      fId = $("f-id"), fExpr = $("f-expr"), fSort = $("f-sort"), fDir = $("f-dir"), fSize = $("f-size");
  agents.forEach(function (a) { option(fAgent, a, a); });
  labels.forEach(function (l) { option(fGold, l, l); option(fPred, l, l); });
  if (S.datasets.length && columns.dataset) S.datasets.forEach(function (d) { option(fDs, d, d); });
  else $("f-dataset-wrap").hidden = true;
  [["gold_rank", "gold rank"], ["instance_id", "instance id"], ["gold", "gold"], ["fused_top1", "fused top-1"],
   ["dataset", "dataset"]].forEach(function (s) { if (columns[s[0]]) option(fSort, s[0], s[1]); });
  agents.forEach(function (a) {
    ["confidence", "quality", "shapley_correct", "shapley_gold_probability", "role", "top", "causal"].forEach(function (f) {
      if (columns[a + "." + f]) option(fSort, a + "." + f, a + " " + f.replace(/_/g, " "));
    });
  });

  function filterText() {
    var parts = [];
    if (fRole.value) {
      var col = fAgent.value ? quoteColumn(fAgent.value + ".role") : "any.role";
      parts.push(fRole.value === "potential_any"
        ? col + ' in ("potential_sabotage", "successful_sabotage")' : col + " = " + quoteValue(fRole.value));
    }
    if (fGold.value) parts.push("gold = " + quoteValue(fGold.value));
    if (fPred.value) parts.push("fused_top1 = " + quoteValue(fPred.value));
    if (fDs.value) parts.push("dataset = " + quoteValue(fDs.value));
    if (fId.value.trim()) parts.push("instance_id contains " + quoteValue(fId.value.trim()));
    if (fExpr.value.trim()) parts.push(parts.length ? "(" + fExpr.value.trim() + ")" : fExpr.value.trim());
    return parts.join(" and ");
  }

  // -- the table --
  function label(v) { return v === null || v === undefined || v === "" ? "–" : v; }
  function badge(row, a) {
    var role = row[a + ".role"] || "abstained", top = row[a + ".top"], conf = row[a + ".confidence"];
    var b = el("span", "role role-" + role.replace(/[^a-z_]/g, ""),
      a + ": " + (top ? top + " " + (conf === null || conf === undefined ? "" : Math.round(conf * 100)) : "—"));
    b.title = a + " " + role.replace(/_/g, " ") + (row[a + ".causal"] ? " · causal " + row[a + ".causal"] : "");
    if (row[a + ".causal"] === "saboteur") b.appendChild(el("span", "causal", " ✱"));
    return b;
  }
  function setError(text) {
    var e = $("ib-error");
    e.hidden = !text;
    e.textContent = text || "";
  }
  function load() {
    var my = ++state.seq, table = $("ib-table"), text = filterText();
    $("f-effective").textContent = text || "(none: every instance)";
    table.dataset.state = "loading";
    var q = new URLSearchParams();
    if (text) q.set("filter", text);
    if (fSort.value) q.append("sort", fDir.value + fSort.value);
    q.set("page", state.page);
    q.set("size", fSize.value);
    var started = performance.now();
    fetch("/api/instances?" + q.toString(), { headers: { Accept: "application/json" } }).then(function (r) {
      return r.json().then(function (j) { return { ok: r.ok, body: j }; });
    }).then(function (res) {
      if (my !== state.seq) return; // a newer request is on its way
      if (!res.ok) {
        setError(res.body && res.body.error ? "filter not run: " + res.body.error : "request failed");
        table.dataset.state = "error";
        table.dataset.seq = my;
        return;
      }
      setError("");
      render(res.body, performance.now() - started);
      table.dataset.ms = Math.round(performance.now() - started);  // request, answer and rows drawn
      table.dataset.state = "ready";
      table.dataset.seq = my;
    }, function () {
      if (my !== state.seq) return;
      setError("the server did not answer (is modsab view still running?)");
      table.dataset.state = "error";
    });
  }
  function render(data, ms) {
    var body = $("ib-body");
    body.textContent = "";
    state.pages = data.pages;
    data.rows.forEach(function (row) {
      var tr = el("tr", "inst");
      tr.dataset.id = row.instance_id;
      tr.appendChild(el("td", null, row.instance_id));
      tr.appendChild(el("td", null, row.dataset === undefined ? "" : label(row.dataset)));
      tr.appendChild(el("td", null, label(row.gold)));
      tr.appendChild(el("td", row.fused_top1 !== null && row.fused_top1 === row.gold ? "hit" : "miss", label(row.fused_top1)));
      tr.appendChild(el("td", "num", row.gold_rank || "–"));
      var roles = el("td");
      agents.forEach(function (a) { roles.appendChild(badge(row, a)); });
      tr.appendChild(roles);
      body.appendChild(tr);
    });
    var c = $("ib-count");
    c.dataset.count = data.total;
    c.textContent = data.total.toLocaleString("en") + " of " + data.n_instances.toLocaleString("en") + " instances";
    $("ib-page").textContent = "page " + data.page.toLocaleString("en") + " of " + data.pages.toLocaleString("en");
    $("ib-time").textContent = "server " + Math.round(data.seconds * 1000) + " ms, round trip " + Math.round(ms) + " ms";
    $("engine").textContent = "server-side filters (" + data.engine + ")";
    $("ib-first").disabled = $("ib-prev").disabled = data.page <= 1;
    $("ib-next").disabled = $("ib-last").disabled = data.page >= data.pages;
  }

  // -- one instance --
  function detail(tr) {
    var my = ++state.detailSeq, id = tr.dataset.id;
    var row = el("tr", "detail"), td = el("td");
    td.colSpan = 6;
    td.appendChild(el("p", "note", "loading…"));
    row.appendChild(td);
    tr.after(row);
    fetch("/api/instance?id=" + encodeURIComponent(id)).then(function (r) { return r.json(); }).then(function (d) {
      td.textContent = "";
      if (!d.row) { td.appendChild(el("p", "error", d.error || "not found")); return; }
      fill(td, d);
      row.dataset.ready = "1";
    }, function () { td.textContent = ""; td.appendChild(el("p", "error", "the server did not answer")); });
    return my;
  }
  function fill(td, d) {
    var r = d.row, fused = el("div"), ranking = r.fused_ranking || [], scores = r.fused_scores || [];
    var total = scores.reduce(function (s, v) { return s + (v || 0); }, 0), fl = [];
    ranking.forEach(function (l, i) { fl.push(l + " " + (total > 0 ? (scores[i] / total).toFixed(3) : "–")); });
    fused.appendChild(el("strong", null, "Fused ranking (p): "));
    fused.appendChild(document.createTextNode(fl.join(" › ") || "none"));
    td.appendChild(fused);
    var box = el("div", "agents");
    agents.forEach(function (a) {
      var card = el("div", "agent"), role = r[a + ".role"] || "abstained";
      card.appendChild(el("strong", null, a + " "));
      card.appendChild(el("span", "role role-" + role.replace(/[^a-z_]/g, ""), role.replace(/_/g, " ")));
      var top = r[a + ".top"], conf = r[a + ".confidence"];
      card.appendChild(el("div", top === r.gold ? "gold" : null,
        "top: " + label(top) + (conf === null || conf === undefined ? "" : " — " + Math.round(conf * 100))));
      card.appendChild(el("div", "note", "quality: " + (r[a + ".quality"] === null || r[a + ".quality"] === undefined ? "n/a" : r[a + ".quality"])));
      if (r[a + ".causal"] !== undefined) card.appendChild(el("div", "note", "causal: " + (r[a + ".causal"] || "–")));
      Object.keys(r).forEach(function (k) {
        if (k.indexOf(a + ".shapley_") === 0) card.appendChild(el("div", "note", "phi(" + k.slice(a.length + 9) + "): " + num(r[k])));
      });
      var raw = d.raw && d.raw[a];
      if (raw) {
        var det = el("details", "raw");
        det.appendChild(el("summary", null, "raw answer"));
        det.appendChild(el("pre", null, raw));
        card.appendChild(det);
      }
      box.appendChild(card);
    });
    td.appendChild(box);
    Object.keys(d.raw || {}).forEach(function (a) {  // answers of agents without a column here
      if (agents.indexOf(a) >= 0) return;
      var det = el("details", "raw"); det.appendChild(el("summary", null, "raw answer: " + a)); det.appendChild(el("pre", null, d.raw[a]));
      td.appendChild(det);
    });
    var desc = d.descriptors || {}, keys = Object.keys(desc);
    if (keys.length) {
      var dl = el("dl");
      keys.forEach(function (k) { dl.appendChild(el("dt", null, k)); dl.appendChild(el("dd", null, desc[k])); });
      var dd = el("details", "descriptors"); dd.open = true; dd.appendChild(el("summary", null, "descriptors")); dd.appendChild(dl);
      td.appendChild(dd);
    }
  }

  $("ib-body").addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr.inst");
    if (!tr) return;
    var next = tr.nextElementSibling;
    if (next && next.classList.contains("detail")) { next.remove(); return; }
    detail(tr);
  });
  function go(page) { state.page = Math.max(1, Math.min(page, state.pages)); load(); }
  $("ib-first").addEventListener("click", function () { go(1); });
  $("ib-prev").addEventListener("click", function () { go(state.page - 1); });
  $("ib-next").addEventListener("click", function () { go(state.page + 1); });
  $("ib-last").addEventListener("click", function () { go(state.pages); });
  function restart() { state.page = 1; load(); }
  [fRole, fAgent, fGold, fPred, fDs, fSort, fDir, fSize].forEach(function (s) { s.addEventListener("change", restart); });
  [fId, fExpr].forEach(function (input) {
    var timer = null;
    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(restart, 250); });
    input.addEventListener("keydown", function (ev) { if (ev.key === "Enter") { clearTimeout(timer); restart(); } });
  });
  summary();
  load();
})();
